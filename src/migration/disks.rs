//! The DISKS record: the source's disks and how each one migrates, and the destination's
//! checks of it. Layout (all little-endian, see docs/migration.md):
//!
//! `u8 mode, u32 count`, then per disk `u16 id length, id, u64 size, u8 flags` (bit 0: its
//! contents are sent, bit 1: a base follows) and, with a base, `u64 base size, u32 CRC-32C
//! of the base file's first 64 KiB`.

use super::crc::crc32c;
use crate::vm::Vm;
use crate::vm::disks::{Disk, DiskError};
use devices::block::BlockError;
use devices::bus::lock;
use std::io::Read;
use std::path::PathBuf;
use thiserror::Error;

/// Bytes of the base file that identify it (its header, for a qcow2 base).
const BASE_ID_BYTES: usize = 64 << 10;
/// More disks than any PCI bus 0 holds.
const MAX_DISKS: u32 = 256;

/// Why a DISKS record is malformed, or the destination cannot take the disks it announces.
#[derive(Debug, Error)]
pub enum DisksError {
    #[error("unknown disk migration mode {0}")]
    UnknownMode(u8),
    /// More disks than any machine has.
    #[error("{0} disks announced")]
    TooMany(u32),
    #[error("a disk name is not UTF-8")]
    NameNotUtf8,
    #[error("unknown disk flags {0:#x}")]
    UnknownFlags(u8),
    /// A disk's contents announced in a migration without block copy.
    #[error("disk '{0}' is sent although storage is shared")]
    SentWhileShared(String),
    /// Bytes left over after the last disk.
    #[error("{0} stray bytes after the disk list")]
    Stray(usize),
    /// A length runs past the end of the record.
    #[error("the disk list is cut short")]
    CutShort,
    /// The first bytes of a disk's base image (its identity) could not be read.
    #[error("cannot read the base image '{}': {}", path.display(), crate::errtext::io(err))]
    ReadBase {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("the source has {theirs} disks, this VM {mine}")]
    DiskCount { theirs: usize, mine: usize },
    /// The disks at one position have different names.
    #[error("the source's disk '{theirs}' is not here (this VM has '{mine}')")]
    Missing { theirs: String, mine: String },
    #[error("disk '{id}' has {theirs} bytes on the source, {mine} here")]
    Size { id: String, theirs: u64, mine: u64 },
    #[error("disk '{0}' is read-only here and cannot receive data")]
    ReadOnly(String),
    /// A disk that receives data could not be taken over (opened, locked) here.
    #[error(transparent)]
    Activate(#[from] DiskError),
    /// `-i`: the two sides' images do not sit on the same base.
    #[error(
        "disk '{id}': the source's image has {}, this one {}: incremental migration needs the same base on both sides",
        show(theirs),
        show(here)
    )]
    BaseMismatch {
        id: String,
        theirs: Option<Base>,
        here: Option<Base>,
    },
    /// `-i`: the allocation of the image here could not be read.
    #[error(transparent)]
    Allocation(BlockError),
    /// `-i`: the image here already has data of its own in its top layer.
    #[error("disk '{0}' already holds data of its own here: incremental migration needs a fresh overlay")]
    NotFresh(String),
}

fn show(b: &Option<Base>) -> String {
    b.map_or("no base".to_string(), |b| {
        format!("a base of {} bytes (checksum {:08x})", b.size, b.crc)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain `migrate`: both sides use the same image files; no disk data moves.
    Shared = 0,
    /// `migrate -b`: every writable disk's whole contents.
    Full = 1,
    /// `migrate -i`: only what the top layer of each writable disk holds.
    Incremental = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub size: u64,
    pub crc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDesc {
    pub id: String,
    pub size: u64,
    /// Its contents travel in the stream (block migration of a writable disk).
    pub copied: bool,
    pub base: Option<Base>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub mode: Mode,
    pub disks: Vec<DiskDesc>,
}

impl Announce {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.mode as u8];
        v.extend_from_slice(&(self.disks.len() as u32).to_le_bytes());
        for d in &self.disks {
            let id = &d.id.as_bytes()[..d.id.len().min(u16::MAX as usize)];
            v.extend_from_slice(&(id.len() as u16).to_le_bytes());
            v.extend_from_slice(id);
            v.extend_from_slice(&d.size.to_le_bytes());
            v.push(u8::from(d.copied) | (u8::from(d.base.is_some()) << 1));
            if let Some(b) = d.base {
                v.extend_from_slice(&b.size.to_le_bytes());
                v.extend_from_slice(&b.crc.to_le_bytes());
            }
        }
        v
    }

    /// Decodes a DISKS payload; every length is checked against what remains.
    pub fn decode(p: &[u8]) -> Result<Announce, DisksError> {
        let mut r = Cursor { p, at: 0 };
        let mode = match r.u8()? {
            0 => Mode::Shared,
            1 => Mode::Full,
            2 => Mode::Incremental,
            m => return Err(DisksError::UnknownMode(m)),
        };
        let count = r.u32()?;
        if count > MAX_DISKS {
            return Err(DisksError::TooMany(count));
        }
        let mut disks = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let n = r.u16()? as usize;
            let id = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| DisksError::NameNotUtf8)?;
            let size = r.u64()?;
            let flags = r.u8()?;
            if flags & !3 != 0 {
                return Err(DisksError::UnknownFlags(flags));
            }
            let base = if flags & 2 != 0 {
                Some(Base {
                    size: r.u64()?,
                    crc: r.u32()?,
                })
            } else {
                None
            };
            if flags & 1 != 0 && mode == Mode::Shared {
                return Err(DisksError::SentWhileShared(id));
            }
            disks.push(DiskDesc {
                id,
                size,
                copied: flags & 1 != 0,
                base,
            });
        }
        if r.at != p.len() {
            return Err(DisksError::Stray(p.len() - r.at));
        }
        Ok(Announce { mode, disks })
    }
}

