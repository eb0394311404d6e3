//! Internal snapshots: godwit's against qemu-img's view, and the reverse.

use super::*;
use crate::block::qcow2::{CreateOptions, Qcow2};

fn qcow(img: &mut Box<dyn BlockBackend>) -> &mut Qcow2 {
    img.as_qcow2().unwrap()
}

/// Full contents of an image as a vector.
fn contents(img: &mut dyn BlockBackend) -> Vec<u8> {
    let mut v = vec![0u8; img.virtual_size() as usize];
    img.read_at(&mut v, 0).unwrap();
    v
}

/// A snapshot's disk contents according to qemu-img.
fn qemu_snapshot_contents(img: &Path, name: &str, out: &Path) -> Vec<u8> {
    let opt = format!("snapshot.name={name}");
    qemu_img_ok(&["convert", "-l", &opt, "-O", "raw", img.to_str().unwrap(), out.to_str().unwrap()]);
    std::fs::read(out).unwrap()
}

fn qemu_snapshot_list(img: &Path) -> Vec<json::Json> {
    let out = qemu_img_ok(&["info", "--output=json", "-U", img.to_str().unwrap()]);
    let j = json::parse(&out).unwrap();
    j.get("snapshots").map(|s| s.array().to_vec()).unwrap_or_default()
}

#[test]
fn snapshot_lifecycle() {
    let dir = tmpdir();
    let path = p(&dir, "snap.qcow2");
    let size = 8u64 << 20;
    let mut opts = CreateOptions::new(size);
    opts.cluster_bits = 12;
    Qcow2::create_with(&path, &opts).unwrap();
    let shadow = Shadow::new(p(&dir, "shadow.raw"), size);
    let mut rng = Rng::new(500);
    let mut img = open(&path, None, false);
    random_ops(img.as_mut(), &shadow, &mut rng, 80, 4096, &[0, 4 << 20], true);
    let at_s1 = contents(img.as_mut());
    let mut vmstate = vec![0u8; 300_000];
    rng.fill(&mut vmstate);
    let q = qcow(&mut img);
    q.write_vmstate(&vmstate, 0).unwrap();
    let s1 = q.snapshot_create("s1", vmstate.len() as u64, 1_234_567_890, None).unwrap();
    assert_eq!(s1.id, "1");
    // The state left the active image.
    let mut back = vec![1u8; 4096];
    q.read_vmstate(&mut back, 0).unwrap();
    assert!(back.iter().all(|&b| b == 0));
    random_ops(img.as_mut(), &shadow, &mut rng, 80, 4096, &[0, 4 << 20], true);
    let at_s2 = contents(img.as_mut());
    let s2 = qcow(&mut img).snapshot_create("s2", 0, 5, Some(42)).unwrap();
    assert_eq!(s2.id, "2");
    random_ops(img.as_mut(), &shadow, &mut rng, 80, 4096, &[0, 4 << 20], true);
    let report = qcow(&mut img).check().unwrap();
    assert!(report.is_clean(), "{report:?}");
    drop(img);

    if qemu_available() {
        assert_check_clean(&path);
        let list = qemu_snapshot_list(&path);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].str("id"), Some("1"));
        assert_eq!(list[0].str("name"), Some("s1"));
        assert_eq!(list[0].u64("vm-state-size"), Some(300_000));
        assert_eq!(list[0].u64("vm-clock-sec"), Some(1));
        assert_eq!(list[0].u64("vm-clock-nsec"), Some(234_567_890));
        assert_eq!(list[0].u64("date-sec"), Some(u64::from(s1.date_sec)));
        assert!(list[0].get("icount").is_none());
        assert_eq!(list[1].u64("icount"), Some(42));
        assert_eq!(qemu_snapshot_contents(&path, "s1", &p(&dir, "s1.raw")), at_s1);
        assert_eq!(qemu_snapshot_contents(&path, "s2", &p(&dir, "s2.raw")), at_s2);
        let text = qemu_img_ok(&["snapshot", "-l", path.to_str().unwrap()]);
        assert!(text.contains("s1") && text.contains("s2"), "{text}");
    }

    let mut img = open(&path, None, false);
    let list = qcow(&mut img).snapshots();
    assert_eq!(list[0], s1);
    assert_eq!(list[1], s2);
    qcow(&mut img).snapshot_revert("s1").unwrap();
    assert_eq!(contents(img.as_mut()), at_s1);
    let mut state = vec![0u8; vmstate.len()];
    qcow(&mut img).read_vmstate(&mut state, 0).unwrap();
    assert_eq!(state, vmstate);
    // Writing after a revert must not disturb the snapshots.
    img.write_at(&[9u8; 10000], 4096 * 3 + 7).unwrap();
    qcow(&mut img).snapshot_revert("2").unwrap();
    assert_eq!(contents(img.as_mut()), at_s2);
    qcow(&mut img).snapshot_delete("s1").unwrap();
    assert_eq!(contents(img.as_mut()), at_s2);
    let report = qcow(&mut img).check().unwrap();
    assert!(report.is_clean(), "{report:?}");
    drop(img);
    if qemu_available() {
        assert_check_clean(&path);
        assert_eq!(qemu_snapshot_list(&path).len(), 1);
        // qemu-img can revert to and delete what godwit wrote.
        qemu_img_ok(&["snapshot", "-a", "s2", path.to_str().unwrap()]);
        assert_check_clean(&path);
        qemu_img_ok(&["snapshot", "-d", "s2", path.to_str().unwrap()]);
        assert_check_clean(&path);
        let mut img = open(&path, None, true);
        assert_eq!(contents(img.as_mut()), at_s2);
    }
}

