//! godwit under real libvirt (Debian's libvirt 9.0): libvirtd instances of the tests' own
//! (scripts/libvirtd-sandbox), driven only through `virsh`, run a domain whose
//! `<emulator>` is godwit and whose `<kernel>` is the probe. After every step the probe's
//! serial log (written by godwit to the file libvirt opened) shows heartbeats going on
//! from where they were, one boot only, and its memory working set verified clean.
//!
//! `GODWIT_LIBVIRT_EMULATOR=/usr/bin/qemu-system-x86_64` runs the same steps against QEMU
//! (scripts/libvirt-compare does, and prints the two side by side).

mod common;

use common::libvirt::{Libvirtd, SerialLog, domain_xml, read_serial, wait_heartbeat_past, wait_line};
use common::{godwit_bin, tmpdir, vm_lock};
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const APPEND: &str = "console=ttyS0 probe.ws=16 probe.rate=20";

fn emulator() -> String {
    std::env::var("GODWIT_LIBVIRT_EMULATOR")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| godwit_bin().to_string())
}

/// Runs one step and prints how long it took (scripts/libvirt-compare collects these).
fn step<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    println!("libvirt-step {name} {:.3}", t.elapsed().as_secs_f64());
    r
}

/// The guest runs on from where it was: heartbeats past `last`, still its first boot,
/// no working-set word lost.
fn runs_on(log: &Path, last: u64) -> SerialLog {
    let s = wait_heartbeat_past(log, last + 20, T);
    assert_eq!(s.boots, 1, "the guest booted again");
    assert!(s.bad.is_empty(), "memory working set damaged: {:?}", s.bad);
    s
}

fn last_hb(log: &Path) -> u64 {
    read_serial(log).heartbeats.last().copied().unwrap_or(0)
}

fn define_and_start(lv: &Libvirtd, dir: &Path, name: &str) -> std::path::PathBuf {
    define_and_start_with(lv, dir, name, APPEND, "")
}

fn define_and_start_with(lv: &Libvirtd, dir: &Path, name: &str, append: &str, devices: &str) -> std::path::PathBuf {
    let log = dir.join(format!("{name}-serial.log"));
    let xml = dir.join(format!("{name}.xml"));
    std::fs::write(&xml, domain_xml(name, &emulator(), &log, append, devices)).unwrap();
    lv.must(&["define", xml.to_str().unwrap()]);
    step("start", || lv.must(&["start", name]));
    runs_on(&log, 0);
    log
}

#[test]
fn virsh_runs_monitors_jobs_suspend_and_save_restore() {
    let _l = vm_lock();
    let dir = tmpdir("libvirt-life");
    let lv = Libvirtd::start(&dir.join("libvirtd"), 49400);
    let log = define_and_start(&lv, &dir, "probe-life");

    let status = lv.must(&["qemu-monitor-command", "--hmp", "probe-life", "info status"]);
    assert_eq!(status.trim(), "VM status: running");
    let job = lv.must(&["domjobinfo", "probe-life"]);
    assert!(job.contains("Job type:") && job.contains("None"), "{job}");

    step("suspend", || lv.must(&["suspend", "probe-life"]));
    assert_eq!(lv.state("probe-life"), "paused");
    let status = lv.must(&["qemu-monitor-command", "--hmp", "probe-life", "info status"]);
    assert_eq!(status.trim(), "VM status: paused");
    let frozen = last_hb(&log);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(last_hb(&log), frozen, "heartbeats while suspended");
    step("resume", || lv.must(&["resume", "probe-life"]));
    assert_eq!(lv.state("probe-life"), "running");
    runs_on(&log, frozen);

    let image = dir.join("probe-life.save");
    step("save", || lv.must(&["save", "probe-life", image.to_str().unwrap()]));
    assert_eq!(lv.state("probe-life"), "shut off");
    let saved = last_hb(&log);
    step("restore", || lv.must(&["restore", image.to_str().unwrap()]));
    assert_eq!(lv.state("probe-life"), "running");
    let s = runs_on(&log, saved);
    assert!(s.verify_ok > 0, "the working set was never verified");

    lv.must(&["destroy", "probe-life"]);
    lv.must(&["undefine", "probe-life"]);
}

