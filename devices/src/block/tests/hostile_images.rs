//! A corpus of crafted qcow2 images, each with the one-line error godwit gives for it.
//!
//! Every case patches a small, valid image (made by godwit: 64 KiB clusters, data in two
//! clusters, a snapshot sharing one of them) and then opens it, or opens it and does one
//! thing with it. The error must be exactly the one listed (the image's path shows as
//! `IMG`), on one line; nothing may panic, and nothing may allocate more than
//! [`ALLOC_LIMIT`] on the way. With qemu-img installed, `qemu-img check` must flag the same
//! image (the text it must contain is listed too, for the cases QEMU sees without doing
//! anything). `GODWIT_HOSTILE_DUMP=DIR` keeps the images there.

use super::*;
use crate::alloc_probe;
use crate::block::qcow2::header::Header;
use crate::block::qcow2::{CreateOptions, Qcow2};
use crate::block::{BlockError, ImageOptions, open_image_with};

/// Most any case may allocate at once: the images are under 1 MiB, so anything beyond a
/// few cluster buffers and the L2 cache's first tables came from a number in the file.
const ALLOC_LIMIT: usize = 4 << 20;
const CS: u64 = 1 << 16;

/// Where the tables of the sample image are.
#[derive(Clone, Copy)]
struct Layout {
    l1: u64,
    l2: u64,
    snap_l2: u64,
    data1m: u64,
    rt: u64,
    rb: u64,
    snap_table: u64,
    snap_l1: u64,
}

struct Img {
    b: Vec<u8>,
    at: Layout,
}

impl Img {
    fn u64_at(&self, off: u64) -> u64 {
        u64::from_be_bytes(self.b[off as usize..off as usize + 8].try_into().unwrap())
    }
    fn put(&mut self, off: u64, v: &[u8]) {
        let end = off as usize + v.len();
        if self.b.len() < end {
            self.b.resize(end, 0);
        }
        self.b[off as usize..end].copy_from_slice(v);
    }
    fn put32(&mut self, off: u64, v: u32) {
        self.put(off, &v.to_be_bytes());
    }
    fn put64(&mut self, off: u64, v: u64) {
        self.put(off, &v.to_be_bytes());
    }
    fn put16(&mut self, off: u64, v: u16) {
        self.put(off, &v.to_be_bytes());
    }
    /// Sets the 16-bit refcount of the cluster at host offset `host`.
    fn refcount(&mut self, host: u64, v: u16) {
        self.put16(self.at.rb + 2 * (host / CS), v);
    }
    /// Sets L2 entry `idx` of the active L2 table.
    fn l2(&mut self, idx: u64, v: u64) {
        self.put64(self.at.l2 + 8 * idx, v);
    }
}

/// What a case does after opening the image read-write.
#[derive(Clone, Copy, Debug)]
enum Op {
    Open,
    OpenReadOnly,
    Read(u64),
    Write(u64),
    /// A whole cluster, then a flush.
    WriteCluster(u64),
    Discard(u64),
    Snapshot,
    DeleteSnapshot,
}

const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;

type Patch = fn(&mut Img);

