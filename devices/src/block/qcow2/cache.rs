//! A write-back cache of one-cluster metadata tables (L2 tables and
//! refcount blocks), keyed by their host offset, with LRU eviction.
//!
//! The cache only keeps bytes and dirty bits. Loading, and writing dirty
//! tables back in a crash-safe order, is the caller's job: the qcow2 driver
//! decides when an L2 table may reach the disk (only after the refcounts of
//! every cluster it points to).

use std::collections::{BTreeMap, HashMap};

struct Slot {
    data: Vec<u8>,
    dirty: bool,
    tick: u64,
}

/// LRU table cache.
pub struct TableCache {
    slots: HashMap<u64, Slot>,
    lru: BTreeMap<u64, u64>,
    tick: u64,
    capacity: usize,
}

impl TableCache {
    /// A cache holding at most `capacity` tables (at least 2).
    pub fn new(capacity: usize) -> TableCache {
        TableCache {
            slots: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            capacity: capacity.max(2),
        }
    }

    fn touch(&mut self, off: u64) {
        if let Some(slot) = self.slots.get_mut(&off) {
            self.lru.remove(&slot.tick);
            self.tick += 1;
            slot.tick = self.tick;
            self.lru.insert(self.tick, off);
        }
    }

    pub fn contains(&self, off: u64) -> bool {
        self.slots.contains_key(&off)
    }

    /// The table at `off`, marking it recently used.
    pub fn get(&mut self, off: u64) -> Option<&[u8]> {
        self.touch(off);
        self.slots.get(&off).map(|s| s.data.as_slice())
    }

    /// The table at `off` for modification; marks it dirty.
    pub fn get_mut(&mut self, off: u64) -> Option<&mut [u8]> {
        self.touch(off);
        self.slots.get_mut(&off).map(|s| {
            s.dirty = true;
            s.data.as_mut_slice()
        })
    }

    /// The table at `off` without touching LRU or dirty state.
    pub fn peek(&self, off: u64) -> Option<&[u8]> {
        self.slots.get(&off).map(|s| s.data.as_slice())
    }

    /// Inserts (or replaces) a table. The caller makes room first with
    /// [`victim`](Self::victim)/[`remove`](Self::remove).
    pub fn insert(&mut self, off: u64, data: Vec<u8>, dirty: bool) {
        self.remove(off);
        self.tick += 1;
        self.lru.insert(self.tick, off);
        self.slots.insert(
            off,
            Slot {
                data,
                dirty,
                tick: self.tick,
            },
        );
    }

    /// Whether inserting one more table needs an eviction first.
    pub fn full(&self) -> bool {
        self.slots.len() >= self.capacity
    }

    /// The least recently used table and whether it is dirty.
    pub fn victim(&self) -> Option<(u64, bool)> {
        let (_, &off) = self.lru.iter().next()?;
        Some((off, self.slots[&off].dirty))
    }

    /// Drops a table (dirty or not).
    pub fn remove(&mut self, off: u64) -> Option<Vec<u8>> {
        let slot = self.slots.remove(&off)?;
        self.lru.remove(&slot.tick);
        Some(slot.data)
    }

    /// Offsets of all dirty tables, ascending.
    pub fn dirty(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.slots.iter().filter(|(_, s)| s.dirty).map(|(&o, _)| o).collect();
        v.sort_unstable();
        v
    }

    pub fn has_dirty(&self) -> bool {
        self.slots.values().any(|s| s.dirty)
    }

    pub fn mark_clean(&mut self, off: u64) {
        if let Some(s) = self.slots.get_mut(&off) {
            s.dirty = false;
        }
    }

    /// Drops every table (after writing back the dirty ones).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.lru.clear();
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
}
