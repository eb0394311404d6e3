//! A write-back cache of one-cluster metadata tables (L2 tables and
//! refcount blocks), keyed by their host offset, with LRU eviction.
//!
//! The cache only keeps bytes and dirty bits. Loading, and writing dirty
//! tables back in a crash-safe order, is the caller's job: the qcow2 driver
//! decides when an L2 table may reach the disk (only after the refcounts of
//! every cluster it points to).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for table offsets (cluster-aligned u64 keys): one multiply, the
/// high half folded into the low one (hash tables index by the low bits).
#[derive(Default)]
struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// No slot (end of the LRU list).
const NIL: usize = usize::MAX;

struct Slot {
    off: u64,
    data: Vec<u8>,
    dirty: bool,
    /// Neighbours in the LRU list (towards the least / most recently used).
    prev: usize,
    next: usize,
}

/// LRU table cache. Tables live in a vector, found through a map from
/// their offset; the LRU order is a list threaded through the slots, so a
/// lookup, a use, an insertion and an eviction are all O(1), and a lookup
/// of the table used last (the common case: consecutive requests in one
/// L2 table) is a single comparison.
pub struct TableCache {
    slots: Vec<Slot>,
    index: HashMap<u64, usize, BuildHasherDefault<OffsetHasher>>,
    /// Least and most recently used slots.
    head: usize,
    tail: usize,
    /// Slot of the last lookup (a hint, checked before use).
    last: usize,
    capacity: usize,
}

impl TableCache {
    /// A cache holding at most `capacity` tables (at least 2).
    pub fn new(capacity: usize) -> TableCache {
        TableCache {
            slots: Vec::new(),
            index: HashMap::default(),
            head: NIL,
            tail: NIL,
            last: NIL,
            capacity: capacity.max(2),
        }
    }

    fn find(&self, off: u64) -> Option<usize> {
        match self.slots.get(self.last) {
            Some(s) if s.off == off => Some(self.last),
            _ => self.index.get(&off).copied(),
        }
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.slots[i].prev, self.slots[i].next);
        match p {
            NIL => self.head = n,
            p => self.slots[p].next = n,
        }
        match n {
            NIL => self.tail = p,
            n => self.slots[n].prev = p,
        }
    }

    fn push_tail(&mut self, i: usize) {
        self.slots[i].prev = self.tail;
        self.slots[i].next = NIL;
        match self.tail {
            NIL => self.head = i,
            t => self.slots[t].next = i,
        }
        self.tail = i;
    }

    /// Finds the table at `off` and marks it most recently used.
    fn use_slot(&mut self, off: u64) -> Option<usize> {
        let i = self.find(off)?;
        if self.tail != i {
            self.unlink(i);
            self.push_tail(i);
        }
        self.last = i;
        Some(i)
    }

    pub fn contains(&self, off: u64) -> bool {
        self.find(off).is_some()
    }

    /// The table at `off`, marking it recently used.
    pub fn get(&mut self, off: u64) -> Option<&[u8]> {
        let i = self.use_slot(off)?;
        Some(&self.slots[i].data)
    }

    /// The table at `off` for modification; marks it dirty.
    pub fn get_mut(&mut self, off: u64) -> Option<&mut [u8]> {
        let i = self.use_slot(off)?;
        let s = &mut self.slots[i];
        s.dirty = true;
        Some(&mut s.data)
    }

    /// The table at `off` without touching LRU or dirty state.
    pub fn peek(&self, off: u64) -> Option<&[u8]> {
        self.find(off).map(|i| self.slots[i].data.as_slice())
    }

    /// Inserts (or replaces) a table. The caller makes room first with
    /// [`victim`](Self::victim)/[`remove`](Self::remove).
    pub fn insert(&mut self, off: u64, data: Vec<u8>, dirty: bool) {
        self.remove(off);
        let i = self.slots.len();
        self.slots.push(Slot {
            off,
            data,
            dirty,
            prev: NIL,
            next: NIL,
        });
        self.index.insert(off, i);
        self.push_tail(i);
        self.last = i;
    }

    /// Whether inserting one more table needs an eviction first.
    pub fn full(&self) -> bool {
        self.slots.len() >= self.capacity
    }

    /// The least recently used table and whether it is dirty.
    pub fn victim(&self) -> Option<(u64, bool)> {
        self.slots.get(self.head).map(|s| (s.off, s.dirty))
    }

    /// Drops a table (dirty or not).
    pub fn remove(&mut self, off: u64) -> Option<Vec<u8>> {
        let i = self.index.remove(&off)?;
        self.unlink(i);
        let last = self.slots.len() - 1;
        if i != last {
            // The last slot moves into the hole: repoint its neighbours.
            self.slots.swap(i, last);
            let (p, n) = (self.slots[i].prev, self.slots[i].next);
            match p {
                NIL => self.head = i,
                p => self.slots[p].next = i,
            }
            match n {
                NIL => self.tail = i,
                n => self.slots[n].prev = i,
            }
            self.index.insert(self.slots[i].off, i);
        }
        self.last = NIL;
        self.slots.pop().map(|s| s.data)
    }

    /// Offsets of all dirty tables, ascending.
    pub fn dirty(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.slots.iter().filter(|s| s.dirty).map(|s| s.off).collect();
        v.sort_unstable();
        v
    }

    pub fn has_dirty(&self) -> bool {
        self.slots.iter().any(|s| s.dirty)
    }

    pub fn mark_clean(&mut self, off: u64) {
        if let Some(i) = self.find(off) {
            self.slots[i].dirty = false;
        }
    }

    /// Drops every table (after writing back the dirty ones).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        (self.head, self.tail, self.last) = (NIL, NIL, NIL);
    }
}

