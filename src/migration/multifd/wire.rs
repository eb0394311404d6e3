//! The multifd channels' wire format, version 1 (docs/migration.md, "multifd"): a
//! handshake tying the connection to the main stream, then packets of pages, sync points
//! and an end, each checked (lengths bounded, CRC-32C) before anything is used.

use super::compress::Compression;
use crate::migration::crc::crc32c;
use std::io::{self, Read, Write};
use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"GODWITMF";
pub const VERSION: u32 = 1;
/// Pages in one packet at most (1 MiB of page data).
pub const MAX_PAGES: usize = 256;
const PAGE: usize = 4096;
/// A packet's header: kind, compression, reserved, count, payload length, CRC, argument.
pub const HEADER: usize = 24;
/// Bit 0 of a page entry: the page is all zero (no data for it in the payload).
pub const ZERO_BIT: u64 = 1;

#[derive(Debug, Error)]
pub enum WireError {
    #[error("not a godwit multifd channel (bad magic)")]
    BadMagic,
    #[error("multifd channel version {0} is not supported (this godwit speaks version {VERSION})")]
    Version(u32),
    #[error("multifd channel {id} is not one of the {channels} channels announced")]
    ChannelId { id: u32, channels: u32 },
    #[error("multifd channel {0} belongs to another migration")]
    Session(u32),
    #[error("bad multifd packet on channel {channel}: {why}")]
    Bad { channel: u32, why: String },
    #[error("checksum mismatch in multifd packet on channel {0}")]
    Checksum(u32),
    #[error("multifd channel {channel}: {}", crate::errtext::io(.err))]
    Io {
        channel: u32,
        #[source]
        err: io::Error,
    },
}

/// The first bytes of a channel: magic, version, channel id, the migration's session id.
pub fn write_handshake(w: &mut dyn Write, id: u32, session: u64) -> io::Result<()> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&session.to_le_bytes());
    w.write_all(&h)
}

/// Reads a handshake; returns the channel id, checked against `channels` and `session`.
pub fn read_handshake(r: &mut dyn Read, channels: u32, session: u64) -> Result<u32, WireError> {
    let mut h = [0u8; 24];
    r.read_exact(&mut h).map_err(|err| WireError::Io { channel: u32::MAX, err })?;
    if &h[..8] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let v = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    if v != VERSION {
        return Err(WireError::Version(v));
    }
    let id = u32::from_le_bytes(h[12..16].try_into().unwrap_or_default());
    if id >= channels {
        return Err(WireError::ChannelId { id, channels });
    }
    if u64::from_le_bytes(h[16..24].try_into().unwrap_or_default()) != session {
        return Err(WireError::Session(id));
    }
    Ok(id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Pages = 1,
    Sync = 2,
    End = 3,
}

/// A decoded packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub compression: Compression,
    pub count: u32,
    pub len: u32,
    pub crc: u32,
    /// SYNC: the sync point's number; END: pages the channel carried; PAGES: 0.
    pub arg: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0] = self.kind as u8;
        h[1] = self.compression as u8;
        h[4..8].copy_from_slice(&self.count.to_le_bytes());
        h[8..12].copy_from_slice(&self.len.to_le_bytes());
        h[12..16].copy_from_slice(&self.crc.to_le_bytes());
        h[16..24].copy_from_slice(&self.arg.to_le_bytes());
        h
    }

    /// Decodes and bounds a header: counts and lengths are checked before any allocation.
    pub fn decode(h: &[u8; HEADER], channel: u32) -> Result<Header, WireError> {
        let bad = |why: String| WireError::Bad { channel, why };
        let kind = match h[0] {
            1 => Kind::Pages,
            2 => Kind::Sync,
            3 => Kind::End,
            k => return Err(bad(format!("unknown kind {k}"))),
        };
        let compression = Compression::from_u8(h[1]).ok_or_else(|| bad(format!("unknown compression {}", h[1])))?;
        if h[2..4] != [0, 0] {
            return Err(bad("reserved bytes are set".into()));
        }
        let word = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let (count, len) = (word(4), word(8));
        let max_len = MAX_PAGES * PAGE + MAX_PAGES * PAGE / 8 + 1024;
        let pages_ok = kind == Kind::Pages && (1..=MAX_PAGES as u32).contains(&count) && len as usize <= max_len;
        if !(pages_ok || (kind != Kind::Pages && count == 0 && len == 0)) {
            return Err(bad(format!("{kind:?} with {count} pages and {len} bytes")));
        }
        let mut arg = [0u8; 8];
        arg.copy_from_slice(&h[16..24]);
        Ok(Header {
            kind,
            compression,
            count,
            len,
            crc: word(12),
            arg: u64::from_le_bytes(arg),
        })
    }
}

/// The CRC-32C of a packet: its header (CRC field zero), then its page entries and payload.
pub fn packet_crc(h: &Header, entries: &[u8], payload: &[u8]) -> u32 {
    let mut head = Header { crc: 0, ..*h }.encode();
    head[12..16].fill(0);
    crc32c(crc32c(crc32c(0, &head), entries), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_round_trips_and_is_checked() {
        let mut v = Vec::new();
        write_handshake(&mut v, 2, 77).unwrap();
        assert_eq!(read_handshake(&mut v.as_slice(), 4, 77).unwrap(), 2);
        assert!(matches!(
            read_handshake(&mut v.as_slice(), 2, 77),
            Err(WireError::ChannelId { id: 2, channels: 2 })
        ));
        assert!(matches!(read_handshake(&mut v.as_slice(), 4, 78), Err(WireError::Session(2))));
        v[0] = b'X';
        assert!(matches!(read_handshake(&mut v.as_slice(), 4, 77), Err(WireError::BadMagic)));
        let mut w = Vec::new();
        write_handshake(&mut w, 0, 1).unwrap();
        w[8] = 9;
        assert_eq!(
            read_handshake(&mut w.as_slice(), 4, 1).unwrap_err().to_string(),
            "multifd channel version 9 is not supported (this godwit speaks version 1)"
        );
    }

    #[test]
    fn headers_are_bounded() {
        let h = Header {
            kind: Kind::Pages,
            compression: Compression::Zstd,
            count: 3,
            len: 100,
            crc: 5,
            arg: 0,
        };
        assert_eq!(Header::decode(&h.encode(), 0).unwrap(), h);
        for (count, len) in [(0, 0), (257, 10), (1, 64 << 20)] {
            let b = Header { count, len, ..h }.encode();
            assert!(
                matches!(Header::decode(&b, 1), Err(WireError::Bad { channel: 1, .. })),
                "{count} {len}"
            );
        }
        let sync = Header {
            kind: Kind::Sync,
            count: 1,
            len: 0,
            ..h
        };
        assert!(Header::decode(&sync.encode(), 0).is_err());
        let mut b = h.encode();
        b[0] = 9;
        assert!(Header::decode(&b, 0).is_err());
        b = h.encode();
        b[1] = 7;
        assert!(Header::decode(&b, 0).is_err());
    }
}
