//! multifd: pages over several connections at once, with and without compression, over
//! tcp: and unix:, on the probe guest; the destination verifies every page of the working
//! set. Refusals (exec:, one side only, during a migration) and failures (cancel, the
//! destination killed) leave the source running.

mod common;

use common::hmp::{info_field, info_num};
use common::migrate::{
    Node, assert_destination_clean, assert_refused_while_migrating, cancel_or_kill, check_moved, check_one_sided_capability_refused,
    check_source_ran_on, incoming_node, json_num, node, node_with_qmp, pattern_hits, tcp_destination, wait_migration,
};
use common::{free_port, tmpdir, vm_lock};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
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
    let mut n = incoming_node(dir, name, DIRTY, &inc, &[]);
    if let Some((channels, comp)) = mf {
        set_multifd(&mut n, channels, comp);
    }
    (n, inc)
}

fn set_multifd(n: &mut Node, channels: u8, comp: &str) {
    assert_eq!(n.mon.cmd("migrate_set_capability multifd on"), "");
    assert!(n.mon.cmd("info migrate_capabilities").contains("\nmultifd: on\n"));
    assert_eq!(n.mon.cmd(&format!("migrate_set_parameter multifd-channels {channels}")), "");
    assert_eq!(n.mon.cmd(&format!("migrate_set_parameter multifd-compression {comp}")), "");
}

/// One hop of a chain: `src` migrates to a fresh destination with multifd as given; the
/// figures are checked, the destination verified, and it is returned as the next source.
/// With `xbzrle` on too (both sides), the pages still go to the channels, as in QEMU 7.2.
fn hop(dir: &Path, src: &mut Node, name: &str, unix: bool, channels: u8, comp: &str, xbzrle: bool) -> Node {
    let (mut dst, inc) = destination(dir, name, unix, Some((channels, comp)));
    set_multifd(src, channels, comp);
    let x = if xbzrle { "on" } else { "off" };
    for n in [&mut *src, &mut dst] {
        assert_eq!(n.mon.cmd(&format!("migrate_set_capability xbzrle {x}")), "");
    }
    let params = src.mon.cmd("info migrate_parameters");
    let want = format!("\nmultifd-channels: {channels}\nmultifd-compression: {comp}\n");
    assert!(params.contains(&want), "{params}");
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
        (false, 2, "none", false),
        (true, 4, "zstd", false),
        (false, 4, "zlib", false),
        (true, 2, "none", false),
        (false, 2, "zstd", true),
        (true, 4, "zlib", false),
    ];
    for (i, (unix, channels, comp, xbzrle)) in hops.into_iter().enumerate() {
        let next = hop(&dir, &mut src, &format!("n{}", i + 1), unix, channels, comp, xbzrle);
        src = next;
    }
}

#[test]
fn multifd_is_refused_for_exec_and_on_one_side_only_with_one_line() {
    let _l = vm_lock();
    let dir = tmpdir("multifd-refused");
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    set_multifd(&mut src, 2, "zstd");
    // Post-copy cannot join multifd (godwit's channels write guest RAM directly).
    let refused = src.mon.cmd("migrate_set_capability postcopy-ram on");
    assert_eq!(refused, "Error: Postcopy is not yet compatible with multifd\n");
    let caps = src.mon.cmd("info migrate_capabilities");
    assert!(caps.contains("postcopy-ram: off") && caps.contains("multifd: on"), "{caps}");
    // QEMU 7.2's words; nothing was started.
    let out = dir.join("never");
    let exec = format!("migrate -d \"exec:cat > {}\"", out.display());
    assert_eq!(src.mon.cmd(&exec), "Error: multifd is not supported by current protocol\n");
    let info = src.mon.cmd("info migrate");
    assert_eq!(info_field(&info, "Migration status"), Some("failed"), "{info}");
    assert!(!out.exists());
    for (name, on_src, unix) in [("dst0", true, false), ("dst1", false, true)] {
        let (mut dst, inc) = destination(&dir, name, unix, (!on_src).then_some((2, "zstd")));
        check_one_sided_capability_refused(&mut src, &mut dst, &inc, "multifd", on_src);
    }
    check_source_ran_on(&mut src);
}

