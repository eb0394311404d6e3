//! qcow2 images: v2/v3 read, v3 (and v2) write, backing chains, zero and
//! compressed clusters, internal snapshots.
//!
//! Layout of the driver:
//! * [`header`]: header and extensions;
//! * [`cache`]: write-back table cache (L2 tables, refcount blocks);
//! * [`refcount`]: refcounts, cluster allocation, refcount table growth;
//! * `io`: guest reads, writes, zero writes and discards;
//! * `status`: allocation status through the backing chain;
//! * [`snapshot`]: internal snapshots and the VM state area;
//! * [`check`]: consistency check and refcount rebuild;
//! * [`create`]: new images;
//! * [`inflate`]: deflate decoder for compressed clusters.
//!
//! ## Crash safety
//! Metadata is cached write-back and written in dependency order (see
//! [`Qcow2::write_metadata`]): refcount increments, then L2 tables, then
//! the L1 table, and only then refcount decrements of clusters those tables
//! stopped referencing. Guest data reaches the file before the L2 entry
//! that maps it. With fdatasync barriers between the steps this holds for
//! power loss too, so a crash leaves at most leaked clusters.

mod backing;
pub mod cache;
pub mod check;
pub mod create;
pub mod header;
pub mod inflate;
mod io;
mod overlap;
pub mod refcount;
pub mod snapshot;
mod status;
mod validate;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::block::probe::{Chain, ImageOptions};
use crate::block::storage::Storage;
use crate::block::{BlockBackend, BlockError, Extent, Format, Result, check_range};
use cache::{TableCache, entry, set_entry};
use header::{Header, HeaderError, INCOMPAT_CORRUPT, INCOMPAT_DIRTY};
use inflate::InflateError;
use refcount::{RefcountError, Refcounts};
use snapshot::{Snapshot, SnapshotError};

pub use backing::resolve_backing;
pub use check::CheckReport;
pub use create::CreateOptions;
pub use snapshot::SnapshotInfo;

/// Default bytes of L2 tables cached per image (covers 32 GiB of guest
/// disk with 64 KiB clusters).
pub const DEFAULT_L2_CACHE_BYTES: usize = 4 << 20;
const REFBLOCK_CACHE_BYTES: usize = 1 << 20;
/// Pending frees that trigger an early metadata write-back.
const MAX_PENDING_FREES: usize = 4096;

pub(crate) const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub(crate) const COPIED: u64 = 1 << 63;
pub(crate) const COMPRESSED: u64 = 1 << 62;
pub(crate) const ZERO: u64 = 1;

/// qcow2 errors.
#[derive(Debug, Error)]
pub enum Qcow2Error {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error(transparent)]
    Refcount(#[from] RefcountError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("qcow2: Image is corrupt; cannot be opened read/write")]
    CorruptReadWrite,
    #[error("qcow2: image is corrupt: {0}")]
    Corrupt(String),
    #[error("Failed to decompress cluster at host offset {offset:#x}: {source}")]
    Inflate { offset: u64, source: InflateError },
    #[error("The image size is too large for file format 'qcow2' (try using a larger cluster size)")]
    TooLarge,
    #[error("Unknown backing file format '{0}'")]
    BackingFormat(String),
    #[error("Marking image as corrupt: Preventing invalid write on metadata (overlaps with {0})")]
    Overlap(&'static str),
    #[error("Backing file name uses protocol '{0}': godwit opens only local files")]
    BackingProtocol(String),
}

macro_rules! into_block_error {
    ($($t:ty),*) => {$(
        impl From<$t> for BlockError {
            fn from(e: $t) -> Self {
                BlockError::Qcow2(e.into())
            }
        }
    )*};
}
into_block_error!(HeaderError, RefcountError, SnapshotError);

pub(crate) fn corrupt<T>(msg: impl Into<String>) -> Result<T> {
    Err(Qcow2Error::Corrupt(msg.into()).into())
}

/// What an L2 entry maps a guest cluster to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// Not allocated here: backing file or zeroes.
    Unallocated,
    /// Reads as zeroes; `host` is a preallocated cluster.
    Zero { host: Option<u64> },
    /// Data at a host cluster.
    Data { host: u64 },
    /// Deflate stream at a host byte range.
    Compressed { host: u64, len: u64 },
}

