//! The transport as Linux's virtio_pci sees it: identity and capability walk, BAR sizing and
//! relocation, feature and status handshake, queue registers, MSI-X, the config-access
//! window, and a hostile driver.

use super::*;
use crate::virtio::blk::{BlkConfig, VirtioBlk};
use crate::virtio::testing::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use vm_memory::{Bytes, GuestAddress};

const HDR: u64 = 0x100000;
const STATUS_BYTE: u64 = 0x101000;

fn blk_guest() -> Guest {
    let blk = VirtioBlk::new(Box::new(MemDisk::new(64 * 512)), BlkConfig::default()).unwrap();
    Guest::new(Box::new(blk), guest_memory())
}

/// Sets the device up with one 16-entry queue on MSI-X vector 1.
fn ready(g: &mut Guest) -> Ring {
    g.enable_msix(2);
    g.negotiate(!0);
    g.common_write(0x10, 2, 0);
    let ring = Ring::new(0x10000, 16);
    g.setup_queue(0, &ring, 1);
    g.driver_ok();
    ring
}

/// A FLUSH request; returns the used length once done.
fn flush(g: &mut Guest, ring: &mut Ring) -> u32 {
    g.mem
        .write_slice(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], GuestAddress(HDR))
        .unwrap();
    ring.push(&g.mem, &[(HDR, 16, false), (STATUS_BYTE, 1, true)]);
    g.notify(0);
    ring.wait_used(&g.mem, 1)[0].1
}

#[test]
fn probe_like_linux() {
    let mut g = blk_guest();
    assert_eq!(g.cfg_read(0x00, 4), 0x1042_1af4);
    assert_eq!(g.cfg_read(0x08, 1), 1, "revision 1: modern");
    assert_eq!(g.cfg_read(0x08, 4) >> 8, 0x018000);
    assert_eq!(g.cfg_read(0x2c, 2), 0x1af4);
    assert!(g.cfg_read(0x2e, 2) >= 0x40);
    assert_eq!(g.cfg_read(0x0e, 1), 0, "header type 0");
    assert_eq!(g.cfg_read(0x3d, 1), 0, "no INTx pin");
    assert_ne!(g.cfg_read(0x06, 2) & 0x10, 0, "capability list");
    let bar = g.cfg_read(0x10, 4);
    assert_eq!(bar & 0xf, 0x4, "64-bit, non-prefetchable memory");
    let base = g.bar0();
    assert!((0xc000_0000..0xfec0_0000).contains(&base) && base.is_multiple_of(caps::BAR0_SIZE));
    assert_ne!(g.cfg_read(0x04, 2) & 2, 0, "memory decode on");

    let c = g.walk_caps();
    assert!(c.common != 0 && c.notify != 0 && c.isr != 0 && c.device != 0 && c.pci_cfg != 0 && c.msix != 0);
    assert_eq!(c.notify_mult, 4);
    assert_eq!(c.common, base);
    for a in [c.common, c.notify, c.isr, c.device, c.table, c.pba] {
        assert!(a >= base && a < base + caps::BAR0_SIZE);
    }
    assert_eq!(g.cfg_read(u32::from(c.msix) + 2, 2) & 0x7ff, 1, "two vectors");
    assert_eq!(g.cfg_read(u32::from(c.msix) + 4, 4) & 7, 0, "table in BAR0");
    // Linux maps at least 56 bytes of common config.
    let mut pos = g.cfg_read(0x34, 1);
    while pos != 0 {
        if g.cfg_read(pos, 1) == 9 && g.cfg_read(pos + 3, 1) == 1 {
            assert!(g.cfg_read(pos + 12, 4) >= 56);
        }
        pos = g.cfg_read(pos + 1, 1);
    }
    assert_eq!(g.common_read(0x12, 2), 1, "num_queues");
}

#[test]
fn bar_sizing_and_relocation() {
    let mut g = blk_guest();
    let old = g.bar0();
    let cmd = g.cfg_read(0x04, 2);
    g.cfg_write(0x04, 2, cmd & !2);
    assert_eq!(g.read(old + 0x12, 2), 0xffff, "decode off");
    g.cfg_write(0x10, 4, !0);
    g.cfg_write(0x14, 4, !0);
    assert_eq!(g.cfg_read(0x10, 4), 0xffff_8004);
    assert_eq!(g.cfg_read(0x14, 4), 0xffff_ffff);
    // The guest puts BAR0 somewhere else.
    let new = 0xe000_0000u64;
    g.cfg_write(0x10, 4, new as u32);
    g.cfg_write(0x14, 4, 0);
    g.cfg_write(0x04, 2, cmd);
    assert_eq!(g.bar0(), new);
    assert_eq!(g.read(new + 0x12, 2), 1);
    assert_eq!(g.read(old + 0x12, 2), 0xffff, "nothing left at the old address");
    g.caps = g.walk_caps();
    assert_eq!(g.caps.common, new);
    let mut ring = ready(&mut g);
    assert_eq!(flush(&mut g, &mut ring), 1);
    let info = lock(&g.dev).info();
    assert_eq!(info.bar0.map(|b| (b.base, b.size)), Some((new, caps::BAR0_SIZE)));
    assert_eq!(
        (info.vendor_id, info.device_id, info.class, info.msix_vectors),
        (0x1af4, 0x1042, 0x018000, 2)
    );
    assert_eq!(info.queue_vectors, vec![1]);
    assert!(info.msix_enabled);
}

