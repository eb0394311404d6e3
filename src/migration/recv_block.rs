//! The destination side of the disk records: the DISKS check (answered on the way back),
//! BLOCK and BLOCK_ZERO written into this VM's images, PROGRESS shown on stderr, and at
//! the end every image flushed and taken over.

use super::disks::{self, Announce, Mode};
use super::stream::SECTOR;
use crate::vm::Vm;
use devices::bus::lock;
use std::io::Write;

pub struct BlockSink<'a> {
    vm: &'a Vm,
    announce: Option<Announce>,
    /// The way back to the source, for the answer to DISKS.
    reply: Option<Box<dyn Write + Send>>,
    shown: bool,
}

impl<'a> BlockSink<'a> {
    pub fn new(vm: &'a Vm, reply: Option<Box<dyn Write + Send>>) -> Self {
        BlockSink {
            vm,
            announce: None,
            reply,
            shown: false,
        }
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
    fn target(&self, disk: u32, offset: u64, len: u64) -> Result<&'a crate::vm::disks::Disk, String> {
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
        lock(&d.backend)
            .write_at(data, offset)
            .map_err(|e| format!("cannot write disk '{}' at {offset:#x}: {e}", d.cfg.id))
    }

    /// Makes the range read as zeroes, touching only the parts that do not already.
    pub fn zero(&mut self, disk: u32, offset: u64, len: u64) -> Result<(), String> {
        let d = self.target(disk, offset, len)?;
        let err = |e: devices::block::BlockError| format!("cannot zero disk '{}' at {offset:#x}: {e}", d.cfg.id);
        let mut b = lock(&d.backend);
        for e in b.block_status(offset, len).map_err(err)? {
            if !e.zero {
                b.write_zeroes(e.start, e.length, true).map_err(err)?;
            }
        }
        Ok(())
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
