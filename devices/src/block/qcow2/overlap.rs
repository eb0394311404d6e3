//! Metadata overlap checks: no data, L2 table or hole punch may land on metadata.
//!
//! In a hostile or damaged image an L2 entry can point into the header, a refcount can
//! say a table cluster is free (so the allocator hands it out again), or a compressed
//! descriptor can cover the refcount table. Before every write of guest data, every L2
//! table write-back and every hole punched over a freed cluster, the range is compared
//! with the image's metadata, as QEMU's `overlap-check=cached` does: the header, the
//! active L1, the L2 tables in the cache, the refcount table and blocks, the snapshot
//! table and the snapshots' L1 tables. A hit marks the image corrupt (as QEMU does: it then
//! opens read-only only) and fails the request; the image takes no more writes.

use super::header::INCOMPAT_CORRUPT;
use super::{Qcow2, Qcow2Error};
use crate::block::{BlockError, Result};

/// A kind of qcow2 metadata, named as QEMU names it in its overlap messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meta {
    Header,
    ActiveL1,
    ActiveL2,
    RefcountTable,
    RefcountBlock,
    SnapshotTable,
    InactiveL1,
}

impl Meta {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Meta::Header => "qcow2_header",
            Meta::ActiveL1 => "active L1 table",
            Meta::ActiveL2 => "active L2 table",
            Meta::RefcountTable => "refcount table",
            Meta::RefcountBlock => "refcount block",
            Meta::SnapshotTable => "snapshot table",
            Meta::InactiveL1 => "inactive L1 table",
        }
    }
}

/// Whether `[off, off+len)` and `[start, start+bytes)` share a byte.
fn hits(off: u64, len: u64, start: u64, bytes: u64) -> bool {
    len > 0 && bytes > 0 && off < start.saturating_add(bytes) && start < off.saturating_add(len)
}

impl Qcow2 {
    /// The metadata `[off, off+len)` overlaps, if any; cached L2 tables count only with
    /// `l2` (an L2 table being written back is not an overlap with itself).
    pub(crate) fn overlap(&self, off: u64, len: u64, l2: bool) -> Option<Meta> {
        let cs = self.cluster_size();
        if hits(off, len, 0, cs) {
            return Some(Meta::Header);
        }
        if hits(off, len, self.l1_offset, self.l1.len() as u64 * 8) {
            return Some(Meta::ActiveL1);
        }
        if hits(off, len, self.rc.table_offset, u64::from(self.rc.table_clusters) * cs) {
            return Some(Meta::RefcountTable);
        }
        if hits(off, len, self.header.snapshots_offset, self.snapshot_table_bytes) {
            return Some(Meta::SnapshotTable);
        }
        if self.snapshots.iter().any(|s| hits(off, len, s.l1_offset, u64::from(s.l1_size) * 8)) {
            return Some(Meta::InactiveL1);
        }
        if len == 0 {
            return None;
        }
        let (first, last) = (off >> self.cluster_bits, (off.saturating_add(len) - 1) >> self.cluster_bits);
        for c in first..=last {
            let at = c << self.cluster_bits;
            if self.rc.is_block(at) {
                return Some(Meta::RefcountBlock);
            }
            if l2 && self.l2.contains(at) {
                return Some(Meta::ActiveL2);
            }
        }
        None
    }

    /// Fails (and marks the image corrupt) when `[off, off+len)` overlaps metadata.
    pub(crate) fn guard_write(&mut self, off: u64, len: u64, l2: bool) -> Result<()> {
        match self.overlap(off, len, l2) {
            None => Ok(()),
            Some(m) => Err(self.mark_corrupt(m)),
        }
    }

    /// Sets the corrupt bit (best effort: v2 has none) and stops all further writes.
    fn mark_corrupt(&mut self, m: Meta) -> BlockError {
        if self.broken.is_none() {
            self.broken = Some(m);
            let _ = self.set_incompat(INCOMPAT_CORRUPT, true);
        }
        Qcow2Error::Overlap(m.name()).into()
    }

    /// The error of an image that refused a write over metadata, if it did.
    pub(crate) fn broken_error(&self) -> Option<BlockError> {
        self.broken.map(|m| Qcow2Error::Overlap(m.name()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::hits;

    #[test]
    fn ranges() {
        assert!(hits(0, 1, 0, 1));
        assert!(!hits(0, 0, 0, 10));
        assert!(!hits(10, 5, 0, 10));
        assert!(hits(9, 5, 0, 10));
        assert!(!hits(0, 10, 10, 5));
        assert!(hits(u64::MAX - 1, 10, u64::MAX - 3, 10));
    }
}
