//! Running pairs of godwit processes for migration tests.
#![allow(dead_code)]

use super::hmp::{Hmp, info_field};
use super::{Guest, free_port, heartbeats, probe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Node {
    pub g: Guest,
    pub mon: Hmp,
    pub sock: PathBuf,
}

/// Starts godwit with the probe, serial on stdout and a unix-socket monitor.
pub fn node(dir: &Path, name: &str, mem: &str, smp: &str, append: &str, extra: &[&str]) -> Node {
    let sock = dir.join(format!("{name}.sock"));
    let spec = format!("unix:{},server,nowait", sock.display());
    let p = probe();
    let mut args = vec![
        "-enable-kvm",
        "-m",
        mem,
        "-smp",
        smp,
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        &spec,
        "-kernel",
        p.to_str().unwrap(),
        "-append",
        append,
    ];
    args.extend_from_slice(extra);
    let g = Guest::godwit(&args);
    let mon = Hmp::unix(&sock);
    Node { g, mon, sock }
}

/// Starts a 1G, 2-vCPU source named `src` with a QMP socket (`dir/qmp.sock`) besides its
/// monitor; returns it and the QMP socket's path.
pub fn node_with_qmp(dir: &Path, append: &str) -> (Node, PathBuf) {
    let qmp = dir.join("qmp.sock");
    let qmp_arg = format!("unix:{},server,nowait", qmp.display());
    (node(dir, "src", "1G", "2", append, &["-qmp", &qmp_arg]), qmp)
}

/// Starts a 1G, 2-vCPU destination on `-incoming inc` and sets each capability in `caps`
/// on through its monitor.
pub fn incoming_node(dir: &Path, name: &str, append: &str, inc: &str, caps: &[&str]) -> Node {
    let mut n = node(dir, name, "1G", "2", append, &["-incoming", inc]);
    for cap in caps {
        assert_eq!(n.mon.cmd(&format!("migrate_set_capability {cap} on")), "");
    }
    n
}

/// `incoming_node` on a free local tcp: port; returns the node and its URI.
pub fn tcp_destination(dir: &Path, name: &str, append: &str, caps: &[&str]) -> (Node, String) {
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    (incoming_node(dir, name, append, &inc, caps), inc)
}

/// What must never show on a destination running a migrated probe: a page or block
/// wrong, the guest booting again, or a fault.
pub const BAD_ON_DESTINATION: &[&str] = &["MISMATCH", "bad=", "PROBE READY", "FAULT"];

/// Asserts that none of `bad` shows in the destination's output so far.
pub fn assert_destination_clean(dst: &Guest, bad: &[&str]) {
    for bad in bad {
        assert!(!dst.seen.iter().any(|l| l.text.contains(bad)), "{bad} on the destination");
    }
}

/// The destination runs its disk-writing guest to the probe's exit (status 0) with at
/// least one whole disk pass verified and nothing wrong on its RAM or disk.
pub fn run_disk_guest_to_exit(dst: &mut Node) {
    dst.g.wait_for("PROBE EXIT", Duration::from_secs(60));
    assert_eq!(dst.g.wait_exit(Duration::from_secs(30)).code(), Some(0), "{}", dst.g.stderr());
    for bad in ["MISMATCH", "bad=", "DISK ERROR", "FAULT"] {
        assert!(!dst.g.seen.iter().any(|l| l.text.contains(bad)), "{bad}: {:#?}", dst.g.seen);
    }
    assert!(
        dst.g
            .seen
            .iter()
            .any(|l| l.text.starts_with("DISKVERIFY") && l.text.ends_with(" ok"))
    );
}

/// The migration has moved the guest: the source is paused after it, the destination
/// (once `settle` has waited on its output) runs the guest on from where the source
/// stopped, and none of `BAD_ON_DESTINATION` shows there.
pub fn check_moved_after(src: &mut Node, dst: &mut Node, settle: impl FnOnce(&mut Guest)) {
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    src.g.collect_for(Duration::from_millis(300)); // its output up to the switch-over
    settle(&mut dst.g);
    assert_eq!(dst.mon.cmd("info status"), "VM status: running\n");
    let (src_hb, dst_hb) = (heartbeats(&src.g.seen), heartbeats(&dst.g.seen));
    let last = *src_hb.last().expect("source heartbeats");
    assert!(dst_hb[0] == last + 1 || dst_hb[0] == last + 2, "{last} then {:?}", &dst_hb[..3]);
    assert_destination_clean(&dst.g, BAD_ON_DESTINATION);
}

/// `check_moved_after` with two whole passes of the probe's verifier over the working set
/// on the destination, every page right.
pub fn check_moved(src: &mut Node, dst: &mut Node) {
    let t = Duration::from_secs(30);
    check_moved_after(src, dst, |g| {
        g.wait_for("VERIFY", t);
        g.wait_for("VERIFY", t);
    });
}

/// After a failed or cancelled migration: the source's guest ran on without a gap in its
/// heartbeats and its verifier found no page wrong.
pub fn check_source_ran_on(src: &mut Node) {
    src.g.collect_for(Duration::from_millis(300));
    let hb = heartbeats(&src.g.seen);
    assert!(hb.windows(2).all(|w| w[1] == w[0] + 1), "{hb:?}");
    assert!(!src.g.seen.iter().any(|l| l.text.contains("MISMATCH") || l.text.contains("bad=")));
}

/// With `cap` on at one end only (`on_src`: at the source, else at `dst`), `migrate -d inc`
/// fails: the source reports the destination's refusal in its status and runs on, and the
/// destination exits with one line about `cap` on stderr.
pub fn check_one_sided_capability_refused(src: &mut Node, dst: &mut Node, inc: &str, cap: &str, on_src: bool) {
    let t = Duration::from_secs(30);
    let set = if on_src { "on" } else { "off" };
    assert_eq!(src.mon.cmd(&format!("migrate_set_capability {cap} {set}")), "");
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    let info = wait_migration(&mut src.mon, t);
    let (a, b) = if on_src { ("on", "off") } else { ("off", "on") };
    let want = format!("failed (the destination refused: capability '{cap}' is {a} at the source but {b} here)");
    assert_eq!(info_field(&info, "Migration status"), Some(want.as_str()), "{info}");
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    let _ = dst.g.wait_exit(t);
    let err = dst.g.stderr();
    assert_eq!(err.lines().filter(|l| l.contains(cap)).count(), 1, "{err}");
}

/// Ends a running migration with `migrate_cancel` at the source, or (`kill`) by killing
/// the destination; waits for the source to see the end and returns its last `info migrate`.
pub fn cancel_or_kill(src: &mut Node, dst: &mut Node, kill: bool) -> String {
    if kill {
        dst.g.child.kill().unwrap();
    } else {
        assert_eq!(src.mon.cmd("migrate_cancel"), "");
    }
    wait_migration(&mut src.mon, Duration::from_secs(30))
}

/// Asserts that `cmd` is refused because a migration is in progress.
pub fn assert_refused_while_migrating(mon: &mut Hmp, cmd: &str) {
    assert_eq!(mon.cmd(cmd), "Error: There's a migration process in progress\n");
}

/// The first number after `"key": ` in `json` (a QMP answer).
pub fn json_num(json: &str, key: &str) -> u64 {
    let at = json.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 4..];
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())]
        .parse()
        .unwrap()
}

