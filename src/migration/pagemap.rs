//! Which guest pages were ever touched (present in RAM or swapped out): the rest read as
//! zero and need no sending. Where the kernel has the `PAGEMAP_SCAN` ioctl (Linux 6.7 and
//! later) one call lists the populated ranges, at a cost that follows what the guest
//! touched rather than its size; elsewhere `/proc/self/pagemap` is read, one 8-byte entry
//! per page.

use super::dirty::{Bitmap, DirtyError, PAGE};
use crate::memory::GuestRam;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// `struct pm_scan_arg` (linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` (linux/fs.h).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 = (3 << 30) | ((std::mem::size_of::<ScanArg>() as u64) << 16) | ((b'f' as u64) << 8) | 16;

/// Ranges reported per call.
const BATCH: usize = 512;

/// The touched pages of each region: by `PAGEMAP_SCAN` where the kernel has it, else by
/// reading the pagemap.
pub fn touched(ram: &GuestRam) -> Result<Vec<Bitmap>, DirtyError> {
    match touched_by_scan(ram)? {
        Some(b) => Ok(b),
        None => touched_by_read(ram),
    }
}

fn host_ranges(ram: &GuestRam) -> Result<Vec<(u64, u64)>, DirtyError> {
    ram.iter()
        .map(|r| Ok((ram.get_host_address(r.start_addr())? as u64, r.len() / PAGE)))
        .collect()
}

/// The words of a bitmap that pages `first..end` touch, each with the mask of its bits.
pub fn word_masks(first: u64, end: u64) -> impl Iterator<Item = (usize, u64)> {
    let mut p = first;
    std::iter::from_fn(move || {
        if p >= end {
            return None;
        }
        let hi = end.min((p / 64 + 1) * 64);
        let n = hi - p;
        let mask = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << (p % 64) };
        let w = (p / 64) as usize;
        p = hi;
        Some((w, mask))
    })
}

/// Sets the bits of pages `first..end` (those past the end of `bm` are ignored).
pub fn set(bm: &mut [u64], first: u64, end: u64) {
    for (w, mask) in word_masks(first, end) {
        if let Some(x) = bm.get_mut(w) {
            *x |= mask;
        }
    }
}

/// Ranges of pages, as (first, end), per region.
pub type Ranges = Vec<Vec<(u64, u64)>>;

/// Bitmaps of regions of `pages` pages each with `ranges` set. They are allocated zeroed
/// (by the kernel, on first touch), so that only their words with bits set cost anything
/// to make: a region of 64 GiB has a 2 MiB bitmap.
pub fn bitmaps(pages: &[u64], ranges: &Ranges) -> Vec<Bitmap> {
    pages
        .iter()
        .zip(ranges)
        .map(|(&n, rs)| {
            let mut bm = vec![0u64; n.div_ceil(64) as usize];
            for &(first, end) in rs {
                set(&mut bm, first, end);
            }
            bm
        })
        .collect()
}

/// By `PAGEMAP_SCAN`; `None` when the kernel does not have it.
pub fn touched_by_scan(ram: &GuestRam) -> Result<Option<Vec<Bitmap>>, DirtyError> {
    let pages: Vec<u64> = ram.iter().map(|r| r.len() / PAGE).collect();
    Ok(scan(ram)?.map(|r| bitmaps(&pages, &r)))
}

/// The populated pages of each region as ranges, by `PAGEMAP_SCAN`, at a cost that
/// follows the ranges found; `None` when the kernel does not have it.
pub fn scan(ram: &GuestRam) -> Result<Option<Ranges>, DirtyError> {
    let pm = File::open("/proc/self/pagemap").map_err(DirtyError::Pagemap)?;
    let mut out = Vec::new();
    let mut vec = vec![PageRegion::default(); BATCH];
    for (host, pages) in host_ranges(ram)? {
        let mut found = Vec::new();
        let end = host + pages * PAGE;
        let mut at = host;
        while at < end {
            let mut arg = ScanArg {
                size: std::mem::size_of::<ScanArg>() as u64,
                start: at,
                end,
                vec: vec.as_mut_ptr() as u64,
                vec_len: BATCH as u64,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                ..ScanArg::default()
            };
            // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points at BATCH writable
            // page_region entries that outlive the call.
            let n = unsafe { libc::ioctl(pm.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg as *mut ScanArg) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP) if at == host && out.is_empty() => Ok(None),
                    _ => Err(DirtyError::Pagemap(e)),
                };
            }
            for r in &vec[..n as usize] {
                found.push(((r.start.max(host) - host) / PAGE, (r.end.min(end) - host).div_ceil(PAGE)));
            }
            // The walk stops where the ranges ran out of room, or at the end.
            if arg.walk_end <= at {
                break;
            }
            at = arg.walk_end;
        }
        out.push(found);
    }
    Ok(Some(out))
}

