//! The qcow2 header and its extensions: parsing with validation, and
//! serialisation for newly created images.
//!
//! After creation godwit never rewrites the whole header: it patches single
//! fields at the offsets below, so unknown header fields and extensions are
//! preserved byte for byte.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use thiserror::Error;

/// `QFI\xfb`.
pub const MAGIC: u32 = 0x5146_49fb;

/// Byte offsets of header fields godwit patches in place.
pub const OFF_L1_SIZE: u64 = 36; // u32 l1_size, then u64 l1_table_offset
pub const OFF_REFCOUNT_TABLE: u64 = 48; // u64 offset, then u32 clusters
pub const OFF_SNAPSHOTS: u64 = 60; // u32 nb_snapshots, then u64 offset
pub const OFF_INCOMPAT: u64 = 72;
pub const OFF_AUTOCLEAR: u64 = 88;

pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 = 0x1f;
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;

pub const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;

/// Header length godwit writes for v3 images (with the compression type
/// byte, like QEMU).
const V3_HEADER_LEN: u32 = 112;
const V2_HEADER_LEN: u32 = 72;
/// Largest backing file name QEMU accepts.
pub const MAX_BACKING_NAME: usize = 1023;
/// Largest active L1 QEMU accepts (bytes).
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table QEMU accepts (bytes).
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Most snapshots QEMU accepts.
pub const MAX_SNAPSHOTS: u32 = 65536;

/// Header problems: the image is not qcow2, is damaged, or uses features
/// godwit does not implement.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("Image is not in qcow2 format")]
    NotQcow2,
    #[error("Unsupported qcow2 version {0}")]
    Version(u32),
    #[error("Unsupported cluster size: 2^{0}")]
    ClusterBits(u32),
    #[error("Unsupported qcow2 feature(s): {0}")]
    Unsupported(String),
    #[error("Invalid qcow2 header: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, HeaderError>;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(HeaderError::Invalid(msg.into()))
}

/// A header extension kept as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub kind: u32,
    pub data: Vec<u8>,
}

/// A parsed qcow2 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    /// Virtual size, rounded down to 512 bytes as QEMU does.
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub backing_file: Option<PathBuf>,
    pub backing_format: Option<String>,
    pub extensions: Vec<Extension>,
}

/// Big-endian u32 at `off`; 0 when `b` is too short.
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_be_bytes)
}

/// Big-endian u64 at `off`; 0 when `b` is too short.
pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_be_bytes)
}

/// Entries of the L2 table (standard 64-bit entries) for `cluster_bits`.
pub fn l2_bits(cluster_bits: u32) -> u32 {
    cluster_bits - 3
}

/// L1 entries needed to map `size` bytes.
pub fn l1_entries_for(size: u64, cluster_bits: u32) -> u64 {
    let shift = cluster_bits + l2_bits(cluster_bits);
    size.div_ceil(1u64 << shift)
}

impl Header {
    /// Cluster size from the first 24 bytes, to know how much to read
    /// before calling [`Header::parse`].
    pub fn peek_cluster_bits(start: &[u8]) -> Result<u32> {
        if start.len() < 24 || be32(start, 0) != MAGIC {
            return Err(HeaderError::NotQcow2);
        }
        let v = be32(start, 4);
        if v != 2 && v != 3 {
            return Err(HeaderError::Version(v));
        }
        let bits = be32(start, 20);
        if !(9..=21).contains(&bits) {
            return Err(HeaderError::ClusterBits(bits));
        }
        Ok(bits)
    }

