//! A driver that hands virtio-blk chains that are not requests: the device must not read
//! or write outside guest RAM, must not panic, marks itself NEEDS_RESET with a config
//! interrupt, writes nothing for the chain, and serves nothing more until reset. Another
//! disk goes on as before.

use super::*;
use crate::virtio::blk::worker::BrokenReason;
use crate::virtio::status;

const END: u64 = MEM_SIZE as u64;
const CONFIG_MSI: (u64, u32) = (0xfee0_0000, 0x40);

type Setup = fn(&mut Blk);

fn chain(b: &mut Blk, bufs: &[(u64, u32, bool)]) {
    b.header(T_IN, 0);
    b.ring.push(&b.g.mem, bufs);
    b.g.notify(0);
}

/// Each way of breaking the device, and what the device says of it.
const CASES: &[(&str, &str, Setup)] = &[
    ("short header", "no 16-byte header", |b| {
        chain(b, &[(HDR, 8, false), (STATUS, 1, true)])
    }),
    ("no header at all", "no 16-byte header", |b| chain(b, &[(STATUS, 1, true)])),
    ("no status byte", "no byte the device can write", |b| chain(b, &[(HDR, 16, false)])),
    ("status only readable", "no byte the device can write", |b| {
        chain(b, &[(HDR, 16, false), (STATUS, 1, false)])
    }),
    ("header outside RAM", "outside guest memory", |b| {
        chain(b, &[(END + 0x1000, 16, false), (STATUS, 1, true)])
    }),
    ("read data across the end of RAM", "outside guest memory", |b| {
        chain(b, &[(HDR, 16, false), (END - 512, 1024, true), (STATUS, 1, true)])
    }),
    ("write data outside RAM", "outside guest memory", |b| {
        chain(b, &[(HDR, 16, false), (END + 0x1000, 512, false), (STATUS, 1, true)])
    }),
    ("data in the device's own BAR", "outside guest memory", |b| {
        let bar = b.g.bar0();
        chain(b, &[(HDR, 16, false), (bar, 512, true), (STATUS, 1, true)])
    }),
    ("status outside RAM", "outside guest memory", |b| {
        chain(b, &[(HDR, 16, false), (END + 0x10000, 1, true)])
    }),
    ("a 2 GiB buffer", "outside guest memory", |b| {
        chain(b, &[(HDR, 16, false), (DATA, 0x8000_0000, false), (STATUS, 1, true)])
    }),
    ("lengths overflowing 4 GiB", "does not end", |b| {
        chain(b, &[(HDR, 16, false), (DATA, u32::MAX, false), (STATUS, 1, true)])
    }),
    ("descriptor pointing at itself", "chain 15 does not end", |b| {
        b.header(T_IN, 0);
        b.ring.write_desc(&b.g.mem, 15, HDR, 16, VRING_DESC_F_NEXT, 15);
        b.ring.publish(&b.g.mem, 15);
        b.g.notify(0);
    }),
    ("two-descriptor loop", "chain 5 does not end", |b| {
        b.header(T_IN, 0);
        b.ring.write_desc(&b.g.mem, 5, HDR, 16, VRING_DESC_F_NEXT, 6);
        b.ring.write_desc(&b.g.mem, 6, STATUS, 1, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 5);
        b.ring.publish(&b.g.mem, 5);
        b.g.notify(0);
    }),
    ("next past the table", "does not end", |b| {
        b.header(T_IN, 0);
        b.ring.write_desc(&b.g.mem, 3, HDR, 16, VRING_DESC_F_NEXT, 999);
        b.ring.publish(&b.g.mem, 3);
        b.g.notify(0);
    }),
    ("chain longer than the queue", "more than the queue's 16", |b| {
        b.header(T_IN, 0);
        let table = 0x180000;
        let ind = Ring::new(table, 20);
        for i in 0..20 {
            let (addr, len, flags) = match i {
                0 => (HDR, 16, VRING_DESC_F_NEXT),
                19 => (STATUS, 1, VRING_DESC_F_WRITE),
                _ => (DATA + 512 * u64::from(i), 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE),
            };
            ind.write_desc(&b.g.mem, i, addr, len, flags, i + 1);
        }
        b.ring.write_desc(&b.g.mem, 3, table, 20 * 16, VRING_DESC_F_INDIRECT, 0);
        b.ring.publish(&b.g.mem, 3);
        b.g.notify(0);
    }),
    ("indirect table outside RAM", "does not end", |b| {
        b.ring.write_desc(&b.g.mem, 4, END + 0x1000, 48, VRING_DESC_F_INDIRECT, 0);
        b.ring.publish(&b.g.mem, 4);
        b.g.notify(0);
    }),
    ("indirect table of 17 bytes", "does not end", |b| {
        b.ring.write_desc(&b.g.mem, 4, 0x180000, 17, VRING_DESC_F_INDIRECT, 0);
        b.ring.publish(&b.g.mem, 4);
        b.g.notify(0);
    }),
    ("head index past the ring", "chain 500 does not end", |b| {
        b.ring.publish(&b.g.mem, 500);
        b.g.notify(0);
    }),
    ("avail index far past the ring", "invalid available ring index", |b| {
        let idx = b.ring.avail_idx.wrapping_add(1000);
        b.g.mem.write_obj(idx, GuestAddress(b.ring.avail + 2)).unwrap();
        b.g.notify(0);
    }),
];

