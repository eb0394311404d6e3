//! Block image formats (raw, qcow2) behind one trait.
//!
//! Every disk image godwit opens is a [`BlockBackend`]: a byte-addressed
//! virtual disk with read, write, write-zeroes, discard, flush and an
//! allocation query ([`BlockBackend::block_status`]) that walks the backing
//! chain the way `qemu-img map` does. [`open_image`] probes the format and
//! takes QEMU-compatible image locks.

pub mod dirty;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod inactive;
pub mod lock;
pub mod probe;
pub mod qcow2;
pub mod raw;
pub mod storage;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use thiserror::Error;

pub use probe::{ImageOptions, open_image, open_image_with, probe_format};
pub use qcow2::Qcow2;
pub use raw::RawImage;
pub use storage::{HostFile, Storage};

/// Logical sector size used by the device models.
pub const SECTOR_SIZE: u64 = 512;

/// Image formats godwit understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// A plain file or block device holding the disk bytes.
    Raw,
    /// QEMU copy-on-write version 2/3.
    Qcow2,
}

impl Format {
    /// The driver name QEMU uses (`raw`, `qcow2`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = BlockError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "raw" => Ok(Format::Raw),
            "qcow2" => Ok(Format::Qcow2),
            other => Err(BlockError::UnknownDriver(other.to_string())),
        }
    }
}

/// One run of bytes with uniform allocation status, as `qemu-img map
/// --output=json` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First guest byte of the run.
    pub start: u64,
    /// Length of the run in bytes.
    pub length: u64,
    /// Layer of the backing chain that defines these bytes: 0 is the image
    /// itself, 1 its backing file, and so on. For bytes that no layer
    /// defines (`present == false`) it is the deepest layer consulted.
    pub depth: u32,
    /// Some layer of the chain defines these bytes (data or zeroes).
    pub present: bool,
    /// The bytes are known to read as zeroes.
    pub zero: bool,
    /// The bytes are stored as data (not known to be zero).
    pub data: bool,
    /// Byte offset of the data in the file of layer `depth`, when the
    /// layer stores the bytes uncompressed and contiguously.
    pub offset: Option<u64>,
}

impl Extent {
    /// True when the image itself (not a backing file) defines these bytes;
    /// this is the set incremental block migration has to copy.
    pub fn allocated_in_top(&self) -> bool {
        self.depth == 0 && self.present
    }

    /// Whether `next` directly follows `self` with the same status and can
    /// be merged into it.
    fn mergeable(&self, next: &Extent) -> bool {
        self.start + self.length == next.start
            && self.depth == next.depth
            && self.present == next.present
            && self.zero == next.zero
            && self.data == next.data
            && match (self.offset, next.offset) {
                (None, None) => true,
                (Some(a), Some(b)) => a + self.length == b,
                _ => false,
            }
    }
}

/// Appends `e` to `out`, merging it into the last extent when possible.
pub(crate) fn push_extent(out: &mut Vec<Extent>, e: Extent) {
    if e.length == 0 {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.mergeable(&e)
    {
        last.length += e.length;
        return;
    }
    out.push(e);
}

/// Errors of the block layer. Open errors read like QEMU's.
#[derive(Debug, Error)]
pub enum BlockError {
    /// The image could not be opened; `reason` is QEMU-like wording.
    #[error("Could not open '{path}': {reason}")]
    Open { path: String, reason: String },
    /// The image could not be opened: another process holds a conflicting lock on it.
    #[error("Could not open '{path}': {err}")]
    Locked {
        path: String,
        #[source]
        err: lock::LockError,
    },
    /// The backing chain loops or is too deep (the message names the file).
    #[error("{0}")]
    Chain(String),
    /// A backing file of the image could not be opened.
    #[error("Could not open backing file: {0}")]
    Backing(Box<BlockError>),
    /// Unsupported or unknown format name.
    #[error("Unknown driver '{0}'")]
    UnknownDriver(String),
    /// A request falls outside the virtual disk.
    #[error("Request out of range: offset {offset:#x} length {len:#x}, disk size {size:#x}")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// A write was attempted on an image opened read-only.
    #[error("Image is read-only")]
    ReadOnly,
    /// Image lock conflict or failure.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// qcow2 format or consistency error.
    #[error(transparent)]
    Qcow2(#[from] qcow2::Qcow2Error),
    /// The image was handed over to another process (a migration's destination).
    #[error("the image is inactive: a migration handed it over to its destination")]
    Inactive,
    /// Host I/O error.
    #[error("I/O error: {}", errno_text(.0))]
    Io(#[from] io::Error),
}

/// Result type of the block layer.
pub type Result<T> = std::result::Result<T, BlockError>;

/// The message of an I/O error without Rust's "(os error N)" suffix, so it
/// reads like QEMU's strerror() output.
pub fn errno_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Checks that `[offset, offset+len)` lies inside a disk of `size` bytes.
pub(crate) fn check_range(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange { offset, len, size }),
    }
}

/// A virtual disk image.
///
/// Offsets and lengths are in bytes; they need not be sector-aligned, but
/// the device models only issue multiples of [`SECTOR_SIZE`]. Requests past
/// [`virtual_size`](Self::virtual_size) fail with
/// [`BlockError::OutOfRange`]. Writes are durable only after
/// [`flush`](Self::flush) returns.
pub trait BlockBackend: Send {
    /// The format of this layer.
    fn format(&self) -> Format;
    /// The path the image was opened with.
    fn path(&self) -> &Path;
    /// Guest-visible size in bytes.
    fn virtual_size(&self) -> u64;
    /// Whether the image was opened read-only.
    fn read_only(&self) -> bool;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Writes `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()>;
    /// Makes `[offset, offset+len)` read as zeroes. With `may_unmap` the
    /// backend may release the storage behind the range.
    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<()>;
    /// Hints that the range is no longer needed. Afterwards the range reads
    /// as zeroes or keeps its old contents, at the backend's choice; partial
    /// clusters are left untouched.
    fn discard(&mut self, offset: u64, len: u64) -> Result<()>;
    /// Writes back all cached metadata and makes every completed write
    /// durable.
    fn flush(&mut self) -> Result<()>;
    /// Starts writing completed data writes back to the disk without waiting, so a
    /// later `flush` has less to wait for (metadata stays cached). A hint only.
    fn start_writeback(&mut self) -> Result<()> {
        Ok(())
    }
    /// Allocation status of `[offset, offset+len)` through the backing
    /// chain, as sorted, non-overlapping, merged extents covering the whole
    /// range.
    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<Extent>>;
    /// Access to the qcow2 layer (snapshots, vmstate), if this is one.
    fn as_qcow2(&mut self) -> Option<&mut Qcow2> {
        None
    }
}

impl fmt::Debug for dyn BlockBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockBackend")
            .field("format", &self.format())
            .field("path", &self.path())
            .field("virtual_size", &self.virtual_size())
            .finish()
    }
}
