//! Positional I/O on the file that holds an image.
//!
//! The format drivers never touch a `File` directly: they go through
//! [`Storage`], so tests can interpose a wrapper (for example one that stops
//! writing after N calls to simulate a kill) and future code can plug in
//! other transports.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::block::lock::{self, LockMode};

/// Byte-addressed host storage of an image.
pub trait Storage: Send {
    /// Reads `buf.len()` bytes at `off`; bytes past the end of the file
    /// read as zeroes.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Writes all of `buf` at `off`, extending the file if needed.
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends the file.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes all completed writes durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Starts writing completed writes back to the disk without waiting for it, so that
    /// a later `sync` has less to wait for. Only a hint: the default does nothing.
    fn start_writeback(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Releases the storage of `[off, off+len)` without changing the file
    /// length; the range then reads as zeroes. Returns `Ok(false)` when the
    /// file system cannot do it (the range is then left unchanged).
    fn punch_hole(&mut self, off: u64, len: u64) -> io::Result<bool>;
    /// Makes `[off, off+len)` read as zeroes, keeping it allocated where
    /// possible.
    fn zero_range(&mut self, off: u64, len: u64) -> io::Result<()> {
        write_zero_buffers(self, off, len)
    }
    /// First offset `>= off` that holds data, or `None` when only holes
    /// follow (SEEK_DATA). The default treats the whole file as data.
    fn next_data(&self, off: u64) -> io::Result<Option<u64>> {
        Ok((off < self.len()?).then_some(off))
    }
    /// First offset `>= off` inside a hole, the file length at the latest
    /// (SEEK_HOLE).
    fn next_hole(&self, _off: u64) -> io::Result<u64> {
        self.len()
    }
}

/// Writes zero buffers over `[off, off+len)`, 1 MiB at a time.
pub(crate) fn write_zero_buffers<S: Storage + ?Sized>(s: &mut S, mut off: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeroes = vec![0u8; len.min(CHUNK) as usize];
    let end = off + len;
    while off < end {
        let n = (end - off).min(CHUNK) as usize;
        s.write_at(&zeroes[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// An image file on the host, locked the way QEMU locks images.
#[derive(Debug)]
pub struct HostFile {
    file: File,
}

impl HostFile {
    /// Opens `path` read-only or read-write. With `lock`, takes the QEMU
    /// permission locks (see [`lock`]); a conflicting QEMU process makes
    /// this fail with [`lock::LockError::Conflict`].
    pub fn open(path: &Path, read_only: bool, lock: bool) -> crate::block::Result<HostFile> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        if lock {
            let mode = if read_only { LockMode::Read } else { LockMode::Write };
            lock::lock_image(&file, path, mode)?;
        }
        Ok(HostFile { file })
    }

    /// Wraps an already opened file without locking it.
    pub fn from_file(file: File) -> HostFile {
        HostFile { file }
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn fallocate(&self, mode: libc::c_int, off: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(len)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        // SAFETY: fallocate only acts on the descriptor we own; no memory is passed.
        let ret = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, len) };
        if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    fn lseek(&self, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        let Ok(off) = libc::off_t::try_from(off) else {
            return Ok(None);
        };
        // SAFETY: lseek only acts on the descriptor we own. The file position
        // it moves is never used: all I/O is positional.
        let ret = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        if ret >= 0 {
            return Ok(Some(ret as u64));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(err)
        }
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL))
}

impl Storage for HostFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn start_writeback(&mut self) -> io::Result<()> {
        // SAFETY: sync_file_range on a descriptor we own; offset 0 and length 0 mean the
        // whole file. SYNC_FILE_RANGE_WRITE only queues the writeback.
        let r = unsafe { libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn punch_hole(&mut self, off: u64, len: u64) -> io::Result<bool> {
        if len == 0 {
            return Ok(true);
        }
        match self.fallocate(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len) {
            Ok(()) => Ok(true),
            Err(e) if unsupported(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn zero_range(&mut self, off: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match self.fallocate(libc::FALLOC_FL_ZERO_RANGE, off, len) {
            Ok(()) => Ok(()),
            Err(e) if unsupported(&e) => write_zero_buffers(self, off, len),
            Err(e) => Err(e),
        }
    }

    fn next_data(&self, off: u64) -> io::Result<Option<u64>> {
        match self.lseek(off, libc::SEEK_DATA) {
            Err(e) if unsupported(&e) => Ok((off < self.len()?).then_some(off)),
            r => r,
        }
    }

    fn next_hole(&self, off: u64) -> io::Result<u64> {
        match self.lseek(off, libc::SEEK_HOLE) {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Ok(off.max(self.len()?)),
            Err(e) if unsupported(&e) => self.len(),
            Err(e) => Err(e),
        }
    }
}
