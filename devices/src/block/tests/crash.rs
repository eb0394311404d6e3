//! Crash safety: the image file stops accepting writes after N write
//! calls (as if the process were killed there); `qemu-img check` must then
//! find at most leaked clusters.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::*;
use crate::block::qcow2::{CreateOptions, Qcow2};
use crate::block::storage::{HostFile, Storage};

/// Storage that performs only the first `budget` modifying calls.
struct Crashy {
    inner: HostFile,
    budget: Arc<AtomicI64>,
}

impl Crashy {
    fn spend(&self) -> io::Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) > 0 {
            Ok(())
        } else {
            Err(io::Error::other("simulated crash"))
        }
    }
}

impl Storage for Crashy {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.inner.read_at(buf, off)
    }
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        self.spend()?;
        self.inner.write_at(buf, off)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.spend()?;
        self.inner.set_len(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        if self.budget.load(Ordering::SeqCst) <= 0 {
            return Err(io::Error::other("simulated crash"));
        }
        Ok(())
    }
    fn punch_hole(&mut self, off: u64, len: u64) -> io::Result<bool> {
        self.spend()?;
        self.inner.punch_hole(off, len)
    }
    fn zero_range(&mut self, off: u64, len: u64) -> io::Result<()> {
        self.spend()?;
        self.inner.zero_range(off, len)
    }
}

/// Opens `path` through a [`Crashy`] with `budget` writes.
fn open_crashy(path: &Path, budget: i64) -> (Qcow2, Arc<AtomicI64>) {
    let b = Arc::new(AtomicI64::new(budget));
    let file = HostFile::open(path, false, false).unwrap();
    let store = Crashy {
        inner: file,
        budget: b.clone(),
    };
    (Qcow2::open(Box::new(store), path, false).unwrap(), b)
}

/// Runs `scenario` once to count its writes, then again from a fresh
/// copy of `base` for each crash point in `points(total)`, calling
/// `verify` on the crashed image.
fn crash_points(
    base: &Path,
    scenario: &dyn Fn(&mut Qcow2) -> crate::block::Result<()>,
    points: &dyn Fn(i64) -> Vec<i64>,
    verify: &dyn Fn(&Path, i64),
) {
    let work = base.with_extension("work");
    std::fs::copy(base, &work).unwrap();
    let total = {
        let (mut img, budget) = open_crashy(&work, i64::MAX / 2);
        scenario(&mut img).unwrap();
        img.close().unwrap();
        i64::MAX / 2 - budget.load(Ordering::SeqCst)
    };
    assert!(total > 10, "scenario wrote only {total} times");
    verify(&work, total);
    for n in points(total) {
        std::fs::copy(base, &work).unwrap();
        let (mut img, _) = open_crashy(&work, n);
        let _ = scenario(&mut img);
        drop(img);
        verify(&work, n);
    }
}

/// Every point below 48, then a spread up to `total`.
fn spread(total: i64) -> Vec<i64> {
    let step = (total / 40).max(1);
    (0..total.min(48)).chain((48..total).step_by(step as usize)).collect()
}

fn data_scenario(img: &mut Qcow2) -> crate::block::Result<()> {
    use crate::block::BlockBackend;
    let mut rng = Rng::new(700);
    let mut buf = vec![0u8; 3000];
    for i in 0..12u64 {
        rng.fill(&mut buf);
        // Partial clusters over shared (snapshot) data, fresh areas and
        // areas with no L2 table yet.
        img.write_at(&buf, (i * 173_000 + 100) % (6 << 20))?;
        if i == 5 {
            img.flush()?;
        }
    }
    img.write_zeroes(4096, 8192, true)?;
    img.write_zeroes(1 << 20, 65536, false)?;
    img.discard(2 << 20, 65536)?;
    img.write_vmstate(&buf, 0)?; // grows the L1 table
    img.flush()
}

#[test]
fn crash_during_data_writes_leaves_only_leaks() {
    require_qemu!();
    let dir = tmpdir();
    let base = p(&dir, "base.qcow2");
    let mut opts = CreateOptions::new(6 << 20);
    opts.cluster_bits = 9;
    Qcow2::create_with(&base, &opts).unwrap();
    {
        let mut img = open(&base, None, false);
        let mut rng = Rng::new(701);
        let mut buf = vec![0u8; 64 << 10];
        for i in 0..6u64 {
            rng.fill(&mut buf);
            img.write_at(&buf, i << 20).unwrap();
        }
        img.as_qcow2().unwrap().snapshot_create("before", 0, 0, None).unwrap();
    }
    assert_check_clean(&base);
    crash_points(&base, &data_scenario, &spread, &|img, n| {
        assert_check_leaks_only(img, &format!("crash after {n} writes"));
        // And godwit can still read it all.
        let mut g = open(img, None, true);
        let mut v = vec![0u8; 6 << 20];
        g.read_at(&mut v, 0).unwrap();
    });
}

