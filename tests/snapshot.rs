//! savevm / loadvm / delvm / info snapshots / -loadvm on qcow2 images, with qemu-img as the
//! oracle for the images, and the probe guest proving state, memory and disk come back.

mod common;

use common::hmp::Hmp;
use common::migrate::{Node, node};
use common::{heartbeats, tmpdir, vm_lock};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const APPEND: &str = "probe.ws=32 probe.rate=10 probe.disk=8 probe.diskrate=512 probe.diskverify=2048";

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img").args(args).output().expect("qemu-img")
}

/// `qemu-img check` finds nothing wrong (-U: godwit may still hold the image; it flushes
/// its metadata at the end of every snapshot command).
fn check_clean(img: &Path) {
    let o = qemu_img(&["check", "-U", img.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "qemu-img check: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Snapshot names and VM state sizes as qemu-img sees them.
fn qemu_img_snapshots(img: &Path) -> Vec<(String, String)> {
    let o = qemu_img(&["snapshot", "-l", "-U", img.to_str().unwrap()]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 4).then(|| (w[1].to_string(), format!("{} {}", w[2], w[3])))
        })
        .collect()
}

/// Same from `info snapshots`.
fn monitor_snapshots(m: &mut Hmp) -> Vec<(String, String)> {
    m.cmd("info snapshots")
        .lines()
        .skip(2)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 4 && w[0] == "--").then(|| (w[1].to_string(), format!("{} {}", w[2], w[3])))
        })
        .collect()
}

