//! Booting the probe guest under godwit: memory sizes (including RAM above the PCI hole),
//! SMP, exit on shutdown, reboot, -S, serial back ends, -bios, -daemonize and signals.

mod common;

use common::{Guest, field, heartbeats, probe, vm_lock};
use std::time::Duration;

const READY: Duration = Duration::from_secs(20);

fn probe_args<'a>(p: &'a str, mem: &'a str, smp: &'a str, append: &'a str) -> Vec<&'a str> {
    vec![
        "-enable-kvm",
        "-m",
        mem,
        "-smp",
        smp,
        "-nographic",
        "-no-reboot",
        "-kernel",
        p,
        "-append",
        append,
    ]
}

#[test]
fn boots_256m_one_cpu_and_exits_cleanly() {
    let _l = vm_lock();
    let p = probe();
    let p = p.to_str().unwrap();
    let mut g = Guest::godwit(&probe_args(p, "256", "1", "probe.exit=60"));
    g.wait_for("PROBE CPU 0 UP", READY);
    let ready = g.wait_for("PROBE READY", READY);
    assert_eq!(field(&ready.text, "cpus"), Some("1"), "{}", ready.text);
    assert_eq!(field(&ready.text, "top"), Some("0x10000000"), "{}", ready.text);
    let ram: u64 = field(&ready.text, "ram_mib").unwrap().parse().unwrap();
    assert!((254..=256).contains(&ram), "{}", ready.text);
    g.wait_for("PROBE EXIT", READY);
    let status = g.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr: {}", g.stderr());
    let beats = heartbeats(&g.seen);
    assert!(beats.len() >= 50, "heartbeats: {beats:?}");
    assert!(beats.windows(2).all(|w| w[1] == w[0] + 1), "heartbeats not consecutive: {beats:?}");
    assert!(
        !g.seen.iter().any(|l| l.text.contains("FAULT") || l.text.contains("FAIL")),
        "{:#?}",
        g.seen
    );
}

#[test]
fn boots_4g_two_cpus_with_ram_above_the_hole() {
    let _l = vm_lock();
    let p = probe();
    let mut g = Guest::godwit(&probe_args(p.to_str().unwrap(), "4G", "2", "probe.exit=20"));
    g.wait_for("PROBE CPU 0 UP", READY);
    g.wait_for("PROBE CPU 1 UP", READY);
    let ready = g.wait_for("PROBE READY", READY);
    assert_eq!(field(&ready.text, "cpus"), Some("2"), "{}", ready.text);
    // 3 GiB below the hole, 1 GiB from 4 GiB up: RAM ends at 5 GiB.
    assert_eq!(field(&ready.text, "top"), Some("0x140000000"), "{}", ready.text);
    assert_eq!(g.wait_exit(Duration::from_secs(30)).code(), Some(0));
    assert!(
        !g.seen.iter().any(|l| l.text.contains("RAMCHECK FAIL") || l.text.contains("FAULT")),
        "{:#?}",
        g.seen
    );
}

#[test]
fn boots_one_cpu_with_4g_and_two_cpus_with_256m() {
    let _l = vm_lock();
    let p = probe();
    let p = p.to_str().unwrap();
    for (mem, smp) in [("4096", "1"), ("256", "2")] {
        let mut g = Guest::godwit(&probe_args(p, mem, smp, "probe.exit=5"));
        let ready = g.wait_for("PROBE READY", READY);
        assert_eq!(field(&ready.text, "cpus"), Some(smp), "{}", ready.text);
        assert_eq!(g.wait_exit(Duration::from_secs(30)).code(), Some(0));
    }
}

#[test]
fn reset_without_no_reboot_boots_again() {
    let _l = vm_lock();
    let p = probe();
    let mut g = Guest::godwit(&["-m", "128", "-nographic", "-kernel", p.to_str().unwrap(), "-append", "probe.exit=5"]);
    g.wait_for("PROBE EXIT", READY);
    // The reset request rebuilt the machine: the probe starts over from its first line.
    g.wait_for("PROBE CPU 0 UP", READY);
    g.wait_for("PROBE READY", READY);
    assert!(g.child.try_wait().unwrap().is_none(), "godwit exited instead of rebooting");
}

#[test]
fn start_paused_runs_nothing() {
    let _l = vm_lock();
    let p = probe();
    let mut g = Guest::godwit(&["-m", "128", "-nographic", "-S", "-kernel", p.to_str().unwrap()]);
    let lines = g.collect_for(Duration::from_millis(1500));
    assert!(lines.is_empty(), "guest ran while paused: {lines:?}");
    assert!(g.child.try_wait().unwrap().is_none(), "godwit exited: {}", g.stderr());
}

