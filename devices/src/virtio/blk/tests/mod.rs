//! virtio-blk driven the way a guest driver drives it: through PCI config cycles, BAR0 MMIO
//! and a split ring in real guest memory.

mod hostile;

use super::*;
use crate::block::{Format, open_image};
use crate::device::Device;
use crate::virtio::GuestMem;
use crate::virtio::testing::*;
use std::io::Read as _;
use vm_memory::{Bytes, GuestAddress};

const RING: u64 = 0x10000;
const HDR: u64 = 0x100000;
const STATUS: u64 = 0x101000;
const DATA: u64 = 0x200000;
const DATA2: u64 = 0x300000;
const QSIZE: u16 = 16;

struct Blk {
    g: Guest,
    ring: Ring,
}

impl Blk {
    fn start(backend: Box<dyn BlockBackend>, cfg: BlkConfig) -> Blk {
        let g = Guest::new(Box::new(VirtioBlk::new(backend, cfg).unwrap()), guest_memory());
        Blk::init(g)
    }

    /// The Linux driver's order: negotiate, map vectors (config 0, queue 1), DRIVER_OK.
    fn init(mut g: Guest) -> Blk {
        g.enable_msix(2);
        g.negotiate(!0);
        g.common_write(0x10, 2, 0);
        let ring = Ring::new(RING, QSIZE);
        g.setup_queue(0, &ring, 1);
        g.driver_ok();
        assert_eq!(g.status() & crate::virtio::status::NEEDS_RESET, 0);
        Blk { g, ring }
    }

    fn mem(&self) -> &GuestMem {
        &self.g.mem
    }

    fn header(&self, ty: u32, sector: u64) -> u64 {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem().write_slice(&h, GuestAddress(HDR)).unwrap();
        self.mem().write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        HDR
    }

    /// Submits `bufs` as one chain, waits for completion; returns (status byte, used len).
    fn submit(&mut self, bufs: &[(u64, u32, bool)]) -> (u8, u32) {
        let head = self.ring.push(&self.g.mem, bufs);
        self.g.notify(0);
        let used = self.ring.wait_used(&self.g.mem, 1);
        assert_eq!(used[0].0, u32::from(head));
        (self.mem().read_obj(GuestAddress(STATUS)).unwrap(), used[0].1)
    }

    /// A well-formed request: header, optional data, status.
    fn request(&mut self, ty: u32, sector: u64, data: Option<(u64, u32, bool)>) -> (u8, u32) {
        let hdr = self.header(ty, sector);
        let mut bufs = vec![(hdr, 16, false)];
        bufs.extend(data);
        bufs.push((STATUS, 1, true));
        self.submit(&bufs)
    }

