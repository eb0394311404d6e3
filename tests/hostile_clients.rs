//! Hostile monitor clients against a running godwit over real sockets: endless lines,
//! escape sequences, telnet negotiation garbage and random bytes to HMP (unix and telnet);
//! deep nesting, huge strings, too many tokens and stray bytes to QMP, each refused with
//! QEMU 7.2's error, after which the same client is served. The guest runs on and
//! godwit's memory stays bounded. Then a churn: dozens of clients connecting to HMP and
//! QMP sockets, sending partial commands and vanishing, while a live migration runs and
//! another client polls it.

mod common;

use common::raw::{Conn, Raw, rss_kib};
use common::{Guest, free_port, heartbeats, probe, tmpdir, vm_lock};
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
/// Most godwit's RSS may grow over the first round of hostile input (tens of MiB of it):
/// the monitors' buffers at their limits, and what the allocator keeps of them.
const RSS_GROWTH_KIB: u64 = 32 << 10;
/// Most it may grow over the third of three identical rounds (each sends over 30 MiB):
/// what the first two leave in the allocator (an arena per monitor thread) is reused,
/// nothing is kept per input.
const RSS_AGAIN_KIB: u64 = 8 << 10;

/// xorshift64*: the same bytes on every run, none of them in `avoid`.
fn random_bytes(seed: u64, len: usize, avoid: &[u8]) -> Vec<u8> {
    let mut x = seed;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        if !avoid.contains(&b) {
            v.push(b);
        }
    }
    v
}

fn wait_for_path(p: &Path) {
    let end = Instant::now() + T;
    while !p.exists() {
        assert!(Instant::now() < end, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn boot(dir: &Path, telnet: u16) -> Guest {
    let p = probe();
    let hmp = format!("unix:{},server,nowait", dir.join("hmp.sock").display());
    let tel = format!("telnet:127.0.0.1:{telnet},server,nowait");
    let qmp = format!("unix:{},server,nowait", dir.join("qmp.sock").display());
    let mut g = Guest::godwit(&[
        "-enable-kvm",
        "-m",
        "128",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-kernel",
        p.to_str().unwrap(),
        "-monitor",
        &hmp,
        "-monitor",
        &tel,
        "-qmp",
        &qmp,
    ]);
    g.wait_for("HB", T);
    wait_for_path(&dir.join("qmp.sock"));
    g
}

fn hmp_cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut telnet = Vec::new();
    for i in 0..=255u8 {
        telnet.extend_from_slice(&[0xff, i, i, 0xff, 0xfa, i, 0xff, 0xf0]);
    }
    let mut escapes = Vec::new();
    for _ in 0..2000 {
        escapes.extend_from_slice(b"\x1b[A\x1b[B\x1b[C\x1b[D\x1b[3~\x1bOH\x1b[99999999999999C\x7fab\x17\x15\t");
    }
    vec![
        ("a 4 MiB line without a newline", vec![b'x'; 4 << 20]),
        ("telnet negotiation garbage", telnet),
        ("escape sequences", escapes),
        ("random bytes", random_bytes(7, 1 << 20, &[])),
    ]
}

/// Sends each HMP case on a fresh connection; `info status` after it must be answered.
fn hostile_hmp(conn: impl Fn() -> Conn, what: &str) {
    for (case, mut input) in hmp_cases() {
        // Ends a telnet subnegotiation or an escape sequence the case may have left open.
        input.extend_from_slice(b"\xff\xf0\xff\xf0\r\r\rinfo status\r");
        let mut c = Raw::send(conn(), input);
        assert!(
            c.read_until(b"VM status: running", T),
            "{what}, {case}: no answer after it; got {}",
            c.text()
        );
        c.written().unwrap_or_else(|e| panic!("{what}, {case}: write failed: {e}"));
    }
}

fn qmp_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let deep = [vec![b'['; 5000], vec![b']'; 5000]].concat();
    let huge = [&b"{\"execute\": \""[..], &vec![b'a'; 8 << 20], b"\"}"].concat();
    let many = [b"[".to_vec(), b"1,".repeat(1 << 20), b"1]".to_vec()].concat();
    let random = random_bytes(11, 1 << 20, b"{[\"'");
    vec![
        ("5000 levels of nesting", deep, "JSON nesting depth limit exceeded"),
        ("an 8 MiB string", huge, "JSON token size limit exceeded"),
        ("a million tokens", many, "JSON token count limit exceeded"),
        ("random bytes", random, "JSON parse error, stray"),
    ]
}

fn hostile_qmp(sock: &Path) {
    for (case, input, desc) in qmp_cases() {
        let input = [
            &b"{\"execute\": \"qmp_capabilities\"}"[..],
            &input,
            b"{\"execute\": \"query-status\"}",
        ]
        .concat();
        let mut c = Raw::send(Conn::unix(sock), input);
        let error = format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}");
        assert!(c.read_until(error.as_bytes(), T), "QMP, {case}: no '{desc}'; got {}", c.text());
        assert!(
            c.read_until(b"\"status\": \"running\"", T),
            "QMP, {case}: not served after it; got {}",
            c.text()
        );
        c.written().unwrap_or_else(|e| panic!("QMP, {case}: write failed: {e}"));
    }
}

