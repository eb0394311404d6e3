//! A raw monitor client for hostile-client tests: it writes whatever bytes it is given
//! from one thread while another reads, so a monitor that pushes back (stops reading while
//! its output waits) cannot deadlock the test; it keeps only the tail of what it read.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most bytes of output kept (the tail).
const KEEP: usize = 256 << 10;

pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    pub fn unix(path: &Path) -> Conn {
        Conn::Unix(UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display())))
    }
    pub fn tcp(addr: &str) -> Conn {
        Conn::Tcp(TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}")))
    }
    /// A reading half (reads time out after 200 ms) and a writing half.
    fn split(self) -> (Box<dyn Read + Send>, Box<dyn Write + Send>) {
        let t = Some(Duration::from_millis(200));
        match self {
            Conn::Unix(s) => {
                s.set_read_timeout(t).expect("timeout");
                (Box::new(s.try_clone().expect("clone")), Box::new(s))
            }
            Conn::Tcp(s) => {
                s.set_read_timeout(t).expect("timeout");
                (Box::new(s.try_clone().expect("clone")), Box::new(s))
            }
        }
    }
}

/// A connection whose writes happen in the background.
pub struct Raw {
    rx: Box<dyn Read + Send>,
    writer: Option<JoinHandle<std::io::Result<()>>>,
    pub tail: Vec<u8>,
    pub read: usize,
}

impl Raw {
    /// Connects and starts writing `input`.
    pub fn send(conn: Conn, input: Vec<u8>) -> Raw {
        let (rx, mut tx) = conn.split();
        let writer = std::thread::spawn(move || {
            for chunk in input.chunks(64 << 10) {
                tx.write_all(chunk)?;
            }
            Ok(())
        });
        Raw {
            rx,
            writer: Some(writer),
            tail: Vec::new(),
            read: 0,
        }
    }

    /// Reads until the tail contains `needle` (true) or `timeout` passes or the peer
    /// closes (false).
    pub fn read_until(&mut self, needle: &[u8], timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 << 10];
        while Instant::now() < end {
            if self.tail.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            match self.rx.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.read += n;
                    self.tail.extend_from_slice(&buf[..n]);
                    if self.tail.len() > KEEP {
                        self.tail.drain(..self.tail.len() - KEEP / 2);
                    }
                }
                Err(_) => {}
            }
        }
        false
    }

    /// Waits for the writer to finish; its result.
    pub fn written(&mut self) -> std::io::Result<()> {
        self.writer.take().map_or(Ok(()), |w| w.join().expect("writer thread"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
