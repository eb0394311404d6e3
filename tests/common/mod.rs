//! Shared helpers for the integration tests: build the probe, run godwit (or QEMU) on it,
//! and watch its serial output line by line with arrival times.
#![allow(dead_code)]

pub mod certs;
pub mod disk;
pub mod hmp;
pub mod libvirt;
pub mod migrate;
pub mod net;
pub mod qmp;
pub mod raw;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn godwit_bin() -> &'static str {
    env!("CARGO_BIN_EXE_godwit")
}

/// The probe image, built once per test binary by the project's own script.
pub fn probe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(root().join("scripts/build-probe.sh"))
                .output()
                .expect("run scripts/build-probe.sh");
            assert!(out.status.success(), "probe build failed: {}", String::from_utf8_lossy(&out.stderr));
            let p = root().join("firmware/build/probe.bin");
            assert!(p.exists(), "probe image missing after build");
            p
        })
        .clone()
}

/// Tests that boot guests run one at a time: the machines have two cores and PVM makes
/// guest ring 0 slow, so parallel guests only make each other time out.
pub fn vm_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// A running VMM with its stdout split into timestamped lines.
pub struct Guest {
    pub child: Child,
    pub started: Instant,
    lines: Receiver<Line>,
    pub seen: Vec<Line>,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Guest {
    pub fn spawn(program: &str, args: &[&str]) -> Guest {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let (tx, rx) = channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n') {
                let Ok(bytes) = line else { return };
                let text = String::from_utf8_lossy(&bytes).trim_end_matches('\r').to_string();
                if tx.send(Line { at: Instant::now(), text }).is_err() {
                    return;
                }
            }
        });
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Guest {
            child,
            started,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    pub fn godwit(args: &[&str]) -> Guest {
        Guest::spawn(godwit_bin(), args)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a line containing `needle`; panics with everything seen on timeout.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Line {
        self.try_wait_for(needle, timeout).unwrap_or_else(|| {
            let tail: Vec<_> = self.seen.iter().rev().take(20).rev().map(|l| l.text.clone()).collect();
            panic!(
                "no line with {needle:?} within {timeout:?}; last lines: {tail:#?}; stderr: {}",
                self.stderr()
            )
        })
    }

    pub fn try_wait_for(&mut self, needle: &str, timeout: Duration) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.text.contains(needle) {
                        return Some(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Lines that arrive within `d`.
    pub fn collect_for(&mut self, d: Duration) -> Vec<Line> {
        let deadline = Instant::now() + d;
        let mut got = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(l.clone());
            got.push(l);
        }
        got
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not exit within {timeout:?}; stderr: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Heartbeat numbers from `HB <n>` lines.
pub fn heartbeats(lines: &[Line]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.text.strip_prefix("HB ")?.trim().parse().ok())
        .collect()
}

/// The value of `key=` in a line like `PROBE READY cpus=2 ram_mib=256 top=0x10000000`.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

pub fn qemu_available() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A fresh directory under the system temp dir, unique to this process and name.
pub fn tmpdir(name: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("godwit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    TmpDir(d)
}

/// A test's scratch directory: removed when the test passes, kept (for a look at its
/// images) when it fails. Declared first in a test, it goes last, after the VMs using it.
pub struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
