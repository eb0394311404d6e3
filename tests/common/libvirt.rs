//! Real libvirt for the tests: a libvirtd of its own (scripts/libvirtd-sandbox: private
//! /etc/libvirt, /run/libvirt, /var/lib/libvirt, ... in a mount namespace, stopped by PID
//! when dropped), driven only through `virsh`, and the probe's serial log it writes.
#![allow(dead_code)]

use super::root;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One sandboxed libvirtd.
pub struct Libvirtd {
    dir: PathBuf,
    pub uri: String,
}

fn sandbox(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(root().join("scripts/libvirtd-sandbox"))
        .args(args)
        .output()
        .expect("run scripts/libvirtd-sandbox")
}

impl Libvirtd {
    /// Starts one in `dir` (migration ports from `port_base`); panics, with what libvirtd
    /// said, if it cannot run here.
    pub fn start(dir: &Path, port_base: u16) -> Libvirtd {
        let d = dir.to_str().expect("utf-8 path");
        let out = sandbox(&["start", d, &port_base.to_string()]);
        assert!(
            out.status.success(),
            "libvirtd cannot run here (scripts/setup.sh installs it): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Libvirtd {
            dir: dir.to_path_buf(),
            uri,
        }
    }

    /// The URI another libvirtd (peer to peer) or virsh reaches this one by.
    pub fn remote_uri(&self) -> String {
        self.uri.replacen("qemu://", "qemu+unix://", 1)
    }

    /// `virsh -c URI ARGS...`: (success, stdout + stderr).
    pub fn virsh(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("virsh")
            .arg("-c")
            .arg(&self.uri)
            .args(args)
            .output()
            .expect("run virsh");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// `virsh` that must succeed; its output.
    pub fn must(&self, args: &[&str]) -> String {
        let (ok, text) = self.virsh(args);
        assert!(ok, "virsh {args:?} failed: {text}\n{}", self.emulator_log());
        text
    }

    /// libvirt's per-domain logs (the emulator's command line and stderr).
    pub fn emulator_log(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(self.dir.join("log/qemu")).into_iter().flatten().flatten() {
            s.push_str(&format!("--- {}\n", e.path().display()));
            s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        s
    }

    pub fn state(&self, dom: &str) -> String {
        self.must(&["domstate", dom]).trim().to_string()
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = sandbox(&["stop", self.dir.to_str().unwrap_or_default()]);
    }
}

/// The domain the tests run: the probe booted with `<kernel>`, its serial port a file,
/// `devices` (XML) added.
pub fn domain_xml(name: &str, emulator: &str, serial_log: &Path, append: &str, devices: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <cmdline>{append}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{log}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
    {devices}
  </devices>
</domain>
",
        kernel = super::probe().display(),
        log = serial_log.display(),
    )
}

/// The serial log's first line containing `needle`, waiting for it.
pub fn wait_line(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(needle)) {
            return l.trim_end_matches('\r').to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} within {timeout:?} in {}: {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the probe wrote so far: heartbeat numbers, boots, working-set verdicts.
#[derive(Debug, Default)]
pub struct SerialLog {
    pub heartbeats: Vec<u64>,
    pub boots: usize,
    pub verify_ok: usize,
    /// Disk verify passes without a bad block (`DISKVERIFY N ... ok`).
    pub disk_ok: usize,
    pub bad: Vec<String>,
}

pub fn read_serial(path: &Path) -> SerialLog {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut s = SerialLog::default();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(n) = line.strip_prefix("HB ").and_then(|n| n.trim().parse().ok()) {
            s.heartbeats.push(n);
        } else if line.starts_with("PROBE READY") {
            s.boots += 1;
        } else if line.starts_with("VERIFY ") && line.ends_with(" ok") {
            s.verify_ok += 1;
        } else if line.starts_with("DISKVERIFY ") && line.ends_with(" ok") {
            s.disk_ok += 1;
        } else if line.starts_with("MISMATCH")
            || line.starts_with("DISK MISMATCH")
            || line.starts_with("DISK ERROR")
            || (line.starts_with("VERIFY ") && line.contains("bad="))
            || (line.starts_with("DISKVERIFY ") && line.contains("bad="))
        {
            s.bad.push(line.to_string());
        }
    }
    s
}

/// Waits until the last heartbeat is past `after` (and a working-set pass more was
/// verified, if `verify` is set); returns the log. Panics with its tail on timeout.
pub fn wait_heartbeat_past(path: &Path, after: u64, timeout: Duration) -> SerialLog {
    let deadline = Instant::now() + timeout;
    loop {
        let s = read_serial(path);
        if s.heartbeats.last().is_some_and(|h| *h > after) {
            return s;
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: String = text.chars().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect();
            panic!("no heartbeat past {after} within {timeout:?} in {}: ...{tail}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
