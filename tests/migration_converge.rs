//! Migrations that always finish: auto-converge's vCPU throttle, and godwit's convergence
//! guarantee (`x-godwit-converge-deadline`), on the probe guest, through the monitors.

mod common;

use common::hmp::{info_field, info_num};
use common::migrate::{
    Node, assert_refused_while_migrating, cancel_or_kill, check_moved_after, check_source_ran_on, node, node_with_qmp, tcp_destination,
};
use common::qmp::qmp_shell;
use common::{heartbeats, tmpdir, vm_lock};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
/// The probe rewriting its working set as fast as it can.
const BUSY: &str = "probe.ws=64 probe.rate=0";

/// Polls `info migrate` until the migration ends; returns the last answer and the highest
/// `cpu throttle percentage` seen on the way.
fn follow(src: &mut Node, timeout: Duration) -> (String, u64) {
    let end = Instant::now() + timeout;
    let mut top = 0;
    loop {
        let t = src.mon.cmd("info migrate");
        top = top.max(info_num(&t, "cpu throttle percentage").unwrap_or(0));
        match info_field(&t, "Migration status").and_then(|s| s.split_whitespace().next()) {
            Some("setup" | "active" | "cancelling") => {}
            _ => return (t, top),
        }
        assert!(Instant::now() < end, "still running after {timeout:?}: {t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the source's throttle is at least `pct`; returns `info migrate` then.
fn wait_throttle(src: &mut Node, pct: u64) -> String {
    let end = Instant::now() + T;
    loop {
        let t = src.mon.cmd("info migrate");
        if info_num(&t, "cpu throttle percentage").is_some_and(|p| p >= pct) {
            return t;
        }
        assert!(Instant::now() < end, "the throttle never reached {pct} %: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The destination runs the guest on from where the source stopped, its pages verified.
fn check_moved(src: &mut Node, dst: &mut Node) {
    check_moved_after(src, dst, |g| {
        g.wait_for("VERIFY", T);
        g.collect_for(Duration::from_millis(500));
    });
}

/// Heartbeats the source prints in one second. The probe catches up on heartbeats up to
/// 100 ms late, so only a throttle that sleeps it longer (99 %: 990 ms per 10 ms slice)
/// shows in their count.
fn beats_in_a_second(n: &mut Node) -> usize {
    n.g.collect_for(Duration::from_millis(100));
    heartbeats(&n.g.collect_for(Duration::from_secs(1))).len()
}

fn destination(dir: &std::path::Path, name: &str, append: &str) -> (Node, String) {
    tcp_destination(dir, name, append, &[])
}

#[test]
fn auto_converge_throttles_a_busy_guest_until_it_moves() {
    let _l = vm_lock();
    let dir = tmpdir("conv-auto");
    let mut src = node(&dir, "src", "1G", "2", BUSY, &[]);
    src.g.wait_for("VERIFY 2 ok", T);
    let (mut dst, inc) = destination(&dir, "dst", BUSY);
    assert_eq!(src.mon.cmd("migrate_set_capability auto-converge on"), "");
    assert!(src.mon.cmd("info migrate_capabilities").contains("\nauto-converge: on\n"));
    assert_eq!(src.mon.cmd("migrate_set_parameter max-bandwidth 50m"), "");
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    let (info, top) = follow(&mut src, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    assert!(top >= 20, "the guest was never throttled: {info}");
    // Throttling is over once the migration is: `info migrate` shows no throttle.
    assert!(!info.contains("cpu throttle percentage"), "{info}");
    assert!(!info.contains("x-godwit-converge-step"), "no deadline, no escalation: {info}");
    check_moved(&mut src, &mut dst);
}

#[test]
fn a_cancel_or_a_dead_peer_lifts_the_throttle_at_once() {
    let _l = vm_lock();
    let dir = tmpdir("conv-cancel");
    let (mut src, qmp) = node_with_qmp(&dir, BUSY);
    src.g.wait_for("VERIFY 2 ok", T);
    let unthrottled = beats_in_a_second(&mut src);
    let out = qmp_shell(
        qmp.to_str().unwrap(),
        "migrate-set-capabilities capabilities=[{\"capability\":\"auto-converge\",\"state\":true}]\nmigrate-set-parameters max-bandwidth=5242880 cpu-throttle-increment=20\n",
    );
    assert!(!out.contains("error"), "{out}");
    for (name, kill) in [("dst0", false), ("dst1", true)] {
        let (mut dst, inc) = destination(&dir, name, BUSY);
        assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
        let info = wait_throttle(&mut src, 99);
        assert!(info.contains("\ncpu throttle percentage: "), "{info}");
        let q = qmp_shell(qmp.to_str().unwrap(), "query-migrate\n");
        assert!(q.contains("\"cpu-throttle-percentage\": "), "{q}");
        assert_refused_while_migrating(&mut src.mon, "migrate_set_capability auto-converge off");
        assert!(beats_in_a_second(&mut src) * 5 < unthrottled, "the guest runs throttled");
        let info = cancel_or_kill(&mut src, &mut dst, kill);
        let status = info_field(&info, "Migration status").unwrap();
        assert!(status == "cancelled" || status.starts_with("failed ("), "{info}");
        assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
        let after = beats_in_a_second(&mut src);
        assert!(
            after * 2 > unthrottled,
            "{after} heartbeats in a second after the end, {unthrottled} before"
        );
        let _ = dst.g.wait_exit(T);
    }
    check_source_ran_on(&mut src);
}

/// A guest that pre-copy cannot move in time, even throttled (the throttle is held at
/// 20 %): at the deadline godwit stops and copies, and says so.
#[test]
fn the_deadline_throttles_then_stops_and_copies() {
    let _l = vm_lock();
    let dir = tmpdir("conv-deadline");
    let append = "probe.ws=256 probe.rate=0";
    let mut src = node(&dir, "src", "1G", "2", append, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    let (mut dst, inc) = destination(&dir, "dst", append);
    for set in ["max-bandwidth 20m", "max-cpu-throttle 20", "x-godwit-converge-deadline 6"] {
        assert_eq!(src.mon.cmd(&format!("migrate_set_parameter {set}")), "", "{set}");
    }
    let params = src.mon.cmd("info migrate_parameters");
    assert!(params.ends_with("tls-authz: ''\nx-godwit-converge-deadline: 6 s\n"), "{params}");
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    let (info, top) = follow(&mut src, Duration::from_secs(60));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    assert_eq!(top, 20, "the throttle came first, up to max-cpu-throttle: {info}");
    assert_eq!(info_field(&info, "x-godwit-converge-step"), Some("stop-and-copy"), "{info}");
    assert!(
        info_num(&info, "downtime").is_some() && info_num(&info, "downtime ram").unwrap() > 0,
        "{info}"
    );
    check_moved(&mut src, &mut dst);
}