/// Big-endian u64 entry `idx` of a table.
pub fn entry(table: &[u8], idx: usize) -> u64 {
    let b = &table[idx * 8..idx * 8 + 8];
    u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))
}

/// Stores big-endian u64 entry `idx` of a table.
pub fn set_entry(table: &mut [u8], idx: usize, value: u64) {
    table[idx * 8..idx * 8 + 8].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_order_and_dirty() {
        let mut c = TableCache::new(2);
        c.insert(512, vec![0; 16], false);
        c.insert(1024, vec![0; 16], false);
        assert!(c.full());
        c.get(512);
        assert_eq!(c.victim(), Some((1024, false)));
        set_entry(c.get_mut(1024).unwrap(), 1, 0xdead);
        assert_eq!(c.victim(), Some((512, false)));
        assert_eq!(c.dirty(), vec![1024]);
        assert_eq!(entry(c.peek(1024).unwrap(), 1), 0xdead);
        c.mark_clean(1024);
        assert!(!c.has_dirty());
        c.remove(512);
        assert!(!c.full());
    }

    /// Against a simple model: a list ordered from least to most recently
    /// used, over random operations.
    #[test]
    fn matches_a_model() {
        let mut c = TableCache::new(8);
        let mut model: Vec<(u64, bool)> = Vec::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        for step in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = (x % 12) << 16;
            let pos = model.iter().position(|&(o, _)| o == off);
            match (x >> 32) % 5 {
                0 => {
                    if pos.is_none() && c.full() {
                        let (v, d) = c.victim().unwrap();
                        assert_eq!((v, d), model[0], "step {step}");
                        c.remove(v);
                        model.remove(0);
                    }
                    c.insert(off, vec![step as u8; 8], step % 3 == 0);
                    if let Some(p) = model.iter().position(|&(o, _)| o == off) {
                        model.remove(p);
                    }
                    model.push((off, step % 3 == 0));
                }
                1 => {
                    assert_eq!(c.get(off).is_some(), pos.is_some());
                    if let Some(p) = pos {
                        let e = model.remove(p);
                        model.push(e);
                    }
                }
                2 => {
                    assert_eq!(c.get_mut(off).is_some(), pos.is_some());
                    if let Some(p) = pos {
                        let (o, _) = model.remove(p);
                        model.push((o, true));
                    }
                }
                3 => {
                    assert_eq!(c.remove(off).is_some(), pos.is_some());
                    if let Some(p) = pos {
                        model.remove(p);
                    }
                }
                _ => {
                    c.mark_clean(off);
                    if let Some(p) = pos {
                        model[p].1 = false;
                    }
                }
            }
            assert_eq!(c.victim(), model.first().copied(), "step {step}");
            assert_eq!(c.contains(off), model.iter().any(|&(o, _)| o == off));
            let mut dirty: Vec<u64> = model.iter().filter(|e| e.1).map(|e| e.0).collect();
            dirty.sort_unstable();
            assert_eq!(c.dirty(), dirty, "step {step}");
            assert_eq!(c.full(), model.len() >= 8);
        }
    }
}