struct Cursor<'a> {
    p: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DisksError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.p.len()).ok_or(DisksError::CutShort)?;
        let s = &self.p[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DisksError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DisksError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, DisksError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, DisksError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

/// The base (first backing file) of a disk's image: its virtual size and the checksum of
/// the first 64 KiB of its file.
fn base_of(disk: &Disk) -> Result<Option<Base>, DisksError> {
    let mut b = lock(&disk.backend);
    let Some(base) = b.as_qcow2().and_then(|q| q.backing()) else {
        return Ok(None);
    };
    let (path, size) = (base.path().to_path_buf(), base.virtual_size());
    let mut head = Vec::with_capacity(BASE_ID_BYTES);
    std::fs::File::open(&path)
        .and_then(|f| f.take(BASE_ID_BYTES as u64).read_to_end(&mut head))
        .map_err(|err| DisksError::ReadBase { path, err })?;
    Ok(Some(Base {
        size,
        crc: crc32c(0, &head),
    }))
}

/// What the source announces: every disk, the writable ones copied unless storage is shared.
pub fn describe(vm: &Vm, mode: Mode) -> Result<Announce, DisksError> {
    let mut disks = Vec::new();
    for d in vm.disks() {
        let copied = mode != Mode::Shared && !d.cfg.read_only;
        let base = if copied && mode == Mode::Incremental { base_of(d)? } else { None };
        disks.push(DiskDesc {
            id: d.cfg.id.clone(),
            size: d.size,
            copied,
            base,
        });
    }
    Ok(Announce { mode, disks })
}

/// The destination's checks before anything is written: the same disks (by name and size),
/// copied ones writable here. Disks that receive data are activated (locked, reopened);
/// for `-i` each must then sit on the same base and hold nothing of its own yet.
pub fn accept(vm: &Vm, a: &Announce) -> Result<(), DisksError> {
    let mine = vm.disks();
    if a.disks.len() != mine.len() {
        return Err(DisksError::DiskCount {
            theirs: a.disks.len(),
            mine: mine.len(),
        });
    }
    for (theirs, d) in a.disks.iter().zip(mine) {
        if theirs.id != d.cfg.id {
            return Err(DisksError::Missing {
                theirs: theirs.id.clone(),
                mine: d.cfg.id.clone(),
            });
        }
        if theirs.size != d.size {
            return Err(DisksError::Size {
                id: theirs.id.clone(),
                theirs: theirs.size,
                mine: d.size,
            });
        }
        if theirs.copied && d.cfg.read_only {
            return Err(DisksError::ReadOnly(theirs.id.clone()));
        }
    }
    for (theirs, d) in a.disks.iter().zip(mine).filter(|(t, _)| t.copied) {
        d.activate()?;
        if a.mode != Mode::Incremental {
            continue;
        }
        let here = base_of(d)?;
        if here != theirs.base {
            return Err(DisksError::BaseMismatch {
                id: theirs.id.clone(),
                theirs: theirs.base,
                here,
            });
        }
        let extents = lock(&d.backend).block_status(0, d.size).map_err(DisksError::Allocation)?;
        if extents.iter().any(|e| e.allocated_in_top()) {
            return Err(DisksError::NotFresh(theirs.id.clone()));
        }
    }
    Ok(())
}

/// The destination's answers on the connection's way back, to a DISKS record of a block
/// migration and (stream version 3) to END: `GWOK` + `u32 0`, or `GWER` + `u32 length` +
/// the reason (UTF-8, at most 4 KiB).
pub mod reply {
    use std::io::{Read, Write};
    use thiserror::Error;

    const MAX_REASON: usize = 4096;

    /// Why the destination's answer is not a yes.
    #[derive(Debug, Error)]
    pub enum ReplyError {
        /// The destination said no; its reason, in its own words, as it came on the wire.
        #[error("the destination refused: {0}")]
        Refused(String),
        /// No answer came: the read failed, or the connection closed first.
        #[error("{}", no_answer(.0))]
        NoAnswer(#[source] std::io::Error),
        /// What came is not an answer.
        #[error("the destination answered something that is not a godwit reply")]
        NotAReply,
    }

    /// Sends `result`: GWOK, or GWER with the error's text.
    pub fn send<E: std::fmt::Display>(w: &mut dyn Write, result: &Result<(), E>) -> std::io::Result<()> {
        let mut v = Vec::new();
        match result {
            Ok(()) => v.extend_from_slice(b"GWOK\0\0\0\0"),
            Err(e) => {
                let e = e.to_string();
                let e = &e.as_bytes()[..e.len().min(MAX_REASON)];
                v.extend_from_slice(b"GWER");
                v.extend_from_slice(&(e.len() as u32).to_le_bytes());
                v.extend_from_slice(e);
            }
        }
        w.write_all(&v)?;
        w.flush()
    }

    /// Why a read found no answer, in words.
    fn no_answer(e: &std::io::Error) -> String {
        match e.kind() {
            std::io::ErrorKind::InvalidData => e.to_string(),
            std::io::ErrorKind::UnexpectedEof => "the destination did not answer: the connection was closed".into(),
            _ => format!("the destination did not answer: {}", crate::errtext::io(e)),
        }
    }

    /// Reads one answer: `Ok` for GWOK; for GWER the destination's reason.
    pub fn answer(r: &mut dyn Read) -> Result<(), ReplyError> {
        let mut h = [0u8; 8];
        r.read_exact(&mut h).map_err(ReplyError::NoAnswer)?;
        let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        match &h[..4] {
            b"GWOK" if len == 0 => Ok(()),
            b"GWER" if len <= MAX_REASON => {
                let mut m = vec![0u8; len];
                r.read_exact(&mut m).map_err(ReplyError::NoAnswer)?;
                Err(ReplyError::Refused(String::from_utf8_lossy(&m).into_owned()))
            }
            _ => Err(ReplyError::NotAReply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_input() {
        let a = Announce {
            mode: Mode::Incremental,
            disks: vec![
                DiskDesc {
                    id: "virtio0".into(),
                    size: 1 << 30,
                    copied: true,
                    base: Some(Base {
                        size: 1 << 30,
                        crc: 0xdead_beef,
                    }),
                },
                DiskDesc {
                    id: "cd".into(),
                    size: 4096,
                    copied: false,
                    base: None,
                },
            ],
        };
        let bytes = a.encode();
        assert_eq!(Announce::decode(&bytes).unwrap(), a);
        for cut in 0..bytes.len() {
            assert!(Announce::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(Announce::decode(&extra), Err(DisksError::Stray(1))));
        let mut many = bytes.clone();
        many[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Announce::decode(&many), Err(DisksError::TooMany(u32::MAX))));
        let mut mode = bytes.clone();
        mode[0] = 7;
        assert!(matches!(Announce::decode(&mode), Err(DisksError::UnknownMode(7))));
        // A copied disk in shared mode makes no sense.
        let mut shared = bytes;
        shared[0] = 0;
        let e = Announce::decode(&shared).unwrap_err();
        assert!(matches!(&e, DisksError::SentWhileShared(id) if id == "virtio0"), "{e:?}");
        assert_eq!(e.to_string(), "disk 'virtio0' is sent although storage is shared");
    }

    #[test]
    fn replies() {
        use reply::ReplyError;
        let mut ok = Vec::new();
        reply::send(&mut ok, &Ok::<(), String>(())).unwrap();
        assert!(reply::answer(&mut &ok[..]).is_ok());
        let mut no = Vec::new();
        reply::send(&mut no, &Err("size differs")).unwrap();
        let e = reply::answer(&mut &no[..]).unwrap_err();
        assert!(matches!(&e, ReplyError::Refused(why) if why == "size differs"), "{e:?}");
        assert_eq!(e.to_string(), "the destination refused: size differs");
        let e = reply::answer(&mut &no[..5]).unwrap_err();
        assert!(matches!(&e, ReplyError::NoAnswer(_)), "{e:?}");
        assert_eq!(e.to_string(), "the destination did not answer: the connection was closed");
        let e = reply::answer(&mut &b"GWER\xff\xff\xff\xff"[..]).unwrap_err();
        assert!(matches!(e, ReplyError::NotAReply));
        assert_eq!(e.to_string(), "the destination answered something that is not a godwit reply");
    }
}