    /// Parses and validates a header from the bytes of cluster 0 (shorter
    /// input means the file ended early).
    pub fn parse(c0: &[u8]) -> Result<Header> {
        let cluster_bits = Self::peek_cluster_bits(c0)?;
        let cluster_size = 1usize << cluster_bits;
        if c0.len() < V2_HEADER_LEN as usize {
            return invalid("file too short");
        }
        let version = be32(c0, 4);
        let mut h = Header {
            version,
            cluster_bits,
            size: be64(c0, 24) & !511,
            l1_size: be32(c0, 36),
            l1_table_offset: be64(c0, 40),
            refcount_table_offset: be64(c0, 48),
            refcount_table_clusters: be32(c0, 56),
            nb_snapshots: be32(c0, 60),
            snapshots_offset: be64(c0, 64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN,
            backing_file: None,
            backing_format: None,
            extensions: Vec::new(),
        };
        let mut compression_type = 0u8;
        if version == 3 {
            if c0.len() < 104 {
                return invalid("file too short");
            }
            h.incompatible_features = be64(c0, 72);
            h.compatible_features = be64(c0, 80);
            h.autoclear_features = be64(c0, 88);
            h.refcount_order = be32(c0, 96);
            h.header_length = be32(c0, 100);
            if h.header_length < 104 {
                return invalid("qcow2 header too short");
            }
            if h.header_length as usize > cluster_size || h.header_length as usize > c0.len() {
                return invalid("qcow2 header exceeds cluster size");
            }
            if h.header_length >= 105 {
                compression_type = c0[104];
            }
        }
        let crypt_method = be32(c0, 32);
        let backing_offset = be64(c0, 8);
        let backing_size = be32(c0, 16) as usize;

        h.check_features(compression_type, crypt_method, c0)?;
        h.check_tables()?;

        // Extensions end at the backing file name (if any) or the end of
        // cluster 0.
        let mut ext_end = c0.len().min(cluster_size);
        if backing_offset != 0 {
            if backing_size > MAX_BACKING_NAME {
                return invalid("Backing file name too long");
            }
            let start = usize::try_from(backing_offset).unwrap_or(usize::MAX);
            if start < h.header_length as usize || start.checked_add(backing_size).is_none_or(|end| end > cluster_size.min(c0.len())) {
                return invalid("backing file name outside the header cluster");
            }
            ext_end = ext_end.min(start);
            let name = &c0[start..start + backing_size];
            // An empty name means no backing file, as in QEMU.
            if !name.is_empty() {
                h.backing_file = Some(PathBuf::from(OsStr::from_bytes(name)));
            }
        }
        h.parse_extensions(c0, ext_end)?;
        Ok(h)
    }

    fn check_features(&self, compression_type: u8, crypt_method: u32, c0: &[u8]) -> Result<()> {
        let incompat = self.incompatible_features;
        let mut problems = Vec::new();
        let unknown = incompat & !INCOMPAT_KNOWN;
        if unknown != 0 {
            let names = feature_names(c0, self.header_length as usize);
            for bit in 0..64 {
                if unknown & (1 << bit) != 0 {
                    match names.iter().find(|(t, b, _)| *t == 0 && u32::from(*b) == bit) {
                        Some((_, _, name)) => problems.push(name.clone()),
                        None => problems.push(format!("Unknown incompatible feature: {:x}", 1u64 << bit)),
                    }
                }
            }
        }
        if incompat & INCOMPAT_DATA_FILE != 0 {
            problems.push("External data file".into());
        }
        if incompat & INCOMPAT_EXTL2 != 0 {
            problems.push("Extended L2 entries".into());
        }
        if (incompat & INCOMPAT_COMPRESSION != 0) != (compression_type != 0) {
            return invalid("compression type field and feature bit disagree");
        }
        match compression_type {
            0 => {}
            1 => problems.push("zstd compression".into()),
            n => return invalid(format!("unknown compression type {n}")),
        }
        if crypt_method != 0 {
            problems.push("encryption".into());
        }
        if !problems.is_empty() {
            return Err(HeaderError::Unsupported(problems.join(", ")));
        }
        if self.version == 2 && self.refcount_order != 4 {
            return invalid("v2 images use 16-bit refcounts");
        }
        if self.refcount_order > 6 {
            return invalid(format!("refcount order {} out of range", self.refcount_order));
        }
        Ok(())
    }

    fn check_tables(&self) -> Result<()> {
        let cs = self.cluster_size();
        let misaligned = |off: u64| off & (cs - 1) != 0 || off >= 1 << 56;
        if misaligned(self.l1_table_offset) {
            return invalid("Invalid L1 table offset");
        }
        if u64::from(self.l1_size) * 8 > MAX_L1_BYTES {
            return invalid("Active L1 table too large");
        }
        if u64::from(self.l1_size) < l1_entries_for(self.size, self.cluster_bits) {
            return invalid("L1 table is too small");
        }
        if self.l1_size > 0 && self.l1_table_offset == 0 {
            return invalid("Invalid L1 table offset");
        }
        if misaligned(self.refcount_table_offset) || self.refcount_table_offset == 0 {
            return invalid("Invalid reference count table offset");
        }
        if self.refcount_table_clusters == 0 || u64::from(self.refcount_table_clusters) * cs > MAX_REFTABLE_BYTES {
            return invalid("Reference count table too large");
        }
        if self.nb_snapshots > MAX_SNAPSHOTS {
            return invalid("Too many snapshots");
        }
        if self.nb_snapshots > 0 && (misaligned(self.snapshots_offset) || self.snapshots_offset == 0) {
            return invalid("Invalid snapshot table offset");
        }
        Ok(())
    }

    fn parse_extensions(&mut self, c0: &[u8], end: usize) -> Result<()> {
        let mut pos = self.header_length as usize;
        while pos + 8 <= end {
            let kind = be32(c0, pos);
            let len = be32(c0, pos + 4) as usize;
            if kind == EXT_END {
                return Ok(());
            }
            let data_end = pos + 8 + len;
            if data_end > end {
                return invalid(format!("header extension {kind:#x} overruns the header"));
            }
            let data = c0[pos + 8..data_end].to_vec();
            if kind == EXT_BACKING_FORMAT {
                let fmt = String::from_utf8_lossy(&data).trim_end_matches('\0').to_string();
                self.backing_format = Some(fmt);
            }
            self.extensions.push(Extension { kind, data });
            pos = data_end.next_multiple_of(8);
        }
        Ok(())
    }

    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// A new v3 header with the given layout (used by image creation).
    pub fn new_v3(size: u64, cluster_bits: u32, refcount_order: u32) -> Header {
        Header {
            version: 3,
            cluster_bits,
            size,
            l1_size: 0,
            l1_table_offset: 0,
            refcount_table_offset: 0,
            refcount_table_clusters: 0,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order,
            header_length: V3_HEADER_LEN,
            backing_file: None,
            backing_format: None,
            extensions: Vec::new(),
        }
    }

    /// Serialises the header, its extensions (backing format first, then a
    /// feature name table when it fits, as QEMU does) and the backing file
    /// name. Fails when it all does not fit in cluster 0.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let cs = self.cluster_size() as usize;
        let mut b = vec![0u8; self.header_length as usize];
        let put32 = |b: &mut [u8], o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_be_bytes());
        let put64 = |b: &mut [u8], o: usize, v: u64| b[o..o + 8].copy_from_slice(&v.to_be_bytes());
        put32(&mut b, 0, MAGIC);
        put32(&mut b, 4, self.version);
        put32(&mut b, 20, self.cluster_bits);
        put64(&mut b, 24, self.size);
        put32(&mut b, 36, self.l1_size);
        put64(&mut b, 40, self.l1_table_offset);
        put64(&mut b, 48, self.refcount_table_offset);
        put32(&mut b, 56, self.refcount_table_clusters);
        put32(&mut b, 60, self.nb_snapshots);
        put64(&mut b, 64, self.snapshots_offset);
        if self.version >= 3 {
            put64(&mut b, 72, self.incompatible_features);
            put64(&mut b, 80, self.compatible_features);
            put64(&mut b, 88, self.autoclear_features);
            put32(&mut b, 96, self.refcount_order);
            put32(&mut b, 100, self.header_length);
        }
        let push_ext = |b: &mut Vec<u8>, kind: u32, data: &[u8]| {
            b.extend_from_slice(&kind.to_be_bytes());
            b.extend_from_slice(&(data.len() as u32).to_be_bytes());
            b.extend_from_slice(data);
            b.resize(b.len().next_multiple_of(8), 0);
        };
        if let Some(fmt) = &self.backing_format {
            push_ext(&mut b, EXT_BACKING_FORMAT, fmt.as_bytes());
        }
        for ext in &self.extensions {
            if ext.kind != EXT_BACKING_FORMAT {
                push_ext(&mut b, ext.kind, &ext.data);
            }
        }
        let name = self.backing_file.as_ref().map(|p| p.as_os_str().as_bytes().to_vec());
        let name_len = name.as_ref().map_or(0, Vec::len);
        if name_len > MAX_BACKING_NAME {
            return invalid("Backing file name too long");
        }
        if self.version >= 3 {
            let table = feature_table();
            if b.len() + table.len() + 16 + name_len <= cs {
                push_ext(&mut b, EXT_FEATURE_TABLE, &table);
            }
        }
        b.extend_from_slice(&[0u8; 8]); // end of extensions
        if let Some(name) = name {
            let off = b.len() as u64;
            put64(&mut b, 8, off);
            put32(&mut b, 16, name_len as u32);
            b.extend_from_slice(&name);
        }
        if b.len() > cs {
            return invalid("header does not fit in the first cluster");
        }
        Ok(b)
    }
}

