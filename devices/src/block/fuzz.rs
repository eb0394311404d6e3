//! The body of the qcow2 fuzz target (`tests/fuzz/fuzz_targets/qcow2.rs`), also driven by
//! the test suite from a fixed corpus and seed: arbitrary bytes are an image held in memory,
//! opened, read, written, zeroed, discarded, flushed, checked and snapshotted. Every step
//! may fail; none may panic, grow the image past [`MAX_FILE`], or report an error on more
//! than one line. Backing files named by the image are never found (the image lives under
//! a directory that does not exist), so nothing outside the image is touched.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::block::probe::ImageOptions;
use crate::block::qcow2::Qcow2;
use crate::block::storage::Storage;
use crate::block::{BlockBackend, BlockError};

/// Largest image the in-memory file grows to; writes past it fail like a full disk.
pub const MAX_FILE: u64 = 64 << 20;
/// Most operation bytes taken from the end of the input.
const MAX_OPS: usize = 32;

/// An image file in memory, shared so the caller can look at it afterwards.
#[derive(Clone, Default)]
pub struct MemStorage(pub Arc<Mutex<Vec<u8>>>);

fn locked(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn end_of(off: u64, len: usize) -> io::Result<usize> {
    match off.checked_add(len as u64) {
        Some(end) if end <= MAX_FILE => Ok(end as usize),
        _ => Err(io::Error::from_raw_os_error(libc::EFBIG)),
    }
}

impl Storage for MemStorage {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let data = locked(&self.0);
        let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
        let n = (data.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&data[start..start + n]);
        buf[n..].fill(0);
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
        let end = end_of(off, buf.len())?;
        let mut data = locked(&self.0);
        if data.len() < end {
            data.resize(end, 0);
        }
        data[off as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(locked(&self.0).len() as u64)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let end = end_of(len, 0)?;
        locked(&self.0).resize(end, 0);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn punch_hole(&mut self, off: u64, len: u64) -> io::Result<bool> {
        let mut data = locked(&self.0);
        let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
        let end = usize::try_from(off.saturating_add(len)).unwrap_or(usize::MAX).min(data.len());
        data[start..end].fill(0);
        Ok(true)
    }
}

/// What one input did, for the in-suite driver's statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub opened: bool,
    pub ops_ok: u32,
    pub ops_failed: u32,
}

fn one_line(e: &BlockError) {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error on more than one line: {s}");
}

/// Runs one input: the image is `data` without its last `data[len-1] % 33` bytes plus
/// one, which are operations.
pub fn qcow2_input(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let Some((&n, rest)) = data.split_last() else { return out };
    let n = (n as usize % (MAX_OPS + 1)).min(rest.len());
    let (image, ops) = rest.split_at(rest.len() - n);
    let file = MemStorage(Arc::new(Mutex::new(image.to_vec())));
    let opts = ImageOptions {
        lock: false,
        read_only: ops.first().is_some_and(|&b| b == 0xff),
        ..ImageOptions::default()
    };
    let path = Path::new("/nonexistent-godwit-fuzz/img.qcow2");
    let mut img = match Qcow2::open_chain(Box::new(file.clone()), path, &opts, &[]) {
        Ok(img) => img,
        Err(e) => {
            one_line(&e);
            return out;
        }
    };
    out.opened = true;
    for &op in ops {
        match run_op(&mut img, op) {
            Ok(()) => out.ops_ok += 1,
            Err(e) => {
                one_line(&e);
                out.ops_failed += 1;
            }
        }
        assert!(locked(&file.0).len() as u64 <= MAX_FILE);
    }
    if let Err(e) = img.close() {
        one_line(&e);
    }
    out
}

/// One operation: the low 3 bits pick it, the high 5 bits where it goes.
fn run_op(img: &mut Qcow2, op: u8) -> crate::block::Result<()> {
    let size = img.virtual_size();
    let at = if size == 0 { 0 } else { (u64::from(op >> 3) * size / 32) & !511 };
    let len = 4096.min(size - at.min(size));
    match op & 7 {
        0 => img.read_at(&mut vec![0u8; len as usize], at),
        1 => img.write_at(&vec![op; len as usize], at),
        2 => img.write_zeroes(at, len, op & 8 != 0),
        3 => img.discard(at, (64 << 10).min(size - at.min(size))),
        4 => img.flush(),
        5 => img.block_status(0, size).map(|_| ()),
        6 => match op >> 3 {
            0..=15 => img.snapshot_create("fuzz", 0, 0, None).map(|_| ()),
            16..=23 => img.check().map(|_| ()),
            _ => img.write_vmstate(&[op; 1000], u64::from(op)),
        },
        _ => {
            let ids: Vec<String> = img.snapshots().into_iter().map(|s| s.id).collect();
            let Some(id) = ids.get(usize::from(op >> 3) % ids.len().max(1)) else {
                return Ok(());
            };
            if op & 0x80 != 0 {
                img.snapshot_delete(id).map(|_| ())
            } else {
                img.snapshot_revert(id).map(|_| ())
            }
        }
    }
}
