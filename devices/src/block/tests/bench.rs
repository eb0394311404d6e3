//! Throughput of the block layer for 4 KiB requests, one at a time, on the
//! image kinds and access patterns of `scripts/bench/disk` (which runs this
//! with `cargo test --release -p devices bench_4k -- --ignored --nocapture`
//! and sets it next to `qemu-img bench`).
//!
//! Request i goes to `(i * step) % size`, the way `qemu-img bench -S step`
//! walks an image of that size:
//! * `seq`: step 4 KiB over 64 MiB (the first write allocates one cluster
//!   in 16);
//! * `rand`: step [`scatter`]`(n)` x 4 KiB over 64 MiB: every block once, in
//!   a scattered order (consecutive requests ~40 MiB apart);
//! * `stride`: step 64 KiB over 1 GiB: every request in its own cluster
//!   (each first write allocates, or copies a whole cluster up).
//!
//! Images ([`KINDS`]): raw (sparse); raw-full (filled with data like an
//! overlay that copied everything up: the reference for `overlay-cow`);
//! qcow2; `overlay-cow`, a qcow2 overlay over a raw base holding data
//! everywhere (copy-on-write copies real data); `overlay-sparse`, a qcow2
//! overlay over an empty raw base. Fresh images per run; per run one
//! first-write pass, `REWRITES` rewrite passes and `READS` read passes, each
//! timed without its flush, the kinds taking turns pass by pass. Before every pass the image is flushed and the host's dirty pages
//! are written back (`sync`), so no write-back of an earlier pass runs
//! during a timed one; everything stays in the page cache, so reads measure
//! the block layer, not the disk. Each figure is the median of its passes
//! over all runs.
//!
//! Environment: `GODWIT_DISKBENCH_RUNS` (default 3),
//! `GODWIT_DISKBENCH_PATTERNS` (default `seq,rand,stride`).
//! Output, one line per case: `DISKBENCH <pattern> <image> first=<s>
//! rewrite=<s> read=<s> cpu_first=<s> cpu_rewrite=<s> cpu_read=<s>`:
//! wall-clock, then the CPU time (user + system) of the benchmark thread,
//! which leaves out waiting (for the journal, for a CPU), so it shows the
//! cost of the layer more steadily.

use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::*;
use crate::block::Format;
use crate::block::qcow2::Qcow2;

const BLOCK: u64 = 4096;
const REWRITES: usize = 3;
const READS: usize = 5;

/// The step (in blocks) of the scattered pattern over `n` blocks: the
/// smallest odd number at or above `n` x 0.618... (the golden ratio's
/// fraction) that is coprime to `n`, so that `i * step % n` visits every
/// block once. The probe's `probe.diskbench` uses the same rule.
pub fn scatter(n: u64) -> u64 {
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut p = ((n as u128 * 2_654_435_769) >> 32) as u64 | 1;
    while gcd(p, n) != 1 {
        p += 2;
    }
    p
}

struct Pattern {
    name: &'static str,
    count: u64,
    size: u64,
    step: u64,
}

fn patterns() -> Vec<Pattern> {
    let small = 64 << 20;
    vec![
        Pattern {
            name: "seq",
            count: small / BLOCK,
            size: small,
            step: BLOCK,
        },
        Pattern {
            name: "rand",
            count: small / BLOCK,
            size: small,
            step: scatter(small / BLOCK) * BLOCK,
        },
        Pattern {
            name: "stride",
            count: 16384,
            size: 1 << 30,
            step: 64 << 10,
        },
    ]
}

