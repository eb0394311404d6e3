//! The destination's multifd channels: one thread per connection reads its packets,
//! checks each (bounds, CRC-32C, every page inside guest RAM), decompresses and writes the
//! pages. At each sync point the threads wait for one another, so every page of one
//! round is in RAM before any page of the next is written.

use super::compress::{CompressError, Compression, Decompressor};
use super::wire::{self, HEADER, Header, Kind, WireError, ZERO_BIT};
use crate::memory::GuestRam;
use crate::migration::send::is_zero;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

const PAGE: u64 = 4096;

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("multifd channel {channel}: {err}")]
    Compress {
        channel: u32,
        #[source]
        err: CompressError,
    },
    #[error("multifd channel {channel}: page at {gpa:#x} lies outside guest RAM or is not page aligned")]
    OutsideRam { channel: u32, gpa: u64 },
    #[error("multifd channel {channel}: {compression} data where {expected} was agreed")]
    CompressionMismatch {
        channel: u32,
        compression: &'static str,
        expected: &'static str,
    },
    #[error("multifd channel {channel}: sync point {got} follows {last}")]
    SyncOrder { channel: u32, got: u64, last: u64 },
    #[error("multifd channel {channel} announces {announced} pages but carried {carried}")]
    PageCount { channel: u32, announced: u64, carried: u64 },
    #[error(transparent)]
    Ram(#[from] GuestMemoryError),
    /// Another channel failed first (its error is the one reported).
    #[error("stopped: another multifd channel failed")]
    Stopped,
    #[error("a multifd channel thread ended unexpectedly")]
    Lost,
}

/// A barrier the channel threads meet at, which a failing thread can break so that no
/// other waits forever for it.
struct Barrier {
    state: Mutex<(usize, u64, bool)>,
    cv: Condvar,
    n: usize,
}

impl Barrier {
    fn wait(&self) -> Result<(), ChannelError> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if g.2 {
            return Err(ChannelError::Stopped);
        }
        g.0 += 1;
        if g.0 == self.n {
            g.0 = 0;
            g.1 += 1;
            self.cv.notify_all();
            return Ok(());
        }
        let round = g.1;
        while g.1 == round && !g.2 {
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        if g.1 == round { Err(ChannelError::Stopped) } else { Ok(()) }
    }

    fn abort(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).2 = true;
        self.cv.notify_all();
    }
}

/// One accepted channel: its stream (past the handshake) and its socket, to shut down.
pub struct Incoming {
    pub id: u32,
    pub input: Box<dyn Read + Send>,
    pub socket: Option<std::fs::File>,
}

pub struct MultifdReceiver {
    threads: Vec<JoinHandle<Result<u64, ChannelError>>>,
    sockets: Vec<std::fs::File>,
    barrier: Arc<Barrier>,
}

impl MultifdReceiver {
    /// Starts a thread per channel, writing pages into `ram` (whose regions are `regions`,
    /// as (base, length)).
    pub fn start(
        channels: Vec<Incoming>,
        ram: &GuestRam,
        regions: Vec<(u64, u64)>,
        c: Compression,
    ) -> Result<MultifdReceiver, ChannelError> {
        let barrier = Arc::new(Barrier {
            state: Mutex::new((0, 0, false)),
            cv: Condvar::new(),
            n: channels.len(),
        });
        let regions = Arc::new(regions);
        let mut m = MultifdReceiver {
            threads: Vec::new(),
            sockets: Vec::new(),
            barrier: barrier.clone(),
        };
        for ch in channels {
            if let Some(s) = ch.socket {
                m.sockets.push(s);
            }
            let mut w = Worker {
                id: ch.id,
                input: ch.input,
                ram: ram.clone(),
                regions: regions.clone(),
                compression: c,
                dec: Decompressor::new(c).map_err(|err| ChannelError::Compress { channel: ch.id, err })?,
                entries: Vec::new(),
                payload: Vec::new(),
                data: Vec::new(),
                page: vec![0u8; PAGE as usize],
                pages: 0,
                last_sync: 0,
            };
            let b = barrier.clone();
            let t = std::thread::Builder::new()
                .name(format!("multifd-recv-{}", ch.id))
                .spawn(move || {
                    let r = w.run(&b);
                    if r.is_err() {
                        b.abort();
                    }
                    r
                })
                .map_err(|_| ChannelError::Lost)?;
            m.threads.push(t);
        }
        Ok(m)
    }