#[test]
fn features_and_status() {
    let mut g = blk_guest();
    let f = g.device_features();
    for bit in [
        VIRTIO_F_VERSION_1,
        crate::virtio::VIRTIO_F_RING_EVENT_IDX,
        crate::virtio::VIRTIO_F_RING_INDIRECT_DESC,
    ] {
        assert_ne!(f & bit, 0);
    }
    g.common_write(0x00, 4, 2);
    assert_eq!(g.common_read(0x04, 4), 0, "no third feature word");

    g.set_status(status::ACKNOWLEDGE | status::DRIVER);
    g.set_driver_features((1 << 40) | 1 | (f & !VIRTIO_F_VERSION_1));
    g.common_write(0x08, 4, 1);
    assert_eq!(g.common_read(0x0c, 4), 0, "unoffered bits dropped");
    g.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(g.status() & status::FEATURES_OK, 0, "refused without VERSION_1");

    let acked = g.negotiate(!0);
    assert_eq!(acked, f);
    g.set_driver_features(0);
    g.common_write(0x08, 4, 1);
    assert_eq!(g.common_read(0x0c, 4), f >> 32, "fixed after FEATURES_OK");
    // DRIVER_OK with the required queue not enabled: the device cannot start.
    g.driver_ok();
    assert_ne!(g.status() & status::NEEDS_RESET, 0);
    g.set_status(0);
    assert_eq!(g.status(), 0, "reset completes at once");
    g.set_status(status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK);
    assert_eq!(
        g.status() & (status::NEEDS_RESET | status::DRIVER_OK),
        status::NEEDS_RESET,
        "DRIVER_OK before FEATURES_OK"
    );
}

#[test]
fn queue_registers() {
    let mut g = blk_guest();
    g.negotiate(!0);
    g.common_write(0x16, 2, 0);
    assert_eq!(g.common_read(0x18, 2), 256);
    g.common_write(0x18, 2, 300);
    assert_eq!(g.common_read(0x18, 2), 256, "not a power of two");
    g.common_write(0x18, 2, 64);
    assert_eq!(g.common_read(0x18, 2), 64);
    g.common_write(0x20, 4, 0x1234_5000);
    g.common_write(0x24, 4, 0x1);
    assert_eq!(g.common_read(0x20, 8), 0x1_1234_5000);
    g.common_write(0x28, 8, 0x2000);
    assert_eq!(g.common_read(0x28, 4), 0x2000);
    assert_eq!(g.common_read(0x1e, 2), 0, "notify offset");
    g.common_write(0x1a, 2, 7);
    assert_eq!(g.common_read(0x1a, 2), 0xffff, "vector beyond the table");
    g.common_write(0x1a, 2, 1);
    assert_eq!(g.common_read(0x1a, 2), 1);
    g.common_write(0x10, 2, 5);
    assert_eq!(g.common_read(0x10, 2), 0xffff);
    // A queue that does not exist reads as size 0 and ignores writes.
    g.common_write(0x16, 2, 5);
    assert_eq!(g.common_read(0x18, 2), 0);
    g.common_write(0x18, 2, 16);
    g.common_write(0x1c, 2, 1);
    assert_eq!(g.common_read(0x1c, 2), 0);
    assert_eq!(g.common_read(0x1a, 2), 0xffff);
    assert_eq!(g.common_read(0x38, 4), 0, "beyond the registers");

    // Enabled queues are frozen; rings outside guest memory make DRIVER_OK fail.
    g.common_write(0x16, 2, 0);
    g.common_write(0x1c, 2, 1);
    g.common_write(0x18, 2, 32);
    assert_eq!(g.common_read(0x18, 2), 64);
    g.enable_msix(2);
    g.common_write(0x10, 2, 0);
    g.driver_ok();
    assert_ne!(g.status() & status::NEEDS_RESET, 0);
    assert_eq!(g.msi.wait(), Some((0xfee0_0000, 0x40)), "config interrupt for NEEDS_RESET");
    assert_eq!(g.read(g.caps.isr, 1) & 2, 2);
}