    fn fill(&self, addr: u64, len: usize, seed: u8) -> Vec<u8> {
        let v: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        self.mem().write_slice(&v, GuestAddress(addr)).unwrap();
        v
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem().read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn segment(&self, at: u64, sector: u64, count: u32, flags: u32) {
        let mut s = [0u8; 16];
        s[0..8].copy_from_slice(&sector.to_le_bytes());
        s[8..12].copy_from_slice(&count.to_le_bytes());
        s[12..16].copy_from_slice(&flags.to_le_bytes());
        self.mem().write_slice(&s, GuestAddress(at)).unwrap();
    }
}

const OK: u8 = request::STATUS_OK;
const IOERR: u8 = request::STATUS_IOERR;
const UNSUPP: u8 = request::STATUS_UNSUPP;
const T_IN: u32 = vb::VIRTIO_BLK_T_IN;
const T_OUT: u32 = vb::VIRTIO_BLK_T_OUT;

fn mem_blk(sectors: usize) -> (Blk, MemDisk) {
    let disk = MemDisk::new(sectors * 512);
    let share = disk.share();
    (
        Blk::start(
            Box::new(disk),
            BlkConfig {
                serial: "drive-virtio0".into(),
                ..BlkConfig::default()
            },
        ),
        share,
    )
}

#[test]
fn raw_image_write_read_flush_get_id() {
    let file = vmm_sys_util::tempfile::TempFile::new().unwrap();
    file.as_file().set_len(1 << 20).unwrap();
    let image = open_image(file.as_path(), Some(Format::Raw), false).unwrap();
    let mut b = Blk::start(
        image,
        BlkConfig {
            serial: "drive-virtio-disk0-long-serial".into(),
            ..BlkConfig::default()
        },
    );
    let dev = b.g.caps.device;
    assert_eq!(b.g.read(dev, 8), 2048, "capacity in sectors");
    assert_eq!(b.g.read(dev + 0x0c, 4), 254, "seg_max");
    assert_eq!(b.g.read(dev + 0x14, 4), 512, "blk_size");
    let f = b.g.device_features();
    for bit in [
        vb::VIRTIO_BLK_F_FLUSH,
        vb::VIRTIO_BLK_F_SEG_MAX,
        vb::VIRTIO_BLK_F_SIZE_MAX,
        vb::VIRTIO_BLK_F_BLK_SIZE,
        vb::VIRTIO_BLK_F_DISCARD,
        vb::VIRTIO_BLK_F_WRITE_ZEROES,
    ] {
        assert_ne!(f & (1 << bit), 0, "feature {bit}");
    }
    assert_eq!(f & (1 << vb::VIRTIO_BLK_F_RO), 0);

    let pattern = b.fill(DATA, 4096, 7);
    assert_eq!(b.request(T_OUT, 8, Some((DATA, 4096, false))), (OK, 1));
    assert_eq!(b.g.msi.wait(), Some((0xfee0_1000, 0x41)), "queue 0 uses vector 1");
    // Read back into two descriptors.
    let hdr = b.header(T_IN, 8);
    assert_eq!(
        b.submit(&[
            (hdr, 16, false),
            (DATA2, 2048, true),
            (DATA2 + 0x8000, 2048, true),
            (STATUS, 1, true)
        ]),
        (OK, 4097)
    );
    assert_eq!([b.get(DATA2, 2048), b.get(DATA2 + 0x8000, 2048)].concat(), pattern);
    let mut on_disk = vec![0u8; 4096 + 4096];
    file.as_file().read_exact(&mut on_disk).unwrap();
    assert_eq!(&on_disk[4096..], &pattern[..]);

    assert_eq!(b.request(vb::VIRTIO_BLK_T_FLUSH, 0, None).0, OK);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_GET_ID, 0, Some((DATA2, 20, true))), (OK, 21));
    assert_eq!(&b.get(DATA2, 20), b"drive-virtio-disk0-l");
}