/// (name, patch, operation, godwit's error, what `qemu-img check` must say or "").
const CASES: &[(&str, Patch, Op, &str, &str)] = &[
    (
        "version 4",
        |i| i.put32(4, 4),
        Op::Open,
        "Could not open 'IMG': Unsupported qcow2 version 4",
        "Unsupported qcow2 version 4",
    ),
    (
        "cluster bits 30",
        |i| i.put32(20, 30),
        Op::Open,
        "Could not open 'IMG': Unsupported cluster size: 2^30",
        "Unsupported cluster size: 2^30",
    ),
    (
        "cluster bits 8",
        |i| i.put32(20, 8),
        Op::Open,
        "Could not open 'IMG': Unsupported cluster size: 2^8",
        "Unsupported cluster size: 2^8",
    ),
    (
        "header length past the cluster",
        |i| i.put32(100, 0xffff_fff8),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: qcow2 header exceeds cluster size",
        "qcow2 header exceeds cluster size",
    ),
    (
        "header length too short",
        |i| i.put32(100, 50),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: qcow2 header too short",
        "qcow2 header too short",
    ),
    (
        "L1 size 2^24 entries",
        |i| i.put32(36, 1 << 24),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: Active L1 table too large",
        "Active L1 table too large",
    ),
    (
        "L1 size too small",
        |i| i.put32(36, 0),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: L1 table is too small",
        "L1 table is too small",
    ),
    (
        "virtual size 2^62",
        |i| i.put64(24, 1 << 62),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: L1 table is too small",
        "Image is too big",
    ),
    (
        "L1 offset unaligned",
        |i| i.put64(40, i.at.l1 + 8),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: Invalid L1 table offset",
        "Active L1 table offset invalid",
    ),
    (
        "L1 in the header",
        |i| i.put64(40, 0),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: Invalid L1 table offset",
        "ERROR cluster 0 refcount=1 reference=2",
    ),
    (
        "L1 past the end, 2^22 entries",
        |i| {
            i.put32(36, 1 << 22);
            i.put64(40, 1 << 40)
        },
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: active L1 table at 0x10000000000 lies past the end of the file",
        "exceeding the end of the file",
    ),
    (
        "refcount table 2^31 clusters",
        |i| i.put32(56, 0x7fff_ffff),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: Reference count table too large",
        "Reference count table too large",
    ),
    (
        "refcount table in the header",
        |i| i.put64(48, 0),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: Invalid reference count table offset",
        "ERROR refcount table entry 0 has reserved bits set",
    ),
    (
        "refcount table past the end",
        |i| {
            i.put64(48, 1 << 40);
            i.put32(56, 128)
        },
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: refcount table at 0x10000000000 lies past the end of the file",
        "exceeding the end of the file",
    ),
    (
        "refcount order 7",
        |i| i.put32(96, 7),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: refcount order 7 out of range",
        "Reference count entry width too large",
    ),
    (
        "unknown incompatible bit",
        |i| i.put64(72, 1 << 40),
        Op::Open,
        "Could not open 'IMG': Unsupported qcow2 feature(s): Unknown incompatible feature: 10000000000",
        "Unknown incompatible feature: 10000000000",
    ),
    (
        "backing name too long",
        |i| {
            i.put64(8, 0x1000);
            i.put32(16, 2000)
        },
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: Backing file name too long",
        "Backing file name too long",
    ),
    (
        "backing name past the cluster",
        |i| {
            i.put64(8, CS - 10);
            i.put32(16, 100)
        },
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: backing file name outside the header cluster",
        "Backing file name too long",
    ),
    (
        "refcount block past the end",
        |i| i.put64(i.at.rt, 1 << 40),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: refcount block 0 at 0x10000000000 is outside the image",
        "is outside image",
    ),
    (
        "refcount block on the L1 table",
        |i| i.put64(i.at.rt, i.at.l1),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: refcount block 0 at 0x30000 overlaps the active L1 table",
        "ERROR",
    ),
    (
        "refcount block on the refcount table",
        |i| i.put64(i.at.rt, i.at.rt),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: refcount block 0 at 0x10000 overlaps the refcount table",
        "ERROR",
    ),
    (
        "L2 table past the end",
        |i| i.put64(i.at.l1, COPIED | 1 << 40),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: L2 table at 0x10000000000 (L1 index 0) is outside the image",
        "ERROR",
    ),
    (
        "L2 table unaligned",
        |i| i.put64(i.at.l1, COPIED | (i.at.l2 + 512)),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: L2 table at 0x90200 (L1 index 0) is not cluster-aligned",
        "L1 entry corrupted",
    ),
    (
        "L2 table on the refcount table",
        |i| i.put64(i.at.l1, COPIED | i.at.rt),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: L2 table at 0x10000 (L1 index 0) overlaps the refcount table",
        "ERROR",
    ),
    (
        "L2 table on a refcount block",
        |i| i.put64(i.at.l1, COPIED | i.at.rb),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: L2 table at 0x20000 (L1 index 0) overlaps the refcount block",
        "ERROR",
    ),
    (
        "L2 table on the active L1",
        |i| i.put64(i.at.l1, COPIED | i.at.l1),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: L2 table at 0x30000 (L1 index 0) overlaps the active L1 table",
        "ERROR",
    ),
    (
        "data cluster on the refcount table",
        |i| i.l2(0, COPIED | i.at.rt),
        Op::Write(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with refcount table)",
        "ERROR",
    ),
    (
        "data cluster on the active L1",
        |i| i.l2(0, COPIED | i.at.l1),
        Op::Write(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L1 table)",
        "ERROR",
    ),
    (
        "data cluster on a refcount block",
        |i| i.l2(0, COPIED | i.at.rb),
        Op::Write(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with refcount block)",
        "ERROR",
    ),
    (
        "data cluster on its own L2 table",
        |i| i.l2(0, COPIED | i.at.l2),
        Op::Write(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L2 table)",
        "ERROR",
    ),
    (
        "data cluster on the snapshot table",
        |i| i.l2(0, COPIED | i.at.snap_table),
        Op::Write(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with snapshot table)",
        "ERROR",
    ),
    (
        "data cluster on a snapshot's L1",
        |i| i.l2(0, COPIED | i.at.snap_l1),
        Op::Write(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with inactive L1 table)",
        "ERROR",
    ),
    (
        "zero cluster on the refcount table",
        |i| i.l2(0, COPIED | i.at.rt | 1),
        Op::Write(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with refcount table)",
        "ERROR",
    ),
    (
        "discarded cluster on the refcount table",
        |i| i.l2(0, COPIED | i.at.rt),
        Op::Discard(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with refcount table)",
        "ERROR",
    ),
    (
        "refcount table cluster marked free",
        |i| {
            let rt = i.at.rt;
            i.refcount(rt, 0)
        },
        Op::Write(8 << 20),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with refcount table)",
        "ERROR",
    ),
    (
        "L1 cluster marked free",
        |i| {
            let (l1, rt, rb) = (i.at.l1, i.at.rt, i.at.rb);
            i.refcount(l1, 0);
            i.refcount(rt, 2);
            i.refcount(rb, 2)
        },
        Op::Write(8 << 20),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L1 table)",
        "ERROR",
    ),
    (
        "compressed cluster in the header, overwritten",
        |i| i.l2(0, COMPRESSED | 0x100),
        Op::WriteCluster(0),
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with qcow2_header)",
        "ERROR",
    ),
    (
        "compressed cluster in the header, read",
        |i| i.l2(0, COMPRESSED | 0x100),
        Op::Read(0),
        "Failed to decompress cluster at host offset 0x100: compressed data is corrupt: stored block length mismatch",
        "ERROR",
    ),
    (
        "compressed cluster past the end",
        |i| i.l2(0, COMPRESSED | (1u64 << 40)),
        Op::Read(0),
        "Failed to decompress cluster at host offset 0x10000000000: compressed data is corrupt: stored block length mismatch",
        "ERROR",
    ),
    (
        "refcount at its maximum",
        |i| {
            let d = i.at.data1m;
            i.refcount(d, 0xffff)
        },
        Op::Snapshot,
        "Snapshot would overflow a refcount (refcount_bits too small)",
        "Leaked cluster",
    ),
    (
        "snapshot count 2^17",
        |i| i.put32(60, 1 << 17),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: Too many snapshots",
        "snapshot table too large",
    ),
    (
        "snapshot count 65536",
        |i| i.put32(60, 65536),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: snapshot table at 0x80000 lies past the end of the file",
        "Too much extra metadata",
    ),
    (
        "snapshot table past the end",
        |i| i.put64(64, 1 << 40),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: snapshot table at 0x10000000000 lies past the end of the file",
        "exceeding the end of the file",
    ),
    (
        "snapshot table in the header",
        |i| i.put64(64, 0),
        Op::Open,
        "Could not open 'IMG': Invalid qcow2 header: Invalid snapshot table offset",
        "ERROR snapshot table entry 0 is incomplete",
    ),
    (
        "snapshot extra data 1 MiB",
        |i| i.put32(i.at.snap_table + 36, 1 << 20),
        Op::Open,
        "Could not open 'IMG': snapshot table is corrupt: entry 0: extra data too large",
        "Too much extra metadata",
    ),
    (
        "snapshot name 64 KiB",
        |i| i.put16(i.at.snap_table + 14, 0xffff),
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: L2 table at 0x90000 (L1 index 0) overlaps the snapshot table",
        "ERROR cluster 9 refcount=1 reference=2",
    ),
    (
        "snapshot L1 2^24 entries",
        |i| i.put32(i.at.snap_table + 8, 1 << 24),
        Op::Open,
        "Could not open 'IMG': snapshot table is corrupt: entry 0: invalid L1 table",
        "L1 table is too large; snapshot table entry corrupted",
    ),
    (
        "snapshot L1 past the end",
        |i| {
            i.put32(i.at.snap_table + 8, 1 << 20);
            i.put64(i.at.snap_table, 1 << 40)
        },
        Op::Open,
        "Could not open 'IMG': snapshot table is corrupt: entry 0: L1 table at 0x10000000000 is outside the image",
        "exceeding the end of the file",
    ),
    (
        "snapshot sharing the active L1, deleted",
        |i| {
            let l1 = i.at.l1;
            i.put64(i.at.snap_table, l1)
        },
        Op::DeleteSnapshot,
        "Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L1 table)",
        "ERROR",
    ),
    (
        "dirty, data referenced 1 TiB out",
        |i| {
            i.put64(72, 1);
            i.l2(16, COPIED | 1 << 40)
        },
        Op::Open,
        "Could not open 'IMG': qcow2: image is corrupt: cluster at 0x10000000000 lies past the end of the file",
        "ERROR",
    ),
    (
        "dirty, read-only",
        |i| {
            i.put64(72, 1);
            i.l2(16, COPIED | 1 << 40)
        },
        Op::OpenReadOnly,
        "",
        "ERROR",
    ),
];

