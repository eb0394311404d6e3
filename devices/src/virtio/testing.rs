//! Test support: a guest-side driver model for virtio-pci devices. It talks to the device
//! only the way a guest can (0xCF8/0xCFC config cycles, MMIO through [`PciMmio`], a split
//! ring laid out by hand in real guest memory), plus an MSI sink that records deliveries
//! and an in-memory disk.

use super::pci::VirtioPciDevice;
use super::{GuestMem, MsiSink, VirtioDevice, status};
use crate::block::{BlockBackend, BlockError, Extent, Format};
use crate::bus::{BusDevice, lock};
use crate::pagelog::PageLog;
use crate::pci::mmio::{PCI_MMIO_END, PCI_MMIO_START};
use crate::pci::{HostBridge, PciConfigIo, PciMmio, PciRoot, assign_bars};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, MmapRegion};

pub const MEM_SIZE: usize = 4 << 20;
pub const SLOT: u32 = 1;
pub const VENDOR_CAP: u8 = 0x09;

/// Records MSI messages and lets a test wait for them.
pub struct FakeMsi {
    tx: Sender<(u64, u32)>,
    pub rx: Receiver<(u64, u32)>,
}

impl FakeMsi {
    pub fn new() -> Arc<Self> {
        let (tx, rx) = unbounded();
        Arc::new(FakeMsi { tx, rx })
    }

    pub fn wait(&self) -> Option<(u64, u32)> {
        self.rx.recv_timeout(Duration::from_secs(5)).ok()
    }

    pub fn none_within(&self, ms: u64) -> bool {
        self.rx.recv_timeout(Duration::from_millis(ms)).is_err()
    }
}

impl MsiSink for FakeMsi {
    fn signal(&self, addr: u64, data: u32) {
        let _ = self.tx.send((addr, data));
    }
}