#[test]
fn errors_unsupported_and_read_only() {
    let (mut b, disk) = mem_blk(128);
    assert_eq!(b.request(T_IN, 127, Some((DATA, 1024, true))).0, IOERR, "past the end");
    assert_eq!(b.request(T_IN, u64::MAX / 256, Some((DATA, 512, true))).0, IOERR, "sector overflow");
    assert_eq!(b.request(T_IN, 0, Some((DATA, 100, true))).0, IOERR, "not whole sectors");
    assert_eq!(b.request(99, 0, None).0, UNSUPP);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_SECURE_ERASE, 0, None).0, UNSUPP);
    assert_eq!(b.request(T_IN, 127, Some((DATA, 512, true))), (OK, 513), "last sector is fine");

    // Discard and write zeroes.
    lock(&disk.data)[512..1024].fill(0xaa);
    b.segment(DATA, 1, 1, 0);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((DATA, 16, false))).0, OK);
    assert!(lock(&disk.data)[512..1024].iter().all(|&x| x == 0));
    b.segment(DATA, 2, 3, vb::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((DATA, 16, false))).0, OK);
    b.segment(DATA, 4, 8, 0);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_DISCARD, 0, Some((DATA, 16, false))).0, OK);
    assert_eq!(
        *lock(&disk.log),
        ["zeroes 512 512 false", "zeroes 1024 1536 true", "discard 2048 4096"]
    );
    b.segment(DATA, 4, 8, vb::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
    assert_eq!(
        b.request(vb::VIRTIO_BLK_T_DISCARD, 0, Some((DATA, 16, false))).0,
        UNSUPP,
        "unmap flag on discard"
    );
    b.segment(DATA, 4, 8, 0x80);
    assert_eq!(
        b.request(vb::VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((DATA, 16, false))).0,
        UNSUPP,
        "unknown flag"
    );
    b.segment(DATA, 120, 9, 0);
    assert_eq!(
        b.request(vb::VIRTIO_BLK_T_DISCARD, 0, Some((DATA, 16, false))).0,
        IOERR,
        "past the end"
    );
    assert_eq!(
        b.request(vb::VIRTIO_BLK_T_DISCARD, 0, Some((DATA, 8, false))).0,
        IOERR,
        "half a segment"
    );
    assert_eq!(
        b.request(vb::VIRTIO_BLK_T_DISCARD, 0, Some((DATA, 17 * 16, false))).0,
        IOERR,
        "too many segments"
    );
    assert_eq!(lock(&disk.log).len(), 3, "rejected lists did nothing");

    // Read-only drive: RO offered, no discard, writes fail, reads work.
    let mut ro = Blk::start(
        Box::new(MemDisk::new(4096)),
        BlkConfig {
            read_only: true,
            ..BlkConfig::default()
        },
    );
    let f = ro.g.device_features();
    assert_ne!(f & (1 << vb::VIRTIO_BLK_F_RO), 0);
    assert_eq!(f & (1 << vb::VIRTIO_BLK_F_DISCARD | 1 << vb::VIRTIO_BLK_F_WRITE_ZEROES), 0);
    assert_eq!(ro.request(T_OUT, 0, Some((DATA, 512, false))).0, IOERR);
    ro.segment(DATA, 0, 1, 0);
    assert_eq!(ro.request(vb::VIRTIO_BLK_T_DISCARD, 0, Some((DATA, 16, false))).0, UNSUPP);
    assert_eq!(ro.request(T_IN, 0, Some((DATA, 512, true))).0, OK);
}