#[test]
fn msix_masking_pba_and_isr() {
    let mut g = blk_guest();
    let mut ring = ready(&mut g);
    let entry1 = g.caps.table + 16;
    g.write(entry1 + 12, 4, 1);
    assert_eq!(flush(&mut g, &mut ring), 1);
    assert!(g.msi.none_within(20), "masked vector fired");
    assert_eq!(g.read(g.caps.pba, 8), 0b10, "pending bit");
    g.write(entry1 + 12, 4, 0);
    assert_eq!(g.msi.wait(), Some((0xfee0_1000, 0x41)));
    assert_eq!(g.read(g.caps.pba, 8), 0);

    // Function mask in the capability's Message Control.
    let ctl_off = u32::from(g.caps.msix) + 2;
    let ctl = g.cfg_read(ctl_off, 2);
    g.cfg_write(ctl_off, 2, ctl | 0x4000);
    assert_eq!(flush(&mut g, &mut ring), 1);
    assert!(g.msi.none_within(20));
    assert_eq!(g.read(g.caps.pba, 8), 0b10);
    g.cfg_write(ctl_off, 2, ctl);
    assert_eq!(g.msi.wait(), Some((0xfee0_1000, 0x41)));

    // ISR: set on every queue interrupt, cleared by reading.
    assert_eq!(g.read(g.caps.isr, 1), 1);
    assert_eq!(g.read(g.caps.isr, 1), 0);
    // MSI-X off: the ISR is the only signal (a polling driver's mode).
    g.cfg_write(ctl_off, 2, ctl & !0x8000);
    assert_eq!(flush(&mut g, &mut ring), 1);
    assert!(g.msi.none_within(20));
    assert_eq!(g.read(g.caps.isr, 1), 1);
}

#[test]
fn pci_cfg_access_window() {
    let mut g = blk_guest();
    let cap = u32::from(g.caps.pci_cfg);
    let window = |g: &mut Guest, offset: u32, len: u32| {
        g.cfg_write(cap + 4, 1, 0);
        g.cfg_write(cap + 8, 4, offset);
        g.cfg_write(cap + 12, 4, len);
    };
    window(&mut g, 0x12, 2);
    assert_eq!(g.cfg_read(cap + 16, 4), 1, "num_queues through config space");
    window(&mut g, 0x14, 1);
    g.cfg_write(cap + 16, 1, u32::from(status::ACKNOWLEDGE));
    assert_eq!(g.status(), status::ACKNOWLEDGE);
    window(&mut g, 0x13, 2);
    assert_eq!(g.cfg_read(cap + 16, 4), 0, "misaligned access refused");
    g.cfg_write(cap + 4, 1, 3);
    window(&mut g, 0x12, 2);
    g.cfg_write(cap + 4, 1, 3);
    assert_eq!(g.cfg_read(cap + 16, 4), 0, "no such BAR");
}

