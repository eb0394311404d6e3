//! The source's multifd channels: one thread per connection, each reading its pages out
//! of guest RAM, finding the zero ones, compressing the rest and writing the packet, so
//! the channels work in parallel. The migration thread only hands out page runs, and a
//! sync point to every channel whenever it takes a new look at the dirty log.

use super::Settings;
use super::compress::{CompressError, Compressor};
use super::wire::{self, Header, Kind, ZERO_BIT};
use crate::memory::GuestRam;
use crate::migration::send::is_zero;
use crate::migration::uri::Aborter;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

const PAGE: u64 = 4096;

#[derive(Debug, Error)]
pub enum SendError {
    /// Writing the channel failed (the peer went away, a cancel shut it down).
    #[error("{}", crate::errtext::io(.0))]
    Io(#[source] io::Error),
    #[error(transparent)]
    Ram(#[from] GuestMemoryError),
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error("a multifd channel thread ended unexpectedly")]
    Lost,
}

/// What the channels did, summed over all of them.
#[derive(Default)]
pub struct Counters {
    pub zero: AtomicU64,
    pub normal: AtomicU64,
    /// Bytes written to the channels (handshakes, headers, entries, payloads).
    pub bytes: AtomicU64,
}

enum Job {
    Pages { gpa: u64, count: u64 },
    Sync(u64),
    End,
}

/// A connected channel, ready for its thread.
pub struct Channel {
    pub writer: Box<dyn Write + Send>,
    pub abort: Aborter,
}

pub struct MultifdSender {
    queues: Vec<Sender<Job>>,
    threads: Vec<JoinHandle<Result<(), SendError>>>,
    aborts: Vec<Aborter>,
    next: usize,
    syncs: u64,
    pub counters: Arc<Counters>,
}

impl MultifdSender {
    /// Starts one thread per channel (each already past its handshake).
    pub fn start(channels: Vec<Channel>, ram: &GuestRam, s: &Settings) -> Result<MultifdSender, SendError> {
        let counters = Arc::new(Counters::default());
        counters.bytes.store(channels.len() as u64 * 24, Relaxed);
        let mut m = MultifdSender {
            queues: Vec::new(),
            threads: Vec::new(),
            aborts: Vec::new(),
            next: 0,
            syncs: 0,
            counters: counters.clone(),
        };
        for (id, ch) in channels.into_iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(2);
            let mut w = Worker {
                out: BufWriter::with_capacity(256 << 10, ch.writer),
                comp: Compressor::new(s.compression, s.zlib_level, s.zstd_level)?,
                compression: s.compression,
                ram: ram.clone(),
                counters: counters.clone(),
                buf: Vec::new(),
                packed: Vec::new(),
                entries: Vec::new(),
                pages: 0,
            };
            let t = std::thread::Builder::new()
                .name(format!("multifd-send-{id}"))
                .spawn(move || w.run(rx))
                .map_err(SendError::Io)?;
            m.queues.push(tx);
            m.threads.push(t);
            m.aborts.push(ch.abort);
        }
        Ok(m)
    }

    /// Hands `count` pages from `gpa` (at most a packet's worth) to a free channel, or
    /// waits for the next in turn.
    pub fn send(&mut self, gpa: u64, count: u64) -> Result<(), SendError> {
        let n = self.queues.len();
        let mut job = Job::Pages { gpa, count };
        for i in 0..n {
            let k = (self.next + i) % n;
            match self.queues[k].try_send(job) {
                Ok(()) => {
                    self.next = (k + 1) % n;
                    return Ok(());
                }
                Err(TrySendError::Full(j)) => job = j,
                Err(TrySendError::Disconnected(_)) => return Err(self.fail()),
            }
        }
        let k = self.next;
        self.next = (k + 1) % n;
        self.queues[k].send(job).map_err(|_| self.fail())
    }

    /// A sync point on every channel: their threads on the destination meet there, so no
    /// page sent after it can be overwritten by an older copy sent before it.
    pub fn sync(&mut self) -> Result<(), SendError> {
        self.syncs += 1;
        for k in 0..self.queues.len() {
            if self.queues[k].send(Job::Sync(self.syncs)).is_err() {
                return Err(self.fail());
            }
        }
        Ok(())
    }