#[test]
fn wrong_requests_are_answered_ioerr() {
    let (mut b, disk) = mem_blk(64);
    // A read whose data buffer the driver marked device-readable: refused, buffer untouched.
    lock(&disk.data)[..512].fill(0x5a);
    b.fill(DATA, 512, 1);
    let hdr = b.header(T_IN, 0);
    assert_eq!(b.submit(&[(hdr, 16, false), (DATA, 512, false), (STATUS, 1, true)]), (IOERR, 1));
    assert_ne!(b.get(DATA, 512), vec![0x5a; 512]);
    // A write whose data is device-writable: refused, disk untouched.
    let hdr = b.header(T_OUT, 0);
    assert_eq!(b.submit(&[(hdr, 16, false), (DATA, 512, true), (STATUS, 1, true)]), (IOERR, 1));
    assert_eq!(lock(&disk.data)[..512], [0x5a; 512]);
    // Sectors past the end, with arithmetic that overflows.
    let hdr = b.header(T_IN, u64::MAX / 256);
    assert_eq!(b.submit(&[(hdr, 16, false), (DATA, 512, true), (STATUS, 1, true)]), (IOERR, 1));

    // Indirect descriptors (offered and negotiated) work.
    let table = 0x180000;
    let hdr = b.header(T_IN, 0);
    let ind = Ring::new(table, 3);
    ind.write_desc(&b.g.mem, 0, hdr, 16, VRING_DESC_F_NEXT, 1);
    ind.write_desc(&b.g.mem, 1, DATA2, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
    ind.write_desc(&b.g.mem, 2, STATUS, 1, VRING_DESC_F_WRITE, 0);
    b.ring.write_desc(&b.g.mem, 14, table, 48, VRING_DESC_F_INDIRECT, 0);
    b.ring.publish(&b.g.mem, 14);
    b.g.notify(0);
    assert_eq!(b.ring.wait_used(&b.g.mem, 1), vec![(14, 513)]);
    assert_eq!(b.get(DATA2, 512), vec![0x5a; 512]);
    assert_eq!(b.g.status() & crate::virtio::status::NEEDS_RESET, 0);
}

#[test]
fn large_request_and_dirty_bitmap() {
    let (mut b, disk) = mem_blk(4096);
    let pattern: Vec<u8> = (0..(1usize << 20)).map(|i| (i / 512) as u8 ^ i as u8).collect();
    lock(&disk.data)[..1 << 20].copy_from_slice(&pattern);
    let hdr = b.header(T_IN, 0);
    let mem = b.g.mem.clone();
    let map = bitmap(&mem);
    map.reset();
    // 1 MiB in three pieces, more than one bounce-buffer chunk.
    let bufs = [
        (hdr, 16, false),
        (DATA, 0x80000, true),
        (DATA2, 0x40000, true),
        (DATA2 + 0x40000, 0x40000, true),
        (STATUS, 1, true),
    ];
    assert_eq!(b.submit(&bufs), (OK, (1 << 20) + 1));
    assert_eq!([b.get(DATA, 0x80000), b.get(DATA2, 0x80000)].concat(), pattern);
    for page in [DATA, DATA + 0x7f000, DATA2 + 0x7f000, STATUS, b.ring.used] {
        assert!(map.is_addr_set(page as usize), "device write to {page:#x} not logged");
    }
    for page in [HDR, DATA + 0x80000, 0x3f0000] {
        assert!(!map.is_addr_set(page as usize), "{page:#x} was never written");
    }
}

#[test]
fn pause_resume_and_reset() {
    let (mut b, _disk) = mem_blk(64);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_FLUSH, 0, None).0, OK);
    lock(&b.g.dev).pause();
    let hdr = b.header(vb::VIRTIO_BLK_T_FLUSH, 0);
    b.ring.push(&b.g.mem, &[(hdr, 16, false), (STATUS, 1, true)]);
    b.g.notify(0);
    assert!(b.ring.idle_for(&b.g.mem, 30), "paused device did I/O");
    lock(&b.g.dev).resume();
    assert_eq!(b.ring.wait_used(&b.g.mem, 1)[0].1, 1);

    // Reset: registers back to their initial values; a fresh set-up works from index 0.
    b.g.set_status(0);
    assert_eq!(b.g.status(), 0);
    b.g.common_write(0x16, 2, 0);
    assert_eq!(b.g.common_read(0x1c, 2), 0, "queue disabled");
    assert_eq!(b.g.common_read(0x18, 2), u64::from(DEFAULT_QUEUE_SIZE));
    assert_eq!(b.g.common_read(0x1a, 2), 0xffff, "vector unmapped");
    b.g.mem.write_slice(&[0u8; 0x2000], GuestAddress(RING)).unwrap();
    let g = b.g;
    let mut b = Blk::init(g);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_GET_ID, 0, Some((DATA, 20, true))), (OK, 21));
}

#[test]
fn save_restore_continues_the_queue() {
    let (mut a, disk) = mem_blk(64);
    let pattern = a.fill(DATA, 1024, 3);
    assert_eq!(a.request(T_OUT, 4, Some((DATA, 1024, false))).0, OK);
    assert!(a.g.msi.wait().is_some());
    // Quiesce, then the guest queues a read the device must not see before the snapshot.
    lock(&a.g.dev).pause();
    let hdr = a.header(T_IN, 4);
    a.ring.push(&a.g.mem, &[(hdr, 16, false), (DATA2, 1024, true), (STATUS, 1, true)]);
    a.g.notify(0);
    assert!(a.ring.idle_for(&a.g.mem, 20));
    let state = lock(&a.g.dev).save_state();
    let mem = a.g.mem.clone();
    let ring = a.ring;
    lock(&a.g.dev).shutdown();
    drop(a.g);

    // A freshly built device for the same disk and memory takes the state.
    let blk = VirtioBlk::new(
        Box::new(disk.share()),
        BlkConfig {
            serial: "drive-virtio0".into(),
            ..BlkConfig::default()
        },
    )
    .unwrap();
    let mut g = Guest::new(Box::new(blk), mem);
    lock(&g.dev).pause();
    lock(&g.dev).restore_state(&state).unwrap();
    assert_ne!(g.status() & crate::virtio::status::DRIVER_OK, 0);
    lock(&g.dev).resume();
    let mut b = Blk { g, ring };
    // The request queued before the snapshot completes, with its interrupt through the
    // restored MSI-X table.
    assert_eq!(b.ring.wait_used(&b.g.mem, 1)[0].1, 1025);
    assert_eq!(b.get(DATA2, 1024), pattern);
    assert_eq!(b.g.msi.wait(), Some((0xfee0_1000, 0x41)));
    // And new requests go on in the same ring.
    assert_eq!(b.request(vb::VIRTIO_BLK_T_GET_ID, 0, Some((DATA, 20, true))), (OK, 21));
    assert_eq!(&b.get(DATA, 13), b"drive-virtio0");

    // A state for a different disk size is refused.
    let other = VirtioBlk::new(Box::new(MemDisk::new(1024)), BlkConfig::default()).unwrap();
    let mut c = crate::virtio::pci::VirtioPciDevice::new(Box::new(other), b.g.mem.clone(), FakeMsi::new()).unwrap();
    // Checked before anything changes, and refused again by the restore itself.
    assert!(matches!(c.check_state(&state), Err(StateError::Invalid { name: "virtio-blk", .. })));
    assert!(c.restore_state(&state).is_err());
}

