//! Rough throughput numbers (run with `--ignored --nocapture`, release).

use std::time::Instant;

use super::*;
use crate::block::Format;
use crate::block::qcow2::Qcow2;

const N: u64 = 16384;
const STRIDE: u64 = 64 << 10;

fn pass(img: &mut dyn BlockBackend, write: bool) -> f64 {
    let mut buf = vec![0x5au8; 4096];
    let t = Instant::now();
    for i in 0..N {
        if write {
            img.write_at(&buf, i * STRIDE).unwrap();
        } else {
            img.read_at(&mut buf, i * STRIDE).unwrap();
        }
    }
    img.flush().unwrap();
    t.elapsed().as_secs_f64()
}

#[test]
#[ignore]
fn bench_4k_writes_at_64k_stride() {
    let dir = tmpdir();
    let size = N * STRIDE;
    let raw = p(&dir, "base.raw");
    File::create(&raw).unwrap().set_len(size).unwrap();
    let q = p(&dir, "q.qcow2");
    Qcow2::create(&q, size, 16, None).unwrap();
    let ov = p(&dir, "ov.qcow2");
    Qcow2::create(&ov, size, 16, Some((Path::new("base.raw"), Format::Raw))).unwrap();
    let empty = p(&dir, "empty.raw");
    File::create(&empty).unwrap().set_len(size).unwrap();
    let ov0 = p(&dir, "ov0.qcow2");
    Qcow2::create(&ov0, size, 16, Some((Path::new("empty.raw"), Format::Raw))).unwrap();
    // The raw pass writes base.raw, so the first overlay copies real data.
    let cases = [("raw", &raw), ("qcow2", &q), ("overlay (COW)", &ov), ("overlay, sparse", &ov0)];
    for (name, path) in cases {
        let mut img = open(path, None, false);
        let alloc = pass(img.as_mut(), true);
        let rewrite = pass(img.as_mut(), true);
        let read = pass(img.as_mut(), false);
        let used = std::fs::metadata(path)
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
            .unwrap_or(0);
        eprintln!(
            "{name:16} allocating {alloc:.3}s  rewrite {rewrite:.3}s  read {read:.3}s  ({N} x 4 KiB), file uses {} MiB",
            used >> 20
        );
    }
}
