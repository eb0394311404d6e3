//! KVM's dirty log over guest RAM for one migration, in the cheapest way this host allows.
//!
//! **Manual** (KVM offers `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` with initially-set bitmaps):
//! turning logging on protects nothing and every bit reads as set. Only pages *armed*
//! (cleared, hence write-protected, at least once) have a meaningful bit: set means written
//! since it was last cleared. The first round arms the pages the guest touched (found by
//! `PAGEMAP_SCAN`); each sync reports the armed pages whose bit is set plus the unarmed
//! pages that became populated since (a new scan), and re-arms them all before they are
//! sent. A page never populated is zero on both sides. Without `PAGEMAP_SCAN` every page
//! is armed at the first round (what the classic way costs, once).
//!
//! **Classic**: turning logging on write-protects the whole slot; `KVM_GET_DIRTY_LOG` reads
//! and clears the bitmap and protects the pages again.
//!
//! Either way the log of the writes devices made through the VMM ([`PageLog`]) is OR'ed in.

use super::dirty::{Bitmap, DirtyError, PAGE};
use super::{manual, pagemap};
use crate::memory::GuestRam;
use devices::pagelog::PageLog;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MmapRegion};

/// How the log is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Manual,
    Classic,
}

/// The dirty log of one migration, from `start` to `stop`.
pub struct DirtyLog {
    way: Way,
    /// Manual: per region, the armed pages.
    armed: Vec<Bitmap>,
    /// Manual: every page is armed (no `PAGEMAP_SCAN` on this kernel).
    all_armed: bool,
    /// Per region, the buffer KVM's log is read into, handed out with the sync's result.
    logs: Vec<Bitmap>,
}

fn region_bitmap(r: &vm_memory::GuestRegionMmap<PageLog>) -> &PageLog {
    let m: &MmapRegion<PageLog> = r;
    m.bitmap()
}

fn pages_of(ram: &GuestRam) -> Vec<u64> {
    ram.iter().map(|r| r.len() / PAGE).collect()
}

impl DirtyLog {
    /// Turns logging on for every RAM slot, manually protected where KVM offers it, and
    /// forgets earlier device writes.
    pub fn start(vm: &VmFd, ram: &GuestRam) -> Result<Self, DirtyError> {
        let way = if manual::offered(vm) { Way::Manual } else { Way::Classic };
        Self::start_as(vm, ram, way)
    }

    /// [`start`](Self::start) the way given.
    pub fn start_as(vm: &VmFd, ram: &GuestRam, way: Way) -> Result<Self, DirtyError> {
        manual::set(vm, way == Way::Manual).or_else(|e| match way {
            Way::Manual => Err(DirtyError::Manual(e)),
            // A KVM without the capability has nothing to turn off.
            Way::Classic => Ok(()),
        })?;
        if let Err(e) = crate::memory::register(vm, ram, true) {
            // Some slots may log already: none must.
            let _ = crate::memory::register(vm, ram, false);
            return Err(e.into());
        }
        for r in ram.iter() {
            region_bitmap(r).reset();
        }
        Ok(DirtyLog {
            way,
            armed: Vec::new(),
            all_armed: false,
            logs: Vec::new(),
        })
    }

    #[cfg(test)]
    pub fn way(&self) -> Way {
        self.way
    }

    /// The first round: the pages the guest ever touched (the rest are zero), armed so
    /// that a write from now on shows in the next [`collect`](Self::collect).
    pub fn first(&mut self, vm: &VmFd, ram: &GuestRam) -> Result<Vec<Bitmap>, DirtyError> {
        if self.way == Way::Classic {
            return pagemap::touched(ram);
        }
        let pages = pages_of(ram);
        let touched = match pagemap::scan(ram)? {
            Some(ranges) => {
                self.armed = pagemap::bitmaps(&pages, &ranges);
                pagemap::bitmaps(&pages, &ranges)
            }
            None => {
                self.armed = pages.iter().map(|&n| all_ones(n)).collect();
                self.all_armed = true;
                pagemap::touched_by_read(ram)?
            }
        };
        for (slot, (bits, &n)) in self.armed.iter().zip(&pages).enumerate() {
            let slot = slot as u32;
            manual::clear(vm, slot, n, bits).map_err(|err| DirtyError::Clear { slot, err })?;
        }
        Ok(touched)
    }

    /// Pages written since the last look, per region, armed again before they are sent.
    pub fn collect(&mut self, vm: &VmFd, ram: &GuestRam) -> Result<Vec<Bitmap>, DirtyError> {
        let fresh = match self.way {
            Way::Manual if !self.all_armed => pagemap::scan(ram)?,
            _ => None,
        };
        if self.logs.is_empty() {
            self.logs = vec![Vec::new(); ram.num_regions()];
        }
        let mut out = Vec::new();
        for (slot, r) in ram.iter().enumerate() {
            let buf = &mut self.logs[slot];
            if buf.is_empty() {
                *buf = vec![0u64; (r.len() / PAGE).div_ceil(64) as usize];
            }
            let slot = slot as u32;
            manual::get(vm, slot, buf).map_err(|err| DirtyError::Log { slot, err })?;
            if self.way == Way::Manual {
                let armed = &mut self.armed[slot as usize];
                take(buf, armed, fresh.as_ref().and_then(|f| f.get(slot as usize)).map(Vec::as_slice));
                manual::clear(vm, slot, r.len() / PAGE, buf).map_err(|err| DirtyError::Clear { slot, err })?;
            }
            // KVM's buffer carries the result, the devices' writes OR'ed in; the next sync
            // reads into a new one.
            region_bitmap(r).take_into(buf);
            out.push(std::mem::take(buf));
        }
        Ok(out)
    }

    /// Turns logging off again (it slows the guest's writes down).
    pub fn stop(self, vm: &VmFd, ram: &GuestRam) {
        let _ = crate::memory::register(vm, ram, false);
        if self.way == Way::Manual {
            let _ = manual::set(vm, false);
        }
    }
}

/// Every page of a region of `pages` pages.
fn all_ones(pages: u64) -> Bitmap {
    let mut bm = vec![u64::MAX; pages.div_ceil(64) as usize];
    if let Some(last) = bm.last_mut()
        && pages % 64 != 0
    {
        *last = (1 << (pages % 64)) - 1;
    }
    bm
}

/// Manual mode, one region: turns KVM's `log` into the pages to send (and to clear): the
/// armed pages it marks, and the unarmed pages of the `fresh` ranges (populated now),
/// which become armed. An unarmed page's bit in `log` is always set and means nothing.
pub(super) fn take(log: &mut [u64], armed: &mut [u64], fresh: Option<&[(u64, u64)]>) {
    for (l, a) in log.iter_mut().zip(armed.iter()) {
        *l &= *a;
    }
    for &(first, end) in fresh.unwrap_or(&[]) {
        for (w, mask) in pagemap::word_masks(first, end) {
            if let (Some(l), Some(a)) = (log.get_mut(w), armed.get_mut(w)) {
                let new = mask & !*a;
                *l |= new;
                *a |= new;
            }
        }
    }
}

#[cfg(test)]
#[path = "dirtylog_tests.rs"]
mod tests;