static WORKER_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Random register, config-space and ring contents must never panic the VMM (the vCPU
/// thread here, or the device's I/O thread), and the device must still work afterwards.
/// Each episode starts the device properly with rings at random places, then mixes random
/// descriptor chains with random register and config-space traffic.
#[test]
fn hostile_driver() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("virtio-blk") {
            WORKER_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        prev(info);
    }));
    let mut g = blk_guest();
    let base = g.bar0();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mem_size = MEM_SIZE as u64;
    for _episode in 0..40 {
        g.enable_msix(2);
        g.negotiate(rnd() | VIRTIO_F_VERSION_1);
        let size = [1u16, 2, 4, 16, 256][(rnd() % 5) as usize];
        let mut ring = Ring::new((rnd() % (mem_size - 0x20000)) & !0xfff, size);
        g.setup_queue(0, &ring, (rnd() % 3) as u16);
        g.driver_ok();
        for _ in 0..150 {
            let r = rnd();
            let len = [1usize, 2, 4, 8][(r & 3) as usize];
            let value = match (r >> 2) % 4 {
                0 => rnd(),
                1 => (rnd() % mem_size) & !0xf,
                2 => rnd() % 8,
                _ => 1,
            };
            match (r >> 8) % 10 {
                // Config space, but mostly leave BAR0 and the command register alone.
                0 => {
                    let off = (rnd() % 256) as u32 & !(len as u32 - 1).min(3);
                    if !(0x04..0x18).contains(&off) || rnd() % 50 == 0 {
                        g.cfg_write(off, len.min(4), value as u32);
                    }
                    g.cfg_read(off, len.min(4));
                }
                1 => {
                    g.read(base + rnd() % caps::BAR0_SIZE, len);
                }
                2 => g.common_write((rnd() % 0x40) & !(len as u64 - 1), len, value),
                3 if rnd() % 8 == 0 => g.set_status(value as u8),
                4 => g.write(base + rnd() % caps::BAR0_SIZE, len, value),
                _ => {
                    // A random chain: descriptors anywhere, any flags, any links.
                    for i in 0..size.min(4) {
                        let addr = if rnd() % 2 == 0 { rnd() % mem_size } else { rnd() };
                        let len = if rnd() % 2 == 0 { (rnd() % 0x3000) as u32 } else { rnd() as u32 };
                        ring.write_desc(
                            &g.mem,
                            (rnd() % u64::from(size)) as u16 ^ i,
                            addr,
                            len,
                            rnd() as u16 & 7,
                            rnd() as u16 % (size + 2),
                        );
                    }
                    let head = (rnd() % (u64::from(size) + 2)) as u16;
                    ring.publish(&g.mem, head);
                    if rnd() % 16 == 0 {
                        ring.publish(&g.mem, rnd() as u16);
                    }
                    g.notify(0);
                }
            }
            // Keep memory decode and BAR0 in place so the MMIO keeps reaching the device.
            if g.bar0() != base || g.cfg_read(0x04, 2) & 2 == 0 {
                g.cfg_write(0x10, 4, base as u32);
                g.cfg_write(0x14, 4, (base >> 32) as u32);
                g.cfg_write(0x04, 2, 0x6);
            }
        }
        if rnd() % 4 == 0 {
            lock(&g.dev).pause();
            let _ = lock(&g.dev).save_state();
            lock(&g.dev).resume();
        }
    }
    g.mem.write_slice(&[0u8; 0x2000], GuestAddress(0x10000)).unwrap();
    let ctl = g.cfg_read(u32::from(g.caps.msix) + 2, 2);
    g.cfg_write(u32::from(g.caps.msix) + 2, 2, ctl & !0x4000);
    let mut ring = ready(&mut g);
    assert_eq!(flush(&mut g, &mut ring), 1);
    assert_eq!(WORKER_PANICS.load(Ordering::SeqCst), 0);
}

/// Records the notify addresses tied to eventfds, as KVM would hold them.
#[derive(Default)]
struct FakeIoEvents(Mutex<Vec<(u64, vmm_sys_util::eventfd::EventFd)>>);

impl crate::virtio::IoEvents for FakeIoEvents {
    fn register(&self, addr: u64, fd: &vmm_sys_util::eventfd::EventFd) -> std::io::Result<()> {
        lock(&self.0).push((addr, fd.try_clone()?));
        Ok(())
    }
    fn unregister(&self, addr: u64, _fd: &vmm_sys_util::eventfd::EventFd) -> std::io::Result<()> {
        lock(&self.0).retain(|(a, _)| *a != addr);
        Ok(())
    }
}

impl FakeIoEvents {
    fn addrs(&self) -> Vec<u64> {
        lock(&self.0).iter().map(|(a, _)| *a).collect()
    }
}

#[test]
fn notifies_through_ioeventfds_follow_bar_and_reset() {
    let mut g = blk_guest();
    let io = Arc::new(FakeIoEvents::default());
    lock(&g.dev).set_ioevents(io.clone());
    assert!(io.addrs().is_empty(), "nothing tied before the driver is ready");
    let mut ring = ready(&mut g);
    let bar = g.bar0();
    assert_eq!(io.addrs(), vec![bar + caps::NOTIFY_OFFSET]);
    // A request announced only through the eventfd (as KVM signals it) is served.
    g.mem
        .write_slice(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], GuestAddress(HDR))
        .unwrap();
    ring.push(&g.mem, &[(HDR, 16, false), (STATUS_BYTE, 1, true)]);
    lock(&io.0)[0].1.write(1).unwrap();
    assert_eq!(ring.wait_used(&g.mem, 1)[0].1, 1);
    // Decoding off: untied; BAR0 moved and decoding on: tied at the new place.
    let cmd = g.cfg_read(0x04, 2);
    g.cfg_write(0x04, 2, cmd & !2);
    assert!(io.addrs().is_empty());
    let new = 0xe000_0000u64;
    g.cfg_write(0x10, 4, new as u32);
    g.cfg_write(0x14, 4, 0);
    g.cfg_write(0x04, 2, cmd);
    assert_eq!(io.addrs(), vec![new + caps::NOTIFY_OFFSET]);
    // A virtio reset unties them.
    g.caps = g.walk_caps();
    g.common_write(0x14, 1, 0);
    assert!(io.addrs().is_empty());
}