fn growth_scenario(img: &mut Qcow2) -> crate::block::Result<()> {
    use crate::block::BlockBackend;
    let buf = vec![0x5au8; 64 << 10];
    for i in 0..4u64 {
        img.write_at(&buf, (16 << 20) + i * (1 << 20))?;
    }
    img.flush()
}

#[test]
fn crash_during_refcount_growth_leaves_only_leaks() {
    require_qemu!();
    let dir = tmpdir();
    let base = p(&dir, "base.qcow2");
    let mut opts = CreateOptions::new(24 << 20);
    opts.cluster_bits = 9;
    Qcow2::create_with(&base, &opts).unwrap();
    {
        // Fill the host file up to just below what the refcount table can
        // cover (each 512 B table cluster covers 64 blocks of 256 clusters).
        let mut img = open(&base, None, false);
        let buf = vec![0x11u8; 128 << 10];
        let mut pos = 0u64;
        loop {
            let q = img.as_qcow2().unwrap();
            q.flush_all().unwrap();
            let mut clusters = [0u8; 4];
            File::open(&base).unwrap().read_exact_at(&mut clusters, 56).unwrap();
            let reach = u64::from(u32::from_be_bytes(clusters)) * 64 * 256 * 512;
            let len = std::fs::metadata(&base).unwrap().len();
            if len + (300 << 10) >= reach {
                break;
            }
            img.write_at(&buf, pos).unwrap();
            pos += buf.len() as u64;
        }
        assert!(pos < 16 << 20);
    }
    assert_check_clean(&base);
    let table_before = {
        let mut g = open(&base, None, true);
        g.as_qcow2().unwrap().rc_table_offset()
    };
    crash_points(&base, &growth_scenario, &spread, &|img, n| {
        assert_check_leaks_only(img, &format!("crash after {n} writes"));
        let mut g = open(img, None, true);
        let mut v = vec![0u8; 1 << 20];
        g.read_at(&mut v, 3 << 20).unwrap();
        assert!(v.iter().all(|&b| b == 0x11), "old data damaged after {n} writes");
    });
    let mut full = open(&base, None, false);
    growth_scenario(full.as_qcow2().unwrap()).unwrap();
    assert_ne!(
        full.as_qcow2().unwrap().rc_table_offset(),
        table_before,
        "scenario must move the refcount table"
    );
}

fn snapshot_scenario(img: &mut Qcow2) -> crate::block::Result<()> {
    use crate::block::BlockBackend;
    img.write_vmstate(&[3u8; 5000], 0)?;
    img.snapshot_create("s2", 5000, 1, None)?;
    img.write_at(&[4u8; 1000], 300)?;
    img.snapshot_revert("s1")?;
    img.snapshot_delete("s1")?;
    img.flush()
}

#[test]
fn crash_during_snapshot_ops_is_repaired_on_open() {
    require_qemu!();
    let dir = tmpdir();
    let base = p(&dir, "base.qcow2");
    let mut opts = CreateOptions::new(1 << 20);
    opts.cluster_bits = 9;
    Qcow2::create_with(&base, &opts).unwrap();
    {
        let mut img = open(&base, None, false);
        img.write_at(&[1u8; 20000], 0).unwrap();
        img.as_qcow2().unwrap().snapshot_create("s1", 0, 0, None).unwrap();
        img.write_at(&[2u8; 3000], 10000).unwrap();
    }
    crash_points(&base, &snapshot_scenario, &spread, &|img, n| {
        // Snapshot operations run with the dirty bit set: an interrupted
        // one is repaired by the next read-write open.
        let g = open(img, None, false);
        drop(g);
        assert_check_leaks_only(img, &format!("after repair, crash at {n}"));
        let info = qemu_img_ok(&["info", "--output=json", img.to_str().unwrap()]);
        assert!(info.contains("\"dirty-flag\": false"), "{info}");
    });
}
