//! One virtio-blk request: parse the chain, do the I/O, write the status byte.
//!
//! A request is a 16-byte header (type, reserved, sector) the device reads, then data, then
//! one status byte the device writes (virtio 1.2 §5.2.6). Everything comes from the guest,
//! so every length and address is checked. A chain that is not a request at all (it does
//! not end, is longer than the ring, has buffers outside guest memory, has no 16-byte
//! header or no byte for the status) breaks the device, as in QEMU (`virtio_error`): it
//! needs a reset, and nothing is written for that chain. A request that is well formed but
//! wrong (data in the wrong direction, a range beyond the disk, ...) is answered `IOERR` or
//! `UNSUPP` in its status byte.

use super::stats::Op;
use super::{Disk, MAX_DISCARD_SECTORS, MAX_DISCARD_SEGMENTS};
use crate::block::{BlockError, SECTOR_SIZE};
use crate::bus::lock;
use crate::virtio::GuestMem;
use crate::virtio::chain::{self, ChainError};
use std::io::{Read, Write};
use thiserror::Error;
use virtio_bindings::virtio_blk as vb;
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::bitmap::BitmapSlice;

pub const STATUS_OK: u8 = vb::VIRTIO_BLK_S_OK as u8;
pub const STATUS_IOERR: u8 = vb::VIRTIO_BLK_S_IOERR as u8;
pub const STATUS_UNSUPP: u8 = vb::VIRTIO_BLK_S_UNSUPP as u8;
const HEADER_LEN: usize = 16;
const SEGMENT_LEN: usize = 16;
/// Data moves between the image and guest memory through a buffer of at most this size.
pub const CHUNK: usize = 256 << 10;

/// Why a request did not succeed.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("request header shorter than 16 bytes")]
    ShortHeader,
    #[error("data descriptors in the wrong direction for request type {0}")]
    WrongDirection(u32),
    #[error("data length {0} is not a multiple of 512")]
    Unaligned(usize),
    #[error("sectors {sector}+{bytes} bytes lie beyond the disk")]
    OutOfRange { sector: u64, bytes: u64 },
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("unsupported request type {0}")]
    Unsupported(u32),
    #[error("unsupported discard/write-zeroes flags {0:#x}")]
    UnsupportedFlags(u32),
    #[error("malformed discard/write-zeroes segment list")]
    BadSegments,
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("guest memory access failed: {0}")]
    Memory(#[from] std::io::Error),
}

impl RequestError {
    pub fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported(_) | RequestError::UnsupportedFlags(_) => STATUS_UNSUPP,
            _ => STATUS_IOERR,
        }
    }
}

/// Why a chain is not a request: the device needs a reset.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Broken {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("request {0} has no 16-byte header the device can read")]
    NoHeader(u16),
    #[error("request {0} has no byte the device can write the status to")]
    NoStatus(u16),
}

