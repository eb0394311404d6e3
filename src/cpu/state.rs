//! A vCPU's complete architectural state, as KVM exposes it, for migration and snapshots.
//!
//! Saved and restored only while the vCPU is parked (outside `KVM_RUN`). The order of the
//! ioctls matters and follows what KVM needs: see [`VcpuState::restore`].

use super::CpuError;
use devices::state::{StateError, StateReader, StateWriter, VersionedState};
use kvm_bindings::{
    KVM_MAX_CPUID_ENTRIES, Msrs, kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use kvm_ioctls::{Kvm, VcpuFd};
use zerocopy::{FromBytes, IntoBytes};

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
/// KVM's MSR index list leaves out the MTRRs, which firmware and kernels program and
/// expect to keep (losing them made restored guests run uncached elsewhere).
const MTRR_MSRS: &[u32] = &[
    0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f, 0x250, 0x258, 0x259,
    0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f, 0x2ff,
];
/// Most MSRs one KVM_GET_MSRS call takes.
const MSR_CHUNK: usize = 64;
const VALID_NMI_PENDING: u32 = 0x1;
const VALID_SIPI_VECTOR: u32 = 0x2;

fn err(cpu: u8, what: &'static str) -> impl Fn(kvm_ioctls::Error) -> CpuError {
    move |err| CpuError::Ioctl { cpu, what, err }
}

/// The MSRs to carry: KVM's list plus the MTRRs, keeping only those this host lets us
/// read, TSC first and the TSC deadline last (it only sticks once TSC and LAPIC are set).
pub fn saveable_msrs(kvm: &Kvm, vcpu: &VcpuFd) -> Result<Vec<u32>, CpuError> {
    let mut list: Vec<u32> = kvm
        .get_msr_index_list()
        .map_err(err(0, "KVM_GET_MSR_INDEX_LIST"))?
        .as_slice()
        .to_vec();
    list.extend_from_slice(MTRR_MSRS);
    list.sort_unstable_by_key(|m| (*m != MSR_IA32_TSC, *m == MSR_IA32_TSC_DEADLINE, *m));
    list.dedup();
    let mut ok = Vec::with_capacity(list.len());
    let mut rest = &list[..];
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_CHUNK)];
        let n = read_msrs(vcpu, chunk)?.len();
        ok.extend_from_slice(&chunk[..n]);
        // KVM stops at the first MSR it cannot read: skip that one and go on.
        rest = &rest[(n + usize::from(n < chunk.len())).min(rest.len())..];
    }
    Ok(ok)
}

fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, CpuError> {
    let entries: Vec<kvm_msr_entry> = indices
        .iter()
        .map(|i| kvm_msr_entry {
            index: *i,
            ..Default::default()
        })
        .collect();
    let mut msrs = Msrs::from_entries(&entries).map_err(|_| CpuError::Msrs {
        cpu: 0,
        set: 0,
        want: indices.len(),
    })?;
    let n = vcpu.get_msrs(&mut msrs).map_err(err(0, "KVM_GET_MSRS"))?;
    Ok(msrs.as_slice()[..n].to_vec())
}

#[derive(Clone)]
pub struct VcpuState {
    pub mp_state: kvm_mp_state,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    /// The 4 KiB XSAVE area (legacy FPU/SSE state included).
    pub xsave: Box<[u32; 1024]>,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub msrs: Vec<(u32, u64)>,
    pub events: kvm_vcpu_events,
    pub cpuid: Vec<kvm_cpuid_entry2>,
}

impl VcpuState {
    /// Reads everything, in the order that leaves each value consistent with the next:
    /// MP state first (reading it can update the LAPIC), events last.
    pub fn save(vcpu: &VcpuFd, id: u8, msr_list: &[u32]) -> Result<VcpuState, CpuError> {
        let mp_state = vcpu.get_mp_state().map_err(err(id, "KVM_GET_MP_STATE"))?;
        let regs = vcpu.get_regs().map_err(err(id, "KVM_GET_REGS"))?;
        let sregs = vcpu.get_sregs().map_err(err(id, "KVM_GET_SREGS"))?;
        let xsave = Box::new(vcpu.get_xsave().map_err(err(id, "KVM_GET_XSAVE"))?.region);
        let xcrs = vcpu.get_xcrs().map_err(err(id, "KVM_GET_XCRS"))?;
        let debugregs = vcpu.get_debug_regs().map_err(err(id, "KVM_GET_DEBUGREGS"))?;
        let lapic = vcpu.get_lapic().map_err(err(id, "KVM_GET_LAPIC"))?;
        let cpuid = vcpu
            .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
            .map_err(err(id, "KVM_GET_CPUID2"))?
            .as_slice()
            .to_vec();
        let mut msrs = Vec::with_capacity(msr_list.len());
        for chunk in msr_list.chunks(MSR_CHUNK) {
            let got = read_msrs(vcpu, chunk)?;
            if got.len() != chunk.len() {
                return Err(CpuError::Msrs {
                    cpu: id,
                    set: got.len(),
                    want: chunk.len(),
                });
            }
            msrs.extend(got.iter().map(|e| (e.index, e.data)));
        }
        let events = vcpu.get_vcpu_events().map_err(err(id, "KVM_GET_VCPU_EVENTS"))?;
        Ok(VcpuState {
            mp_state,
            regs,
            sregs,
            xsave,
            xcrs,
            debugregs,
            lapic,
            msrs,
            events,
            cpuid,
        })
    }

