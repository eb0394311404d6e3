//! Images written by qemu-img/qemu-io, read and then modified by godwit,
//! judged by qemu-img.

use super::*;
use crate::block::Format;

/// Converts `img` to raw with qemu-img into a new shadow file.
fn qemu_to_shadow(img: &Path, fmt: &str, out: PathBuf) -> Shadow {
    qemu_img_ok(&["convert", "-f", fmt, "-O", "raw", img.to_str().unwrap(), out.to_str().unwrap()]);
    let file = File::options().read(true).write(true).open(&out).unwrap();
    Shadow { file, path: out }
}

/// Reads `img` with godwit and compares with qemu-img's conversion, then
/// runs a random workload and has qemu-img check and compare the result.
fn read_then_modify(img: &Path, seed: u64, cluster: u64, discard_zeroes: bool) {
    let dir = img.parent().unwrap().to_path_buf();
    let shadow = qemu_to_shadow(img, "qcow2", dir.join(format!("shadow-{seed}.raw")));
    let mut g = open(img, Some(Format::Qcow2), true);
    let size = g.virtual_size();
    assert_same(g.as_mut(), &shadow, 0, size);
    assert_map_matches(g.as_mut(), u32::MAX);
    drop(g);
    let mut g = open(img, None, false);
    let hot = [0, size / 2, size - 1];
    random_ops(g.as_mut(), &shadow, &mut Rng::new(seed), 120, cluster, &hot, discard_zeroes);
    assert_same(g.as_mut(), &shadow, 0, size);
    drop(g);
    assert_check_clean(img);
    assert_compare(img, "qcow2", &shadow.path, "raw");
}

#[test]
fn qemu_written_images() {
    require_qemu!();
    for (i, cs) in [512u64, 4096, 65536, 2 << 20].into_iter().enumerate() {
        let dir = tmpdir();
        let base = p(&dir, "base.qcow2");
        let ov = p(&dir, "ov.qcow2");
        let opt = format!("cluster_size={cs}");
        qemu_img_ok(&["create", "-q", "-f", "qcow2", "-o", &opt, base.to_str().unwrap(), "8M"]);
        qemu_io_ok(
            "qcow2",
            &base,
            &[
                "write -P 0xaa 0 1M",
                "write -P 0xbb 3M 64k",
                "write -z 5M 1M",
                "write -P 0x11 6M 1M",
                "write -z -u 6M 512k",
            ],
        );
        qemu_img_ok(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &opt,
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            ov.to_str().unwrap(),
            "10M",
        ]);
        qemu_io_ok(
            "qcow2",
            &ov,
            &[
                "write -P 0xcc 512k 4k",
                "write -z 3M 64k",
                "write -P 0xdd 7M 100k",
                "discard 7M 64k",
                "write -P 0xee 9M 1k",
            ],
        );
        read_then_modify(&ov, 100 + i as u64, cs, true);
        assert_check_clean(&base);
    }
}

#[test]
fn qemu_compressed_images() {
    require_qemu!();
    for (i, cs) in [4096u64, 65536, 2 << 20].into_iter().enumerate() {
        let dir = tmpdir();
        let src = p(&dir, "src.raw");
        let size = 6u64 << 20;
        let shadow = Shadow::new(src.clone(), size);
        let mut rng = Rng::new(200 + i as u64);
        let mut buf = vec![0u8; 256 << 10];
        for k in 0..(size / buf.len() as u64) {
            if k % 5 != 3 {
                rng.fill(&mut buf);
                shadow.write(&buf, k * buf.len() as u64);
            }
        }
        let comp = p(&dir, "comp.qcow2");
        let opt = format!("cluster_size={cs}");
        qemu_img_ok(&[
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            &opt,
            src.to_str().unwrap(),
            comp.to_str().unwrap(),
        ]);
        let (_, j) = check_json(&comp);
        assert!(j.u64("compressed-clusters").unwrap_or(0) > 0, "{j:?}");
        read_then_modify(&comp, 210 + i as u64, cs, true);
    }
}

#[test]
fn qemu_v2_images() {
    require_qemu!();
    let dir = tmpdir();
    let img = p(&dir, "v2.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10,cluster_size=4096",
        img.to_str().unwrap(),
        "8M",
    ]);
    qemu_io_ok("qcow2", &img, &["write -P 0x42 0 1M", "write -z 512k 64k", "write -P 0x43 4M 10k"]);
    read_then_modify(&img, 300, 4096, true);
}