/// The sample image and where its tables are.
fn sample(dir: &TempDir) -> Img {
    let path = p(dir, "sample.qcow2");
    Qcow2::create_with(&path, &CreateOptions::new(16 << 20)).unwrap();
    let mut img = open(&path, None, false);
    img.write_at(&[0x11; 65536], 0).unwrap();
    img.write_at(&[0x22; 65536], 1 << 20).unwrap();
    img.as_qcow2().unwrap().snapshot_create("snap", 0, 0, None).unwrap();
    img.write_at(&[0x33; 4096], 0).unwrap();
    drop(img);
    let b = std::fs::read(&path).unwrap();
    let h = Header::parse(&b[..CS as usize]).unwrap();
    let mut i = Img {
        b,
        at: Layout {
            l1: h.l1_table_offset,
            l2: 0,
            snap_l2: 0,
            data1m: 0,
            rt: h.refcount_table_offset,
            rb: 0,
            snap_table: h.snapshots_offset,
            snap_l1: 0,
        },
    };
    i.at.l2 = i.u64_at(i.at.l1) & 0x00ff_ffff_ffff_fe00;
    i.at.rb = i.u64_at(i.at.rt);
    i.at.snap_l1 = i.u64_at(i.at.snap_table);
    i.at.snap_l2 = i.u64_at(i.at.snap_l1) & 0x00ff_ffff_ffff_fe00;
    i.at.data1m = i.u64_at(i.at.l2 + 8 * 16) & 0x00ff_ffff_ffff_fe00;
    assert!(i.at.l2 != i.at.snap_l2 && i.at.data1m != 0, "unexpected sample layout");
    i
}

