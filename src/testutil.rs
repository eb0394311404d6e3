//! Helpers for the tests beside the code that run real guests.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A serial port output that the test can read back.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// Everything written so far, as bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until the output holds at least `n` complete heartbeat lines; returns all of it.
    pub fn wait_for_heartbeats(&self, n: usize, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let t = self.text();
            if heartbeats(&t).len() >= n {
                return t;
            }
            assert!(Instant::now() < end, "fewer than {n} heartbeats in guest output: {t}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the output contains `needle`; returns all of it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let t = self.text();
            if t.contains(needle) {
                return t;
            }
            assert!(Instant::now() < end, "no {needle:?} in guest output: {t}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Heartbeat numbers in the probe's output, from complete lines only: output captured
/// mid-line (a pause or switch-over can fall there) ends in a partial `HB 3` that is
/// really `HB 32` once the rest arrives.
pub fn heartbeats(text: &str) -> Vec<u64> {
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| l.trim().strip_prefix("HB ")?.parse().ok())
        .collect()
}

/// The probe image, built by the project's script.
pub fn probe() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/build-probe.sh"))
        .output()
        .expect("build probe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    root.join("firmware/build/probe.bin")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_partial_heartbeat_line_is_not_counted() {
        assert_eq!(super::heartbeats("HB 1\nHB 2\r\nHB 3"), vec![1, 2]);
    }
}
