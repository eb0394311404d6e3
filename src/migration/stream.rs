//! godwit's migration stream: a header, then checksummed records (see docs/migration.md).
//!
//! Every length is bounded before anything is allocated, every record's CRC-32C is checked
//! before its payload is used, and a stream that ends without an END record is truncated.

use super::crc::crc32c;
use std::io::{self, Read, Write};
use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"GODWITMG";
/// Version 2 added the disk records (DISKS, BLOCK, BLOCK_ZERO, PROGRESS); version 3 adds
/// no record, but over a socket its destination answers END with the outcome of the load
/// (docs/migration.md); version 4 adds NIC states (`virtio-net`) to the machine state, which
/// an older godwit must refuse by the stream's version rather than by a device it does not
/// know; version 5 adds the source's capabilities (CAPS) and xbzrle pages (XBZRLE).
/// Version 6 adds post-copy (DISCARD, POSTCOPY) and the multifd channels' announcement
/// (MULTIFD). Versions 1 to 5 (older savevm snapshots) still load.
pub const VERSION: u32 = 6;
const OLDEST_VERSION: u32 = 1;
pub const PAGE_SIZE: usize = 4096;
/// Pages in one PAGES record (1 MiB of data).
pub const PAGES_PER_RECORD: usize = 256;
/// Largest data payload of one BLOCK record.
pub const MAX_BLOCK_DATA: usize = 1 << 20;
/// Disk data is addressed and sized in whole sectors.
pub const SECTOR: u64 = 512;
/// Largest payload accepted for any record.
const MAX_PAYLOAD: u32 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    Config = 1,
    Pages = 2,
    Zero = 3,
    Sync = 4,
    State = 5,
    End = 6,
    Disks = 7,
    Block = 8,
    BlockZero = 9,
    Progress = 10,
    Caps = 11,
    Xbzrle = 12,
    Discard = 13,
    Postcopy = 14,
    Multifd = 15,
}

impl Tag {
    /// The smallest and largest payload a record of this type may have.
    fn payload_bounds(self) -> (u32, u32) {
        match self {
            Tag::Config => (12, 12 + 4096),
            Tag::Pages => (8 + PAGE_SIZE as u32, 8 + (PAGES_PER_RECORD * PAGE_SIZE) as u32),
            Tag::Zero => (16, 16),
            Tag::Sync => (4, 4),
            Tag::State => (1, MAX_PAYLOAD),
            Tag::End => (8, 8),
            Tag::Disks => (5, 64 << 10),
            Tag::Block => (12 + SECTOR as u32, 12 + MAX_BLOCK_DATA as u32),
            Tag::BlockZero => (20, 20),
            Tag::Progress => (4, 4),
            Tag::Caps => (4, 4),
            Tag::Xbzrle => (8 + 2, 8 + crate::migration::xbzrle::record::MAX_BODY as u32),
            Tag::Discard => (16, 16),
            Tag::Postcopy => (4, 4),
            Tag::Multifd => (16, 16),
        }
    }

    fn from_u8(v: u8) -> Option<Tag> {
        Some(match v {
            1 => Tag::Config,
            2 => Tag::Pages,
            3 => Tag::Zero,
            4 => Tag::Sync,
            5 => Tag::State,
            6 => Tag::End,
            7 => Tag::Disks,
            8 => Tag::Block,
            9 => Tag::BlockZero,
            10 => Tag::Progress,
            11 => Tag::Caps,
            12 => Tag::Xbzrle,
            13 => Tag::Discard,
            14 => Tag::Postcopy,
            15 => Tag::Multifd,
            _ => return None,
        })
    }
}

