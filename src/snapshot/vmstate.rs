//! The VM state stream inside a qcow2 image's vmstate area: the same stream a migration
//! sends (docs/migration.md), written and read in large sequential pieces.

use super::SnapshotError;
use crate::migration::dirty::{self, PAGE};
use crate::migration::send::{Stop, write_pages};
use crate::migration::stream::{PAGES_PER_RECORD, Writer};
use crate::vm::Vm;
use devices::block::BlockBackend;
use devices::bus::lock;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Writes go to the image in 4 MiB pieces.
const CHUNK: usize = 4 << 20;

type Disk = Arc<Mutex<Box<dyn BlockBackend>>>;

fn qcow2_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Appends to the active image's vmstate area. The image writes happen on a thread of
/// their own, so encoding the next 4 MiB overlaps with writing the last.
pub struct VmstateWriter {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<io::Result<u64>>>,
}

impl VmstateWriter {
    pub fn new(disk: Disk) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(2);
        let worker = std::thread::spawn(move || {
            let mut pos = 0u64;
            for chunk in rx {
                let mut d = lock(&disk);
                let q = d.as_qcow2().ok_or_else(|| io::Error::other("the vmstate disk is not qcow2"))?;
                q.write_vmstate(&chunk, pos).map_err(qcow2_err)?;
                pos += chunk.len() as u64;
            }
            Ok(pos)
        });
        VmstateWriter {
            buf: Vec::with_capacity(CHUNK),
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    fn push(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let tx = self.tx.as_ref().ok_or_else(|| io::Error::other("vmstate writer closed"))?;
        if tx.send(chunk).is_ok() {
            return Ok(());
        }
        // The writer thread stopped on an error: report that error.
        self.tx.take();
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => Err(e),
            _ => Err(io::Error::other("the VM state writer stopped")),
        }
    }

    /// Writes what is buffered, waits for the writer; returns the stream's total size.
    pub fn finish(mut self) -> io::Result<u64> {
        let pushed = self.push();
        self.tx.take();
        let written = self.worker.take().map_or(Ok(0), |w| {
            w.join().unwrap_or_else(|_| Err(io::Error::other("vmstate writer panicked")))
        });
        pushed.and(written)
    }
}

impl Drop for VmstateWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Write for VmstateWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.push()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read_chunk(disk: &Disk, snapshot: Option<&str>, buf: &mut [u8], pos: u64) -> io::Result<()> {
    let mut d = lock(disk);
    let q = d.as_qcow2().ok_or_else(|| io::Error::other("the vmstate disk is not qcow2"))?;
    match snapshot {
        Some(tag) => q.read_snapshot_vmstate(tag, buf, pos),
        None => q.read_vmstate(buf, pos),
    }
    .map_err(qcow2_err)
}

/// Reads `size` bytes of vmstate: a snapshot's (without reverting to it, read as asked) or
/// the active image's (read ahead on a thread of its own, 4 MiB at a time).
pub enum VmstateReader {
    Snapshot {
        disk: Disk,
        tag: String,
        pos: u64,
        size: u64,
    },
    Active {
        rx: Receiver<io::Result<Vec<u8>>>,
        cur: Vec<u8>,
        at: usize,
    },
}

impl VmstateReader {
    pub fn of_snapshot(disk: Disk, tag: &str, size: u64) -> Self {
        VmstateReader::Snapshot {
            disk,
            tag: tag.to_string(),
            pos: 0,
            size,
        }
    }

    pub fn active(disk: Disk, size: u64) -> Self {
        let (tx, rx) = sync_channel(2);
        std::thread::spawn(move || {
            let mut pos = 0u64;
            while pos < size {
                let n = (size - pos).min(CHUNK as u64) as usize;
                let mut chunk = vec![0u8; n];
                let r = read_chunk(&disk, None, &mut chunk, pos).map(|()| chunk);
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    return;
                }
                pos += n as u64;
            }
        });
        VmstateReader::Active {
            rx,
            cur: Vec::new(),
            at: 0,
        }
    }
}

impl Read for VmstateReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            VmstateReader::Snapshot { disk, tag, pos, size } => {
                let n = (*size - *pos).min(buf.len() as u64).min(CHUNK as u64) as usize;
                if n == 0 {
                    return Ok(0);
                }
                read_chunk(disk, Some(tag), &mut buf[..n], *pos)?;
                *pos += n as u64;
                Ok(n)
            }
            VmstateReader::Active { rx, cur, at } => {
                if *at == cur.len() {
                    match rx.recv() {
                        Ok(chunk) => {
                            *cur = chunk?;
                            *at = 0;
                        }
                        Err(_) => return Ok(0),
                    }
                }
                let n = (cur.len() - *at).min(buf.len());
                buf[..n].copy_from_slice(&cur[*at..*at + n]);
                *at += n;
                Ok(n)
            }
        }
    }
}

/// Writes the paused VM's machine state and RAM (pages it never touched cost nothing) as
/// one stream. The state goes right after CONFIG, ahead of the pages (the format allows it
/// anywhere before END), so `loadvm` can check it against this VM by reading only the start.
/// Returns the guest clock (ns) the state was taken at.
pub fn write_state<W: Write>(vm: &Vm, out: &mut W) -> Result<u64, SnapshotError> {
    let stop = |s: Stop| match s {
        Stop::Io(e) => SnapshotError::WriteState(e),
        other => SnapshotError::Stream(other),
    };
    // `out` buffers already (the vmstate writer writes 4 MiB at a time): no BufWriter.
    let io_fail = SnapshotError::WriteState;
    let mut w = Writer::new(out).map_err(io_fail)?;
    w.config(vm.mem_size(), vm.vcpu_count() as u32, "pc").map_err(io_fail)?;
    let state = vm.save_state()?;
    w.state(&devices::state::VersionedState::to_bytes(&state)).map_err(io_fail)?;
    let touched = dirty::touched(vm.ram())?;
    let regions: Vec<(u64, u64)> = vm.ram().iter().map(|r| (r.start_addr().0, r.len() / PAGE)).collect();
    let (mut buf, mut pages) = (Vec::new(), 0u64);
    for ((base, count), bm) in regions.into_iter().zip(&touched) {
        for (first, n) in dirty::runs(bm, count, PAGES_PER_RECORD as u64) {
            write_pages(&mut w, vm.ram(), base + first * PAGE, n, &mut buf).map_err(stop)?;
            pages += n;
        }
    }
    w.end(pages).map_err(io_fail)?;
    Ok(state.vm.clock.clock)
}
