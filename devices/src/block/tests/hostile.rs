//! Damaged and hostile images: errors, never panics or huge allocations.

use super::*;
use crate::block::qcow2::{CreateOptions, Qcow2};
use crate::block::{ImageOptions, open_image_with};

/// Opens (without locks) and exercises an image; errors are fine.
fn exercise(path: &Path, read_only: bool) {
    let opts = ImageOptions {
        read_only,
        lock: false,
        ..ImageOptions::default()
    };
    let Ok(mut img) = open_image_with(path, &opts) else {
        return;
    };
    let size = img.virtual_size().min(8 << 20);
    let mut buf = vec![0u8; 64 << 10];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        if img.read_at(&mut buf[..n], off).is_err() {
            break;
        }
        off += n as u64;
    }
    let _ = img.block_status(0, size);
    if !read_only {
        let _ = img.write_at(&[0xab; 5000], 1000);
        let _ = img.write_zeroes(0, 65536, true);
        let _ = img.discard(65536, 65536);
        if let Some(q) = img.as_qcow2() {
            let _ = q.check();
            let _ = q.snapshot_create("x", 0, 0, None);
            for s in q.snapshots() {
                let _ = q.snapshot_revert(&s.id);
            }
        }
        let _ = img.flush();
    }
}

fn sample_image(dir: &TempDir) -> (PathBuf, Vec<u8>) {
    let path = p(dir, "good.qcow2");
    let mut opts = CreateOptions::new(4 << 20);
    opts.cluster_bits = 9;
    Qcow2::create_with(&path, &opts).unwrap();
    let mut img = open(&path, None, false);
    let mut rng = Rng::new(900);
    let mut buf = vec![0u8; 20000];
    for i in 0..8u64 {
        rng.fill(&mut buf);
        img.write_at(&buf, i * 300_000).unwrap();
    }
    img.as_qcow2().unwrap().snapshot_create("snap", 0, 0, None).unwrap();
    img.write_at(&buf, 7777).unwrap();
    drop(img);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn truncated_images() {
    let dir = tmpdir();
    let (_, bytes) = sample_image(&dir);
    let victim = p(&dir, "victim.qcow2");
    let mut len = 0;
    while len < bytes.len() {
        std::fs::write(&victim, &bytes[..len]).unwrap();
        exercise(&victim, true);
        len += 1 + len / 3;
    }
}

#[test]
fn corrupted_metadata() {
    let dir = tmpdir();
    let (_, bytes) = sample_image(&dir);
    let victim = p(&dir, "victim.qcow2");
    let mut rng = Rng::new(901);
    // Metadata sits in the first few KiB and among the data clusters:
    // flip random bytes there and in the header fields.
    for trial in 0..150 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let pos = if trial % 3 == 0 {
                rng.below(112) as usize
            } else {
                rng.below(b.len() as u64) as usize
            };
            b[pos] = rng.next() as u8;
        }
        std::fs::write(&victim, &b).unwrap();
        exercise(&victim, trial % 2 == 0);
    }
}

#[test]
fn huge_header_values_are_refused() {
    let dir = tmpdir();
    let (_, bytes) = sample_image(&dir);
    let victim = p(&dir, "victim.qcow2");
    let cases: [(usize, &[u8]); 6] = [
        (36, &[0xff, 0xff, 0xff, 0xff]),                         // l1_size
        (56, &[0x7f, 0xff, 0xff, 0xff]),                         // refcount table clusters
        (60, &[0x00, 0x10, 0x00, 0x00]),                         // nb_snapshots
        (24, &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // size
        (8, &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00]),  // backing name offset
        (100, &[0xff, 0xff, 0xff, 0xf8]),                        // header length
    ];
    for (off, val) in cases {
        let mut b = bytes.clone();
        b[off..off + val.len()].copy_from_slice(val);
        std::fs::write(&victim, &b).unwrap();
        let opts = ImageOptions {
            lock: false,
            read_only: true,
            ..ImageOptions::default()
        };
        assert!(open_image_with(&victim, &opts).is_err(), "field at {off} accepted");
    }
}
