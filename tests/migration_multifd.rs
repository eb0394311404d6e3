//! multifd: pages over several connections at once, with and without compression, over
//! tcp: and unix:, on the probe guest; the destination verifies every page of the working
//! set. Refusals (exec:, one side only, during a migration) and failures (cancel, the
//! destination killed) leave the source running.

mod common;

use common::hmp::{info_field, info_num};
use common::migrate::{Node, node, wait_migration};
use common::{free_port, heartbeats, tmpdir, vm_lock};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
/// The probe rewriting its 64 MiB working set twice a second.
const DIRTY: &str = "probe.ws=64 probe.rate=128";

/// A destination listening on tcp: or unix:, with multifd set up as given (`None`: off).
fn destination(dir: &Path, name: &str, unix: bool, mf: Option<(u8, &str)>) -> (Node, String) {
    let inc = if unix {
        format!("unix:{}", dir.join(format!("{name}.mig")).display())
    } else {
        format!("tcp:127.0.0.1:{}", free_port())
    };
    let mut n = node(dir, name, "1G", "2", DIRTY, &["-incoming", &inc]);
    if let Some((channels, comp)) = mf {
        set_multifd(&mut n, channels, comp);
    }
    (n, inc)
}

fn set_multifd(n: &mut Node, channels: u8, comp: &str) {
    assert_eq!(n.mon.cmd("migrate_set_capability multifd on"), "");
    assert_eq!(n.mon.cmd(&format!("migrate_set_parameter multifd-channels {channels}")), "");
    assert_eq!(n.mon.cmd(&format!("migrate_set_parameter multifd-compression {comp}")), "");
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

/// One hop of a chain: `src` migrates to a fresh destination with multifd as given; the
/// figures are checked, the destination verified, and it is returned as the next source.
fn hop(dir: &Path, src: &mut Node, name: &str, unix: bool, channels: u8, comp: &str) -> Node {
    let (mut dst, inc) = destination(dir, name, unix, Some((channels, comp)));
    set_multifd(src, channels, comp);
    assert_eq!(src.mon.cmd("migrate_set_parameter max-bandwidth 0"), "");
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    let info = wait_migration(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{name}: {info}");
    let n = |k: &str| info_num(&info, k).unwrap_or_else(|| panic!("no {k}: {info}"));
    let (multifd, ram, normal) = (n("multifd bytes"), n("transferred ram"), n("normal bytes"));
    // The pages went over the channels: the main stream held little more than the state.
    assert!(multifd > 60 << 10, "{name}: {info}");
    assert!(ram >= multifd && ram - multifd < 4 << 10, "{name}: {info}");
    assert!(n("precopy ram") < 1 << 10, "{name}: {info}");
    // Page data plus 8 bytes of entry per page; the probe's pages barely compress.
    assert!(multifd <= normal + normal / 64 + 64, "{name}: {info}");
    check_moved(src, &mut dst);
    dst
}

#[test]
fn multifd_moves_a_dirtying_guest_over_tcp_and_unix_with_every_compression() {
    let _l = vm_lock();
    let dir = tmpdir("multifd-move");
    let mut src = node(&dir, "n0", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    let hops = [
        (false, 2, "none"),
        (true, 4, "zstd"),
        (false, 4, "zlib"),
        (true, 2, "none"),
        (false, 2, "zstd"),
        (true, 4, "zlib"),
    ];
    for (i, (unix, channels, comp)) in hops.into_iter().enumerate() {
        let next = hop(&dir, &mut src, &format!("n{}", i + 1), unix, channels, comp);
        src = next;
    }
}
