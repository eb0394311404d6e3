//! Creating qcow2 images.
//!
//! The layout follows QEMU's: header in cluster 0, then the refcount
//! table, the refcount blocks covering all of this, and the L1 table. The
//! file ends right after the L1 entries (not padded to a cluster).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::cache::set_entry;
use super::header::{self, COMPAT_LAZY_REFCOUNTS, Header, HeaderError};
use super::refcount::rc_set;
use super::{Qcow2, Qcow2Error, resolve_backing};
use crate::block::lock::{self, LockMode};
use crate::block::probe::{ImageOptions, open_layer};
use crate::block::storage::{HostFile, Storage};
use crate::block::{BlockError, Format, Result};

/// Parameters of a new image.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Virtual size in bytes (rounded up to 512). 0 with a backing file
    /// takes the backing file's size.
    pub size: u64,
    /// log2 of the cluster size, 9..=21 (default 16: 64 KiB).
    pub cluster_bits: u32,
    /// log2 of the refcount width in bits, 0..=6 (default 4: 16 bits).
    pub refcount_order: u32,
    /// 3 (default) or 2 (`compat=0.10`: no zero clusters, 16-bit refcounts).
    pub version: u32,
    /// Set the lazy-refcounts compatible feature (v3).
    pub lazy_refcounts: bool,
    /// Backing file name as stored in the header (relative names are
    /// relative to the new image's directory) and its format.
    pub backing: Option<(PathBuf, Format)>,
}

impl CreateOptions {
    /// Defaults: 64 KiB clusters, 16-bit refcounts, v3, no backing file.
    pub fn new(size: u64) -> CreateOptions {
        CreateOptions {
            size,
            cluster_bits: 16,
            refcount_order: 4,
            version: 3,
            lazy_refcounts: false,
            backing: None,
        }
    }
}

fn invalid(msg: &str) -> BlockError {
    Qcow2Error::Header(HeaderError::Invalid(msg.to_string())).into()
}

impl Qcow2 {
    /// Creates an empty v3 image at `path` (replacing any file there).
    pub fn create(path: &Path, virtual_size: u64, cluster_bits: u32, backing: Option<(&Path, Format)>) -> Result<()> {
        let mut opts = CreateOptions::new(virtual_size);
        opts.cluster_bits = cluster_bits;
        opts.backing = backing.map(|(p, f)| (p.to_path_buf(), f));
        Self::create_with(path, &opts)
    }

    /// Creates an image described by `opts`.
    pub fn create_with(path: &Path, opts: &CreateOptions) -> Result<()> {
        if !(9..=21).contains(&opts.cluster_bits) {
            return Err(invalid("Cluster size must be a power of two between 512 and 2048k"));
        }
        if opts.refcount_order > 6 {
            return Err(invalid("Refcount width must be a power of two and may not exceed 64 bits"));
        }
        if opts.version == 2 && (opts.refcount_order != 4 || opts.lazy_refcounts) {
            return Err(invalid("compat=0.10 images use 16-bit refcounts and no lazy refcounts"));
        }
        if opts.version != 2 && opts.version != 3 {
            return Err(invalid("Unsupported qcow2 version"));
        }
        let mut size = opts.size;
        if let Some((name, fmt)) = &opts.backing {
            let full = resolve_backing(path, name);
            let backing_opts = ImageOptions {
                format: Some(*fmt),
                read_only: true,
                ..ImageOptions::default()
            };
            let b = open_layer(&full, &backing_opts, &[]).map_err(|e| BlockError::Backing(Box::new(e)))?;
            if size == 0 {
                size = b.virtual_size();
            }
        }
        let size = size.next_multiple_of(512);
        let cb = opts.cluster_bits;
        let cs = 1u64 << cb;
        let l1_entries = header::l1_entries_for(size, cb);
        if l1_entries * 8 > header::MAX_L1_BYTES {
            return Err(Qcow2Error::TooLarge.into());
        }
        let l1_clusters = (l1_entries * 8).div_ceil(cs);
        let per_block = 1u64 << (cb + 3 - opts.refcount_order);
        let (mut t, mut b) = (1u64, 1u64);
        loop {
            let total = 1 + t + b + l1_clusters;
            let b2 = total.div_ceil(per_block);
            let t2 = (b2 * 8).div_ceil(cs);
            if (t2, b2) == (t, b) {
                break;
            }
            (t, b) = (t2, b2);
        }
        let total = 1 + t + b + l1_clusters;

        let mut h = Header::new_v3(size, cb, opts.refcount_order);
        if opts.version == 2 {
            h.version = 2;
            h.header_length = 72;
        }
        h.l1_size = l1_entries as u32;
        h.l1_table_offset = (1 + t + b) << cb;
        h.refcount_table_offset = 1 << cb;
        h.refcount_table_clusters = t as u32;
        if opts.lazy_refcounts {
            h.compatible_features |= COMPAT_LAZY_REFCOUNTS;
        }
        if let Some((name, fmt)) = &opts.backing {
            h.backing_file = Some(name.clone());
            h.backing_format = Some(fmt.name().to_string());
        }
        let hdr = h.to_bytes()?;

        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        lock::lock_image(&file, path, LockMode::Write)?;
        let mut file = HostFile::from_file(file);
        file.set_len(0)?;
        file.write_at(&hdr, 0)?;
        let mut table = vec![0u8; (t * cs) as usize];
        for k in 0..b {
            let mut block = vec![0u8; cs as usize];
            for i in 0..per_block {
                if k * per_block + i < total {
                    rc_set(&mut block, opts.refcount_order, i as usize, 1);
                }
            }
            let off = (1 + t + k) << cb;
            file.write_at(&block, off)?;
            set_entry(&mut table, k as usize, off);
        }
        file.write_at(&table, 1 << cb)?;
        if l1_entries > 0 {
            file.write_at(&vec![0u8; (l1_entries * 8) as usize], h.l1_table_offset)?;
        } else {
            file.set_len(h.l1_table_offset)?;
        }
        file.sync()?;
        Ok(())
    }
}