fn start() -> (Blk, MemDisk, BrokenReason) {
    let disk = MemDisk::new(64 * 512);
    let share = disk.share();
    let dev = VirtioBlk::new(Box::new(disk), BlkConfig::default()).unwrap();
    let error = dev.error_handle();
    let g = Guest::new(Box::new(dev), guest_memory());
    (Blk::init(g), share, error)
}

fn config_irq(b: &Blk) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        match b.g.msi.rx.recv_timeout(left) {
            Ok(m) if m == CONFIG_MSI => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn last_page(mem: &GuestMem) -> Vec<u8> {
    let mut page = vec![0u8; 0x1000];
    mem.read_slice(&mut page, GuestAddress(END - 0x1000)).unwrap();
    page
}

#[test]
fn broken_chains_need_reset_and_harm_nothing() {
    let (mut bystander, _, _) = start();
    for (what, why, setup) in CASES {
        let (mut b, disk, error) = start();
        lock(&disk.data).fill(0x5a);
        b.mem().write_slice(&[0xab; 0x1000], GuestAddress(END - 0x1000)).unwrap();
        b.mem().write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let used = b.ring.used_idx(b.mem());
        setup(&mut b);
        assert!(config_irq(&b), "{what}: no config interrupt");
        assert_ne!(b.g.status() & status::NEEDS_RESET, 0, "{what}: NEEDS_RESET not set");
        let reason = lock(&error).clone().unwrap_or_default();
        assert!(reason.contains(why), "{what}: the device says '{reason}'");
        assert_eq!(last_page(b.mem()), vec![0xab; 0x1000], "{what}: wrote outside its buffers");
        assert_eq!(b.ring.used_idx(b.mem()), used, "{what}: completed the broken chain");
        let status: u8 = b.mem().read_obj(GuestAddress(STATUS)).unwrap();
        assert_eq!(status, 0xff, "{what}: wrote a status for the broken chain");
        assert!(lock(&disk.data).iter().all(|&x| x == 0x5a), "{what}: wrote the disk");
        // Stopped: a good request now is not served.
        let hdr = b.header(vb::VIRTIO_BLK_T_FLUSH, 0);
        b.ring.push(&b.g.mem, &[(hdr, 16, false), (STATUS, 1, true)]);
        b.g.notify(0);
        assert!(b.ring.idle_for(b.mem(), 20), "{what}: still serving");
        // The other disk is unaffected.
        assert_eq!(bystander.request(vb::VIRTIO_BLK_T_FLUSH, 0, None), (OK, 1), "{what}: bystander");
        // A reset brings the device back.
        b.g.set_status(0);
        assert!(lock(&error).is_none(), "{what}: reset kept the error");
        b.g.mem.write_slice(&[0u8; 0x3000], GuestAddress(RING)).unwrap();
        let mut b = Blk::init(b.g);
        assert_eq!(
            b.request(vb::VIRTIO_BLK_T_GET_ID, 0, Some((DATA, 20, true))),
            (OK, 21),
            "{what}: after reset"
        );
    }
}

#[test]
fn notifies_before_driver_ok_and_odd_queue_sizes_are_ignored() {
    let disk = MemDisk::new(64 * 512);
    let mut g = Guest::new(
        Box::new(VirtioBlk::new(Box::new(disk), BlkConfig::default()).unwrap()),
        guest_memory(),
    );
    // Notifies with nothing set up.
    g.notify(0);
    g.notify(7);
    g.enable_msix(2);
    g.negotiate(!0);
    // A queue size that is not a power of two (or is zero, or too big) is ignored.
    g.common_write(0x16, 2, 0);
    for bad in [3u64, 100, 0, 0xffff, 512] {
        g.common_write(0x18, 2, bad);
        assert_eq!(g.common_read(0x18, 2), u64::from(DEFAULT_QUEUE_SIZE), "size {bad} accepted");
    }
    let ring = Ring::new(RING, QSIZE);
    g.setup_queue(0, &ring, 1);
    let mut b = Blk { g, ring };
    // A request notified before DRIVER_OK waits for it.
    let hdr = b.header(vb::VIRTIO_BLK_T_FLUSH, 0);
    b.ring.push(&b.g.mem, &[(hdr, 16, false), (STATUS, 1, true)]);
    b.g.notify(0);
    assert!(b.ring.idle_for(b.mem(), 20), "served before DRIVER_OK");
    b.g.driver_ok();
    assert_eq!(b.g.status() & status::NEEDS_RESET, 0);
    b.g.notify(0);
    assert_eq!(b.ring.wait_used(&b.g.mem, 1)[0].1, 1);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_GET_ID, 0, Some((DATA, 20, true))), (OK, 21));
}
