//! A dirty bitmap over a virtual disk: which granules the guest wrote since the bitmap
//! was last read. Block migration turns it on before it starts copying, so every write
//! that lands behind the copy is sent again.
//!
//! The device marks a range *after* its write completed (while it still holds the image's
//! lock); the reader takes the bits *before* it reads the data. Either the reader's copy
//! already holds the write, or the bit is set again and the granule goes out once more: no
//! write can be missed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes per bit: small enough that a scattered write resends little, large enough that a
/// 2 TiB disk needs only 4 MiB of bitmap.
pub const GRANULE: u64 = 64 << 10;

pub struct DirtyMap {
    size: u64,
    enabled: AtomicBool,
    words: Box<[AtomicU64]>,
}

impl DirtyMap {
    /// A bitmap for a disk of `size` bytes, off until [`start`](Self::start).
    pub fn new(size: u64) -> DirtyMap {
        let granules = size.div_ceil(GRANULE);
        DirtyMap {
            size,
            enabled: AtomicBool::new(false),
            words: (0..granules.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of granules (bits).
    pub fn granules(&self) -> u64 {
        self.size.div_ceil(GRANULE)
    }

    /// The disk size the bitmap covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Clears every bit and starts recording writes.
    pub fn start(&self) {
        for w in self.words.iter() {
            w.store(0, Ordering::SeqCst);
        }
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// Stops recording and forgets what was recorded.
    pub fn stop(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        for w in self.words.iter() {
            w.store(0, Ordering::SeqCst);
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Records a completed write of `[offset, offset+len)` (a no-op while off).
    pub fn mark(&self, offset: u64, len: u64) {
        if len == 0 || !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return;
        }
        for g in offset / GRANULE..end.div_ceil(GRANULE) {
            self.words[(g / 64) as usize].fetch_or(1 << (g % 64), Ordering::SeqCst);
        }
    }

    /// Forgets writes to the granules that lie wholly inside `[offset, offset+len)`: the
    /// caller is about to read that range and send it. Partly covered granules stay set.
    pub fn clear(&self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size);
        let first = offset.div_ceil(GRANULE);
        // The disk's last granule may be short: it counts as covered when the range
        // reaches the end of the disk.
        let last = if end == self.size { self.granules() } else { end / GRANULE };
        for g in first..last {
            self.words[(g / 64) as usize].fetch_and(!(1 << (g % 64)), Ordering::SeqCst);
        }
    }

    /// Returns the bits set so far and clears them.
    pub fn take(&self) -> Vec<u64> {
        self.words.iter().map(|w| w.swap(0, Ordering::SeqCst)).collect()
    }

    /// Bytes of disk the bits set in `bits` stand for (the last granule may be short).
    pub fn bytes_of(&self, bits: &[u64]) -> u64 {
        runs(bits, self.granules(), u64::MAX)
            .map(|(first, count)| {
                let start = first * GRANULE;
                ((first + count) * GRANULE).min(self.size) - start
            })
            .sum()
    }
}

/// Runs of set bits among the first `n` bits of `bits`, as (first, count), none longer
/// than `max` (a longer run comes out in pieces). Used for RAM pages and disk granules alike.
pub fn runs(bits: &[u64], n: u64, max: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut i = 0u64;
    std::iter::from_fn(move || {
        while i < n {
            let w = bits[(i / 64) as usize];
            if w >> (i % 64) == 0 {
                i = (i / 64 + 1) * 64;
                continue;
            }
            if w & (1 << (i % 64)) == 0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && i - start < max && bits[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                i += 1;
            }
            return Some((start, i - start));
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_while_on() {
        let m = DirtyMap::new(10 * GRANULE + 512);
        assert_eq!(m.granules(), 11);
        m.mark(0, 4096);
        assert!(m.take().iter().all(|w| *w == 0));
        m.start();
        m.mark(GRANULE - 512, 1024); // straddles granules 0 and 1
        m.mark(10 * GRANULE, 512); // the short last granule
        m.mark(u64::MAX - 10, 100); // past the end: ignored, no panic
        let bits = m.take();
        assert_eq!(runs(&bits, m.granules(), u64::MAX).collect::<Vec<_>>(), vec![(0, 2), (10, 1)]);
        assert_eq!(m.bytes_of(&bits), 2 * GRANULE + 512);
        assert!(m.take().iter().all(|w| *w == 0), "take clears");
        m.stop();
        m.mark(0, 1);
        assert!(m.take().iter().all(|w| *w == 0));
    }

    #[test]
    fn clear_keeps_partly_covered_granules() {
        let m = DirtyMap::new(4 * GRANULE);
        m.start();
        m.mark(0, 4 * GRANULE);
        m.clear(512, 2 * GRANULE); // covers granule 1 only wholly
        let bits = m.take();
        assert_eq!(runs(&bits, 4, u64::MAX).collect::<Vec<_>>(), vec![(0, 1), (2, 2)]);
        m.mark(0, 4 * GRANULE);
        m.clear(3 * GRANULE, GRANULE);
        assert_eq!(runs(&m.take(), 4, u64::MAX).collect::<Vec<_>>(), vec![(0, 3)]);
    }

    #[test]
    fn runs_cross_words() {
        let mut bits = vec![0u64; 3];
        for i in 60..130 {
            bits[i / 64] |= 1 << (i % 64);
        }
        bits[2] |= 1 << 63;
        assert_eq!(runs(&bits, 192, u64::MAX).collect::<Vec<_>>(), vec![(60, 70), (191, 1)]);
        assert_eq!(runs(&bits, 192, 50).collect::<Vec<_>>(), vec![(60, 50), (110, 20), (191, 1)]);
        assert_eq!(runs(&bits, 100, u64::MAX).collect::<Vec<_>>(), vec![(60, 40)]);
    }
}
