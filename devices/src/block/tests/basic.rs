//! Differential tests: random workloads on godwit images against a shadow
//! raw file, then qemu-img check/compare/map as oracle when available.

use super::*;
use crate::block::qcow2::{CreateOptions, Qcow2};
use crate::block::{Format, open_image};

fn open_rw(path: &Path) -> Box<dyn BlockBackend> {
    open(path, None, false)
}

/// Creates a qcow2 image, runs a random workload with a reopen in the
/// middle, and checks the result against the shadow and qemu-img.
fn differential(cluster_bits: u32, size: u64, hot: &[u64], seed: u64) {
    let dir = tmpdir();
    let img_path = p(&dir, "img.qcow2");
    let shadow = Shadow::new(p(&dir, "shadow.raw"), size);
    Qcow2::create(&img_path, size, cluster_bits, None).unwrap();
    let cs = 1u64 << cluster_bits;
    let mut rng = Rng::new(seed);
    let mut touched = Vec::new();
    for round in 0..2 {
        let mut img = open_rw(&img_path);
        assert_eq!(img.virtual_size(), size);
        touched.extend(random_ops(img.as_mut(), &shadow, &mut rng, 120, cs, hot, true));
        if round == 1 {
            let q = img.as_qcow2().unwrap();
            let report = q.check().unwrap();
            assert!(report.is_clean(), "{report:?}");
        }
    }
    let mut img = open(&img_path, None, true);
    for &(off, len) in &touched {
        assert_same(img.as_mut(), &shadow, off, len);
    }
    if size <= 64 << 20 {
        assert_same(img.as_mut(), &shadow, 0, size);
    }
    if qemu_available() {
        drop(img);
        assert_check_clean(&img_path);
        assert_compare(&img_path, "qcow2", &shadow.path, "raw");
        let mut img = open(&img_path, None, true);
        assert_map_matches(img.as_mut(), u32::MAX);
    }
}

#[test]
fn differential_512b_clusters() {
    differential(9, 4 << 20, &[0, 1 << 20, (4 << 20) - 512], 1);
}

#[test]
fn differential_4k_clusters() {
    differential(12, 16 << 20, &[0, 8 << 20, 16 << 20], 2);
}

#[test]
fn differential_64k_clusters() {
    differential(16, 64 << 20, &[0, 32 << 20, 64 << 20], 3);
}

#[test]
fn differential_2m_clusters() {
    differential(21, 64 << 20, &[0, 2 << 20, 63 << 20], 4);
}

#[test]
fn differential_odd_size() {
    // Not a cluster multiple: the last cluster is partial.
    differential(16, 100_000_256, &[0, 100_000_256 - 4096], 5);
}

#[test]
fn differential_over_4g_virtual() {
    let g = 1u64 << 30;
    differential(16, 6 * g, &[0, 4 * g - 512, 4 * g, 5 * g, 6 * g - 65536], 6);
}

#[test]
fn differential_large_l1_small_clusters() {
    // 512 B clusters on 2 GiB: the L1 has 65536 entries.
    let g = 1u64 << 30;
    differential(9, 2 * g, &[0, g, 2 * g - 512], 7);
}

#[test]
fn refcount_table_growth() {
    // 512 B clusters: 20 MiB of data needs many refcount blocks and a
    // bigger refcount table (moved twice or more).
    let dir = tmpdir();
    let path = p(&dir, "grow.qcow2");
    let size = 24u64 << 20;
    Qcow2::create(&path, size, 9, None).unwrap();
    let shadow = Shadow::new(p(&dir, "grow.raw"), size);
    let mut img = open_rw(&path);
    let mut rng = Rng::new(9);
    let mut buf = vec![0u8; 256 << 10];
    for i in 0..80u64 {
        rng.fill(&mut buf);
        img.write_at(&buf, i * (256 << 10) + (i % 3) * 512).unwrap();
        shadow.write(&buf, i * (256 << 10) + (i % 3) * 512);
    }
    let table_before = img.as_qcow2().unwrap().header().refcount_table_offset;
    img.flush().unwrap();
    assert_same(img.as_mut(), &shadow, 0, size);
    let report = img.as_qcow2().unwrap().check().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_ne!(img.as_qcow2().unwrap().rc_table_offset(), table_before);
    drop(img);
    if qemu_available() {
        assert_check_clean(&path);
        assert_compare(&path, "qcow2", &shadow.path, "raw");
    }
}

