//! A split ring and guest memory contents decoded from fuzzer bytes, and the map of what
//! a device may write given that ring.
//!
//! Layout of the input (missing bytes read as zero): a device byte; a queue-size byte
//! (a power of two up to 256, or with its top bit set, a raw 16-bit size); with the device
//! byte's 0x20 bit, three raw ring addresses; the available index; one 16-byte descriptor
//! and one available entry per ring slot; then bytes repeated over the rest of RAM (they
//! become request headers, frames and commands) and, for the receive queue, frame lengths.

use super::{HOLE_END, REGION, SPAN};
use crate::virtio::GuestMem;
use std::collections::BTreeSet;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress};

/// Where the rings go unless the input places them.
const DESC: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
/// Where the filler starts in the first region.
const FILL: u64 = 0x3000;
/// The largest queue the devices offer.
pub const MAX_QUEUE: u16 = 256;
/// Most bytes of an indirect table looked at when mapping what is writable.
const MAX_INDIRECT: u64 = 0x1_0000;

/// Which queue handler gets the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Blk,
    NetRx,
    NetTx,
    NetCtrl,
}

#[derive(Debug)]
pub struct Layout {
    pub device: Target,
    pub event_idx: bool,
    /// As the driver wrote it: the device may refuse it.
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub avail_idx: u16,
    /// Each descriptor's 16 bytes, as they go into the table.
    descs: Vec<[u8; 16]>,
    entries: Vec<u16>,
    filler: Vec<u8>,
    /// Frames the network back end has for the receive queue.
    pub frames: Vec<usize>,
}

/// Reads bytes off the front of the input; zeroes once it runs out.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Mostly near RAM (inside, across its ends, in the hole), sometimes anywhere.
fn address(raw: u64) -> u64 {
    if raw >> 63 == 0 { raw % (SPAN + 0x1000) } else { raw }
}

/// A descriptor: address and `next` bent towards useful values, length and flags raw
/// (mostly small lengths).
fn descriptor(c: &mut Cursor<'_>, size: u16) -> [u8; 16] {
    let addr = address(c.u64());
    let raw_len = c.u32();
    let len = if raw_len >> 31 == 0 { raw_len % 0x2000 } else { raw_len };
    let flags = c.u16();
    let raw_next = c.u16();
    let next = if raw_next >> 15 == 0 { raw_next % size.max(1) } else { raw_next };
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..].copy_from_slice(&next.to_le_bytes());
    d
}

impl Layout {
    pub fn decode(data: &[u8]) -> Layout {
        let mut c = Cursor(data);
        let dev = c.u8();
        let device = [Target::Blk, Target::NetRx, Target::NetTx, Target::NetCtrl][usize::from(dev % 4)];
        let s = c.u8();
        let size = if s >> 7 == 0 { 1 << (s % 9) } else { c.u16() };
        let (desc, avail, used) = if dev & 0x20 != 0 {
            (address(c.u64()), address(c.u64()), address(c.u64()))
        } else {
            (DESC, AVAIL, USED)
        };
        let a = c.u8();
        let avail_idx = if a >> 7 == 0 {
            u16::from(a) % (size.min(MAX_QUEUE) + 1)
        } else {
            c.u16()
        };
        let slots = size.min(MAX_QUEUE);
        let descs = (0..slots).map(|_| descriptor(&mut c, slots)).collect();
        let entries = (0..slots)
            .map(|_| {
                let e = c.u16();
                if e >> 15 == 0 { e % slots.max(1) } else { e }
            })
            .collect();
        let frames = match device {
            Target::NetRx => (0..1 + c.u8() % 3).map(|_| usize::from(c.u16())).collect(),
            _ => Vec::new(),
        };
        Layout {
            device,
            event_idx: dev & 0x10 != 0,
            size,
            desc,
            avail,
            used,
            avail_idx,
            descs,
            entries,
            filler: c.0.to_vec(),
            frames,
        }
    }

