//! The KVM VM object: in-kernel interrupt controllers, PIT, and the pages KVM reserves.

use crate::layout::{KVM_IDENTITY_MAP, KVM_TSS};
use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Kvm, VmFd};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KvmError {
    #[error("Could not access KVM kernel module ({path}): {}", crate::errtext::kvm(err))]
    Open { path: String, err: kvm_ioctls::Error },
    #[error("failed to initialize kvm: {what}: {}", crate::errtext::kvm(err))]
    Setup { what: &'static str, err: kvm_ioctls::Error },
}

/// The KVM device, normally /dev/kvm; `GODWIT_KVM_DEVICE` names another path (used to
/// test the error a host without KVM gives).
pub fn open() -> Result<Kvm, KvmError> {
    let path = std::env::var("GODWIT_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".into());
    let c = std::ffi::CString::new(path.clone()).map_err(|_| KvmError::Open {
        path: path.clone(),
        err: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    Kvm::new_with_path(&c).map_err(|err| KvmError::Open { path, err })
}

fn setup(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> KvmError {
    move |err| KvmError::Setup { what, err }
}

pub fn create_vm(kvm: &Kvm) -> Result<VmFd, KvmError> {
    let vm = kvm.create_vm().map_err(setup("KVM_CREATE_VM"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP)
        .map_err(setup("KVM_SET_IDENTITY_MAP_ADDR"))?;
    vm.set_tss_address(KVM_TSS as usize).map_err(setup("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(setup("KVM_CREATE_IRQCHIP"))?;
    // Port 0x61 is served in userspace (devices::legacy::speaker), as QEMU does: the
    // kernel's own speaker port gave a wrong OUT2 on some hosts (PVM), which broke guests'
    // PIT-based TSC calibration.
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(setup("KVM_CREATE_PIT2"))?;
    Ok(vm)
}

/// Guest physical address width the host supports (CPUID 0x80000008 EAX[7:0]).
pub fn phys_bits(cpuid: &kvm_bindings::CpuId) -> u32 {
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == 0x8000_0008)
        .map_or(36, |e| e.eax & 0xff)
}

/// PIT channel 2 for the speaker port, read from and written to the in-kernel PIT.
pub struct KvmPit2(pub std::sync::Arc<VmFd>);

impl devices::legacy::speaker::Pit2 for KvmPit2 {
    fn channel2(&self) -> Option<devices::legacy::speaker::Channel2> {
        let s = self.0.get_pit2().ok()?;
        let c = &s.channels[2];
        Some(devices::legacy::speaker::Channel2 {
            mode: c.mode,
            count: c.count,
            gate: c.gate != 0,
            load_time_ns: c.count_load_time,
        })
    }

    fn set_gate2(&self, gate: bool) {
        if let Ok(mut s) = self.0.get_pit2() {
            s.channels[2].gate = u8::from(gate);
            // KVM reloads every channel's count on SET_PIT2; a rising gate restarting the
            // count is what the 8254 does in the modes guests use for timing.
            let _ = self.0.set_pit2(&s);
        }
    }

    fn now_ns(&self) -> i64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own. KVM's count_load_time is
        // ktime_get(), i.e. CLOCK_MONOTONIC.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
}
