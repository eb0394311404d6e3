//! Which guest pages to send: the pages the guest ever touched (first pass), then the pages
//! written since the last look (KVM's dirty log for the guest's own writes, OR'ed with
//! vm-memory's bitmap for writes devices made through the VMM).

use crate::memory::{GuestRam, MemoryError};
use kvm_ioctls::VmFd;
use std::fs::File;
use std::os::unix::fs::FileExt;
use thiserror::Error;
use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{GuestMemoryBackend, GuestMemoryError, GuestMemoryRegion, MmapRegion};

pub const PAGE: u64 = 4096;

/// Why the pages to send could not be found.
#[derive(Debug, Error)]
pub enum DirtyError {
    /// Dirty logging could not be turned on (the slots re-registered with logging).
    #[error(transparent)]
    Start(#[from] MemoryError),
    /// KVM would not hand over a slot's dirty log.
    #[error("KVM_GET_DIRTY_LOG: {err}")]
    Log {
        slot: u32,
        #[source]
        err: kvm_ioctls::Error,
    },
    /// `/proc/self/pagemap`, which tells the pages the guest touched, could not be read.
    #[error("/proc/self/pagemap: {0}")]
    Pagemap(#[source] std::io::Error),
    /// A RAM region has no host mapping.
    #[error(transparent)]
    HostAddress(#[from] GuestMemoryError),
}

/// A bitmap over one region's pages, one bit per page, in KVM's layout.
pub type Bitmap = Vec<u64>;

fn region_bitmap(r: &vm_memory::GuestRegionMmap<AtomicBitmap>) -> &AtomicBitmap {
    let m: &MmapRegion<AtomicBitmap> = r;
    m.bitmap()
}

/// Turns on dirty logging for every RAM slot and forgets earlier device writes.
pub fn start(vm: &VmFd, ram: &GuestRam) -> Result<(), DirtyError> {
    crate::memory::register(vm, ram, true)?;
    for r in ram.iter() {
        region_bitmap(r).reset();
    }
    Ok(())
}

/// Turns dirty logging off again (it slows the guest's writes down).
pub fn stop(vm: &VmFd, ram: &GuestRam) {
    let _ = crate::memory::register(vm, ram, false);
}

/// Pages written since the last call (or since `start`), per region.
pub fn collect(vm: &VmFd, ram: &GuestRam) -> Result<Vec<Bitmap>, DirtyError> {
    let mut out = Vec::new();
    for (slot, r) in ram.iter().enumerate() {
        let slot = slot as u32;
        let mut kvm = vm
            .get_dirty_log(slot, r.len() as usize)
            .map_err(|err| DirtyError::Log { slot, err })?;
        let dev = region_bitmap(r).get_and_reset();
        for (k, d) in kvm.iter_mut().zip(dev) {
            *k |= d;
        }
        out.push(kvm);
    }
    Ok(out)
}

pub fn count(bitmaps: &[Bitmap]) -> u64 {
    bitmaps.iter().flatten().map(|w| u64::from(w.count_ones())).sum()
}

/// Pages of each region the guest (or the VMM) ever touched: present in RAM or swapped out,
/// according to /proc/self/pagemap. Pages never touched read as zero and need no sending.
pub fn touched(ram: &GuestRam) -> Result<Vec<Bitmap>, DirtyError> {
    let pm = File::open("/proc/self/pagemap").map_err(DirtyError::Pagemap)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8 * 8192];
    for r in ram.iter() {
        let host = ram.get_host_address(r.start_addr())? as u64;
        let pages = r.len() / PAGE;
        let mut bm = vec![0u64; pages.div_ceil(64) as usize];
        let mut page = 0u64;
        while page < pages {
            let n = (pages - page).min(8192);
            let bytes = &mut buf[..(n * 8) as usize];
            pm.read_exact_at(bytes, (host / PAGE + page) * 8).map_err(DirtyError::Pagemap)?;
            for (i, e) in bytes.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(e.try_into().expect("8 bytes"));
                // bit 63: present, bit 62: swapped
                if v & (3 << 62) != 0 {
                    let p = page + i as u64;
                    bm[(p / 64) as usize] |= 1 << (p % 64);
                }
            }
            page += n;
        }
        out.push(bm);
    }
    Ok(out)
}

/// Runs of dirty pages, as (first page, count), at most `max` long.
pub use devices::block::dirty::runs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_and_bound() {
        let mut bm = vec![0u64; 4];
        for p in [1u64, 2, 3, 64, 65, 130, 200, 201, 202, 203, 204] {
            bm[(p / 64) as usize] |= 1 << (p % 64);
        }
        let r: Vec<_> = runs(&bm, 256, 3).collect();
        assert_eq!(r, vec![(1, 3), (64, 2), (130, 1), (200, 3), (203, 2)]);
        assert_eq!(runs(&bm, 100, 256).collect::<Vec<_>>(), vec![(1, 3), (64, 2)]);
    }

    #[test]
    fn pagemap_sees_only_touched_pages() {
        use vm_memory::{Bytes, GuestAddress};
        let ram = GuestRam::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        ram.write_obj(1u64, GuestAddress(5 * PAGE)).unwrap();
        ram.write_obj(1u64, GuestAddress(1000 * PAGE + 8)).unwrap();
        let t = touched(&ram).unwrap();
        let got: Vec<_> = runs(&t[0], (64 << 20) / PAGE, 1 << 20).collect();
        assert_eq!(got, vec![(5, 1), (1000, 1)]);
    }
}
