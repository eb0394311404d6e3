//! xbzrle: re-sent pages as deltas against the source's page cache, on the probe guest,
//! through both monitors; the destination verifies every page of the working set.

mod common;

use common::hmp::{info_field, info_num};
use common::migrate::{Node, node, wait_migration};
use common::qmp::qmp_shell;
use common::{free_port, heartbeats, tmpdir, vm_lock};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
/// The probe rewriting its working set every two seconds.
const DIRTY: &str = "probe.ws=8 probe.rate=4";

fn destination(dir: &std::path::Path, name: &str, xbzrle: bool) -> (Node, String) {
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    let mut n = node(dir, name, "1G", "2", DIRTY, &["-incoming", &inc]);
    if xbzrle {
        assert_eq!(n.mon.cmd("migrate_set_capability xbzrle on"), "");
    }
    (n, inc)
}

/// The destination runs on from where the source stopped, and two whole passes of the
/// probe's verifier over the working set find every page right.
fn check_moved(src: &mut Node, dst: &mut Node) {
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    src.g.collect_for(Duration::from_millis(300));
    dst.g.wait_for("VERIFY", T);
    dst.g.wait_for("VERIFY", T);
    assert_eq!(dst.mon.cmd("info status"), "VM status: running\n");
    let (src_hb, dst_hb) = (heartbeats(&src.g.seen), heartbeats(&dst.g.seen));
    let last = *src_hb.last().expect("source heartbeats");
    assert!(dst_hb[0] == last + 1 || dst_hb[0] == last + 2, "{last} then {:?}", &dst_hb[..3]);
    for bad in ["MISMATCH", "bad=", "PROBE READY", "FAULT"] {
        assert!(!dst.g.seen.iter().any(|l| l.text.contains(bad)), "{bad} on the destination");
    }
}

/// The first number after `"key": ` in `json`.
fn json_num(json: &str, key: &str) -> u64 {
    let at = json.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 4..];
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())]
        .parse()
        .unwrap()
}

#[test]
fn xbzrle_moves_a_dirtying_guest_with_consistent_counters() {
    let _l = vm_lock();
    let dir = tmpdir("xbzrle-move");
    let qmp = dir.join("qmp.sock");
    let qmp_arg = format!("unix:{},server,nowait", qmp.display());
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &["-qmp", &qmp_arg]);
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
        let set = if on_src { "on" } else { "off" };
        assert_eq!(src.mon.cmd(&format!("migrate_set_capability xbzrle {set}")), "");
        assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
        let info = wait_migration(&mut src.mon, T);
        let (a, b) = if on_src { ("on", "off") } else { ("off", "on") };
        let want = format!("failed (the destination refused: capability 'xbzrle' is {a} at the source but {b} here)");
        assert_eq!(info_field(&info, "Migration status"), Some(want.as_str()), "{info}");
        assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
        let _ = dst.g.wait_exit(T);
        let err = dst.g.stderr();
        assert_eq!(err.lines().filter(|l| l.contains("xbzrle")).count(), 1, "{err}");
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
        assert_eq!(
            src.mon.cmd("migrate_set_capability xbzrle off"),
            "Error: There's a migration process in progress\n"
        );
        // The cache size may change: the next sync takes it.
        assert_eq!(src.mon.cmd("migrate_set_parameter xbzrle-cache-size 8m"), "");
        if kill {
            dst.g.child.kill().unwrap();
        } else {
            assert_eq!(src.mon.cmd("migrate_cancel"), "");
        }
        let info = wait_migration(&mut src.mon, T);
        let status = info_field(&info, "Migration status").unwrap();
        assert!(status == "cancelled" || status.starts_with("failed ("), "{info}");
        assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
        let _ = dst.g.wait_exit(T);
        assert_eq!(src.mon.cmd("migrate_set_parameter xbzrle-cache-size 64m"), "");
    }
    src.g.collect_for(Duration::from_millis(300));
    let hb = heartbeats(&src.g.seen);
    assert!(hb.windows(2).all(|w| w[1] == w[0] + 1), "{hb:?}");
    assert!(!src.g.seen.iter().any(|l| l.text.contains("MISMATCH") || l.text.contains("bad=")));
}
