//! multifd: RAM pages travel over several extra connections at once, each with a thread
//! of its own at both ends, optionally compressed (zlib or zstd) per packet. The main
//! stream keeps everything else (configuration, sync rounds, disks, the machine state,
//! the end) and announces the channels in a MULTIFD record; docs/migration.md describes
//! the channels' wire format.

#[cfg(test)]
mod channel_tests;
pub mod compress;
pub mod recv;
pub mod send;
pub mod wire;

pub use compress::Compression;

use crate::migration::uri::{self, STALL_TIMEOUT};
use std::io::Read;
use std::time::Instant;

/// How the channels work, from the source's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub channels: u8,
    pub compression: Compression,
    pub zlib_level: u8,
    pub zstd_level: u8,
}

/// The MULTIFD record's payload: `u32` channels, `u32` compression, `u64` session id.
pub fn encode_record(s: &Settings, session: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&u32::from(s.channels).to_le_bytes());
    b[4..8].copy_from_slice(&(s.compression as u32).to_le_bytes());
    b[8..].copy_from_slice(&session.to_le_bytes());
    b
}

/// Decodes a MULTIFD record: (channels, compression, session), checked.
pub fn decode_record(p: &[u8]) -> Result<(u32, Compression, u64), String> {
    let word = |o: usize| p.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let (Some(n), Some(c), Some(s)) = (
        word(0),
        word(4),
        p.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes),
    ) else {
        return Err("a MULTIFD record of the wrong size".into());
    };
    if !(1..=255).contains(&n) {
        return Err(format!("{n} multifd channels (1 to 255 may be used)"));
    }
    let comp = u8::try_from(c)
        .ok()
        .and_then(Compression::from_u8)
        .ok_or_else(|| format!("unknown multifd compression {c}"))?;
    Ok((n, comp, s))
}

/// A fresh id tying a migration's channels to its main stream.
pub fn session_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Where the destination's channels connect: the main stream's listener, and what makes
/// each connection usable (a TLS session when `tls-creds` is set).
pub struct ChannelListener<'a> {
    pub listener: &'a uri::Incoming,
    pub secure: &'a (dyn Fn(uri::Accepted) -> Result<uri::Accepted, String> + Sync),
}

/// Accepts the `n` channels of `session` on the destination's listener, each within the
/// stall timeout, each identified by its handshake (ids 0..n, each once).
pub fn accept_channels(cl: &ChannelListener<'_>, n: u32, session: u64) -> Result<Vec<recv::Incoming>, String> {
    let l = cl.listener;
    let fd = l.raw_fd().ok_or("multifd needs a tcp: or unix: listener")?;
    let mut slots: Vec<Option<recv::Incoming>> = (0..n).map(|_| None).collect();
    let deadline = Instant::now() + STALL_TIMEOUT;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now()).as_millis() as i32;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, left) } <= 0 {
            return Err(format!(
                "the source did not open its {n} multifd channels within {} s",
                STALL_TIMEOUT.as_secs()
            ));
        }
        let a = l.accept_one()?;
        let Some(sock) = a.socket.as_ref().and_then(|s| s.try_clone().ok()) else {
            return Err("a multifd channel without a socket".into());
        };
        let mut a = (cl.secure)(a)?;
        uri::set_read_timeout(&sock, Some(STALL_TIMEOUT));
        let id = wire::read_handshake(&mut a.input as &mut dyn Read, n, session).map_err(|e| e.to_string())?;
        uri::set_read_timeout(&sock, None);
        let slot = &mut slots[id as usize];
        if slot.is_some() {
            return Err(format!("multifd channel {id} connected twice"));
        }
        *slot = Some(recv::Incoming {
            id,
            input: a.input,
            socket: Some(sock),
        });
    }
    Ok(slots.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_checked() {
        let s = Settings {
            channels: 4,
            compression: Compression::Zlib,
            zlib_level: 1,
            zstd_level: 1,
        };
        let b = encode_record(&s, 99);
        assert_eq!(decode_record(&b).unwrap(), (4, Compression::Zlib, 99));
        let mut z = b;
        z[..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode_record(&z).is_err());
        let mut c = b;
        c[4] = 3;
        assert_eq!(decode_record(&c).unwrap_err(), "unknown multifd compression 3");
        assert!(decode_record(&b[..8]).is_err());
    }
}