fn image(dir: &Path) -> std::path::PathBuf {
    let img = dir.join("vm.qcow2");
    assert!(
        qemu_img(&["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "256M"])
            .status
            .success()
    );
    img
}

fn start(dir: &Path, name: &str, img: &Path, extra: &[&str]) -> Node {
    let drive = format!("file={},if=virtio", img.display());
    let mut args = vec!["-drive", drive.as_str()];
    args.extend_from_slice(extra);
    node(dir, name, "512", "2", APPEND, &args)
}

/// Stops the guest and returns its last heartbeat number.
fn stop_at(n: &mut Node) -> u64 {
    n.mon.cmd("stop");
    n.g.collect_for(Duration::from_millis(300));
    *heartbeats(&n.g.seen).last().expect("heartbeats")
}

/// After `cont`, the first heartbeat follows `at` (a line cut by the stop may be lost).
///
/// A stop can cut the guest's output mid-line, and so can the moment the snapshot was
/// saved. The restored guest then prints the rest of its line right after the cut one
/// (`HB 1024` + `619`), exactly as it would on QEMU. Such a joined line is accepted only
/// when it ends with a piece of the expected line and the next heartbeat is the one after.
fn resumes_after(n: &mut Node, at: u64) {
    let before = n.g.seen.len();
    n.mon.cmd("cont");
    n.g.wait_for("HB", T);
    n.g.collect_for(Duration::from_millis(300));
    let lines = &n.g.seen[before..];
    let mut hb = heartbeats(lines);
    let expected = format!("HB {}", at + 1);
    let joined = lines
        .iter()
        .find(|l| l.text.starts_with("HB "))
        .is_some_and(|l| (1..expected.len()).any(|k| l.text.ends_with(&expected[expected.len() - k..])));
    if hb.len() > 1 && hb[0] != at + 1 && hb[0] != at + 2 && hb[1] == at + 2 && joined {
        hb.remove(0);
    }
    assert!(
        hb[0] == at + 1 || hb[0] == at + 2,
        "resumed at HB {} instead of after HB {at}: {:?}",
        hb[0],
        lines.iter().take(3).map(|l| &l.text).collect::<Vec<_>>()
    );
    assert!(hb.windows(2).all(|w| w[1] == w[0] + 1), "{hb:?}");
}

fn no_errors(n: &Node) {
    for bad in ["MISMATCH", "bad=", "DISK ERROR", "FAULT", "PROBE READY"] {
        let count = n.g.seen.iter().filter(|l| l.text.contains(bad)).count();
        assert!(
            count == 0 || (bad == "PROBE READY" && count == 1),
            "{bad} seen: {:#?}",
            n.g.seen.iter().filter(|l| l.text.contains(bad)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn savevm_loadvm_delvm_and_loadvm_at_start() {
    let _l = vm_lock();
    let dir = tmpdir("snap");
    let img = image(&dir);
    let mut n = start(&dir, "a", &img, &[]);
    n.g.wait_for("DISKVERIFY 1 ok", T);
    assert_eq!(n.mon.cmd("info snapshots"), "There is no snapshot available.\n");

    // Three snapshots at three moments.
    let mut saved = Vec::new();
    for tag in ["s1", "s2", "s3"] {
        n.g.wait_for("VERIFY", T);
        let at = stop_at(&mut n);
        assert_eq!(n.mon.cmd_timeout(&format!("savevm {tag}"), Duration::from_secs(60)), "");
        saved.push((tag, at));
        n.mon.cmd("cont");
        n.g.wait_for(&format!("HB {}", at + 100), T);
        check_clean(&img);
    }
    let listed = monitor_snapshots(&mut n.mon);
    assert_eq!(listed.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["s1", "s2", "s3"]);
    assert_eq!(listed, qemu_img_snapshots(&img), "info snapshots and qemu-img snapshot -l disagree");

    // Load them in any order: the guest goes back to each moment (not rebooted).
    for (tag, at) in [saved[2], saved[0], saved[1]] {
        stop_at(&mut n);
        assert_eq!(n.mon.cmd_timeout(&format!("loadvm {tag}"), Duration::from_secs(60)), "");
        assert_eq!(n.mon.cmd("info status"), "VM status: paused\n");
        resumes_after(&mut n, at);
        n.g.wait_for(&format!("HB {}", at + 150), T);
        n.g.wait_for("DISKVERIFY", T);
        check_clean(&img);
    }
    no_errors(&n);

    // delvm of the middle one frees it: no leaks, the others stay.
    assert_eq!(n.mon.cmd("delvm s2"), "");
    assert_eq!(n.mon.cmd("delvm nosuch"), "");
    assert_eq!(
        monitor_snapshots(&mut n.mon).iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["s1", "s3"]
    );
    n.mon.cmd("stop");
    let check = qemu_img(&["check", "-U", "--output=json", img.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(check.status.success() && !text.contains("\"leaks\""), "{text}");
    n.mon.quit();
    assert_eq!(n.g.wait_exit(T).code(), Some(0));
    check_clean(&img);

    // -loadvm on a fresh process, from a copy of the image.
    let copy = dir.join("copy.qcow2");
    std::fs::copy(&img, &copy).unwrap();
    let (_, at) = saved[2];
    let mut m = start(&dir, "b", &copy, &["-loadvm", "s3"]);
    m.g.wait_for("VERIFY", T);
    m.g.wait_for("DISKVERIFY", T);
    let hb = heartbeats(&m.g.seen);
    assert!(
        hb[0] == at + 1 || hb[0] == at + 2,
        "-loadvm resumed at HB {} instead of after {at}",
        hb[0]
    );
    no_errors(&m);
}

#[test]
fn errors_leave_the_vm_and_images_untouched() {
    let _l = vm_lock();
    let dir = tmpdir("snap-err");
    let img = image(&dir);
    // A disk-only snapshot made with qemu-img.
    assert!(qemu_img(&["snapshot", "-c", "diskonly", img.to_str().unwrap()]).status.success());
    let mut n = start(&dir, "a", &img, &[]);
    n.g.wait_for("DISKVERIFY 1 ok", T);
    assert_eq!(
        n.mon.cmd("loadvm diskonly"),
        "Error: This is a disk-only snapshot. Revert to it  offline using qemu-img\n"
    );
    assert_eq!(
        n.mon.cmd("loadvm nosuch"),
        "Error: Snapshot 'nosuch' does not exist in one or more devices\n"
    );
    n.mon.cmd("savevm big");
    n.mon.quit();
    assert_eq!(n.g.wait_exit(T).code(), Some(0));

    // A snapshot of a 512 MiB, 2-vCPU machine does not fit a 256 MiB one: refused before
    // anything changes, the guest runs on.
    let drive = format!("file={},if=virtio", img.display());
    let append = format!("{APPEND} probe.diskcheck=persist");
    let mut small = node(&dir, "small", "256", "2", &append, &["-drive", &drive]);
    small.g.wait_for("DISKVERIFY 1 ok", T);
    let e = small.mon.cmd("loadvm big");
    assert!(e.starts_with("Error: Error while loading VM state: RAM size mismatch"), "{e}");
    assert_eq!(small.mon.cmd("info status"), "VM status: running\n");
    small.g.wait_for("DISKVERIFY 2 ok", T);
    let at = *heartbeats(&small.g.seen).last().unwrap();
    small.g.wait_for(&format!("HB {}", at + 20), T);
    no_errors(&small);
    small.mon.quit();
    small.g.wait_exit(T);

    // The disk grown offline since the snapshot: the guest was told another size, so the
    // snapshot's device state does not fit. Refused before any disk is reverted (a
    // reverted disk would show up as DISK MISMATCH in the guest, which verifies it).
    let grown = qemu_img(&["resize", img.to_str().unwrap(), "+64M"]);
    assert!(grown.status.success(), "{}", String::from_utf8_lossy(&grown.stderr));
    let mut big = node(&dir, "grown", "512", "2", &append, &["-drive", &drive]);
    big.g.wait_for("DISKVERIFY 1 ok", T);
    let e = big.mon.cmd_timeout("loadvm big", Duration::from_secs(60));
    assert!(
        e.starts_with("Error: Error while loading VM state: invalid 'virtio-blk' state: saved disk has 524288 sectors"),
        "{e}"
    );
    assert_eq!(big.mon.cmd("info status"), "VM status: running\n");
    big.g.wait_for("DISKVERIFY 2 ok", T);
    let at = *heartbeats(&big.g.seen).last().unwrap();
    big.g.wait_for(&format!("HB {}", at + 20), T);
    no_errors(&big);
    big.mon.quit();
    big.g.wait_exit(T);
    assert_eq!(qemu_img_snapshots(&img).len(), 2, "both snapshots are still there");

    // No qcow2 disk, or a writable raw one: QEMU's words.
    let mut none = node(&dir, "none", "128", "1", "", &[]);
    assert_eq!(none.mon.cmd("savevm x"), "Error: no block device can store vmstate for snapshot\n");
    assert_eq!(none.mon.cmd("info snapshots"), "no block device can store vmstate for snapshot\n");
    none.mon.quit();
    let raw = dir.join("r.raw");
    assert!(
        qemu_img(&["create", "-q", "-f", "raw", raw.to_str().unwrap(), "16M"])
            .status
            .success()
    );
    let drive = format!("file={},format=raw,if=virtio", raw.display());
    let mut r = node(&dir, "raw", "128", "1", "", &["-drive", &drive]);
    assert_eq!(
        r.mon.cmd("savevm x"),
        "Error: Device 'virtio0' is writable but does not support snapshots\n"
    );
    r.mon.quit();
    check_clean(&img);
}

#[test]
fn killed_during_savevm_leaves_older_snapshots_loadable() {
    let _l = vm_lock();
    let dir = tmpdir("snap-kill");
    let img = image(&dir);
    let mut n = node(
        &dir,
        "a",
        "1G",
        "2",
        "probe.ws=512 probe.rate=50",
        &["-drive", &format!("file={},if=virtio", img.display())],
    );
    n.g.wait_for("VERIFY 1 ok", Duration::from_secs(60));
    let at = stop_at(&mut n);
    n.mon.cmd_timeout("savevm good", Duration::from_secs(60));
    n.mon.cmd("cont");
    n.g.wait_for(&format!("HB {}", at + 50), T);
    // Kill it while the second savevm writes its 512 MiB.
    n.mon.send_raw(b"savevm doomed\n");
    std::thread::sleep(Duration::from_millis(150));
    n.g.child.kill().unwrap();
    n.g.wait_exit(T);
    let o = qemu_img(&["check", "--output=json", img.to_str().unwrap()]);
    let code = o.status.code().unwrap_or(-1);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    // Exit 0 (clean) or 3 (leaked clusters only); never corruption.
    assert!(
        code == 0 || (code == 3 && !text.contains("\"corruptions\": ") || text.contains("\"corruptions\": 0")),
        "qemu-img check exit {code}: {text}"
    );
    let mut m = node(
        &dir,
        "b",
        "1G",
        "2",
        "probe.ws=512 probe.rate=50",
        &["-drive", &format!("file={},if=virtio", img.display()), "-loadvm", "good"],
    );
    m.g.wait_for("VERIFY", Duration::from_secs(60));
    let hb = heartbeats(&m.g.seen);
    assert!(hb[0] == at + 1 || hb[0] == at + 2, "resumed at {} after {at}", hb[0]);
    assert!(!m.g.seen.iter().any(|l| l.text.contains("MISMATCH") || l.text.contains("bad=")));
}

/// A full disk during savevm: the command fails, the guest runs on, and the image stays
/// consistent (qemu-img check: nothing worse than leaked clusters) with no snapshot added.
#[test]
fn full_disk_during_savevm() {
    let _l = vm_lock();
    let dir = tmpdir("snap-full");
    let fs = dir.join("small");
    std::fs::create_dir_all(&fs).unwrap();
    let m = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs", fs.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(m.success(), "cannot mount a small tmpfs (the tests run as root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(fs.clone());
    let img = fs.join("vm.qcow2");
    assert!(
        qemu_img(&["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "32M"])
            .status
            .success()
    );
    let drive = format!("file={},if=virtio", img.display());
    let mut n = node(&dir, "a", "512", "1", "probe.ws=256 probe.rate=5", &["-drive", &drive]);
    n.g.wait_for("VERIFY 1 ok", Duration::from_secs(60));
    let e = n.mon.cmd_timeout("savevm big", Duration::from_secs(60));
    assert!(e.starts_with("Error: ") && e.contains("No space left on device"), "{e}");
    assert_eq!(n.mon.cmd("info status"), "VM status: running\n");
    assert_eq!(n.mon.cmd("info snapshots"), "There is no snapshot available.\n");
    let at = *heartbeats(&n.g.seen).last().unwrap();
    n.g.wait_for(&format!("HB {}", at + 30), T);
    n.g.wait_for("VERIFY", T);
    n.mon.quit();
    n.g.wait_exit(T);
    let o = qemu_img(&["check", "--output=json", img.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let code = o.status.code().unwrap_or(-1);
    assert!(
        (code == 0 || code == 3) && !text.contains("\"corruptions\": 1") && !text.contains("\"check-errors\": 1"),
        "qemu-img check exit {code}: {text}"
    );
}

/// Monitor tags are snapshot names, as in QEMU 7.2: a tag that equals another snapshot's
/// ID never selects that one (`qemu-img snapshot -l` shows both columns).
#[test]
fn tags_are_names_even_when_they_look_like_ids() {
    let _l = vm_lock();
    let dir = tmpdir("snap-ids");
    let img = image(&dir);
    let mut n = start(&dir, "a", &img, &[]);
    n.g.wait_for("DISKVERIFY 1 ok", T);
    // "2" gets ID 1, "1" gets ID 2.
    for tag in ["2", "1"] {
        assert_eq!(n.mon.cmd_timeout(&format!("savevm {tag}"), Duration::from_secs(60)), "");
    }
    let ids = |img: &Path| {
        let o = qemu_img(&["snapshot", "-l", "-U", img.to_str().unwrap()]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&img), ["1 2", "2 1"]);
    // Replacing "1" replaces the snapshot named "1" (the new one takes the next free ID,
    // 2 again), not the one with ID 1.
    assert_eq!(n.mon.cmd_timeout("savevm 1", Duration::from_secs(60)), "");
    assert_eq!(ids(&img), ["1 2", "2 1"]);
    assert_eq!(n.mon.cmd("delvm 1"), "");
    assert_eq!(ids(&img), ["1 2"]);
    assert_eq!(n.mon.cmd_timeout("loadvm 2", Duration::from_secs(60)), "");
    assert_eq!(n.mon.cmd("loadvm 1"), "Error: Snapshot '1' does not exist in one or more devices\n");
    assert_eq!(n.mon.cmd("info status"), "VM status: running\n");
    n.mon.quit();
    assert_eq!(n.g.wait_exit(T).code(), Some(0));
    check_clean(&img);
}
