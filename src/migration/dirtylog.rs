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
use super::warm::Warm;
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
    /// Manual: per region, whether any page is armed; KVM's log of a region without is
    /// not read (all its bits are set and mean nothing).
    armed_any: Vec<bool>,
    /// Buffers for the first reads of KVM's log, made while logging starts.
    warm: Warm,
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
        let warm = Warm::start(pages_of(ram).iter().map(|n| n.div_ceil(64) as usize).collect());
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
            armed_any: Vec::new(),
            warm,
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
        let (touched, spans) = match pagemap::scan(ram)? {
            Some(ranges) => {
                self.armed = pagemap::bitmaps(&pages, &ranges);
                self.armed_any = ranges.iter().map(|r| !r.is_empty()).collect();
                (pagemap::bitmaps(&pages, &ranges), ranges.iter().map(|r| span(r)).collect())
            }
            None => {
                self.armed = pages.iter().map(|&n| all_ones(n)).collect();
                self.armed_any = vec![true; pages.len()];
                self.all_armed = true;
                (pagemap::touched_by_read(ram)?, vec![Some(0..usize::MAX); pages.len()])
            }
        };
        for (slot, ((bits, &n), words)) in self.armed.iter().zip(&pages).zip(spans).enumerate() {
            let slot = slot as u32;
            if let Some(words) = words {
                manual::clear_span(vm, slot, n, bits, words).map_err(|err| DirtyError::Clear { slot, err })?;
            }
        }
        Ok(touched)
    }

    /// Pages written since the last look, per region, armed again before they are sent.
    pub fn collect(&mut self, vm: &VmFd, ram: &GuestRam) -> Result<Vec<Bitmap>, DirtyError> {
        let fresh = match self.way {
            Way::Manual if !self.all_armed => pagemap::scan(ram)?,
            _ => None,
        };
        let mut out = Vec::new();
        for (slot, r) in ram.iter().enumerate() {
            let pages = r.len() / PAGE;
            let i = slot;
            let mut buf = self.warm.take(i, pages.div_ceil(64) as usize);
            let slot = slot as u32;
            let manual = self.way == Way::Manual;
            // Without armed pages KVM's bits all mean nothing: its log (2 MiB at 64 GiB,
            // written into a fresh buffer) is not read.
            let read = !manual || self.armed_any.get(i).copied().unwrap_or(true);
            if read {
                manual::get(vm, slot, &mut buf).map_err(|err| DirtyError::Log { slot, err })?;
            }
            if manual {
                let new = fresh.as_ref().and_then(|f| f.get(i)).map(Vec::as_slice);
                let armed = &mut self.armed[i];
                let clear = if read {
                    take(&mut buf, armed, new);
                    manual::clear(vm, slot, pages, &buf)
                } else {
                    arm(&mut buf, armed, new.unwrap_or(&[]));
                    match new.and_then(span) {
                        Some(words) => manual::clear_span(vm, slot, pages, &buf, words),
                        None => Ok(()),
                    }
                };
                clear.map_err(|err| DirtyError::Clear { slot, err })?;
                if let Some(a) = self.armed_any.get_mut(i) {
                    *a |= new.is_some_and(|n| !n.is_empty());
                }
            }
            region_bitmap(r).take_into(&mut buf);
            out.push(buf);
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
    arm(log, armed, fresh.unwrap_or(&[]));
}

/// Marks in `log`, and arms, the unarmed pages of the `fresh` ranges.
fn arm(log: &mut [u64], armed: &mut [u64], fresh: &[(u64, u64)]) {
    for &(first, end) in fresh {
        for (w, mask) in pagemap::word_masks(first, end) {
            if let (Some(l), Some(a)) = (log.get_mut(w), armed.get_mut(w)) {
                let new = mask & !*a;
                *l |= new;
                *a |= new;
            }
        }
    }
}

/// The words of a bitmap that `ranges` of pages touch, from the first to the last.
fn span(ranges: &[(u64, u64)]) -> Option<std::ops::Range<usize>> {
    let first = ranges.iter().map(|r| r.0).min()?;
    let end = ranges.iter().map(|r| r.1).max()?;
    (end > first).then(|| (first / 64) as usize..end.div_ceil(64) as usize)
}

#[cfg(test)]
#[path = "dirtylog_tests.rs"]
mod tests;