/// Decodes an L2 entry.
pub(crate) fn decode_l2(e: u64, cluster_bits: u32) -> Result<Mapping> {
    if e & COMPRESSED != 0 {
        let x = 62 - (cluster_bits - 8);
        let host = e & ((1 << x) - 1);
        let sectors = ((e >> x) & ((1 << (cluster_bits - 8)) - 1)) + 1;
        let len = sectors * 512 - (host & 511);
        return Ok(Mapping::Compressed { host, len });
    }
    let host = e & OFFSET_MASK;
    if e & ZERO != 0 {
        return Ok(Mapping::Zero {
            host: (host != 0).then_some(host),
        });
    }
    if host == 0 {
        return Ok(Mapping::Unallocated);
    }
    if host & ((1 << cluster_bits) - 1) != 0 {
        return corrupt(format!("data cluster offset {host:#x} is not cluster-aligned"));
    }
    Ok(Mapping::Data { host })
}

/// Host clusters (offsets) a compressed range touches.
pub(crate) fn compressed_clusters(host: u64, len: u64, cluster_bits: u32) -> impl Iterator<Item = u64> {
    let first = host >> cluster_bits;
    let last = (host + len.max(1) - 1) >> cluster_bits;
    (first..=last).map(move |c| c << cluster_bits)
}

/// An open qcow2 image.
pub struct Qcow2 {
    pub(crate) file: Box<dyn Storage>,
    path: PathBuf,
    pub(crate) header: Header,
    read_only: bool,
    pub(crate) cluster_bits: u32,
    pub(crate) l2_bits: u32,
    /// Guest-visible size.
    pub(crate) size: u64,
    pub(crate) l1: Vec<u64>,
    pub(crate) l1_offset: u64,
    /// Range of L1 entries changed since the last write-back.
    pub(crate) l1_dirty: Option<(usize, usize)>,
    pub(crate) l2: TableCache,
    pub(crate) rc: Refcounts,
    /// Host clusters to dereference once the metadata that dropped them is
    /// written.
    pub(crate) pending_free: Vec<u64>,
    pub(crate) backing: Option<Box<dyn BlockBackend>>,
    pub(crate) snapshots: Vec<Snapshot>,
    /// Size of the snapshot table on disk.
    pub(crate) snapshot_table_bytes: u64,
    /// Known end of the image file.
    pub(crate) file_end: u64,
    /// Lazy refcounts: the dirty bit is set while open for writing.
    lazy: bool,
    /// The first write has cleared autoclear bits / set the dirty bit.
    write_prepared: bool,
    /// Last decompressed cluster: (L2 entry, bytes).
    pub(crate) decompressed: Option<(u64, Vec<u8>)>,
    /// A cluster-sized buffer for copy-on-write, kept between writes.
    pub(crate) cow_buf: Vec<u8>,
    /// A write over this metadata was refused: the image is marked corrupt and takes no
    /// more writes.
    pub(crate) broken: Option<overlap::Meta>,
}

impl Qcow2 {
    /// Opens a qcow2 image from storage, with its backing chain, using
    /// default options (`read_only` as given, locking for backing files).
    pub fn open(file: Box<dyn Storage>, path: &Path, read_only: bool) -> Result<Qcow2> {
        let opts = ImageOptions {
            read_only,
            ..ImageOptions::default()
        };
        Self::open_chain(file, path, &opts, &[])
    }