/// Opens the image and does `op`; the first error, as one line with the path as `IMG`.
fn run_case(path: &Path, op: Op) -> String {
    let opts = ImageOptions {
        lock: false,
        read_only: matches!(op, Op::OpenReadOnly),
        ..ImageOptions::default()
    };
    let shown = |e: BlockError| e.to_string().replace(&path.display().to_string(), "IMG");
    let mut img = match open_image_with(path, &opts) {
        Ok(img) => img,
        Err(e) => return shown(e),
    };
    let r = match op {
        Op::Open | Op::OpenReadOnly => Ok(()),
        Op::Read(at) => img.read_at(&mut [0u8; 4096], at),
        Op::Write(at) => img.write_at(&[0x44; 4096], at),
        Op::WriteCluster(at) => img.write_at(&[0x44; CS as usize], at).and_then(|()| img.flush()),
        Op::Discard(at) => img.discard(at, CS).and_then(|()| img.flush()),
        Op::Snapshot => img.as_qcow2().unwrap().snapshot_create("again", 0, 0, None).map(|_| ()),
        Op::DeleteSnapshot => img.as_qcow2().unwrap().snapshot_delete("snap").map(|_| ()),
    };
    r.err().map(shown).unwrap_or_default()
}

/// What `qemu-img check` prints about the image, on one line.
fn qemu_check(path: &Path) -> String {
    let (_, out, err) = qemu_img(&["check", "-f", "qcow2", &path.display().to_string()]);
    format!("{out} {err}").replace('\n', " ")
}

#[test]
fn crafted_images_are_refused_with_one_line() {
    let dir = tmpdir();
    let base = sample(&dir);
    let dump = std::env::var_os("GODWIT_HOSTILE_DUMP").map(PathBuf::from);
    let mut failures = Vec::new();
    for (k, &(name, patch, op, want, qemu_says)) in CASES.iter().enumerate() {
        let mut img = Img {
            b: base.b.clone(),
            at: base.at,
        };
        patch(&mut img);
        let path = p(&dir, &format!("case{k}.qcow2"));
        std::fs::write(&path, &img.b).unwrap();
        let (got, peak) = alloc_probe::measure(|| run_case(&path, op));
        if got != want {
            failures.push(format!("{name}: godwit says '{got}', expected '{want}'"));
        }
        if got.contains('\n') {
            failures.push(format!("{name}: error on more than one line"));
        }
        if peak > ALLOC_LIMIT {
            failures.push(format!("{name}: allocated {peak} bytes at once"));
        }
        if let Some(d) = &dump {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join(format!("case{k:02}.qcow2")), &img.b).unwrap();
        }
        if !qemu_says.is_empty() && qemu_available() {
            std::fs::write(&path, &img.b).unwrap();
            let q = qemu_check(&path);
            if !q.contains(qemu_says) {
                failures.push(format!("{name}: qemu-img check says '{q}', expected '{qemu_says}'"));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
