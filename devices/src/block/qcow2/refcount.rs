//! Reference counts: the two-level refcount structure, cluster allocation
//! and growth of the structure itself.
//!
//! Refcount blocks are cached write-back. The cache only ever holds
//! *increments* that are not yet on disk (decrements are applied by the
//! driver only after the metadata that dropped the reference is written),
//! so a dirty refcount block may be written at any time: at worst the disk
//! then shows leaked clusters, never a reference to a free cluster.
//!
//! New refcount blocks and a grown refcount table are written through,
//! before anything points to them.

use std::collections::HashSet;

use thiserror::Error;

use crate::block::qcow2::cache::{TableCache, entry, set_entry};
use crate::block::qcow2::header::{MAX_REFTABLE_BYTES, OFF_REFCOUNT_TABLE};
use crate::block::storage::Storage;

/// Refcount errors.
#[derive(Debug, Error)]
pub enum RefcountError {
    #[error("refcount overflow on cluster {0:#x}")]
    Overflow(u64),
    #[error("refcount underflow on cluster {0:#x} (image corrupt)")]
    Underflow(u64),
    #[error("refcount block offset {0:#x} is invalid (image corrupt)")]
    BadBlock(u64),
    #[error("image file would exceed the qcow2 size limits")]
    TooLarge,
    #[error("I/O error on refcount structures: {0}")]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, RefcountError>;

/// Largest host offset a qcow2 entry can express.
pub const MAX_HOST_OFFSET: u64 = 1 << 56;

/// Refcount `idx` of a refcount block with `1 << order`-bit entries.
pub fn rc_get(block: &[u8], order: u32, idx: usize) -> u64 {
    let bits = 1usize << order;
    if bits < 8 {
        let per_byte = 8 / bits;
        let shift = (idx % per_byte) * bits;
        u64::from(block[idx / per_byte] >> shift) & ((1 << bits) - 1)
    } else {
        let n = bits / 8;
        block[idx * n..idx * n + n].iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }
}

/// Stores refcount `idx` of a refcount block.
pub fn rc_set(block: &mut [u8], order: u32, idx: usize, value: u64) {
    let bits = 1usize << order;
    if bits < 8 {
        let per_byte = 8 / bits;
        let shift = (idx % per_byte) * bits;
        let mask = ((1u16 << bits) - 1) as u8;
        let b = &mut block[idx / per_byte];
        *b = (*b & !(mask << shift)) | (((value as u8) & mask) << shift);
    } else {
        let n = bits / 8;
        let bytes = value.to_be_bytes();
        block[idx * n..idx * n + n].copy_from_slice(&bytes[8 - n..]);
    }
}

/// The refcount structure of one image.
pub struct Refcounts {
    /// Refcount table entries (host offsets of refcount blocks, 0 = none).
    pub table: Vec<u64>,
    pub table_offset: u64,
    pub table_clusters: u32,
    pub order: u32,
    pub cluster_bits: u32,
    /// log2 of the refcounts in one block.
    pub rb_bits: u32,
    cache: TableCache,
    /// No cluster below this index is free.
    pub free_hint: u64,
    /// Issue fdatasync between dependent metadata writes (off with lazy
    /// refcounts).
    pub barriers: bool,
    /// Highest file offset this structure has written to.
    pub written_end: u64,
    /// The offsets in `table`, to tell at once whether a cluster is a refcount block.
    blocks: HashSet<u64>,
}

impl Refcounts {
    /// Loads the refcount table.
    pub fn load(
        file: &dyn Storage,
        table_offset: u64,
        table_clusters: u32,
        order: u32,
        cluster_bits: u32,
        cache_tables: usize,
    ) -> Result<Refcounts> {
        let bytes = u64::from(table_clusters) << cluster_bits;
        if bytes > MAX_REFTABLE_BYTES {
            return Err(RefcountError::TooLarge);
        }
        let mut raw = vec![0u8; bytes as usize];
        file.read_at(&mut raw, table_offset)?;
        let cs_mask = (1u64 << cluster_bits) - 1;
        let mut table = Vec::with_capacity(raw.len() / 8);
        for i in 0..raw.len() / 8 {
            let e = entry(&raw, i);
            if e & cs_mask != 0 || e >= MAX_HOST_OFFSET {
                return Err(RefcountError::BadBlock(e));
            }
            table.push(e);
        }
        let blocks = table.iter().copied().filter(|&b| b != 0).collect();
        Ok(Refcounts {
            blocks,
            table,
            table_offset,
            table_clusters,
            order,
            cluster_bits,
            rb_bits: cluster_bits + 3 - order,
            cache: TableCache::new(cache_tables),
            free_hint: 1,
            barriers: true,
            written_end: 0,
        })
    }

