//! The source side of block migration (`migrate -b` / `-i`): the bulk copy of every writable
//! disk while the guest runs, then the granules the guest wrote meanwhile, round after round
//! beside the RAM, and the last ones with the VM stopped.
//!
//! Only what the allocation status says holds data is read: unallocated and zero ranges go
//! out as BLOCK_ZERO ranges (for `-i`, only what the top layer defines goes at all), and a
//! raw image's holes are found with SEEK_HOLE. Data read back as all zeroes is sent as a
//! range too.

use super::disks::Mode;
use super::send::{Failure, Sender, Stop, is_zero};
use super::stream::MAX_BLOCK_DATA;
use devices::block::BlockBackend;
use devices::block::dirty::{self, DirtyMap, GRANULE};
use devices::bus::lock;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// One disk whose contents travel in the stream.
struct Copied {
    /// Its index in the DISKS record.
    index: u32,
    backend: Arc<Mutex<Box<dyn BlockBackend>>>,
    dirty: Arc<DirtyMap>,
    size: u64,
}

/// Where the disk copy stands.
pub struct BlockState {
    mode: Mode,
    disks: Vec<Copied>,
    /// Sum of the copied disks' sizes.
    total: u64,
    /// Bytes the bulk pass has gone over (sent, or known to need nothing).
    walked: u64,
    /// Dirty bytes taken from the bitmaps and not yet sent.
    pending: u64,
    /// Stream bytes of disk records.
    pub wire: u64,
    last_percent: Option<u32>,
    buf: Vec<u8>,
}

/// Bits taken from each copied disk's bitmap, in `BlockState::disks` order.
pub struct Taken(Vec<Vec<u64>>);

impl BlockState {
    /// The copied disks of `vm` (as `describe` announced them); their bitmaps start now,
    /// before anything is read, so no write can slip past the copy.
    pub fn start(vm: &crate::vm::Vm, announce: &super::disks::Announce) -> BlockState {
        let mut disks = Vec::new();
        for (i, (d, a)) in vm.disks().iter().zip(&announce.disks).enumerate() {
            if a.copied {
                d.dirty.start();
                disks.push(Copied {
                    index: i as u32,
                    backend: d.backend.clone(),
                    dirty: d.dirty.clone(),
                    size: d.size,
                });
            }
        }
        let total = disks.iter().map(|d| d.size).sum();
        BlockState {
            mode: announce.mode,
            disks,
            total,
            walked: 0,
            pending: 0,
            wire: 0,
            last_percent: None,
            buf: Vec::new(),
        }
    }

    /// Takes the dirty bits of every disk; returns them with the bytes they stand for.
    pub fn take(&mut self) -> (Taken, u64) {
        let bits: Vec<Vec<u64>> = self.disks.iter().map(|d| d.dirty.take()).collect();
        let bytes = self.disks.iter().zip(&bits).map(|(d, b)| d.dirty.bytes_of(b)).sum();
        self.pending = bytes;
        (Taken(bits), bytes)
    }

    /// (transferred, remaining, total) for `info migrate`: the bulk pass's progress, and
    /// what is still to send (the rest of the bulk pass plus dirty data taken).
    fn figures(&self) -> (u64, u64, u64) {
        (self.walked, self.total - self.walked + self.pending, self.total)
    }

    fn percent(&self) -> u32 {
        (self.walked * 100).checked_div(self.total).map_or(100, |p| p as u32)
    }
}

