//! Running pairs of godwit processes for migration tests.
#![allow(dead_code)]

use super::hmp::{Hmp, info_field};
use super::{Guest, probe};
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
