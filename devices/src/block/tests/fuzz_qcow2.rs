//! The qcow2 fuzz target's body (`block::fuzz`), driven from a fixed corpus with a fixed
//! seed: valid images made by godwit (512-byte and 64 KiB clusters, v2 and v3, with
//! snapshots, compressed-free), mutated where the metadata is, then opened and operated
//! on. `GODWIT_FUZZ_SEEDS=DIR` writes the unmutated seeds there (a starting corpus for
//! cargo-fuzz); `GODWIT_FUZZ_ITERS=N` changes the number of runs.

use super::*;
use crate::block::fuzz::qcow2_input;
use crate::block::qcow2::{CreateOptions, Qcow2};

fn seed(dir: &TempDir, name: &str, cluster_bits: u32, version: u32, refcount_order: u32) -> Vec<u8> {
    let path = p(dir, name);
    let mut opts = CreateOptions::new(256 << 10);
    opts.cluster_bits = cluster_bits;
    opts.version = version;
    opts.refcount_order = refcount_order;
    Qcow2::create_with(&path, &opts).unwrap();
    let mut img = open(&path, None, false);
    let mut rng = Rng::new(u64::from(cluster_bits * 10 + version));
    let mut buf = vec![0u8; 3000];
    for i in 0..6u64 {
        rng.fill(&mut buf);
        img.write_at(&buf, i * 40_000).unwrap();
    }
    img.as_qcow2().unwrap().snapshot_create("one", 0, 0, None).unwrap();
    img.write_at(&buf, 70_000).unwrap();
    img.as_qcow2().unwrap().snapshot_create("two", 0, 0, None).unwrap();
    img.write_at(&buf[..512], 0).unwrap();
    drop(img);
    std::fs::read(&path).unwrap()
}

/// Values that break tables in interesting ways.
fn interesting(rng: &mut Rng, len: u64) -> u64 {
    let cs_guess = 1u64 << (9 + rng.below(8));
    match rng.below(10) {
        0 => 0,
        1 => u64::MAX,
        2 => 1 << (30 + rng.below(30)),
        3 => (1 << 63) | (rng.below(len.max(1)) & !(cs_guess - 1)),
        4 => (1 << 62) | rng.below(len.max(1)),
        5 => rng.below(len.max(1)) & !511,
        6 => cs_guess,
        7 => u64::from(u32::MAX) << 32,
        8 => 1,
        _ => rng.next(),
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len() as u64;
        match rng.below(8) {
            0 if len > 0 => b.truncate(rng.below(len) as usize),
            1..=3 => {
                // A field of the header (the first 112 bytes hold them all).
                let at = (rng.below(14) * 8) as usize;
                let v = interesting(rng, len);
                let w = if rng.below(2) == 0 { 8 } else { 4 };
                let at = at + if w == 4 { 4 * rng.below(2) as usize } else { 0 };
                if at + w <= b.len() {
                    b[at..at + w].copy_from_slice(&v.to_be_bytes()[8 - w..]);
                }
            }
            4..=6 => {
                // An entry of some table.
                let at = (rng.below(len / 8 + 1) * 8) as usize;
                if at + 8 <= b.len() {
                    b[at..at + 8].copy_from_slice(&interesting(rng, len).to_be_bytes());
                }
            }
            _ if len > 0 => {
                let at = rng.below(len) as usize;
                b[at] = rng.next() as u8;
            }
            _ => {}
        }
    }
    let n = 1 + rng.below(12) as usize;
    for _ in 0..n {
        b.push(rng.next() as u8);
    }
    b.push(n as u8);
    b
}

#[test]
fn qcow2_fuzz_corpus() {
    let dir = tmpdir();
    let seeds = [
        seed(&dir, "s9.qcow2", 9, 3, 4),
        seed(&dir, "s9v2.qcow2", 9, 2, 4),
        seed(&dir, "s10r1.qcow2", 10, 3, 1),
        seed(&dir, "s16.qcow2", 16, 3, 4),
    ];
    if let Some(d) = std::env::var_os("GODWIT_FUZZ_SEEDS") {
        std::fs::create_dir_all(&d).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            let mut input = s.clone();
            input.extend_from_slice(&[0x01, 0x0e, 0x11, 0x24, 0x36, 0x07, 6]);
            std::fs::write(Path::new(&d).join(format!("seed{i}")), input).unwrap();
        }
    }
    let iters: u64 = std::env::var("GODWIT_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(6000);
    let mut rng = Rng::new(0x9c0_u64);
    let (mut opened, mut ops) = (0u64, 0u64);
    let start = std::time::Instant::now();
    for i in 0..iters {
        let base = &seeds[(i % seeds.len() as u64) as usize];
        let input = mutate(&mut rng, base);
        let (out, peak) = crate::alloc_probe::measure(|| qcow2_input(&input));
        assert!(peak < 16 << 20, "input {i} allocated {peak} bytes at once");
        opened += u64::from(out.opened);
        ops += u64::from(out.ops_ok + out.ops_failed);
    }
    eprintln!(
        "qcow2 fuzz: {iters} inputs, {opened} opened, {ops} operations, {:?}",
        start.elapsed()
    );
    assert!(opened > iters / 10, "too few mutated images opened: the corpus tests little");
}