impl<W: Write> Sender<'_, W> {
    fn blocks(&mut self) -> &mut BlockState {
        self.block.as_mut().expect("block migration state")
    }

    /// Accounts disk records written since `before` (stream bytes).
    fn account_disk(&mut self, before: u64) {
        let bytes = self.w.bytes() - before;
        self.blocks().wire += bytes;
        let b = self.blocks();
        let (figures, wire) = (b.figures(), b.wire);
        {
            let mut s = lock(&self.shared.stats);
            s.transferred = self.wire_bytes();
            s.disk_bytes = wire;
            s.disk = Some(figures);
        }
        self.pacer.account(bytes, 0);
    }

    /// Reads `[offset, offset+len)` of copied disk `k` and sends it, chunk by chunk: runs of
    /// all-zero granules as BLOCK_ZERO, the rest as BLOCK. With `bulk`, each chunk's dirty
    /// bits are cleared just before it is read, and the pass's progress moves on.
    fn send_disk_range(&mut self, k: usize, offset: u64, len: u64, bulk: bool) -> Result<(), Stop> {
        let end = offset + len;
        let mut at = offset;
        while at < end {
            self.check_cancel()?;
            let n = (end - at).min(MAX_BLOCK_DATA as u64);
            let before = self.w.bytes();
            let b = self.block.as_mut().expect("block migration state");
            let d = &b.disks[k];
            if bulk {
                d.dirty.clear(at, n);
            }
            b.buf.resize(n as usize, 0);
            lock(&d.backend)
                .read_at(&mut b.buf, at)
                .map_err(|err| Failure::ReadDisk { at, err })?;
            let index = d.index;
            // Granule-aligned pieces, so a zero test lines up with the dirty bitmap.
            let mut i = 0u64;
            while i < n {
                let piece_end = |p: u64| ((at + p) / GRANULE + 1) * GRANULE - at;
                let zero = is_zero(&b.buf[i as usize..piece_end(i).min(n) as usize]);
                let mut j = piece_end(i).min(n);
                while j < n && is_zero(&b.buf[j as usize..piece_end(j).min(n) as usize]) == zero {
                    j = piece_end(j).min(n);
                }
                let r = if zero {
                    self.w.block_zero(index, at + i, j - i)
                } else {
                    self.w.block(index, at + i, &b.buf[i as usize..j as usize])
                };
                r.map_err(Stop::Io)?;
                i = j;
            }
            if bulk {
                self.blocks().walked += n;
            }
            self.account_disk(before);
            self.progress()?;
            at += n;
        }
        Ok(())
    }

    /// A PROGRESS record whenever the bulk pass reaches another whole percent.
    fn progress(&mut self) -> Result<(), Stop> {
        let b = self.blocks();
        let p = b.percent();
        if b.last_percent == Some(p) {
            return Ok(());
        }
        b.last_percent = Some(p);
        let before = self.w.bytes();
        self.w.progress(p).map_err(Stop::Io)?;
        self.account_disk(before);
        Ok(())
    }

    /// The bulk pass over every copied disk, in order.
    pub fn send_disks_bulk(&mut self) -> Result<(), Stop> {
        self.progress()?;
        for k in 0..self.blocks().disks.len() {
            let (size, mode, backend) = {
                let b = self.blocks();
                (b.disks[k].size, b.mode, b.disks[k].backend.clone())
            };
            // The walk starts here: bits set so far stand for writes the allocation status
            // below already shows, so they can go. Bits set after it stay, however the
            // status described their range (a write may land in what it called a hole).
            let extents = {
                let mut image = lock(&backend);
                self.blocks().disks[k].dirty.clear(0, size);
                image.block_status(0, size).map_err(Failure::Allocation)?
            };
            for e in extents {
                let wanted = mode == Mode::Full || e.allocated_in_top();
                if wanted && e.data {
                    self.send_disk_range(k, e.start, e.length, true)?;
                    continue;
                }
                // Zeroes or (for -b) unallocated: a range, no data read. For -i, what the top
                // layer does not define is the shared base's and is not sent at all.
                let before = self.w.bytes();
                if wanted {
                    let index = self.blocks().disks[k].index;
                    self.w.block_zero(index, e.start, e.length).map_err(Stop::Io)?;
                }
                self.blocks().walked += e.length;
                self.account_disk(before);
                self.progress()?;
            }
        }
        Ok(())
    }

    /// Sends the granules in `taken` (their current contents).
    pub fn send_disk_dirty(&mut self, taken: &Taken) -> Result<(), Stop> {
        for (k, bits) in taken.0.iter().enumerate() {
            let (granules, size) = {
                let d = &self.blocks().disks[k];
                (d.dirty.granules(), d.size)
            };
            for (first, count) in dirty::runs(bits, granules, u64::MAX) {
                let start = first * GRANULE;
                let len = ((first + count) * GRANULE).min(size) - start;
                self.send_disk_range(k, start, len, false)?;
                let b = self.blocks();
                b.pending = b.pending.saturating_sub(len);
            }
        }
        let before = self.w.bytes();
        self.account_disk(before);
        Ok(())
    }
}
