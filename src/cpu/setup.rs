//! Putting a fresh vCPU into its power-on or boot-protocol state.

use super::CpuError;
use super::{cpuid, msrs};
use crate::boot::Entry;
use crate::boot::paging::{BOOT_CS, BOOT_DS};
use crate::layout::{BOOT_GDT, BOOT_IDT, BOOT_STACK, PML4};
use kvm_bindings::{CpuId, kvm_fpu, kvm_regs, kvm_segment};
use kvm_ioctls::VcpuFd;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

fn ioctl(cpu: u8, what: &'static str) -> impl Fn(kvm_ioctls::Error) -> CpuError {
    move |err| CpuError::Ioctl { cpu, what, err }
}

/// CPUID, MSRs, FPU and local APIC wiring: done for every vCPU.
pub fn configure(vcpu: &VcpuFd, id: u8, count: u8, base_cpuid: &CpuId) -> Result<(), CpuError> {
    vcpu.set_cpuid2(&cpuid::for_vcpu(base_cpuid, id, count))
        .map_err(ioctl(id, "KVM_SET_CPUID2"))?;
    let msrs = msrs::boot_msrs();
    let set = vcpu.set_msrs(&msrs).map_err(ioctl(id, "KVM_SET_MSRS"))?;
    if set != msrs.as_slice().len() {
        return Err(CpuError::Msrs {
            cpu: id,
            set,
            want: msrs.as_slice().len(),
        });
    }
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(ioctl(id, "KVM_SET_FPU"))?;
    set_lint(vcpu, id)
}

/// LINT0 takes the 8259's ExtINT and LINT1 takes NMI, the virtual-wire set-up firmware does.
fn set_lint(vcpu: &VcpuFd, id: u8) -> Result<(), CpuError> {
    let mut lapic = vcpu.get_lapic().map_err(ioctl(id, "KVM_GET_LAPIC"))?;
    let rw = |regs: &mut [i8], off: usize, f: &dyn Fn(u32) -> u32| {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = regs[off + i] as u8;
        }
        let v = f(u32::from_le_bytes(b)).to_le_bytes();
        for (i, x) in v.iter().enumerate() {
            regs[off + i] = *x as i8;
        }
    };
    let set_mode = |mode: u32| move |v: u32| (v & !0x700) | (mode << 8);
    rw(&mut lapic.regs, APIC_LVT0, &set_mode(APIC_MODE_EXTINT));
    rw(&mut lapic.regs, APIC_LVT1, &set_mode(APIC_MODE_NMI));
    vcpu.set_lapic(&lapic).map_err(ioctl(id, "KVM_SET_LAPIC"))
}

/// Registers for the boot vCPU. `ResetVector` keeps KVM's power-on state.
pub fn set_entry(vcpu: &VcpuFd, entry: Entry) -> Result<(), CpuError> {
    let Entry::Linux64 { rip, zero_page } = entry else { return Ok(()) };
    let mut sregs = vcpu.get_sregs().map_err(ioctl(0, "KVM_GET_SREGS"))?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: BOOT_CS,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        selector: BOOT_DS,
        type_: 0x3,
        l: 0,
        db: 1,
        ..code
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = BOOT_IDT;
    sregs.idt.limit = 0;
    sregs.cr3 = PML4;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(ioctl(0, "KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rflags: 0x2,
        rip,
        rsi: zero_page,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(ioctl(0, "KVM_SET_REGS"))
}
