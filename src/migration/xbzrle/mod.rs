//! xbzrle: pages re-sent during a migration go as the delta against the copy the
//! destination already has, kept in a page cache on the source (docs/migration.md).
//! The destination needs no cache: it applies the delta to the page in its RAM.

pub mod cache;
pub mod codec;
pub mod record;
pub mod send;

pub use send::{Counters, Sent, XbzrleSender};

/// The capabilities a stream's source had, as its CAPS record carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub xbzrle: bool,
    /// Pages travel on the multifd channels (`crate::migration::multifd`).
    pub multifd: bool,
}

impl Caps {
    const XBZRLE: u32 = 1;
    const MULTIFD: u32 = 2;

    pub fn to_flags(self) -> u32 {
        (if self.xbzrle { Self::XBZRLE } else { 0 }) | if self.multifd { Self::MULTIFD } else { 0 }
    }

    /// `None` for flags this godwit does not know.
    pub fn from_flags(f: u32) -> Option<Caps> {
        (f & !(Self::XBZRLE | Self::MULTIFD) == 0).then_some(Caps {
            xbzrle: f & Self::XBZRLE != 0,
            multifd: f & Self::MULTIFD != 0,
        })
    }
}