#[test]
fn qemu_made_snapshots() {
    require_qemu!();
    let dir = tmpdir();
    let path = p(&dir, "q.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        path.to_str().unwrap(),
        "4M",
    ]);
    qemu_io_ok("qcow2", &path, &["write -P 1 0 1M"]);
    qemu_img_ok(&["snapshot", "-c", "a", path.to_str().unwrap()]);
    qemu_io_ok("qcow2", &path, &["write -P 2 512k 1M", "write -z 3M 64k"]);
    qemu_img_ok(&["snapshot", "-c", "b", path.to_str().unwrap()]);
    qemu_io_ok("qcow2", &path, &["write -P 3 0 4k"]);
    let a = qemu_snapshot_contents(&path, "a", &p(&dir, "a.raw"));
    let b = qemu_snapshot_contents(&path, "b", &p(&dir, "b.raw"));
    let mut img = open(&path, None, false);
    let names: Vec<String> = qcow(&mut img).snapshots().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);
    qcow(&mut img).snapshot_revert("a").unwrap();
    assert_eq!(contents(img.as_mut()), a);
    img.write_at(&[7u8; 8192], 100).unwrap();
    qcow(&mut img).snapshot_delete("a").unwrap();
    drop(img);
    assert_check_clean(&path);
    assert_eq!(qemu_snapshot_contents(&path, "b", &p(&dir, "b2.raw")), b);
    let mut img = open(&path, None, false);
    qcow(&mut img).snapshot_revert("b").unwrap();
    qcow(&mut img).snapshot_delete("b").unwrap();
    assert_eq!(contents(img.as_mut()), b);
    drop(img);
    assert_check_clean(&path);
}

#[test]
fn refcount_overflow_is_refused_without_leaks() {
    for (bits, ok) in [(1u32, 0usize), (2, 2)] {
        let dir = tmpdir();
        let path = p(&dir, "ovf.qcow2");
        let mut opts = CreateOptions::new(1 << 20);
        opts.cluster_bits = 12;
        opts.refcount_order = bits.trailing_zeros();
        Qcow2::create_with(&path, &opts).unwrap();
        let mut img = open(&path, None, false);
        img.write_at(&[5u8; 65536], 0).unwrap();
        for i in 0..ok {
            qcow(&mut img).snapshot_create(&format!("s{i}"), 0, 0, None).unwrap();
        }
        let err = qcow(&mut img).snapshot_create("too-many", 0, 0, None).unwrap_err();
        assert!(err.to_string().contains("overflow"), "{err}");
        let report = qcow(&mut img).check().unwrap();
        assert!(report.is_clean(), "{report:?}");
        drop(img);
        if qemu_available() {
            assert_check_clean(&path);
        }
    }
}

#[test]
fn many_snapshots_with_random_ops() {
    let dir = tmpdir();
    let path = p(&dir, "many.qcow2");
    let size = 2u64 << 20;
    let mut opts = CreateOptions::new(size);
    opts.cluster_bits = 9;
    Qcow2::create_with(&path, &opts).unwrap();
    let shadow = Shadow::new(p(&dir, "shadow.raw"), size);
    let mut rng = Rng::new(600);
    let mut img = open(&path, None, false);
    let mut saved: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..100 {
        random_ops(img.as_mut(), &shadow, &mut rng, 4, 512, &[0, 1 << 20], true);
        match rng.below(10) {
            0..=5 => {
                let name = format!("snap{round}");
                qcow(&mut img).snapshot_create(&name, 0, round, None).unwrap();
                saved.push((name, shadow.read(size as usize, 0)));
            }
            6..=7 if !saved.is_empty() => {
                let i = rng.below(saved.len() as u64) as usize;
                let (name, data) = saved.remove(i);
                qcow(&mut img).snapshot_delete(&name).unwrap();
                drop(data);
            }
            8 if !saved.is_empty() => {
                let i = rng.below(saved.len() as u64) as usize;
                qcow(&mut img).snapshot_revert(&saved[i].0).unwrap();
                shadow.write(&saved[i].1, 0);
            }
            _ => {}
        }
        if round % 25 == 0 {
            let report = qcow(&mut img).check().unwrap();
            assert!(report.is_clean(), "round {round}: {report:?}");
        }
    }
    assert_same(img.as_mut(), &shadow, 0, size);
    drop(img);
    if qemu_available() {
        assert_check_clean(&path);
        assert_eq!(qemu_snapshot_list(&path).len(), saved.len());
        for (name, data) in saved.iter().rev().take(5) {
            assert_eq!(&qemu_snapshot_contents(&path, name, &p(&dir, "x.raw")), data, "{name}");
        }
    }
}