#[derive(Debug, Error)]
pub enum StreamError {
    #[error("not a godwit migration stream (bad magic)")]
    BadMagic,
    /// A TLS handshake where the stream should start: the source has `tls-creds` set.
    #[error("the source started a TLS session, but tls-creds is not set here")]
    TlsHello,
    #[error("migration stream version {0} is not supported (this godwit reads versions {OLDEST_VERSION} to {VERSION})")]
    Version(u32),
    #[error("stream truncated at byte {0}")]
    Truncated(u64),
    #[error("checksum mismatch in record at byte {0}")]
    Checksum(u64),
    #[error("unknown record type {tag} at byte {at}")]
    UnknownTag { tag: u8, at: u64 },
    #[error("bad {what} record at byte {at}: {why}")]
    Bad { what: &'static str, at: u64, why: String },
    #[error("{0}")]
    Io(io::Error),
}

/// A decoded record; page data borrows the reader's buffer.
#[derive(Debug)]
pub enum Record<'a> {
    Config {
        mem_size: u64,
        vcpus: u32,
        machine: String,
    },
    Pages {
        gpa: u64,
        data: &'a [u8],
    },
    Zero {
        gpa: u64,
        pages: u64,
    },
    Sync {
        round: u32,
    },
    State(&'a [u8]),
    End {
        pages: u64,
    },
    /// The disks and how they migrate (see `migration::disks`), decoded by the receiver.
    Disks(&'a [u8]),
    /// Disk data: whole sectors of disk `disk` at byte `offset`.
    Block {
        disk: u32,
        offset: u64,
        data: &'a [u8],
    },
    /// `len` bytes of disk `disk` at `offset` read as zeroes.
    BlockZero {
        disk: u32,
        offset: u64,
        len: u64,
    },
    /// How far the disk copy is, in percent.
    Progress {
        percent: u32,
    },
    /// The source's capabilities that change the stream (`xbzrle::Caps` flags).
    Caps {
        flags: u32,
    },
    /// xbzrle entries for pages from `gpa` on (see `xbzrle::record`).
    Xbzrle {
        gpa: u64,
        body: &'a [u8],
    },
    /// Post-copy: `pages` pages from `gpa` are stale at the destination (dirtied since
    /// they were sent) and must be dropped before its guest runs.
    Discard {
        gpa: u64,
        pages: u64,
    },
    /// Post-copy: the destination runs the guest now; the pages it still lacks follow
    /// (and it asks for them on the way back).
    Postcopy,
    /// The multifd channels: count, compression, session (see `multifd::decode_record`).
    Multifd(&'a [u8]),
}

pub struct Writer<W: Write> {
    out: W,
    bytes: u64,
    scratch: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(16);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        out.write_all(&h)?;
        Ok(Writer {
            out,
            bytes: 16,
            scratch: Vec::new(),
        })
    }

    /// A stream continued on a new connection (a resumed post-copy): a header, then the
    /// byte count goes on from `before`.
    pub fn resumed(out: W, before: u64) -> io::Result<Self> {
        let mut w = Writer::new(out)?;
        w.bytes += before;
        Ok(w)
    }

    /// Bytes written so far, header included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn record(&mut self, tag: Tag, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut head = [0u8; 8];
        head[0] = tag as u8;
        head[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        let mut crc = crc32c(0, &head);
        for p in parts {
            crc = crc32c(crc, p);
        }
        self.out.write_all(&head)?;
        for p in parts {
            self.out.write_all(p)?;
        }
        self.out.write_all(&crc.to_le_bytes())?;
        self.bytes += 12 + len as u64;
        Ok(())
    }

    pub fn config(&mut self, mem_size: u64, vcpus: u32, machine: &str) -> io::Result<()> {
        self.scratch.clear();
        self.scratch.extend_from_slice(&mem_size.to_le_bytes());
        self.scratch.extend_from_slice(&vcpus.to_le_bytes());
        self.scratch.extend_from_slice(machine.as_bytes());
        let s = std::mem::take(&mut self.scratch);
        let r = self.record(Tag::Config, &[&s]);
        self.scratch = s;
        r
    }

    /// Whole pages starting at `gpa` (at most PAGES_PER_RECORD).
    pub fn pages(&mut self, gpa: u64, data: &[u8]) -> io::Result<()> {
        debug_assert!(data.len() % PAGE_SIZE == 0 && data.len() <= PAGES_PER_RECORD * PAGE_SIZE);
        self.record(Tag::Pages, &[&gpa.to_le_bytes(), data])
    }

    /// `pages` zero pages from `gpa`: sent as a range, no data.
    pub fn zero(&mut self, gpa: u64, pages: u64) -> io::Result<()> {
        self.record(Tag::Zero, &[&gpa.to_le_bytes(), &pages.to_le_bytes()])
    }

    pub fn sync(&mut self, round: u32) -> io::Result<()> {
        self.record(Tag::Sync, &[&round.to_le_bytes()])
    }

    pub fn state(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.record(Tag::State, &[bytes])
    }

    pub fn end(&mut self, pages: u64) -> io::Result<()> {
        self.record(Tag::End, &[&pages.to_le_bytes()])?;
        self.out.flush()
    }

    pub fn disks(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.record(Tag::Disks, &[bytes])
    }

    /// Whole sectors (at most MAX_BLOCK_DATA bytes) of disk `disk` at `offset`.
    pub fn block(&mut self, disk: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        debug_assert!(data.len() as u64 % SECTOR == 0 && !data.is_empty() && data.len() <= MAX_BLOCK_DATA);
        self.record(Tag::Block, &[&disk.to_le_bytes(), &offset.to_le_bytes(), data])
    }

    pub fn block_zero(&mut self, disk: u32, offset: u64, len: u64) -> io::Result<()> {
        self.record(Tag::BlockZero, &[&disk.to_le_bytes(), &offset.to_le_bytes(), &len.to_le_bytes()])
    }

    pub fn progress(&mut self, percent: u32) -> io::Result<()> {
        self.record(Tag::Progress, &[&percent.to_le_bytes()])
    }

    pub fn caps(&mut self, flags: u32) -> io::Result<()> {
        self.record(Tag::Caps, &[&flags.to_le_bytes()])
    }

    /// An xbzrle record: entries (at most `xbzrle::record::MAX_BODY` bytes) from `gpa`.
    pub fn xbzrle(&mut self, gpa: u64, body: &[u8]) -> io::Result<()> {
        self.record(Tag::Xbzrle, &[&gpa.to_le_bytes(), body])
    }

    pub fn discard(&mut self, gpa: u64, pages: u64) -> io::Result<()> {
        self.record(Tag::Discard, &[&gpa.to_le_bytes(), &pages.to_le_bytes()])
    }

    /// The switch to post-copy (payload: reserved flags, 0).
    pub fn postcopy(&mut self) -> io::Result<()> {
        self.record(Tag::Postcopy, &[&0u32.to_le_bytes()])
    }

    /// The multifd channels' announcement (`multifd::encode_record`).
    pub fn multifd(&mut self, payload: &[u8; 16]) -> io::Result<()> {
        self.record(Tag::Multifd, &[payload])
    }

    /// Pushes out what is buffered (before waiting for the destination's answer).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

pub struct Reader<R: Read> {
    input: R,
    pos: u64,
    buf: Vec<u8>,
    ended: bool,
    version: u32,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

impl<R: Read> Reader<R> {
    /// Reads and checks the stream header.
    pub fn new(mut input: R) -> Result<Self, StreamError> {
        let mut h = [0u8; 16];
        read_exact(&mut input, &mut h, 0)?;
        if &h[..8] != MAGIC {
            // A TLS record of type handshake (22), protocol 3.x.
            if h[0] == 22 && h[1] == 3 {
                return Err(StreamError::TlsHello);
            }
            return Err(StreamError::BadMagic);
        }
        let v = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        if !(OLDEST_VERSION..=VERSION).contains(&v) {
            return Err(StreamError::Version(v));
        }
        if h[12..16] != [0, 0, 0, 0] {
            return Err(StreamError::Bad {
                what: "header",
                at: 12,
                why: "reserved flags are set".into(),
            });
        }
        Ok(Reader {
            input,
            pos: 16,
            buf: Vec::new(),
            ended: false,
            version: v,
        })
    }

    /// Hands over the buffer holding the last record read (its payload, then its 4-byte
    /// CRC) and reads on into `spare`, so a large payload can move on without a copy.
    pub fn take_buffer(&mut self, spare: Vec<u8>) -> Vec<u8> {
        std::mem::replace(&mut self.buf, spare)
    }

    /// The version the stream's header gives.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The next record. After END, always an error: nothing may follow it.
    pub fn next(&mut self) -> Result<Record<'_>, StreamError> {
        let at = self.pos;
        if self.ended {
            return Err(StreamError::Bad {
                what: "END",
                at,
                why: "records after the end of the stream".into(),
            });
        }
        let mut head = [0u8; 8];
        read_exact(&mut self.input, &mut head, at)?;
        let tag = Tag::from_u8(head[0])
            .filter(|t| self.version >= 2 || (*t as u8) <= Tag::End as u8)
            .filter(|t| self.version >= 5 || (*t as u8) <= Tag::Progress as u8)
            .filter(|t| self.version >= 6 || (*t as u8) <= Tag::Xbzrle as u8)
            .ok_or(StreamError::UnknownTag { tag: head[0], at })?;
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let (min, max) = tag.payload_bounds();
        if len < min || len > max || head[1..4] != [0, 0, 0] {
            return Err(StreamError::Bad {
                what: tag_name(tag),
                at,
                why: format!("length {len}"),
            });
        }
        self.buf.resize(len as usize + 4, 0);
        read_exact(&mut self.input, &mut self.buf, at + 8)?;
        let (payload, crc) = self.buf.split_at(len as usize);
        let want = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32c(crc32c(0, &head), payload) != want {
            return Err(StreamError::Checksum(at));
        }
        self.pos += 12 + u64::from(len);
        let p = &self.buf[..len as usize];
        Ok(match tag {
            Tag::Config => Record::Config {
                mem_size: u64_at(p, 0),
                vcpus: u32::from_le_bytes(p[8..12].try_into().expect("4 bytes")),
                machine: String::from_utf8_lossy(&p[12..]).into_owned(),
            },
            Tag::Pages => {
                if (p.len() - 8) % PAGE_SIZE != 0 {
                    return Err(StreamError::Bad {
                        what: "PAGES",
                        at,
                        why: format!("{} bytes is not whole pages", p.len() - 8),
                    });
                }
                Record::Pages {
                    gpa: u64_at(p, 0),
                    data: &p[8..],
                }
            }
            Tag::Zero => Record::Zero {
                gpa: u64_at(p, 0),
                pages: u64_at(p, 8),
            },
            Tag::Sync => Record::Sync {
                round: u32::from_le_bytes(p[..4].try_into().expect("4 bytes")),
            },
            Tag::State => Record::State(p),
            Tag::End => {
                self.ended = true;
                Record::End { pages: u64_at(p, 0) }
            }
            Tag::Disks => Record::Disks(p),
            Tag::Block => {
                if (p.len() - 12) as u64 % SECTOR != 0 {
                    return Err(StreamError::Bad {
                        what: "BLOCK",
                        at,
                        why: format!("{} bytes is not whole sectors", p.len() - 12),
                    });
                }
                Record::Block {
                    disk: u32::from_le_bytes(p[..4].try_into().expect("4 bytes")),
                    offset: u64_at(p, 4),
                    data: &p[12..],
                }
            }
            Tag::BlockZero => Record::BlockZero {
                disk: u32::from_le_bytes(p[..4].try_into().expect("4 bytes")),
                offset: u64_at(p, 4),
                len: u64_at(p, 12),
            },
            Tag::Progress => {
                let percent = u32::from_le_bytes(p[..4].try_into().expect("4 bytes"));
                if percent > 100 {
                    return Err(StreamError::Bad {
                        what: "PROGRESS",
                        at,
                        why: format!("{percent} %"),
                    });
                }
                Record::Progress { percent }
            }
            Tag::Caps => Record::Caps {
                flags: u32::from_le_bytes(p[..4].try_into().expect("4 bytes")),
            },
            Tag::Xbzrle => Record::Xbzrle {
                gpa: u64_at(p, 0),
                body: &p[8..],
            },
            Tag::Discard => Record::Discard {
                gpa: u64_at(p, 0),
                pages: u64_at(p, 8),
            },
            Tag::Postcopy if p[..4] == [0, 0, 0, 0] => Record::Postcopy,
            Tag::Postcopy => {
                return Err(StreamError::Bad {
                    what: "POSTCOPY",
                    at,
                    why: "reserved flags are set".into(),
                });
            }
            Tag::Multifd => Record::Multifd(p),
        })
    }
}

fn tag_name(t: Tag) -> &'static str {
    match t {
        Tag::Config => "CONFIG",
        Tag::Pages => "PAGES",
        Tag::Zero => "ZERO",
        Tag::Sync => "SYNC",
        Tag::State => "STATE",
        Tag::End => "END",
        Tag::Disks => "DISKS",
        Tag::Block => "BLOCK",
        Tag::BlockZero => "BLOCK_ZERO",
        Tag::Progress => "PROGRESS",
        Tag::Caps => "CAPS",
        Tag::Xbzrle => "XBZRLE",
        Tag::Discard => "DISCARD",
        Tag::Postcopy => "POSTCOPY",
        Tag::Multifd => "MULTIFD",
    }
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], at: u64) -> Result<(), StreamError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(StreamError::Truncated(at)),
        Err(e) => Err(StreamError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.config(1 << 30, 2, "pc").unwrap();
        w.caps(1).unwrap();
        w.disks(b"\x01\x00\x00\x00\x00").unwrap();
        w.block(0, 4096, &[9u8; 1024]).unwrap();
        w.block_zero(0, 1 << 20, 1 << 20).unwrap();
        w.progress(100).unwrap();
        w.zero(0, 10).unwrap();
        w.pages(0x1000, &vec![7u8; 2 * PAGE_SIZE]).unwrap();
        w.sync(1).unwrap();
        w.xbzrle(0x2000, &[0, 5, 0, 1, 9]).unwrap();
        w.state(b"machine state").unwrap();
        w.end(12).unwrap();
        let n = w.bytes();
        let v = w.out;
        assert_eq!(n as usize, v.len());
        v
    }

