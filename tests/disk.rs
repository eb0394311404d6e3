//! Disks end to end: the probe writes and re-verifies blocks through godwit's virtio-blk,
//! and afterwards the image, checked from the host with qemu-img as the oracle, holds
//! exactly what the guest wrote.

mod common;

use common::disk::{verify_exact, writes};
use common::hmp::Hmp;
use common::{Guest, probe, tmpdir, vm_lock};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (scripts/setup.sh installs qemu-utils)")
}

fn run_probe(drive: &str, append: &str) -> Guest {
    let p = probe();
    let mut g = Guest::godwit(&[
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-drive",
        drive,
        "-kernel",
        p.to_str().unwrap(),
        "-append",
        append,
    ]);
    g.wait_for("PROBE EXIT", Duration::from_secs(60));
    assert_eq!(g.wait_exit(T).code(), Some(0), "{}", g.stderr());
    for bad in ["DISK MISMATCH", "bad=", "DISK ERROR", "DISK NONE"] {
        assert!(!g.seen.iter().any(|l| l.text.contains(bad)), "{bad}: {:#?}", g.seen);
    }
    assert!(
        g.seen.iter().any(|l| l.text.starts_with("DISKVERIFY") && l.text.ends_with(" ok")),
        "no verify pass"
    );
    g
}

fn raw_contents(img: &Path, fmt: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join("contents.raw");
    let o = qemu_img(&["convert", "-f", fmt, "-O", "raw", img.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

#[test]
fn raw_image_holds_what_the_guest_wrote() {
    let _l = vm_lock();
    let d = tmpdir("disk-raw");
    let img = d.join("d.img");
    assert!(
        qemu_img(&["create", "-q", "-f", "raw", img.to_str().unwrap(), "64M"])
            .status
            .success()
    );
    let g = run_probe(
        &format!("file={},format=raw,if=virtio", img.display()),
        "probe.disk=8 probe.diskrate=2048 probe.diskverify=0 probe.exit=150",
    );
    let w = writes(&g.seen);
    assert!(w > 100, "only {w} writes");
    verify_exact(&std::fs::read(&img).unwrap(), 8, w).unwrap();
    // A second boot on the same image finds every block where the first left it.
    let g = run_probe(
        &format!("file={},format=raw,if=virtio", img.display()),
        "probe.disk=8 probe.diskcheck=persist probe.diskrate=0 probe.diskverify=0 probe.exit=50",
    );
    assert!(g.seen.iter().any(|l| l.text == "DISKVERIFY 1 ok"));
}

#[test]
fn qcow2_overlay_with_flushes_passes_qemu_img_check() {
    let _l = vm_lock();
    let d = tmpdir("disk-qcow2");
    let (base, top) = (d.join("base.raw"), d.join("top.qcow2"));
    assert!(
        qemu_img(&["create", "-q", "-f", "raw", base.to_str().unwrap(), "64M"])
            .status
            .success()
    );
    let o = qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "backing_file=base.raw,backing_fmt=raw",
        top.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = run_probe(
        &format!("file={},if=virtio", top.display()),
        "probe.disk=8 probe.diskrate=1024 probe.diskflush=1 probe.diskverify=0 probe.exit=150",
    );
    assert!(
        g.seen
            .iter()
            .any(|l| l.text.starts_with("DISK END") && !l.text.ends_with("flushes=0")),
        "no flush reached the device"
    );
    let check = qemu_img(&["check", "--output=json", top.to_str().unwrap()]);
    assert!(check.status.success(), "qemu-img check: {}", String::from_utf8_lossy(&check.stdout));
    verify_exact(&raw_contents(&top, "qcow2", &d), 8, writes(&g.seen)).unwrap();
    assert!(std::fs::read(&base).unwrap().iter().all(|b| *b == 0), "the base image was written");
}

#[test]
fn snapshot_on_leaves_the_image_untouched_and_info_block() {
    let _l = vm_lock();
    let d = tmpdir("disk-snap");
    let img = d.join("d.qcow2");
    assert!(
        qemu_img(&["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "64M"])
            .status
            .success()
    );
    let before = std::fs::read(&img).unwrap();
    run_probe(
        &format!("file={},if=virtio,snapshot=on", img.display()),
        "probe.disk=8 probe.diskrate=2048 probe.diskverify=0 probe.exit=100",
    );
    assert_eq!(std::fs::read(&img).unwrap(), before, "snapshot=on wrote to the image");

    let sock = d.join("m.sock");
    let p = probe();
    let spec = format!("unix:{},server,nowait", sock.display());
    let drive = format!("file={},format=qcow2,if=virtio,id=vd0", img.display());
    let mut g = Guest::godwit(&[
        "-m",
        "128",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        &spec,
        "-drive",
        &drive,
        "-kernel",
        p.to_str().unwrap(),
    ]);
    let mut m = Hmp::unix(&sock);
    let info = m.cmd("info block");
    assert!(
        info.starts_with(&format!("vd0 (#block100): {} (qcow2)\n    Attached to:      ", img.display())),
        "{info}"
    );
    assert!(info.contains("\n    Cache mode:       writeback\n"), "{info}");
    assert!(m.cmd("info pci").contains("PCI device 1af4:1042"));
    m.quit();
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

#[test]
fn bad_disks_give_one_line_errors() {
    let _l = vm_lock();
    let d = tmpdir("disk-bad");
    let p = probe();
    let raw = d.join("r.img");
    assert!(
        qemu_img(&["create", "-q", "-f", "raw", raw.to_str().unwrap(), "16M"])
            .status
            .success()
    );
    let run = |drive: String| {
        let o = Command::new(common::godwit_bin())
            .args(["-m", "64", "-display", "none", "-drive", &drive, "-kernel", p.to_str().unwrap()])
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = run("file=/nonexistent/x.img,format=raw,if=virtio".into());
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim_end(),
        "godwit: -drive file=/nonexistent/x.img,format=raw,if=virtio: Could not open '/nonexistent/x.img': No such file or directory"
    );
    let (code, err) = run(format!("file={},format=qcow2,if=virtio", raw.display()));
    assert_eq!(code, Some(1));
    assert!(err.contains("Image is not in qcow2 format") && err.lines().count() == 1, "{err}");
    // The image is in use by another writer: refused, whoever holds it (godwit or QEMU).
    let spec = format!("file={},format=raw,if=virtio", raw.display());
    let mut first = Guest::godwit(&[
        "-m",
        "64",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-drive",
        &spec,
        "-kernel",
        p.to_str().unwrap(),
    ]);
    first.wait_for("PROBE READY", T);
    let (code, err) = run(spec.clone());
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Failed to get \"write\" lock") && err.contains("Is another process using the image") && err.lines().count() == 1,
        "{err}"
    );
    // QEMU's own tools honour godwit's lock (qemu-img info needs none: it reads metadata).
    let q = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write 0 512", raw.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!q.status.success(), "qemu-io wrote to an image godwit holds");
    assert!(
        String::from_utf8_lossy(&q.stderr).contains("Failed to get \"write\" lock"),
        "{}",
        String::from_utf8_lossy(&q.stderr)
    );
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    let (code, err) = run(format!("file={},format=raw,if=none", raw.display()));
    assert_eq!(code, Some(1), "{err}");
}