pub fn guest_memory() -> GuestMem {
    GuestMem::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// The dirty bitmap of the (only) RAM region.
pub fn bitmap(mem: &GuestMem) -> &PageLog {
    let region: &MmapRegion<PageLog> = mem.iter().next().unwrap();
    region.bitmap()
}

/// A disk in memory, sharable between two devices (the "same image" across a restore).
pub struct MemDisk {
    pub data: Arc<Mutex<Vec<u8>>>,
    pub ro: bool,
    pub log: Arc<Mutex<Vec<String>>>,
    path: PathBuf,
}

impl MemDisk {
    pub fn new(bytes: usize) -> Self {
        MemDisk {
            data: Arc::new(Mutex::new(vec![0; bytes])),
            ro: false,
            log: Arc::default(),
            path: PathBuf::from("mem"),
        }
    }

    pub fn share(&self) -> Self {
        MemDisk {
            data: self.data.clone(),
            ro: self.ro,
            log: self.log.clone(),
            path: self.path.clone(),
        }
    }

    fn check(&self, off: u64, len: u64) -> Result<usize, BlockError> {
        let size = lock(&self.data).len() as u64;
        match off.checked_add(len) {
            Some(end) if end <= size => Ok(off as usize),
            _ => Err(BlockError::OutOfRange { offset: off, len, size }),
        }
    }
}

impl BlockBackend for MemDisk {
    fn format(&self) -> Format {
        Format::Raw
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn virtual_size(&self) -> u64 {
        lock(&self.data).len() as u64
    }
    fn read_only(&self) -> bool {
        self.ro
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        let o = self.check(offset, buf.len() as u64)?;
        buf.copy_from_slice(&lock(&self.data)[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        let o = self.check(offset, buf.len() as u64)?;
        lock(&self.data)[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<(), BlockError> {
        let o = self.check(offset, len)?;
        lock(&self.data)[o..o + len as usize].fill(0);
        lock(&self.log).push(format!("zeroes {offset} {len} {may_unmap}"));
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.check(offset, len)?;
        lock(&self.log).push(format!("discard {offset} {len}"));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        lock(&self.log).push("flush".into());
        Ok(())
    }
    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        Ok(vec![Extent {
            start: offset,
            length: len,
            depth: 0,
            present: true,
            zero: false,
            data: true,
            offset: Some(offset),
        }])
    }
}

/// Locations of the virtio structures, found by walking the capability list.
#[derive(Debug, Default)]
pub struct Caps {
    pub common: u64,
    pub notify: u64,
    pub notify_mult: u32,
    pub isr: u64,
    pub device: u64,
    pub pci_cfg: u8,
    pub msix: u8,
    pub table: u64,
    pub pba: u64,
}

/// One PCI function on bus 0 slot 1, reached like a guest reaches it.
pub struct Guest {
    pub mem: GuestMem,
    pub msi: Arc<FakeMsi>,
    pub dev: Arc<Mutex<VirtioPciDevice>>,
    cfg: PciConfigIo,
    mmio: PciMmio,
    pub caps: Caps,
}

impl Guest {
    /// Plugs `device` in next to a host bridge and assigns BARs as godwit's VMM does.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMem) -> Guest {
        let msi = FakeMsi::new();
        let dev = Arc::new(Mutex::new(VirtioPciDevice::new(device, mem.clone(), msi.clone()).unwrap()));
        let mut root = PciRoot::new();
        root.add_at(0, Arc::new(Mutex::new(HostBridge::default()))).unwrap();
        root.add_at(SLOT as usize, dev.clone()).unwrap();
        assign_bars(&root, PCI_MMIO_START, PCI_MMIO_END).unwrap();
        let root = Arc::new(Mutex::new(root));
        let mut g = Guest {
            mem,
            msi,
            dev,
            cfg: PciConfigIo::new(root.clone()),
            mmio: PciMmio::new(PCI_MMIO_START, root),
            caps: Caps::default(),
        };
        g.caps = g.walk_caps();
        g
    }

    pub fn cfg_read(&mut self, off: u32, len: usize) -> u32 {
        self.cfg.write(0, &(0x8000_0000 | SLOT << 11 | (off & !3)).to_le_bytes());
        let mut d = [0u8; 4];
        self.cfg.read(4 + u64::from(off & 3), &mut d[..len]);
        u32::from_le_bytes(d)
    }

    pub fn cfg_write(&mut self, off: u32, len: usize, v: u32) {
        self.cfg.write(0, &(0x8000_0000 | SLOT << 11 | (off & !3)).to_le_bytes());
        self.cfg.write(4 + u64::from(off & 3), &v.to_le_bytes()[..len]);
    }

    pub fn bar0(&mut self) -> u64 {
        let lo = self.cfg_read(0x10, 4) & !0xf;
        let hi = self.cfg_read(0x14, 4);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    pub fn read(&mut self, addr: u64, len: usize) -> u64 {
        let mut d = [0u8; 8];
        self.mmio.read(addr - PCI_MMIO_START, &mut d[..len]);
        u64::from_le_bytes(d)
    }

    pub fn write(&mut self, addr: u64, len: usize, v: u64) {
        self.mmio.write(addr - PCI_MMIO_START, &v.to_le_bytes()[..len]);
    }

    /// What Linux's vp_modern_probe does: follow the list from 0x34, take the first vendor
    /// capability of each type, and turn (bar, offset) into an address.
    pub fn walk_caps(&mut self) -> Caps {
        let mut c = Caps::default();
        let bar0 = self.bar0();
        let mut pos = self.cfg_read(0x34, 1) as u8;
        let mut guard = 0;
        while pos != 0 && guard < 48 {
            guard += 1;
            let id = self.cfg_read(pos.into(), 1) as u8;
            if id == 0x11 {
                c.msix = pos;
                c.table = bar0 + u64::from(self.cfg_read(u32::from(pos) + 4, 4) & !7);
                c.pba = bar0 + u64::from(self.cfg_read(u32::from(pos) + 8, 4) & !7);
            } else if id == VENDOR_CAP {
                let ty = self.cfg_read(u32::from(pos) + 3, 1);
                assert_eq!(self.cfg_read(u32::from(pos) + 4, 1), 0, "every structure is in BAR0");
                let at = bar0 + u64::from(self.cfg_read(u32::from(pos) + 8, 4));
                match ty {
                    1 if c.common == 0 => c.common = at,
                    2 if c.notify == 0 => {
                        c.notify = at;
                        c.notify_mult = self.cfg_read(u32::from(pos) + 16, 4);
                    }
                    3 if c.isr == 0 => c.isr = at,
                    4 if c.device == 0 => c.device = at,
                    5 if c.pci_cfg == 0 => c.pci_cfg = pos,
                    _ => {}
                }
            }
            pos = self.cfg_read(u32::from(pos) + 1, 1) as u8;
        }
        c
    }

    pub fn common_read(&mut self, off: u64, len: usize) -> u64 {
        self.read(self.caps.common + off, len)
    }

    pub fn common_write(&mut self, off: u64, len: usize, v: u64) {
        self.write(self.caps.common + off, len, v)
    }

    pub fn status(&mut self) -> u8 {
        self.common_read(0x14, 1) as u8
    }

    pub fn set_status(&mut self, s: u8) {
        self.common_write(0x14, 1, u64::from(s));
    }

    pub fn device_features(&mut self) -> u64 {
        self.common_write(0x00, 4, 0);
        let lo = self.common_read(0x04, 4);
        self.common_write(0x00, 4, 1);
        lo | self.common_read(0x04, 4) << 32
    }

    pub fn set_driver_features(&mut self, f: u64) {
        for sel in 0..2 {
            self.common_write(0x08, 4, sel);
            self.common_write(0x0c, 4, (f >> (32 * sel)) & 0xffff_ffff);
        }
    }

    /// Reset, ACKNOWLEDGE, DRIVER, features (all offered ones in `want`), FEATURES_OK.
    pub fn negotiate(&mut self, want: u64) -> u64 {
        self.set_status(0);
        assert_eq!(self.status(), 0);
        self.set_status(status::ACKNOWLEDGE);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        let f = self.device_features() & want;
        self.set_driver_features(f);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        assert_ne!(self.status() & status::FEATURES_OK, 0);
        f
    }

    /// Programs queue `q` to use `ring` and MSI-X vector `vector`, and enables it.
    pub fn setup_queue(&mut self, q: u16, ring: &Ring, vector: u16) {
        self.common_write(0x16, 2, q.into());
        self.common_write(0x18, 2, ring.size.into());
        self.common_write(0x1a, 2, vector.into());
        for (off, addr) in [(0x20, ring.desc), (0x28, ring.avail), (0x30, ring.used)] {
            self.common_write(off, 4, addr & 0xffff_ffff);
            self.common_write(off + 4, 4, addr >> 32);
        }
        self.common_write(0x1c, 2, 1);
    }

    pub fn driver_ok(&mut self) {
        let s = self.status();
        self.set_status(s | status::DRIVER_OK);
    }

    /// Turns MSI-X on and fills entry `v` with (0xfee00000 + v << 12, 0x40 + v), unmasked.
    pub fn enable_msix(&mut self, vectors: u16) {
        for v in 0..u64::from(vectors) {
            let e = self.caps.table + 16 * v;
            self.write(e, 8, 0xfee0_0000 + (v << 12));
            self.write(e + 8, 4, 0x40 + v);
            self.write(e + 12, 4, 0);
        }
        let ctl = self.cfg_read(u32::from(self.caps.msix) + 2, 2);
        self.cfg_write(u32::from(self.caps.msix) + 2, 2, ctl | 0x8000);
    }

    pub fn notify(&mut self, q: u16) {
        self.common_write(0x16, 2, q.into());
        let off = self.common_read(0x1e, 2);
        self.write(self.caps.notify + off * u64::from(self.caps.notify_mult), 2, q.into());
    }
}

pub const VRING_DESC_F_NEXT: u16 = 1;
pub const VRING_DESC_F_WRITE: u16 = 2;
pub const VRING_DESC_F_INDIRECT: u16 = 4;

/// A split virtqueue laid out by the "driver" in guest memory.
pub struct Ring {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    next_desc: u16,
    pub avail_idx: u16,
    pub seen_used: u16,
}

impl Ring {
    pub fn new(base: u64, size: u16) -> Ring {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 0xfff) & !0xfff;
        Ring {
            size,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
            seen_used: 0,
        }
    }

    pub fn write_desc(&self, mem: &GuestMem, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        mem.write_slice(&d, GuestAddress(self.desc + 16 * u64::from(i))).unwrap();
    }

    /// Puts a chain of (addr, len, device-writable) buffers in the ring; returns its head.
    pub fn push(&mut self, mem: &GuestMem, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (self.next_desc + k as u16) % self.size;
            let last = k + 1 == bufs.len();
            let flags = if w { VRING_DESC_F_WRITE } else { 0 } | if last { 0 } else { VRING_DESC_F_NEXT };
            self.write_desc(mem, i, addr, len, flags, (i + 1) % self.size);
        }
        self.next_desc = (self.next_desc + bufs.len() as u16) % self.size;
        self.publish(mem, head);
        head
    }

    /// Adds `head` to the avail ring and bumps avail.idx.
    pub fn publish(&mut self, mem: &GuestMem, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2)).unwrap();
    }

    pub fn used_idx(&self, mem: &GuestMem) -> u16 {
        mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// Waits until `n` more used entries appear; returns them as (id, len).
    pub fn wait_used(&mut self, mem: &GuestMem, n: u16) -> Vec<(u32, u32)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.used_idx(mem).wrapping_sub(self.seen_used) < n {
            assert!(Instant::now() < deadline, "device did not complete {n} requests");
            std::thread::sleep(Duration::from_millis(1));
        }
        let done = (0..n)
            .map(|_| {
                let e = self.used + 4 + 8 * u64::from(self.seen_used % self.size);
                self.seen_used = self.seen_used.wrapping_add(1);
                (mem.read_obj(GuestAddress(e)).unwrap(), mem.read_obj(GuestAddress(e + 4)).unwrap())
            })
            .collect();
        // With EVENT_IDX, ask for an interrupt on the next completion, as Linux does.
        mem.write_obj(self.seen_used, GuestAddress(self.avail + 4 + 2 * u64::from(self.size)))
            .unwrap();
        done
    }

    /// True if nothing new is used within `ms` milliseconds.
    pub fn idle_for(&self, mem: &GuestMem, ms: u64) -> bool {
        std::thread::sleep(Duration::from_millis(ms));
        self.used_idx(mem) == self.seen_used
    }
}