#[test]
fn hostile_input_on_every_monitor_is_refused_and_memory_stays_bounded() {
    let _l = vm_lock();
    let dir = tmpdir("hostile-input");
    let telnet = free_port();
    let mut g = boot(&dir, telnet);
    let pid = g.child.id();
    let mut rss = vec![rss_kib(pid)];
    for _ in 0..3 {
        hostile_hmp(|| Conn::unix(&dir.join("hmp.sock")), "HMP over unix");
        hostile_hmp(|| Conn::tcp(&format!("127.0.0.1:{telnet}")), "HMP over telnet");
        hostile_qmp(&dir.join("qmp.sock"));
        rss.push(rss_kib(pid));
    }
    eprintln!("hostile input: godwit VmRSS {rss:?} KiB before and after each round");
    assert!(rss[1] < rss[0] + RSS_GROWTH_KIB, "RSS grew from {} to {} KiB", rss[0], rss[1]);
    assert!(
        rss[3] < rss[2] + RSS_AGAIN_KIB,
        "RSS grew from {} to {} KiB on the same input again",
        rss[2],
        rss[3]
    );
    let hb = heartbeats(&g.collect_for(Duration::from_millis(1500)));
    assert!(hb.len() >= 2, "the guest stopped: {hb:?}");
    assert!(g.child.try_wait().unwrap().is_none(), "godwit exited: {}", g.stderr());
}

/// What churning clients send before they vanish, by monitor kind.
const HMP_PARTIAL: &[&[u8]] = &[
    b"",
    b"info sta",
    b"migrate_set_speed 1",
    b"\x1b[",
    b"\xff\xfa\x18",
    b"info migrate\rinfo st",
];
const QMP_PARTIAL: &[&[u8]] = &[
    b"",
    b"{\"execute\": \"qmp_capa",
    b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-migrate\"",
    b"[[[[[[[[",
    b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-status\"}",
];

/// Connects, sends one partial command, maybe reads a little, and vanishes, until
/// `stop`; returns how many clients came and went.
fn churn(conn: impl Fn() -> Conn, partial: &'static [&'static [u8]], stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut c = Raw::send(conn(), partial[n as usize % partial.len()].to_vec());
        if n % 2 == 0 {
            c.read_until(b"\n", Duration::from_millis(20));
        }
        let _ = c.written();
        drop(c);
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    n
}

#[test]
fn clients_churning_during_a_migration_harm_nothing() {
    use common::hmp::info_field;
    use common::migrate::node;
    use std::sync::atomic::{AtomicBool, Ordering};
    let _l = vm_lock();
    let dir = tmpdir("hostile-churn");
    let (telnet, port) = (free_port(), free_port());
    let append = "probe.ws=32 probe.rate=20";
    let (hmp2, qmp) = (dir.join("churn-hmp.sock"), dir.join("churn-qmp.sock"));
    let extra = [
        format!("telnet:127.0.0.1:{telnet},server,nowait"),
        format!("unix:{},server,nowait", hmp2.display()),
        format!("unix:{},server,nowait", qmp.display()),
    ];
    let mut src = node(
        &dir,
        "src",
        "256",
        "1",
        append,
        &["-monitor", &extra[0], "-monitor", &extra[1], "-qmp", &extra[2]],
    );
    src.g.wait_for("VERIFY", T);
    let inc = format!("tcp:127.0.0.1:{port}");
    let mut dst = node(&dir, "dst", "256", "1", append, &["-incoming", &inc]);
    let pid = src.g.child.id();
    let before = rss_kib(pid);
    let stop = AtomicBool::new(false);
    let tel = format!("127.0.0.1:{telnet}");
    let (clients, served, after) = std::thread::scope(|s| {
        let churners = [
            s.spawn(|| churn(|| Conn::tcp(&tel), HMP_PARTIAL, &stop)),
            s.spawn(|| churn(|| Conn::unix(&hmp2), HMP_PARTIAL, &stop)),
            s.spawn(|| churn(|| Conn::unix(&qmp), QMP_PARTIAL, &stop)),
        ];
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(src.mon.cmd("migrate_set_speed 64m"), "");
        assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
        let mut served = 0u32;
        let end = Instant::now() + Duration::from_secs(120);
        let status = loop {
            let t = src.mon.cmd("info migrate");
            let status = info_field(&t, "Migration status")
                .unwrap_or_else(|| panic!("not served normally: {t}"))
                .to_string();
            served += 1;
            if !matches!(status.as_str(), "setup" | "active" | "device") || Instant::now() > end {
                break status;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status, "completed");
        let after = rss_kib(pid);
        stop.store(true, Ordering::Relaxed);
        let clients: Vec<u64> = churners.into_iter().map(|c| c.join().expect("churn thread")).collect();
        (clients, served, after)
    });
    eprintln!(
        "churn: {clients:?} clients (telnet HMP, unix HMP, QMP) came and went during the migration; \
         {served} `info migrate` served meanwhile; source VmRSS {before} KiB before, {after} KiB after"
    );
    assert!(clients.iter().all(|&c| c >= 12), "too few clients churned: {clients:?}");
    assert!(served >= 5, "the migration was over before the churn did anything");
    assert!(after < before + RSS_GROWTH_KIB, "RSS grew from {before} to {after} KiB");
    let verify = dst.g.wait_for("VERIFY", T);
    assert!(verify.text.contains(" ok"), "{}", verify.text);
    let hb = heartbeats(&dst.g.collect_for(Duration::from_millis(1000)));
    assert!(
        hb.windows(2).all(|w| w[1] == w[0] + 1) && hb.len() >= 2,
        "destination heartbeats: {hb:?}"
    );
    assert_eq!(dst.mon.cmd("info status"), "VM status: running\n");
}
