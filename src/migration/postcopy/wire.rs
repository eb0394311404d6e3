//! The way back during post-copy: the destination's page requests (`GWRQ`, `u32` 8, `u64`
//! guest-physical address of the page), among which its final answer (`GWOK`/`GWER`,
//! `disks::reply`) comes last. Each message is written whole under one lock, so the fault
//! thread and the loader never interleave theirs.

use crate::migration::disks::reply::{self, ReplyError};
use devices::bus::lock;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

/// What the source reads on the way back once post-copy runs.
#[derive(Debug)]
pub enum Msg {
    /// The destination needs the page at this guest-physical address now.
    Request(u64),
    /// The destination's outcome: it has every page (`Ok`), or why it failed.
    Answer(Result<(), ReplyError>),
}

/// Reads the next message.
pub fn read(r: &mut dyn Read) -> Msg {
    let mut h = [0u8; 8];
    if let Err(e) = r.read_exact(&mut h) {
        return Msg::Answer(Err(ReplyError::NoAnswer(e)));
    }
    if &h[..4] == b"GWRQ" {
        let mut a = [0u8; 8];
        if h[4..8] != 8u32.to_le_bytes() {
            return Msg::Answer(Err(ReplyError::NotAReply));
        }
        return match r.read_exact(&mut a) {
            Ok(()) => Msg::Request(u64::from_le_bytes(a)),
            Err(e) => Msg::Answer(Err(ReplyError::NoAnswer(e))),
        };
    }
    Msg::Answer(reply::answer(&mut (&h[..]).chain(r)))
}

/// The destination's way back, shared by the loader (its answers) and the fault thread
/// (its requests).
#[derive(Clone)]
pub struct SharedReply(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedReply {
    pub fn new(w: Box<dyn Write + Send>) -> Self {
        SharedReply(Arc::new(Mutex::new(w)))
    }

    /// Asks for the page at `gpa`.
    pub fn request(&self, gpa: u64) -> io::Result<()> {
        let mut m = [0u8; 16];
        m[..4].copy_from_slice(b"GWRQ");
        m[4..8].copy_from_slice(&8u32.to_le_bytes());
        m[8..].copy_from_slice(&gpa.to_le_bytes());
        let mut w = lock(&self.0);
        w.write_all(&m)?;
        w.flush()
    }
}

/// Whole messages only: every `write` of the loader's answers is one `write_all` under
/// the lock (`disks::reply::send` builds each message in one buffer first).
impl Write for SharedReply {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        lock(&self.0).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_then_the_answer() {
        let buf: Vec<u8> = Vec::new();
        let shared = Arc::new(Mutex::new(buf));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                lock(&self.0).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut r = SharedReply::new(Box::new(W(shared.clone())));
        r.request(0x5000).unwrap();
        reply::send(&mut r, &Ok::<(), String>(())).unwrap();
        let bytes = lock(&shared).clone();
        let mut rd = &bytes[..];
        assert!(matches!(read(&mut rd), Msg::Request(0x5000)));
        assert!(matches!(read(&mut rd), Msg::Answer(Ok(()))));
        assert!(matches!(read(&mut rd), Msg::Answer(Err(ReplyError::NoAnswer(_)))));
        let mut bad = &b"GWRQ\x09\0\0\0"[..];
        assert!(matches!(read(&mut bad), Msg::Answer(Err(ReplyError::NotAReply))));
    }
}