#[test]
fn guest_writes_mark_the_disk_dirty_map() {
    use crate::block::dirty::{GRANULE, runs};
    let blk = VirtioBlk::new(Box::new(MemDisk::new(4 << 20)), BlkConfig::default()).unwrap();
    let dirty = blk.dirty_map();
    let mut b = Blk::init(Guest::new(Box::new(blk), guest_memory()));
    b.fill(DATA, 4096, 3);
    // Off: nothing recorded.
    assert_eq!(b.request(T_OUT, 0, Some((DATA, 4096, false))).0, OK);
    assert!(dirty.take().iter().all(|w| *w == 0));
    dirty.start();
    let sector = 3 * GRANULE / 512 - 1; // the last sector of granule 2 and the first of 3
    assert_eq!(b.request(T_OUT, sector, Some((DATA, 1024, false))).0, OK);
    assert_eq!(b.request(T_IN, 0, Some((DATA2, 4096, true))).0, OK, "reads mark nothing");
    b.segment(DATA, 40 * GRANULE / 512, 8, 0);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((DATA, 16, false))).0, OK);
    let bits = dirty.take();
    assert_eq!(runs(&bits, dirty.granules(), u64::MAX).collect::<Vec<_>>(), vec![(2, 2), (40, 1)]);
}

/// Completed requests are counted as QEMU accounts them (write-zeroes as a write, discard
/// as an unmap, the highest write's end); a request the guest got wrong is not.
#[test]
fn requests_are_counted() {
    use std::sync::atomic::Ordering::Relaxed;
    let blk = VirtioBlk::new(Box::new(MemDisk::new(128 * 512)), BlkConfig::default()).unwrap();
    let stats = blk.stats();
    let mut b = Blk::init(Guest::new(Box::new(blk), guest_memory()));
    assert_eq!(b.request(T_OUT, 2, Some((DATA, 1024, false))).0, OK);
    assert_eq!(b.request(T_IN, 0, Some((DATA, 512, true))).0, OK);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_FLUSH, 0, None).0, OK);
    assert_eq!(b.request(T_IN, 127, Some((DATA, 1024, true))).0, IOERR, "past the end");
    b.segment(DATA, 10, 2, 0);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((DATA, 16, false))).0, OK);
    b.segment(DATA, 20, 4, 0);
    assert_eq!(b.request(vb::VIRTIO_BLK_T_DISCARD, 0, Some((DATA, 16, false))).0, OK);
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
    assert_eq!((n(&stats.read.operations), n(&stats.read.bytes)), (1, 512));
    assert_eq!((n(&stats.write.operations), n(&stats.write.bytes)), (2, 2048));
    assert_eq!((n(&stats.flush.operations), n(&stats.unmap.operations)), (1, 1));
    assert_eq!(n(&stats.unmap.bytes), 2048);
    assert_eq!(n(&stats.wr_highest_offset), 12 * 512);
    assert_eq!(n(&stats.read.failed) + n(&stats.write.failed), 0);
    assert!(n(&stats.write.total_time_ns) > 0);
}
