//! The XBZRLE record's body: entries for pages in ascending order, each a ULEB128 count
//! of pages skipped since the previous entry's page (since the record's base address for
//! the first), then a ULEB128 kind: 0 a zero page, 1 a whole page (4096 bytes follow),
//! `2 + n` a delta of `n` bytes (see [`super::codec`]) that follows.

use super::codec::{self, CodecError};
use crate::migration::stream::PAGE_SIZE;
use thiserror::Error;

/// The most delta bytes a page may take; beyond this it is sent whole (an overflow).
pub const MAX_DELTA: usize = PAGE_SIZE - 64;
/// The body a sender fills before it writes the record.
pub const BODY_TARGET: usize = 1 << 20;
/// The largest body a reader takes.
pub const MAX_BODY: usize = BODY_TARGET;

const PAGE: u64 = PAGE_SIZE as u64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("xbzrle entry {entry}: {why}")]
    Codec { entry: u64, why: CodecError },
    #[error("xbzrle entry {0}: page address overflows")]
    Address(u64),
    #[error("xbzrle entry {entry}: kind {kind} is not a page or a delta of at most {MAX_DELTA} bytes")]
    Kind { entry: u64, kind: u64 },
    #[error("xbzrle entry {entry}: {need} bytes of page data but {left} left")]
    Short { entry: u64, need: usize, left: usize },
}

/// One page of a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    Zero,
    Whole(&'a [u8]),
    Delta(&'a [u8]),
}

/// A record being filled by the sender.
#[derive(Default)]
pub struct Batch {
    base: u64,
    /// The page after the last entry's.
    next: u64,
    pub body: Vec<u8>,
}

impl Batch {
    /// Whether an entry for `gpa` can join: the batch is empty, or `gpa` comes after its
    /// last page and the body has room for a whole page more.
    pub fn fits(&self, gpa: u64) -> bool {
        self.body.is_empty() || (gpa >= self.next && self.body.len() + PAGE_SIZE + 24 <= BODY_TARGET)
    }

    /// Appends the entry for `gpa` (the caller checked [`Batch::fits`]).
    pub fn push(&mut self, gpa: u64, e: Entry<'_>) {
        if self.body.is_empty() {
            self.base = gpa;
            self.next = gpa;
        }
        debug_assert!(gpa >= self.next, "entries in ascending order");
        codec::put_uleb(&mut self.body, gpa.saturating_sub(self.next) / PAGE);
        match e {
            Entry::Zero => codec::put_uleb(&mut self.body, 0),
            Entry::Whole(p) => {
                codec::put_uleb(&mut self.body, 1);
                self.body.extend_from_slice(p);
            }
            Entry::Delta(d) => {
                codec::put_uleb(&mut self.body, 2 + d.len() as u64);
                self.body.extend_from_slice(d);
            }
        }
        self.next = gpa + PAGE;
    }

    /// The base address and body to write, leaving the batch empty.
    pub fn take(&mut self) -> Option<(u64, Vec<u8>)> {
        (!self.body.is_empty()).then(|| (self.base, std::mem::take(&mut self.body)))
    }

    /// Gives the body's allocation back after the record is written.
    pub fn recycle(&mut self, mut body: Vec<u8>) {
        body.clear();
        self.body = body;
    }
}

/// Reads a record's entries one by one, every length checked against what is left.
pub struct Entries<'a> {
    body: &'a [u8],
    pos: usize,
    next: u64,
    n: u64,
}

impl<'a> Entries<'a> {
    pub fn new(base: u64, body: &'a [u8]) -> Self {
        Entries {
            body,
            pos: 0,
            next: base,
            n: 0,
        }
    }

    /// The next page address and entry, or `None` at the end of the body.
    pub fn next_entry(&mut self) -> Result<Option<(u64, Entry<'a>)>, RecordError> {
        if self.pos == self.body.len() {
            return Ok(None);
        }
        let entry = self.n;
        let codec = |why| RecordError::Codec { entry, why };
        let skip = codec::get_uleb(self.body, &mut self.pos).map_err(codec)?;
        let kind = codec::get_uleb(self.body, &mut self.pos).map_err(codec)?;
        let gpa = skip
            .checked_mul(PAGE)
            .and_then(|s| self.next.checked_add(s))
            .filter(|g| g.checked_add(PAGE).is_some())
            .ok_or(RecordError::Address(entry))?;
        let need = match kind {
            0 => 0,
            1 => PAGE_SIZE,
            k if k - 2 <= MAX_DELTA as u64 => (k - 2) as usize,
            _ => return Err(RecordError::Kind { entry, kind }),
        };
        let left = self.body.len() - self.pos;
        if need > left {
            return Err(RecordError::Short { entry, need, left });
        }
        let data = &self.body[self.pos..self.pos + need];
        self.pos += need;
        self.next = gpa + PAGE;
        self.n += 1;
        let e = match kind {
            0 => Entry::Zero,
            1 => Entry::Whole(data),
            _ => Entry::Delta(data),
        };
        Ok(Some((gpa, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(base: u64, body: &[u8]) -> Result<Vec<(u64, Entry<'_>)>, RecordError> {
        let mut e = Entries::new(base, body);
        let mut v = Vec::new();
        while let Some(x) = e.next_entry()? {
            v.push(x);
        }
        Ok(v)
    }

    #[test]
    fn entries_round_trip() {
        let mut b = Batch::default();
        let page = [7u8; PAGE_SIZE];
        b.push(0x5000, Entry::Zero);
        assert!(b.fits(0x9000) && !b.fits(0x4000));
        b.push(0x9000, Entry::Whole(&page));
        b.push(0xa000, Entry::Delta(&[3, 1, 9]));
        b.push(0xb000, Entry::Delta(&[]));
        let (base, body) = b.take().unwrap();
        let got = all(base, &body).unwrap();
        assert_eq!(
            got,
            [
                (0x5000, Entry::Zero),
                (0x9000, Entry::Whole(&page[..])),
                (0xa000, Entry::Delta(&[3, 1, 9][..])),
                (0xb000, Entry::Delta(&[][..]))
            ]
        );
        assert!(b.take().is_none());
    }

    #[test]
    fn bad_entries_are_refused() {
        assert_eq!(
            all(0, &[0, 1, 5]),
            Err(RecordError::Short {
                entry: 0,
                need: 4096,
                left: 1
            })
        );
        assert_eq!(all(0, &[0, 0x80, 0x20]), Err(RecordError::Kind { entry: 0, kind: 4096 }));
        assert_eq!(
            all(0, &[0, 4, 1]),
            Err(RecordError::Short {
                entry: 0,
                need: 2,
                left: 1
            })
        );
        assert!(matches!(all(0, &[0, 0, 0x80]), Err(RecordError::Codec { entry: 1, .. })));
        assert_eq!(all(!0xfff, &[0, 0]), Err(RecordError::Address(0)));
        assert_eq!(
            all(0, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0]).map(|v| v[0].0),
            Ok(0xffff_ffff_u64 * 4096)
        );
    }
}
