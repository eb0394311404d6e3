//! The source's run state around an outgoing migration: a guest reset in the middle of
//! one, and a `stop` during the pre-copy, each with the figures `info migrate` and
//! `info status` show afterwards.

mod common;

use common::hmp::info_field;
use common::migrate::{Node, node, wait_active, wait_migration};
use common::{free_port, heartbeats, tmpdir, vm_lock};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
// `persist`: after a reboot the probe finds its own earlier blocks on the disk.
const APPEND: &str = "probe.ws=32 probe.rate=10 probe.disk=8 probe.diskrate=256 probe.diskverify=2048 probe.diskcheck=persist";

fn image(dir: &Path) -> std::path::PathBuf {
    let img = dir.join("vm.qcow2");
    let o = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "64M"])
        .output()
        .expect("qemu-img");
    assert!(o.status.success());
    img
}

fn check_clean(img: &Path) {
    let o = Command::new("qemu-img")
        .args(["check", img.to_str().unwrap()])
        .output()
        .expect("qemu-img");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A source with a qcow2 disk and a destination (on a copy of the image), both with the probe
/// writing its disk; the migration is slowed so it is still running when the test acts.
fn pair(dir: &Path, img: &Path) -> (Node, Node, String) {
    let drive = format!("file={},if=virtio", img.display());
    let mut src = node(dir, "src", "256", "1", APPEND, &["-drive", &drive]);
    src.g.wait_for("DISKVERIFY 1 ok", T);
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    let dst_img = dir.join("dst.qcow2");
    std::fs::copy(img, &dst_img).unwrap();
    let dst_drive = format!("file={},if=virtio", dst_img.display());
    let dst = node(dir, "dst", "256", "1", APPEND, &["-drive", &dst_drive, "-incoming", &inc]);
    assert_eq!(src.mon.cmd("migrate_set_speed 64k"), "");
    (src, dst, inc)
}

/// A reset rebuilds the source's VM, so the migration of the old one ends first, failed
/// with the reason; the guest boots again here on its own images, and the destination,
/// cut off, exits.
#[test]
fn a_reset_during_a_migration_fails_it_and_the_guest_boots_again_here() {
    let _l = vm_lock();
    let dir = tmpdir("mig-reset");
    let img = image(&dir);
    let (mut src, mut dst, inc) = pair(&dir, &img);
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    wait_active(&mut src.mon);
    assert_eq!(src.mon.cmd("system_reset"), "");
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(
        info_field(&info, "Migration status"),
        Some("failed (the guest was reset during the migration)"),
        "{info}"
    );
    assert_eq!(dst.g.wait_exit(T).code(), Some(1));
    // The new machine boots: a second PROBE READY, and the disk workload starts over on
    // the same image, which the old machine let go of.
    let ready = |n: &Node| n.g.seen.iter().filter(|l| l.text.starts_with("PROBE READY")).count();
    let before = ready(&src);
    src.g.wait_for("PROBE READY", T);
    assert!(ready(&src) > before && before >= 1);
    src.g.wait_for("DISKVERIFY 1 ok", T);
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    assert!(
        !src.g
            .seen
            .iter()
            .any(|l| ["MISMATCH", "bad=", "DISK ERROR"].iter().any(|b| l.text.contains(b)))
    );
    src.mon.quit();
    assert_eq!(src.g.wait_exit(T).code(), Some(0));
    check_clean(&img);
}

/// `stop` during the pre-copy is the user's: when the migration then fails, the guest
/// stays stopped (and `info status` says so) until `cont`.
#[test]
fn a_stop_during_the_precopy_outlives_a_failed_migration() {
    let _l = vm_lock();
    let dir = tmpdir("mig-stop");
    let img = image(&dir);
    let (mut src, mut dst, inc) = pair(&dir, &img);
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    wait_active(&mut src.mon);
    assert_eq!(src.mon.cmd("stop"), "");
    dst.g.child.kill().unwrap();
    let info = wait_migration(&mut src.mon, T);
    assert!(info_field(&info, "Migration status").unwrap().starts_with("failed ("), "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: paused\n");
    src.g.collect_for(Duration::from_millis(200));
    assert!(
        heartbeats(&src.g.collect_for(Duration::from_millis(500))).is_empty(),
        "the guest ran after the failure"
    );
    assert_eq!(src.mon.cmd("cont"), "");
    let last = *heartbeats(&src.g.seen).last().unwrap();
    src.g.wait_for(&format!("HB {}", last + 5), T);
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    src.mon.quit();
    assert_eq!(src.g.wait_exit(T).code(), Some(0));
    check_clean(&img);
}
