//! QMP against a running probe guest, with the real client (qemu.qmp): negotiation and
//! errors, events on several monitors at once, HMP passthrough, limits; migrations driven
//! only by QMP (over TCP, and over descriptors passed with getfd, with clients coming and
//! going meanwhile), the destination verifying the guest's memory; snapshot jobs.

mod common;

use common::qmp::{qmp_shell, run_script};
use common::{Guest, free_port, probe, tmpdir, vm_lock};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn godwit(extra: &[&str]) -> Guest {
    let p = probe();
    let mut args = vec![
        "-enable-kvm",
        "-m",
        "128",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-kernel",
        p.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Guest::godwit(&args)
}

fn wait_for_socket(path: &std::path::Path) {
    let end = std::time::Instant::now() + T;
    while !path.exists() {
        assert!(std::time::Instant::now() < end, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn protocol_events_and_monitors() {
    let _l = vm_lock();
    let d = tmpdir("qmp-basic");
    let (qmp, chardev, hmp) = (d.join("qmp.sock"), d.join("c.sock"), d.join("hmp.sock"));
    let port = free_port();
    let qmp_spec = format!("unix:{},server,nowait", qmp.display());
    let tcp_spec = format!("tcp:127.0.0.1:{port},server=on,wait=off");
    let chardev_spec = format!("socket,id=qmpc,path={},server=on,wait=off", chardev.display());
    let hmp_spec = format!("unix:{},server,nowait", hmp.display());
    let mut g = godwit(&[
        "-qmp",
        &qmp_spec,
        "-qmp",
        &tcp_spec,
        "-chardev",
        &chardev_spec,
        "-mon",
        "chardev=qmpc,mode=control",
        "-monitor",
        &hmp_spec,
    ]);
    g.wait_for("PROBE READY", T);
    wait_for_socket(&qmp);
    // A scripted qmp-shell session first (one client at a time per monitor).
    let shell = qmp_shell(qmp.to_str().unwrap(), "query-status\nquery-name\n");
    assert!(shell.contains("\"status\": \"running\""), "{shell}");
    let out = run_script(
        "basic.py",
        &[
            qmp.to_str().unwrap(),
            &port.to_string(),
            chardev.to_str().unwrap(),
            hmp.to_str().unwrap(),
        ],
    );
    assert!(out.contains("ok: SHUTDOWN from quit"), "{out}");
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

/// Two godwits with the probe's working set; the destination waits in `-incoming defer`.
fn migrate(how: &str) {
    let d = tmpdir(&format!("qmp-mig-{}", how.trim_start_matches('-')));
    let (src_sock, dst_sock) = (d.join("src.sock"), d.join("dst.sock"));
    let churn = free_port();
    let append = "probe.ws=32 probe.rate=20";
    let src_qmp = format!("unix:{},server,nowait", src_sock.display());
    let churn_qmp = format!("tcp:127.0.0.1:{churn},server,nowait");
    let dst_qmp = format!("unix:{},server,nowait", dst_sock.display());
    let mut src = godwit(&["-m", "256", "-append", append, "-qmp", &src_qmp, "-qmp", &churn_qmp]);
    src.wait_for("VERIFY", Duration::from_secs(60));
    let mut dst = godwit(&["-m", "256", "-append", append, "-qmp", &dst_qmp, "-incoming", "defer"]);
    wait_for_socket(&dst_sock);
    let port = free_port().to_string();
    let mut args = vec![
        src_sock.to_str().unwrap().to_string(),
        churn.to_string(),
        dst_sock.to_str().unwrap().to_string(),
    ];
    args.push(how.to_string());
    if how == "--tcp" {
        args.push(port);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_script("migrate.py", &args);
    // The guest's memory arrived whole: its working set verifies on the destination.
    let verify = dst.wait_for("VERIFY", Duration::from_secs(60));
    assert!(verify.text.contains(" ok"), "{}", verify.text);
    assert_eq!(src.wait_exit(T).code(), Some(0));
}

#[test]
fn migration_over_tcp_driven_by_qmp() {
    let _l = vm_lock();
    migrate("--tcp");
}

#[test]
fn migration_over_descriptors_passed_with_getfd() {
    let _l = vm_lock();
    migrate("--fd");
}

/// TLS set up and a migration run with QMP alone (tests/qmp/tls.py): the parameters as
/// QEMU 7.2 shows them, a refused first attempt, then the guest verified on the destination.
#[test]
fn migration_over_tls_driven_by_qmp() {
    let _l = vm_lock();
    let d = tmpdir("qmp-tls");
    common::certs::pair(&d);
    let (src_sock, dst_sock) = (d.join("src.sock"), d.join("dst.sock"));
    let append = "probe.ws=32 probe.rate=20";
    let creds = |end: &str| format!("tls-creds-x509,id=tls0,dir={},endpoint={end}", d.join(end).display());
    let (src_qmp, dst_qmp) = (
        format!("unix:{},server,nowait", src_sock.display()),
        format!("unix:{},server,nowait", dst_sock.display()),
    );
    let (cc, sc) = (creds("client"), creds("server"));
    let mut src = godwit(&["-m", "256", "-append", append, "-qmp", &src_qmp, "-object", &cc]);
    src.wait_for("VERIFY", Duration::from_secs(60));
    let mut dst = godwit(&[
        "-m",
        "256",
        "-append",
        append,
        "-qmp",
        &dst_qmp,
        "-object",
        &sc,
        "-incoming",
        "defer",
    ]);
    wait_for_socket(&dst_sock);
    let port = free_port().to_string();
    run_script("tls.py", &[src_sock.to_str().unwrap(), dst_sock.to_str().unwrap(), &port]);
    assert!(
        src.stderr()
            .contains("godwit: Certificate does not match the hostname elsewhere.example.com"),
        "{}",
        src.stderr()
    );
    assert!(
        dst.stderr()
            .contains("godwit: TLS handshake failed: the peer refused our certificate"),
        "{}",
        dst.stderr()
    );
    let verify = dst.wait_for("VERIFY", Duration::from_secs(60));
    assert!(verify.text.ends_with(" ok"), "{}", verify.text);
    assert_eq!(src.wait_exit(T).code(), Some(0));
}

#[test]
fn snapshot_jobs() {
    let _l = vm_lock();
    let d = tmpdir("qmp-jobs");
    let img = d.join("disk.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "64M"])
        .status()
        .unwrap();
    assert!(st.success());
    let sock = d.join("qmp.sock");
    let qmp = format!("unix:{},server,nowait", sock.display());
    let drive = format!("file={},if=virtio,id=disk0", img.display());
    let mut g = godwit(&["-drive", &drive, "-qmp", &qmp]);
    g.wait_for("PROBE READY", T);
    // godwit's first disk is node #block100 (query-block's node-name).
    run_script("jobs.py", &[sock.to_str().unwrap(), "#block100"]);
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

/// `query-cpu-model-expansion` on a guest of two vCPUs: the CPUID it really has, as the host
/// and (when installed) QEMU 7.2 on `-machine none,accel=kvm` tell it.
#[test]
fn cpu_model_expansion_is_the_guests_cpuid() {
    let _l = vm_lock();
    let d = tmpdir("qmp-cpu-model");
    let sock = d.join("qmp.sock");
    let qmp = format!("unix:{},server,nowait", sock.display());
    let mut g = godwit(&["-smp", "2", "-qmp", &qmp]);
    g.wait_for("PROBE READY", T);
    let qemu_sock = d.join("qemu.sock");
    let mut args = vec![sock.to_str().unwrap(), "2"];
    let _qemu = common::qemu_available().then(|| {
        let spec = format!("unix:{},server=on,wait=off", qemu_sock.display());
        let q = Guest::spawn(
            "qemu-system-x86_64",
            &["-machine", "none,accel=kvm", "-nodefaults", "-nographic", "-S", "-qmp", &spec],
        );
        wait_for_socket(&qemu_sock);
        args.push(qemu_sock.to_str().unwrap());
        q
    });
    if args.len() == 2 {
        eprintln!("qemu-system-x86_64 is not installed: no comparison with QEMU 7.2");
    }
    run_script("cpu_model.py", &args);
}

/// libvirt binds the monitor's socket itself and passes the listening descriptor down:
/// `-chardev socket,id=ID,fd=N` with `-mon chardev=ID,mode=control`.
#[test]
fn inherited_listening_socket() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::AsRawFd;
    let _l = vm_lock();
    let d = tmpdir("qmp-fd");
    let path = d.join("lv.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let fd = listener.as_raw_fd();
    // SAFETY: clears close-on-exec on a descriptor this test owns, so godwit inherits it.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        assert_eq!(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC), 0);
    }
    let chardev = format!("socket,id=lv,fd={fd}");
    let mut g = godwit(&["-chardev", &chardev, "-mon", "chardev=lv,mode=control"]);
    drop(listener);
    g.wait_for("PROBE READY", T);
    let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = || {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        without_crlf(&l)
    };
    assert!(line().contains("\"QMP\""));
    let mut w = s;
    w.write_all(b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-chardev\"}")
        .unwrap();
    assert_eq!(line(), "{\"return\": {}}");
    let chardevs = line();
    assert!(
        chardevs.contains(&format!(
            "\"filename\": \"unix:{},server=on\", \"frontend-open\": true, \"label\": \"lv\"",
            path.display()
        )),
        "{chardevs}"
    );
    w.write_all(b"{\"execute\": \"quit\"}").unwrap();
    assert!(line().contains("\"SHUTDOWN\""));
    assert_eq!(line(), "{\"return\": {}}");
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

/// The line as sent, without its CR LF.
fn without_crlf(l: &str) -> String {
    l.trim_end_matches("\r\n").to_string()
}

/// libvirt's capability probe: `-machine none` serves only the monitors, daemonized with a
/// PID file, and answers every query libvirt sends from what godwit has.
#[test]
fn libvirt_capability_probe() {
    let d = tmpdir("qmp-probe");
    let (sock, pidfile) = (d.join("qmp.sock"), d.join("godwit.pid"));
    let spec = format!("unix:{},server,nowait", sock.display());
    let pid = pidfile.to_str().unwrap();
    let args = [
        "-S",
        "-no-user-config",
        "-nodefaults",
        "-nographic",
        "-machine",
        "none,accel=kvm:tcg",
        "-qmp",
        &spec,
        "-pidfile",
        pid,
        "-daemonize",
    ];
    let out = std::process::Command::new(common::godwit_bin())
        .args(args)
        .output()
        .expect("run godwit");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _daemon = KillByPidfile(pidfile.clone());
    wait_for_socket(&sock);
    run_script("probe.py", &[sock.to_str().unwrap()]);
    // quit ends the daemon: its PID file goes with it.
    let end = std::time::Instant::now() + T;
    while pidfile.exists() {
        assert!(std::time::Instant::now() < end, "the daemon did not exit after quit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemonized godwit that a failed test leaves behind is killed by the PID it wrote.
struct KillByPidfile(std::path::PathBuf);

impl Drop for KillByPidfile {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.0).ok().and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| *p > 1) {
            // SAFETY: kill(2) on the PID the daemon wrote into its own PID file.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
