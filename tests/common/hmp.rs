//! A monitor client for tests: connects to a godwit (or QEMU) monitor socket, reads the
//! banner, and runs commands, returning what each printed before the next prompt.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub const PROMPT: &[u8] = b"(qemu) ";

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct Hmp {
    s: Box<dyn Stream>,
    pub banner: String,
}

/// Removes terminal escape sequences (the monitor's line redraw) and carriage returns.
pub fn clean(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < bytes.len() && !(bytes[i] as char).is_ascii_alphabetic() {
                i += 1;
            }
            i += 1;
            continue;
        }
        if bytes[i] != b'\r' {
            out.push(bytes[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Hmp {
    pub fn over(s: Box<dyn Stream>) -> Hmp {
        let mut h = Hmp { s, banner: String::new() };
        let b = h.read_to_prompt(Duration::from_secs(20));
        h.banner = clean(&b);
        h
    }

    /// Connects to a unix-socket monitor, retrying while godwit starts.
    pub fn unix(path: &Path) -> Hmp {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            match UnixStream::connect(path) {
                Ok(s) => return Hmp::over(Box::new(s)),
                Err(e) => {
                    assert!(Instant::now() < end, "cannot connect to {}: {e}", path.display());
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    pub fn tcp(addr: &str) -> Hmp {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            match TcpStream::connect(addr) {
                Ok(s) => return Hmp::over(Box::new(s)),
                Err(e) => {
                    assert!(Instant::now() < end, "cannot connect to {addr}: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Raw bytes up to and including the next prompt.
    pub fn read_to_prompt(&mut self, timeout: Duration) -> Vec<u8> {
        let end = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        while !got.ends_with(PROMPT) {
            assert!(Instant::now() < end, "no prompt within {timeout:?}; got {:?}", clean(&got));
            match self.s.read(&mut b) {
                Ok(0) => panic!("monitor closed the connection; got {:?}", clean(&got)),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("monitor read failed: {e}"),
            }
        }
        got
    }

    /// Runs `line` and returns what it printed (echo and prompt removed).
    pub fn cmd_timeout(&mut self, line: &str, timeout: Duration) -> String {
        self.s.write_all(format!("{line}\n").as_bytes()).expect("write to monitor");
        let raw = self.read_to_prompt(timeout);
        // The echo ends at the first CR LF; the output runs from there to the prompt.
        let body = match raw.windows(2).position(|w| w == b"\r\n") {
            Some(p) => &raw[p + 2..raw.len() - PROMPT.len()],
            None => &raw[..0],
        };
        clean(body)
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.cmd_timeout(line, Duration::from_secs(30))
    }

    /// Sends `quit` and waits for the connection to close.
    pub fn quit(mut self) {
        let _ = self.s.write_all(b"quit\n");
        let mut b = [0u8; 256];
        while matches!(self.s.read(&mut b), Ok(n) if n > 0) {}
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to monitor");
    }
}

/// The value after `key: ` in `info migrate` output (e.g. "Migration status").
pub fn info_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

/// A number before a unit in `info migrate` (`transferred ram: 123 kbytes` -> 123).
pub fn info_num(text: &str, key: &str) -> Option<u64> {
    info_field(text, key)?.split_whitespace().next()?.parse().ok()
}