    /// Opens a qcow2 layer; `chain` holds the files above it and this one.
    pub(crate) fn open_chain(file: Box<dyn Storage>, path: &Path, opts: &ImageOptions, chain: &Chain) -> Result<Qcow2> {
        let file_len = file.len()?;
        let mut start = [0u8; 24];
        file.read_at(&mut start, 0)?;
        if file_len < 24 {
            return Err(HeaderError::NotQcow2.into());
        }
        let cluster_bits = Header::peek_cluster_bits(&start)?;
        let mut c0 = vec![0u8; (1u64 << cluster_bits).min(file_len) as usize];
        file.read_at(&mut c0, 0)?;
        let header = Header::parse(&c0)?;
        validate::tables_inside(&header, file_len)?;
        if !opts.read_only && header.incompatible_features & INCOMPAT_CORRUPT != 0 {
            return Err(Qcow2Error::CorruptReadWrite.into());
        }
        let cs = 1u64 << cluster_bits;

        let mut raw_l1 = vec![0u8; header.l1_size as usize * 8];
        file.read_at(&mut raw_l1, header.l1_table_offset)?;
        let l1 = (0..header.l1_size as usize).map(|i| entry(&raw_l1, i)).collect();

        let rc = Refcounts::load(
            file.as_ref(),
            header.refcount_table_offset,
            header.refcount_table_clusters,
            header.refcount_order,
            cluster_bits,
            (REFBLOCK_CACHE_BYTES as u64 / cs).max(4) as usize,
        )?;
        let (snapshots, snapshot_table_bytes) = snapshot::read_table(file.as_ref(), &header, file_len)?;
        let backing = match &header.backing_file {
            Some(name) => Some(backing::open(path, name, header.backing_format.as_deref(), opts, chain)?),
            None => None,
        };
        let l2_tables = (opts.l2_cache_bytes as u64 / cs).max(4) as usize;
        let mut img = Qcow2 {
            file,
            path: path.to_path_buf(),
            cluster_bits,
            l2_bits: header::l2_bits(cluster_bits),
            size: header.size,
            l1_offset: header.l1_table_offset,
            header,
            read_only: opts.read_only,
            l1,
            l1_dirty: None,
            l2: TableCache::new(l2_tables),
            rc,
            pending_free: Vec::new(),
            backing,
            snapshots,
            snapshot_table_bytes,
            file_end: file_len,
            lazy: false,
            write_prepared: false,
            decompressed: None,
            cow_buf: Vec::new(),
            broken: None,
        };
        img.validate_structure(file_len)?;
        if !img.read_only {
            if img.header.incompatible_features & INCOMPAT_DIRTY != 0 {
                img.rebuild_refcounts()?;
                img.set_incompat(INCOMPAT_DIRTY, false)?;
            }
            if img.header.compatible_features & header::COMPAT_LAZY_REFCOUNTS != 0 {
                img.lazy = true;
                img.rc.barriers = false;
            }
        }
        Ok(img)
    }

    /// Whether lazy refcounts keep the dirty bit set while open.
    pub(crate) fn lazy_mode(&self) -> bool {
        self.lazy
    }

    pub(crate) fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// The parsed header (as of open; table offsets may have moved since).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Current host offset of the refcount table.
    pub fn rc_table_offset(&self) -> u64 {
        self.rc.table_offset
    }

    /// The backing image, if any.
    pub fn backing(&mut self) -> Option<&mut (dyn BlockBackend + 'static)> {
        self.backing.as_deref_mut()
    }

    /// Writes `buf` at `off` of the image file, tracking its end.
    pub(crate) fn file_write(&mut self, buf: &[u8], off: u64) -> Result<()> {
        self.file.write_at(buf, off)?;
        self.file_end = self.file_end.max(off + buf.len() as u64);
        Ok(())
    }

    /// fdatasync unless lazy refcounts relax the ordering.
    pub(crate) fn barrier(&mut self) -> Result<()> {
        if !self.lazy {
            self.file.sync()?;
        }
        Ok(())
    }

    /// Sets or clears an incompatible feature bit on disk (v3 only).
    pub(crate) fn set_incompat(&mut self, bit: u64, on: bool) -> Result<()> {
        if self.header.version < 3 {
            return Ok(());
        }
        let mut v = self.header.incompatible_features;
        if on {
            v |= bit
        } else {
            v &= !bit
        }
        if v == self.header.incompatible_features {
            return Ok(());
        }
        self.file.sync()?;
        self.file_write(&v.to_be_bytes(), header::OFF_INCOMPAT)?;
        self.file.sync()?;
        self.header.incompatible_features = v;
        Ok(())
    }

