//! xbzrle: re-sent pages as deltas against the source's page cache, on the probe guest,
//! through both monitors; the destination verifies every page of the working set.

mod common;

use common::hmp::{info_field, info_num};
use common::migrate::{
    Node, assert_refused_while_migrating, cancel_or_kill, check_moved, check_one_sided_capability_refused, check_source_ran_on, json_num,
    node, node_with_qmp, tcp_destination, wait_migration,
};
use common::qmp::qmp_shell;
use common::{tmpdir, vm_lock};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
/// The probe rewriting its working set every two seconds.
const DIRTY: &str = "probe.ws=8 probe.rate=4";

/// A tcp: destination running the same probe, with xbzrle on or not.
fn destination(dir: &std::path::Path, name: &str, xbzrle: bool) -> (Node, String) {
    tcp_destination(dir, name, DIRTY, if xbzrle { &["xbzrle"] } else { &[] })
}

#[test]
fn xbzrle_moves_a_dirtying_guest_with_consistent_counters() {
    let _l = vm_lock();
    let dir = tmpdir("xbzrle-move");
    let (mut src, qmp) = node_with_qmp(&dir, DIRTY);
    src.g.wait_for("VERIFY 1 ok", T);
    let (mut dst, inc) = destination(&dir, "dst", true);
    let out = qmp_shell(
        qmp.to_str().unwrap(),
        "migrate-set-capabilities capabilities=[{\"capability\":\"xbzrle\",\"state\":true}]\nmigrate-set-parameters xbzrle-cache-size=4194304 max-bandwidth=10485760\n",
    );
    assert!(!out.contains("error"), "{out}");
    assert!(src.mon.cmd("info migrate_capabilities").starts_with("xbzrle: on\n"));
    assert!(
        src.mon
            .cmd("info migrate_parameters")
            .contains("\nxbzrle-cache-size: 4194304 bytes\n")
    );
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    let info = wait_migration(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let n = |k: &str| info_num(&info, k).unwrap_or_else(|| panic!("no {k}: {info}"));
    assert_eq!(n("cache size"), 4194304, "{info}");
    let (pages, miss, overflow) = (n("xbzrle pages"), n("xbzrle cache miss"), n("xbzrle overflow"));
    assert!(pages > overflow && miss > 0 && overflow > 0, "{info}");
    let q = qmp_shell(qmp.to_str().unwrap(), "query-migrate\n");
    assert!(q.contains("\"xbzrle-cache\": {"), "{q}");
    let x = &q[q.find("\"xbzrle-cache\"").unwrap()..];
    assert_eq!((json_num(x, "pages"), json_num(x, "overflow")), (pages, overflow), "{q}");
    let bytes = json_num(x, "bytes");
    assert_eq!(bytes >> 10, n("xbzrle transferred"), "{q}");
    // Deltas are smaller than the pages they stand for, and part of what was sent.
    assert!(bytes > 0 && bytes < (pages - overflow) * 4096, "{q}");
    assert!(bytes >> 10 < n("transferred ram"), "{info}");
    let rate: f64 = info_field(&info, "xbzrle encoding rate").unwrap().parse().unwrap();
    assert!(rate > 1.0, "{info}");
    let miss_rate: f64 = info_field(&info, "xbzrle cache miss rate").unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&miss_rate), "{info}");
    check_moved(&mut src, &mut dst);
}

#[test]
fn xbzrle_on_one_side_only_fails_with_one_line() {
    let _l = vm_lock();
    let dir = tmpdir("xbzrle-mismatch");
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    for (name, on_src) in [("dst0", true), ("dst1", false)] {
        let (mut dst, inc) = destination(&dir, name, !on_src);
        check_one_sided_capability_refused(&mut src, &mut dst, &inc, "xbzrle", on_src);
    }
    src.g.collect_for(Duration::from_millis(300));
    assert!(!src.g.seen.iter().any(|l| l.text.contains("MISMATCH") || l.text.contains("bad=")));
}

#[test]
fn a_cancel_or_a_dead_peer_leaves_an_xbzrle_source_running() {
    let _l = vm_lock();
    let dir = tmpdir("xbzrle-cancel");
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    assert_eq!(src.mon.cmd("migrate_set_capability xbzrle on"), "");
    assert_eq!(src.mon.cmd("migrate_set_parameter max-bandwidth 5m"), "");
    for (name, kill) in [("dst0", false), ("dst1", true)] {
        let (mut dst, inc) = destination(&dir, name, true);
        assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
        let info = common::migrate::wait_active(&mut src.mon);
        assert!(info.contains("\ncache size: 67108864 bytes\nxbzrle transferred: "), "{info}");
        assert_refused_while_migrating(&mut src.mon, "migrate_set_capability xbzrle off");
        // The cache size may change: the next sync takes it.
        assert_eq!(src.mon.cmd("migrate_set_parameter xbzrle-cache-size 8m"), "");
        let info = cancel_or_kill(&mut src, &mut dst, kill);
        let status = info_field(&info, "Migration status").unwrap();
        assert!(status == "cancelled" || status.starts_with("failed ("), "{info}");
        assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
        let _ = dst.g.wait_exit(T);
        assert_eq!(src.mon.cmd("migrate_set_parameter xbzrle-cache-size 64m"), "");
    }
    check_source_ran_on(&mut src);
}
