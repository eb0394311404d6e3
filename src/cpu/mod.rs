//! vCPUs: their initial state (CPUID, MSRs, registers) and the threads that run them.

pub mod control;
pub mod cpuid;
pub mod features;
pub mod msrs;
pub mod registers_text;
pub mod setup;
pub mod state;
pub mod thread;
pub mod throttle;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CpuError {
    #[error("cannot create vCPU {0}: {1}")]
    Create(u8, kvm_ioctls::Error),
    #[error("vCPU {cpu}: {what} failed: {err}")]
    Ioctl {
        cpu: u8,
        what: &'static str,
        err: kvm_ioctls::Error,
    },
    #[error("vCPU {cpu}: KVM accepted only {set} of {want} boot MSRs")]
    Msrs { cpu: u8, set: usize, want: usize },
    #[error("cannot read KVM's supported CPUID: {0}")]
    SupportedCpuid(kvm_ioctls::Error),
    #[error("cannot start vCPU thread: {0}")]
    Thread(std::io::Error),
}