    /// Before the first modification: clear autoclear bits we do not
    /// maintain, and set the dirty bit in lazy-refcount mode.
    pub(crate) fn prepare_write(&mut self) -> Result<()> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        if let Some(e) = self.broken_error() {
            return Err(e);
        }
        if self.write_prepared {
            return Ok(());
        }
        if self.header.version >= 3 && self.header.autoclear_features != 0 {
            self.file_write(&0u64.to_be_bytes(), header::OFF_AUTOCLEAR)?;
            self.header.autoclear_features = 0;
        }
        if self.lazy {
            self.set_incompat(INCOMPAT_DIRTY, true)?;
        }
        self.write_prepared = true;
        Ok(())
    }

    /// Index in the L1 table and in the L2 table of guest offset `vaddr`.
    pub(crate) fn split(&self, vaddr: u64) -> (usize, usize) {
        let c = vaddr >> self.cluster_bits;
        ((c >> self.l2_bits) as usize, (c & ((1 << self.l2_bits) - 1)) as usize)
    }

    /// Makes sure the L2 table at `off` is cached.
    pub(crate) fn load_l2(&mut self, off: u64) -> Result<()> {
        if self.l2.contains(off) {
            return Ok(());
        }
        self.make_l2_room()?;
        let mut data = vec![0u8; self.cluster_size() as usize];
        self.file.read_at(&mut data, off)?;
        self.l2.insert(off, data, false);
        Ok(())
    }

    /// Evicts the least recently used L2 table if the cache is full,
    /// writing metadata back first when that table is dirty.
    pub(crate) fn make_l2_room(&mut self) -> Result<()> {
        if self.l2.full()
            && let Some((victim, dirty)) = self.l2.victim()
        {
            if dirty {
                self.write_metadata()?;
            }
            self.l2.remove(victim);
        }
        Ok(())
    }

    /// Checks an L2 table offset from an L1 entry.
    pub(crate) fn l2_offset(&self, l1e: u64) -> Result<u64> {
        let off = l1e & OFFSET_MASK;
        if off & (self.cluster_size() - 1) != 0 {
            return corrupt(format!("L2 table offset {off:#x} is not cluster-aligned"));
        }
        Ok(off)
    }

    /// Raw L2 entry `idx` of the table at `l2_off`.
    pub(crate) fn l2_get(&mut self, l2_off: u64, idx: usize) -> Result<u64> {
        if let Some(t) = self.l2.get(l2_off) {
            return Ok(entry(t, idx));
        }
        self.load_l2(l2_off)?;
        Ok(self.l2.get(l2_off).map_or(0, |t| entry(t, idx)))
    }

    /// Sets L2 entry `idx` of the table at `l2_off` (cached, dirty).
    pub(crate) fn l2_set(&mut self, l2_off: u64, idx: usize, value: u64) -> Result<()> {
        self.load_l2(l2_off)?;
        if let Some(t) = self.l2.get_mut(l2_off) {
            set_entry(t, idx, value);
        }
        Ok(())
    }

    /// All entries of the L2 table at `l2_off`.
    pub(crate) fn l2_entries(&mut self, l2_off: u64) -> Result<Vec<u64>> {
        self.load_l2(l2_off)?;
        let n = 1usize << self.l2_bits;
        Ok(self
            .l2
            .get(l2_off)
            .map(|t| (0..n).map(|i| entry(t, i)).collect())
            .unwrap_or_default())
    }

    pub(crate) fn set_l1(&mut self, idx: usize, value: u64) {
        self.l1[idx] = value;
        self.l1_dirty = Some(match self.l1_dirty {
            Some((lo, hi)) => (lo.min(idx), hi.max(idx)),
            None => (idx, idx),
        });
    }

    /// The mapping of the guest cluster holding `vaddr`.
    pub(crate) fn lookup(&mut self, vaddr: u64) -> Result<Mapping> {
        let (l1i, l2i) = self.split(vaddr);
        let Some(&l1e) = self.l1.get(l1i) else {
            return Ok(Mapping::Unallocated);
        };
        let l2_off = self.l2_offset(l1e)?;
        if l2_off == 0 {
            return Ok(Mapping::Unallocated);
        }
        let e = self.l2_get(l2_off, l2i)?;
        decode_l2(e, self.cluster_bits)
    }

    pub(crate) fn refcount(&mut self, host: u64) -> Result<u64> {
        Ok(self.rc.get(&mut *self.file, host >> self.cluster_bits)?)
    }

    /// Allocates `n` contiguous clusters (refcount 1, not yet on disk).
    pub(crate) fn alloc_clusters(&mut self, n: u64) -> Result<u64> {
        let off = self.rc.alloc(&mut *self.file, n)?;
        // New refcount blocks or tables may have extended the file.
        self.file_end = self.file_end.max(self.rc.written_end);
        Ok(off)
    }

    /// Drops one reference to host cluster `host` once the metadata that
    /// stopped pointing at it has been written.
    pub(crate) fn free_later(&mut self, host: u64) {
        self.pending_free.push(host);
    }

    /// Drops the references an L2 entry held (for an entry being replaced).
    pub(crate) fn release(&mut self, m: Mapping) {
        match m {
            Mapping::Data { host } | Mapping::Zero { host: Some(host) } => self.free_later(host),
            Mapping::Compressed { host, len } => {
                for c in compressed_clusters(host, len, self.cluster_bits) {
                    self.free_later(c);
                }
            }
            _ => {}
        }
    }

    /// Decrements the refcount of `host` now; frees and forgets it at 0.
    /// Returns the host offset when the cluster became free.
    pub(crate) fn decref(&mut self, host: u64) -> Result<Option<u64>> {
        let v = self.rc.update(&mut *self.file, host >> self.cluster_bits, -1)?;
        if v == 0 {
            self.l2.remove(host);
            return Ok(Some(host));
        }
        Ok(None)
    }

    /// Punches holes over freed clusters (best effort, merging neighbours).
    pub(crate) fn punch_freed(&mut self, mut freed: Vec<u64>) -> Result<()> {
        freed.sort_unstable();
        let cs = self.cluster_size();
        let mut i = 0;
        while i < freed.len() {
            let start = freed[i];
            let mut end = start + cs;
            i += 1;
            while i < freed.len() && freed[i] <= end {
                end = end.max(freed[i] + cs);
                i += 1;
            }
            // A cluster freed because a hostile entry pointed at metadata is not punched.
            self.guard_write(start, end - start, true)?;
            if start < self.file_end {
                self.file.punch_hole(start, end.min(self.file_end) - start)?;
            }
        }
        Ok(())
    }

    /// Writes all cached metadata in crash-safe order, without a final
    /// flush:
    /// 1. refcount blocks (only increments can be pending), barrier;
    /// 2. dirty L2 tables, barrier;
    /// 3. the changed part of the L1 table;
    /// 4. barrier, then the refcount decrements of clusters that steps 2-3
    ///    stopped referencing, and hole punching of freed clusters.
    pub fn write_metadata(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let dirty_l2 = !self.l2.dirty().is_empty();
        let tables = dirty_l2 || self.l1_dirty.is_some();
        if self.rc.commit(&mut *self.file)? && tables {
            self.barrier()?;
        }
        self.write_dirty_l2()?;
        if self.l1_dirty.is_some() && dirty_l2 {
            self.barrier()?;
        }
        self.write_dirty_l1()?;
        if !self.pending_free.is_empty() {
            if tables {
                self.barrier()?;
            }
            let mut freed = Vec::new();
            for host in std::mem::take(&mut self.pending_free) {
                if let Some(f) = self.decref(host)? {
                    freed.push(f);
                }
            }
            self.decompressed = None;
            self.rc.commit(&mut *self.file)?;
            self.punch_freed(freed)?;
        }
        Ok(())
    }

    /// Writes every dirty cached L2 table.
    pub(crate) fn write_dirty_l2(&mut self) -> Result<()> {
        for off in self.l2.dirty() {
            self.guard_write(off, self.cluster_size(), false)?;
            if let Some(data) = self.l2.peek(off).map(<[u8]>::to_vec) {
                self.file_write(&data, off)?;
            }
            self.l2.mark_clean(off);
        }
        Ok(())
    }

    /// Writes the changed range of the active L1 table.
    pub(crate) fn write_dirty_l1(&mut self) -> Result<()> {
        let Some((lo, hi)) = self.l1_dirty else {
            return Ok(());
        };
        let mut raw = vec![0u8; (hi - lo + 1) * 8];
        for (i, e) in self.l1[lo..=hi].iter().enumerate() {
            set_entry(&mut raw, i, *e);
        }
        // Only once written is the range clean: a failed write leaves it to the next
        // flush, and the frees that wait for it.
        self.file_write(&raw, self.l1_offset + lo as u64 * 8)?;
        self.l1_dirty = None;
        Ok(())
    }

    /// Writes metadata back early when many frees are pending.
    pub(crate) fn maybe_write_metadata(&mut self) -> Result<()> {
        if self.pending_free.len() > MAX_PENDING_FREES {
            self.write_metadata()?;
        }
        Ok(())
    }

    /// Grows the active L1 table to at least `min` entries, moving it.
    pub(crate) fn grow_l1(&mut self, min: usize) -> Result<()> {
        let max = (header::MAX_L1_BYTES / 8) as usize;
        if min > max {
            return Err(Qcow2Error::TooLarge.into());
        }
        let new_len = min.max(self.l1.len() + self.l1.len() / 2).min(max);
        self.replace_l1(new_len)
    }

    /// Moves the active L1 to new clusters with `len` entries.
    pub(crate) fn replace_l1(&mut self, len: usize) -> Result<()> {
        self.write_metadata()?;
        let cs = self.cluster_size();
        let bytes = len as u64 * 8;
        let new_off = self.alloc_clusters(bytes.div_ceil(cs).max(1))?;
        self.rc.commit(&mut *self.file)?;
        self.barrier()?;
        let mut l1 = self.l1.clone();
        l1.resize(len, 0);
        let mut raw = vec![0u8; bytes as usize];
        for (i, e) in l1.iter().enumerate() {
            set_entry(&mut raw, i, *e);
        }
        self.file_write(&raw, new_off)?;
        // A header switch is synced even with lazy refcounts (which only relax refcount
        // ordering): the old table is freed and punched right after.
        self.file.sync()?;
        let mut hdr = [0u8; 12];
        hdr[..4].copy_from_slice(&(len as u32).to_be_bytes());
        hdr[4..].copy_from_slice(&new_off.to_be_bytes());
        self.file_write(&hdr, header::OFF_L1_SIZE)?;
        self.file.sync()?;
        let old_bytes = self.l1.len() as u64 * 8;
        if self.l1_offset != 0 && old_bytes > 0 {
            for i in 0..old_bytes.div_ceil(cs) {
                self.free_later(self.l1_offset + i * cs);
            }
        }
        self.l1 = l1;
        self.l1_offset = new_off;
        self.header.l1_size = len as u32;
        self.header.l1_table_offset = new_off;
        Ok(())
    }

    /// Writes everything back and makes it durable.
    pub fn flush_all(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.write_metadata()?;
        self.file.sync()?;
        Ok(())
    }

    /// Flushes and, in lazy-refcount mode, marks the image clean. Called
    /// on drop; call it explicitly to see errors.
    pub fn close(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.flush_all()?;
        if self.lazy && self.write_prepared {
            self.set_incompat(INCOMPAT_DIRTY, false)?;
            self.write_prepared = false;
        }
        Ok(())
    }
}

impl Drop for Qcow2 {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl BlockBackend for Qcow2 {
    fn format(&self) -> Format {
        Format::Qcow2
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        self.read_vaddr(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        self.write_vaddr(buf, offset)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<()> {
        check_range(offset, len, self.size)?;
        self.zero_range(offset, len, may_unmap)
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        check_range(offset, len, self.size)?;
        self.discard_range(offset, len)
    }

    fn flush(&mut self) -> Result<()> {
        self.flush_all()
    }

    fn start_writeback(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        Ok(self.file.start_writeback()?)
    }

    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        check_range(offset, len, self.size)?;
        self.status(offset, len)
    }

    fn as_qcow2(&mut self) -> Option<&mut Qcow2> {
        Some(self)
    }
}
