//! The destination side of the disk records: the DISKS check (answered on the way back),
//! BLOCK and BLOCK_ZERO written into this VM's images, PROGRESS shown on stdout, and at
//! the end every image flushed and taken over.
//!
//! The writes happen on a thread of their own, in stream order, so reading and checking
//! the next records overlaps with writing the last ones; the first error is reported at
//! the next record (and at the end). That thread also flushes what it wrote as it goes,
//! so the flush at the end, inside the guest's pause, has little left to write back.

use super::disks::{self, Announce, DisksError, Mode};
use super::stream::SECTOR;
use crate::vm::Vm;
use crate::vm::disks::{Disk, DiskError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use devices::block::{BlockBackend, BlockError};
use devices::bus::lock;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;

/// Why the destination refused a disk record, or could not write or take over its disks.
#[derive(Debug, Error)]
pub enum RecvBlockError {
    #[error("a second disk list")]
    SecondList,
    /// The DISKS record is malformed or the source's disks do not fit this VM's.
    #[error(transparent)]
    Refused(#[from] DisksError),
    #[error("disk data before the disk list")]
    BeforeList,
    /// Data for a disk the DISKS record did not announce as copied (or that does not exist).
    #[error("disk data for disk {0}, which receives none")]
    NotReceiving(u32),
    #[error("disk data at {offset:#x}+{len:#x} lies outside disk '{id}' or is not whole sectors")]
    OutsideDisk { id: String, offset: u64, len: u64 },
    #[error("cannot write disk '{id}' at {offset:#x}: {err}")]
    Write {
        id: String,
        offset: u64,
        #[source]
        err: BlockError,
    },
    #[error("cannot zero disk '{id}' at {offset:#x}: {err}")]
    Zero {
        id: String,
        offset: u64,
        #[source]
        err: BlockError,
    },
    /// Starting the writeback of written data (on the way, before END) failed.
    #[error("cannot write back disk '{id}': {err}")]
    WriteBack {
        id: String,
        #[source]
        err: BlockError,
    },
    #[error("cannot start the disk writer: {0}")]
    Thread(#[source] std::io::Error),
    /// The writer thread is gone (after its first error was reported).
    #[error("the disk writer has stopped")]
    WriterStopped,
    /// END: what was written could not be made durable.
    #[error("cannot flush disk '{id}': {err}")]
    Flush {
        id: String,
        #[source]
        err: BlockError,
    },
    /// END: an image could not be taken over from the source.
    #[error(transparent)]
    Activate(#[from] DiskError),
}

type Image = Arc<Mutex<Box<dyn BlockBackend>>>;

/// Work for the writer thread.
enum Job {
    /// `buf[data]` goes to `offset`; `buf` is then given back for reuse.
    Data {
        image: Image,
        id: String,
        offset: u64,
        buf: Vec<u8>,
        data: std::ops::Range<usize>,
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
/// Written data is sent on its way to the disk (writeback started, not waited for) every
/// this many bytes per image, and whenever the stream brings no disk data for `IDLE`, so
/// that the flush at END, inside the guest's pause, finds little left to write back.
const FLUSH_EVERY: u64 = 8 << 20;
const IDLE: Duration = Duration::from_millis(5);

/// The writer's first error, kept until it is reported; once set, later jobs are skipped.
#[derive(Default)]
struct FirstError(Mutex<(bool, Option<RecvBlockError>)>);

impl FirstError {
    fn set(&self, e: RecvBlockError) {
        let mut first = lock(&self.0);
        if !first.0 {
            *first = (true, Some(e));
        }
    }

    fn is_set(&self) -> bool {
        lock(&self.0).0
    }

    /// The first error, the first time it is asked for; then that the writer has stopped.
    fn check(&self) -> Result<(), RecvBlockError> {
        let mut first = lock(&self.0);
        match first.0 {
            false => Ok(()),
            true => Err(first.1.take().unwrap_or(RecvBlockError::WriterStopped)),
        }
    }
}

/// The images the writer has written since it last started their writeback, with the bytes.
#[derive(Default)]
struct Unflushed(Vec<(Image, String, u64)>);

impl Unflushed {
    fn wrote(&mut self, image: &Image, id: &str, bytes: u64, error: &FirstError) {
        let i = match self.0.iter().position(|(i, _, _)| Arc::ptr_eq(i, image)) {
            Some(i) => i,
            None => {
                self.0.push((image.clone(), id.to_string(), 0));
                self.0.len() - 1
            }
        };
        self.0[i].2 += bytes;
        if self.0[i].2 >= FLUSH_EVERY {
            let (image, id, _) = self.0.swap_remove(i);
            write_back(&image, &id, error);
        }
    }

    fn write_back_all(&mut self, error: &FirstError) {
        for (image, id, _) in self.0.drain(..) {
            write_back(&image, &id, error);
        }
    }
}

fn write_back(image: &Image, id: &str, error: &FirstError) {
    if let Err(err) = lock(image).start_writeback() {
        error.set(RecvBlockError::WriteBack { id: id.to_string(), err });
    }
}

struct Writer {
    jobs: Option<Sender<Job>>,
    /// Emptied buffers coming back for reuse.
    spare: Receiver<Vec<u8>>,
    error: Arc<FirstError>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start() -> Result<Writer, RecvBlockError> {
        let (jobs, rx) = bounded::<Job>(IN_FLIGHT);
        let (give_back, spare) = bounded::<Vec<u8>>(IN_FLIGHT + 1);
        let error = Arc::new(FirstError::default());
        let first_error = error.clone();
        let thread = std::thread::Builder::new()
            .name("incoming-disks".into())
            .spawn(move || {
                let mut dirty = Unflushed::default();
                loop {
                    let job = match rx.recv_timeout(IDLE) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => {
                            // The stream has moved on to RAM (or is between rounds): write
                            // back now what END would otherwise wait for.
                            dirty.write_back_all(&first_error);
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    if first_error.is_set() {
                        continue;
                    }
                    let result = match job {
                        Job::Data {
                            image,
                            id,
                            offset,
                            buf,
                            data,
                        } => {
                            let r = lock(&image)
                                .write_at(&buf[data.clone()], offset)
                                .map_err(|err| RecvBlockError::Write {
                                    id: id.clone(),
                                    offset,
                                    err,
                                });
                            dirty.wrote(&image, &id, data.len() as u64, &first_error);
                            let _ = give_back.try_send(buf);
                            r
                        }
                        Job::Zero { image, id, offset, len } => {
                            let r = zero(&image, &id, offset, len);
                            dirty.wrote(&image, &id, 0, &first_error);
                            r
                        }
                    };
                    if let Err(e) = result {
                        first_error.set(e);
                    }
                }
            })
            .map_err(RecvBlockError::Thread)?;
        Ok(Writer {
            jobs: Some(jobs),
            spare,
            error,
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> Result<(), RecvBlockError> {
        self.error.check()?;
        let jobs = self.jobs.as_ref().ok_or(RecvBlockError::WriterStopped)?;
        jobs.send(job).map_err(|_| RecvBlockError::WriterStopped)
    }

    /// Waits for every queued write; returns the first error.
    fn drain(&mut self) -> Result<(), RecvBlockError> {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.error.check()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.drain();
    }
}

/// Makes the range read as zeroes, touching only the parts that do not already.
fn zero(image: &Image, id: &str, offset: u64, len: u64) -> Result<(), RecvBlockError> {
    let err = |err| RecvBlockError::Zero {
        id: id.to_string(),
        offset,
        err,
    };
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
    /// The way back to the source, if there is one.
    pub fn reply(&mut self) -> Option<&mut Box<dyn Write + Send>> {
        self.reply.as_deref_mut()
    }

    pub fn new(vm: &'a Vm, reply: Option<&'a mut Box<dyn Write + Send>>) -> Self {
        BlockSink {
            vm,
            announce: None,
            reply,
            shown: false,
            writer: None,
        }
    }

    fn writer(&mut self) -> Result<&Writer, RecvBlockError> {
        if self.writer.is_none() {
            self.writer = Some(Writer::start()?);
        }
        Ok(self.writer.as_ref().expect("just started"))
    }

    /// Checks the source's disks against this VM's, activates the ones that receive data,
    /// and answers the source either way.
    pub fn disks(&mut self, payload: &[u8]) -> Result<(), RecvBlockError> {
        if self.announce.is_some() {
            return Err(RecvBlockError::SecondList);
        }
        let result = Announce::decode(payload).and_then(|a| disks::accept(self.vm, &a).map(|()| a));
        if let (Some(r), true) = (self.reply.as_mut(), result.as_ref().map_or(true, |a| a.mode != Mode::Shared)) {
            // A source that is gone will tell on its own; the check's outcome is what counts.
            let _ = disks::reply::send(r.as_mut(), &result.as_ref().map(|_| ()));
        }
        self.announce = Some(result?);
        Ok(())
    }

    /// The disk a BLOCK/BLOCK_ZERO addresses, if the range lies on a disk that receives data.
    fn target(&self, disk: u32, offset: u64, len: u64) -> Result<&'a Disk, RecvBlockError> {
        let a = self.announce.as_ref().ok_or(RecvBlockError::BeforeList)?;
        let d = a
            .disks
            .get(disk as usize)
            .filter(|d| d.copied)
            .ok_or(RecvBlockError::NotReceiving(disk))?;
        let end = offset.checked_add(len).filter(|e| *e <= d.size);
        if offset % SECTOR != 0 || end.is_none() || len == 0 || !(len % SECTOR == 0 || end == Some(d.size)) {
            return Err(RecvBlockError::OutsideDisk {
                id: d.id.clone(),
                offset,
                len,
            });
        }
        Ok(&self.vm.disks()[disk as usize])
    }

    /// Checks that a BLOCK record's range lies on a disk that receives data.
    pub fn check_block(&self, disk: u32, offset: u64, len: u64) -> Result<(), RecvBlockError> {
        self.target(disk, offset, len).map(|_| ())
    }

    /// An emptied buffer back from the writer, or a new one.
    pub fn spare(&mut self) -> Vec<u8> {
        self.writer.as_ref().and_then(|w| w.spare.try_recv().ok()).unwrap_or_default()
    }

    /// Queues `buf[data]` to be written at `offset` of `disk` (the range checked already).
    pub fn block(&mut self, disk: u32, offset: u64, buf: Vec<u8>, data: std::ops::Range<usize>) -> Result<(), RecvBlockError> {
        let d = self.target(disk, offset, data.len() as u64)?;
        self.writer()?.send(Job::Data {
            image: d.backend.clone(),
            id: d.cfg.id.clone(),
            offset,
            buf,
            data,
        })
    }

    /// Makes the range read as zeroes (in stream order with the data).
    pub fn zero(&mut self, disk: u32, offset: u64, len: u64) -> Result<(), RecvBlockError> {
        let d = self.target(disk, offset, len)?;
        self.writer()?.send(Job::Zero {
            image: d.backend.clone(),
            id: d.cfg.id.clone(),
            offset,
            len,
        })
    }

    /// `Completed N %`, on stdout as QEMU prints it (beside the guest's console, if that
    /// is on stdout too).
    pub fn progress(&mut self, percent: u32) {
        let mut e = std::io::stdout().lock();
        if !self.shown {
            let _ = writeln!(e, "Receiving block device images");
            self.shown = true;
        }
        let _ = write!(e, "Completed {percent} %{}", if percent == 100 { '\n' } else { '\r' });
        let _ = e.flush();
    }

    /// The stream is complete: make what was written durable and take every image over
    /// (the source has flushed and let go of its images by now).
    pub fn finish(&mut self) -> Result<(), RecvBlockError> {
        if let Some(mut w) = self.writer.take() {
            w.drain()?;
        }
        if let Some(a) = &self.announce {
            for (d, theirs) in self.vm.disks().iter().zip(&a.disks) {
                if theirs.copied {
                    lock(&d.backend)
                        .flush()
                        .map_err(|err| RecvBlockError::Flush { id: d.cfg.id.clone(), err })?;
                }
            }
        }
        Ok(self.vm.activate_disks_after_incoming()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::block::{BlockError, Extent, Format};
    use std::path::Path;
    use std::time::Instant;

    /// An image that only counts what it is asked to do (or refuses every write).
    #[derive(Default)]
    struct Counting {
        written: Arc<Mutex<u64>>,
        flushes: Arc<Mutex<Vec<u64>>>,
        refuse_writes: bool,
    }

    impl BlockBackend for Counting {
        fn format(&self) -> Format {
            Format::Raw
        }
        fn path(&self) -> &Path {
            Path::new("counting")
        }
        fn virtual_size(&self) -> u64 {
            1 << 30
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read_at(&mut self, _: &mut [u8], _: u64) -> Result<(), BlockError> {
            Ok(())
        }
        fn write_at(&mut self, buf: &[u8], _: u64) -> Result<(), BlockError> {
            if self.refuse_writes {
                return Err(BlockError::ReadOnly);
            }
            *lock(&self.written) += buf.len() as u64;
            Ok(())
        }
        fn write_zeroes(&mut self, _: u64, _: u64, _: bool) -> Result<(), BlockError> {
            Ok(())
        }
        fn discard(&mut self, _: u64, _: u64) -> Result<(), BlockError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            Ok(())
        }
        fn start_writeback(&mut self) -> Result<(), BlockError> {
            let w = *lock(&self.written);
            lock(&self.flushes).push(w);
            Ok(())
        }
        fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
            Ok(vec![Extent {
                start: offset,
                length: len,
                depth: 0,
                present: false,
                zero: true,
                data: false,
                offset: None,
            }])
        }
    }

    /// Written data is sent on its way to the disk as it goes, every FLUSH_EVERY bytes and
    /// once the stream pauses, so the flush at END finds little left.
    #[test]
    fn written_data_is_written_back_on_the_way() {
        let c = Counting::default();
        let flushes = c.flushes.clone();
        let image: Image = Arc::new(Mutex::new(Box::new(c)));
        let mut w = Writer::start().unwrap();
        let chunk = 1 << 20;
        let n = FLUSH_EVERY / chunk + 2;
        for i in 0..n {
            let job = Job::Data {
                image: image.clone(),
                id: "virtio0".into(),
                offset: i * chunk,
                buf: vec![0u8; chunk as usize],
                data: 0..chunk as usize,
            };
            w.send(job).unwrap();
        }
        let end = Instant::now() + Duration::from_secs(10);
        while lock(&flushes).last() != Some(&(n * chunk)) {
            assert!(Instant::now() < end, "no writeback once idle: {:?}", lock(&flushes));
            std::thread::sleep(IDLE);
        }
        // Never more than FLUSH_EVERY unflushed (the stream pausing may flush earlier).
        let f = lock(&flushes).clone();
        assert!(f.len() >= 2, "{f:?}");
        assert!(std::iter::once(&0).chain(&f).zip(&f).all(|(a, b)| b - a <= FLUSH_EVERY), "{f:?}");
        w.drain().unwrap();
    }

    /// A failed write is reported, with its cause, at the next record; the writer then
    /// skips everything else.
    #[test]
    fn the_first_write_error_is_reported_at_the_next_record() {
        let c = Counting {
            refuse_writes: true,
            ..Counting::default()
        };
        let image: Image = Arc::new(Mutex::new(Box::new(c)));
        let mut w = Writer::start().unwrap();
        let job = |offset| Job::Data {
            image: image.clone(),
            id: "virtio0".into(),
            offset,
            buf: vec![0u8; 512],
            data: 0..512,
        };
        w.send(job(0x200)).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let e = loop {
            match w.send(job(0x400)) {
                Err(e) => break e,
                Ok(()) => assert!(Instant::now() < end, "the write error was never reported"),
            }
            std::thread::sleep(IDLE);
        };
        assert!(
            matches!(
                &e,
                RecvBlockError::Write {
                    offset: 0x200,
                    err: BlockError::ReadOnly,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "cannot write disk 'virtio0' at 0x200: Image is read-only");
        assert!(matches!(w.drain(), Err(RecvBlockError::WriterStopped)));
    }
}