/// The feature name table godwit writes: the features it knows.
fn feature_table() -> Vec<u8> {
    let names: [(u8, u8, &str); 7] = [
        (0, 0, "dirty bit"),
        (0, 1, "corrupt bit"),
        (0, 2, "external data file"),
        (0, 3, "compression type"),
        (0, 4, "extended L2 entries"),
        (1, 0, "lazy refcounts"),
        (2, 0, "bitmaps"),
    ];
    let mut out = Vec::with_capacity(names.len() * 48);
    for (kind, bit, name) in names {
        let mut entry = [0u8; 48];
        entry[0] = kind;
        entry[1] = bit;
        entry[2..2 + name.len()].copy_from_slice(name.as_bytes());
        out.extend_from_slice(&entry);
    }
    out
}

/// The (type, bit, name) triples of the feature name table, if present.
fn feature_names(c0: &[u8], header_length: usize) -> Vec<(u8, u8, String)> {
    let mut out = Vec::new();
    let mut pos = header_length;
    while pos + 8 <= c0.len() {
        let kind = be32(c0, pos);
        let len = be32(c0, pos + 4) as usize;
        if kind == EXT_END || pos + 8 + len > c0.len() {
            break;
        }
        if kind == EXT_FEATURE_TABLE {
            for e in c0[pos + 8..pos + 8 + len].chunks_exact(48) {
                let name = e[2..].split(|&c| c == 0).next().unwrap_or(&[]);
                out.push((e[0], e[1], String::from_utf8_lossy(name).into_owned()));
            }
        }
        pos = (pos + 8 + len).next_multiple_of(8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_backing() {
        let mut h = Header::new_v3(1 << 30, 16, 4);
        h.l1_size = 2;
        h.l1_table_offset = 0x30000;
        h.refcount_table_offset = 0x10000;
        h.refcount_table_clusters = 1;
        h.backing_file = Some(PathBuf::from("base.qcow2"));
        h.backing_format = Some("qcow2".into());
        let bytes = h.to_bytes().unwrap();
        let p = Header::parse(&bytes).unwrap();
        assert_eq!(p.backing_file, h.backing_file);
        assert_eq!(p.backing_format.as_deref(), Some("qcow2"));
        assert_eq!(p.l1_size, 2);
        assert_eq!(p.header_length, 112);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Header::parse(&[0u8; 512]), Err(HeaderError::NotQcow2));
        let mut h = Header::new_v3(1 << 20, 16, 4);
        h.l1_size = 1;
        h.l1_table_offset = 0x30000;
        h.refcount_table_offset = 0x10000;
        h.refcount_table_clusters = 1;
        let mut b = h.to_bytes().unwrap();
        b[72 + 7] |= 0x20; // unknown incompatible bit 5
        let err = Header::parse(&b).unwrap_err().to_string();
        assert_eq!(err, "Unsupported qcow2 feature(s): Unknown incompatible feature: 20");
        b[72 + 7] = 0;
        b[20..24].copy_from_slice(&30u32.to_be_bytes());
        assert_eq!(Header::parse(&b), Err(HeaderError::ClusterBits(30)));
        // Truncated input never panics.
        for n in 0..b.len() {
            let _ = Header::parse(&b[..n]);
        }
    }
}
