//! Migrations over TLS between godwit processes, driven through the monitor with QEMU's
//! spellings (`-object tls-creds-x509`, `migrate_set_parameter tls-creds`): the guest
//! verified on the destination, nothing of its memory readable on the wire (and, as a
//! control, readable without TLS), a block migration, and every bad case failing with one
//! line on both sides while the source runs on and the destination waits for the next try.

mod common;

use common::certs::{self, CLIENT_DN, Ca};
use common::hmp::info_field;
use common::migrate::{Node, Relay, node, pattern_hits, wait_migration};
use common::{free_port, heartbeats, tmpdir, vm_lock};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
const APPEND: &str = "probe.ws=32 probe.rate=20";

fn creds(id: &str, dir: &Path, endpoint: &str) -> String {
    format!("tls-creds-x509,id={id},dir={},endpoint={endpoint}", dir.display())
}

/// Waits until a destination listens (its monitor answers a moment before).
fn listening(n: &mut Node) {
    let end = Instant::now() + T;
    while !n.mon.cmd("info migrate").contains("socket address") {
        assert!(Instant::now() < end, "never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn status(n: &mut Node) -> String {
    let info = wait_migration(&mut n.mon, Duration::from_secs(120));
    info_field(&info, "Migration status").unwrap_or("").to_string()
}

/// The source failed with `why` and its guest runs on: heartbeats keep coming.
fn failed_and_runs_on(src: &mut Node, why: &str) {
    assert_eq!(status(src), format!("failed ({why})"));
    assert_eq!(src.mon.cmd("info status"), "VM status: running\n");
    let beats = heartbeats(&src.g.collect_for(Duration::from_millis(300)));
    assert!(beats.len() >= 10, "the source's guest stopped: {beats:?}");
}

/// The destination said `line` on stderr (once it has) and still waits, listening.
fn said_and_waits(dst: &mut Node, line: &str) {
    let end = Instant::now() + T;
    while !dst.g.stderr().contains(line) {
        assert!(Instant::now() < end, "destination never said {line:?}: {}", dst.g.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dst.mon.cmd("info status"), "VM status: paused (inmigrate)\n");
    assert!(dst.mon.cmd("info migrate").contains("socket address"));
}

/// The destination's guest runs on with its working set whole, heartbeats unbroken.
fn guest_arrived(src: &mut Node, dst: &mut Node) {
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    let v = dst.g.wait_for("VERIFY", T);
    assert!(v.text.ends_with(" ok"), "{}", v.text);
    dst.g.collect_for(Duration::from_millis(300));
    assert_eq!(dst.mon.cmd("info status"), "VM status: running\n");
    for bad in ["MISMATCH", "bad=", "PROBE READY", "FAULT"] {
        assert!(!dst.g.seen.iter().any(|l| l.text.contains(bad)), "{bad} on the destination");
    }
    let hb = heartbeats(&dst.g.seen);
    assert!(hb.len() >= 10 && hb.windows(2).all(|w| w[1] == w[0] + 1), "{hb:?}");
}

#[test]
fn over_tls_the_guest_arrives_and_its_memory_never_shows_on_the_wire() {
    let _l = vm_lock();
    let dir = tmpdir("tls-good");
    certs::pair(&dir);
    let (sc, cc) = (
        creds("tls0", &dir.join("server"), "server"),
        creds("tls0", &dir.join("client"), "client"),
    );
    let mut src = node(&dir, "src", "256M", "2", APPEND, &["-object", &cc]);
    src.g.wait_for("VERIFY 2 ok", T);
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    // Both credentials on the middle node: it is the first hop's destination and the
    // second hop's source.
    let mid_cc = creds("tlsc", &dir.join("client"), "client");
    let mut mid = node(
        &dir,
        "mid",
        "256M",
        "2",
        APPEND,
        &["-object", &sc, "-object", &mid_cc, "-incoming", "defer"],
    );
    assert_eq!(mid.mon.cmd("migrate_set_parameter tls-creds tls0"), "");
    assert_eq!(mid.mon.cmd(&format!("migrate_incoming {inc}")), "");
    let relay = Relay::recording(port);
    assert_eq!(src.mon.cmd("migrate_set_parameter tls-creds tls0"), "");
    assert_eq!(src.mon.cmd("migrate_set_parameter tls-hostname localhost"), "");
    let params = src.mon.cmd("info migrate_parameters");
    assert!(params.contains("tls-creds: 'tls0'\ntls-hostname: 'localhost'\n"), "{params}");
    assert!(params.ends_with("tls-authz: ''\n"), "{params}");
    assert_eq!(src.mon.cmd("migrate_set_speed 0"), "");
    assert_eq!(src.mon.cmd(&format!("migrate -d tcp:127.0.0.1:{}", relay.port)), "");
    assert_eq!(status(&mut src), "completed");
    guest_arrived(&mut src, &mut mid);
    let (sent, back) = relay.wire.lock().unwrap().clone();
    assert!(sent.len() > 32 << 20, "the working set went over the relay: {} bytes", sent.len());
    assert_eq!(pattern_hits(&sent), 0, "guest pages readable in the TLS stream");
    assert!(!back.windows(4).any(|w| w == b"GWOK"), "the answers travel inside TLS too");
    // The control: the same guest onward without TLS, the same check finds its pages.
    let port2 = free_port();
    let mut last = node(&dir, "last", "256M", "2", APPEND, &["-incoming", &format!("tcp:127.0.0.1:{port2}")]);
    listening(&mut last);
    let plain = Relay::recording(port2);
    assert_eq!(mid.mon.cmd("migrate_set_parameter tls-creds \"\""), "");
    assert_eq!(mid.mon.cmd("migrate_set_speed 0"), "");
    assert_eq!(mid.mon.cmd(&format!("migrate -d tcp:127.0.0.1:{}", plain.port)), "");
    assert_eq!(status(&mut mid), "completed");
    guest_arrived(&mut mid, &mut last);
    let (sent, back) = plain.wire.lock().unwrap().clone();
    assert!(pattern_hits(&sent) > 1000, "the check finds plaintext pages");
    assert!(back.windows(4).any(|w| w == b"GWOK"));
}

/// A source holding every kind of x509 client credentials (good, foreign CA, expired, the
/// server's) and a TLS destination with two `authz-simple` objects.
struct Pair {
    src: Node,
    dst: Node,
    inc: String,
}

fn bad_pair(dir: &Path) -> Pair {
    let (other, old) = (dir.join("other"), dir.join("old"));
    let ca = certs::pair(dir);
    let foreign = Ca::new("Other CA");
    certs::write(&other, &foreign, "client", Some(&foreign.client(None)));
    // An expired client certificate, loaded only because its sanity check is off.
    certs::write(&old, &ca, "client", Some(&ca.client_expired()));
    let objects = [
        creds("tls0", &dir.join("client"), "client"),
        creds("tlsother", &other, "client"),
        creds("srv", &dir.join("server"), "server"),
        format!("{},sanity-check=off", creds("old", &old, "client")),
    ];
    let mut args: Vec<&str> = objects.iter().flat_map(|o| ["-object", o.as_str()]).collect();
    let mut src = node(dir, "src", "256M", "1", APPEND, &args);
    src.g.wait_for("VERIFY 2 ok", T);
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    let allow = format!("authz-simple,id=allow,identity={}", CLIENT_DN.replace(',', ",,"));
    let dst_objects = [
        creds("tls0", &dir.join("server"), "server"),
        "authz-simple,id=nobody,identity=CN=nobody".into(),
        allow,
    ];
    args = dst_objects.iter().flat_map(|o| ["-object", o.as_str()]).collect();
    args.extend(["-incoming", &inc]);
    let mut dst = node(dir, "dst", "256M", "1", APPEND, &args);
    listening(&mut dst);
    assert_eq!(dst.mon.cmd("migrate_set_parameter tls-creds tls0"), "");
    Pair { src, dst, inc }
}

fn stderr_lines(n: &Node) -> Vec<String> {
    n.g.stderr().lines().map(str::to_string).collect()
}

impl Pair {
    /// A migration with the source's `tls-creds` set to `creds` fails: `why` on the
    /// source (one line in `info migrate` and on stderr, its guest running on), and on the
    /// destination's stderr `dst_line` and nothing else (nothing when `None`), the
    /// destination still waiting for a source.
    fn refused(&mut self, creds: &str, why: &str, dst_line: Option<&str>) {
        let (src_before, dst_before) = (stderr_lines(&self.src).len(), stderr_lines(&self.dst).len());
        assert_eq!(self.src.mon.cmd(&format!("migrate_set_parameter tls-creds {creds}")), "");
        assert_eq!(self.src.mon.cmd(&format!("migrate -d {}", self.inc)), "");
        failed_and_runs_on(&mut self.src, why);
        assert_eq!(stderr_lines(&self.src)[src_before..], [format!("godwit: {why}")]);
        if let Some(line) = dst_line {
            said_and_waits(&mut self.dst, line);
        }
        let said: Vec<String> = dst_line.map(|l| format!("godwit: {l}")).into_iter().collect();
        assert_eq!(stderr_lines(&self.dst)[dst_before..], said);
        assert_eq!(self.dst.mon.cmd("info status"), "VM status: paused (inmigrate)\n");
    }
}

/// Every way a TLS migration can be refused, one after the other against one source and
/// one destination; then the migration that works, to the same destination.
#[test]
fn bad_cases_fail_on_both_sides_and_leave_both_ready() {
    let _l = vm_lock();
    let dir = tmpdir("tls-bad");
    let mut p = bad_pair(&dir);
    let handshake = "TLS handshake failed:";
    // A CA the destination's certificate does not chain to; an expired certificate.
    let unknown = "the peer does not know our certificate's issuer";
    p.refused(
        "tlsother",
        &format!("{handshake} The certificate hasn't got a known issuer"),
        Some(&format!("{handshake} {unknown}")),
    );
    let expired = "The certificate has expired";
    p.refused(
        "old",
        &format!("{handshake} the peer found our certificate expired"),
        Some(&format!("{handshake} {expired}")),
    );
    // A hostname the certificate does not carry.
    p.src.mon.cmd("migrate_set_parameter tls-hostname bogus.example.com");
    let refused = format!("{handshake} the peer refused our certificate");
    p.refused("tls0", "Certificate does not match the hostname bogus.example.com", Some(&refused));
    p.src.mon.cmd("migrate_set_parameter tls-hostname \"\"");
    // A client tls-authz does not name.
    p.dst.mon.cmd("migrate_set_parameter tls-authz nobody");
    let denied = format!("TLS x509 authz check for {CLIENT_DN} is denied");
    p.refused("tls0", &format!("the destination refused: {denied}"), Some(&denied));
    // Found before anything connects: the wrong end, no such id, exec:.
    p.refused("srv", "Expected TLS credentials for a client endpoint", None);
    p.refused("nosuch", "No TLS credentials with id 'nosuch'", None);
    p.src.mon.cmd("migrate_set_parameter tls-creds tls0");
    assert_eq!(p.src.mon.cmd("migrate -d \"exec:cat > /dev/null\""), "");
    failed_and_runs_on(&mut p.src, "TLS is not supported for exec: migrations (tls-creds is set)");
    // A plaintext source at the TLS destination.
    let plain = "the source sent a plaintext migration stream, but tls-creds is set here";
    p.refused("\"\"", &format!("the destination refused: {plain}"), Some(plain));
    at_a_plaintext_destination(&mut p.src, &dir);
    // After all that, the right client, allowed by name, to the same destination.
    p.dst.mon.cmd("migrate_set_parameter tls-authz allow");
    p.src.mon.cmd("migrate_set_parameter tls-creds tls0");
    assert_eq!(p.src.mon.cmd(&format!("migrate -d {}", p.inc)), "");
    assert_eq!(status(&mut p.src), "completed");
    guest_arrived(&mut p.src, &mut p.dst);
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// `tls-creds-psk` in `dir/name`, whose `keys.psk` holds `keys`.
fn psk(dir: &Path, name: &str, keys: &str, endpoint: &str, user: &str) -> String {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("keys.psk"), keys).unwrap();
    format!("tls-creds-psk,id={name},dir={},endpoint={endpoint},username={user}", d.display())
}

/// With pre-shared keys (OpenSSL, TLS 1.3): the guest arrives and none of its pages shows
/// on the wire, nor the destination's answers.
#[test]
fn over_psk_the_guest_arrives_and_its_memory_never_shows_on_the_wire() {
    let _l = vm_lock();
    let dir = tmpdir("tls-psk");
    let cc = psk(&dir, "pskc", &format!("qemu:{KEY}\n"), "client", "qemu");
    let sc = psk(&dir, "psks", &format!("alice:00ff\nqemu:{KEY}\n"), "server", "qemu");
    let mut src = node(&dir, "src", "256M", "2", APPEND, &["-object", &cc]);
    src.g.wait_for("VERIFY 2 ok", T);
    let port = free_port();
    let mut dst = node(&dir, "dst", "256M", "2", APPEND, &["-object", &sc, "-incoming", "defer"]);
    assert_eq!(dst.mon.cmd("migrate_set_parameter tls-creds psks"), "");
    assert_eq!(dst.mon.cmd(&format!("migrate_incoming tcp:127.0.0.1:{port}")), "");
    let relay = Relay::recording(port);
    assert_eq!(src.mon.cmd("migrate_set_parameter tls-creds pskc"), "");
    assert_eq!(src.mon.cmd("migrate_set_speed 0"), "");
    assert_eq!(src.mon.cmd(&format!("migrate -d tcp:127.0.0.1:{}", relay.port)), "");
    assert_eq!(status(&mut src), "completed");
    guest_arrived(&mut src, &mut dst);
    let (sent, back) = relay.wire.lock().unwrap().clone();
    assert!(sent.len() > 32 << 20, "the working set went over the relay: {} bytes", sent.len());
    assert_eq!(pattern_hits(&sent), 0, "guest pages readable in the PSK stream");
    assert!(!back.windows(4).any(|w| w == b"GWOK"), "the answers travel inside TLS too");
}

/// A wrong key, then a username the destination's `keys.psk` lacks, then `tls-authz`
/// naming another username: each fails with one line on both sides, the source runs on,
/// the destination waits; then the right key migrates to the same destination.
#[test]
fn psk_bad_cases_fail_on_both_sides_and_leave_both_ready() {
    let _l = vm_lock();
    let dir = tmpdir("tls-psk-bad");
    let objects = [
        psk(&dir, "good", &format!("qemu:{KEY}\n"), "client", "qemu"),
        psk(&dir, "wrong", "qemu:00112233445566778899aabbccddeeff\n", "client", "qemu"),
        psk(&dir, "bob", &format!("bob:{KEY}\n"), "client", "bob"),
    ];
    let args: Vec<&str> = objects.iter().flat_map(|o| ["-object", o.as_str()]).collect();
    let mut src = node(&dir, "src", "256M", "1", APPEND, &args);
    src.g.wait_for("VERIFY 2 ok", T);
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    let sc = psk(&dir, "srv", &format!("qemu:{KEY}\n"), "server", "qemu");
    let mut dst = node(
        &dir,
        "dst",
        "256M",
        "1",
        APPEND,
        &["-object", &sc, "-object", "authz-simple,id=onlybob,identity=bob", "-incoming", &inc],
    );
    listening(&mut dst);
    assert_eq!(dst.mon.cmd("migrate_set_parameter tls-creds srv"), "");
    let mut p = Pair { src, dst, inc };
    let refused = "TLS handshake failed: the peer refused our pre-shared key (a different key or username there?)";
    p.refused(
        "wrong",
        refused,
        Some("TLS handshake failed: the client's pre-shared key is not ours (a different key there?)"),
    );
    let unknown = format!("Username bob not found in PSK file {}/srv/keys.psk", dir.display());
    p.refused("bob", refused, Some(&unknown));
    p.dst.mon.cmd("migrate_set_parameter tls-authz onlybob");
    let denied = "TLS PSK authz check for qemu is denied";
    p.refused("good", &format!("the destination refused: {denied}"), Some(denied));
    p.dst.mon.cmd("migrate_set_parameter tls-authz \"\"");
    p.src.mon.cmd("migrate_set_parameter tls-creds good");
    assert_eq!(p.src.mon.cmd(&format!("migrate -d {}", p.inc)), "");
    assert_eq!(status(&mut p.src), "completed");
    guest_arrived(&mut p.src, &mut p.dst);
}

/// A TLS source at a plaintext destination: the destination gives up and exits, as QEMU's
/// does (it takes the ClientHello for a stream); the source runs on.
fn at_a_plaintext_destination(src: &mut Node, dir: &Path) {
    let inc = format!("tcp:127.0.0.1:{}", free_port());
    let mut plain = node(dir, "plain", "256M", "1", APPEND, &["-incoming", &inc]);
    listening(&mut plain);
    src.mon.cmd("migrate_set_parameter tls-creds tls0");
    assert_eq!(src.mon.cmd(&format!("migrate -d {inc}")), "");
    failed_and_runs_on(
        src,
        "TLS handshake failed: the peer closed the connection (is tls-creds set on both sides?)",
    );
    assert_eq!(plain.g.wait_exit(T).code(), Some(1));
    assert_eq!(
        stderr_lines(&plain),
        ["godwit: load of migration failed: the source started a TLS session, but tls-creds is not set here"]
    );
}

/// Credentials are read when godwit starts: a missing file or an expired certificate
/// stops it with QEMU's words.
#[test]
fn credentials_are_checked_at_start_up() {
    let dir = tmpdir("tls-startup");
    let ca = Ca::new("CA");
    let expired = dir.join("expired");
    certs::write(&expired, &ca, "server", Some(&ca.server(&["localhost"], true)));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = |object: &str| {
        let o = Command::new(common::godwit_bin())
            .args(["-object", object, "-kernel", "/nonexistent", "-display", "none"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        String::from_utf8(o.stderr).unwrap()
    };
    assert_eq!(
        run(&creds("t", &empty, "server")),
        format!(
            "godwit: Unable to access credentials {}/ca-cert.pem: No such file or directory\n",
            empty.display()
        )
    );
    assert_eq!(
        run(&creds("t", &expired, "server")),
        format!("godwit: The server certificate {}/server-cert.pem has expired\n", expired.display())
    );
    assert_eq!(
        run("tls-creds-x509,id=t,dir=/d,endpoint=bogus"),
        "godwit: -object tls-creds-x509,id=t,dir=/d,endpoint=bogus: Parameter 'endpoint' does not accept value 'bogus'\n"
    );
    // An unreadable key (a directory where the file should be).
    let unreadable = dir.join("unreadable");
    certs::write(&unreadable, &ca, "server", Some(&ca.server(&["localhost"], false)));
    std::fs::remove_file(unreadable.join("server-key.pem")).unwrap();
    std::fs::create_dir(unreadable.join("server-key.pem")).unwrap();
    assert_eq!(
        run(&creds("t", &unreadable, "server")),
        format!(
            "godwit: Cannot load certificate '{0}/server-cert.pem' & key '{0}/server-key.pem': Error while reading file.\n",
            unreadable.display()
        )
    );
}

fn qemu_img(args: &[&str]) {
    let o = Command::new("qemu-img").args(args).output().expect("qemu-img");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn identical(a: &Path, afmt: &str, b: &Path, bfmt: &str) -> bool {
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let o = Command::new("qemu-img")
        .args(["compare", "-U", "-f", afmt, "-F", bfmt, a, b])
        .output()
        .expect("qemu-img");
    o.status.code() == Some(0)
}

/// `migrate -b` over TLS: the destination's raw image is the source's disk byte for byte,
/// its guest verifies the disk and exits cleanly, and no disk block is readable on the
/// wire although every one of them starts with "PROBEBLK".
#[test]
fn block_migration_over_tls() {
    let _l = vm_lock();
    let dir = tmpdir("tls-block");
    certs::pair(&dir);
    let (src_img, dst_img) = (dir.join("src.qcow2"), dir.join("dst.raw"));
    qemu_img(&["create", "-q", "-f", "qcow2", src_img.to_str().unwrap(), "64M"]);
    qemu_img(&["create", "-q", "-f", "raw", dst_img.to_str().unwrap(), "64M"]);
    let append = "probe.disk=8 probe.diskrate=1024 probe.diskverify=0 probe.exit=400";
    let sd = format!("file={},format=qcow2,if=virtio", src_img.display());
    let dd = format!("file={},format=raw,if=virtio", dst_img.display());
    let (sc, cc) = (
        creds("tls0", &dir.join("server"), "server"),
        creds("tls0", &dir.join("client"), "client"),
    );
    let mut src = node(&dir, "src", "256M", "1", append, &["-no-reboot", "-drive", &sd, "-object", &cc]);
    src.g.wait_for("DISKVERIFY 1 ok", T);
    let port = free_port();
    let inc = format!("tcp:127.0.0.1:{port}");
    let dst_args = ["-no-reboot", "-S", "-drive", &dd, "-object", &sc, "-incoming", &inc];
    let mut dst = node(&dir, "dst", "256M", "1", append, &dst_args);
    listening(&mut dst);
    assert_eq!(dst.mon.cmd("migrate_set_parameter tls-creds tls0"), "");
    assert_eq!(src.mon.cmd("migrate_set_parameter tls-creds tls0"), "");
    let relay = Relay::recording(port);
    assert_eq!(src.mon.cmd(&format!("migrate -d -b tcp:127.0.0.1:{}", relay.port)), "");
    assert_eq!(status(&mut src), "completed");
    assert_eq!(src.mon.cmd("info status"), "VM status: paused (postmigrate)\n");
    // Both sides frozen: the disk crossed whole.
    assert!(identical(&src_img, "qcow2", &dst_img, "raw"), "images differ after -b over TLS");
    let raw = std::fs::read(&dst_img).unwrap();
    let blocks = raw.chunks(4096).filter(|b| b.starts_with(b"PROBEBLK")).count();
    assert!(blocks > 10, "the probe's disk blocks went over: {blocks}");
    let (sent, back) = relay.wire.lock().unwrap().clone();
    assert!(sent.len() > blocks * 4096, "{} bytes on the wire", sent.len());
    assert!(!sent.windows(8).any(|w| w == b"PROBEBLK"), "disk data readable in the TLS stream");
    assert_eq!(pattern_hits(&sent), 0, "guest pages readable in the TLS stream");
    assert!(!back.windows(4).any(|w| w == b"GWOK"));
    assert_eq!(dst.mon.cmd("cont"), "");
    common::migrate::run_disk_guest_to_exit(&mut dst);
}
