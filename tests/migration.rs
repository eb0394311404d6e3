//! Live migration between godwit processes, driven through the monitor as a user would.

mod common;

use common::hmp::{info_field, info_num};
use common::migrate::{node, wait_active, wait_migration};
use common::{free_port, heartbeats, tmpdir, vm_lock};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The probe's working set still verifies, and the heartbeats run on unbroken across the
/// move: the source's and destination's output together count up without a gap or repeat.
fn check_guest_moved(src: &common::Guest, dst: &common::Guest) {
    let joined: String = src.seen.iter().chain(dst.seen.iter()).map(|l| format!("{}\n", l.text)).collect();
    let hb = heartbeats(&dst.seen);
    assert!(hb.len() >= 20, "destination ran too briefly: {hb:?}");
    let src_hb = heartbeats(&src.seen);
    let last = *src_hb.last().expect("source heartbeats");
    // A heartbeat line cut by the switch-over shows up on neither side whole.
    assert!(
        hb[0] == last + 1 || hb[0] == last + 2,
        "destination starts at HB {} after source HB {last}",
        hb[0]
    );
    assert!(hb.windows(2).all(|w| w[1] == w[0] + 1), "{hb:?}");
    for bad in ["MISMATCH", "bad=", "PROBE READY", "FAULT"] {
        assert!(!dst.seen.iter().any(|l| l.text.contains(bad)), "{bad} on the destination: {joined}");
    }
}