    fn read_all(bytes: &[u8]) -> Result<usize, StreamError> {
        let mut r = Reader::new(bytes)?;
        let mut n = 0;
        loop {
            let rec = r.next()?;
            n += 1;
            if let Record::End { .. } = rec {
                return Ok(n);
            }
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let mut r = Reader::new(&s[..]).unwrap();
        assert!(matches!(r.next().unwrap(), Record::Config { mem_size: 0x4000_0000, vcpus: 2, ref machine } if machine == "pc"));
        assert!(matches!(r.next().unwrap(), Record::Caps { flags: 1 }));
        assert!(matches!(r.next().unwrap(), Record::Disks(b"\x01\x00\x00\x00\x00")));
        assert!(matches!(r.next().unwrap(), Record::Block { disk: 0, offset: 4096, data } if data == [9u8; 1024]));
        assert!(matches!(
            r.next().unwrap(),
            Record::BlockZero {
                disk: 0,
                offset: 0x10_0000,
                len: 0x10_0000
            }
        ));
        assert!(matches!(r.next().unwrap(), Record::Progress { percent: 100 }));
        assert!(matches!(r.next().unwrap(), Record::Zero { gpa: 0, pages: 10 }));
        match r.next().unwrap() {
            Record::Pages { gpa, data } => assert_eq!((gpa, data.len(), data[5]), (0x1000, 2 * PAGE_SIZE, 7)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.next().unwrap(), Record::Sync { round: 1 }));
        assert!(matches!(
            r.next().unwrap(),
            Record::Xbzrle {
                gpa: 0x2000,
                body: [0, 5, 0, 1, 9]
            }
        ));
        assert!(matches!(r.next().unwrap(), Record::State(b"machine state")));
        assert!(matches!(r.next().unwrap(), Record::End { pages: 12 }));
        assert!(r.next().is_err(), "nothing may follow END");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let s = sample();
        for cut in 0..s.len() {
            assert!(read_all(&s[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(read_all(&s).unwrap(), 12);
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let s = sample();
        for i in 0..s.len() {
            let mut b = s.clone();
            b[i] ^= 0x20;
            assert!(read_all(&b).is_err(), "flip at {i} went unnoticed");
        }
    }

    /// Cheap, deterministic fuzzing that runs with every test: flips, insertions, deletions
    /// and cuts anywhere in a valid stream must give records or an error, never a panic.
    #[test]
    fn random_mutations_never_panic() {
        let base = sample();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..1 + rnd(4) {
                let at = rnd(b.len());
                match rnd(4) {
                    0 => b[at] ^= 1 << rnd(8),
                    1 => b.insert(at, rnd(256) as u8),
                    2 => {
                        b.remove(at);
                    }
                    _ => b.truncate(at),
                }
                if b.is_empty() {
                    break;
                }
            }
            let _ = read_all(&b);
        }
    }

    #[test]
    fn huge_lengths_and_bad_headers() {
        let mut s = sample();
        s[16 + 4..16 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_all(&s), Err(StreamError::Bad { .. })));
        let mut v = sample();
        v[8] = 9;
        assert!(matches!(read_all(&v), Err(StreamError::Version(9))));
        // Version 4 streams have no CAPS or XBZRLE records.
        v[8] = 4;
        assert!(matches!(read_all(&v), Err(StreamError::UnknownTag { tag: 11, .. })));
        // Version 1 streams have no disk records (nor CAPS).
        v[8] = 1;
        assert!(matches!(read_all(&v), Err(StreamError::UnknownTag { tag: 11, .. })));
        let mut w = Writer::new(Vec::new()).unwrap();
        w.config(1 << 20, 1, "pc").unwrap();
        w.end(0).unwrap();
        let mut v1 = w.out;
        v1[8] = 1;
        assert_eq!(read_all(&v1).unwrap(), 2);
        // A BLOCK of a partial sector, a PROGRESS above 100.
        let mut w = Writer::new(Vec::new()).unwrap();
        w.record(Tag::Block, &[&[0u8; 12], &[1u8; 600]]).unwrap();
        assert!(matches!(read_all(&w.out), Err(StreamError::Bad { what: "BLOCK", .. })));
        let mut w = Writer::new(Vec::new()).unwrap();
        w.progress(101).unwrap();
        assert!(matches!(read_all(&w.out), Err(StreamError::Bad { what: "PROGRESS", .. })));
        assert!(matches!(read_all(b"QEVM\0\0\0\x03xxxxxxxx"), Err(StreamError::BadMagic)));
    }
}
