//! The DISKS record: the source's disks and how each one migrates, and the destination's
//! checks of it. Layout (all little-endian, see docs/migration.md):
//!
//! `u8 mode, u32 count`, then per disk `u16 id length, id, u64 size, u8 flags` (bit 0: its
//! contents are sent, bit 1: a base follows) and, with a base, `u64 base size, u32 CRC-32C
//! of the base file's first 64 KiB`.

use super::crc::crc32c;
use crate::vm::Vm;
use crate::vm::disks::Disk;
use devices::bus::lock;
use std::io::Read;

/// Bytes of the base file that identify it (its header, for a qcow2 base).
const BASE_ID_BYTES: usize = 64 << 10;
/// More disks than any PCI bus 0 holds.
const MAX_DISKS: u32 = 256;

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
    pub fn decode(p: &[u8]) -> Result<Announce, String> {
        let mut r = Cursor { p, at: 0 };
        let mode = match r.u8()? {
            0 => Mode::Shared,
            1 => Mode::Full,
            2 => Mode::Incremental,
            m => return Err(format!("unknown disk migration mode {m}")),
        };
        let count = r.u32()?;
        if count > MAX_DISKS {
            return Err(format!("{count} disks announced"));
        }
        let mut disks = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let n = r.u16()? as usize;
            let id = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| "a disk name is not UTF-8".to_string())?;
            let size = r.u64()?;
            let flags = r.u8()?;
            if flags & !3 != 0 {
                return Err(format!("unknown disk flags {flags:#x}"));
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
                return Err(format!("disk '{id}' is sent although storage is shared"));
            }
            disks.push(DiskDesc {
                id,
                size,
                copied: flags & 1 != 0,
                base,
            });
        }
        if r.at != p.len() {
            return Err(format!("{} stray bytes after the disk list", p.len() - r.at));
        }
        Ok(Announce { mode, disks })
    }
}

