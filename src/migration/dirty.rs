//! Which guest pages to send: the pages the guest ever touched (first pass), then the pages
//! written since the last look (see [`super::dirtylog`]), as bitmaps, and the helpers that
//! walk them.

use crate::memory::MemoryError;
use thiserror::Error;
use vm_memory::GuestMemoryError;

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
    /// KVM refused manual protection of the dirty log, though it offers it.
    #[error("KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2): {0}")]
    Manual(#[source] kvm_ioctls::Error),
    /// KVM would not clear (and write-protect) pages of a slot's dirty log.
    #[error("KVM_CLEAR_DIRTY_LOG: {err}")]
    Clear {
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

pub fn count(bitmaps: &[Bitmap]) -> u64 {
    bitmaps.iter().flatten().map(|w| u64::from(w.count_ones())).sum()
}

/// Pages of each region the guest (or the VMM) ever touched: present in RAM or swapped
/// out. Pages never touched read as zero and need no sending.
pub use super::pagemap::touched;

/// Runs of dirty pages, as (first page, count), at most `max` long.
pub use devices::block::dirty::runs;

/// [`runs`] among pages `lo..hi` only.
pub fn runs_between(bm: &[u64], lo: u64, hi: u64, max: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let base = lo / 64 * 64;
    let words = &bm[(base / 64) as usize..];
    runs(words, hi.saturating_sub(base), max).filter_map(move |(first, count)| {
        let (first, end) = (first + base, first + base + count);
        (end > lo).then(|| (first.max(lo), end - first.max(lo)))
    })
}

/// Clears the bits of pages `first..first + count`.
pub fn clear(bm: &mut [u64], first: u64, count: u64) {
    for p in first..first + count {
        bm[(p / 64) as usize] &= !(1 << (p % 64));
    }
}

/// ORs `from` into `into`, region by region.
pub fn merge(into: &mut [Bitmap], from: &[Bitmap]) {
    for (a, b) in into.iter_mut().zip(from) {
        for (x, y) in a.iter_mut().zip(b) {
            *x |= y;
        }
    }
}

/// Test view of per-region bitmaps: each region's dirty runs (start page, pages).
#[cfg(test)]
pub fn listed(bms: &[Bitmap], ram: &crate::memory::GuestRam) -> Vec<Vec<(u64, u64)>> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    bms.iter()
        .zip(ram.iter())
        .map(|(b, r)| runs(b, r.len() / PAGE, 1 << 20).collect())
        .collect()
}

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
    fn runs_between_clips_and_clear_merge() {
        let mut bm = vec![0u64; 4];
        for p in [1u64, 2, 3, 64, 65, 130, 200, 201, 202, 203, 204] {
            bm[(p / 64) as usize] |= 1 << (p % 64);
        }
        assert_eq!(runs_between(&bm, 2, 131, 256).collect::<Vec<_>>(), vec![(2, 2), (64, 2), (130, 1)]);
        assert_eq!(runs_between(&bm, 202, 256, 256).collect::<Vec<_>>(), vec![(202, 3)]);
        assert_eq!(runs_between(&bm, 0, 2, 256).collect::<Vec<_>>(), vec![(1, 1)]);
        clear(&mut bm, 64, 2);
        assert_eq!(runs_between(&bm, 4, 200, 256).collect::<Vec<_>>(), vec![(130, 1)]);
        let mut a = vec![vec![1u64], vec![0]];
        merge(&mut a, &[vec![2], vec![4]]);
        assert_eq!(a, vec![vec![3], vec![4]]);
    }
}