    /// Fills RAM, then lays the rings over it (writes outside RAM are dropped, as a
    /// driver's would be).
    pub fn write(&self, mem: &GuestMem) {
        if !self.filler.is_empty() {
            for (start, end) in [(FILL, REGION), (HOLE_END, SPAN)] {
                let bytes: Vec<u8> = self.filler.iter().copied().cycle().take((end - start) as usize).collect();
                let _ = mem.write_slice(&bytes, GuestAddress(start));
            }
        }
        for (i, d) in self.descs.iter().enumerate() {
            let _ = mem.write_slice(d, GuestAddress(self.desc.wrapping_add(16 * i as u64)));
        }
        let _ = mem.write_obj(0u16, GuestAddress(self.avail));
        let _ = mem.write_obj(self.avail_idx, GuestAddress(self.avail.wrapping_add(2)));
        for (i, e) in self.entries.iter().enumerate() {
            let _ = mem.write_obj(*e, GuestAddress(self.avail.wrapping_add(4 + 2 * i as u64)));
        }
    }

    /// The bytes of the filler, cycled to `len` (frames for the receive queue).
    pub fn filler_bytes(&self, len: usize) -> Vec<u8> {
        if self.filler.is_empty() {
            return vec![0; len];
        }
        self.filler.iter().copied().cycle().take(len).collect()
    }
}

/// Up to `len` bytes of RAM (given whole, as [`super::snapshot`] takes it) from `addr`,
/// stopping at the end of its region.
fn read_ram(ram: &[u8], addr: u64, len: u64) -> &[u8] {
    let end = match addr {
        a if a < REGION => REGION,
        a if (HOLE_END..SPAN).contains(&a) => SPAN,
        _ => return &[],
    };
    &ram[addr as usize..(addr + len.min(end - addr)) as usize]
}

/// A queue's ring as the device sees it.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    pub desc: u64,
    pub used: u64,
    pub size: u16,
}

/// Which bytes of RAM the device may change.
pub struct WriteMap(Vec<bool>);

impl WriteMap {
    /// From the descriptor table and indirect tables as they are in `ram` (a snapshot of
    /// guest RAM), for the ring as the device took it (which is not what the driver asked
    /// for when it asked for a bad size or unaligned addresses).
    pub fn of(ram: &[u8], ring: Ring) -> WriteMap {
        let mut m = WriteMap(vec![false; SPAN as usize]);
        m.allow(ring.used, 6 + 8 * u64::from(ring.size));
        let mut indirect = BTreeSet::new();
        m.table(read_ram(ram, ring.desc, 16 * u64::from(ring.size)), Some(&mut indirect));
        for (addr, len) in indirect {
            m.table(read_ram(ram, addr, len.min(MAX_INDIRECT)), None);
        }
        m
    }

    /// Allows the writable buffers of a descriptor table, collecting the indirect tables
    /// it names when it is the ring's own.
    fn table(&mut self, t: &[u8], mut indirect: Option<&mut BTreeSet<(u64, u64)>>) {
        for d in t.chunks_exact(16) {
            let addr = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
            let len = u64::from(u32::from_le_bytes(d[8..12].try_into().expect("4 bytes")));
            let flags = u32::from(u16::from_le_bytes([d[12], d[13]]));
            if flags & VRING_DESC_F_INDIRECT != 0 {
                if let Some(set) = indirect.as_deref_mut() {
                    set.insert((addr, len));
                }
            } else if flags & VRING_DESC_F_WRITE != 0 {
                self.allow(addr, len);
            }
        }
    }

    fn allow(&mut self, addr: u64, len: u64) {
        let start = addr.min(SPAN) as usize;
        let end = addr.saturating_add(len).min(SPAN) as usize;
        self.0[start..end].fill(true);
    }

    pub fn union(&mut self, other: &WriteMap) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= *b;
        }
    }

    /// The first byte that differs between `before` and `after` where nothing was writable.
    pub fn first_forbidden_change(&self, before: &[u8], after: &[u8]) -> Option<usize> {
        const PAGE: usize = 4096;
        let pages = before.chunks(PAGE).zip(after.chunks(PAGE)).enumerate();
        pages.filter(|(_, (b, a))| b != a).find_map(|(p, (b, a))| {
            (0..b.len())
                .map(|i| p * PAGE + i)
                .find(|&at| b[at % PAGE] != a[at % PAGE] && !self.0[at])
        })
    }
}
