//! Block layer tests: differential tests against a shadow raw file, and
//! `qemu-img`/`qemu-io` as an oracle (skipped with a message when
//! qemu-img is not installed).

mod basic;
mod bench;
mod crash;
mod fuzz_qcow2;
mod hostile;
mod hostile_chains;
mod hostile_images;
mod json;
mod locking;
mod oracle;
mod power;
mod snapshots;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmm_sys_util::tempdir::TempDir;

use crate::block::{BlockBackend, Extent};

/// xorshift64* generator: deterministic, seedable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        // Mildly compressible data: runs of a random byte with noise.
        let base = self.next() as u8;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = if i % 7 == 0 {
                self.next() as u8
            } else {
                base.wrapping_add((i / 512) as u8)
            };
        }
    }
}

pub fn tmpdir() -> TempDir {
    TempDir::new_with_prefix("/tmp/godwit-block-").expect("tempdir")
}

pub fn p(dir: &TempDir, name: &str) -> PathBuf {
    dir.as_path().join(name)
}

/// Whether qemu-img and qemu-io are installed.
pub fn qemu_available() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        let ok = |bin: &str| Command::new(bin).arg("--version").output().is_ok_and(|o| o.status.success());
        ok("qemu-img") && ok("qemu-io")
    })
}

/// Returns early from a test, with a printed reason, without qemu-img.
macro_rules! require_qemu {
    () => {
        if !crate::block::tests::qemu_available() {
            eprintln!("skipping: qemu-img/qemu-io not installed (apt-get install qemu-utils)");
            return;
        }
    };
}
pub(crate) use require_qemu;