#[test]
fn qemu_refcount_widths() {
    require_qemu!();
    for bits in [1u32, 2, 4, 8, 16, 32, 64] {
        let dir = tmpdir();
        let img = p(&dir, "rc.qcow2");
        let opt = format!("refcount_bits={bits},cluster_size=4096");
        qemu_img_ok(&["create", "-q", "-f", "qcow2", "-o", &opt, img.to_str().unwrap(), "4M"]);
        qemu_io_ok("qcow2", &img, &["write -P 0x42 0 300k", "write -z 1M 64k", "write -P 0x43 3M 10k"]);
        read_then_modify(&img, 400 + u64::from(bits), 4096, true);
    }
}

#[test]
fn dirty_lazy_refcount_image_is_repaired() {
    require_qemu!();
    let dir = tmpdir();
    let img = p(&dir, "lazy.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "lazy_refcounts=on,cluster_size=4096",
        img.to_str().unwrap(),
        "4M",
    ]);
    // abort leaves the image dirty with refcounts not written.
    let _ = qemu_io(&[
        "-c",
        "write -P 0x5a 0 256k",
        "-c",
        "write -P 0x5b 1M 8k",
        "-c",
        "abort",
        img.to_str().unwrap(),
    ]);
    let (code, _) = check_json(&img);
    assert_ne!(code, 0, "abort should have left refcount errors");
    let mut g = open(&img, None, true);
    let mut buf = vec![0u8; 256 << 10];
    g.read_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0x5a));
    drop(g);
    // Read-write open rebuilds the refcounts and clears the dirty bit.
    let mut g = open(&img, None, false);
    g.write_at(&[7u8; 4096], 2 << 20).unwrap();
    drop(g);
    assert_check_clean(&img);
    let info = qemu_img_ok(&["info", "--output=json", img.to_str().unwrap()]);
    assert!(info.contains("\"dirty-flag\": false"), "{info}");
    qemu_io_ok("qcow2", &img, &["read -P 0x5a 0 256k", "read -P 0x5b 1M 8k", "read -P 7 2M 4k"]);
}

fn patch(img: &Path, off: u64, bytes: &[u8]) {
    let f = File::options().write(true).open(img).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

#[test]
fn feature_bits_and_extensions() {
    require_qemu!();
    let dir = tmpdir();
    let img = p(&dir, "feat.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "1G"]);
    // Unknown incompatible bit: refused with QEMU's wording.
    patch(&img, 72, &(1u64 << 20).to_be_bytes());
    let err = crate::block::open_image(&img, None, true).unwrap_err().to_string();
    assert!(
        err.ends_with("Unsupported qcow2 feature(s): Unknown incompatible feature: 100000"),
        "{err}"
    );
    // Corrupt bit: read-only only.
    patch(&img, 72, &2u64.to_be_bytes());
    let err = crate::block::open_image(&img, None, false).unwrap_err().to_string();
    assert!(err.ends_with("qcow2: Image is corrupt; cannot be opened read/write"), "{err}");
    drop(open(&img, None, true));
    patch(&img, 72, &0u64.to_be_bytes());
    // Extended L2 and external data files are refused.
    patch(&img, 72, &(1u64 << 4).to_be_bytes());
    let err = crate::block::open_image(&img, None, true).unwrap_err().to_string();
    assert!(err.contains("Unsupported qcow2 feature(s)"), "{err}");
    patch(&img, 72, &0u64.to_be_bytes());

    // An unknown extension (before the end marker) survives our writes;
    // unknown autoclear bits are cleared on the first write.
    let mut c0 = vec![0u8; 0x210];
    File::open(&img).unwrap().read_exact_at(&mut c0, 0).unwrap();
    assert_eq!(&c0[0x1f8..0x200], &[0u8; 8], "end marker expected at 0x1f8");
    let mut ext = Vec::new();
    ext.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    ext.extend_from_slice(&8u32.to_be_bytes());
    ext.extend_from_slice(b"godwit!!");
    ext.extend_from_slice(&[0u8; 8]);
    patch(&img, 0x1f8, &ext);
    patch(&img, 88, &(1u64 << 5).to_be_bytes());
    let mut g = open(&img, None, false);
    g.write_at(&[1u8; 512], 0).unwrap();
    drop(g);
    let mut after = vec![0u8; 0x210];
    File::open(&img).unwrap().read_exact_at(&mut after, 0).unwrap();
    assert_eq!(&after[0x1f8..0x210], &ext[..]);
    assert_eq!(&after[88..96], &[0u8; 8]);
    assert_check_clean(&img);
}
