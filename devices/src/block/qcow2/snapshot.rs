//! Internal snapshots: the snapshot table, create/revert/delete, and the
//! VM state area.
//!
//! The VM state lives where QEMU puts it: at guest offset
//! [`Qcow2::vm_state_offset`] (the first L1 boundary at or past the end of
//! the disk), written through the *active* L1 with
//! [`Qcow2::write_vmstate`] before [`Qcow2::snapshot_create`]. Creating the
//! snapshot copies the L1 (so the snapshot owns the state) and then drops
//! the state from the active image. After [`Qcow2::snapshot_revert`] the
//! state reads back with [`Qcow2::read_vmstate`].
//!
//! Every operation runs with the dirty bit set (v3): if it is interrupted,
//! the next read-write open (godwit's or QEMU's) rebuilds the refcounts.

use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::header::{self, INCOMPAT_DIRTY, MAX_L1_BYTES, MAX_SNAPSHOTS};
use super::{COPIED, Mapping, Qcow2, compressed_clusters, decode_l2};
use crate::block::Result;
use crate::block::storage::Storage;

/// Snapshot errors.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot table is corrupt: {0}")]
    Corrupt(String),
    #[error("snapshot not found")]
    NotFound(String),
    #[error("Loading snapshots with different disk size is not implemented")]
    DiskSize,
    #[error("Too many snapshots")]
    TooMany,
    #[error("Snapshot name or ID too long")]
    NameTooLong,
    #[error("Snapshot would overflow a refcount (refcount_bits too small)")]
    RefcountOverflow,
    #[error("VM state access out of range")]
    VmStateRange,
}

type SResult<T> = std::result::Result<T, SnapshotError>;

/// Largest snapshot table QEMU accepts (bytes).
const MAX_TABLE_BYTES: u64 = 64 << 20;
/// Largest extra data per entry QEMU accepts.
const MAX_EXTRA: u32 = 1024;
/// Extra data godwit writes: vm_state_size_large, disk_size, icount.
const EXTRA_LEN: usize = 24;

/// What a snapshot records, as `qemu-img snapshot -l` / `info` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: String,
    /// Bytes of VM state stored with the snapshot (0 = disk only).
    pub vm_state_size: u64,
    pub date_sec: u32,
    pub date_nsec: u32,
    /// Guest clock at snapshot time, in nanoseconds.
    pub vm_clock_nsec: u64,
    /// Instruction count for record/replay; `None` when not recorded.
    pub icount: Option<u64>,
    /// Disk size at snapshot time, when recorded.
    pub disk_size: Option<u64>,
}

/// A snapshot table entry.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub info: SnapshotInfo,
    pub l1_offset: u64,
    pub l1_size: u32,
    /// Extra data past the fields godwit knows, preserved on rewrite.
    pub extra_rest: Vec<u8>,
}

fn be<const N: usize>(b: &[u8], off: usize) -> u64 {
    b[off..off + N].iter().fold(0, |a, &x| (a << 8) | u64::from(x))
}

