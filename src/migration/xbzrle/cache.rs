//! The source's page cache: for some guest pages, the copy the destination last got.
//!
//! Direct-mapped: page `n` of guest-physical memory can only live in slot `n mod slots`.
//! Its memory is `cache size` bytes at most (and never more than the guest's RAM), set
//! up once from the local parameter, never from anything the peer sent. A page stored in
//! the last [`LIFETIME`] generations (syncs) keeps its slot against other pages, as in
//! QEMU, so a busy page cannot evict one that is about to be re-sent; a page whose delta
//! overflowed is not worth keeping and gives its slot up at once.

use crate::migration::stream::PAGE_SIZE;

/// Generations an entry is protected from eviction by another page.
const LIFETIME: u64 = 2;

#[derive(Clone, Copy)]
struct Slot {
    gpa: u64,
    /// The generation the copy was stored in; 0 for a free or evictable slot.
    age: u64,
    used: bool,
}

pub struct PageCache {
    slots: Vec<Slot>,
    data: Vec<u8>,
    generation: u64,
    size: u64,
}

impl PageCache {
    /// A cache of `size` bytes (a power of two, at least a page, as the parameter's check
    /// ensures) for a guest of `ram` bytes.
    pub fn new(size: u64, ram: u64) -> PageCache {
        let pages = (size.min(ram) / PAGE_SIZE as u64).max(1) as usize;
        PageCache {
            slots: vec![
                Slot {
                    gpa: 0,
                    age: 0,
                    used: false
                };
                pages
            ],
            // Zeroed memory the kernel hands out lazily: untouched slots cost nothing.
            data: vec![0u8; pages * PAGE_SIZE],
            // Age 0 (a free, cold or evictable slot) is old from the start.
            generation: LIFETIME,
            size,
        }
    }

    /// The size it was made for (`cache size` in `info migrate`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of page copies it can hold.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// A new sync: entries stored before it age.
    pub fn next_generation(&mut self) {
        self.generation += 1;
    }

    fn index(&self, gpa: u64) -> usize {
        ((gpa / PAGE_SIZE as u64) % self.slots.len() as u64) as usize
    }

    fn bytes(&mut self, i: usize) -> &mut [u8] {
        &mut self.data[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]
    }

    /// The cached copy of the page at `gpa`, if it is held; a page found is young again.
    pub fn get(&mut self, gpa: u64) -> Option<&mut [u8]> {
        let i = self.index(gpa);
        let s = self.slots[i];
        if !(s.used && s.gpa == gpa) {
            return None;
        }
        self.slots[i].age = self.generation;
        Some(self.bytes(i))
    }

    /// Stores `page` as the copy of `gpa`, unless another page holds the slot and is
    /// young. Returns whether it was stored.
    pub fn insert(&mut self, gpa: u64, page: &[u8]) -> bool {
        let i = self.index(gpa);
        let s = self.slots[i];
        if s.used && s.gpa != gpa && s.age + LIFETIME > self.generation {
            return false;
        }
        self.slots[i] = Slot {
            gpa,
            age: self.generation,
            used: true,
        };
        self.bytes(i).copy_from_slice(page);
        true
    }

    /// [`PageCache::insert`], but any page may take the slot afterwards: a page's first
    /// copy (in the first pass every page goes once, and the last of a slot stays).
    pub fn insert_cold(&mut self, gpa: u64, page: &[u8]) {
        if self.insert(gpa, page) {
            let i = self.index(gpa);
            self.slots[i].age = 0;
        }
    }

    /// The copy of `gpa` is now `page` (the destination has it), but any page may take
    /// its slot.
    pub fn store_evictable(&mut self, gpa: u64, page: &[u8]) {
        if self.get(gpa).is_some() {
            let i = self.index(gpa);
            self.slots[i].age = 0;
            self.bytes(i).copy_from_slice(page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE as u64;

    #[test]
    fn bounded_by_its_size_and_the_guest() {
        let c = PageCache::new(64 << 20, 1 << 30);
        assert_eq!(c.capacity(), 64 << 20);
        let c = PageCache::new(1 << 30, 16 << 20);
        assert_eq!(c.capacity(), 16 << 20, "never more than the guest's RAM");
        let mut c = PageCache::new(4 * P, 1 << 30);
        for n in 0..1000 {
            c.next_generation();
            c.insert(n * P, &[n as u8; PAGE_SIZE]);
        }
        assert_eq!(c.capacity(), 4 * PAGE_SIZE);
        let held = (0..1000).filter(|n| c.get(n * P).is_some()).count();
        assert_eq!(held, 4);
    }

    #[test]
    fn young_entries_keep_their_slot() {
        let mut c = PageCache::new(2 * P, 1 << 30);
        assert!(c.insert(0, &[1; PAGE_SIZE]));
        assert!(!c.insert(2 * P, &[2; PAGE_SIZE]), "slot 0 is young");
        assert!(c.insert(0, &[3; PAGE_SIZE]), "the same page updates");
        assert_eq!(c.get(0).unwrap()[0], 3);
        c.next_generation();
        c.next_generation();
        assert!(c.insert(2 * P, &[2; PAGE_SIZE]));
        assert!(c.get(0).is_none());
        c.store_evictable(2 * P, &[4; PAGE_SIZE]);
        assert!(c.insert(4 * P, &[5; PAGE_SIZE]), "evictable at once");
        assert!(c.get(2 * P).is_none());
        c.insert_cold(6 * P, &[6; PAGE_SIZE]);
        assert!(c.get(4 * P).is_some(), "young 4 keeps its slot");
        c.next_generation();
        c.next_generation();
        c.insert_cold(6 * P, &[6; PAGE_SIZE]);
        assert!(c.insert(8 * P, &[8; PAGE_SIZE]), "6 was stored cold");
        assert!(c.get(6 * P).is_none());
    }
}
