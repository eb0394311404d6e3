//! The monitor against a running probe guest, over every transport: the banner and prompt,
//! `info status`, `stop` (heartbeats stop), `cont` (they resume), reconnecting, many
//! clients, garbage, a client that never reads, `-S`, `system_reset` and `quit`.

mod common;

use common::hmp::Hmp;
use common::{Guest, heartbeats, probe, tmpdir, vm_lock};
use std::io::{Read, Write};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn boot(extra: &[&str]) -> Guest {
    let p = probe();
    let mut args = vec!["-m", "128", "-display", "none", "-serial", "stdio", "-kernel", p.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut g = Guest::godwit(&args);
    g.wait_for("PROBE READY", T);
    g
}

/// stop: no heartbeat for a while; cont: they come back, numbered on from where they were.
fn stop_and_cont(g: &mut Guest, m: &mut Hmp) {
    g.wait_for("HB 5", T);
    assert_eq!(m.cmd("info status"), "VM status: running\n");
    assert_eq!(m.cmd("stop"), "");
    assert_eq!(m.cmd("info status"), "VM status: paused\n");
    g.collect_for(Duration::from_millis(100)); // lines already on their way
    let quiet = g.collect_for(Duration::from_millis(400));
    assert!(heartbeats(&quiet).is_empty(), "heartbeats while paused: {quiet:?}");
    assert_eq!(m.cmd("cont"), "");
    let after = g.collect_for(Duration::from_millis(400));
    let hb = heartbeats(&g.seen);
    assert!(!heartbeats(&after).is_empty(), "no heartbeat after cont");
    assert!(hb.windows(2).all(|w| w[1] == w[0] + 1), "heartbeats not continuous: {hb:?}");
}

#[test]
fn unix_socket_monitor() {
    let _l = vm_lock();
    let d = tmpdir("mon-unix");
    let sock = d.join("m.sock");
    let spec = format!("unix:{},server,nowait", sock.display());
    let mut g = boot(&["-monitor", &spec, "-name", "probe-vm"]);
    let mut m = Hmp::unix(&sock);
    assert_eq!(
        m.banner,
        format!(
            "godwit {} monitor - type 'help' for more information\n(qemu) ",
            env!("CARGO_PKG_VERSION")
        )
    );
    stop_and_cont(&mut g, &mut m);
    assert_eq!(m.cmd("info name"), "probe-vm\n");
    assert_eq!(m.cmd("info kvm"), "kvm support: enabled\n");
    let cpus = m.cmd("info cpus");
    assert!(cpus.starts_with("* CPU #0: thread_id="), "{cpus}");
    let regs = m.cmd("info registers");
    assert!(
        regs.starts_with("\nCPU#0\nRAX=") && regs.contains("\nEFER=0000000000000500\n"),
        "{regs}"
    );
    assert!(m.cmd("info pci").contains("Host bridge: PCI device 8086:0d57"));
    assert!(
        m.cmd("info chardev")
            .contains(&format!("compat_monitor0: filename=unix:{},server=on", sock.display()))
    );
    assert!(m.cmd("help").contains("cont|c  -- "));
    assert_eq!(m.cmd("foo"), "unknown command: 'foo'\n");
    assert_eq!(
        m.cmd("stop extra"),
        "stop|s: extraneous characters at the end of line\nTry \"help stop\" for more information\n"
    );
    assert_eq!(
        m.cmd("system_powerdown").lines().next().map(|l| l.starts_with("Error: ")),
        Some(true)
    );
    // A fresh client after a disconnect gets a fresh session; the guest never noticed.
    drop(m);
    let mut m = Hmp::unix(&sock);
    assert!(m.banner.starts_with("godwit "));
    assert_eq!(m.cmd("info status"), "VM status: running\n");
    m.quit();
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

#[test]
fn tcp_and_telnet_monitors() {
    let _l = vm_lock();
    let (p1, p2) = (common::free_port(), common::free_port());
    let tcp = format!("tcp:127.0.0.1:{p1},server,nowait");
    let telnet = format!("telnet:127.0.0.1:{p2},server,nowait");
    let mut g = boot(&["-monitor", &tcp, "-monitor", &telnet]);
    let mut a = Hmp::tcp(&format!("127.0.0.1:{p1}"));
    stop_and_cont(&mut g, &mut a);
    // Telnet: option negotiation first (WILL ECHO, WILL SGA, WILL BINARY, DO BINARY).
    let mut raw = std::net::TcpStream::connect(format!("127.0.0.1:{p2}")).unwrap();
    let mut neg = [0u8; 12];
    raw.read_exact(&mut neg).unwrap();
    assert_eq!(neg, [0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00]);
    let mut t = Hmp::over(Box::new(raw));
    assert_eq!(t.cmd("info status"), "VM status: running\n");
    assert!(t.cmd("info chardev").contains("compat_monitor1: filename=telnet:127.0.0.1:"));
    t.quit();
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

#[test]
fn pty_monitor() {
    let _l = vm_lock();
    let mut g = boot(&["-monitor", "pty"]);
    let line = g
        .seen
        .iter()
        .find(|l| l.text.contains("(label compat_monitor0)"))
        .cloned()
        .expect("pty path printed");
    let path = line.text.split_whitespace().nth(4).unwrap().to_string();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut m = Hmp::over(Box::new(f));
    stop_and_cont(&mut g, &mut m);
    m.quit();
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

#[test]
fn abuse_does_not_disturb_the_guest() {
    let _l = vm_lock();
    let d = tmpdir("mon-abuse");
    let sock = d.join("m.sock");
    let spec = format!("unix:{},server,nowait", sock.display());
    let mut g = boot(&["-monitor", &spec]);
    for i in 0..100 {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        if i % 3 == 0 {
            let _ = s.write_all(b"info sta");
        }
    }
    {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        let junk: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let _ = s.write_all(&junk);
        let _ = s.write_all(&vec![b'x'; 10_000]);
    }
    // A client that asks for a lot and never reads must not hold anyone up.
    let mut lazy = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    for _ in 0..200 {
        let _ = lazy.write_all(b"info mtree\n");
    }
    g.collect_for(Duration::from_millis(200));
    let beats = heartbeats(&g.collect_for(Duration::from_millis(500)));
    assert!(beats.len() >= 10, "guest stalled: {beats:?}");
    drop(lazy);
    let mut m = Hmp::unix(&sock);
    assert_eq!(m.cmd("info status"), "VM status: running\n");
    let hb = heartbeats(&g.seen);
    assert!(hb.windows(2).all(|w| w[1] == w[0] + 1), "{hb:?}");
    m.quit();
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

#[test]
fn prelaunch_reset_and_waiting_server() {
    let _l = vm_lock();
    let port = common::free_port();
    let spec = format!("tcp:127.0.0.1:{port},server");
    let p = probe();
    // Without nowait, start-up waits for the first client.
    let mut g = Guest::godwit(&[
        "-m",
        "128",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-S",
        "-kernel",
        p.to_str().unwrap(),
        "-monitor",
        &spec,
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        g.stderr().contains(&format!(
            "QEMU waiting for connection on: disconnected:tcp:127.0.0.1:{port},server=on"
        )),
        "{}",
        g.stderr()
    );
    let mut m = Hmp::tcp(&format!("127.0.0.1:{port}"));
    assert_eq!(m.cmd("info status"), "VM status: paused (prelaunch)\n");
    assert!(g.collect_for(Duration::from_millis(300)).is_empty(), "guest ran before cont");
    m.cmd("cont");
    g.wait_for("PROBE READY", T);
    assert_eq!(m.cmd("info status"), "VM status: running\n");
    g.wait_for("HB 3", T);
    m.cmd("system_reset");
    // The machine starts over: the probe boots again from its first line.
    g.wait_for("PROBE CPU 0 UP", T);
    g.wait_for("PROBE READY", T);
    assert_eq!(m.cmd("info status"), "VM status: running\n");
    m.quit();
    assert_eq!(g.wait_exit(T).code(), Some(0));
}

/// A `quit` right behind a `system_reset` ends the process: the reboot drops the old
/// machine's stale events, not the user's quit.
#[test]
fn quit_right_after_system_reset_is_not_lost() {
    let _l = vm_lock();
    let d = tmpdir("mon-reset-quit");
    let sock = d.join("m.sock");
    let spec = format!("unix:{},server,nowait", sock.display());
    let mut g = boot(&["-monitor", &spec]);
    let mut m = Hmp::unix(&sock);
    g.wait_for("HB 5", T);
    m.send_raw(b"system_reset\nquit\n");
    assert_eq!(g.wait_exit(T).code(), Some(0));
}
