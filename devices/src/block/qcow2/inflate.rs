//! A small raw-deflate (RFC 1951) decoder for compressed qcow2 clusters.
//!
//! qcow2 stores each compressed cluster as an independent raw deflate
//! stream (no zlib header) that expands to exactly one cluster. The output
//! buffer doubles as the history window, which is all such a stream may
//! refer to. Decoding is canonical-Huffman, one bit at a time: simple and
//! fast enough for reading compressed images.

use thiserror::Error;

/// Decoding errors: the stream is malformed or ends early.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InflateError {
    #[error("compressed data ends prematurely")]
    Truncated,
    #[error("compressed data is corrupt: {0}")]
    Corrupt(&'static str),
}

type Result<T> = std::result::Result<T, InflateError>;

const MAX_BITS: usize = 15;

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385,
    24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
/// Order in which code length code lengths are stored.
const CLEN_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// LSB-first bit reader.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    count: u32,
}

impl Bits<'_> {
    fn take(&mut self, n: u32) -> Result<u32> {
        while self.count < n {
            let &byte = self.data.get(self.pos).ok_or(InflateError::Truncated)?;
            self.pos += 1;
            self.buf |= u64::from(byte) << self.count;
            self.count += 8;
        }
        let v = (self.buf & ((1u64 << n) - 1)) as u32;
        self.buf >>= n;
        self.count -= n;
        Ok(v)
    }

    fn align(&mut self) {
        let r = self.count % 8;
        self.buf >>= r;
        self.count -= r;
    }
}

