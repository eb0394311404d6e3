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

/// The largest resume message: a bitmap for 16 TiB of RAM.
const MAX_RESUME: usize = 8 + (1 << 29);

/// A resumed post-copy's first message, destination to source: `GWRS`, `u32` length,
/// `u64` pages received so far, then per RAM region the bitmap (`u64` words) of the pages
/// it holds.
pub fn resume_message(pages_seen: u64, bitmaps: &[&[u64]]) -> Vec<u8> {
    let words: usize = bitmaps.iter().map(|b| b.len()).sum();
    let mut m = Vec::with_capacity(16 + words * 8);
    m.extend_from_slice(b"GWRS");
    m.extend_from_slice(&((8 + words * 8) as u32).to_le_bytes());
    m.extend_from_slice(&pages_seen.to_le_bytes());
    for w in bitmaps.iter().flat_map(|b| b.iter()) {
        m.extend_from_slice(&w.to_le_bytes());
    }
    m
}

/// Reads the resume message for RAM regions of `words` bitmap words each: the pages the
/// destination received, and the pages it holds.
pub fn read_resume(r: &mut dyn Read, words: &[usize]) -> io::Result<(u64, Vec<Vec<u64>>)> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h)?;
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let want = 8 + words.iter().sum::<usize>() * 8;
    if &h[..4] != b"GWRS" || len != want || len > MAX_RESUME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the destination's resume message does not fit this VM's RAM",
        ));
    }
    let mut p = vec![0u8; len];
    r.read_exact(&mut p)?;
    let word = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
    let pages = word(0);
    let mut at = 8;
    let mut maps = Vec::with_capacity(words.len());
    for &n in words {
        maps.push((0..n).map(|k| word(at + k * 8)).collect());
        at += n * 8;
    }
    Ok((pages, maps))
}

/// The destination's way back, shared by the loader (its answers) and the fault thread
/// (its requests).
#[derive(Clone)]
pub struct SharedReply(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedReply {
    pub fn new(w: Box<dyn Write + Send>) -> Self {
        SharedReply(Arc::new(Mutex::new(w)))
    }

    /// A new connection's way back (a resumed post-copy).
    pub fn replace(&self, w: Box<dyn Write + Send>) {
        *lock(&self.0) = w;
    }

    /// Writes one whole message.
    pub fn message(&self, m: &[u8]) -> io::Result<()> {
        let mut w = lock(&self.0);
        w.write_all(m)?;
        w.flush()
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

    #[test]
    fn the_resume_message_must_fit_this_ram() {
        let m = resume_message(77, &[&[1, 2], &[3]]);
        let (pages, maps) = read_resume(&mut &m[..], &[2, 1]).unwrap();
        assert_eq!((pages, maps), (77, vec![vec![1, 2], vec![3]]));
        assert!(read_resume(&mut &m[..], &[2, 2]).is_err(), "another RAM layout");
        assert!(read_resume(&mut &m[..10], &[2, 1]).is_err(), "cut short");
    }
}
