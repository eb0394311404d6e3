//! Guest I/O on a qcow2 image: reads, allocating writes with copy-on-write,
//! zero writes and discards.

use super::inflate::inflate;
use super::{COPIED, Mapping, Qcow2, Qcow2Error, ZERO, corrupt, decode_l2};
use crate::block::Result;

impl Qcow2 {
    /// Mapping of the cluster at `vaddr` and how many bytes from `vaddr`
    /// (at most `max`) continue it: further unallocated or zero clusters,
    /// or data clusters that are contiguous on the host.
    pub(crate) fn extent_at(&mut self, vaddr: u64, max: u64) -> Result<(Mapping, u64)> {
        let cs = self.cluster_size();
        let first = self.lookup(vaddr)?;
        let mut len = (cs - (vaddr & (cs - 1))).min(max);
        if matches!(first, Mapping::Compressed { .. }) {
            return Ok((first, len));
        }
        while len < max {
            let pos = vaddr + len;
            let (l1i, _) = self.split(pos);
            if first == Mapping::Unallocated && self.l1.get(l1i).is_none_or(|e| e & super::OFFSET_MASK == 0) {
                // A whole missing L2 table.
                let span = 1u64 << (self.cluster_bits + self.l2_bits);
                len = (len + span - (pos & (span - 1))).min(max);
                continue;
            }
            let next = self.lookup(pos)?;
            let k = (pos >> self.cluster_bits) - (vaddr >> self.cluster_bits);
            let continues = match (first, next) {
                (Mapping::Unallocated, Mapping::Unallocated) => true,
                (Mapping::Zero { host: None }, Mapping::Zero { host: None }) => true,
                (Mapping::Zero { host: Some(a) }, Mapping::Zero { host: Some(b) })
                | (Mapping::Data { host: a }, Mapping::Data { host: b }) => b == a + k * cs,
                _ => false,
            };
            if !continues {
                break;
            }
            len = (len + cs).min(max);
        }
        Ok((first, len))
    }

    /// Reads guest bytes not allocated in this layer: from the backing
    /// file inside its size and the disk size, zeroes elsewhere.
    pub(crate) fn read_backing(&mut self, buf: &mut [u8], vaddr: u64) -> Result<()> {
        let limit = match &self.backing {
            Some(b) => b.virtual_size().min(self.size),
            None => 0,
        };
        let n = if vaddr < limit {
            (limit - vaddr).min(buf.len() as u64) as usize
        } else {
            0
        };
        if n > 0
            && let Some(b) = self.backing.as_mut()
        {
            b.read_at(&mut buf[..n], vaddr)?;
        }
        buf[n..].fill(0);
        Ok(())
    }

    /// Whether reading unallocated clusters at `vaddr` can return
    /// anything but zeroes.
    fn backing_covers(&self, vaddr: u64) -> bool {
        self.backing.as_ref().is_some_and(|b| vaddr < b.virtual_size().min(self.size))
    }

    /// Whether the backing chain reads as zeroes over `[vaddr, vaddr+len)`
    /// (asked from its allocation status, which is cheap).
    fn backing_reads_zero(&mut self, vaddr: u64, len: u64) -> Result<bool> {
        let limit = self.backing.as_ref().map_or(0, |b| b.virtual_size().min(self.size));
        let n = limit.saturating_sub(vaddr).min(len);
        match self.backing.as_mut() {
            Some(b) if n > 0 => Ok(b.block_status(vaddr, n)?.iter().all(|e| e.zero)),
            _ => Ok(true),
        }
    }