/// Runs the request in `chain` (of a ring of `queue_size` entries) and returns the used
/// length (bytes written to the guest, status included), or why the chain broke the device.
pub fn process(chain: DescriptorChain<&GuestMem>, queue_size: u16, mem: &GuestMem, disk: &Disk, buf: &mut Vec<u8>) -> Result<u32, Broken> {
    let head = chain.head_index();
    chain::check(&chain, queue_size)?;
    let outside = || Broken::Chain(ChainError::OutsideMemory(head));
    let mut reader = chain.clone().reader(mem).map_err(|_| outside())?;
    let mut writer = chain.writer(mem).map_err(|_| outside())?;
    if reader.available_bytes() < HEADER_LEN {
        return Err(Broken::NoHeader(head));
    }
    let avail = writer.available_bytes();
    if avail == 0 {
        return Err(Broken::NoStatus(head));
    }
    // The status is the last writable byte.
    let mut status_w = writer.split_at(avail - 1).map_err(|_| Broken::NoStatus(head))?;
    let status = match execute(&mut reader, &mut writer, disk, buf) {
        Ok(()) => STATUS_OK,
        Err(e) => e.status(),
    };
    status_w.write_all(&[status]).map_err(|_| outside())?;
    Ok(u32::try_from(writer.bytes_written() + 1).unwrap_or(u32::MAX))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Byte offset of `bytes` at `sector`, if the whole range lies on the disk.
fn disk_range(disk: &Disk, sector: u64, bytes: u64) -> Result<u64, RequestError> {
    let size = disk.capacity * SECTOR_SIZE;
    sector
        .checked_mul(SECTOR_SIZE)
        .filter(|start| start.checked_add(bytes).is_some_and(|end| end <= size))
        .ok_or(RequestError::OutOfRange { sector, bytes })
}

/// A request's kind and size as QEMU accounts it (discard and write-zeroes are set once
/// their segments are read); None for what it does not count.
fn accounted(ty: u32, to_device: usize, to_driver: usize) -> Option<(Op, u64)> {
    match ty {
        vb::VIRTIO_BLK_T_IN => Some((Op::Read, to_driver as u64)),
        vb::VIRTIO_BLK_T_OUT => Some((Op::Write, to_device as u64)),
        vb::VIRTIO_BLK_T_FLUSH => Some((Op::Flush, 0)),
        _ => None,
    }
}

/// Runs a request and counts it: a success, or a failure of the image (a request the
/// guest got wrong is not counted: QEMU's `account_invalid` is off for godwit).
fn execute<B: BitmapSlice>(r: &mut Reader<'_, B>, w: &mut Writer<'_, B>, disk: &Disk, buf: &mut Vec<u8>) -> Result<(), RequestError> {
    let start = std::time::Instant::now();
    let mut kind = None;
    let result = run(r, w, disk, buf, &mut kind);
    if let Some((op, bytes)) = kind {
        let failed_in_image = matches!(result, Err(RequestError::Block(_)));
        if result.is_ok() || failed_in_image {
            disk.stats.done(op, bytes, start.elapsed(), result.is_ok());
        }
    }
    result
}

fn run<B: BitmapSlice>(
    r: &mut Reader<'_, B>,
    w: &mut Writer<'_, B>,
    disk: &Disk,
    buf: &mut Vec<u8>,
    kind: &mut Option<(Op, u64)>,
) -> Result<(), RequestError> {
    if r.available_bytes() < HEADER_LEN {
        return Err(RequestError::ShortHeader);
    }
    let mut hdr = [0u8; HEADER_LEN];
    r.read_exact(&mut hdr)?;
    let (ty, sector) = (le32(&hdr[0..4]), le64(&hdr[8..16]));
    // Anything left to read after the header is data for the device, and anything left to
    // write is data for the driver; each type allows only one of them.
    let (to_device, to_driver) = (r.available_bytes(), w.available_bytes());
    let expect_none = |n: usize| {
        if n == 0 { Ok(()) } else { Err(RequestError::WrongDirection(ty)) }
    };
    *kind = accounted(ty, to_device, to_driver);
    match ty {
        vb::VIRTIO_BLK_T_IN => {
            expect_none(to_device)?;
            read_disk(w, disk, sector, to_driver, buf)
        }
        vb::VIRTIO_BLK_T_OUT => {
            expect_none(to_driver)?;
            if disk.read_only {
                return Err(RequestError::ReadOnly);
            }
            write_disk(r, disk, sector, to_device, buf)
        }
        vb::VIRTIO_BLK_T_FLUSH => Ok(lock(&disk.backend).flush()?),
        vb::VIRTIO_BLK_T_GET_ID => {
            expect_none(to_device)?;
            let n = to_driver.min(disk.serial.len());
            Ok(w.write_all(&disk.serial[..n])?)
        }
        // Accounted as QEMU does: a discard as an unmap, write-zeroes as a write.
        vb::VIRTIO_BLK_T_DISCARD if disk.discard => {
            expect_none(to_driver)?;
            *kind = Some((Op::Unmap, 0));
            *kind = Some((Op::Unmap, segments(r, disk, false)?));
            Ok(())
        }
        vb::VIRTIO_BLK_T_WRITE_ZEROES if disk.write_zeroes => {
            expect_none(to_driver)?;
            *kind = Some((Op::Write, 0));
            *kind = Some((Op::Write, segments(r, disk, true)?));
            Ok(())
        }
        other => Err(RequestError::Unsupported(other)),
    }
}

fn check_len(len: usize) -> Result<u64, RequestError> {
    if !(len as u64).is_multiple_of(SECTOR_SIZE) {
        return Err(RequestError::Unaligned(len));
    }
    Ok(len as u64)
}

fn read_disk<B: BitmapSlice>(w: &mut Writer<'_, B>, disk: &Disk, sector: u64, len: usize, buf: &mut Vec<u8>) -> Result<(), RequestError> {
    let start = disk_range(disk, sector, check_len(len)?)?;
    let mut backend = lock(&disk.backend);
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(CHUNK);
        buf.resize(n.max(buf.len()), 0);
        backend.read_at(&mut buf[..n], start + done as u64)?;
        // Through virtio-queue's Writer, so the dirty bitmap sees these pages.
        w.write_all(&buf[..n])?;
        done += n;
    }
    Ok(())
}

