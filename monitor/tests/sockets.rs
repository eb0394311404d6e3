//! Socket monitors against a fake VMM, over real loopback sockets.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{BANNER, VERSION, command, fake_vmm, read_until};
use monitor::{Command, MonitorBuilder, MonitorHandle, SharedVmm, compat_label};

fn tcp_monitor(vmm: SharedVmm, options: &str) -> (MonitorHandle, std::net::SocketAddr) {
    let handle = MonitorBuilder::new(VERSION, vmm)
        .start(&format!("{options}:127.0.0.1:0,server=on,wait=off"))
        .expect("start");
    let addr = handle.local_addr().expect("bound");
    (handle, addr)
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    stream
}

#[test]
fn tcp_banner_commands_and_reconnect() {
    let (vmm, shared) = fake_vmm();
    let (handle, addr) = tcp_monitor(shared, "tcp");
    let label = compat_label(0);
    let disconnected = format!("disconnected:tcp:127.0.0.1:{},server=on", addr.port());
    assert_eq!(handle.chardevs()[0].to_string(), format!("{label}: filename={disconnected}"));

    let mut client = connect(addr);
    let banner = read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    assert_eq!(String::from_utf8_lossy(&banner), BANNER);
    // Exact bytes: the echo redraw, CRLF, the answer, the prompt.
    client.write_all(b"info status\n").unwrap();
    let reply = read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    let mut expected = Vec::new();
    let typed = b"info status";
    for i in 1..=typed.len() {
        expected.extend(std::iter::repeat_n(&b"\x1b[D"[..], i - 1).flatten());
        expected.extend_from_slice(&typed[..i]);
        expected.extend_from_slice(b"\x1b[K");
    }
    expected.extend_from_slice(b"\r\nVM status: running\r\n(qemu) ");
    assert_eq!(String::from_utf8_lossy(&reply), String::from_utf8_lossy(&expected));

    let local = client.local_addr().unwrap();
    assert_eq!(
        handle.chardevs()[0].filename,
        format!("tcp:127.0.0.1:{},server=on <-> 127.0.0.1:{}", addr.port(), local.port())
    );
    assert_eq!(command(&mut client, "stop"), "");
    assert_eq!(command(&mut client, "info status"), "VM status: paused\r\n");
    assert_eq!(command(&mut client, "foo"), "unknown command: 'foo'\r\n");
    assert_eq!(
        command(&mut client, "loadvm nosuch"),
        "Error: Snapshot 'nosuch' does not exist in one or more devices\r\n"
    );
    assert_eq!(
        command(&mut client, "migrate -d -z x"),
        "migrate: unsupported option -z\r\nTry \"help migrate\" for more information\r\n"
    );
    drop(client);

    // A new client gets a new banner; VM state persists.
    let mut client = connect(addr);
    let banner = read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    assert_eq!(String::from_utf8_lossy(&banner), BANNER);
    assert_eq!(command(&mut client, "c"), "");
    assert_eq!(command(&mut client, "info status"), "VM status: running\r\n");
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(2);
    while handle.chardevs()[0].filename != disconnected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(handle.chardevs()[0].filename, disconnected);
    assert!(vmm.lock().unwrap().log.contains(&Command::Stop));
    handle.shutdown();
}

#[test]
fn telnet_negotiation_and_iac_stripping() {
    let (_vmm, shared) = fake_vmm();
    let (handle, addr) = tcp_monitor(shared, "telnet");
    let mut client = connect(addr);
    let first = read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    assert_eq!(
        &first[..12],
        &[0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00]
    );
    assert_eq!(String::from_utf8_lossy(&first[12..]), BANNER);
    // The client's answers are dropped; the command still works.
    client
        .write_all(&[0xff, 0xfd, 0x01, 0xff, 0xfd, 0x03, 0xff, 0xfd, 0x00, 0xff, 0xfb, 0x00])
        .unwrap();
    client.write_all(b"info st\xff\xf1atus\r").unwrap();
    let reply = read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&reply).ends_with("info status\x1b[K\r\nVM status: running\r\n(qemu) "));
    assert!(handle.chardevs()[0].filename.starts_with("telnet:127.0.0.1:"));
    handle.shutdown();
}

