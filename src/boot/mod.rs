//! Getting the guest to its first instruction: a Linux bzImage through the 64-bit boot
//! protocol, or firmware at the reset vector; plus the MP table for `-smp`.

pub mod bios;
pub mod e820;
pub mod linux;
pub mod mptable;
pub mod paging;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BootError {
    #[error("could not open kernel file '{path}': {}", crate::errtext::io(err))]
    OpenKernel { path: String, err: std::io::Error },
    #[error("invalid kernel header")]
    BadKernel,
    #[error("kernel '{0}' has no 64-bit entry point (needs boot protocol 2.12+ with XLF_KERNEL_64)")]
    No64BitEntry(String),
    #[error("kernel does not fit in guest memory: {0}")]
    KernelLoad(String),
    #[error("could not load initial ram disk '{path}': {err}")]
    Initrd { path: String, err: String },
    #[error("kernel command line too long ({len} bytes, the kernel accepts {max})")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("could not load PC BIOS '{0}'")]
    Bios(String),
    #[error("cannot write boot structures into guest memory: {0}")]
    Memory(String),
    #[error("too many vCPUs for the MP table: {0}")]
    TooManyCpus(u8),
}

/// How the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// 64-bit Linux entry: long mode with identity paging, RSI = zero page.
    Linux64 { rip: u64, zero_page: u64 },
    /// Power-on state: CS:IP = F000:FFF0 with CS base 0xFFFF0000.
    ResetVector,
}