/// By reading `/proc/self/pagemap`, one entry per page.
pub fn touched_by_read(ram: &GuestRam) -> Result<Vec<Bitmap>, DirtyError> {
    let pm = File::open("/proc/self/pagemap").map_err(DirtyError::Pagemap)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8 * 8192];
    for (host, pages) in host_ranges(ram)? {
        let mut bm = vec![0u64; pages.div_ceil(64) as usize];
        let mut page = 0u64;
        while page < pages {
            let n = (pages - page).min(8192);
            let bytes = &mut buf[..(n * 8) as usize];
            pm.read_exact_at(bytes, (host / PAGE + page) * 8).map_err(DirtyError::Pagemap)?;
            for (i, e) in bytes.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(e.try_into().expect("8 bytes"));
                // bit 63: present, bit 62: swapped
                if v & (3 << 62) != 0 {
                    let p = page + i as u64;
                    bm[(p / 64) as usize] |= 1 << (p % 64);
                }
            }
            page += n;
        }
        out.push(bm);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::dirty::{listed, runs};
    use vm_memory::{Bytes, GuestAddress};

    fn sample() -> GuestRam {
        let ram = GuestRam::from_ranges(&[(GuestAddress(0), 64 << 20), (GuestAddress(1 << 32), 8 << 20)]).unwrap();
        for p in [5u64, 6, 7, 1000, 16383] {
            ram.write_obj(1u64, GuestAddress(p * PAGE + 8)).unwrap();
        }
        ram.write_obj(1u64, GuestAddress((1 << 32) + 3 * PAGE)).unwrap();
        ram
    }

    #[test]
    fn the_pagemap_read_sees_only_touched_pages() {
        let ram = sample();
        let got = listed(&touched_by_read(&ram).unwrap(), &ram);
        assert_eq!(got, vec![vec![(5, 3), (1000, 1), (16383, 1)], vec![(3, 1)]]);
    }

    /// This host's kernel has PAGEMAP_SCAN (6.7+): both ways agree; on an older kernel
    /// the scan says it cannot, and `touched` reads.
    #[test]
    fn the_scan_agrees_with_the_read() {
        let ram = sample();
        let read = touched_by_read(&ram).unwrap();
        match touched_by_scan(&ram).unwrap() {
            Some(scan) => assert_eq!(listed(&scan, &ram), listed(&read, &ram)),
            None => eprintln!("PAGEMAP_SCAN is not available on this kernel"),
        }
        assert_eq!(listed(&touched(&ram).unwrap(), &ram), listed(&read, &ram));
    }

    #[test]
    fn set_marks_ranges_a_word_at_a_time() {
        let mut bm = vec![0u64; 4];
        set(&mut bm, 3, 5);
        set(&mut bm, 60, 200);
        set(&mut bm, 255, 300); // past the end: ignored
        let want: Vec<(u64, u64)> = runs(&bm, 256, 1 << 20).collect();
        assert_eq!(want, vec![(3, 2), (60, 140), (255, 1)]);
        let b = bitmaps(&[256, 10], &vec![vec![(0, 64), (128, 192)], vec![(9, 10)]]);
        assert_eq!(b, vec![vec![u64::MAX, 0, u64::MAX, 0], vec![1 << 9]]);
    }

    /// More populated ranges than one call reports: the walk goes on from where it ended.
    #[test]
    fn the_scan_continues_past_a_full_batch() {
        let ram = GuestRam::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        // Every other page: BATCH * 2 separate ranges and more.
        let n = (BATCH as u64) * 2 + 10;
        for p in 0..n {
            ram.write_obj(1u64, GuestAddress(p * 2 * PAGE)).unwrap();
        }
        let read = touched_by_read(&ram).unwrap();
        assert_eq!(crate::migration::dirty::count(&read), n);
        if let Some(scan) = touched_by_scan(&ram).unwrap() {
            assert_eq!(scan, read);
        }
    }
}