    /// Writes everything back: CPUID, MP state, registers (which clear pending exceptions),
    /// segment registers (which carry the APIC base), FPU/vector state, LAPIC, MSRs (TSC
    /// before the TSC deadline), and pending events last.
    pub fn restore(&self, vcpu: &VcpuFd, id: u8) -> Result<(), CpuError> {
        let cpuid = kvm_bindings::CpuId::from_entries(&self.cpuid).map_err(|_| CpuError::Msrs {
            cpu: id,
            set: 0,
            want: self.cpuid.len(),
        })?;
        vcpu.set_cpuid2(&cpuid).map_err(err(id, "KVM_SET_CPUID2"))?;
        vcpu.set_mp_state(self.mp_state).map_err(err(id, "KVM_SET_MP_STATE"))?;
        vcpu.set_regs(&self.regs).map_err(err(id, "KVM_SET_REGS"))?;
        vcpu.set_sregs(&self.sregs).map_err(err(id, "KVM_SET_SREGS"))?;
        let xsave = kvm_xsave {
            region: *self.xsave,
            ..Default::default()
        };
        // SAFETY: a complete 4 KiB kvm_xsave; its trailing flexible array is unused (we only
        // carry states that fit the legacy KVM_GET_XSAVE size).
        unsafe { vcpu.set_xsave(&xsave) }.map_err(err(id, "KVM_SET_XSAVE"))?;
        vcpu.set_xcrs(&self.xcrs).map_err(err(id, "KVM_SET_XCRS"))?;
        vcpu.set_debug_regs(&self.debugregs).map_err(err(id, "KVM_SET_DEBUGREGS"))?;
        vcpu.set_lapic(&self.lapic).map_err(err(id, "KVM_SET_LAPIC"))?;
        for chunk in self.msrs.chunks(MSR_CHUNK) {
            let entries: Vec<kvm_msr_entry> = chunk
                .iter()
                .map(|(index, data)| kvm_msr_entry {
                    index: *index,
                    data: *data,
                    ..Default::default()
                })
                .collect();
            let msrs = Msrs::from_entries(&entries).map_err(|_| CpuError::Msrs {
                cpu: id,
                set: 0,
                want: chunk.len(),
            })?;
            let n = vcpu.set_msrs(&msrs).map_err(err(id, "KVM_SET_MSRS"))?;
            if n != chunk.len() {
                return Err(CpuError::Msrs {
                    cpu: id,
                    set: n,
                    want: chunk.len(),
                });
            }
        }
        let mut events = self.events;
        events.flags |= VALID_NMI_PENDING | VALID_SIPI_VECTOR;
        vcpu.set_vcpu_events(&events).map_err(err(id, "KVM_SET_VCPU_EVENTS"))?;
        // Tells a kvmclock guest it was paused, so its watchdogs do not fire; guests
        // without kvmclock answer EINVAL, which is fine.
        let _ = vcpu.kvmclock_ctrl();
        Ok(())
    }
}

/// Decodes a KVM struct written with `as_bytes`, refusing a size mismatch.
pub fn kvm_struct<T: FromBytes>(r: &mut StateReader<'_>, name: &'static str) -> Result<T, StateError> {
    let b = r.bytes()?;
    T::read_from_bytes(b).map_err(|_| StateError::Invalid {
        name,
        why: format!("{} bytes for a {}-byte KVM structure", b.len(), size_of::<T>()),
    })
}

/// Most MSRs or CPUID entries a state may carry (KVM's own limits are below these).
const MAX_ENTRIES: u32 = 4096;

impl VersionedState for VcpuState {
    const NAME: &'static str = "x86-vcpu";
    const VERSION: u16 = 1;

    fn encode(&self, w: &mut StateWriter) {
        w.bytes(self.mp_state.as_bytes());
        w.bytes(self.regs.as_bytes());
        w.bytes(self.sregs.as_bytes());
        w.bytes(self.xsave.as_bytes());
        w.bytes(self.xcrs.as_bytes());
        w.bytes(self.debugregs.as_bytes());
        w.bytes(self.lapic.as_bytes());
        w.u32(self.msrs.len() as u32);
        for (i, d) in &self.msrs {
            w.u32(*i);
            w.u64(*d);
        }
        w.bytes(self.events.as_bytes());
        w.u32(self.cpuid.len() as u32);
        for e in &self.cpuid {
            w.bytes(e.as_bytes());
        }
    }

    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let n = Self::NAME;
        let mp_state = kvm_struct(r, n)?;
        let regs = kvm_struct(r, n)?;
        let sregs = kvm_struct(r, n)?;
        let xsave: Box<[u32; 1024]> = Box::new(kvm_struct(r, n)?);
        let xcrs = kvm_struct(r, n)?;
        let debugregs = kvm_struct(r, n)?;
        let lapic = kvm_struct(r, n)?;
        let count = r.u32()?;
        if count > MAX_ENTRIES {
            return Err(StateError::Invalid {
                name: n,
                why: format!("{count} MSRs"),
            });
        }
        let mut msrs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            msrs.push((r.u32()?, r.u64()?));
        }
        let events = kvm_struct(r, n)?;
        let count = r.u32()?;
        if count > MAX_ENTRIES {
            return Err(StateError::Invalid {
                name: n,
                why: format!("{count} CPUID entries"),
            });
        }
        let mut cpuid = Vec::with_capacity(count as usize);
        for _ in 0..count {
            cpuid.push(kvm_struct(r, n)?);
        }
        Ok(VcpuState {
            mp_state,
            regs,
            sregs,
            xsave,
            xcrs,
            debugregs,
            lapic,
            msrs,
            events,
            cpuid,
        })
    }
}
