//! The C library parsers QEMU 7.2's `-netdev user` code relies on, reproduced byte for byte so
//! that the same spellings are accepted and refused: glibc's `inet_aton` (`10`, `0x0a.2`,
//! `010.0.2.1`, trailing white space and whatever follows it), `strtol` (leading white
//! space, a sign, `0x`/`0` prefixes for base 0) and QEMU's `get_str_sep` (a field cut to the
//! caller's buffer). They work on bytes, as the C code does.

use std::net::Ipv4Addr;

/// C's `isspace` in the C locale.
pub fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The value of `c` as a digit in `base`, if it is one.
fn digit(c: u8, base: u32) -> Option<u32> {
    char::from(c).to_digit(base)
}

/// Reads digits of `base` from `b[start..]`: the value (saturated at `u64::MAX`) and the
/// index after the last digit (`start` when there is none).
fn digits(b: &[u8], start: usize, base: u32) -> (u64, usize) {
    let mut value: u64 = 0;
    let mut i = start;
    while let Some(d) = b.get(i).and_then(|&c| digit(c, base)) {
        value = value.saturating_mul(u64::from(base)).saturating_add(u64::from(d));
        i += 1;
    }
    (value, i)
}

/// Where the number at `b[i..]` starts and in which base, for `strtol`/`strtoul` with
/// `base` (0 = from the prefix). A `0x` not followed by a hex digit is just the `0`.
fn radix(b: &[u8], i: usize, base: u32) -> (usize, u32) {
    let hex_prefix =
        b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X')) && b.get(i + 2).is_some_and(|&c| digit(c, 16).is_some());
    match base {
        0 if hex_prefix => (i + 2, 16),
        0 if b.get(i) == Some(&b'0') => (i, 8),
        0 => (i, 10),
        16 if hex_prefix => (i + 2, 16),
        _ => (i, base),
    }
}

/// glibc's `strtol(s, &end, base)` for a 64-bit `long`: the value (clamped on overflow) and
/// the index `end` points at, which is 0 (the start) when no digits were read.
pub fn strtol(b: &[u8], base: u32) -> (i64, usize) {
    let mut i = b.iter().take_while(|&&c| is_c_space(c)).count();
    let negative = b.get(i) == Some(&b'-');
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let (start, base) = radix(b, i, base);
    let (magnitude, end) = digits(b, start, base);
    if end == start {
        return (0, 0);
    }
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude).unwrap_or(i64::MIN)
    } else {
        i64::try_from(magnitude).unwrap_or(i64::MAX)
    };
    (value, end)
}

/// `strtol` of the whole of `b`, as C code checking `*end == '\0'` accepts it; an empty
/// string reads as 0, as it does in C.
pub fn strtol_whole(b: &[u8], base: u32) -> Option<i64> {
    let (value, end) = strtol(b, base);
    (end == b.len()).then_some(value)
}

/// glibc's `inet_aton`: one to four parts separated by dots, each starting with a digit and
/// read as by `strtoul(.., 0)`; the last part fills the remaining bytes. The address may be
/// followed by white space and then anything.
pub fn inet_aton(b: &[u8]) -> Option<Ipv4Addr> {
    let mut parts: Vec<u32> = Vec::with_capacity(3);
    let mut i = 0;
    let last = loop {
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let (start, base) = radix(b, i, 0);
        let (value, end) = digits(b, start, base);
        let value = u32::try_from(value).ok()?;
        i = end;
        if b.get(i) != Some(&b'.') {
            break value;
        }
        if parts.len() == 3 || value > 0xff {
            return None;
        }
        parts.push(value);
        i += 1;
    };
    if b.get(i).is_some_and(|&c| !is_c_space(c)) {
        return None;
    }
    let max = [u32::MAX, 0x00ff_ffff, 0xffff, 0xff][parts.len()];
    if last > max {
        return None;
    }
    let high = parts.iter().enumerate().fold(0u32, |acc, (k, &p)| acc | (p << (24 - 8 * k)));
    Some(Ipv4Addr::from(high | last))
}

/// QEMU's `get_str_sep`: the text of `*rest` before the first `sep` (cut to `buf_size - 1`
/// bytes, as copied into a C buffer of that size), moving `*rest` past the separator; `None`
/// (and `*rest` unchanged) when there is no `sep`.
pub fn get_str_sep<'a>(rest: &mut &'a [u8], sep: u8, buf_size: usize) -> Option<&'a [u8]> {
    let at = rest.iter().position(|&c| c == sep)?;
    let field = &rest[..at.min(buf_size - 1)];
    *rest = &rest[at + 1..];
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aton(s: &str) -> Option<String> {
        inet_aton(s.as_bytes()).map(|a| a.to_string())
    }

    #[test]
    fn inet_aton_accepts_the_glibc_forms() {
        assert_eq!(aton("10.0.2.15").as_deref(), Some("10.0.2.15"));
        assert_eq!(aton("10").as_deref(), Some("0.0.0.10"));
        assert_eq!(aton("10.2").as_deref(), Some("10.0.0.2"));
        assert_eq!(aton("10.0.515").as_deref(), Some("10.0.2.3"));
        assert_eq!(aton("0x0a.0.2.017").as_deref(), Some("10.0.2.15"));
        assert_eq!(aton("4294967295").as_deref(), Some("255.255.255.255"));
        assert_eq!(aton("1.2.3.4 junk").as_deref(), Some("1.2.3.4"));
        assert_eq!(aton("1.2.3.4\t").as_deref(), Some("1.2.3.4"));
    }

    #[test]
    fn inet_aton_refuses_what_glibc_refuses() {
        for bad in [
            "",
            "x",
            " 1.2.3.4",
            "1.2.3.4x",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "08",
            "0x",
            "1..2",
            "1.",
            "-1",
            "+1",
            "[::1]",
            "1.2.3.4-",
        ] {
            assert_eq!(aton(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn strtol_follows_glibc() {
        assert_eq!(strtol(b"22", 0), (22, 2));
        assert_eq!(strtol(b"0x10", 0), (16, 4));
        assert_eq!(strtol(b"010", 0), (8, 3));
        assert_eq!(strtol(b"08", 0), (0, 1));
        assert_eq!(strtol(b"0x", 0), (0, 1));
        assert_eq!(strtol(b"  +5", 0), (5, 4));
        assert_eq!(strtol(b"-5x", 0), (-5, 2));
        assert_eq!(strtol(b"", 0), (0, 0));
        assert_eq!(strtol(b" -", 0), (0, 0));
        assert_eq!(strtol(b"99999999999999999999", 10), (i64::MAX, 20));
        assert_eq!(strtol(b"-99999999999999999999", 10), (i64::MIN, 21));
        assert_eq!(strtol(b"010", 10), (10, 3));
        assert_eq!(strtol_whole(b"", 0), Some(0));
        assert_eq!(strtol_whole(b"5 ", 0), None);
    }

    #[test]
    fn get_str_sep_splits_and_cuts() {
        let mut rest: &[u8] = b"tcp:127.0.0.1:22";
        assert_eq!(get_str_sep(&mut rest, b':', 256), Some(&b"tcp"[..]));
        assert_eq!(get_str_sep(&mut rest, b'-', 256), None);
        assert_eq!(rest, b"127.0.0.1:22");
        assert_eq!(get_str_sep(&mut rest, b':', 4), Some(&b"127"[..]));
        assert_eq!(rest, b"22");
    }
}