    /// Whether the cluster at host offset `off` is one of the refcount blocks.
    pub fn is_block(&self, off: u64) -> bool {
        self.blocks.contains(&off)
    }

    /// Largest refcount value the image can store.
    pub fn max_value(&self) -> u64 {
        if self.order == 6 {
            u64::MAX
        } else {
            (1u64 << (1 << self.order)) - 1
        }
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Refcount blocks and block index of cluster `c`.
    fn split(&self, c: u64) -> (usize, usize) {
        ((c >> self.rb_bits) as usize, (c & ((1 << self.rb_bits) - 1)) as usize)
    }

    fn write(&mut self, file: &mut dyn Storage, data: &[u8], off: u64) -> Result<()> {
        file.write_at(data, off)?;
        self.written_end = self.written_end.max(off + data.len() as u64);
        Ok(())
    }

    fn barrier(&self, file: &mut dyn Storage) -> Result<()> {
        if self.barriers {
            file.sync()?;
        }
        Ok(())
    }

    /// Makes sure the refcount block at `off` is cached.
    fn load_block(&mut self, file: &mut dyn Storage, off: u64) -> Result<()> {
        if self.cache.contains(off) {
            return Ok(());
        }
        if self.cache.full()
            && let Some((victim, dirty)) = self.cache.victim()
        {
            if dirty && let Some(data) = self.cache.peek(victim) {
                file.write_at(data, victim)?;
            }
            self.cache.remove(victim);
        }
        let mut data = vec![0u8; self.cluster_size() as usize];
        file.read_at(&mut data, off)?;
        self.cache.insert(off, data, false);
        Ok(())
    }

    /// Refcount of cluster `c` (0 for clusters no block covers).
    pub fn get(&mut self, file: &mut dyn Storage, c: u64) -> Result<u64> {
        let (ti, bi) = self.split(c);
        let Some(&block) = self.table.get(ti) else {
            return Ok(0);
        };
        if block == 0 {
            return Ok(0);
        }
        self.load_block(file, block)?;
        let order = self.order;
        Ok(self.cache.get(block).map_or(0, |b| rc_get(b, order, bi)))
    }

    /// Adds `delta` to the refcount of cluster `c`, which must be covered
    /// by a refcount block (true for every allocated cluster). Returns the
    /// new value.
    pub fn update(&mut self, file: &mut dyn Storage, c: u64, delta: i64) -> Result<u64> {
        let (ti, bi) = self.split(c);
        let block = self.table.get(ti).copied().unwrap_or(0);
        if block == 0 {
            return Err(if delta < 0 {
                RefcountError::Underflow(c << self.cluster_bits)
            } else {
                RefcountError::BadBlock(0)
            });
        }
        self.load_block(file, block)?;
        let (order, max) = (self.order, self.max_value());
        let data = self.cache.get_mut(block).ok_or(RefcountError::BadBlock(block))?;
        let old = rc_get(data, order, bi);
        let new = if delta >= 0 {
            old.checked_add(delta as u64)
                .filter(|&v| v <= max)
                .ok_or(RefcountError::Overflow(c << self.cluster_bits))?
        } else {
            old.checked_sub(delta.unsigned_abs())
                .ok_or(RefcountError::Underflow(c << self.cluster_bits))?
        };
        rc_set(data, order, bi, new);
        if new == 0 && c < self.free_hint {
            self.free_hint = c;
        }
        Ok(new)
    }

    /// Writes every dirty refcount block. Returns whether anything was
    /// written.
    pub fn commit(&mut self, file: &mut dyn Storage) -> Result<bool> {
        let dirty = self.cache.dirty();
        for &off in &dirty {
            if let Some(data) = self.cache.peek(off) {
                file.write_at(data, off)?;
            }
            self.cache.mark_clean(off);
        }
        Ok(!dirty.is_empty())
    }

    /// Forgets cached blocks (after the structure was rebuilt elsewhere).
    pub fn drop_cache(&mut self) {
        self.cache.clear();
    }

    /// Allocates `n` contiguous clusters with refcount 1 and returns the
    /// host offset of the first. The increments stay in the cache until
    /// [`commit`](Self::commit).
    pub fn alloc(&mut self, file: &mut dyn Storage, n: u64) -> Result<u64> {
        loop {
            let (start, first_free) = self.find_free_run(file, n)?;
            if self.ensure_covered(file, start, n)? {
                continue; // metadata took clusters: search again
            }
            for c in start..start + n {
                self.update(file, c, 1)?;
            }
            self.free_hint = if first_free < start { first_free } else { start + n };
            return Ok(start << self.cluster_bits);
        }
    }

    /// Finds `n` consecutive clusters with refcount 0 at or after the hint.
    /// Returns the run start and the first free cluster seen.
    fn find_free_run(&mut self, file: &mut dyn Storage, n: u64) -> Result<(u64, u64)> {
        let limit = MAX_HOST_OFFSET >> self.cluster_bits;
        let mut c = self.free_hint.max(1);
        let mut run_start = c;
        let mut first_free = u64::MAX;
        while c < limit {
            if self.get(file, c)? == 0 {
                first_free = first_free.min(c);
                if c + 1 - run_start == n {
                    return Ok((run_start, first_free));
                }
            } else {
                run_start = c + 1;
            }
            c += 1;
        }
        Err(RefcountError::TooLarge)
    }

    /// Makes sure refcount blocks cover clusters `[start, start+n)`.
    /// Returns true when it had to allocate metadata clusters.
    fn ensure_covered(&mut self, file: &mut dyn Storage, start: u64, n: u64) -> Result<bool> {
        let first = start >> self.rb_bits;
        let last = (start + n - 1) >> self.rb_bits;
        for ti in first..=last {
            let ti = ti as usize;
            if ti >= self.table.len() {
                self.grow_table(file, ti, start)?;
                return Ok(true);
            }
            if self.table[ti] == 0 {
                let at = start.max((ti as u64) << self.rb_bits);
                self.new_block(file, ti, at)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Creates the refcount block for table index `ti` at cluster `at`
    /// (inside the range it covers, so it counts itself).
    fn new_block(&mut self, file: &mut dyn Storage, ti: usize, at: u64) -> Result<()> {
        let mut block = vec![0u8; self.cluster_size() as usize];
        let (_, bi) = self.split(at);
        rc_set(&mut block, self.order, bi, 1);
        let off = at << self.cluster_bits;
        self.write(file, &block, off)?;
        self.barrier(file)?;
        self.write(file, &off.to_be_bytes(), self.table_offset + ti as u64 * 8)?;
        self.table[ti] = off;
        self.blocks.insert(off);
        if self.cache.full()
            && let Some((victim, dirty)) = self.cache.victim()
        {
            if dirty && let Some(data) = self.cache.peek(victim) {
                file.write_at(data, victim)?;
            }
            self.cache.remove(victim);
        }
        self.cache.insert(off, block, false);
        Ok(())
    }

    /// Moves the refcount table to a bigger one that has an entry `need`.
    /// The new table and the blocks covering it go at `hint` or after the
    /// clusters the old table covers, whichever is later; every cluster
    /// there is free.
    fn grow_table(&mut self, file: &mut dyn Storage, need: usize, hint: u64) -> Result<()> {
        let cs = self.cluster_size();
        let per_cluster = (cs / 8) as usize;
        let old_len = self.table.len();
        let start = hint.max((old_len as u64) << self.rb_bits);
        let (mut nb, mut nt) = (0u64, 0u64);
        let new_len = loop {
            let end = start + nb + nt;
            let last_range = (end.max(start + 1) - 1) >> self.rb_bits;
            let want = (need + 1).max(last_range as usize + 1).max(old_len + old_len / 2);
            let new_len = want.next_multiple_of(per_cluster);
            let nt2 = (new_len / per_cluster) as u64;
            let nb2 = ((start + nb + nt2 - 1) >> self.rb_bits) - (start >> self.rb_bits) + 1;
            if nb2 == nb && nt2 == nt {
                break new_len;
            }
            (nb, nt) = (nb2, nt2);
        };
        if new_len as u64 * 8 > MAX_REFTABLE_BYTES {
            return Err(RefcountError::TooLarge);
        }
        if (start + nb + nt) << self.cluster_bits >= MAX_HOST_OFFSET {
            return Err(RefcountError::TooLarge);
        }
        // New blocks at [start, start+nb), new table right after them.
        let mut table = self.table.clone();
        table.resize(new_len, 0);
        let first_range = start >> self.rb_bits;
        let mut blocks = Vec::new();
        for k in 0..nb {
            let range = first_range + k;
            let mut block = vec![0u8; cs as usize];
            for c in start..start + nb + nt {
                if c >> self.rb_bits == range {
                    rc_set(&mut block, self.order, self.split(c).1, 1);
                }
            }
            let off = (start + k) << self.cluster_bits;
            table[range as usize] = off;
            self.blocks.insert(off);
            self.write(file, &block, off)?;
            blocks.push((off, block));
        }
        let table_off = (start + nb) << self.cluster_bits;
        let mut raw = vec![0u8; (nt * cs) as usize];
        for (i, &e) in table.iter().enumerate() {
            set_entry(&mut raw, i, e);
        }
        self.write(file, &raw, table_off)?;
        self.barrier(file)?;
        let mut hdr = [0u8; 12];
        hdr[..8].copy_from_slice(&table_off.to_be_bytes());
        hdr[8..].copy_from_slice(&(nt as u32).to_be_bytes());
        self.write(file, &hdr, OFF_REFCOUNT_TABLE)?;
        self.barrier(file)?;

        let (old_off, old_clusters) = (self.table_offset, u64::from(self.table_clusters));
        self.table = table;
        self.table_offset = table_off;
        self.table_clusters = nt as u32;
        for (off, block) in blocks {
            if self.cache.full()
                && let Some((victim, dirty)) = self.cache.victim()
            {
                if dirty && let Some(data) = self.cache.peek(victim) {
                    file.write_at(data, victim)?;
                }
                self.cache.remove(victim);
            }
            self.cache.insert(off, block, false);
        }
        // The old table is no longer referenced by the header.
        let old_first = old_off >> self.cluster_bits;
        for c in old_first..old_first + old_clusters {
            self.update(file, c, -1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_roundtrip() {
        for order in 0..=6u32 {
            let bits = 1u32 << order;
            let mut block = vec![0u8; 512];
            let n = 512 * 8 / bits as usize;
            let max = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            for i in 0..n {
                rc_set(&mut block, order, i, (i as u64 * 7 + 1) & max);
            }
            for i in 0..n {
                assert_eq!(rc_get(&block, order, i), (i as u64 * 7 + 1) & max, "order {order} idx {i}");
            }
        }
        // Sub-byte refcounts start at the least significant bit.
        let mut b = [0u8; 1];
        rc_set(&mut b, 0, 0, 1);
        assert_eq!(b[0], 1);
        rc_set(&mut b, 1, 1, 3);
        assert_eq!(b[0], 0b1101);
    }
}
