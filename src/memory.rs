//! Guest RAM: anonymous mappings with vm-memory's dirty bitmap, registered as KVM slots.

use crate::layout;
use devices::pagelog::PageLog;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use thiserror::Error;
use vm_memory::mmap::FromRangesError;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap, GuestMemoryRegion};

/// Guest RAM whose writes made through vm-memory are logged in a per-page bitmap
/// (KVM logs the guest's own writes; migration ORs the two).
pub type GuestRam = GuestMemoryMmap<PageLog>;

/// Why guest RAM could not be set up, registered with KVM or given back to the kernel.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// A RAM range is larger than this host's address space.
    #[error("cannot set up guest memory 'pc.ram': size exceeds the address space")]
    AddressSpace,
    /// The anonymous mappings could not be made (ENOMEM read as QEMU words it).
    #[error("cannot set up guest memory 'pc.ram': {}", describe(.0))]
    Map(#[source] FromRangesError),
    #[error("guest memory of {size} bytes does not fit in this host's {bits}-bit guest physical address space")]
    TooBig { size: u64, bits: u32 },
    /// A guest range has no host mapping.
    #[error("cannot set up guest memory 'pc.ram': {0}")]
    HostAddress(#[source] GuestMemoryError),
    /// `madvise(MADV_DONTNEED)` refused to give pages back.
    #[error("cannot set up guest memory 'pc.ram': {0}")]
    Discard(#[source] std::io::Error),
    #[error("cannot register guest memory with KVM: {0}")]
    Register(#[source] kvm_ioctls::Error),
}

/// Maps `size` bytes of guest RAM laid out by [`layout::ram_ranges`].
pub fn create(size: u64, phys_bits: u32) -> Result<GuestRam, MemoryError> {
    let ranges = layout::ram_ranges(size);
    let end = ranges.last().map_or(0, |(s, l)| s + l);
    if phys_bits < 64 && end > (1u64 << phys_bits) {
        return Err(MemoryError::TooBig { size, bits: phys_bits });
    }
    let ranges: Vec<(GuestAddress, usize)> = ranges
        .into_iter()
        .map(|(s, l)| usize::try_from(l).map(|l| (GuestAddress(s), l)))
        .collect::<Result<_, _>>()
        .map_err(|_| MemoryError::AddressSpace)?;
    GuestRam::from_ranges(&ranges).map_err(MemoryError::Map)
}

fn describe(e: &dyn std::error::Error) -> String {
    // vm-memory wraps the mmap errno; surface it in QEMU's words when it is ENOMEM.
    let text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::ENOMEM) {
                return "Cannot allocate memory".into();
            }
            return io.to_string();
        }
        src = s.source();
    }
    text
}

/// Registers every RAM region as a KVM memory slot (slot number = region index).
pub fn register(vm: &VmFd, ram: &GuestRam, log_dirty: bool) -> Result<(), MemoryError> {
    for (slot, region) in ram.iter().enumerate() {
        let host = ram.get_host_address(region.start_addr()).map_err(MemoryError::HostAddress)?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: if log_dirty { kvm_bindings::KVM_MEM_LOG_DIRTY_PAGES } else { 0 },
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: `host` points at a live mapping of `region.len()` bytes owned by `ram`,
        // which the VM keeps alive for as long as the VM fd exists.
        unsafe { vm.set_user_memory_region(r) }.map_err(MemoryError::Register)?;
    }
    Ok(())
}

/// Returns `len` bytes of guest RAM at `gpa` (page aligned, inside one region) to zero by
/// giving the pages back to the kernel, far cheaper than writing zeros.
pub fn discard_range(ram: &GuestRam, gpa: u64, len: u64) -> Result<(), MemoryError> {
    use vm_memory::GuestAddress;
    let host = ram.get_slice(GuestAddress(gpa), len as usize).map_err(MemoryError::HostAddress)?;
    // SAFETY: the slice lies inside a private anonymous mapping `ram` owns (get_slice checked
    // the range); MADV_DONTNEED only makes those pages read back as zero.
    let rc = unsafe { libc::madvise(host.ptr_guard_mut().as_ptr().cast(), len as usize, libc::MADV_DONTNEED) };
    if rc != 0 {
        return Err(MemoryError::Discard(std::io::Error::last_os_error()));
    }
    Ok(())
}