#[test]
fn refcount_orders_write() {
    for order in [0u32, 1, 3, 5, 6] {
        let dir = tmpdir();
        let path = p(&dir, "rc.qcow2");
        let size = 4u64 << 20;
        let mut opts = CreateOptions::new(size);
        opts.cluster_bits = 12;
        opts.refcount_order = order;
        Qcow2::create_with(&path, &opts).unwrap();
        let shadow = Shadow::new(p(&dir, "rc.raw"), size);
        let mut img = open_rw(&path);
        random_ops(img.as_mut(), &shadow, &mut Rng::new(order.into()), 80, 4096, &[0, 2 << 20], true);
        assert_same(img.as_mut(), &shadow, 0, size);
        drop(img);
        if qemu_available() {
            assert_check_clean(&path);
            assert_compare(&path, "qcow2", &shadow.path, "raw");
        }
    }
}

#[test]
fn v2_image_write() {
    let dir = tmpdir();
    let path = p(&dir, "v2.qcow2");
    let size = 8u64 << 20;
    let mut opts = CreateOptions::new(size);
    opts.version = 2;
    opts.cluster_bits = 12;
    Qcow2::create_with(&path, &opts).unwrap();
    let shadow = Shadow::new(p(&dir, "v2.raw"), size);
    let mut img = open_rw(&path);
    random_ops(img.as_mut(), &shadow, &mut Rng::new(22), 150, 4096, &[0, 4 << 20], true);
    assert_same(img.as_mut(), &shadow, 0, size);
    drop(img);
    if qemu_available() {
        assert_check_clean(&path);
        assert_compare(&path, "qcow2", &shadow.path, "raw");
        let info = qemu_img_ok(&["info", "--output=json", path.to_str().unwrap()]);
        assert!(info.contains("\"compat\": \"0.10\""), "{info}");
    }
}

/// raw base <- qcow2 (4K) <- qcow2 (64K, v2 or v3) <- qcow2 top (512 B):
/// each layer written before the next is created; backing files smaller
/// than their overlays; relative backing names.
fn chain(top_version: u32) {
    let dir = tmpdir();
    let sizes = [3u64 << 20, 5 << 20, 6 << 20, 8 << 20];
    let names = ["base.raw", "l1.qcow2", "l2.qcow2", "top.qcow2"];
    let shadow = Shadow::new(p(&dir, "shadow.raw"), sizes[3]);
    std::fs::File::create(p(&dir, names[0])).unwrap().set_len(sizes[0]).unwrap();
    let mut rng = Rng::new(40 + u64::from(top_version));
    for depth in 0..4 {
        if depth > 0 {
            let mut opts = CreateOptions::new(sizes[depth]);
            opts.cluster_bits = [0, 12, 16, 9][depth];
            opts.version = if depth == 3 { top_version } else { 3 };
            let fmt = if depth == 1 { Format::Raw } else { Format::Qcow2 };
            opts.backing = Some((PathBuf::from(names[depth - 1]), fmt));
            Qcow2::create_with(&p(&dir, names[depth]), &opts).unwrap();
        }
        let mut img = open_rw(&p(&dir, names[depth]));
        let cs = if depth == 0 { 4096 } else { 1 << [0, 12, 16, 9][depth] };
        let hot = [0, 1 << 20, sizes[depth] - 4096, sizes[depth.saturating_sub(1)]];
        let zero_ok = depth == 0 || top_version == 3 || depth < 3;
        random_ops(img.as_mut(), &shadow, &mut rng, 100, cs, &hot, depth > 0 && zero_ok);
        assert_same(img.as_mut(), &shadow, 0, sizes[depth]);
    }
    let top = p(&dir, names[3]);
    let mut img = open(&top, None, true);
    assert_same(img.as_mut(), &shadow, 0, sizes[3]);
    if qemu_available() {
        assert_map_matches(img.as_mut(), 3);
        drop(img);
        for n in &names[1..] {
            assert_check_clean(&p(&dir, n));
        }
        assert_compare(&top, "qcow2", &shadow.path, "raw");
    }
}