#[test]
fn unix_socket_monitor() {
    let (_vmm, shared) = fake_vmm();
    let path = std::env::temp_dir().join(format!("godwit-monitor-test-{}.sock", std::process::id()));
    let spec = format!("unix:{},server,nowait", path.display());
    let handle = MonitorBuilder::new(VERSION, shared)
        .label(compat_label(2))
        .start(&spec)
        .expect("start");
    assert_eq!(
        handle.chardevs()[0].to_string(),
        format!("compat_monitor2: filename=disconnected:unix:{},server=on", path.display())
    );
    for _ in 0..2 {
        let mut client = UnixStream::connect(&path).expect("connect");
        client.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let banner = read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
        assert_eq!(String::from_utf8_lossy(&banner), BANNER);
        assert_eq!(command(&mut client, "info status"), "VM status: running\r\n");
        assert_eq!(handle.chardevs()[0].filename, format!("unix:{},server=on", path.display()));
    }
    drop(handle);
    assert!(!path.exists(), "the socket file is removed");
}

#[test]
fn hundred_clients_come_and_go() {
    let (_vmm, shared) = fake_vmm();
    let (handle, addr) = tcp_monitor(shared, "tcp");
    for i in 0..100 {
        let mut client = connect(addr);
        match i % 4 {
            // Leave at once.
            0 => {}
            // Leave after the banner.
            1 => {
                read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
            }
            // Leave in the middle of a line.
            2 => {
                let _ = client.write_all(b"info sta");
            }
            // Send a command and leave without reading the answer.
            _ => {
                let _ = client.write_all(b"info status\nstop\ncont\n");
                let _ = client.shutdown(Shutdown::Both);
            }
        }
    }
    let mut client = connect(addr);
    let banner = read_until(&mut client, b"(qemu) ", Duration::from_secs(10));
    assert_eq!(String::from_utf8_lossy(&banner), BANNER);
    assert_eq!(command(&mut client, "info status"), "VM status: running\r\n");
    handle.shutdown();
}

#[test]
fn client_vanishing_mid_command() {
    let (vmm, shared) = fake_vmm();
    let (handle, addr) = tcp_monitor(shared, "tcp");
    let mut client = connect(addr);
    read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    // A synchronous migrate keeps the prompt away while it runs; this one
    // would run for minutes.
    client.write_all(b"migrate slow\n").unwrap();
    let progress = read_until(&mut client, b"Completed 0 %\r", Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&progress).ends_with("slow\x1b[K\r\nCompleted 0 %\r"));
    drop(client);
    // The next client does not wait for it.
    let start = Instant::now();
    let mut client = connect(addr);
    let banner = read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    assert_eq!(String::from_utf8_lossy(&banner), BANNER);
    assert!(start.elapsed() < Duration::from_secs(2));
    // And a synchronous migrate that runs to its end prints QEMU's way.
    client.write_all(b"migrate tcp:x\n").unwrap();
    let out = read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    assert!(
        String::from_utf8_lossy(&out).ends_with("\r\nCompleted 25 %\rCompleted 50 %\rCompleted 75 %\r\r\n(qemu) "),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    // Input typed during the command waits for the prompt.
    client.write_all(b"migrate tcp:x\ninfo status\n").unwrap();
    let out = read_until(&mut client, b"VM status: running\r\n(qemu) ", Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&out).contains("\r\n(qemu) i\x1b[K"));
    // A panicking command reports an error and the monitor lives on.
    assert_eq!(
        command(&mut client, "system_reset"),
        "Error: internal error while running the command\r\n"
    );
    assert_eq!(command(&mut client, "info status"), "VM status: running\r\n");
    assert!(vmm.lock().is_ok() || vmm.is_poisoned());
    handle.shutdown();
}

#[test]
fn garbage_and_overlong_lines() {
    let (_vmm, shared) = fake_vmm();
    let (handle, addr) = tcp_monitor(shared, "tcp");
    let mut client = connect(addr);
    read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    // Pseudo-random bytes, then a 10 000-byte line, read back as we go.
    let mut seed: u32 = 12345;
    let garbage: Vec<u8> = (0..20_000)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        })
        .collect();
    let mut reader = client.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut total = 0usize;
        let mut buf = [0u8; 65536];
        let mut tail = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 200 {
                        tail.drain(..tail.len() - 200);
                    }
                    if tail.ends_with(b"VM status: running\r\n(qemu) ") {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        (total, tail)
    });
    client.write_all(&garbage).unwrap();
    // Leave any escape sequence or quote the garbage may have opened.
    client.write_all(b"\x1b[D\x15\n").unwrap();
    client.write_all(&vec![b'a'; 10_000]).unwrap();
    client.write_all(b"\n\ninfo status\n").unwrap();
    let (total, tail) = drain.join().unwrap();
    assert!(total > 1_000_000, "the long line is echoed ({total} bytes)");
    assert!(
        tail.ends_with(b"VM status: running\r\n(qemu) "),
        "{:?}",
        String::from_utf8_lossy(&tail)
    );
    handle.shutdown();
}

