//! Getting the guest to its first instruction: a Linux bzImage through the 64-bit boot
//! protocol, or firmware at the reset vector; plus the MP table for `-smp`.

pub mod bios;
pub mod e820;
pub mod linux;
pub mod mptable;
pub mod paging;

use thiserror::Error;
use vm_memory::GuestMemoryError;

/// Why the guest could not be readied for its first instruction.
#[derive(Debug, Error)]
pub enum BootError {
    #[error("could not open kernel file '{path}': {}", crate::errtext::io(err))]
    OpenKernel {
        path: String,
        #[source]
        err: std::io::Error,
    },
    #[error("invalid kernel header")]
    BadKernel,
    /// The kernel (its path) is too old for the 64-bit boot protocol.
    #[error("kernel '{0}' has no 64-bit entry point (needs boot protocol 2.12+ with XLF_KERNEL_64)")]
    No64BitEntry(String),
    #[error("kernel does not fit in guest memory: {0}")]
    KernelLoad(#[source] linux_loader::loader::Error),
    #[error("could not load initial ram disk '{path}': {}", crate::errtext::io(err))]
    InitrdRead {
        path: String,
        #[source]
        err: std::io::Error,
    },
    /// The initrd (`size` bytes) does not fit between the kernel and its highest address.
    #[error("could not load initial ram disk '{path}': {size} bytes do not fit in guest memory above the kernel")]
    InitrdTooBig { path: String, size: u64 },
    #[error("could not load initial ram disk '{path}': {err}")]
    InitrdWrite {
        path: String,
        #[source]
        err: GuestMemoryError,
    },
    #[error("kernel command line too long ({len} bytes, the kernel accepts {max})")]
    CmdlineTooLong { len: usize, max: usize },
    /// The firmware image (its path) is unreadable or not a plausible BIOS size.
    #[error("could not load PC BIOS '{0}'")]
    Bios(String),
    /// Writing the command line, zero page, page tables, MP table or BIOS copy failed.
    #[error("cannot write boot structures into guest memory: {0}")]
    Memory(#[from] GuestMemoryError),
    /// The e820 map has more entries than the zero page holds.
    #[error("cannot write boot structures into guest memory: memory map too large")]
    E820TooLarge,
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