/// Flushes the image and writes back every dirty page of the host.
fn settle(img: &mut dyn BlockBackend) {
    img.flush().unwrap();
    // SAFETY: sync() takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// CPU time (user + system) this thread has used, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// One timed pass of the pattern (the flush is not timed): wall-clock and
/// CPU seconds.
fn pass(img: &mut dyn BlockBackend, pat: &Pattern, write: bool, gen_: u8) -> (f64, f64) {
    settle(img);
    let mut buf = vec![gen_; BLOCK as usize];
    let (t, cpu) = (Instant::now(), thread_cpu());
    for i in 0..pat.count {
        let off = i * pat.step % pat.size;
        if write {
            img.write_at(&buf, off).unwrap();
        } else {
            img.read_at(&mut buf, off).unwrap();
        }
    }
    let dt = (t.elapsed().as_secs_f64(), thread_cpu() - cpu);
    if !write {
        assert_eq!(buf[0], gen_, "{}: read back the wrong data", pat.name);
    }
    dt
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Fills a raw file with non-zero bytes, 64 KiB at a time: like the
/// clusters of an overlay that copied everything up. (How a file was written
/// matters: the page cache keeps what one write brought in as one folio, and
/// a 4 KiB rewrite then dirties the whole folio, which costs more the larger
/// it is.)
fn fill(path: &Path, size: u64) {
    let f = File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(chunk.len() as u64) as usize;
        f.write_all_at(&chunk[..n], off).unwrap();
        off += n as u64;
    }
}

const KINDS: [&str; 5] = ["raw", "raw-full", "qcow2", "overlay-cow", "overlay-sparse"];

/// Creates a fresh image of `kind` in `dir`.
fn create(dir: &TempDir, kind: &str, size: u64) -> PathBuf {
    let path = p(dir, kind);
    let _ = std::fs::remove_file(&path);
    match kind {
        "raw" => File::create(&path).unwrap().set_len(size).unwrap(),
        "raw-full" => fill(&path, size),
        "qcow2" => Qcow2::create(&path, size, 16, None).unwrap(),
        "overlay-cow" => Qcow2::create(&path, size, 16, Some((Path::new("full.raw"), Format::Raw))).unwrap(),
        _ => Qcow2::create(&path, size, 16, Some((Path::new("empty.raw"), Format::Raw))).unwrap(),
    }
    path
}

#[test]
#[ignore]
fn bench_4k() {
    let runs: usize = std::env::var("GODWIT_DISKBENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let wanted = std::env::var("GODWIT_DISKBENCH_PATTERNS").unwrap_or_else(|_| "seq,rand,stride".into());
    for pat in patterns().into_iter().filter(|p| wanted.split(',').any(|w| w == p.name)) {
        let dir = tmpdir();
        fill(&p(&dir, "full.raw"), pat.size);
        File::create(p(&dir, "empty.raw")).unwrap().set_len(pat.size).unwrap();
        // [kind] -> (first, rewrite, read) samples. The kinds take turns
        // pass by pass, each pass starting with another kind, so a change in
        // the host's load or a leftover of the pass before hits them alike.
        // [kind] -> wall-clock (first, rewrite, read), then CPU time.
        let mut t: Vec<[Vec<f64>; 6]> = KINDS.iter().map(|_| Default::default()).collect();
        let mut turn = 0;
        for _ in 0..runs.max(1) {
            let mut imgs: Vec<_> = KINDS.iter().map(|k| open(&create(&dir, k, pat.size), None, false)).collect();
            // (first write, rewrite or read, the byte written or expected)
            let last = 1 + REWRITES as u8;
            let passes = std::iter::once((0, 1))
                .chain((2..=last).map(|g| (1, g)))
                .chain((0..READS).map(|_| (2, last)));
            for (what, gen_) in passes {
                for j in 0..KINDS.len() {
                    let k = (j + turn) % KINDS.len();
                    let (wall, cpu) = pass(imgs[k].as_mut(), &pat, what != 2, gen_);
                    t[k][what].push(wall);
                    t[k][3 + what].push(cpu);
                }
                turn += 1;
            }
            for img in &mut imgs {
                settle(img.as_mut());
            }
        }
        for (kind, t) in KINDS.iter().zip(&mut t) {
            let m: Vec<f64> = t.iter_mut().map(|v| median(v)).collect();
            eprintln!(
                "DISKBENCH {} {kind} first={:.4} rewrite={:.4} read={:.4} cpu_first={:.4} cpu_rewrite={:.4} cpu_read={:.4}",
                pat.name, m[0], m[1], m[2], m[3], m[4], m[5]
            );
        }
    }
}

#[test]
fn scatter_visits_every_block_once() {
    for n in [16384u64, 8192, 384, 640, 1000] {
        let s = scatter(n);
        let mut seen = vec![false; n as usize];
        for i in 0..n {
            seen[(i * s % n) as usize] = true;
        }
        assert!(seen.iter().all(|&b| b), "n={n} step={s}");
    }
    assert_eq!(scatter(16384), 10125);
}