#[test]
fn a_cancel_or_a_dead_destination_leaves_a_multifd_source_running() {
    let _l = vm_lock();
    let dir = tmpdir("multifd-cancel");
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    set_multifd(&mut src, 4, "zlib");
    assert_eq!(src.mon.cmd("migrate_set_parameter max-bandwidth 5m"), "");
    for (name, kill, unix) in [
        ("dst0", false, false),
        ("dst1", true, false),
        ("dst2", false, true),
        ("dst3", true, true),
    ] {
        let (mut dst, inc) = destination(&dir, name, unix, Some((4, "zlib")));
        assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
        let info = common::migrate::wait_active(&mut src.mon);
        assert!(info_num(&info, "multifd bytes").unwrap_or(0) > 0, "{info}");
        assert_refused_while_migrating(&mut src.mon, "migrate_set_capability multifd off");
        let info = cancel_or_kill(&mut src, &mut dst, kill);
        let status = info_field(&info, "Migration status").unwrap();
        if kill {
            assert!(status.starts_with("failed ("), "{info}");
        } else {
            assert_eq!(status, "cancelled", "{info}");
        }
        assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
        let _ = dst.g.wait_exit(T);
    }
    check_source_ran_on(&mut src);
    // And the next migration goes through, every page verified.
    hop(&dir, &mut src, "dst4", true, 4, "zlib", false);
}

/// A relay in front of a tcp: destination that forwards every connection (the main one
/// and the channels) and keeps what each source connection sent, for a look at the wire.
struct AllRelay {
    port: u16,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AllRelay {
    fn start(to_port: u16) -> AllRelay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let all = sent.clone();
        std::thread::spawn(move || {
            for src in l.incoming() {
                let Ok(src) = src else { return };
                let Ok(dst) = TcpStream::connect(("127.0.0.1", to_port)) else {
                    return;
                };
                let (mut back_r, mut back_w) = (dst.try_clone().unwrap(), src.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut back_r, &mut back_w);
                    let _ = back_w.shutdown(Shutdown::Write);
                });
                let all = all.clone();
                std::thread::spawn(move || {
                    let (mut r, mut w, mut kept) = (src, dst, Vec::new());
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = r.read(&mut buf) {
                        if n == 0 || w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        kept.extend_from_slice(&buf[..n]);
                    }
                    let _ = w.shutdown(Shutdown::Write);
                    all.lock().unwrap().push(kept);
                });
            }
        });
        AllRelay { port, sent }
    }
}

