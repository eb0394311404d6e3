//! The destination side of the disk records: the DISKS check (answered on the way back),
//! BLOCK and BLOCK_ZERO written into this VM's images, PROGRESS shown on stdout, and at
//! the end every image flushed and taken over.
//!
//! The writes happen on a thread of their own, in stream order, so reading and checking
//! the next records overlaps with writing the last ones; the first error is reported at
//! the next record (and at the end). That thread also flushes what it wrote as it goes,
//! so the flush at the end, inside the guest's pause, has little left to write back.

use super::disks::{self, Announce, Mode};
use super::stream::SECTOR;
use crate::vm::Vm;
use crate::vm::disks::Disk;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use devices::block::BlockBackend;
use devices::bus::lock;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// The images the writer has written since it last started their writeback, with the bytes.
#[derive(Default)]
struct Unflushed(Vec<(Image, String, u64)>);

impl Unflushed {
    fn wrote(&mut self, image: &Image, id: &str, bytes: u64, error: &Mutex<Option<String>>) {
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

    fn write_back_all(&mut self, error: &Mutex<Option<String>>) {
        for (image, id, _) in self.0.drain(..) {
            write_back(&image, &id, error);
        }
    }
}

fn write_back(image: &Image, id: &str, error: &Mutex<Option<String>>) {
    if let Err(e) = lock(image).start_writeback() {
        lock(error).get_or_insert(format!("cannot write back disk '{id}': {e}"));
    }
}

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
                    if lock(&first_error).is_some() {
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
                                .map_err(|e| format!("cannot write disk '{id}' at {offset:#x}: {e}"));
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
                        lock(&first_error).get_or_insert(e);
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
        let result = Announce::decode(payload)
            .and_then(|a| disks::accept(self.vm, &a).map(|()| a))
            .map_err(|e| e.to_string());
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

    /// Checks that a BLOCK record's range lies on a disk that receives data.
    pub fn check_block(&self, disk: u32, offset: u64, len: u64) -> Result<(), String> {
        self.target(disk, offset, len).map(|_| ())
    }

    /// An emptied buffer back from the writer, or a new one.
    pub fn spare(&mut self) -> Vec<u8> {
        self.writer.as_ref().and_then(|w| w.spare.try_recv().ok()).unwrap_or_default()
    }

    /// Queues `buf[data]` to be written at `offset` of `disk` (the range checked already).
    pub fn block(&mut self, disk: u32, offset: u64, buf: Vec<u8>, data: std::ops::Range<usize>) -> Result<(), String> {
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
    pub fn zero(&mut self, disk: u32, offset: u64, len: u64) -> Result<(), String> {
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
        self.vm.activate_disks().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::block::{BlockError, Extent, Format};
    use std::path::Path;
    use std::time::Instant;

    /// An image that only counts what it is asked to do.
    #[derive(Default)]
    struct Counting {
        written: Arc<Mutex<u64>>,
        flushes: Arc<Mutex<Vec<u64>>>,
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
}