#[test]
fn serial_to_file_and_sigterm() {
    let _l = vm_lock();
    let p = probe();
    let dir = std::env::temp_dir().join(format!("godwit-serial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("serial.log");
    let spec = format!("file:{}", out.display());
    let mut g = Guest::godwit(&["-m", "128", "-display", "none", "-serial", &spec, "-kernel", p.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + READY;
    while !std::fs::read_to_string(&out).unwrap_or_default().contains("HB 10") {
        assert!(
            std::time::Instant::now() < deadline,
            "serial file never got HB 10: {:?}",
            std::fs::read_to_string(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(g.child.id() as i32, libc::SIGTERM) };
    assert_eq!(g.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(g.stderr().contains("terminating on signal 15"), "{}", g.stderr());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn serial_on_a_pty() {
    use std::io::Read;
    let _l = vm_lock();
    let p = probe();
    let mut g = Guest::godwit(&["-m", "128", "-display", "none", "-serial", "pty", "-kernel", p.to_str().unwrap()]);
    let line = g.wait_for("char device redirected to", Duration::from_secs(10));
    assert!(line.text.ends_with("(label serial0)"), "{}", line.text);
    let path = line.text.split_whitespace().nth(4).unwrap().to_string();
    let mut pty = std::fs::File::open(&path).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + READY;
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&got).contains("PROBE READY") {
        assert!(
            std::time::Instant::now() < deadline,
            "pty output: {}",
            String::from_utf8_lossy(&got)
        );
        let n = pty.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
}

/// A 64 KiB firmware image: at the reset vector a jump to code that reads a message
/// through the legacy copy at F000:FF00, writes it to COM1, then resets via the i8042.
fn tiny_bios() -> Vec<u8> {
    let mut img = vec![0xf4u8; 0x10000];
    let code: &[u8] = &[
        0xb8, 0x00, 0xf0, // mov ax, 0xf000
        0x8e, 0xd8, // mov ds, ax
        0xbe, 0x00, 0xff, // mov si, 0xff00
        0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xac, // lodsb
        0x84, 0xc0, // test al, al
        0x74, 0x03, // jz done
        0xee, // out dx, al
        0xeb, 0xf8, // jmp lodsb
        0xb0, 0xfe, // done: mov al, 0xfe
        0xe6, 0x64, // out 0x64, al  (i8042 reset)
        0xf4, // hlt
        0xeb, 0xfd, // jmp hlt
    ];
    img[0xff80..0xff80 + code.len()].copy_from_slice(code);
    let msg = b"BIOS OK from the legacy copy\r\n\0";
    img[0xff00..0xff00 + msg.len()].copy_from_slice(msg);
    // Reset vector at 0xfff0: jmp near 0xff80.
    let rel = (0xff80i32 - 0xfff3) as i16;
    img[0xfff0] = 0xe9;
    img[0xfff1..0xfff3].copy_from_slice(&rel.to_le_bytes());
    img
}

#[test]
fn bios_runs_from_the_reset_vector() {
    let _l = vm_lock();
    let path = std::env::temp_dir().join(format!("godwit-bios-{}.bin", std::process::id()));
    std::fs::write(&path, tiny_bios()).unwrap();
    let mut g = Guest::godwit(&["-m", "64", "-nographic", "-no-reboot", "-bios", path.to_str().unwrap()]);
    g.wait_for("BIOS OK from the legacy copy", Duration::from_secs(20));
    assert_eq!(g.wait_exit(Duration::from_secs(10)).code(), Some(0), "{}", g.stderr());
    std::fs::remove_file(&path).ok();
}

#[test]
fn daemonize_with_pidfile() {
    let _l = vm_lock();
    let p = probe();
    let dir = std::env::temp_dir().join(format!("godwit-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pidfile, log) = (dir.join("vm.pid"), dir.join("serial.log"));
    let spec = format!("file:{}", log.display());
    let out = std::process::Command::new(common::godwit_bin())
        .args([
            "-m",
            "128",
            "-display",
            "none",
            "-daemonize",
            "-pidfile",
            pidfile.to_str().unwrap(),
            "-serial",
            &spec,
            "-kernel",
            p.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let deadline = std::time::Instant::now() + READY;
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("PROBE READY") {
        assert!(std::time::Instant::now() < deadline, "daemon never booted the guest");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) on the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pidfile.exists() {
        assert!(std::time::Instant::now() < deadline, "pidfile not removed at exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&dir).ok();
}
