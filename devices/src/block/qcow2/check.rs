//! Consistency check and refcount rebuild.
//!
//! References are counted the way `qemu-img check` counts them: one per
//! metadata cluster, one per visit of an L2 table from an L1 table (the
//! active one and every snapshot's), and one per visit of a data cluster
//! from an L2 table. Rebuilding writes a fresh refcount structure past the
//! end of the file and then switches the header to it, so an interrupted
//! rebuild changes nothing.

use std::collections::HashMap;

use super::cache::set_entry;
use super::header::{MAX_REFTABLE_BYTES, OFF_REFCOUNT_TABLE};
use super::refcount::{RefcountError, Refcounts, rc_get, rc_set};
use super::{COPIED, Mapping, Qcow2, corrupt, decode_l2};
use crate::block::Result;

/// Outcome of [`Qcow2::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Clusters whose refcount exceeds their references (harmless).
    pub leaks: u64,
    /// Clusters referenced more often than counted (data at risk).
    pub corruptions: u64,
    /// COPIED flags in the active tree that disagree with the refcount.
    pub copied_errors: u64,
    /// One line per problem, for diagnostics.
    pub messages: Vec<String>,
}

impl CheckReport {
    /// No leaks and no errors.
    pub fn is_clean(&self) -> bool {
        self.leaks == 0 && self.corruptions == 0 && self.copied_errors == 0
    }
}

impl Qcow2 {
    /// References per host cluster index. With `refcount_structs`, the
    /// refcount table and blocks are counted too.
    fn compute_refs(&mut self, refcount_structs: bool) -> Result<HashMap<u64, u64>> {
        let cb = self.cluster_bits;
        let cs = self.cluster_size();
        let mut refs = HashMap::<u64, u64>::new();
        let add_range = |refs: &mut HashMap<u64, u64>, off: u64, bytes: u64| {
            if bytes > 0 {
                for c in off >> cb..=(off + bytes - 1) >> cb {
                    *refs.entry(c).or_default() += 1;
                }
            }
        };
        add_range(&mut refs, 0, 1);
        add_range(&mut refs, self.l1_offset, self.l1.len() as u64 * 8);
        let l1 = self.l1.clone();
        for (host, n) in self.tree_deltas(&l1)? {
            *refs.entry(host >> cb).or_default() += n;
        }
        add_range(&mut refs, self.header.snapshots_offset, self.snapshot_table_bytes);
        for i in 0..self.snapshots.len() {
            let s = &self.snapshots[i];
            add_range(&mut refs, s.l1_offset, u64::from(s.l1_size) * 8);
            let l1 = self.snapshot_l1(i)?;
            for (host, n) in self.tree_deltas(&l1)? {
                *refs.entry(host >> cb).or_default() += n;
            }
        }
        if refcount_structs {
            add_range(&mut refs, self.rc.table_offset, u64::from(self.rc.table_clusters) * cs);
            for &b in &self.rc.table {
                if b != 0 {
                    add_range(&mut refs, b, 1);
                }
            }
        }
        Ok(refs)
    }

    /// Compares refcounts with references and COPIED flags with refcounts,
    /// like `qemu-img check` (without repairing anything). Cached metadata
    /// is written back first.
    pub fn check(&mut self) -> Result<CheckReport> {
        self.write_metadata()?;
        let refs = self.compute_refs(true)?;
        let mut report = CheckReport::default();
        let mut clusters: Vec<u64> = refs.keys().copied().collect();
        // Every cluster a refcount block counts, referenced or not.
        let per_block = 1u64 << self.rc.rb_bits;
        for ti in 0..self.rc.table.len() {
            let b = self.rc.table[ti];
            if b == 0 {
                continue;
            }
            let mut block = vec![0u8; self.cluster_size() as usize];
            self.file.read_at(&mut block, b)?;
            for i in 0..per_block as usize {
                if rc_get(&block, self.rc.order, i) != 0 {
                    clusters.push(ti as u64 * per_block + i as u64);
                }
            }
        }
        clusters.sort_unstable();
        clusters.dedup();
        for c in clusters {
            let want = refs.get(&c).copied().unwrap_or(0);
            let have = self.rc.get(&mut *self.file, c)?;
            if have > want {
                report.leaks += 1;
                report.messages.push(format!("Leaked cluster {c} refcount={have} reference={want}"));
            } else if have < want {
                report.corruptions += 1;
                report.messages.push(format!("ERROR cluster {c} refcount={have} reference={want}"));
            }
        }
        self.check_copied(&mut report)?;
        Ok(report)
    }

