//! The log of the guest pages the VMM (devices) wrote, one bit per 4 KiB page, as
//! vm-memory's dirty bitmap of guest RAM: every write made through vm-memory (`Bytes`,
//! virtio-queue's used ring and `Writer`) marks its pages.
//!
//! Unlike vm-memory's `AtomicBitmap`, it also keeps one summary bit per word of the log
//! (per 64 pages), set after the word's bits: taking the log reads the summary and only
//! the words it marks, so its cost follows what devices wrote, not the size of RAM (at
//! 64 GiB the log is 2 MiB, the summary 32 KiB), and taking it allocates nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use vm_memory::bitmap::{Bitmap, NewBitmap, RefSlice, WithBitmapSlice};

/// The page size the log counts in.
const PAGE: usize = 4096;

/// Which pages of one RAM region devices wrote since the log was last taken.
#[derive(Debug, Default)]
pub struct PageLog {
    /// One bit per page.
    words: Vec<AtomicU64>,
    /// One bit per word of `words` that may have bits set.
    summary: Vec<AtomicU64>,
    pages: usize,
}

fn zeroed(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl PageLog {
    /// A log over `bytes` bytes of RAM, nothing written.
    pub fn new(bytes: usize) -> Self {
        let pages = bytes.div_ceil(PAGE);
        let words = pages.div_ceil(64);
        PageLog {
            words: zeroed(words),
            summary: zeroed(words.div_ceil(64)),
            pages,
        }
    }

    /// Whether the page holding byte `addr` (of the region) was written.
    pub fn is_addr_set(&self, addr: usize) -> bool {
        let p = addr / PAGE;
        p < self.pages && self.words[p / 64].load(Ordering::Acquire) & (1 << (p % 64)) != 0
    }

    /// Marks the pages of bytes `start..start + len` as written (pages past the end are
    /// ignored).
    pub fn mark(&self, start: usize, len: usize) {
        if len == 0 || start / PAGE >= self.pages {
            return;
        }
        let first = start / PAGE;
        let last = (start.saturating_add(len - 1) / PAGE).min(self.pages - 1);
        let mut p = first;
        while p <= last {
            let w = p / 64;
            let hi = last.min(w * 64 + 63);
            let bits = (hi - p + 1) as u32;
            let mask = if bits == 64 { u64::MAX } else { ((1u64 << bits) - 1) << (p % 64) };
            // The word first, then its summary bit: whoever sees the summary bit sees the word.
            self.words[w].fetch_or(mask, Ordering::SeqCst);
            self.summary[w / 64].fetch_or(1 << (w % 64), Ordering::SeqCst);
            p = hi + 1;
        }
    }

    /// ORs the written pages into `into` (one bit per page, in KVM's layout) and clears
    /// them. A write racing with this shows here or in the next take, never nowhere.
    pub fn take_into(&self, into: &mut [u64]) {
        self.drain(|w, bits| {
            if let Some(x) = into.get_mut(w) {
                *x |= bits;
            }
        });
    }

    /// Forgets every write so far.
    pub fn reset(&self) {
        self.drain(|_, _| {});
    }

    /// Clears every marked word, handing each (index, bits) to `f`.
    fn drain(&self, mut f: impl FnMut(usize, u64)) {
        for (i, s) in self.summary.iter().enumerate() {
            if s.load(Ordering::Acquire) == 0 {
                continue;
            }
            let mut marked = s.swap(0, Ordering::SeqCst);
            while marked != 0 {
                let w = i * 64 + marked.trailing_zeros() as usize;
                marked &= marked - 1;
                let bits = self.words[w].swap(0, Ordering::SeqCst);
                if bits != 0 {
                    f(w, bits);
                }
            }
        }
    }
}

impl<'a> WithBitmapSlice<'a> for PageLog {
    type S = RefSlice<'a, Self>;
}

impl Bitmap for PageLog {
    fn mark_dirty(&self, offset: usize, len: usize) {
        self.mark(offset, len)
    }

    fn dirty_at(&self, offset: usize) -> bool {
        self.is_addr_set(offset)
    }

    fn slice_at(&self, offset: usize) -> RefSlice<'_, Self> {
        RefSlice::new(self, offset)
    }
}

impl NewBitmap for PageLog {
    fn with_len(len: usize) -> Self {
        PageLog::new(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(log: &PageLog) -> Vec<u64> {
        let mut v = vec![0u64; log.words.len()];
        log.take_into(&mut v);
        v
    }

    #[test]
    fn marks_whole_pages_across_words_and_takes_them_once() {
        let log = PageLog::new(300 * PAGE);
        log.mark(5 * PAGE + 10, 1);
        log.mark(60 * PAGE, 70 * PAGE); // pages 60..130: three words
        log.mark(299 * PAGE + 4000, 500); // the last page; the rest is past the end
        assert!(log.is_addr_set(5 * PAGE) && log.is_addr_set(129 * PAGE + 1) && !log.is_addr_set(130 * PAGE));
        let mut want = vec![0u64; 5];
        for p in [5usize].into_iter().chain(60..130).chain([299]) {
            want[p / 64] |= 1 << (p % 64);
        }
        assert_eq!(taken(&log), want);
        assert_eq!(taken(&log), vec![0; 5], "taking clears");
        assert!(!log.is_addr_set(5 * PAGE));
    }

    #[test]
    fn ignores_empty_and_out_of_range_writes_and_resets() {
        let log = PageLog::new(64 * PAGE);
        log.mark(3 * PAGE, 0);
        log.mark(64 * PAGE, PAGE);
        log.mark(usize::MAX - 10, 100);
        assert_eq!(taken(&log), vec![0]);
        log.mark(0, 64 * PAGE);
        assert_eq!(taken(&log), vec![u64::MAX]);
        log.mark(PAGE, 1);
        log.reset();
        assert_eq!(taken(&log), vec![0]);
    }

    /// Pages in words far apart, past several summary words: only those arrive, OR'ed
    /// into what the buffer held.
    #[test]
    fn take_ors_into_the_buffer() {
        let log = PageLog::new(64 * 64 * 3 * PAGE);
        log.mark(7 * PAGE, 1);
        log.mark((64 * 64 * 2 + 1) * PAGE, 1);
        let mut v = vec![0u64; 64 * 3];
        v[0] = 1;
        log.take_into(&mut v);
        assert_eq!(v[0], 1 | 1 << 7);
        assert_eq!(v[128], 2);
        assert_eq!(v.iter().filter(|w| **w != 0).count(), 2);
    }

    /// Through vm-memory: a write to guest memory marks its pages.
    #[test]
    fn guest_memory_writes_mark_the_log() {
        use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, MmapRegion};
        let mem = GuestMemoryMmap::<PageLog>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        mem.write_slice(&[1u8; 5000], GuestAddress(3 * PAGE as u64)).unwrap();
        let region: &MmapRegion<PageLog> = mem.iter().next().unwrap();
        assert_eq!(taken(region.bitmap()), {
            let mut v = vec![0u64; 4];
            v[0] = 0b11 << 3;
            v
        });
    }
}