    /// Ends every channel (the destination checks each one's page count) and waits for
    /// their threads: every page is written when this returns.
    pub fn finish(&mut self) -> Result<(), SendError> {
        for k in 0..self.queues.len() {
            if self.queues[k].send(Job::End).is_err() {
                return Err(self.fail());
            }
        }
        self.queues.clear();
        self.join()
    }

    /// A channel is gone: stop the others and return the first thread's error.
    fn fail(&mut self) -> SendError {
        for a in &self.aborts {
            a();
        }
        self.queues.clear();
        self.join().err().unwrap_or(SendError::Lost)
    }

    fn join(&mut self) -> Result<(), SendError> {
        let mut first = Ok(());
        for t in self.threads.drain(..) {
            let r = t.join().unwrap_or(Err(SendError::Lost));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for MultifdSender {
    /// A migration that ends early: the channels are shut down and their threads joined.
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            for a in &self.aborts {
                a();
            }
            self.queues.clear();
            let _ = self.join();
        }
    }
}

struct Worker {
    out: BufWriter<Box<dyn Write + Send>>,
    comp: Compressor,
    compression: super::Compression,
    ram: GuestRam,
    counters: Arc<Counters>,
    buf: Vec<u8>,
    packed: Vec<u8>,
    entries: Vec<u8>,
    /// Pages this channel carried, zero ones included.
    pages: u64,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Job>) -> Result<(), SendError> {
        for job in rx {
            match job {
                Job::Pages { gpa, count } => self.pages(gpa, count)?,
                Job::Sync(n) => {
                    self.control(Kind::Sync, n)?;
                    self.out.flush().map_err(SendError::Io)?;
                }
                Job::End => {
                    self.control(Kind::End, self.pages)?;
                    return self.out.flush().map_err(SendError::Io);
                }
            }
        }
        Ok(())
    }

    fn control(&mut self, kind: Kind, arg: u64) -> Result<(), SendError> {
        let mut h = Header {
            kind,
            compression: self.compression,
            count: 0,
            len: 0,
            crc: 0,
            arg,
        };
        h.crc = wire::packet_crc(&h, &[], &[]);
        self.out.write_all(&h.encode()).map_err(SendError::Io)?;
        self.counters.bytes.fetch_add(wire::HEADER as u64, Relaxed);
        Ok(())
    }

    /// One packet: the pages are copied out of guest RAM first (the guest may be writing
    /// them), zero pages go as flags in their entries, the rest as (compressed) data.
    fn pages(&mut self, gpa: u64, count: u64) -> Result<(), SendError> {
        self.buf.resize((count * PAGE) as usize, 0);
        self.ram.read_slice(&mut self.buf, GuestAddress(gpa))?;
        self.entries.clear();
        // The non-zero pages move down over the zero ones, in place: the data is then
        // the front of the buffer, with no second copy.
        let (p, mut kept) = (PAGE as usize, 0usize);
        for i in 0..count as usize {
            let at = gpa + (i * p) as u64;
            if is_zero(&self.buf[i * p..(i + 1) * p]) {
                self.entries.extend_from_slice(&(at | ZERO_BIT).to_le_bytes());
            } else {
                self.entries.extend_from_slice(&at.to_le_bytes());
                if kept != i {
                    self.buf.copy_within(i * p..(i + 1) * p, kept * p);
                }
                kept += 1;
            }
        }
        let zero = count - kept as u64;
        let data = &self.buf[..kept * p];
        self.comp.compress(data, &mut self.packed)?;
        let payload = match self.compression {
            super::Compression::None => data,
            _ => &self.packed,
        };
        let mut h = Header {
            kind: Kind::Pages,
            compression: self.compression,
            count: count as u32,
            len: payload.len() as u32,
            crc: 0,
            arg: 0,
        };
        h.crc = wire::packet_crc(&h, &self.entries, payload);
        let io = |e| SendError::Io(e);
        self.out.write_all(&h.encode()).map_err(io)?;
        self.out.write_all(&self.entries).map_err(io)?;
        self.out.write_all(payload).map_err(io)?;
        let wire = (wire::HEADER + self.entries.len() + payload.len()) as u64;
        self.counters.bytes.fetch_add(wire, Relaxed);
        self.counters.zero.fetch_add(zero, Relaxed);
        self.counters.normal.fetch_add(count - zero, Relaxed);
        self.pages += count;
        Ok(())
    }
}