    /// The decompressed bytes of a compressed cluster.
    fn decompress(&mut self, l2e: u64, host: u64, len: u64) -> Result<&[u8]> {
        if self.decompressed.as_ref().is_none_or(|(e, _)| *e != l2e) {
            let cs = self.cluster_size() as usize;
            let mut input = vec![0u8; len as usize];
            self.file.read_at(&mut input, host)?;
            let mut out = vec![0u8; cs];
            let n = inflate(&input, &mut out).map_err(|source| Qcow2Error::Inflate { offset: host, source })?;
            if n != cs {
                return corrupt(format!("compressed cluster at {host:#x} expands to {n} bytes"));
            }
            self.decompressed = Some((l2e, out));
        }
        Ok(self.decompressed.as_ref().map_or(&[][..], |(_, d)| d.as_slice()))
    }

    /// Raw L2 entry of `vaddr`, 0 when no L2 table maps it.
    fn raw_entry(&mut self, vaddr: u64) -> Result<u64> {
        let (l1i, l2i) = self.split(vaddr);
        let Some(&l1e) = self.l1.get(l1i) else {
            return Ok(0);
        };
        let l2_off = self.l2_offset(l1e)?;
        if l2_off == 0 {
            return Ok(0);
        }
        self.l2_get(l2_off, l2i)
    }

