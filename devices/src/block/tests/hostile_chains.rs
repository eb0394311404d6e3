//! Hostile backing chains: loops, chains thousands deep, names with a protocol prefix or
//! `..`. Each is refused with one short line, or followed exactly as QEMU follows it, and
//! nothing but the top image is ever written. (QEMU itself is not asked here: on a looping
//! chain `qemu-img check` grows without bound, and a protocol name makes it connect.)

use super::*;
use crate::alloc_probe;
use crate::block::qcow2::header::be64;
use crate::block::qcow2::{CreateOptions, Qcow2};
use crate::block::{Format, ImageOptions, open_image_with};

/// A 512-byte-cluster qcow2 image at `path` whose backing file name is `name` (any bytes up
/// to 200), with format qcow2 or raw, made by patching an image created over a real file.
fn image_with_backing(path: &Path, name: &str, fmt: Format) {
    let placeholder = "X".repeat(200);
    let target = path.parent().unwrap().join(&placeholder);
    let mut opts = CreateOptions::new(1 << 20);
    opts.cluster_bits = 9;
    if !target.exists() {
        Qcow2::create_with(&target, &opts).unwrap();
    }
    opts.backing = Some((PathBuf::from(&placeholder), fmt));
    Qcow2::create_with(path, &opts).unwrap();
    let mut b = std::fs::read(path).unwrap();
    let at = be64(&b, 8) as usize;
    b[at..at + name.len()].copy_from_slice(name.as_bytes());
    b[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
    std::fs::write(path, b).unwrap();
}

/// The error opening `path` read-write gives, with the directory shown as `DIR`.
fn open_error(dir: &TempDir, path: &Path) -> String {
    let opts = ImageOptions {
        lock: false,
        ..ImageOptions::default()
    };
    match open_image_with(path, &opts) {
        Ok(_) => String::new(),
        Err(e) => e.to_string().replace(&dir.as_path().display().to_string(), "DIR"),
    }
}

#[test]
fn looping_chains_are_refused() {
    let dir = tmpdir();
    let (a, b) = (p(&dir, "a.qcow2"), p(&dir, "b.qcow2"));
    image_with_backing(&a, "b.qcow2", Format::Qcow2);
    image_with_backing(&b, "a.qcow2", Format::Qcow2);
    assert_eq!(
        open_error(&dir, &a),
        "Could not open 'DIR/a.qcow2': Backing file 'DIR/a.qcow2' creates an infinite loop"
    );
    let c = p(&dir, "c.qcow2");
    image_with_backing(&c, "./c.qcow2", Format::Qcow2);
    assert_eq!(
        open_error(&dir, &c),
        "Could not open 'DIR/c.qcow2': Backing file 'DIR/./c.qcow2' creates an infinite loop"
    );
    // A loop through a hard link is the same file.
    let d = p(&dir, "d.qcow2");
    image_with_backing(&d, "d-link.qcow2", Format::Qcow2);
    std::fs::hard_link(&d, p(&dir, "d-link.qcow2")).unwrap();
    assert!(open_error(&dir, &d).ends_with("Backing file 'DIR/d-link.qcow2' creates an infinite loop"));
}

#[test]
fn a_chain_thousands_deep_is_refused_in_one_short_line() {
    let dir = tmpdir();
    let base = p(&dir, "00000.qcow2");
    let mut opts = CreateOptions::new(1 << 20);
    opts.cluster_bits = 9;
    Qcow2::create_with(&base, &opts).unwrap();
    for k in 1..2000 {
        let path = p(&dir, &format!("{k:05}.qcow2"));
        image_with_backing(&path, &format!("{:05}.qcow2", k - 1), Format::Qcow2);
    }
    let top = p(&dir, "01999.qcow2");
    let (err, peak) = alloc_probe::measure(|| open_error(&dir, &top));
    assert_eq!(
        err,
        "Could not open 'DIR/01999.qcow2': Backing chain deeper than 64 images (at 'DIR/01934.qcow2')"
    );
    assert!(peak < 8 << 20, "opening 65 layers allocated {peak} bytes at once");
    // 64 layers below the top are fine.
    let ok = p(&dir, "00064.qcow2");
    assert_eq!(open_error(&dir, &ok), "");
}

#[test]
fn protocol_prefixes_are_refused() {
    let dir = tmpdir();
    let img = p(&dir, "img.qcow2");
    for (name, proto) in [
        ("nbd://127.0.0.1:1/export", "nbd"),
        (
            "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"/etc/hostname\"}}",
            "json",
        ),
        ("http://127.0.0.1:1/disk.img", "http"),
        ("file:base.raw", "file"),
    ] {
        image_with_backing(&img, name, Format::Raw);
        assert_eq!(
            open_error(&dir, &img),
            format!("Could not open 'DIR/img.qcow2': Backing file name uses protocol '{proto}': godwit opens only local files")
        );
    }
}

#[test]
fn dot_dot_names_resolve_against_the_image_directory_and_write_nothing_there() {
    let dir = tmpdir();
    std::fs::create_dir(p(&dir, "sub")).unwrap();
    let base = p(&dir, "base.raw");
    std::fs::write(&base, vec![0x5a; 1 << 20]).unwrap();
    let before = std::fs::read(&base).unwrap();
    let top = p(&dir, "sub/top.qcow2");
    image_with_backing(&top, "../base.raw", Format::Raw);
    // The current directory plays no part: only the image's directory does.
    let mut img = open(&top, None, false);
    let mut buf = [0u8; 512];
    img.read_at(&mut buf, 4096).unwrap();
    assert_eq!(buf, [0x5a; 512], "the backing file read through '..'");
    img.write_at(&[1; 1000], 4000).unwrap();
    img.write_zeroes(0, 65536, true).unwrap();
    img.discard(0, 1 << 20).unwrap();
    img.flush().unwrap();
    drop(img);
    assert_eq!(std::fs::read(&base).unwrap(), before, "the backing file was written");
    image_with_backing(&top, "../../../../../../../../nonexistent.raw", Format::Raw);
    assert_eq!(
        open_error(&dir, &top),
        "Could not open 'DIR/sub/top.qcow2': Could not open backing file: Could not open \
         'DIR/sub/../../../../../../../../nonexistent.raw': No such file or directory"
    );
    // An empty name means no backing file, as in QEMU.
    image_with_backing(&top, "", Format::Raw);
    assert_eq!(open_error(&dir, &top), "");
}