    fn check_copied(&mut self, report: &mut CheckReport) -> Result<()> {
        for i in 0..self.l1.len() {
            let l1e = self.l1[i];
            let l2_off = self.l2_offset(l1e)?;
            if l2_off == 0 {
                continue;
            }
            let rc = self.refcount(l2_off)?;
            if (rc == 1) != (l1e & COPIED != 0) {
                report.copied_errors += 1;
                report.messages.push(format!(
                    "ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1e:x} refcount={rc}"
                ));
            }
            for e in self.l2_entries(l2_off)? {
                let host = match decode_l2(e, self.cluster_bits)? {
                    Mapping::Data { host } | Mapping::Zero { host: Some(host) } => host,
                    _ => continue,
                };
                let rc = self.refcount(host)?;
                if (rc == 1) != (e & COPIED != 0) {
                    report.copied_errors += 1;
                    report
                        .messages
                        .push(format!("ERROR OFLAG_COPIED data cluster: l2_entry={e:x} refcount={rc}"));
                }
            }
        }
        Ok(())
    }

    /// Recomputes all refcounts from the L1/L2 tables (active and
    /// snapshots) and switches the image to a new refcount structure.
    pub(crate) fn rebuild_refcounts(&mut self) -> Result<()> {
        let refs = self.compute_refs(false)?;
        let cb = self.cluster_bits;
        let cs = self.cluster_size();
        let order = self.rc.order;
        let per_block = 1u64 << self.rc.rb_bits;
        let file_clusters = self.file_end.max(self.file.len()?).div_ceil(cs);
        let max_ref = refs.keys().max().map_or(0, |&c| c + 1);
        // A reference far past the end would make the new structure cover it: refcount
        // blocks (written out in full) in proportion to an offset read from the file.
        if max_ref > file_clusters {
            return corrupt(format!("cluster at {:#x} lies past the end of the file", (max_ref - 1) << cb));
        }
        let start = file_clusters.max(max_ref).max(1);
        let (mut nb, mut nt) = (0u64, 1u64);
        loop {
            let nb2 = (start + nb + nt).div_ceil(per_block);
            let nt2 = (nb2 * 8).div_ceil(cs).max(1);
            if (nb2, nt2) == (nb, nt) {
                break;
            }
            (nb, nt) = (nb2, nt2);
        }
        if nt * cs > MAX_REFTABLE_BYTES {
            return Err(RefcountError::TooLarge.into());
        }
        let meta = start..start + nb + nt;
        let mut table = vec![0u8; (nt * cs) as usize];
        for k in 0..nb {
            let mut block = vec![0u8; cs as usize];
            for i in 0..per_block {
                let c = k * per_block + i;
                let v = refs.get(&c).copied().unwrap_or(0) + u64::from(meta.contains(&c));
                if v > self.rc.max_value() {
                    return Err(RefcountError::Overflow(c << cb).into());
                }
                if v != 0 {
                    rc_set(&mut block, order, i as usize, v);
                }
            }
            let off = (start + k) << cb;
            self.file_write(&block, off)?;
            set_entry(&mut table, k as usize, off);
        }
        let table_off = (start + nb) << cb;
        self.file_write(&table, table_off)?;
        self.file.sync()?;
        let mut hdr = [0u8; 12];
        hdr[..8].copy_from_slice(&table_off.to_be_bytes());
        hdr[8..].copy_from_slice(&(nt as u32).to_be_bytes());
        self.file_write(&hdr, OFF_REFCOUNT_TABLE)?;
        self.file.sync()?;
        let barriers = self.rc.barriers;
        let cache_tables = (1usize << 20) >> cb;
        self.rc = Refcounts::load(self.file.as_ref(), table_off, nt as u32, order, cb, cache_tables.max(4))?;
        self.rc.barriers = barriers;
        self.fix_copied()?;
        self.write_metadata()?;
        self.file.sync()?;
        Ok(())
    }
}
