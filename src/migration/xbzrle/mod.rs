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
    /// `postcopy-ram`: the source may switch to post-copy.
    pub postcopy: bool,
    /// Pages travel on the multifd channels (`crate::migration::multifd`).
    pub multifd: bool,
}

impl Caps {
    const XBZRLE: u32 = 1;
    const POSTCOPY: u32 = 2;
    const MULTIFD: u32 = 4;

    pub fn to_flags(self) -> u32 {
        let bit = |on: bool, flag: u32| if on { flag } else { 0 };
        bit(self.xbzrle, Self::XBZRLE) | bit(self.postcopy, Self::POSTCOPY) | bit(self.multifd, Self::MULTIFD)
    }

    /// `None` for flags this godwit does not know.
    pub fn from_flags(f: u32) -> Option<Caps> {
        (f & !(Self::XBZRLE | Self::POSTCOPY | Self::MULTIFD) == 0).then_some(Caps {
            xbzrle: f & Self::XBZRLE != 0,
            postcopy: f & Self::POSTCOPY != 0,
            multifd: f & Self::MULTIFD != 0,
        })
    }
}