#[test]
fn multifd_channels_run_over_tls_and_no_page_shows_on_the_wire() {
    let _l = vm_lock();
    let dir = tmpdir("multifd-tls");
    common::certs::pair(&dir);
    let creds = |end: &str| format!("tls-creds-x509,id=tls0,dir={},endpoint={end}", dir.join(end).display());
    let (cc, sc) = (creds("client"), creds("server"));
    let mut src = node(&dir, "src", "1G", "2", DIRTY, &["-object", &cc]);
    src.g.wait_for("VERIFY 1 ok", T);
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = node(&dir, "dst", "1G", "2", DIRTY, &["-object", &sc, "-incoming", &inc]);
    set_multifd(&mut dst, 3, "zstd");
    assert_eq!(dst.mon.cmd("migrate_set_parameter tls-creds tls0"), "");
    set_multifd(&mut src, 3, "zstd");
    for p in ["tls-creds tls0", "tls-hostname localhost", "max-bandwidth 0"] {
        assert_eq!(src.mon.cmd(&format!("migrate_set_parameter {p}")), "");
    }
    let relay = AllRelay::start(port);
    assert_eq!(src.mon.cmd(&format!("migrate -d tcp:127.0.0.1:{}", relay.port)), "");
    let info = wait_migration(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    assert!(info_num(&info, "multifd bytes").unwrap_or(0) > 60 << 10, "{info}");
    check_moved(&mut src, &mut dst);
    // Four connections (the main one, three channels), none showing a page of the guest.
    std::thread::sleep(Duration::from_millis(200));
    let sent = relay.sent.lock().unwrap();
    assert_eq!(sent.len(), 4);
    let total: usize = sent.iter().map(Vec::len).sum();
    assert!(total > 64 << 20, "the working set went over the relay: {total} bytes");
    for (i, s) in sent.iter().enumerate() {
        assert_eq!(pattern_hits(s), 0, "guest pages readable on connection {i}");
    }
    drop(sent);
    // The control: onward without TLS, the same look finds the pages on the channels.
    let port2 = free_port();
    let mut last = node(&dir, "last", "1G", "2", DIRTY, &["-incoming", &format!("tcp:127.0.0.1:{port2}")]);
    set_multifd(&mut last, 3, "zstd");
    assert_eq!(dst.mon.cmd("migrate_set_parameter tls-creds \"\""), "");
    assert_eq!(dst.mon.cmd("migrate_set_parameter max-bandwidth 0"), "");
    let plain = AllRelay::start(port2);
    assert_eq!(dst.mon.cmd(&format!("migrate -d tcp:127.0.0.1:{}", plain.port)), "");
    let info = wait_migration(&mut dst.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    check_moved(&mut dst, &mut last);
    std::thread::sleep(Duration::from_millis(200));
    let sent = plain.sent.lock().unwrap();
    assert_eq!(sent.len(), 4);
    let hits: usize = sent.iter().map(|s| pattern_hits(s)).sum();
    assert!(hits > 10_000, "the check finds plaintext pages: {hits}");
}

/// auto-converge with multifd compares the guest's dirtying with the pages sent on the
/// channels (before compression, as QEMU 7.2 counts them): a guest dirtying a fifth of
/// what goes out is never throttled, and arrives whole.
#[test]
fn auto_converge_counts_the_pages_sent_on_the_channels() {
    let _l = vm_lock();
    let dir = tmpdir("multifd-ac");
    let lazy = "probe.ws=64 probe.rate=10";
    let mut src = node(&dir, "src", "1G", "2", lazy, &[]);
    src.g.wait_for("VERIFY 1 ok", T);
    let (mut dst, inc) = tcp_destination(&dir, "dst", lazy, &[]);
    set_multifd(&mut dst, 2, "zstd");
    set_multifd(&mut src, 2, "zstd");
    assert_eq!(src.mon.cmd("migrate_set_capability auto-converge on"), "");
    assert_eq!(src.mon.cmd("migrate_set_parameter max-bandwidth 50m"), "");
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let info = loop {
        let t = src.mon.cmd("info migrate");
        assert!(!t.contains("cpu throttle percentage"), "{t}");
        let status = info_field(&t, "Migration status").unwrap_or("").to_string();
        if !matches!(status.as_str(), "setup" | "active") {
            break t;
        }
        assert!(std::time::Instant::now() < end, "{t}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    // Long enough for several auto-converge periods (250 ms each).
    assert!(info_num(&info, "total time").unwrap() > 800, "{info}");
    check_moved(&mut src, &mut dst);
}

/// `migrate -b` with multifd: the disk goes on the main stream, RAM on the channels; the
/// destination's probe then finds both its memory and its disk right.
#[test]
fn a_block_migration_with_multifd_moves_ram_and_disk() {
    let _l = vm_lock();
    let dir = tmpdir("multifd-block");
    let (si, di) = (dir.join("src.raw"), dir.join("dst.raw"));
    for img in [&si, &di] {
        let o = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "raw", img.to_str().unwrap(), "64M"])
            .output()
            .expect("qemu-img");
        assert!(o.status.success(), "{o:?}");
    }
    // The disk's generations (`dgen[]`) live in guest RAM, with the working set: the
    // verifiers on the destination check RAM and disk as the channels and the main
    // stream brought them.
    let app = "probe.ws=32 probe.rate=20 probe.disk=8 probe.diskrate=1024";
    let drive = |p: &Path| format!("file={},format=raw,if=virtio", p.display());
    let mut src = node(&dir, "src", "1G", "2", app, &["-drive", &drive(&si)]);
    // (The working set's first pass comes before the disk's.)
    src.g.wait_for("DISKVERIFY 1 ok", T);
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    let mut dst = node(&dir, "dst", "1G", "2", app, &["-drive", &drive(&di), "-incoming", &inc]);
    set_multifd(&mut dst, 2, "zstd");
    set_multifd(&mut src, 2, "zstd");
    assert_eq!(src.mon.cmd("migrate_set_parameter max-bandwidth 0"), "");
    assert_eq!(src.mon.cmd(&format!("migrate -d -b {inc}")), "");
    let info = wait_migration(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let n = |k: &str| info_num(&info, k).unwrap_or_else(|| panic!("no {k}: {info}"));
    assert!(n("multifd bytes") > 30 << 10, "{info}");
    // The disk's records are not RAM: what the main stream carried besides is small.
    assert!(n("transferred ram") - n("multifd bytes") < 4 << 10, "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    // A whole pass of each verifier on the destination.
    let end = std::time::Instant::now() + T;
    let passed = |g: &common::Guest, what: &str| g.seen.iter().any(|l| l.text.starts_with(what) && l.text.ends_with(" ok"));
    while !(passed(&dst.g, "VERIFY ") && passed(&dst.g, "DISKVERIFY ")) {
        assert!(std::time::Instant::now() < end, "no verify passes on the destination");
        dst.g.collect_for(Duration::from_millis(100));
    }
    assert_destination_clean(&dst.g, &["MISMATCH", "bad=", "DISK ERROR", "FAULT", "PROBE READY"]);
}

/// Through QMP (the real client): capabilities and parameters set and shown, bad values
/// refused in QEMU's words, and `multifd-bytes` in `query-migrate` as `info migrate` has it.
#[test]
fn multifd_through_qmp() {
    let _l = vm_lock();
    let dir = tmpdir("multifd-qmp");
    let (mut src, qmp) = node_with_qmp(&dir, DIRTY);
    src.g.wait_for("VERIFY 1 ok", T);
    let (mut dst, inc) = destination(&dir, "dst", true, Some((3, "zstd")));
    let q = |lines: &str| common::qmp::qmp_shell(qmp.to_str().unwrap(), lines);
    let out = q("migrate-set-parameters multifd-compression=lz4\nmigrate-set-parameters multifd-zstd-level=21\n");
    assert!(out.contains("Parameter 'multifd-compression' does not accept value 'lz4'"), "{out}");
    assert!(
        out.contains("Parameter 'multifd_zstd_level' expects a value between 0 and 20"),
        "{out}"
    );
    let out = q(
        "migrate-set-capabilities capabilities=[{\"capability\":\"multifd\",\"state\":true}]\nmigrate-set-parameters multifd-channels=3 multifd-compression=zstd multifd-zstd-level=2 max-bandwidth=0\n",
    );
    assert!(!out.contains("error"), "{out}");
    let caps = q("query-migrate-capabilities\n");
    assert!(
        caps.contains("\"capability\": \"multifd\", \"state\": true") || caps.contains("\"state\": true, \"capability\": \"multifd\""),
        "{caps}"
    );
    let p = q("query-migrate-parameters\n");
    assert_eq!(
        (json_num(&p, "multifd-channels"), json_num(&p, "multifd-zstd-level")),
        (3, 2),
        "{p}"
    );
    assert!(p.contains("\"multifd-compression\": \"zstd\""), "{p}");
    let out = q(&format!("migrate uri={inc}\n"));
    assert!(!out.contains("error"), "{out}");
    let info = wait_migration(&mut src.mon, Duration::from_secs(120));
    assert_eq!(info_field(&info, "Migration status"), Some("completed"), "{info}");
    let m = q("query-migrate\n");
    let bytes = json_num(&m, "multifd-bytes");
    assert_eq!(bytes >> 10, info_num(&info, "multifd bytes").unwrap(), "{m}");
    assert!(bytes > 60 << 20, "{m}");
    check_moved(&mut src, &mut dst);
}