#[test]
fn backing_chain_depth_3_v3() {
    chain(3);
}

#[test]
fn backing_chain_depth_3_v2_top() {
    chain(2);
}

#[test]
fn raw_backend() {
    let dir = tmpdir();
    let path = p(&dir, "disk.raw");
    let size = 8u64 << 20;
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let shadow = Shadow::new(p(&dir, "shadow.raw"), size);
    let mut img = open_rw(&path);
    assert_eq!(img.format(), Format::Raw);
    random_ops(img.as_mut(), &shadow, &mut Rng::new(77), 150, 4096, &[0, 4 << 20], false);
    assert_same(img.as_mut(), &shadow, 0, size);
    // A punched range shows up as a hole.
    img.write_zeroes(1 << 20, 1 << 20, true).unwrap();
    let st = img.block_status(1 << 20, 1 << 20).unwrap();
    assert!(st.iter().all(|e| e.zero && !e.data && e.present), "{st:?}");
    assert!(img.write_at(&[0], size).is_err());
}

#[test]
fn create_rejects_bad_parameters() {
    let dir = tmpdir();
    let path = p(&dir, "bad.qcow2");
    let err = Qcow2::create(&path, 1 << 20, 22, None).unwrap_err().to_string();
    assert!(err.contains("Cluster size must be a power of two"), "{err}");
    let err = Qcow2::create(&path, 129 << 30, 9, None).unwrap_err().to_string();
    assert!(err.contains("too large"), "{err}");
    let err = Qcow2::create(&path, 1 << 20, 16, Some((Path::new("nope.qcow2"), Format::Qcow2)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("No such file or directory"), "{err}");
}

#[test]
fn open_errors_are_qemu_like() {
    let dir = tmpdir();
    let missing = p(&dir, "missing.qcow2");
    let err = open_image(&missing, None, false).unwrap_err().to_string();
    assert_eq!(err, format!("Could not open '{}': No such file or directory", missing.display()));
    let raw = p(&dir, "x.raw");
    std::fs::write(&raw, vec![0u8; 4096]).unwrap();
    let err = open_image(&raw, Some(Format::Qcow2), false).unwrap_err().to_string();
    assert_eq!(err, format!("Could not open '{}': Image is not in qcow2 format", raw.display()));
    let top = p(&dir, "top.qcow2");
    Qcow2::create(&top, 1 << 20, 16, Some((Path::new("x.raw"), Format::Raw))).unwrap();
    std::fs::remove_file(&raw).unwrap();
    let err = open_image(&top, None, false).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "Could not open '{}': Could not open backing file: Could not open '",
            top.display()
        )),
        "{err}"
    );
    assert!(err.ends_with("x.raw': No such file or directory"), "{err}");
}

