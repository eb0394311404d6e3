//! Post-copy (`postcopy-ram`, `migrate_start_postcopy`) on the probe guest: the
//! destination runs the guest before it has all of RAM, asks for the pages it touches,
//! and its verifier finds every page of the working set right.

mod common;

use common::hmp::{Hmp, info_field, info_num};
use common::migrate::{
    Node, assert_refused_while_migrating, check_moved, check_one_sided_capability_refused, json_num, node, node_with_qmp, tcp_destination,
};
use common::{free_port, heartbeats, tmpdir, vm_lock};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
/// A 64 MiB working set rewritten at 64 MiB/s: more than a capped pre-copy can follow.
const DIRTY: &str = "probe.ws=64 probe.rate=64";

/// A tcp: destination running the same probe, with post-copy on or not.
fn destination(dir: &std::path::Path, name: &str, postcopy: bool) -> (Node, String) {
    tcp_destination(dir, name, DIRTY, if postcopy { &["postcopy-ram"] } else { &[] })
}

/// Polls `info migrate` until the migration has ended (post-copy included); returns the
/// last text and every status seen on the way.
fn wait_end(mon: &mut Hmp, timeout: Duration) -> (String, Vec<String>) {
    let end = Instant::now() + timeout;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let t = mon.cmd("info migrate");
        let status = info_field(&t, "Migration status").unwrap_or("").to_string();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if !matches!(
            status.as_str(),
            "setup" | "active" | "postcopy-active" | "postcopy-paused" | "postcopy-recover" | "cancelling"
        ) {
            return (t, seen);
        }
        assert!(Instant::now() < end, "migration still running after {timeout:?}: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How post-copy starts.
#[derive(PartialEq)]
enum Start {
    /// `migrate_start_postcopy` right after `migrate`.
    Early,
    /// `migrate_start_postcopy` once the pre-copy has moved data for a while.
    Late,
    /// The convergence guarantee escalates to it (a 2 s deadline).
    Deadline,
}

/// One post-copy migration; returns the source's last `info migrate`.
fn postcopy_move(name: &str, start: Start) -> String {
    let dir = tmpdir(name);
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    let (mut dst, inc) = destination(&dir, "dst", true);
    assert_eq!(src.mon.cmd("migrate_set_capability postcopy-ram on"), "");
    assert!(src.mon.cmd("info migrate_capabilities").contains("\npostcopy-ram: on\n"));
    // The cap keeps the pre-copy from converging on its own.
    assert_eq!(src.mon.cmd("migrate_set_parameter max-bandwidth 32m"), "");
    if start == Start::Deadline {
        assert_eq!(src.mon.cmd("migrate_set_parameter x-godwit-converge-deadline 2"), "");
    }
    if start == Start::Deadline {
        // Synchronous: the prompt comes back once post-copy starts, as in QEMU.
        assert_eq!(src.mon.cmd_timeout(&format!("migrate {inc}"), T), "");
        let st = src.mon.cmd("info migrate");
        let st = info_field(&st, "Migration status").unwrap_or("");
        assert!(st == "postcopy-active" || st == "completed", "{st}");
    } else {
        assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    }
    if start == Start::Late {
        common::migrate::wait_active(&mut src.mon);
        std::thread::sleep(Duration::from_millis(700));
    }
    if start != Start::Deadline {
        assert_eq!(src.mon.cmd("migrate_start_postcopy"), "");
    }
    let (info, seen) = wait_end(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    assert!(seen.iter().any(|s| s == "postcopy-active") || seen.len() == 1, "{seen:?}");
    let n = |k: &str| info_num(&info, k).unwrap_or(0);
    assert!(n("postcopy request count") > 0, "{info}");
    assert!(n("postcopy ram") > 0, "{info}");
    eprintln!("{seen:?}\n{info}");
    let (dinfo, _) = wait_end(&mut dst.mon, T);
    assert_eq!(info_field(&dinfo, "Migration status"), Some("completed"), "{dinfo}");
    check_moved(&mut src, &mut dst);
    info
}

#[test]
fn postcopy_started_right_after_migrate_moves_every_page() {
    let _l = vm_lock();
    let info = postcopy_move("postcopy-early", Start::Early);
    assert_eq!(info_field(&info, "x-godwit-converge-step"), None, "{info}");
}

#[test]
fn postcopy_started_during_the_precopy_moves_every_page() {
    let _l = vm_lock();
    let info = postcopy_move("postcopy-late", Start::Late);
    assert!(info_num(&info, "precopy ram").unwrap_or(0) > 0, "{info}");
}

#[test]
fn the_convergence_guarantee_escalates_to_postcopy() {
    let _l = vm_lock();
    let info = postcopy_move("postcopy-deadline", Start::Deadline);
    assert_eq!(info_field(&info, "x-godwit-converge-step"), Some("postcopy"), "{info}");
    assert_eq!(info_field(&info, "cpu throttle percentage"), None, "no throttle: {info}");
    // Escalated at half the deadline, after a second of pre-copy.
    assert!(info_num(&info, "total time").unwrap_or(0) >= 1000, "{info}");
}

#[test]
fn start_postcopy_errors_are_qemus() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-errors");
    let mut src = node(&dir, "src", "256M", "1", "", &[]);
    assert_eq!(
        src.mon.cmd("migrate_start_postcopy"),
        "Error: Enable postcopy with migrate_set_capability before the start of migration\n"
    );
    assert_eq!(src.mon.cmd("migrate_set_capability postcopy-ram on"), "");
    assert_eq!(
        src.mon.cmd("migrate_start_postcopy"),
        "Error: Postcopy must be started after migration has been started\n"
    );
}

#[test]
fn postcopy_ram_on_one_side_only_fails_with_one_line() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-mismatch");
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    for (name, on_src) in [("dst0", true), ("dst1", false)] {
        let (mut dst, inc) = destination(&dir, name, !on_src);
        check_one_sided_capability_refused(&mut src, &mut dst, &inc, "postcopy-ram", on_src);
    }
}

/// A TCP relay, source to destination, that forwards at most `rate` bytes per second (so
/// a post-copy lasts long enough to break) and can be cut like a failed network.
struct Link {
    port: u16,
    socks: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Link {
    fn start(to_port: u16, rate: u64) -> Link {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let socks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = socks.clone();
        std::thread::spawn(move || {
            let Ok((src, _)) = l.accept() else { return };
            let Ok(dst) = TcpStream::connect(("127.0.0.1", to_port)) else {
                return;
            };
            keep.lock().unwrap().extend([src.try_clone().unwrap(), dst.try_clone().unwrap()]);
            let (mut dst_r, mut src_w) = (dst.try_clone().unwrap(), src.try_clone().unwrap());
            let both = keep.clone();
            // Either side gone ends both connections, as a reset would on a direct one.
            let end = move || {
                for s in both.lock().unwrap().iter() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            };
            let end2 = end.clone();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut dst_r, &mut src_w);
                end2();
            });
            let (mut src_r, mut dst_w) = (src, dst);
            let mut buf = vec![0u8; 16 << 10];
            let t0 = Instant::now();
            let mut sent = 0u64;
            while let Ok(n) = src_r.read(&mut buf) {
                if n == 0 || dst_w.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n as u64;
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            end();
        });
        Link { port, socks }
    }

    /// Breaks both connections, as a failed network would.
    fn cut(&self) {
        for s in self.socks.lock().unwrap().iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Starts a post-copy through a link slowed to 16 MB/s and waits until it runs; returns
/// the source, the destination and the link.
fn slow_postcopy(dir: &std::path::Path) -> (Node, Node, Link) {
    let mut src = node(dir, "src", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    let (dst, inc) = destination(dir, "dst", true);
    let port: u16 = inc.rsplit(':').next().unwrap().parse().unwrap();
    let link = Link::start(port, 16 << 20);
    assert_eq!(src.mon.cmd("migrate_set_capability postcopy-ram on"), "");
    assert_eq!(src.mon.cmd(&format!("migrate -d tcp:127.0.0.1:{}", link.port)), "");
    assert_eq!(src.mon.cmd("migrate_start_postcopy"), "");
    wait_status(&mut src.mon, "postcopy-active");
    (src, dst, link)
}

/// Waits until `info migrate` shows `want`.
fn wait_status(mon: &mut Hmp, want: &str) -> String {
    let end = Instant::now() + T;
    loop {
        let t = mon.cmd("info migrate");
        if info_field(&t, "Migration status") == Some(want) {
            return t;
        }
        assert!(Instant::now() < end, "never {want}: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_broken_postcopy_pauses_both_sides_and_recovers() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-recover");
    let (mut src, mut dst, link) = slow_postcopy(&dir);
    assert_eq!(
        dst.mon.cmd("migrate_recover tcp:127.0.0.1:1"),
        "Error: Migrate recover can only be run when postcopy is paused.\n"
    );
    assert_eq!(
        src.mon.cmd("migrate -r tcp:127.0.0.1:1"),
        "Error: Cannot resume if there is no paused migration\n"
    );
    std::thread::sleep(Duration::from_millis(500));
    link.cut();
    wait_status(&mut src.mon, "postcopy-paused");
    wait_status(&mut dst.mon, "postcopy-paused");
    assert_ne!(
        src.mon.cmd("info status"),
        "VM status: running\n",
        "the source never runs the guest again"
    );
    let port = free_port();
    assert_eq!(dst.mon.cmd(&format!("migrate_recover tcp:127.0.0.1:{port}")), "");
    assert_eq!(src.mon.cmd(&format!("migrate -r tcp:127.0.0.1:{port}")), "");
    let (info, _) = wait_end(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let (dinfo, _) = wait_end(&mut dst.mon, T);
    assert_eq!(info_field(&dinfo, "Migration status"), Some("completed"), "{dinfo}");
    assert!(dst.g.stderr().contains("Detected IO failure for postcopy. Migration paused."));
    check_moved(&mut src, &mut dst);
}

#[test]
fn a_cancel_in_postcopy_leaves_the_source_paused_and_the_destination_recoverable() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-cancel");
    let (mut src, mut dst, _link) = slow_postcopy(&dir);
    assert_refused_while_migrating(&mut src.mon, "migrate_set_capability postcopy-ram off");
    assert_refused_while_migrating(&mut src.mon, "migrate tcp:127.0.0.1:1");
    src.mon.cmd("migrate_cancel");
    let (info, _) = wait_end(&mut src.mon, T);
    assert_eq!(info_field(&info, "Migration status"), Some("cancelled"), "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    wait_status(&mut dst.mon, "postcopy-paused");
    assert!(dst.g.stderr().contains("Detected IO failure for postcopy. Migration paused."));
    // Its vCPUs may wait on missing pages: `stop` and `cont` still work, `quit` ends it.
    assert_eq!(dst.mon.cmd("stop"), "");
    assert_eq!(dst.mon.cmd("info status"), "VM status: paused\n");
    assert_eq!(dst.mon.cmd("cont"), "");
    dst.mon.send_raw(b"quit\n");
    assert_eq!(dst.g.wait_exit(T).code(), Some(0), "{}", dst.g.stderr());
}

#[test]
fn a_dead_destination_pauses_the_postcopy_source() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-dead");
    let (mut src, mut dst, _link) = slow_postcopy(&dir);
    let t0 = Instant::now();
    let _ = dst.g.child.kill();
    let _ = dst.g.child.wait();
    eprintln!("killed after {:?}", t0.elapsed());
    wait_status(&mut src.mon, "postcopy-paused");
    eprintln!("paused after {:?}", t0.elapsed());
    src.g.collect_for(Duration::from_millis(300));
    let hb = heartbeats(&src.g.seen).len();
    src.g.collect_for(Duration::from_millis(300));
    assert_eq!(heartbeats(&src.g.seen).len(), hb, "the guest stays paused at the source");
    src.mon.cmd("migrate_cancel");
    let (info, _) = wait_end(&mut src.mon, T);
    eprintln!("cancelled after {:?}", t0.elapsed());
    assert_eq!(info_field(&info, "Migration status"), Some("cancelled"), "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
}

/// The same through QMP (qemu.qmp's `qmp-shell`): `migrate-set-capabilities`,
/// `migrate-start-postcopy`, `query-migrate` with the post-copy figures, and QEMU's
/// errors for `migrate-recover` and a `migrate` with `resume` where nothing is paused.
#[test]
fn postcopy_through_qmp() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-qmp");
    let (mut src, qmp) = node_with_qmp(&dir, DIRTY);
    src.g.wait_for("VERIFY 1 ok", T);
    let dqmp = dir.join("dqmp.sock");
    let dqmp_arg = format!("unix:{},server,nowait", dqmp.display());
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    let mut dst = node(&dir, "dst", "1G", "2", DIRTY, &["-incoming", &inc, "-qmp", &dqmp_arg]);
    let caps = "migrate-set-capabilities capabilities=[{\"capability\":\"postcopy-ram\",\"state\":true}]\n";
    let out = common::qmp::qmp_shell(dqmp.to_str().unwrap(), &format!("{caps}migrate-recover uri=tcp:127.0.0.1:1\n"));
    assert!(out.contains("Migrate recover can only be run when postcopy is paused."), "{out}");
    let out = common::qmp::qmp_shell(
        qmp.to_str().unwrap(),
        &format!(
            "{caps}migrate uri=tcp:127.0.0.1:1 resume=true\nmigrate-set-parameters max-bandwidth=33554432\nmigrate uri={inc}\nmigrate-start-postcopy\n"
        ),
    );
    assert!(out.contains("Cannot resume if there is no paused migration"), "{out}");
    let (info, seen) = wait_end(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info} {out}");
    assert!(seen.iter().any(|s| s == "postcopy-active"), "{seen:?}");
    let q = common::qmp::qmp_shell(qmp.to_str().unwrap(), "query-migrate\n");
    let n = |key: &str| json_num(&q, key);
    assert_eq!(n("postcopy-requests"), info_num(&info, "postcopy request count").unwrap(), "{q}");
    assert_eq!(n("postcopy-bytes") >> 10, info_num(&info, "postcopy ram").unwrap(), "{q}");
    check_moved(&mut src, &mut dst);
}

/// `max-postcopy-bandwidth` holds the post-copy phase (and not the pre-copy) to its rate.
#[test]
fn max_postcopy_bandwidth_holds_the_postcopy_phase() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-bw");
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    let (mut dst, inc) = destination(&dir, "dst", true);
    assert_eq!(src.mon.cmd("migrate_set_capability postcopy-ram on"), "");
    assert_eq!(src.mon.cmd("migrate_set_parameter max-postcopy-bandwidth 16m"), "");
    assert!(
        src.mon
            .cmd("info migrate_parameters")
            .contains("\nmax-postcopy-bandwidth: 16777216\n")
    );
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    assert_eq!(src.mon.cmd("migrate_start_postcopy"), "");
    wait_status(&mut src.mon, "postcopy-active");
    let t0 = Instant::now();
    let (info, _) = wait_end(&mut src.mon, Duration::from_secs(120));
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let bytes = info_num(&info, "postcopy ram").unwrap() as f64 * 1024.0;
    let rate = bytes / took;
    assert!(bytes > 16e6, "{info}");
    assert!(rate < 16.0 * 1048576.0 * 1.1, "{rate} B/s over {took} s: {info}");
    check_moved(&mut src, &mut dst);
}

/// A `system_reset` at the source during post-copy changes nothing: the guest lives at the
/// destination, which still needs the source's pages.
#[test]
fn a_reset_at_the_source_during_postcopy_is_ignored() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-reset");
    let (mut src, mut dst, _link) = slow_postcopy(&dir);
    assert_eq!(src.mon.cmd("system_reset"), "");
    let (info, _) = wait_end(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    check_moved(&mut src, &mut dst);
}

/// A `system_reset` at the destination during post-copy waits for the post-copy to end
/// (the VM cannot be rebuilt while its RAM is still arriving), then the guest boots again.
#[test]
fn a_reset_at_the_destination_waits_for_the_postcopy() {
    let _l = vm_lock();
    let dir = tmpdir("postcopy-dst-reset");
    let (mut src, mut dst, _link) = slow_postcopy(&dir);
    assert_eq!(dst.mon.cmd("system_reset"), "");
    dst.g.collect_for(Duration::from_millis(300));
    if info_field(&dst.mon.cmd("info migrate"), "Migration status") == Some("postcopy-active") {
        assert!(!dst.g.seen.iter().any(|l| l.text.contains("PROBE READY")), "reset before the end");
    }
    let (info, _) = wait_end(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    dst.g.wait_for("PROBE READY", T);
    dst.g.wait_for("VERIFY 1 ok", T);
    assert_eq!(dst.mon.cmd("info status"), "VM status: running\n");
}
