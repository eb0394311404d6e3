//! The XOR delta of a page against the copy the destination already has, as runs.
//!
//! The delta is a sequence of pairs: a ULEB128 count of unchanged bytes (the XOR is
//! zero), a ULEB128 count of changed bytes, then those bytes as the page now has them. A
//! trailing run of unchanged bytes is left out; an unchanged page is the empty delta.
//! Gaps of one or two unchanged bytes inside a changed run are sent as changed bytes,
//! since splitting the run there would cost two length bytes. Every pair but the first
//! has a non-zero unchanged count, and every changed count is non-zero.

use thiserror::Error;

/// Why a delta could not be applied (the page is then left as it was).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("delta ends inside a length")]
    Truncated,
    #[error("delta length does not fit in 32 bits")]
    LengthTooLong,
    #[error("delta runs past the end of the page (offset {0})")]
    PastPage(u64),
    #[error("delta run of {run} bytes but only {left} bytes left in the delta")]
    PastDelta { run: u64, left: usize },
    #[error("empty run in delta")]
    EmptyRun,
}

/// Unchanged gaps this short stay inside a changed run.
const MERGE_GAP: usize = 2;

/// Appends `v` as ULEB128 to `out`.
pub fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a ULEB128 value of at most 32 bits from `b` at `*pos`, moving `*pos` past it.
pub fn get_uleb(b: &[u8], pos: &mut usize) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*pos).ok_or(CodecError::Truncated)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return if v > u64::from(u32::MAX) {
                Err(CodecError::LengthTooLong)
            } else {
                Ok(v)
            };
        }
    }
    Err(CodecError::LengthTooLong)
}

/// Where the next changed byte at or after `i` is (`len` if none).
fn next_changed(old: &[u8], new: &[u8], mut i: usize) -> usize {
    let len = new.len();
    // Eight bytes at a time while they are equal.
    while i + 8 <= len && old[i..i + 8] == new[i..i + 8] {
        i += 8;
    }
    while i < len && old[i] == new[i] {
        i += 1;
    }
    i
}

/// Where the changed run starting at `i` ends, gaps of at most [`MERGE_GAP`] included.
fn run_end(old: &[u8], new: &[u8], mut i: usize) -> usize {
    let len = new.len();
    loop {
        while i < len && old[i] != new[i] {
            i += 1;
        }
        let next = next_changed(old, new, i);
        if next == len || next - i > MERGE_GAP {
            return i;
        }
        i = next;
    }
}

/// Encodes `new` against `old` (same length) into `out` (cleared first). Returns `false`
/// (an overflow) as soon as the delta would exceed `max` bytes.
pub fn encode(old: &[u8], new: &[u8], max: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    if old.len() != new.len() {
        return false;
    }
    let mut i = 0;
    loop {
        let start = next_changed(old, new, i);
        if start == new.len() {
            return true;
        }
        let end = run_end(old, new, start);
        put_uleb(out, (start - i) as u64);
        put_uleb(out, (end - start) as u64);
        if out.len() + (end - start) > max {
            return false;
        }
        out.extend_from_slice(&new[start..end]);
        i = end;
    }
}

/// Applies `delta` to `page` in place. Every length is checked before it is used, and
/// nothing is written unless the whole delta is valid.
pub fn decode(delta: &[u8], page: &mut [u8]) -> Result<(), CodecError> {
    check(delta, page.len())?;
    let (mut pos, mut at) = (0usize, 0usize);
    while pos < delta.len() {
        at += get_uleb(delta, &mut pos)? as usize;
        let run = get_uleb(delta, &mut pos)? as usize;
        page[at..at + run].copy_from_slice(&delta[pos..pos + run]);
        pos += run;
        at += run;
    }
    Ok(())
}

