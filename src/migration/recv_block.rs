//! The destination side of the disk records: the DISKS check (answered on the way back),
//! BLOCK and BLOCK_ZERO written into this VM's images, PROGRESS shown on stderr, and at
//! the end every image flushed and taken over.
//!
//! The writes happen on a thread of their own, in stream order, so reading and checking
//! the next records overlaps with writing the last ones; the first error is reported at
//! the next record (and at the end).

use super::disks::{self, Announce, Mode};
use super::stream::SECTOR;
use crate::vm::Vm;
use crate::vm::disks::Disk;
use crossbeam_channel::{Receiver, Sender, bounded};
use devices::block::BlockBackend;
use devices::bus::lock;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Image = Arc<Mutex<Box<dyn BlockBackend>>>;

/// Work for the writer thread.
enum Job {
    Data {
        image: Image,
        id: String,
        offset: u64,
        data: Vec<u8>,
    },
    Zero {
        image: Image,
        id: String,
        offset: u64,
        len: u64,
    },
}

/// Buffers in flight between the stream and the images (each at most 1 MiB).
const IN_FLIGHT: usize = 8;

struct Writer {
    jobs: Option<Sender<Job>>,
    /// Emptied buffers coming back for reuse.
    spare: Receiver<Vec<u8>>,
    error: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start() -> Result<Writer, String> {
        let (jobs, rx) = bounded::<Job>(IN_FLIGHT);
        let (give_back, spare) = bounded::<Vec<u8>>(IN_FLIGHT + 1);
        let error = Arc::new(Mutex::new(None));
        let first_error = error.clone();
        let thread = std::thread::Builder::new()
            .name("incoming-disks".into())
            .spawn(move || {
                for job in rx {
                    if lock(&first_error).is_some() {
                        continue;
                    }
                    let result = match job {
                        Job::Data { image, id, offset, data } => {
                            let r = lock(&image)
                                .write_at(&data, offset)
                                .map_err(|e| format!("cannot write disk '{id}' at {offset:#x}: {e}"));
                            let _ = give_back.try_send(data);
                            r
                        }
                        Job::Zero { image, id, offset, len } => zero(&image, &id, offset, len),
                    };
                    if let Err(e) = result {
                        *lock(&first_error) = Some(e);
                    }
                }
            })
            .map_err(|e| format!("cannot start the disk writer: {e}"))?;
        Ok(Writer {
            jobs: Some(jobs),
            spare,
            error,
            thread: Some(thread),
        })
    }

    fn check(&self) -> Result<(), String> {
        lock(&self.error).clone().map_or(Ok(()), Err)
    }

    fn send(&self, job: Job) -> Result<(), String> {
        self.check()?;
        let jobs = self.jobs.as_ref().ok_or("the disk writer has stopped")?;
        jobs.send(job).map_err(|_| "the disk writer has stopped".to_string())
    }

    /// Waits for every queued write; returns the first error.
    fn drain(&mut self) -> Result<(), String> {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.check()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.drain();
    }
}

/// Makes the range read as zeroes, touching only the parts that do not already.
fn zero(image: &Image, id: &str, offset: u64, len: u64) -> Result<(), String> {
    let err = |e: devices::block::BlockError| format!("cannot zero disk '{id}' at {offset:#x}: {e}");
    let mut b = lock(image);
    for e in b.block_status(offset, len).map_err(err)? {
        if !e.zero {
            b.write_zeroes(e.start, e.length, true).map_err(err)?;
        }
    }
    Ok(())
}

pub struct BlockSink<'a> {
    vm: &'a Vm,
    announce: Option<Announce>,
    /// The way back to the source, for the answer to DISKS.
    reply: Option<&'a mut Box<dyn Write + Send>>,
    shown: bool,
    writer: Option<Writer>,
}

impl<'a> BlockSink<'a> {
    pub fn new(vm: &'a Vm, reply: Option<&'a mut Box<dyn Write + Send>>) -> Self {
        BlockSink {
            vm,
            announce: None,
            reply,
            shown: false,
            writer: None,
        }
    }

    fn writer(&mut self) -> Result<&Writer, String> {
        if self.writer.is_none() {
            self.writer = Some(Writer::start()?);
        }
        Ok(self.writer.as_ref().expect("just started"))
    }

    /// Checks the source's disks against this VM's, activates the ones that receive data,
    /// and answers the source either way.
    pub fn disks(&mut self, payload: &[u8]) -> Result<(), String> {
        if self.announce.is_some() {
            return Err("a second disk list".into());
        }
        let result = Announce::decode(payload).and_then(|a| disks::accept(self.vm, &a).map(|()| a));
        let answer = result.as_ref().map(|_| ()).map_err(|e| e.clone());
        if let (Some(r), true) = (self.reply.as_mut(), result.as_ref().map_or(true, |a| a.mode != Mode::Shared)) {
            // A source that is gone will tell on its own; the check's outcome is what counts.
            let _ = disks::reply::send(r.as_mut(), &answer);
        }
        self.announce = Some(result?);
        Ok(())
    }

    /// The disk a BLOCK/BLOCK_ZERO addresses, if the range lies on a disk that receives data.
    fn target(&self, disk: u32, offset: u64, len: u64) -> Result<&'a Disk, String> {
        let a = self.announce.as_ref().ok_or("disk data before the disk list")?;
        let d = a
            .disks
            .get(disk as usize)
            .filter(|d| d.copied)
            .ok_or_else(|| format!("disk data for disk {disk}, which receives none"))?;
        let end = offset.checked_add(len).filter(|e| *e <= d.size);
        if offset % SECTOR != 0 || end.is_none() || len == 0 || !(len % SECTOR == 0 || end == Some(d.size)) {
            return Err(format!(
                "disk data at {offset:#x}+{len:#x} lies outside disk '{}' or is not whole sectors",
                d.id
            ));
        }
        Ok(&self.vm.disks()[disk as usize])
    }

    pub fn block(&mut self, disk: u32, offset: u64, data: &[u8]) -> Result<(), String> {
        let d = self.target(disk, offset, data.len() as u64)?;
        let w = self.writer()?;
        let mut buf = w.spare.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        w.send(Job::Data {
            image: d.backend.clone(),
            id: d.cfg.id.clone(),
            offset,
            data: buf,
        })
    }

    /// Makes the range read as zeroes (in stream order with the data).
    pub fn zero(&mut self, disk: u32, offset: u64, len: u64) -> Result<(), String> {
        let d = self.target(disk, offset, len)?;
        self.writer()?.send(Job::Zero {
            image: d.backend.clone(),
            id: d.cfg.id.clone(),
            offset,
            len,
        })
    }

    /// `Completed N %`, on stderr (stdout may carry the guest's console).
    pub fn progress(&mut self, percent: u32) {
        let mut e = std::io::stderr().lock();
        if !self.shown {
            let _ = writeln!(e, "Receiving block device images");
            self.shown = true;
        }
        let _ = write!(e, "Completed {percent} %{}", if percent == 100 { '\n' } else { '\r' });
        let _ = e.flush();
    }

    /// The stream is complete: make what was written durable and take every image over
    /// (the source has flushed and let go of its images by now).
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(mut w) = self.writer.take() {
            w.drain()?;
        }
        if let Some(a) = &self.announce {
            for (d, theirs) in self.vm.disks().iter().zip(&a.disks) {
                if theirs.copied {
                    lock(&d.backend)
                        .flush()
                        .map_err(|e| format!("cannot flush disk '{}': {e}", d.cfg.id))?;
                }
            }
        }
        self.vm.activate_disks()
    }
}