fn write_disk<B: BitmapSlice>(r: &mut Reader<'_, B>, disk: &Disk, sector: u64, len: usize, buf: &mut Vec<u8>) -> Result<(), RequestError> {
    let start = disk_range(disk, sector, check_len(len)?)?;
    let mut backend = lock(&disk.backend);
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(CHUNK);
        buf.resize(n.max(buf.len()), 0);
        r.read_exact(&mut buf[..n])?;
        backend.write_at(&buf[..n], start + done as u64)?;
        disk.dirty.mark(start + done as u64, n as u64);
        done += n;
    }
    disk.stats.wrote_up_to(start + len as u64);
    Ok(())
}

/// DISCARD or WRITE_ZEROES: a list of `{le64 sector, le32 num_sectors, le32 flags}`. The
/// whole list is checked before anything is done, so a bad segment changes nothing.
/// Returns the bytes the segments cover.
fn segments<B: BitmapSlice>(r: &mut Reader<'_, B>, disk: &Disk, zeroes: bool) -> Result<u64, RequestError> {
    let len = r.available_bytes();
    if len == 0 || !len.is_multiple_of(SEGMENT_LEN) || len / SEGMENT_LEN > MAX_DISCARD_SEGMENTS as usize {
        return Err(RequestError::BadSegments);
    }
    let unmap_flag = vb::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    let mut list = Vec::with_capacity(len / SEGMENT_LEN);
    for _ in 0..len / SEGMENT_LEN {
        let mut s = [0u8; SEGMENT_LEN];
        r.read_exact(&mut s)?;
        let (sector, count, flags) = (le64(&s[0..8]), le32(&s[8..12]), le32(&s[12..16]));
        // The unmap flag means something only for write-zeroes (virtio 1.2 §5.2.6.2).
        let known = if zeroes { unmap_flag } else { 0 };
        if flags & !known != 0 {
            return Err(RequestError::UnsupportedFlags(flags));
        }
        if count > MAX_DISCARD_SECTORS {
            return Err(RequestError::BadSegments);
        }
        let bytes = u64::from(count) * SECTOR_SIZE;
        list.push((disk_range(disk, sector, bytes)?, bytes, flags & unmap_flag != 0));
    }
    let mut backend = lock(&disk.backend);
    let mut total = 0;
    for (offset, bytes, unmap) in list {
        if zeroes {
            backend.write_zeroes(offset, bytes, unmap)?;
            disk.stats.wrote_up_to(offset + bytes);
        } else {
            backend.discard(offset, bytes)?;
        }
        disk.dirty.mark(offset, bytes);
        total += bytes;
    }
    Ok(total)
}