#[test]
fn quit_closes_the_connection() {
    let (_vmm, shared) = fake_vmm();
    let (handle, addr) = tcp_monitor(shared, "tcp");
    let mut client = connect(addr);
    read_until(&mut client, b"(qemu) ", Duration::from_secs(5));
    client.write_all(b"quit\n").unwrap();
    let rest = read_until(&mut client, b"never", Duration::from_secs(2));
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "q\x1b[K\x1b[Dqu\x1b[K\x1b[D\x1b[Dqui\x1b[K\x1b[D\x1b[D\x1b[Dquit\x1b[K\r\n"
    );
    handle.shutdown();
}

#[test]
fn slow_client_does_not_block_others() {
    let (_vmm, shared) = fake_vmm();
    let (slow_handle, slow_addr) = tcp_monitor(shared.clone(), "tcp");
    let (fast_handle, fast_addr) = tcp_monitor(shared, "tcp");
    let mut slow = connect(slow_addr);
    read_until(&mut slow, b"(qemu) ", Duration::from_secs(5));
    // Each answer is ~1 MiB; the slow client never reads.
    for _ in 0..40 {
        slow.write_all(b"info qtree\n").unwrap();
    }
    let mut fast = connect(fast_addr);
    read_until(&mut fast, b"(qemu) ", Duration::from_secs(5));
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(command(&mut fast, "info status"), "VM status: running\r\n");
    }
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    drop(slow);
    slow_handle.shutdown();
    fast_handle.shutdown();
}

#[test]
fn waiting_server_blocks_until_a_client_connects() {
    let (_vmm, shared) = fake_vmm();
    // Find a free port, then wait on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let connector = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                return read_until(&mut s, b"(qemu) ", Duration::from_secs(5));
            }
            assert!(Instant::now() < deadline, "server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let handle = MonitorBuilder::new(VERSION, shared)
        .start(&format!("tcp:127.0.0.1:{port},server"))
        .expect("start");
    assert!(handle.chardevs()[0].filename.starts_with("tcp:127.0.0.1:"));
    assert_eq!(String::from_utf8_lossy(&connector.join().unwrap()), BANNER);
    handle.shutdown();
}

#[test]
fn client_mode_and_errors() {
    let (_vmm, shared) = fake_vmm();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = MonitorBuilder::new(VERSION, shared.clone())
        .start(&format!("tcp:127.0.0.1:{port}"))
        .expect("start");
    let (mut server_side, _) = listener.accept().unwrap();
    server_side.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_until(&mut server_side, b"(qemu) ", Duration::from_secs(5))),
        BANNER
    );
    handle.shutdown();
    drop(listener);

    let err = MonitorBuilder::new(VERSION, shared.clone())
        .start(&format!("tcp:127.0.0.1:{port}"))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!("Failed to connect to '127.0.0.1:{port}': Connection refused")
    );
    let err = MonitorBuilder::new(VERSION, shared.clone()).start("bogus:1").err().unwrap();
    assert_eq!(
        err.report_lines("godwit", "bogus:1"),
        [
            "godwit: -monitor bogus:1: 'bogus:1' is not a valid char driver",
            "godwit: -monitor bogus:1: parse error: bogus:1"
        ]
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let err = MonitorBuilder::new(VERSION, shared.clone())
        .start(&format!("tcp:127.0.0.1:{busy_port},server,nowait"))
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "Failed to find an available port: Address already in use");
    let err = MonitorBuilder::new(VERSION, shared.clone())
        .start("telnet:127.0.0.1:x,server,nowait")
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "address resolution failed for 127.0.0.1:x: Servname not supported for ai_socktype"
    );
    let err = MonitorBuilder::new(VERSION, shared)
        .start("unix:/nonexistent/dir/x.sock,server,nowait")
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "Failed to bind socket to /nonexistent/dir/x.sock: No such file or directory"
    );
}