struct Cursor<'a> {
    p: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.p.len())
            .ok_or("the disk list is cut short")?;
        let s = &self.p[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

/// The base (first backing file) of a disk's image: its virtual size and the checksum of
/// the first 64 KiB of its file.
fn base_of(disk: &Disk) -> Result<Option<Base>, String> {
    let mut b = lock(&disk.backend);
    let Some(base) = b.as_qcow2().and_then(|q| q.backing()) else {
        return Ok(None);
    };
    let (path, size) = (base.path().to_path_buf(), base.virtual_size());
    let mut head = Vec::with_capacity(BASE_ID_BYTES);
    std::fs::File::open(&path)
        .and_then(|f| f.take(BASE_ID_BYTES as u64).read_to_end(&mut head))
        .map_err(|e| format!("cannot read the base image '{}': {}", path.display(), crate::errtext::io(&e)))?;
    Ok(Some(Base {
        size,
        crc: crc32c(0, &head),
    }))
}

/// What the source announces: every disk, the writable ones copied unless storage is shared.
pub fn describe(vm: &Vm, mode: Mode) -> Result<Announce, String> {
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
pub fn accept(vm: &Vm, a: &Announce) -> Result<(), String> {
    let mine = vm.disks();
    if a.disks.len() != mine.len() {
        return Err(format!("the source has {} disks, this VM {}", a.disks.len(), mine.len()));
    }
    for (theirs, d) in a.disks.iter().zip(mine) {
        if theirs.id != d.cfg.id {
            return Err(format!(
                "the source's disk '{}' is not here (this VM has '{}')",
                theirs.id, d.cfg.id
            ));
        }
        if theirs.size != d.size {
            return Err(format!(
                "disk '{}' has {} bytes on the source, {} here",
                theirs.id, theirs.size, d.size
            ));
        }
        if theirs.copied && d.cfg.read_only {
            return Err(format!("disk '{}' is read-only here and cannot receive data", theirs.id));
        }
    }
    for (theirs, d) in a.disks.iter().zip(mine).filter(|(t, _)| t.copied) {
        d.activate().map_err(|e| e.to_string())?;
        if a.mode != Mode::Incremental {
            continue;
        }
        let here = base_of(d)?;
        if here != theirs.base {
            let show = |b: Option<Base>| {
                b.map_or("no base".to_string(), |b| {
                    format!("a base of {} bytes (checksum {:08x})", b.size, b.crc)
                })
            };
            return Err(format!(
                "disk '{}': the source's image has {}, this one {}: incremental migration needs the same base on both sides",
                theirs.id,
                show(theirs.base),
                show(here)
            ));
        }
        let extents = lock(&d.backend).block_status(0, d.size).map_err(|e| e.to_string())?;
        if extents.iter().any(|e| e.allocated_in_top()) {
            return Err(format!(
                "disk '{}' already holds data of its own here: incremental migration needs a fresh overlay",
                theirs.id
            ));
        }
    }
    Ok(())
}

/// The destination's answers on the connection's way back, to a DISKS record of a block
/// migration and (stream version 3) to END: `GWOK` + `u32 0`, or `GWER` + `u32 length` +
/// the reason (UTF-8, at most 4 KiB).
pub mod reply {
    use std::io::{Read, Write};

    const MAX_REASON: usize = 4096;

    pub fn send(w: &mut dyn Write, result: &Result<(), String>) -> std::io::Result<()> {
        let mut v = Vec::new();
        match result {
            Ok(()) => v.extend_from_slice(b"GWOK\0\0\0\0"),
            Err(e) => {
                let e = &e.as_bytes()[..e.len().min(MAX_REASON)];
                v.extend_from_slice(b"GWER");
                v.extend_from_slice(&(e.len() as u32).to_le_bytes());
                v.extend_from_slice(e);
            }
        }
        w.write_all(&v)?;
        w.flush()
    }

    /// Reads the answer to DISKS; `Err` is the destination's reason, or why no answer came.
    pub fn read(r: &mut dyn Read) -> Result<(), String> {
        answer(r)
            .map_err(|e| no_answer(&e))?
            .map_err(|m| format!("the destination refused: {m}"))
    }

    /// Why `answer` found no answer, in words.
    pub fn no_answer(e: &std::io::Error) -> String {
        match e.kind() {
            std::io::ErrorKind::InvalidData => e.to_string(),
            std::io::ErrorKind::UnexpectedEof => "the destination did not answer: the connection was closed".into(),
            _ => format!("the destination did not answer: {}", crate::errtext::io(e)),
        }
    }

    /// Reads one answer: `Ok(Ok)` for GWOK, `Ok(Err(reason))` for GWER, `Err` when no
    /// answer came (the read's error, or `InvalidData` for bytes that are not an answer).
    pub fn answer(r: &mut dyn Read) -> std::io::Result<Result<(), String>> {
        let mut h = [0u8; 8];
        r.read_exact(&mut h)?;
        let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        match &h[..4] {
            b"GWOK" if len == 0 => Ok(Ok(())),
            b"GWER" if len <= MAX_REASON => {
                let mut m = vec![0u8; len];
                r.read_exact(&mut m)?;
                Ok(Err(String::from_utf8_lossy(&m).into_owned()))
            }
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the destination answered something that is not a godwit reply",
            )),
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
        assert!(Announce::decode(&extra).is_err());
        let mut many = bytes.clone();
        many[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Announce::decode(&many).unwrap_err().contains("disks announced"));
        let mut mode = bytes.clone();
        mode[0] = 7;
        assert!(Announce::decode(&mode).is_err());
        // A copied disk in shared mode makes no sense.
        let mut shared = bytes;
        shared[0] = 0;
        assert!(Announce::decode(&shared).is_err());
    }

    #[test]
    fn replies() {
        let mut ok = Vec::new();
        reply::send(&mut ok, &Ok(())).unwrap();
        assert_eq!(reply::read(&mut &ok[..]), Ok(()));
        let mut no = Vec::new();
        reply::send(&mut no, &Err("size differs".into())).unwrap();
        assert_eq!(reply::read(&mut &no[..]), Err("the destination refused: size differs".into()));
        assert!(reply::read(&mut &no[..5]).unwrap_err().contains("did not answer"));
        assert!(
            reply::read(&mut &b"GWER\xff\xff\xff\xff"[..])
                .unwrap_err()
                .contains("not a godwit reply")
        );
    }
}