/// Walks `delta` without writing: it must describe runs inside a page of `page_len`.
fn check(delta: &[u8], page_len: usize) -> Result<(), CodecError> {
    let (mut pos, mut at) = (0usize, 0u64);
    let mut first = true;
    while pos < delta.len() {
        let skip = get_uleb(delta, &mut pos)?;
        let run = get_uleb(delta, &mut pos)?;
        if run == 0 || (skip == 0 && !first) {
            return Err(CodecError::EmptyRun);
        }
        first = false;
        at += skip + run;
        if at > page_len as u64 {
            return Err(CodecError::PastPage(at));
        }
        let left = delta.len() - pos;
        if run > left as u64 {
            return Err(CodecError::PastDelta { run, left });
        }
        pos += run as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: usize = 4096;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn round_trip(old: &[u8], new: &[u8]) -> usize {
        let mut d = Vec::new();
        assert!(encode(old, new, usize::MAX, &mut d));
        let mut page = old.to_vec();
        decode(&d, &mut page).unwrap();
        assert_eq!(page, new);
        d.len()
    }

    #[test]
    fn round_trips_over_random_and_adversarial_pages() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        for _ in 0..2000 {
            let old: Vec<u8> = (0..P).map(|_| r.next() as u8).collect();
            let mut new = old.clone();
            for _ in 0..r.below(64) {
                let at = r.below(P);
                let n = 1 + r.below(40).min(P - at - 1);
                for b in &mut new[at..at + n] {
                    *b ^= 1 + r.below(255) as u8;
                }
            }
            round_trip(&old, &new);
        }
        let zero = vec![0u8; P];
        assert_eq!(round_trip(&zero, &zero), 0, "unchanged page: empty delta");
        // Every other byte changed: gaps of one merge into one run.
        let alt: Vec<u8> = (0..P).map(|i| (i % 2) as u8).collect();
        assert_eq!(round_trip(&zero, &alt), 1 + 2 + P - 1);
        // Changes every third byte, first and last bytes, whole page.
        let third: Vec<u8> = (0..P).map(|i| u8::from(i % 3 == 0)).collect();
        round_trip(&zero, &third);
        let mut ends = zero.clone();
        ends[0] = 1;
        ends[P - 1] = 1;
        assert_eq!(round_trip(&zero, &ends), 2 + 1 + 3 + 1);
        round_trip(&zero, &[0xffu8; P]);
    }

    #[test]
    fn overflow_stops_at_the_threshold() {
        let zero = vec![0u8; P];
        let mut d = Vec::new();
        assert!(!encode(&zero, &[1u8; P], P - 64, &mut d));
        let mut sparse = zero.clone();
        sparse[100] = 7;
        assert!(encode(&zero, &sparse, 8, &mut d));
        assert_eq!(d, [100, 1, 7]);
    }

    #[test]
    fn malformed_deltas_are_refused_and_write_nothing() {
        let mut page = vec![5u8; P];
        let cases: &[(&[u8], CodecError)] = &[
            (&[0x80], CodecError::Truncated),
            (&[1], CodecError::Truncated),
            (&[0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0], CodecError::LengthTooLong),
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], CodecError::LengthTooLong),
            (&[0x80, 0x20, 1, 9], CodecError::PastPage(4097)),
            (&[0xff, 0x1f, 2, 1, 2], CodecError::PastPage(4097)),
            (&[0, 5, 1, 2], CodecError::PastDelta { run: 5, left: 2 }),
            (&[3, 0], CodecError::EmptyRun),
            (&[0, 1, 9, 0, 1, 9], CodecError::EmptyRun),
        ];
        for (d, want) in cases {
            assert_eq!(decode(d, &mut page).as_ref(), Err(want), "{d:?}");
        }
        // A valid first pair followed by a bad one writes nothing either.
        assert!(decode(&[0, 1, 9, 1, 200, 1], &mut page).is_err());
        assert!(page.iter().all(|b| *b == 5));
    }

    #[test]
    fn random_deltas_never_panic_or_escape_the_page() {
        let mut r = Rng(0xdead_beef_cafe_f00d);
        let mut page = vec![0u8; 64];
        for _ in 0..50_000 {
            let d: Vec<u8> = (0..r.below(24)).map(|_| r.next() as u8).collect();
            let _ = decode(&d, &mut page);
        }
        let mut out = Vec::new();
        put_uleb(&mut out, 300);
        let mut pos = 0;
        assert_eq!((get_uleb(&out, &mut pos), pos), (Ok(300), 2));
    }
}