    /// Reads guest bytes, including the VM state area past the disk end.
    pub(crate) fn read_vaddr(&mut self, buf: &mut [u8], vaddr: u64) -> Result<()> {
        let cs = self.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = vaddr + done as u64;
            let (m, len) = self.extent_at(pos, (buf.len() - done) as u64)?;
            let out = &mut buf[done..done + len as usize];
            let in_cluster = pos & (cs - 1);
            match m {
                Mapping::Unallocated => self.read_backing(out, pos)?,
                Mapping::Zero { .. } => out.fill(0),
                Mapping::Data { host } => self.file.read_at(out, host + in_cluster)?,
                Mapping::Compressed { host, len: clen } => {
                    let e = self.raw_entry(pos)?;
                    let data = self.decompress(e, host, clen)?;
                    let s = in_cluster as usize;
                    out.copy_from_slice(&data[s..s + out.len()]);
                }
            }
            done += len as usize;
        }
        Ok(())
    }

    /// Returns the L2 table that maps `vaddr`, ready for modification:
    /// allocated, and owned by the active L1 alone (copied if shared).
    pub(crate) fn l2_for_write(&mut self, vaddr: u64) -> Result<(u64, usize)> {
        let (l1i, l2i) = self.split(vaddr);
        if l1i >= self.l1.len() {
            self.grow_l1(l1i + 1)?;
        }
        let l1e = self.l1[l1i];
        let off = self.l2_offset(l1e)?;
        let cs = self.cluster_size() as usize;
        if off == 0 {
            let new = self.alloc_clusters(1)?;
            self.make_l2_room()?;
            self.l2.insert(new, vec![0u8; cs], true);
            self.set_l1(l1i, new | COPIED);
            return Ok((new, l2i));
        }
        if l1e & COPIED != 0 {
            return Ok((off, l2i));
        }
        if self.refcount(off)? == 1 {
            self.set_l1(l1i, off | COPIED);
            return Ok((off, l2i));
        }
        // Shared with a snapshot: copy the table. The data it maps stays
        // referenced twice (once per table), so its refcounts do not change
        // and none of its entries may carry COPIED.
        let mut entries = self.l2_entries(off)?;
        for e in &mut entries {
            *e &= !COPIED;
        }
        let new = self.alloc_clusters(1)?;
        self.make_l2_room()?;
        let mut data = vec![0u8; cs];
        for (i, e) in entries.iter().enumerate() {
            super::cache::set_entry(&mut data, i, *e);
        }
        self.l2.insert(new, data, true);
        self.set_l1(l1i, new | COPIED);
        self.free_later(off);
        Ok((new, l2i))
    }

    /// Whether the cluster at `host` (mapped by entry `e`) may be written
    /// in place.
    fn owned(&mut self, e: u64, host: u64) -> Result<bool> {
        Ok(e & COPIED != 0 || self.refcount(host)? == 1)
    }

    /// Writes guest bytes, including the VM state area past the disk end.
    pub(crate) fn write_vaddr(&mut self, buf: &[u8], vaddr: u64) -> Result<()> {
        self.prepare_write()?;
        let cs = self.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = vaddr + done as u64;
            let in_cluster = (pos & (cs - 1)) as usize;
            let n = (cs as usize - in_cluster).min(buf.len() - done);
            self.write_cluster(pos - in_cluster as u64, in_cluster, &buf[done..done + n])?;
            done += n;
        }
        self.maybe_write_metadata()
    }

    /// Writes `data` at `in_cluster` of the guest cluster at `cvaddr`.
    fn write_cluster(&mut self, cvaddr: u64, in_cluster: usize, data: &[u8]) -> Result<()> {
        let cs = self.cluster_size() as usize;
        let (l2_off, l2i) = self.l2_for_write(cvaddr)?;
        let e = self.l2_get(l2_off, l2i)?;
        let m = decode_l2(e, self.cluster_bits)?;
        match m {
            Mapping::Data { host } if self.owned(e, host)? => {
                self.guard_write(host, cs as u64, true)?;
                self.file_write(data, host + in_cluster as u64)?;
                if e & COPIED == 0 {
                    self.l2_set(l2_off, l2i, host | COPIED)?;
                }
                return Ok(());
            }
            Mapping::Zero { host: Some(host) } if self.owned(e, host)? => {
                self.guard_write(host, cs as u64, true)?;
                let mut cl = vec![0u8; cs];
                cl[in_cluster..in_cluster + data.len()].copy_from_slice(data);
                self.file_write(&cl, host)?;
                return self.l2_set(l2_off, l2i, host | COPIED);
            }
            _ => {}
        }
        let new = self.alloc_clusters(1)?;
        // Refcounts that call a metadata cluster free would hand it out here.
        self.guard_write(new, cs as u64, true)?;
        if data.len() == cs {
            self.file_write(data, new)?;
        } else {
            let mut cl = std::mem::take(&mut self.cow_buf);
            cl.resize(cs, 0);
            let r = self.write_partial(&mut cl, m, cvaddr, new, in_cluster, data);
            self.cow_buf = cl;
            r?;
        }
        self.l2_set(l2_off, l2i, new | COPIED)?;
        self.release(m);
        Ok(())
    }

    /// Writes `data` at `in_cluster` of the new cluster `new` that replaces
    /// mapping `m` of the guest cluster at `cvaddr`, with the old contents
    /// around it, unless they read as zeroes. `cl` is a cluster-sized
    /// scratch buffer (any contents).
    fn write_partial(&mut self, cl: &mut [u8], m: Mapping, cvaddr: u64, new: u64, in_cluster: usize, data: &[u8]) -> Result<()> {
        let cs = cl.len();
        let (head, tail) = (in_cluster, in_cluster + data.len());
        let old = match m {
            Mapping::Unallocated if self.backing_covers(cvaddr) => {
                let zero =
                    self.backing_reads_zero(cvaddr, head as u64)? && self.backing_reads_zero(cvaddr + tail as u64, (cs - tail) as u64)?;
                if !zero {
                    self.read_backing(cl, cvaddr)?;
                }
                !zero
            }
            Mapping::Data { host } => {
                self.file.read_at(cl, host)?;
                true
            }
            Mapping::Compressed { host, len } => {
                let e = self.raw_entry(cvaddr)?;
                cl.copy_from_slice(self.decompress(e, host, len)?);
                true
            }
            _ => false,
        };
        let old = old && !(is_zero(&cl[..head]) && is_zero(&cl[tail..]));
        if !old && new >= self.file_end {
            // Past the end of the file everything reads as zeroes.
            return self.file_write(data, new + in_cluster as u64);
        }
        if !old {
            cl.fill(0);
        }
        cl[head..tail].copy_from_slice(data);
        self.file_write(cl, new)
    }

    /// Zero-writes `[off, off+len)`: zero flags for whole clusters (v3),
    /// zero data for partial ones.
    pub(crate) fn zero_range(&mut self, off: u64, len: u64, may_unmap: bool) -> Result<()> {
        self.prepare_write()?;
        self.for_each_cluster(off, len, |img, pos, whole| {
            if whole {
                img.zero_cluster(pos, may_unmap)
            } else {
                let zeroes = vec![0u8; whole_len(img, pos, off, len)];
                img.write_vaddr(&zeroes, pos)
            }
        })
    }

    /// Discards whole clusters of `[off, off+len)`.
    pub(crate) fn discard_range(&mut self, off: u64, len: u64) -> Result<()> {
        self.prepare_write()?;
        self.for_each_cluster(off, len, |img, pos, whole| {
            if !whole {
                return Ok(());
            }
            match (img.header.version >= 3, img.backing.is_some()) {
                (true, true) => img.zero_cluster(pos, true),
                // v2 cannot mask the backing file: keep the old contents.
                (false, true) => Ok(()),
                (_, false) => img.set_entry_dropping(pos, 0),
            }
        })
    }

    /// Calls `f(self, pos, whole)` for each cluster piece of the range;
    /// `pos` is the first byte of the piece and `whole` tells whether it
    /// covers its cluster entirely.
    fn for_each_cluster(&mut self, off: u64, len: u64, mut f: impl FnMut(&mut Self, u64, bool) -> Result<()>) -> Result<()> {
        let cs = self.cluster_size();
        let end = off + len;
        let mut pos = off;
        while pos < end {
            let next = (pos & !(cs - 1)) + cs;
            let piece_end = next.min(end);
            let whole = pos & (cs - 1) == 0 && (piece_end == next || piece_end == self.size);
            f(self, pos, whole)?;
            pos = piece_end;
        }
        self.maybe_write_metadata()
    }

    /// Replaces the L2 entry of the cluster at `pos` by `value`, dropping
    /// what the old entry referenced. No-op when nothing changes.
    fn set_entry_dropping(&mut self, pos: u64, value: u64) -> Result<()> {
        let old = self.raw_entry(pos)?;
        if old == value {
            return Ok(());
        }
        let m = decode_l2(old, self.cluster_bits)?;
        let (l2_off, l2i) = self.l2_for_write(pos)?;
        self.l2_set(l2_off, l2i, value)?;
        self.release(m);
        Ok(())
    }

    /// Makes the whole cluster at `pos` read as zeroes.
    fn zero_cluster(&mut self, pos: u64, may_unmap: bool) -> Result<()> {
        let m = self.lookup(pos)?;
        let backing = self.backing_covers(pos);
        if self.header.version < 3 {
            if !backing && may_unmap {
                return self.set_entry_dropping(pos, 0);
            }
            if m == Mapping::Unallocated && !backing {
                return Ok(());
            }
            let zeroes = vec![0u8; self.cluster_size() as usize];
            return self.write_vaddr(&zeroes, pos);
        }
        match m {
            Mapping::Zero { host: None } => Ok(()),
            Mapping::Unallocated if !backing => Ok(()),
            Mapping::Data { host } | Mapping::Zero { host: Some(host) } if !may_unmap => {
                let e = self.raw_entry(pos)?;
                if self.owned(e, host)? {
                    let (l2_off, l2i) = self.l2_for_write(pos)?;
                    self.l2_set(l2_off, l2i, host | COPIED | ZERO)
                } else {
                    self.set_entry_dropping(pos, ZERO)
                }
            }
            _ => self.set_entry_dropping(pos, ZERO),
        }
    }
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Length of the partial-cluster piece starting at `pos` inside the range.
fn whole_len(img: &Qcow2, pos: u64, off: u64, len: u64) -> usize {
    let cs = img.cluster_size();
    let next = (pos & !(cs - 1)) + cs;
    (next.min(off + len) - pos) as usize
}
