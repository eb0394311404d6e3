//! The sender's side of xbzrle: each page against its cached copy, as a delta, a whole
//! page, or a zero page, into the record being filled; and the figures `info migrate`
//! shows.

use super::cache::PageCache;
use super::codec;
use super::record::{Batch, Entry, MAX_DELTA};
use crate::migration::stream::PAGE_SIZE;

/// What `xbzrle-cache` in `query-migrate` reports, all measured: the engine's type itself,
/// kept up to date as pages go out.
pub type Counters = monitor::engine::XbzrleCacheStats;

/// How one page went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Zero,
    Whole,
    Delta,
}

pub struct XbzrleSender {
    cache: PageCache,
    batch: Batch,
    delta: Vec<u8>,
    pub counters: Counters,
    /// One bit per guest page: sent before. A page's first copy is no miss (QEMU's bulk
    /// stage counts none either); only a page sent again is looked for in the cache.
    sent: Vec<u64>,
    /// Counters at the start of the period: bytes, delta pages, misses, pages handled.
    prev: (u64, u64, u64, u64),
    handled: u64,
    delta_pages: u64,
}

impl XbzrleSender {
    /// `ram` is the guest's RAM size, `ram_end` the end of its highest RAM region.
    pub fn new(cache_size: u64, ram: u64, ram_end: u64) -> Self {
        XbzrleSender {
            cache: PageCache::new(cache_size, ram),
            batch: Batch::default(),
            delta: Vec::with_capacity(PAGE_SIZE),
            counters: Counters {
                cache_size,
                ..Counters::default()
            },
            sent: vec![0u64; (ram_end / PAGE_SIZE as u64).div_ceil(64) as usize],
            prev: (0, 0, 0, 0),
            handled: 0,
            delta_pages: 0,
        }
    }

    /// Whether the batch must be written before `gpa` can join it.
    pub fn must_flush_before(&self, gpa: u64) -> bool {
        !self.batch.fits(gpa)
    }

    /// Bytes waiting in the batch.
    pub fn pending(&self) -> usize {
        self.batch.body.len()
    }

    /// The record to write (base address, body), if any.
    pub fn take(&mut self) -> Option<(u64, Vec<u8>)> {
        self.batch.take()
    }

    pub fn recycle(&mut self, body: Vec<u8>) {
        self.batch.recycle(body);
    }

    /// Adds page `gpa` (`page` is a stable copy of it) to the batch.
    pub fn page(&mut self, gpa: u64, page: &[u8], zero: bool) -> Sent {
        if zero {
            // The destination's copy becomes zero: so does the cached one.
            if let Some(c) = self.cache.get(gpa) {
                c.fill(0);
            }
            self.first_copy(gpa);
            self.batch.push(gpa, Entry::Zero);
            return Sent::Zero;
        }
        if self.first_copy(gpa) {
            self.cache.insert_cold(gpa, page);
            self.batch.push(gpa, Entry::Whole(page));
            return Sent::Whole;
        }
        self.handled += 1;
        let Some(old) = self.cache.get(gpa) else {
            self.counters.cache_miss += 1;
            self.cache.insert(gpa, page);
            self.batch.push(gpa, Entry::Whole(page));
            return Sent::Whole;
        };
        self.counters.pages += 1;
        if !codec::encode(old, page, MAX_DELTA, &mut self.delta) {
            self.counters.overflow += 1;
            self.cache.store_evictable(gpa, page);
            self.batch.push(gpa, Entry::Whole(page));
            return Sent::Whole;
        }
        old.copy_from_slice(page);
        let before = self.batch.body.len();
        self.batch.push(gpa, Entry::Delta(&self.delta));
        self.counters.bytes += (self.batch.body.len() - before) as u64;
        self.delta_pages += 1;
        Sent::Delta
    }

    /// Whether `gpa` goes for the first time (marking it sent).
    fn first_copy(&mut self, gpa: u64) -> bool {
        let n = gpa / PAGE_SIZE as u64;
        let Some(w) = self.sent.get_mut((n / 64) as usize) else {
            return true;
        };
        let bit = 1u64 << (n % 64);
        let first = *w & bit == 0;
        *w |= bit;
        first
    }

    /// A sync: the cache ages, the period's rates are taken,
    /// and a changed `xbzrle-cache-size` takes effect (with an empty cache: what the
    /// destination holds does not depend on it).
    pub fn sync(&mut self, cache_size: u64, ram: u64) {
        self.cache.next_generation();
        self.close_period();
        if cache_size != self.cache.size() {
            self.cache = PageCache::new(cache_size, ram);
            self.counters.cache_size = cache_size;
        }
    }

    /// Takes the rates of the period that ends now (at a sync, and after the last pages).
    pub fn close_period(&mut self) {
        let c = &mut self.counters;
        let (bytes, pages, miss, handled) = self.prev;
        let period_pages = self.handled - handled;
        if period_pages > 0 {
            c.cache_miss_rate = (c.cache_miss - miss) as f64 / period_pages as f64;
        }
        let encoded = c.bytes - bytes;
        if encoded > 0 {
            c.encoding_rate = ((self.delta_pages - pages) * PAGE_SIZE as u64) as f64 / encoded as f64;
        }
        self.prev = (c.bytes, self.delta_pages, c.cache_miss, self.handled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::xbzrle::record::Entries;

    fn entries(x: &mut XbzrleSender) -> usize {
        let (base, body) = x.take().unwrap();
        let mut e = Entries::new(base, &body);
        let mut n = 0;
        while e.next_entry().unwrap().is_some() {
            n += 1;
        }
        n
    }

    #[test]
    fn counters_follow_the_pages() {
        let mut x = XbzrleSender::new(1 << 20, 1 << 30, 1 << 30);
        let mut page = vec![1u8; PAGE_SIZE];
        assert_eq!(x.page(0, &page, false), Sent::Whole);
        assert_eq!(x.page(0x1000, &page, false), Sent::Whole);
        assert_eq!(x.counters.cache_miss, 0, "a page's first copy is no miss");
        assert_eq!(entries(&mut x), 2);
        x.sync(1 << 20, 1 << 30);
        page[10] = 2;
        assert_eq!(x.page(0, &page, false), Sent::Delta);
        assert_eq!(x.page(0x1000, &page, false), Sent::Delta);
        // Slot 1 of 256 is young: the first copy of 0x101000 does not take it.
        assert_eq!(x.page(0x101000, &page, false), Sent::Whole);
        assert!(x.must_flush_before(0x1000), "pages go in ascending order");
        assert_eq!(entries(&mut x), 3);
        assert_eq!(x.page(0x101000, &page, false), Sent::Whole, "a miss");
        assert_eq!(entries(&mut x), 1);
        assert_eq!(x.page(0x1000, &[9u8; PAGE_SIZE], false), Sent::Whole, "overflow");
        assert_eq!(x.page(0x2000, &[0u8; PAGE_SIZE], true), Sent::Zero);
        assert_eq!(entries(&mut x), 2);
        let c = x.counters;
        assert_eq!((c.pages, c.cache_miss, c.overflow), (3, 1, 1));
        assert_eq!(c.bytes, 2 * (2 + 3), "skip, kind, then the delta (10, 1, 2)");
        x.sync(1 << 20, 1 << 30);
        assert!((x.counters.cache_miss_rate - 1.0 / 4.0).abs() < 1e-9);
        assert!((x.counters.encoding_rate - 8192.0 / 10.0).abs() < 1e-9);
        x.sync(1 << 13, 1 << 30);
        assert_eq!(x.counters.cache_size, 1 << 13);
    }
}