#[test]
fn virsh_migrates_live_native_and_p2p() {
    let _l = vm_lock();
    let dir = tmpdir("libvirt-mig");
    let a = Libvirtd::start(&dir.join("a"), 49500);
    let b = Libvirtd::start(&dir.join("b"), 49600);
    let log = define_and_start(&a, &dir, "probe-mig");
    // The destination's daemon probes the emulator on first use: done here, so that the
    // migration's time is the migration's.
    let caps = step("probe", || {
        b.must(&[
            "domcapabilities",
            "--emulatorbin",
            &emulator(),
            "--virttype",
            "kvm",
            "--machine",
            "pc",
        ])
    });
    assert!(caps.contains("<machine>pc-i440fx-7.2</machine>"), "{caps}");

    let before = last_hb(&log);
    step("migrate-native", || a.must(&["migrate", "--live", "probe-mig", &b.remote_uri()]));
    assert_eq!(b.state("probe-mig"), "running");
    assert!(!a.must(&["list", "--name"]).contains("probe-mig"), "still running at the source");
    runs_on(&log, before);
    let status = b.must(&["qemu-monitor-command", "--hmp", "probe-mig", "info status"]);
    assert_eq!(status.trim(), "VM status: running");

    let before = last_hb(&log);
    step("migrate-p2p", || {
        b.must(&[
            "migrate",
            "--live",
            "--p2p",
            "--persistent",
            "--undefinesource",
            "probe-mig",
            &a.remote_uri(),
        ])
    });
    assert_eq!(a.state("probe-mig"), "running");
    assert!(a.must(&["dominfo", "probe-mig"]).contains("Persistent:     yes"));
    assert!(
        !b.must(&["list", "--all", "--name"]).contains("probe-mig"),
        "the source kept its definition"
    );
    let s = runs_on(&log, before);
    assert!(s.verify_ok > 0, "the working set was never verified");
    let done = a.must(&["domjobinfo", "--completed", "probe-mig"]);
    assert!(done.contains("Completed"), "{done}");
    for line in done
        .lines()
        .filter(|l| l.starts_with("Time elapsed:") || l.starts_with("Total downtime:"))
    {
        println!("libvirt-job {}", line.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    // libvirt's multifd (`--parallel`) moves the guest too. (That libvirt switched multifd
    // on is not seen here: it resets the capabilities once the job ends.)
    let before = last_hb(&log);
    step("migrate-parallel", || {
        a.must(&[
            "migrate",
            "--live",
            "--parallel",
            "--parallel-connections",
            "3",
            "probe-mig",
            &b.remote_uri(),
        ])
    });
    assert_eq!(b.state("probe-mig"), "running");
    let s = runs_on(&log, before);
    assert!(s.verify_ok > 0, "the working set was never verified after the multifd move");
    b.must(&["destroy", "probe-mig"]);
}

/// A tap NIC libvirt creates and hands over as `-netdev tap,fd=N` with `-device
/// virtio-net-pci`: the guest brings it up with libvirt's MAC and answers pings from the
/// host through the tap.
#[test]
fn virsh_runs_a_domain_with_a_tap_nic() {
    let _l = vm_lock();
    let dir = tmpdir("libvirt-net");
    let lv = Libvirtd::start(&dir.join("libvirtd"), 49700);
    let tap = format!("gwlv{}", std::process::id() % 100_000);
    let nic =
        format!("<interface type='ethernet'><target dev='{tap}' managed='yes'/><model type='virtio'/><driver name='qemu'/></interface>");
    let append = format!("{APPEND} probe.ip=192.168.213.2/24");
    let log = define_and_start_with(&lv, &dir, "probe-net", &append, &nic);
    let iflist = lv.must(&["domiflist", "probe-net"]);
    let mac = iflist
        .split_whitespace()
        .find(|w| w.starts_with("52:54:00:"))
        .unwrap_or_else(|| panic!("no MAC in {iflist}"))
        .to_string();
    let up = wait_line(&log, "NET ", T);
    assert_eq!(up, format!("NET eth0 mac={mac} ip=192.168.213.2/24"));
    let ip = std::process::Command::new("ip")
        .args(["addr", "add", "192.168.213.1/24", "dev", &tap])
        .status()
        .expect("run ip");
    assert!(ip.success(), "cannot address the tap {tap}");
    // The project's pinger (ICMP echo, JSON out), as the network tests use it.
    let ping = std::process::Command::new("python3")
        .arg(common::root().join("tests/net/pinger.py"))
        .args(["192.168.213.2", "5", "0.2", "2.0"])
        .output()
        .expect("run tests/net/pinger.py");
    let text = String::from_utf8_lossy(&ping.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["replies"].as_array().map(Vec::len), Some(5), "pings lost: {text}");
    runs_on(&log, 0);
    lv.must(&["destroy", "probe-net"]);
}
