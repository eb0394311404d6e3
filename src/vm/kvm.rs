//! The KVM VM object: in-kernel interrupt controllers, PIT, and the pages KVM reserves.

use crate::layout::{KVM_IDENTITY_MAP, KVM_TSS};
use kvm_bindings::kvm_pit_config;
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
    let c = std::ffi::CString::new(path.clone()).map_err(|_| KvmError::Open { path: path.clone(), err: kvm_ioctls::Error::new(libc::EINVAL) })?;
    Kvm::new_with_path(&c).map_err(|err| KvmError::Open { path, err })
}

fn setup(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> KvmError {
    move |err| KvmError::Setup { what, err }
}

pub fn create_vm(kvm: &Kvm) -> Result<VmFd, KvmError> {
    let vm = kvm.create_vm().map_err(setup("KVM_CREATE_VM"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP).map_err(setup("KVM_SET_IDENTITY_MAP_ADDR"))?;
    vm.set_tss_address(KVM_TSS as usize).map_err(setup("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(setup("KVM_CREATE_IRQCHIP"))?;
    // flags 0: the kernel also serves the PC speaker port 0x61, whose OUT2 bit guests use
    // to calibrate their clocks against PIT channel 2.
    vm.create_pit2(kvm_pit_config::default()).map_err(setup("KVM_CREATE_PIT2"))?;
    Ok(vm)
}

/// Guest physical address width the host supports (CPUID 0x80000008 EAX[7:0]).
pub fn phys_bits(cpuid: &kvm_bindings::CpuId) -> u32 {
    cpuid.as_slice().iter().find(|e| e.function == 0x8000_0008).map_or(36, |e| e.eax & 0xff)
}