/// Polls `info migrate` until the status is no longer setup/active/cancelling.
pub fn wait_migration(src: &mut Hmp, timeout: Duration) -> String {
    let end = Instant::now() + timeout;
    loop {
        let t = src.cmd("info migrate");
        match info_field(&t, "Migration status").map(|s| s.split_whitespace().next().unwrap_or("")) {
            Some("setup") | Some("active") | Some("cancelling") => {}
            _ => return t,
        }
        assert!(Instant::now() < end, "migration still running after {timeout:?}: {t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `info migrate` shows a transfer in progress with data moved.
pub fn wait_active(src: &mut Hmp) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let t = src.cmd("info migrate");
        if info_field(&t, "Migration status") == Some("active") && super::hmp::info_num(&t, "transferred ram").unwrap_or(0) > 1024 {
            return t;
        }
        assert!(Instant::now() < end, "migration never became active: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP relay between a migration's source and its destination that counts the bytes
/// the source sends: the figure on the wire, measured outside godwit.
pub struct Relay {
    pub port: u16,
    pub bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// With `recording`: every byte the source sent, and every byte that came back.
    pub wire: std::sync::Arc<std::sync::Mutex<(Vec<u8>, Vec<u8>)>>,
}

impl Relay {
    pub fn start(to_port: u16) -> Relay {
        Relay::start_with(to_port, true)
    }

    /// With `answers` false, what the destination sends back is read and dropped, while
    /// the connection to the source stays open: the source hears nothing, not even EOF.
    pub fn start_with(to_port: u16, answers: bool) -> Relay {
        Relay::spawn(to_port, answers, false)
    }

    /// A relay that keeps a copy of both directions (see `wire`).
    pub fn recording(to_port: u16) -> Relay {
        Relay::spawn(to_port, true, true)
    }

    fn spawn(to_port: u16, answers: bool, record: bool) -> Relay {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = bytes.clone();
        let wire = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new())));
        let (fwd, back) = (wire.clone(), wire.clone());
        std::thread::spawn(move || {
            let Ok((src, _)) = l.accept() else { return };
            let Ok(dst) = TcpStream::connect(("127.0.0.1", to_port)) else {
                return;
            };
            let (mut src_r, mut dst_w) = (src.try_clone().unwrap(), dst.try_clone().unwrap());
            let (mut dst_r, mut src_w) = (dst, src);
            // The way back (the destination's answers) is relayed but not counted.
            std::thread::spawn(move || {
                if answers {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = dst_r.read(&mut buf) {
                        if n == 0 || src_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if record {
                            back.lock().unwrap().1.extend_from_slice(&buf[..n]);
                        }
                    }
                    let _ = src_w.shutdown(Shutdown::Write);
                } else {
                    let _ = std::io::copy(&mut dst_r, &mut std::io::sink());
                }
            });
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = src_r.read(&mut buf) {
                if n == 0 || dst_w.write_all(&buf[..n]).is_err() {
                    break;
                }
                count.fetch_add(n as u64, Ordering::SeqCst);
                if record {
                    fwd.lock().unwrap().0.extend_from_slice(&buf[..n]);
                }
            }
            let _ = dst_w.shutdown(Shutdown::Write);
        });
        Relay { port, bytes, wire }
    }

    pub fn sent(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Where the probe's working-set pattern shows in `bytes`: three 8-byte words in a row
/// whose differences are the pattern's step (`docs/probe.md`: word w of a page is
/// seed + w * 0xd6e8feb86659fd93). Any offset; counts the pages' worth found.
pub fn pattern_hits(bytes: &[u8]) -> usize {
    const STEP: u64 = 0xd6e8feb86659fd93;
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    let mut hits = 0;
    let mut i = 0;
    while i + 24 <= bytes.len() {
        let (a, b, c) = (word(i), word(i + 8), word(i + 16));
        if b.wrapping_sub(a) == STEP && c.wrapping_sub(b) == STEP {
            hits += 1;
            // Skip the rest of this page's words.
            i += 4096 - 24;
        } else {
            i += 1;
        }
    }
    hits
}