/// Runs a QEMU tool with TZ=UTC, retrying while it reports a lock
/// conflict: a process forked by a concurrent test may briefly hold a copy
/// of a descriptor (and so the lock) of an image this test just closed.
pub fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    for _ in 0..100 {
        let r = run_once(bin, args);
        if r.0 == 0 || !r.2.contains("Is another process using the image") {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    run_once(bin, args)
}

/// Runs a QEMU tool once with TZ=UTC; returns (exit code, stdout, stderr).
pub fn run_once(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn qemu_img(args: &[&str]) -> (i32, String, String) {
    run("qemu-img", args)
}

pub fn qemu_io(args: &[&str]) -> (i32, String, String) {
    run("qemu-io", args)
}

/// Runs qemu-io commands on an image (format given) and asserts success.
pub fn qemu_io_ok(fmt: &str, img: &Path, cmds: &[&str]) {
    let mut args = vec!["-f", fmt];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    let path = img.to_str().unwrap();
    args.push(path);
    let (code, out, err) = qemu_io(&args);
    assert_eq!(code, 0, "qemu-io {cmds:?} failed: {out}{err}");
    assert!(!out.contains("error") && !err.contains("error"), "qemu-io: {out}{err}");
}

pub fn qemu_img_ok(args: &[&str]) -> String {
    let (code, out, err) = qemu_img(args);
    assert_eq!(code, 0, "qemu-img {args:?} failed: {out}{err}");
    out
}

/// `qemu-img check --output=json`: (exit code, parsed report).
pub fn check_json(img: &Path) -> (i32, json::Json) {
    let (code, out, err) = qemu_img(&["check", "--output=json", img.to_str().unwrap()]);
    let j = json::parse(&out).unwrap_or_else(|e| panic!("check output {e}: {out} {err}"));
    (code, j)
}

/// Asserts `qemu-img check` finds neither leaks nor errors.
pub fn assert_check_clean(img: &Path) {
    let (code, j) = check_json(img);
    assert_eq!(code, 0, "qemu-img check not clean: {j:?}");
    assert_eq!(j.u64("check-errors"), Some(0));
    assert!(j.get("leaks").is_none() && j.get("corruptions").is_none(), "{j:?}");
}

/// Asserts `qemu-img check` finds at most leaks.
pub fn assert_check_leaks_only(img: &Path, what: &str) {
    let (code, j) = check_json(img);
    assert!(code == 0 || code == 3, "{what}: check exit {code}: {j:?}");
    assert!(j.get("corruptions").is_none(), "{what}: corruptions: {j:?}");
    assert_eq!(j.u64("check-errors"), Some(0), "{what}");
}

/// `qemu-img compare` of two images (formats given).
pub fn assert_compare(a: &Path, fa: &str, b: &Path, fb: &str) {
    let (code, out, err) = qemu_img(&["compare", "-f", fa, "-F", fb, a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 0, "qemu-img compare: {out}{err}");
}

/// Allocation classes per byte range from `qemu-img map --output=json`.
pub fn qemu_map(img: &Path) -> Vec<Extent> {
    let out = qemu_img_ok(&["map", "--output=json", img.to_str().unwrap()]);
    let j = json::parse(&out).expect("map json");
    j.array()
        .iter()
        .map(|e| Extent {
            start: e.u64("start").unwrap(),
            length: e.u64("length").unwrap(),
            depth: e.u64("depth").unwrap() as u32,
            present: e.bool("present").unwrap_or(true),
            zero: e.bool("zero").unwrap(),
            data: e.bool("data").unwrap(),
            offset: e.u64("offset"),
        })
        .collect()
}

/// Normalises extents for comparison: offsets dropped, zero/data dropped
/// at depths >= `raw_depth` (QEMU's raw driver reports the first block as
/// data), neighbours with the same class merged.
pub fn normalise(ext: &[Extent], raw_depth: u32) -> Vec<(u64, u64, u32, bool, bool, bool)> {
    let mut out: Vec<(u64, u64, u32, bool, bool, bool)> = Vec::new();
    for e in ext {
        // QEMU also asks the file system: holes inside data clusters show
        // up as "zero and data". Allocation is what is compared.
        let (zero, data) = if e.depth >= raw_depth {
            (false, false)
        } else {
            (e.zero && !e.data, e.data)
        };
        let cls = (e.depth, e.present, zero, data);
        if let Some(last) = out.last_mut()
            && (last.2, last.3, last.4, last.5) == cls
            && last.0 + last.1 == e.start
        {
            last.1 += e.length;
            continue;
        }
        out.push((e.start, e.length, e.depth, e.present, zero, data));
    }
    out
}

/// Asserts godwit's block status equals `qemu-img map`.
pub fn assert_map_matches(img: &mut dyn BlockBackend, raw_depth: u32) {
    let size = img.virtual_size();
    let ours = img.block_status(0, size).unwrap();
    let theirs = qemu_map(img.path());
    assert_eq!(
        normalise(&ours, raw_depth),
        normalise(&theirs, raw_depth),
        "map of {}",
        img.path().display()
    );
}

/// Opens an image, retrying briefly on lock conflicts: a child process
/// spawned by a concurrent test can hold a copy of a just-closed image
/// descriptor (and so its lock) for a moment between fork and exec.
pub fn open(path: &Path, format: Option<crate::block::Format>, read_only: bool) -> Box<dyn BlockBackend> {
    for _ in 0..200 {
        match crate::block::open_image(path, format, read_only) {
            Ok(img) => return img,
            Err(e) if e.to_string().contains("lock") => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
    panic!("open {}: still locked", path.display());
}

/// A sparse raw file holding the expected guest contents.
pub struct Shadow {
    pub file: File,
    pub path: PathBuf,
}

impl Shadow {
    pub fn new(path: PathBuf, size: u64) -> Shadow {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(size).unwrap();
        Shadow { file, path }
    }

    pub fn write(&self, buf: &[u8], off: u64) {
        self.file.write_all_at(buf, off).unwrap();
    }

    pub fn read(&self, len: usize, off: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.file.read_exact_at(&mut v, off).unwrap();
        v
    }
}

/// Asserts `img` and `shadow` agree on `[off, off+len)`.
pub fn assert_same(img: &mut dyn BlockBackend, shadow: &Shadow, off: u64, len: u64) {
    const CHUNK: u64 = 1 << 20;
    let mut pos = off;
    while pos < off + len {
        let n = (off + len - pos).min(CHUNK) as usize;
        let mut got = vec![0u8; n];
        img.read_at(&mut got, pos).unwrap();
        let want = shadow.read(n, pos);
        if got != want {
            let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap();
            panic!(
                "{}: mismatch at {:#x}: got {:#x} want {:#x}",
                img.path().display(),
                pos + i as u64,
                got[i],
                want[i]
            );
        }
        pos += n as u64;
    }
}

/// Differential random workload: applies `ops` random operations to the
/// image and the shadow and compares reads. Offsets cluster around
/// `hot` spots so that small images and huge sparse ones both get
/// overlapping, boundary-crossing requests. Returns the touched ranges.
pub fn random_ops(
    img: &mut dyn BlockBackend,
    shadow: &Shadow,
    rng: &mut Rng,
    ops: usize,
    cluster: u64,
    hot: &[u64],
    discard_zeroes: bool,
) -> Vec<(u64, u64)> {
    let size = img.virtual_size();
    let mut touched = Vec::new();
    for _ in 0..ops {
        let maxlen = (cluster * 3).clamp(512, 256 << 10);
        let mut len = 1 + rng.below(maxlen);
        let mut off = if hot.is_empty() || rng.below(4) == 0 {
            rng.below(size)
        } else {
            let h = hot[rng.below(hot.len() as u64) as usize];
            (h + rng.below(cluster * 4)).saturating_sub(cluster * 2)
        };
        if rng.below(3) != 0 {
            off &= !511;
            len = len.next_multiple_of(512);
        }
        off = off.min(size - 1);
        len = len.min(size - off);
        match rng.below(20) {
            0..=10 => {
                let mut buf = vec![0u8; len as usize];
                rng.fill(&mut buf);
                img.write_at(&buf, off).unwrap();
                shadow.write(&buf, off);
            }
            11..=13 => {
                img.write_zeroes(off, len, rng.below(2) == 0).unwrap();
                shadow.write(&vec![0u8; len as usize], off);
            }
            14..=15 if discard_zeroes => {
                img.discard(off, len).unwrap();
                // Whole clusters inside the range now read as zeroes.
                let first = off.next_multiple_of(cluster);
                let end = (off + len) / cluster * cluster;
                let end = if off + len == size { size } else { end };
                if end > first {
                    shadow.write(&vec![0u8; (end - first) as usize], first);
                }
            }
            16 => img.flush().unwrap(),
            _ => assert_same(img, shadow, off, len),
        }
        touched.push((off, len));
    }
    touched
}
