//! Checks at open that the image's tables lie inside the file and apart from each other.
//!
//! The header's own fields are checked by [`header`](super::header); here the tables they
//! point to are checked against the file: the active L1, the refcount table and the
//! snapshot table must lie inside it *before* anything is allocated for them (so a small
//! file cannot make godwit allocate what its header claims), and once loaded, every
//! refcount block and every L2 table the active L1 names must lie inside the file, be
//! cluster-aligned and not overlap the header or another table. The L2 tables and data
//! clusters themselves are checked when used ([`overlap`](super::overlap)).

use std::collections::HashSet;

use super::header::Header;
use super::overlap::Meta;
use super::{OFFSET_MASK, Qcow2, corrupt};
use crate::block::Result;

/// Whether `bytes` at `offset` end inside a file of `file_len` bytes.
fn inside(offset: u64, bytes: u64, file_len: u64) -> bool {
    offset.checked_add(bytes).is_some_and(|end| end <= file_len)
}

/// The tables the header points to lie inside the file.
pub(crate) fn tables_inside(h: &Header, file_len: u64) -> Result<()> {
    if !inside(h.l1_table_offset, u64::from(h.l1_size) * 8, file_len) {
        return corrupt(format!("active L1 table at {:#x} lies past the end of the file", h.l1_table_offset));
    }
    let rt_bytes = u64::from(h.refcount_table_clusters) << h.cluster_bits;
    if !inside(h.refcount_table_offset, rt_bytes, file_len) {
        return corrupt(format!(
            "refcount table at {:#x} lies past the end of the file",
            h.refcount_table_offset
        ));
    }
    // Each snapshot entry is at least 40 bytes.
    if h.nb_snapshots > 0 && !inside(h.snapshots_offset, u64::from(h.nb_snapshots) * 40, file_len) {
        return corrupt(format!("snapshot table at {:#x} lies past the end of the file", h.snapshots_offset));
    }
    Ok(())
}

impl Qcow2 {
    /// Refcount blocks and the active L2 tables lie inside the file, apart from the
    /// header and the other tables.
    pub(crate) fn validate_structure(&self, file_len: u64) -> Result<()> {
        let cs = self.cluster_size();
        for (i, &block) in self.rc.table.iter().enumerate() {
            if block == 0 {
                continue;
            }
            if !inside(block, cs, file_len) {
                return corrupt(format!("refcount block {i} at {block:#x} is outside the image"));
            }
            match self.overlap(block, cs, false) {
                None | Some(Meta::RefcountBlock) => {}
                Some(m) => return corrupt(format!("refcount block {i} at {block:#x} overlaps the {}", m.name())),
            }
        }
        let mut seen = HashSet::new();
        for (i, &l1e) in self.l1.iter().enumerate() {
            let l2 = l1e & OFFSET_MASK;
            if l2 == 0 || !seen.insert(l2) {
                continue;
            }
            if l2 & (cs - 1) != 0 {
                return corrupt(format!("L2 table at {l2:#x} (L1 index {i}) is not cluster-aligned"));
            }
            if !inside(l2, cs, file_len) {
                return corrupt(format!("L2 table at {l2:#x} (L1 index {i}) is outside the image"));
            }
            if let Some(m) = self.overlap(l2, cs, false) {
                return corrupt(format!("L2 table at {l2:#x} (L1 index {i}) overlaps the {}", m.name()));
            }
        }
        Ok(())
    }
}