/// Runs a paused QEMU on `img` with monitor `commands`; returns its output.
fn qemu_system(img: &Path, extra: &[&str], commands: &str) -> Option<String> {
    use std::io::Write;
    use std::process::Stdio;
    let drive = format!("file={},if=virtio", img.display());
    let mut args = vec!["-M", "pc", "-m", "32", "-nodefaults", "-display", "none", "-S"];
    args.extend_from_slice(&["-drive", &drive, "-monitor", "stdio"]);
    args.extend_from_slice(extra);
    let mut child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    stdin.write_all(commands.as_bytes()).ok()?;
    stdin.write_all(b"quit\n").ok()?;
    drop(stdin);
    let out = child.wait_with_output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn vm_state_interoperates_with_qemu_savevm_loadvm() {
    require_qemu!();
    let have_system = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_system {
        eprintln!("skipping: qemu-system-x86_64 not installed");
        return;
    }
    let dir = tmpdir();
    let theirs = p(&dir, "theirs.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", theirs.to_str().unwrap(), "64M"]);
    let out = qemu_system(&theirs, &[], "savevm snapA\n").unwrap();
    assert!(!out.contains("Error"), "{out}");
    assert_check_clean(&theirs);

    // godwit reads QEMU's state through QEMU's layout.
    let mut img = open(&theirs, None, false);
    let q = qcow(&mut img);
    let info = q.snapshot_revert("snapA").unwrap();
    assert!(info.vm_state_size > 4096, "{info:?}");
    let mut state = vec![0u8; info.vm_state_size as usize];
    q.read_vmstate(&mut state, 0).unwrap();
    assert_eq!(&state[..4], b"QEVM");
    drop(img);
    assert_check_clean(&theirs);

    // And QEMU loads a snapshot godwit built from those bytes.
    let ours = p(&dir, "ours.qcow2");
    Qcow2::create(&ours, 64 << 20, 16, None).unwrap();
    let mut img = open(&ours, None, false);
    let q = qcow(&mut img);
    q.write_vmstate(&state, 0).unwrap();
    q.snapshot_create("mine", state.len() as u64, 0, None).unwrap();
    drop(img);
    assert_check_clean(&ours);
    let out = qemu_system(&ours, &["-loadvm", "mine"], "info status\n").unwrap();
    assert!(out.contains("paused (prelaunch)") || out.contains("VM status: paused"), "{out}");
    assert!(!out.to_lowercase().contains("error"), "{out}");
    // QEMU really parsed the bytes: with another RAM size it refuses them.
    let out = qemu_system(&ours, &["-m", "64", "-loadvm", "mine"], "info status\n").unwrap();
    assert!(out.to_lowercase().contains("error"), "{out}");
}

/// Reading a snapshot's VM state borrows the snapshot's L1 for the lookup; an L2 table
/// written back meanwhile must not take the borrowed L1 with it to the active L1's place.
#[test]
fn reading_snapshot_vmstate_keeps_the_active_l1() {
    let dir = tmpdir();
    let path = p(&dir, "l1.qcow2");
    let mut o = CreateOptions::new(1 << 20);
    o.cluster_bits = 9;
    Qcow2::create_with(&path, &o).unwrap();
    // The smallest L2 cache (4 tables), so reads evict dirty tables.
    let opts = crate::block::ImageOptions {
        l2_cache_bytes: 0,
        ..Default::default()
    };
    let mut img = crate::block::open_image_with(&path, &opts).unwrap();
    for k in 0..9u64 {
        img.write_at(&[1u8; 512], k << 15).unwrap();
    }
    qcow(&mut img).write_vmstate(&[7u8; 512], 0).unwrap();
    qcow(&mut img).snapshot_create("s", 512, 0, None).unwrap();
    // Copies the shared L2 table of the first 32 KiB: a dirty table and a dirty L1 entry.
    img.write_at(&[2u8; 512], 0).unwrap();
    let mut b = [0u8; 512];
    for k in 5..8u64 {
        img.read_at(&mut b, k << 15).unwrap();
    }
    qcow(&mut img).read_snapshot_vmstate("s", &mut b, 0).unwrap();
    assert_eq!(b, [7u8; 512]);
    drop(img);
    let mut img = open(&path, None, false);
    img.read_at(&mut b, 0).unwrap();
    assert_eq!(b, [2u8; 512], "the active L1 took the snapshot's table");
    drop(img);
    qemu_img_ok(&["check", path.to_str().unwrap()]);
}
