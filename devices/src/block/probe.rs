//! Opening images: format probing, locking, QEMU-like open errors.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::block::lock::LockError;
use crate::block::qcow2::{self, Qcow2};
use crate::block::raw::RawImage;
use crate::block::storage::{HostFile, Storage};
use crate::block::{BlockBackend, BlockError, Format, Result, errno_text};

/// Deepest backing chain godwit follows.
pub const MAX_CHAIN_DEPTH: u32 = 64;

/// Identity (device, inode) of each file opened so far on the way down a backing chain,
/// top first: a file that shows up twice means the chain loops.
pub(crate) type Chain = [(u64, u64)];

/// How to open an image.
#[derive(Clone, Debug)]
pub struct ImageOptions {
    /// Format of the image; probed from its first bytes when `None`.
    pub format: Option<Format>,
    /// Open read-only. Backing files are always opened read-only.
    pub read_only: bool,
    /// Take QEMU-compatible image locks (on by default).
    pub lock: bool,
    /// Bytes of L2 tables to cache per qcow2 layer.
    pub l2_cache_bytes: usize,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            format: None,
            read_only: false,
            lock: true,
            l2_cache_bytes: qcow2::DEFAULT_L2_CACHE_BYTES,
        }
    }
}

/// Opens `path` with locking and default caches. `format: None` probes:
/// qcow2 when the file starts with the qcow2 magic, raw otherwise.
pub fn open_image(path: &Path, format: Option<Format>, read_only: bool) -> Result<Box<dyn BlockBackend>> {
    open_image_with(
        path,
        &ImageOptions {
            format,
            read_only,
            ..ImageOptions::default()
        },
    )
}

/// Opens `path` as described by `opts`.
pub fn open_image_with(path: &Path, opts: &ImageOptions) -> Result<Box<dyn BlockBackend>> {
    open_layer(path, opts, &[])
}

/// The format the first bytes of `file` announce.
pub fn probe_format(file: &dyn Storage) -> Result<Format> {
    let mut magic = [0u8; 4];
    if file.len()? >= 4 {
        file.read_at(&mut magic, 0)?;
    }
    Ok(if u32::from_be_bytes(magic) == qcow2::header::MAGIC {
        Format::Qcow2
    } else {
        Format::Raw
    })
}

/// Turns an error that happened while opening `path` into QEMU's
/// `Could not open 'PATH': REASON`. A chain error (loop, too deep) names the file where it
/// was found and goes up the chain unwrapped, so that only the top image wraps it: one
/// short line however deep the chain.
fn open_error(path: &Path, err: BlockError, top: bool) -> BlockError {
    let reason = match err {
        BlockError::Chain(reason) if top => reason,
        BlockError::Open { .. } | BlockError::Locked { .. } | BlockError::Chain(_) => return err,
        BlockError::Lock(err @ LockError::Conflict { .. }) => {
            return BlockError::Locked {
                path: path.display().to_string(),
                err,
            };
        }
        BlockError::Io(e) => errno_text(&e),
        other => other.to_string(),
    };
    BlockError::Open {
        path: path.display().to_string(),
        reason,
    }
}

/// Opens one layer of a chain; `chain` holds the files above it.
pub(crate) fn open_layer(path: &Path, opts: &ImageOptions, chain: &Chain) -> Result<Box<dyn BlockBackend>> {
    let top = chain.is_empty();
    if chain.len() as u32 > MAX_CHAIN_DEPTH {
        let why = format!("Backing chain deeper than {MAX_CHAIN_DEPTH} images (at '{}')", path.display());
        return Err(open_error(path, BlockError::Chain(why), top));
    }
    let file = HostFile::open(path, opts.read_only, opts.lock).map_err(|e| open_error(path, e, top))?;
    let meta = file.file().metadata().map_err(|e| open_error(path, e.into(), top))?;
    let id = (meta.dev(), meta.ino());
    if chain.contains(&id) {
        let why = format!("Backing file '{}' creates an infinite loop", path.display());
        return Err(open_error(path, BlockError::Chain(why), top));
    }
    let mut below = chain.to_vec();
    below.push(id);
    let file: Box<dyn Storage> = Box::new(file);
    let format = match opts.format {
        Some(f) => f,
        None => probe_format(file.as_ref()).map_err(|e| open_error(path, e, top))?,
    };
    let image: Box<dyn BlockBackend> = match format {
        Format::Raw => Box::new(RawImage::new(file, path, opts.read_only).map_err(|e| open_error(path, e, top))?),
        Format::Qcow2 => Box::new(Qcow2::open_chain(file, path, opts, &below).map_err(|e| open_error(path, e, top))?),
    };
    Ok(image)
}