    /// Waits for every channel's end; returns the pages they carried. The first real
    /// error wins over the `Stopped` of the channels it stopped.
    pub fn finish(&mut self) -> Result<u64, ChannelError> {
        let mut pages = 0u64;
        let mut err: Option<ChannelError> = None;
        for t in self.threads.drain(..) {
            match t.join().unwrap_or(Err(ChannelError::Lost)) {
                Ok(n) => pages += n,
                Err(e) => {
                    if err.as_ref().is_none_or(|f| matches!(f, ChannelError::Stopped)) {
                        err = Some(e);
                    }
                }
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(pages),
        }
    }

    /// The load failed elsewhere: the channels are shut down; a channel's own error, if
    /// one failed first, is returned (it is the better reason).
    pub fn abort(&mut self) -> Option<ChannelError> {
        for s in &self.sockets {
            // SAFETY: shutdown(2) on a socket this receiver holds open.
            unsafe {
                libc::shutdown(s.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        self.barrier.abort();
        self.finish()
            .err()
            .filter(|e| !matches!(e, ChannelError::Stopped | ChannelError::Wire(WireError::Io { .. })))
    }
}

impl Drop for MultifdReceiver {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.abort();
        }
    }
}

struct Worker {
    id: u32,
    input: Box<dyn Read + Send>,
    ram: GuestRam,
    regions: Arc<Vec<(u64, u64)>>,
    compression: Compression,
    dec: Option<Decompressor>,
    entries: Vec<u8>,
    payload: Vec<u8>,
    data: Vec<u8>,
    page: Vec<u8>,
    pages: u64,
    last_sync: u64,
}

impl Worker {
    fn read(&mut self, buf_is_payload: bool, len: usize) -> Result<(), ChannelError> {
        let buf = if buf_is_payload { &mut self.payload } else { &mut self.entries };
        buf.resize(len, 0);
        let channel = self.id;
        self.input.read_exact(buf).map_err(|err| WireError::Io { channel, err }.into())
    }

    fn run(&mut self, barrier: &Barrier) -> Result<u64, ChannelError> {
        loop {
            let mut hb = [0u8; HEADER];
            let channel = self.id;
            self.input.read_exact(&mut hb).map_err(|err| WireError::Io { channel, err })?;
            let h = Header::decode(&hb, channel)?;
            if h.compression != self.compression {
                return Err(ChannelError::CompressionMismatch {
                    channel,
                    compression: h.compression.name(),
                    expected: self.compression.name(),
                });
            }
            self.read(false, h.count as usize * 8)?;
            self.read(true, h.len as usize)?;
            if wire::packet_crc(&h, &self.entries, &self.payload) != h.crc {
                return Err(WireError::Checksum(channel).into());
            }
            match h.kind {
                Kind::Pages => self.pages()?,
                Kind::Sync if h.arg == self.last_sync + 1 => {
                    self.last_sync = h.arg;
                    barrier.wait()?;
                }
                Kind::Sync => {
                    return Err(ChannelError::SyncOrder {
                        channel,
                        got: h.arg,
                        last: self.last_sync,
                    });
                }
                Kind::End if h.arg == self.pages => return Ok(self.pages),
                Kind::End => {
                    return Err(ChannelError::PageCount {
                        channel,
                        announced: h.arg,
                        carried: self.pages,
                    });
                }
            }
        }
    }

    /// Every entry is checked before any page of the packet is written.
    fn pages(&mut self) -> Result<(), ChannelError> {
        let channel = self.id;
        let mut data_pages = 0usize;
        for e in self.entries.chunks_exact(8) {
            let v = u64::from_le_bytes(e.try_into().unwrap_or_default());
            let gpa = v & !ZERO_BIT;
            let inside = self.regions.iter().any(|(b, l)| gpa >= *b && gpa < b + l);
            if gpa % PAGE != 0 || !inside {
                return Err(ChannelError::OutsideRam { channel, gpa });
            }
            if v & ZERO_BIT == 0 {
                data_pages += 1;
            }
        }
        let want = data_pages * PAGE as usize;
        let data: &[u8] = match self.dec.as_mut() {
            None if self.payload.len() == want => &self.payload,
            None => {
                return Err(WireError::Bad {
                    channel,
                    why: format!("{} bytes of data for {data_pages} pages", self.payload.len()),
                }
                .into());
            }
            Some(d) => {
                d.decompress(&self.payload, &mut self.data, want)
                    .map_err(|err| ChannelError::Compress { channel, err })?;
                &self.data
            }
        };
        let mut at = 0usize;
        for e in self.entries.chunks_exact(8) {
            let v = u64::from_le_bytes(e.try_into().unwrap_or_default());
            let gpa = GuestAddress(v & !ZERO_BIT);
            if v & ZERO_BIT == 0 {
                self.ram.write_slice(&data[at..at + PAGE as usize], gpa)?;
                at += PAGE as usize;
            } else {
                // A fresh VM's page is zero already; only a page written earlier needs it.
                self.ram.read_slice(&mut self.page, gpa)?;
                if !is_zero(&self.page) {
                    self.page.fill(0);
                    self.ram.write_slice(&self.page, gpa)?;
                }
            }
        }
        self.pages += self.entries.len() as u64 / 8;
        Ok(())
    }
}