/// A canonical Huffman code: number of codes per length and the symbols in
/// code order.
struct Huffman {
    counts: [u16; MAX_BITS + 1],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman> {
        let mut counts = [0u16; MAX_BITS + 1];
        for &l in lengths {
            counts[l as usize] += 1;
        }
        counts[0] = 0;
        let mut left: i32 = 1;
        for &c in &counts[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err(InflateError::Corrupt("over-subscribed code"));
            }
        }
        let mut offsets = [0u16; MAX_BITS + 2];
        for len in 1..=MAX_BITS {
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbols[offsets[l as usize] as usize] = sym as u16;
                offsets[l as usize] += 1;
            }
        }
        Ok(Huffman { counts, symbols })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=MAX_BITS {
            code |= bits.take(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - first < count {
                return self
                    .symbols
                    .get((index + code - first) as usize)
                    .copied()
                    .ok_or(InflateError::Corrupt("bad code"));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(InflateError::Corrupt("invalid Huffman code"))
    }
}

/// Decodes the raw deflate stream `input` into `out` until `out` is full
/// or the final block ends. Returns the number of bytes produced.
pub fn inflate(input: &[u8], out: &mut [u8]) -> Result<usize> {
    let mut bits = Bits {
        data: input,
        pos: 0,
        buf: 0,
        count: 0,
    };
    let mut pos = 0usize;
    loop {
        if pos == out.len() {
            return Ok(pos);
        }
        let last = bits.take(1)? == 1;
        match bits.take(2)? {
            0 => pos = stored(&mut bits, out, pos)?,
            1 => {
                let (lit, dist) = fixed_codes()?;
                pos = codes(&mut bits, out, pos, &lit, &dist)?;
            }
            2 => {
                let (lit, dist) = dynamic_codes(&mut bits)?;
                pos = codes(&mut bits, out, pos, &lit, &dist)?;
            }
            _ => return Err(InflateError::Corrupt("invalid block type")),
        }
        if last {
            return Ok(pos);
        }
    }
}

fn stored(bits: &mut Bits<'_>, out: &mut [u8], mut pos: usize) -> Result<usize> {
    bits.align();
    let len = bits.take(16)?;
    let nlen = bits.take(16)?;
    if len != !nlen & 0xffff {
        return Err(InflateError::Corrupt("stored block length mismatch"));
    }
    for _ in 0..len {
        let b = bits.take(8)? as u8;
        if pos == out.len() {
            break;
        }
        out[pos] = b;
        pos += 1;
    }
    Ok(pos)
}

fn fixed_codes() -> Result<(Huffman, Huffman)> {
    let mut lengths = [0u8; 288];
    lengths[..144].fill(8);
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lengths[280..].fill(8);
    Ok((Huffman::new(&lengths)?, Huffman::new(&[5u8; 30])?))
}

fn dynamic_codes(bits: &mut Bits<'_>) -> Result<(Huffman, Huffman)> {
    let nlen = bits.take(5)? as usize + 257;
    let ndist = bits.take(5)? as usize + 1;
    let ncode = bits.take(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return Err(InflateError::Corrupt("too many length or distance codes"));
    }
    let mut clens = [0u8; 19];
    for &i in &CLEN_ORDER[..ncode] {
        clens[i] = bits.take(3)? as u8;
    }
    let clen_code = Huffman::new(&clens)?;
    let mut lengths = [0u8; 286 + 30];
    let mut i = 0;
    while i < nlen + ndist {
        let sym = clen_code.decode(bits)?;
        let (value, repeat) = match sym {
            0..=15 => (sym as u8, 1),
            16 => {
                if i == 0 {
                    return Err(InflateError::Corrupt("repeat with no previous length"));
                }
                (lengths[i - 1], 3 + bits.take(2)? as usize)
            }
            17 => (0, 3 + bits.take(3)? as usize),
            _ => (0, 11 + bits.take(7)? as usize),
        };
        if i + repeat > nlen + ndist {
            return Err(InflateError::Corrupt("too many code lengths"));
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return Err(InflateError::Corrupt("no end-of-block code"));
    }
    Ok((Huffman::new(&lengths[..nlen])?, Huffman::new(&lengths[nlen..nlen + ndist])?))
}

fn codes(bits: &mut Bits<'_>, out: &mut [u8], mut pos: usize, lit: &Huffman, dist: &Huffman) -> Result<usize> {
    loop {
        let sym = lit.decode(bits)? as usize;
        if sym < 256 {
            if pos == out.len() {
                return Ok(pos);
            }
            out[pos] = sym as u8;
            pos += 1;
        } else if sym == 256 {
            return Ok(pos);
        } else {
            let li = sym - 257;
            if li >= LEN_BASE.len() {
                return Err(InflateError::Corrupt("invalid length symbol"));
            }
            let len = usize::from(LEN_BASE[li]) + bits.take(u32::from(LEN_EXTRA[li]))? as usize;
            let di = dist.decode(bits)? as usize;
            if di >= DIST_BASE.len() {
                return Err(InflateError::Corrupt("invalid distance symbol"));
            }
            let d = usize::from(DIST_BASE[di]) + bits.take(u32::from(DIST_EXTRA[di]))? as usize;
            if d > pos {
                return Err(InflateError::Corrupt("distance too far back"));
            }
            for _ in 0..len {
                if pos == out.len() {
                    return Ok(pos);
                }
                out[pos] = out[pos - d];
                pos += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_block() {
        let input = [0x01, 0x03, 0x00, 0xfc, 0xff, b'a', b'b', b'c'];
        let mut out = [0u8; 3];
        assert_eq!(inflate(&input, &mut out), Ok(3));
        assert_eq!(&out, b"abc");
    }

    #[test]
    fn fixed_huffman_with_matches() {
        // Raw deflate of b"hello hello hello hello\n" (fixed codes).
        let input = [0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x27, 0xb9, 0x00];
        let mut out = [0u8; 24];
        assert_eq!(inflate(&input, &mut out), Ok(24));
        assert_eq!(&out, b"hello hello hello hello\n");
    }

    #[test]
    fn garbage_never_panics() {
        let mut out = [0u8; 4096];
        let mut x = 0x1234_5678u32;
        for len in 0..300 {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = inflate(&input, &mut out);
        }
    }
}
