//! pty monitors, and stdio-style monitors (plain and multiplexed with a
//! serial port) on socket pairs standing in for stdin/stdout.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BANNER, VERSION, command, fake_vmm, read_until};
use monitor::{Command, MonitorBuilder, MuxEvent, SerialFrontend, compat_label};

fn open_slave(path: &std::path::Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .expect("open pty")
}

/// A non-blocking pty read returns WouldBlock; `read_until` retries, so
/// pace it a little.
struct Paced(File);

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                Err(e)
            }
            other => other,
        }
    }
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[test]
fn pty_sessions() {
    let (_vmm, shared) = fake_vmm();
    let handle = MonitorBuilder::new(VERSION, shared)
        .label(compat_label(1))
        .start("pty")
        .expect("start");
    let path = handle.pty_path().expect("pty path").to_path_buf();
    assert!(path.starts_with("/dev/pts/"), "{}", path.display());
    assert_eq!(
        handle.redirect_message().unwrap(),
        format!("char device redirected to {} (label compat_monitor1)", path.display())
    );
    assert_eq!(handle.chardevs()[0].filename, format!("pty:{}", path.display()));
    for _ in 0..2 {
        let mut tty = Paced(open_slave(&path));
        let banner = read_until(&mut tty, b"(qemu) ", Duration::from_secs(5));
        assert_eq!(String::from_utf8_lossy(&banner), BANNER);
        assert_eq!(command(&mut tty, "info status"), "VM status: running\r\n");
        drop(tty);
        // Give the monitor time to see the hang-up.
        std::thread::sleep(Duration::from_millis(300));
    }
    handle.shutdown();
}

fn pair() -> (UnixStream, OwnedFd, OwnedFd) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    ours.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let input = OwnedFd::from(theirs);
    let output = input.try_clone().unwrap();
    (ours, input, output)
}

#[test]
fn plain_stdio_style_monitor() {
    let (_vmm, shared) = fake_vmm();
    let (mut term, input, output) = pair();
    let handle = MonitorBuilder::new(VERSION, shared)
        .start_on_fds(input, output, false)
        .expect("start");
    assert_eq!(
        String::from_utf8_lossy(&read_until(&mut term, b"(qemu) ", Duration::from_secs(5))),
        BANNER
    );
    assert_eq!(command(&mut term, "info status"), "VM status: running\r\n");
    assert_eq!(handle.chardevs()[0].to_string(), "compat_monitor0: filename=stdio");
    handle.shutdown();
}

#[derive(Clone, Default)]
struct Serial {
    input: Arc<Mutex<Vec<u8>>>,
    events: Arc<Mutex<Vec<MuxEvent>>>,
}

impl SerialFrontend for Serial {
    fn input(&mut self, bytes: &[u8]) {
        self.input.lock().unwrap().extend_from_slice(bytes);
    }
    fn event(&mut self, event: MuxEvent) {
        self.events.lock().unwrap().push(event);
    }
}

#[test]
fn muxed_serial_and_monitor() {
    let (vmm, shared) = fake_vmm();
    let (mut term, input, output) = pair();
    let serial = Serial::default();
    let handle = MonitorBuilder::new(VERSION, shared)
        .serial(Box::new(serial.clone()))
        .start_on_fds(input, output, true)
        .expect("start");
    assert_eq!(
        handle.chardevs().iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["compat_monitor0-base: filename=stdio", "compat_monitor0: filename=mux"]
    );
    let mut guest = handle.serial_writer().expect("serial writer");
    guest.write_all(b"Booting...\r\n").unwrap();
    assert_eq!(read_until(&mut term, b"Booting...\r\n", Duration::from_secs(5)), b"Booting...\r\n");

    // Typing goes to the serial port; Ctrl-A Ctrl-A sends one Ctrl-A.
    term.write_all(b"ls\r\x01\x01").unwrap();
    // Ctrl-A h prints the escape help.
    term.write_all(b"\x01h").unwrap();
    let help = read_until(&mut term, b"C-a C-a  sends C-a\n\r", Duration::from_secs(5));
    assert!(help.starts_with(b"\n\rC-a h    print this help\n\r"));
    assert_eq!(serial.input.lock().unwrap().as_slice(), b"ls\r\x01");

    // Ctrl-A c: the monitor opens with its banner.
    term.write_all(b"\x01c").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_until(&mut term, b"(qemu) ", Duration::from_secs(5))),
        BANNER
    );
    assert_eq!(command(&mut term, "info status"), "VM status: running\r\n");
    // Back to the serial port: the monitor ends its line.
    term.write_all(b"\x01c").unwrap();
    assert_eq!(read_until(&mut term, b"\r\n", Duration::from_secs(5)), b"\r\n");
    term.write_all(b"x").unwrap();
    // And to the monitor again: just a prompt, with the half-typed line gone.
    term.write_all(b"\x01cinfo st\x01c\x01c").unwrap();
    let out = read_until(&mut term, b"\r\n(qemu) ", Duration::from_secs(5));
    assert!(out.starts_with(b"(qemu) i\x1b[K"), "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(command(&mut term, "info status"), "VM status: running\r\n");

    // Timestamps apply to what the terminal shows.
    term.write_all(b"\x01t").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    guest.write_all(b"a\nb").unwrap();
    let stamped = read_until(&mut term, b"] b", Duration::from_secs(5));
    assert!(stamped.starts_with(b"a\n[00:00:00."), "{:?}", String::from_utf8_lossy(&stamped));
    term.write_all(b"\x01t").unwrap();

    // Ctrl-A x: "QEMU: Terminated" and a quit through the VMM.
    term.write_all(b"\x01x").unwrap();
    assert_eq!(
        read_until(&mut term, b"Terminated\n\r", Duration::from_secs(5)),
        b"QEMU: Terminated\n\r"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(vmm.lock().unwrap().log.last(), Some(&Command::Quit));
    assert!(serial.events.lock().unwrap().contains(&MuxEvent::Exit));
    handle.shutdown();
}

#[test]
fn muxed_monitor_without_serial() {
    let (_vmm, shared) = fake_vmm();
    let (mut term, input, output) = pair();
    let handle = MonitorBuilder::new(VERSION, shared)
        .start_on_fds(input, output, true)
        .expect("start");
    assert_eq!(
        String::from_utf8_lossy(&read_until(&mut term, b"(qemu) ", Duration::from_secs(5))),
        BANNER
    );
    assert_eq!(command(&mut term, "info status"), "VM status: running\r\n");
    assert!(handle.serial_writer().is_some());
    handle.shutdown();
}

#[test]
fn serial_needs_mon_stdio() {
    let (_vmm, shared) = fake_vmm();
    let err = MonitorBuilder::new(VERSION, shared)
        .serial(Box::new(Serial::default()))
        .start("pty")
        .err();
    assert!(matches!(err, Some(monitor::MonitorError::SerialWithoutMux)));
}

#[test]
fn none_starts_nothing() {
    let (_vmm, shared) = fake_vmm();
    let handle = MonitorBuilder::new(VERSION, shared).start("none").expect("start");
    assert!(handle.chardevs().is_empty());
}