fn migrate_once(mem: &str, smp: &str, append: &str, ready: &str, detach: bool, speed: Option<&str>) {
    let dir = tmpdir(&format!("mig-{mem}-{smp}"));
    let mut src = node(&dir, "src", mem, smp, append, &[]);
    src.g.wait_for(ready, T);
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = node(&dir, "dst", mem, smp, append, &["-incoming", &inc]);
    assert_eq!(dst.mon.cmd("info status"), "VM status: paused (inmigrate)\n");
    assert!(
        dst.mon
            .cmd("info migrate")
            .contains(&format!("socket address: [\n\ttcp:127.0.0.1:{port}\n]\n"))
    );
    if let Some(s) = speed {
        assert_eq!(src.mon.cmd(&format!("migrate_set_speed {s}")), "");
    }
    let cmd = format!("migrate {}{inc}", if detach { "-d " } else { "" });
    assert_eq!(src.mon.cmd_timeout(&cmd, Duration::from_secs(120)), "");
    let info = wait_migration(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let kib: u64 = mem.trim_end_matches('G').parse::<u64>().unwrap() << 20;
    assert_eq!(info_num(&info, "total ram"), Some(kib), "{info}");
    assert_eq!(info_num(&info, "remaining ram"), Some(0), "{info}");
    assert!(
        info_num(&info, "transferred ram").unwrap() > 0 && info_num(&info, "dirty sync count").unwrap() >= 2,
        "{info}"
    );
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    src.g.collect_for(Duration::from_millis(200)); // output from before the switch-over
    let stopped_at = heartbeats(&src.g.collect_for(Duration::from_millis(300)));
    assert!(stopped_at.is_empty(), "the source still runs after completing: {stopped_at:?}");
    dst.g.wait_for(if append.contains("probe.ws") { "VERIFY" } else { "HB" }, T);
    dst.g.collect_for(Duration::from_millis(500));
    assert_eq!(dst.mon.cmd("info status"), "VM status: running\n");
    assert!(dst.mon.cmd("info migrate").contains("Migration status: completed\n"));
    // `cont` on the source after a completed migration is refused to migrate again.
    assert!(
        src.mon
            .cmd(&format!("migrate {inc}"))
            .starts_with("Error: Can't migrate the vm that was paused due to previous migration")
    );
    check_guest_moved(&src.g, &dst.g);
}

#[test]
fn idle_1g_one_cpu() {
    let _l = vm_lock();
    migrate_once("1G", "1", "", "HB 20", true, None);
}

#[test]
fn moderate_dirtying_two_cpus_synchronous() {
    let _l = vm_lock();
    migrate_once("1G", "2", "probe.ws=64 probe.rate=50", "VERIFY 2 ok", false, None);
}

#[test]
fn heavy_dirtying_unlimited_speed() {
    let _l = vm_lock();
    migrate_once("1G", "2", "probe.ws=128 probe.rate=200", "VERIFY 2 ok", true, Some("0"));
}

#[test]
fn idle_4g_two_cpus() {
    let _l = vm_lock();
    migrate_once("4G", "2", "", "HB 20", true, None);
}

#[test]
fn ping_pong_ten_times() {
    let _l = vm_lock();
    let dir = tmpdir("pingpong");
    let append = "probe.ws=16 probe.rate=20";
    let mut cur = node(&dir, "n0", "256", "2", append, &[]);
    cur.g.wait_for("VERIFY 2 ok", T);
    let mut all_beats: Vec<u64> = Vec::new();
    for i in 1..=10 {
        let port = free_port();
        let inc = format!("tcp:127.0.0.1:{port}");
        let mut next = node(&dir, &format!("n{i}"), "256", "2", append, &["-incoming", &inc]);
        cur.mon.cmd(&format!("migrate -d {inc}"));
        let info = wait_migration(&mut cur.mon, Duration::from_secs(60));
        assert_eq!(info_field(&info, "Migration status"), Some("completed"), "hop {i}: {info}");
        if next.g.try_wait_for("VERIFY", T).is_none() {
            panic!(
                "hop {i}: destination silent; dst status {:?}; dst migrate {:?}; stderr {}",
                next.mon.cmd("info status"),
                next.mon.cmd("info migrate"),
                next.g.stderr()
            );
        }
        cur.g.collect_for(Duration::from_millis(200)); // the rest of its output
        all_beats.extend(heartbeats(&cur.g.seen));
        assert!(
            !next.g.seen.iter().any(|l| l.text.contains("MISMATCH") || l.text.contains("bad=")),
            "hop {i}"
        );
        let old = std::mem::replace(&mut cur, next);
        old.mon.quit();
    }
    cur.g.collect_for(Duration::from_millis(300));
    all_beats.extend(heartbeats(&cur.g.seen));
    let breaks = all_beats.windows(2).filter(|w| w[1] != w[0] + 1).count();
    // Each hop may cut one heartbeat line in two; nothing may repeat or go back.
    assert!(all_beats.windows(2).all(|w| w[1] > w[0] && w[1] <= w[0] + 2), "{all_beats:?}");
    assert!(breaks <= 10, "{breaks} breaks in {all_beats:?}");
}

#[test]
fn cancel_and_failures_leave_the_source_running() {
    let _l = vm_lock();
    let dir = tmpdir("mig-fail");
    let append = "probe.ws=256 probe.rate=50";
    let mut src = node(&dir, "src", "1G", "2", append, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    src.mon.cmd("migrate_set_speed 20m");

    // Refused: nobody listens.
    let port = free_port();
    assert_eq!(src.mon.cmd(&format!("migrate -d tcp:127.0.0.1:{port}")), "");
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(
        info_field(&info, "Migration status"),
        Some(format!("failed (Failed to connect to '127.0.0.1:{port}': Connection refused)").as_str()),
        "{info}"
    );
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");

    // Refused by the destination, which says why on the way back before it closes.
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = node(&dir, "dst0", "512", "2", append, &["-incoming", &inc]);
    src.mon.cmd(&format!("migrate -d {inc}"));
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(
        info_field(&info, "Migration status"),
        Some("failed (the destination refused: RAM size mismatch: the source has 1024 MiB, this VM 512 MiB)"),
        "{info}"
    );
    assert_eq!(dst.g.wait_exit(T).code(), Some(1));
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");

    // Cancelled half-way: the destination gives up, the source carries on.
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = node(&dir, "dst1", "1G", "2", append, &["-incoming", &inc]);
    src.mon.cmd(&format!("migrate -d {inc}"));
    wait_active(&mut src.mon);
    assert_eq!(src.mon.cmd("migrate_cancel"), "");
    let info = wait_migration(&mut src.mon, T);
    assert_eq!(info_field(&info, "Migration status"), Some("cancelled"), "{info}");
    assert_eq!(dst.g.wait_exit(T).code(), Some(1));
    assert!(dst.g.stderr().contains("load of migration failed: "), "{}", dst.g.stderr());
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");

    // The destination dies half-way.
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = node(&dir, "dst2", "1G", "2", append, &["-incoming", &inc]);
    src.mon.cmd(&format!("migrate -d {inc}"));
    wait_active(&mut src.mon);
    dst.g.child.kill().unwrap();
    let info = wait_migration(&mut src.mon, T);
    let status = info_field(&info, "Migration status").unwrap();
    assert!(status.starts_with("failed (Unable to write to socket: "), "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");

    // Through all of it the guest ran on, its memory intact.
    src.g.collect_for(Duration::from_millis(500));
    let hb = heartbeats(&src.g.seen);
    assert!(hb.windows(2).all(|w| w[1] == w[0] + 1), "{hb:?}");
    let verify = src.g.seen.iter().filter(|l| l.text.starts_with("VERIFY")).count();
    assert!(verify >= 2 && !src.g.seen.iter().any(|l| l.text.contains("MISMATCH") || l.text.contains("bad=")));

    // The source dies half-way: the destination reports it and exits 1.
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = node(&dir, "dst3", "1G", "2", append, &["-incoming", &inc]);
    src.mon.cmd(&format!("migrate -d {inc}"));
    wait_active(&mut src.mon);
    src.g.child.kill().unwrap();
    assert_eq!(dst.g.wait_exit(T).code(), Some(1));
    let err = dst.g.stderr();
    assert!(err.contains("godwit: load of migration failed: stream truncated at byte"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A monitor shows its banner only once the machine is set up, so a script that has seen
/// the destination's prompt can migrate to it at once: `-incoming` already listens.
#[test]
fn the_destination_listens_before_its_monitor_greets() {
    let _l = vm_lock();
    let dir = tmpdir("mig-ready");
    for i in 0..5 {
        let port = free_port();
        let inc = format!("tcp:127.0.0.1:{port}");
        let dst = node(&dir, &format!("dst{i}"), "256", "1", "", &["-incoming", &inc]);
        // `node` returned after the banner and first prompt.
        assert!(!dst.mon.banner.is_empty());
        let c = std::net::TcpStream::connect(("127.0.0.1", port));
        assert!(c.is_ok(), "try {i}: the prompt came before -incoming listened: {c:?}");
    }
}