#[test]
fn backing_format_is_probed_when_missing() {
    use std::os::unix::fs::FileExt;
    let dir = tmpdir();
    let base_raw = p(&dir, "base.raw");
    std::fs::write(&base_raw, vec![0x77u8; 1 << 20]).unwrap();
    let mid = p(&dir, "mid.qcow2");
    Qcow2::create(&mid, 2 << 20, 12, Some((Path::new("base.raw"), Format::Raw))).unwrap();
    let top = p(&dir, "top.qcow2");
    Qcow2::create(&top, 2 << 20, 16, Some((Path::new("mid.qcow2"), Format::Qcow2))).unwrap();
    // Rename the backing-format extensions to an unknown type: the format
    // is then probed (qcow2 magic, else raw).
    for img in [&mid, &top] {
        let f = File::options().write(true).open(img).unwrap();
        f.write_all_at(&0x1234u32.to_be_bytes(), 112).unwrap();
    }
    let mut t = open(&top, None, false);
    let q = t.as_qcow2().unwrap();
    assert_eq!(q.header().backing_format, None);
    assert_eq!(q.backing().unwrap().format(), Format::Qcow2);
    let mut buf = vec![0u8; 4096];
    t.read_at(&mut buf, (1 << 20) - 4096).unwrap();
    assert!(buf.iter().all(|&b| b == 0x77));
    t.read_at(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    t.write_at(&[1u8; 100], (1 << 20) - 50).unwrap();
    drop(t);
    if qemu_available() {
        assert_check_clean(&top);
    }
}

/// A partial write into a cluster the base holds: only the bytes around the
/// write are copied up, and not at all when they read as zeroes there (the
/// base's data under the write is replaced anyway).
#[test]
fn copy_on_write_copies_only_what_the_write_leaves() {
    let dir = tmpdir();
    let size = 1u64 << 20;
    let base = p(&dir, "base.raw");
    let f = File::options().read(true).write(true).create_new(true).open(&base).unwrap();
    f.set_len(size).unwrap();
    // Cluster 0: data only where the overlay will write. Cluster 1: data
    // before the write. Cluster 2: data after it.
    f.write_all_at(&[0x11; 4096], 0).unwrap();
    f.write_all_at(&[0x22; 512], 65536).unwrap();
    f.write_all_at(&[0x33; 512], 2 * 65536 + 65024).unwrap();
    let top = p(&dir, "top.qcow2");
    Qcow2::create(&top, size, 16, Some((Path::new("base.raw"), Format::Raw))).unwrap();
    let shadow = Shadow::new(p(&dir, "shadow.raw"), size);
    let mut b = vec![0u8; size as usize];
    f.read_exact_at(&mut b, 0).unwrap();
    shadow.file.write_all_at(&b, 0).unwrap();
    let mut img = open_rw(&top);
    for c in 0..3u64 {
        let off = c * 65536 + 4096 * (c != 0) as u64;
        img.write_at(&[0x5a; 4096], off).unwrap();
        shadow.file.write_all_at(&[0x5a; 4096], off).unwrap();
    }
    assert_same(img.as_mut(), &shadow, 0, size);
    img.flush().unwrap();
    // Cluster 0 is data only where written (a hole after it), clusters 1 and
    // 2 were copied whole.
    let host = |img: &mut Box<dyn BlockBackend>, c: u64| img.block_status(c * 65536, 65536).unwrap()[0].offset.unwrap();
    let file = File::open(&top).unwrap();
    let data_from = |off: u64| {
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&file), off as libc::off_t, libc::SEEK_DATA) as u64 }
    };
    let h0 = host(&mut img, 0);
    assert!(data_from(h0 + 4096) >= h0 + 65536, "cluster 0 copied up zeroes");
    for c in 1..3 {
        let h = host(&mut img, c);
        assert!(
            data_from(h) == h && data_from(h + 65024) == h + 65024,
            "cluster {c} not copied whole"
        );
    }
    drop(img);
    let mut img = open(&top, None, true);
    assert_same(img.as_mut(), &shadow, 0, size);
    if qemu_available() {
        drop(img);
        assert_check_clean(&top);
        assert_compare(&top, "qcow2", &shadow.path, "raw");
    }
}

/// Starting the writeback early changes nothing a reader sees, in either format, and the
/// image stays clean.
#[test]
fn start_writeback_is_only_a_hint() {
    let dir = tmpdir();
    let q = p(&dir, "wb.qcow2");
    Qcow2::create(&q, 8 << 20, 16, None).unwrap();
    let r = p(&dir, "wb.raw");
    std::fs::File::create(&r).unwrap().set_len(8 << 20).unwrap();
    for (path, fmt) in [(&q, Format::Qcow2), (&r, Format::Raw)] {
        let data: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        {
            let mut img = open(path, Some(fmt), false);
            img.write_at(&data, 3 << 20).unwrap();
            img.start_writeback().unwrap();
            let mut back = vec![0u8; data.len()];
            img.read_at(&mut back, 3 << 20).unwrap();
            assert_eq!(back, data);
            img.flush().unwrap();
        }
        let mut img = open(path, Some(fmt), true);
        img.start_writeback().unwrap();
        let mut back = vec![0u8; data.len()];
        img.read_at(&mut back, 3 << 20).unwrap();
        assert_eq!(back, data);
    }
    if qemu_available() {
        assert_eq!(check_json(&q).0, 0);
    }
}