/// Reads and validates the snapshot table; returns the entries and the
/// table's size in bytes.
/// Every entry and the L1 table it names must lie inside the file (`file_len` bytes), so
/// nothing is allocated for what the file does not hold.
pub(crate) fn read_table(file: &dyn Storage, h: &header::Header, file_len: u64) -> Result<(Vec<Snapshot>, u64)> {
    let (offset, count, cluster_bits) = (h.snapshots_offset, h.nb_snapshots, h.cluster_bits);
    let mut out = Vec::with_capacity(count.min(1024) as usize);
    let mut pos = offset;
    for i in 0..count {
        if pos - offset > MAX_TABLE_BYTES {
            return Err(SnapshotError::Corrupt("snapshot table too large".into()).into());
        }
        if pos.checked_add(40).is_none_or(|end| end > file_len) {
            return Err(SnapshotError::Corrupt(format!("entry {i} lies past the end of the file")).into());
        }
        let mut fixed = [0u8; 40];
        file.read_at(&mut fixed, pos)?;
        let l1_offset = be::<8>(&fixed, 0);
        let l1_size = be::<4>(&fixed, 8) as u32;
        let id_len = be::<2>(&fixed, 12) as usize;
        let name_len = be::<2>(&fixed, 14) as usize;
        let extra_len = be::<4>(&fixed, 36) as u32;
        if extra_len > MAX_EXTRA {
            return Err(SnapshotError::Corrupt(format!("entry {i}: extra data too large")).into());
        }
        if l1_offset & ((1 << cluster_bits) - 1) != 0 || u64::from(l1_size) * 8 > MAX_L1_BYTES {
            return Err(SnapshotError::Corrupt(format!("entry {i}: invalid L1 table")).into());
        }
        if l1_offset.checked_add(u64::from(l1_size) * 8).is_none_or(|end| end > file_len) || (l1_size > 0 && l1_offset == 0) {
            return Err(SnapshotError::Corrupt(format!("entry {i}: L1 table at {l1_offset:#x} is outside the image")).into());
        }
        let rest_len = extra_len as u64 + id_len as u64 + name_len as u64;
        if (pos + 40).checked_add(rest_len).is_none_or(|end| end > file_len) {
            return Err(SnapshotError::Corrupt(format!("entry {i} lies past the end of the file")).into());
        }
        let mut rest = vec![0u8; rest_len as usize];
        file.read_at(&mut rest, pos + 40)?;
        let (extra, names) = rest.split_at(extra_len as usize);
        let field = |o: usize| (extra.len() >= o + 8).then(|| be::<8>(extra, o));
        let mut vm_state_size = be::<4>(&fixed, 32);
        if let Some(large) = field(0) {
            vm_state_size = large;
        }
        let info = SnapshotInfo {
            id: String::from_utf8_lossy(&names[..id_len]).into_owned(),
            name: String::from_utf8_lossy(&names[id_len..]).into_owned(),
            vm_state_size,
            date_sec: be::<4>(&fixed, 16) as u32,
            date_nsec: be::<4>(&fixed, 20) as u32,
            vm_clock_nsec: be::<8>(&fixed, 24),
            icount: field(16).filter(|&v| v != u64::MAX),
            disk_size: field(8),
        };
        out.push(Snapshot {
            info,
            l1_offset,
            l1_size,
            extra_rest: extra.get(EXTRA_LEN..).unwrap_or(&[]).to_vec(),
        });
        pos = (pos + 40 + rest.len() as u64).next_multiple_of(8);
    }
    Ok((out, pos - offset))
}

/// Serialises a snapshot table.
fn encode_table(snaps: &[Snapshot]) -> Vec<u8> {
    let mut b = Vec::new();
    for s in snaps {
        let i = &s.info;
        b.extend_from_slice(&s.l1_offset.to_be_bytes());
        b.extend_from_slice(&s.l1_size.to_be_bytes());
        b.extend_from_slice(&(i.id.len() as u16).to_be_bytes());
        b.extend_from_slice(&(i.name.len() as u16).to_be_bytes());
        b.extend_from_slice(&i.date_sec.to_be_bytes());
        b.extend_from_slice(&i.date_nsec.to_be_bytes());
        b.extend_from_slice(&i.vm_clock_nsec.to_be_bytes());
        let small = u32::try_from(i.vm_state_size).unwrap_or(0);
        b.extend_from_slice(&small.to_be_bytes());
        b.extend_from_slice(&((EXTRA_LEN + s.extra_rest.len()) as u32).to_be_bytes());
        b.extend_from_slice(&i.vm_state_size.to_be_bytes());
        b.extend_from_slice(&i.disk_size.unwrap_or(0).to_be_bytes());
        b.extend_from_slice(&i.icount.unwrap_or(u64::MAX).to_be_bytes());
        b.extend_from_slice(&s.extra_rest);
        b.extend_from_slice(i.id.as_bytes());
        b.extend_from_slice(i.name.as_bytes());
        b.resize(b.len().next_multiple_of(8), 0);
    }
    b
}

impl Qcow2 {
    /// The snapshots in table order.
    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        self.snapshots.iter().map(|s| s.info.clone()).collect()
    }

    /// Index of the snapshot with ID `key`, else the first named `key`.
    fn find_snapshot(&self, key: &str) -> SResult<usize> {
        self.snapshots
            .iter()
            .position(|s| s.info.id == key)
            .or_else(|| self.snapshots.iter().position(|s| s.info.name == key))
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))
    }

    /// Guest offset where the VM state area starts.
    pub fn vm_state_offset(&self) -> u64 {
        let span_bits = self.cluster_bits + self.l2_bits;
        header::l1_entries_for(self.size, self.cluster_bits) << span_bits
    }

    fn vm_state_range(&self, pos: u64, len: u64) -> SResult<u64> {
        let limit = (MAX_L1_BYTES / 8) << (self.cluster_bits + self.l2_bits);
        let start = self.vm_state_offset().checked_add(pos);
        match start.and_then(|s| s.checked_add(len)) {
            Some(end) if end <= limit => Ok(self.vm_state_offset() + pos),
            _ => Err(SnapshotError::VmStateRange),
        }
    }

    /// Writes VM state bytes at `pos` of the state area of the active image.
    pub fn write_vmstate(&mut self, buf: &[u8], pos: u64) -> Result<()> {
        let at = self.vm_state_range(pos, buf.len() as u64)?;
        self.write_vaddr(buf, at)
    }

    /// Reads VM state bytes at `pos` of the state area of the active image.
    pub fn read_vmstate(&mut self, buf: &mut [u8], pos: u64) -> Result<()> {
        let at = self.vm_state_range(pos, buf.len() as u64)?;
        self.read_vaddr(buf, at)
    }

    /// Reads VM state bytes at `pos` of snapshot `key`'s state area, leaving the active
    /// image as it is (so a state can be checked before reverting to it). Read-only: the
    /// snapshot's L1 table stands in for the active one for the length of the read.
    pub fn read_snapshot_vmstate(&mut self, key: &str, buf: &mut [u8], pos: u64) -> Result<()> {
        let idx = self.find_snapshot(key)?;
        let at = self.vm_state_range(pos, buf.len() as u64)?;
        // While the snapshot's L1 stands in for the active one, nothing may be written
        // back (an L2 eviction would write the L1 it sees to the active L1's place):
        // everything pending goes out first, so the cache holds only clean tables.
        self.write_metadata()?;
        let snap_l1 = self.snapshot_l1(idx)?;
        let active = std::mem::replace(&mut self.l1, snap_l1);
        let r = self.read_vaddr(buf, at);
        self.l1 = active;
        r
    }

    /// Drops `len` bytes of VM state from the active image.
    pub fn discard_vmstate(&mut self, len: u64) -> Result<()> {
        let cs = self.cluster_size();
        let start = self.vm_state_range(0, len.next_multiple_of(cs))?;
        let mut pos = start;
        while pos < start + len.next_multiple_of(cs) {
            let (l1i, _) = self.split(pos);
            if l1i >= self.l1.len() {
                break;
            }
            if self.lookup(pos)? != Mapping::Unallocated {
                self.zero_range_raw(pos)?;
            }
            pos += cs;
        }
        self.write_metadata()
    }

    /// Whole-cluster zeroing used for the VM state area (outside the disk,
    /// where the range checks of the public calls do not apply).
    fn zero_range_raw(&mut self, pos: u64) -> Result<()> {
        let value = if self.header.version >= 3 { super::ZERO } else { 0 };
        let (l1i, l2i) = self.split(pos);
        let Some(&l1e) = self.l1.get(l1i) else {
            return Ok(());
        };
        let l2_off = self.l2_offset(l1e)?;
        if l2_off == 0 {
            return Ok(());
        }
        let old = self.l2_get(l2_off, l2i)?;
        let m = decode_l2(old, self.cluster_bits)?;
        // Reuse the write path to unshare the table, then set the entry.
        let (l2_off, l2i) = self.l2_for_write(pos)?;
        self.l2_set(l2_off, l2i, value)?;
        self.release(m);
        Ok(())
    }

    /// References the tree of `l1` holds, per host cluster offset: one per
    /// L2 table visit and one per data cluster visit.
    pub(crate) fn tree_deltas(&mut self, l1: &[u64]) -> Result<Vec<(u64, u64)>> {
        let mut counts = std::collections::HashMap::<u64, u64>::new();
        for &l1e in l1 {
            let l2_off = self.l2_offset(l1e)?;
            if l2_off == 0 {
                continue;
            }
            *counts.entry(l2_off).or_default() += 1;
            for e in self.l2_entries(l2_off)? {
                match decode_l2(e, self.cluster_bits)? {
                    Mapping::Data { host } | Mapping::Zero { host: Some(host) } => {
                        *counts.entry(host).or_default() += 1;
                    }
                    Mapping::Compressed { host, len } => {
                        for c in compressed_clusters(host, len, self.cluster_bits) {
                            *counts.entry(c).or_default() += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut v: Vec<(u64, u64)> = counts.into_iter().collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Adds one reference per visit of every cluster in the tree of `l1`,
    /// after checking that no refcount overflows.
    fn tree_incref(&mut self, l1: &[u64]) -> Result<()> {
        let deltas = self.tree_deltas(l1)?;
        let max = self.rc.max_value();
        for &(host, n) in &deltas {
            if self.refcount(host)?.checked_add(n).is_none_or(|v| v > max) {
                return Err(SnapshotError::RefcountOverflow.into());
            }
        }
        for (host, n) in deltas {
            self.rc.update(&mut *self.file, host >> self.cluster_bits, n as i64)?;
        }
        Ok(())
    }

    /// Drops one reference per visit of every cluster in the tree of `l1`, in
    /// the refcount cache only; returns the clusters that reached zero, to be
    /// punched once [`write_refcounts_with_flags`](Self::write_refcounts_with_flags)
    /// has written the change.
    fn tree_decref(&mut self, l1: &[u64]) -> Result<Vec<u64>> {
        let deltas = self.tree_deltas(l1)?;
        let mut freed = Vec::new();
        for (host, n) in deltas {
            for _ in 0..n {
                if let Some(f) = self.decref(host)? {
                    freed.push(f);
                }
            }
        }
        self.decompressed = None;
        Ok(freed)
    }

    /// Recomputes COPIED for the refcounts now in the cache and writes both
    /// back to back, then syncs.
    ///
    /// `qemu-img check` calls a refcount of 1 without COPIED (or COPIED with
    /// more than 1) an error, and no write order avoids that state between
    /// the refcount block and the L2 table writes. So no barrier goes between
    /// them: a kill can only land in the few microseconds between those
    /// writes instead of across an fsync. The dirty bit, set for the whole
    /// operation, still has the next read-write open rebuild the refcounts if
    /// it does (and after a power loss, which may keep any subset of them).
    fn write_refcounts_with_flags(&mut self) -> Result<()> {
        self.fix_copied()?;
        self.rc.commit(&mut *self.file)?;
        self.write_dirty_l2()?;
        self.write_dirty_l1()?;
        self.file.sync()?;
        Ok(())
    }

    /// Sets COPIED on the active tree exactly where the refcount is 1.
    pub(crate) fn fix_copied(&mut self) -> Result<()> {
        for i in 0..self.l1.len() {
            let l1e = self.l1[i];
            let l2_off = self.l2_offset(l1e)?;
            if l2_off == 0 {
                continue;
            }
            let want = if self.refcount(l2_off)? == 1 { l2_off | COPIED } else { l2_off };
            if l1e != want {
                self.set_l1(i, want);
            }
            for (j, e) in self.l2_entries(l2_off)?.into_iter().enumerate() {
                let host = match decode_l2(e, self.cluster_bits)? {
                    Mapping::Data { host } | Mapping::Zero { host: Some(host) } => host,
                    _ => continue,
                };
                let want = if self.refcount(host)? == 1 { e | COPIED } else { e & !COPIED };
                if want != e {
                    self.l2_set(l2_off, j, want)?;
                }
            }
        }
        Ok(())
    }

    /// Writes a new snapshot table and points the header at it; frees the
    /// old one.
    fn write_snapshot_table(&mut self, snaps: Vec<Snapshot>) -> Result<()> {
        if snaps.len() > MAX_SNAPSHOTS as usize {
            return Err(SnapshotError::TooMany.into());
        }
        let bytes = encode_table(&snaps);
        let cs = self.cluster_size();
        let new_off = if bytes.is_empty() {
            0
        } else {
            let off = self.alloc_clusters((bytes.len() as u64).div_ceil(cs))?;
            self.rc.commit(&mut *self.file)?;
            self.file_write(&bytes, off)?;
            // Synced even with lazy refcounts: the old table is punched right after.
            self.file.sync()?;
            off
        };
        let mut hdr = [0u8; 12];
        hdr[..4].copy_from_slice(&(snaps.len() as u32).to_be_bytes());
        hdr[4..].copy_from_slice(&new_off.to_be_bytes());
        self.file_write(&hdr, header::OFF_SNAPSHOTS)?;
        self.file.sync()?;
        let old_bytes = self.snapshot_table_bytes;
        let old_off = self.header.snapshots_offset;
        // The new table is in force before the old one is freed (and checked for overlaps).
        self.header.snapshots_offset = new_off;
        self.header.nb_snapshots = snaps.len() as u32;
        self.snapshot_table_bytes = bytes.len() as u64;
        self.snapshots = snaps;
        if old_off != 0 && old_bytes > 0 {
            let mut freed = Vec::new();
            for i in 0..old_bytes.div_ceil(cs) {
                if let Some(f) = self.decref(old_off + i * cs)? {
                    freed.push(f);
                }
            }
            self.rc.commit(&mut *self.file)?;
            self.punch_freed(freed)?;
        }
        Ok(())
    }

    /// Starts a snapshot operation: clean metadata, dirty bit set.
    fn begin_snapshot_op(&mut self) -> Result<()> {
        self.prepare_write()?;
        self.flush_all()?;
        self.set_incompat(INCOMPAT_DIRTY, true)
    }

    /// Ends a snapshot operation: COPIED recomputed, all written, dirty bit
    /// cleared (unless lazy refcounts keep it set while open).
    fn end_snapshot_op(&mut self) -> Result<()> {
        self.fix_copied()?;
        self.flush_all()?;
        if !self.lazy_mode() {
            self.set_incompat(INCOMPAT_DIRTY, false)?;
        }
        Ok(())
    }

    /// Ends a snapshot operation that failed part way: what it wrote is flushed, but
    /// refcounts may count references the failure never made, so the dirty bit stays set
    /// and the next open rebuilds them (as after a crash).
    fn end_failed_snapshot_op(&mut self) -> Result<()> {
        self.fix_copied()?;
        self.flush_all()
    }

    /// Takes a snapshot of the active disk named `name`. `vm_state_size`
    /// bytes of VM state must already have been written with
    /// [`write_vmstate`](Self::write_vmstate); they move into the snapshot.
    pub fn snapshot_create(&mut self, name: &str, vm_state_size: u64, vm_clock_nsec: u64, icount: Option<u64>) -> Result<SnapshotInfo> {
        let next_id = self
            .snapshots
            .iter()
            .filter_map(|s| s.info.id.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = next_id.to_string();
        if name.len() > u16::MAX as usize {
            return Err(SnapshotError::NameTooLong.into());
        }
        if self.snapshots.len() >= MAX_SNAPSHOTS as usize {
            return Err(SnapshotError::TooMany.into());
        }
        self.begin_snapshot_op()?;
        let result = self.create_inner(id, name, vm_state_size, vm_clock_nsec, icount);
        let end = if result.is_ok() {
            self.end_snapshot_op()
        } else {
            self.end_failed_snapshot_op()
        };
        let info = result?;
        end?;
        Ok(info)
    }

    fn create_inner(
        &mut self,
        id: String,
        name: &str,
        vm_state_size: u64,
        vm_clock_nsec: u64,
        icount: Option<u64>,
    ) -> Result<SnapshotInfo> {
        let l1 = self.l1.clone();
        // Overflow is checked before anything is allocated.
        let deltas = self.tree_deltas(&l1)?;
        let max = self.rc.max_value();
        for &(host, n) in &deltas {
            if self.refcount(host)?.checked_add(n).is_none_or(|v| v > max) {
                return Err(SnapshotError::RefcountOverflow.into());
            }
        }
        let cs = self.cluster_size();
        let l1_bytes = l1.len() as u64 * 8;
        let l1_off = if l1.is_empty() {
            0
        } else {
            let off = self.alloc_clusters(l1_bytes.div_ceil(cs))?;
            let mut raw = vec![0u8; l1_bytes as usize];
            for (i, e) in l1.iter().enumerate() {
                super::cache::set_entry(&mut raw, i, *e);
            }
            self.rc.commit(&mut *self.file)?;
            self.file_write(&raw, off)?;
            off
        };
        self.tree_incref(&l1)?;
        // Everything the active tree reaches is now shared: COPIED goes.
        self.write_refcounts_with_flags()?;

        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let info = SnapshotInfo {
            id,
            name: name.to_string(),
            vm_state_size,
            date_sec: now.as_secs() as u32,
            date_nsec: now.subsec_nanos(),
            vm_clock_nsec,
            icount,
            disk_size: Some(self.size),
        };
        let mut snaps = self.snapshots.clone();
        snaps.push(Snapshot {
            info: info.clone(),
            l1_offset: l1_off,
            l1_size: l1.len() as u32,
            extra_rest: Vec::new(),
        });
        self.write_snapshot_table(snaps)?;
        if vm_state_size > 0 {
            self.discard_vmstate(vm_state_size)?;
        }
        Ok(info)
    }

    /// Reads a snapshot's L1 table.
    pub(crate) fn snapshot_l1(&mut self, idx: usize) -> Result<Vec<u64>> {
        let s = &self.snapshots[idx];
        let mut raw = vec![0u8; s.l1_size as usize * 8];
        self.file.read_at(&mut raw, s.l1_offset)?;
        Ok((0..s.l1_size as usize).map(|i| super::cache::entry(&raw, i)).collect())
    }

    /// Makes the active disk (and VM state area) equal to snapshot `key`
    /// (an ID, else a name).
    pub fn snapshot_revert(&mut self, key: &str) -> Result<SnapshotInfo> {
        let idx = self.find_snapshot(key)?;
        let info = self.snapshots[idx].info.clone();
        if info.disk_size.is_some_and(|d| d != self.size) {
            return Err(SnapshotError::DiskSize.into());
        }
        self.begin_snapshot_op()?;
        let result = self.revert_inner(idx);
        let end = if result.is_ok() {
            self.end_snapshot_op()
        } else {
            self.end_failed_snapshot_op()
        };
        result?;
        end?;
        Ok(info)
    }

    fn revert_inner(&mut self, idx: usize) -> Result<()> {
        let snap_l1 = self.snapshot_l1(idx)?;
        if snap_l1.len() > self.l1.len() {
            self.replace_l1(snap_l1.len())?;
            self.write_metadata()?;
        }
        self.tree_incref(&snap_l1)?;
        self.rc.commit(&mut *self.file)?;
        self.barrier()?;
        let old = std::mem::take(&mut self.l1);
        // A snapshot's L1 keeps the COPIED flags the active one had when it was taken,
        // but every L2 table it reaches is now shared: the flags go until the old tree
        // is dropped and write_refcounts_with_flags sets them where they hold again.
        let mut new: Vec<u64> = snap_l1.iter().map(|e| e & !COPIED).collect();
        new.resize(old.len(), 0);
        self.l1 = new;
        self.l1_dirty = Some((0, self.l1.len().saturating_sub(1)));
        if self.l1.is_empty() {
            self.l1_dirty = None;
        }
        self.write_metadata()?;
        self.barrier()?;
        let freed = self.tree_decref(&old)?;
        self.write_refcounts_with_flags()?;
        self.punch_freed(freed)
    }

    /// Deletes snapshot `key` (an ID, else a name) and frees what only it
    /// referenced.
    pub fn snapshot_delete(&mut self, key: &str) -> Result<SnapshotInfo> {
        let idx = self.find_snapshot(key)?;
        let info = self.snapshots[idx].info.clone();
        self.begin_snapshot_op()?;
        let result = self.delete_inner(idx);
        let end = if result.is_ok() {
            self.end_snapshot_op()
        } else {
            self.end_failed_snapshot_op()
        };
        result?;
        end?;
        Ok(info)
    }

    fn delete_inner(&mut self, idx: usize) -> Result<()> {
        let snap_l1 = self.snapshot_l1(idx)?;
        let (l1_off, l1_size) = (self.snapshots[idx].l1_offset, self.snapshots[idx].l1_size);
        let mut snaps = self.snapshots.clone();
        snaps.remove(idx);
        self.write_snapshot_table(snaps)?;
        let mut freed = self.tree_decref(&snap_l1)?;
        let cs = self.cluster_size();
        for i in 0..(u64::from(l1_size) * 8).div_ceil(cs) {
            if let Some(f) = self.decref(l1_off + i * cs)? {
                freed.push(f);
            }
        }
        // Clusters the active tree shared with the snapshot may be its own now.
        self.write_refcounts_with_flags()?;
        self.punch_freed(freed)
    }
}
