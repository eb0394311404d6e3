//! Size arguments (`10M`, `1.5g`, `512k`, `0x1000`), parsed the way QEMU's
//! `qemu_strtosz*` family does.
//!
//! The integral part is decimal (or hexadecimal after `0x`); an optional
//! fraction is kept as a 64-bit binary fixed-point value so that `1.5M` is
//! exact; one optional suffix letter (B, K, M, G, T, P, E, either case)
//! scales it by powers of 1024. Without a suffix the caller's default unit
//! applies: bytes for most parameters, MiB for `migrate_set_speed` and
//! `max-bandwidth`.

use thiserror::Error;

/// Why a size could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    /// Not a number, a negative number, a fraction without a scaling suffix,
    /// an exponent, or trailing characters when the whole text must be a size.
    #[error("invalid size")]
    Invalid,
    /// The value does not fit in 64 bits.
    #[error("size too large")]
    TooLarge,
}

/// The unit applied when a size has no suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeUnit {
    Bytes,
    KiB,
    MiB,
    GiB,
}

impl SizeUnit {
    fn multiplier(self) -> u64 {
        match self {
            SizeUnit::Bytes => 1,
            SizeUnit::KiB => 1 << 10,
            SizeUnit::MiB => 1 << 20,
            SizeUnit::GiB => 1 << 30,
        }
    }
}

fn suffix_multiplier(c: u8) -> Option<u64> {
    let shift = match c.to_ascii_uppercase() {
        b'B' => 0,
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        b'P' => 50,
        b'E' => 60,
        _ => return None,
    };
    Some(1u64 << shift)
}

/// Parses a size at the start of `text` and returns it with the number of
/// bytes consumed. Leading whitespace is skipped, as C's `strtoull` does.
/// Whatever follows the size is left for the caller (the HMP argument parser
/// reports it as "extraneous characters").
pub fn parse_size_prefix(text: &str, default_unit: SizeUnit) -> Result<(u64, usize), SizeError> {
    let bytes = text.as_bytes();
    let mut pos = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let start = pos;
    match bytes.get(pos) {
        // strtoull would accept a minus sign and negate; QEMU rejects it.
        Some(b'-') => return Err(SizeError::Invalid),
        Some(b'+') => pos += 1,
        _ => {}
    }
    let digits_start = pos;
    while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    if pos == digits_start {
        return Err(SizeError::Invalid);
    }
    let mut value = decimal(&text[digits_start..pos])?;
    let mut fraction: u64 = 0;

    if value == 0 && matches!(bytes.get(pos), Some(b'x' | b'X')) {
        // Looks like hex: reparse, and insist on no fraction.
        let hex_start = pos + 1;
        let mut end = hex_start;
        while bytes.get(end).is_some_and(u8::is_ascii_hexdigit) {
            end += 1;
        }
        if end == hex_start {
            // "0x" with no digits: strtoull stops after the "0".
        } else {
            value = u64::from_str_radix(&text[hex_start..end], 16).map_err(|_| SizeError::TooLarge)?;
            pos = end;
            if bytes.get(pos) == Some(&b'.') {
                return Err(SizeError::Invalid);
            }
        }
    } else if bytes.get(pos) == Some(&b'.') {
        let frac_start = pos + 1;
        let mut end = frac_start;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == frac_start {
            // "1." or "1.k": no fractional digits, skip the dot only.
            pos = frac_start;
        } else {
            // An exponent ("1.5e3") makes the whole input invalid; a lone
            // 'e' with no digits after it is the exabyte suffix instead.
            if matches!(bytes.get(end), Some(b'e' | b'E')) {
                let mut exp = end + 1;
                if matches!(bytes.get(exp), Some(b'+' | b'-')) {
                    exp += 1;
                }
                if bytes.get(exp).is_some_and(u8::is_ascii_digit) {
                    return Err(SizeError::Invalid);
                }
            }
            let f: f64 = text[pos..end].parse().map_err(|_| SizeError::Invalid)?;
            // 64-bit binary fixed point; `as` saturates at u64::MAX for 0.99999...
            fraction = (f * 18_446_744_073_709_551_616.0) as u64;
            pos = end;
        }
    }

    let multiplier = match bytes.get(pos).and_then(|&c| suffix_multiplier(c)) {
        Some(m) => {
            pos += 1;
            m
        }
        None => default_unit.multiplier(),
    };
    let result = if multiplier == 1 {
        if fraction != 0 {
            // A fraction needs a scale.
            return Err(SizeError::Invalid);
        }
        value
    } else {
        let whole = u128::from(value) * u128::from(multiplier);
        let frac = u128::from(fraction) * u128::from(multiplier);
        // Integer part of the scaled fraction, rounding 0.5 up.
        let total = whole + (frac >> 64) + ((frac >> 63) & 1);
        u64::try_from(total).map_err(|_| SizeError::TooLarge)?
    };
    debug_assert!(pos > start);
    Ok((result, pos))
}

fn decimal(digits: &str) -> Result<u64, SizeError> {
    digits.parse::<u64>().map_err(|_| SizeError::TooLarge)
}

/// Parses `text` as a size; the whole text must be consumed.
///
/// This is what the VMM needs for `migrate_set_parameter max-bandwidth 1.5m`
/// (default unit MiB) or `xbzrle-cache-size 64m` (default unit bytes).
pub fn parse_size(text: &str, default_unit: SizeUnit) -> Result<u64, SizeError> {
    let (value, used) = parse_size_prefix(text, default_unit)?;
    if used != text.len() {
        return Err(SizeError::Invalid);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mib(text: &str) -> Result<u64, SizeError> {
        parse_size(text, SizeUnit::MiB)
    }

    #[test]
    fn observed_max_bandwidth_values() {
        // Values observed with `migrate_set_parameter max-bandwidth` on QEMU 7.2.
        assert_eq!(mib("100"), Ok(104_857_600));
        assert_eq!(mib("100m"), Ok(104_857_600));
        assert_eq!(mib("100M"), Ok(104_857_600));
        assert_eq!(mib("1g"), Ok(1_073_741_824));
        assert_eq!(mib("512k"), Ok(524_288));
        assert_eq!(mib("1000b"), Ok(1000));
        assert_eq!(mib("1.5m"), Ok(1_572_864));
        assert_eq!(mib("1.5"), Ok(1_572_864));
        assert_eq!(mib("1T"), Ok(1_099_511_627_776));
        assert_eq!(mib("0"), Ok(0));
        assert_eq!(mib("0x10"), Ok(16 << 20));
        assert_eq!(mib("0x10M"), Ok(16 << 20));
        assert_eq!(mib("1.k"), Ok(1024));
        assert_eq!(mib("0.5k"), Ok(512));
        assert_eq!(mib(" 5"), Ok(5 << 20));
        assert_eq!(mib("+5"), Ok(5 << 20));
        assert_eq!(mib("00012"), Ok(12 << 20));
        assert_eq!(mib("07"), Ok(7 << 20));
        assert_eq!(mib("0.0000001k"), Ok(0));
        assert_eq!(mib("1.5G"), Ok(1_610_612_736));
        assert_eq!(mib("8191P"), Ok(9_222_246_136_947_933_184));
        assert_eq!(mib("9223372036854775807b"), Ok(i64::MAX as u64));
    }

    #[test]
    fn rejected_sizes() {
        for bad in [
            "-1", "-0", "abc", "", " ", "1.5b", "1e3", ".5M", "1x", "0x1.8M", "1.5e3k", "1.k5", "16E", "17E",
        ] {
            assert!(mib(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(mib("18446744073709551616b"), Err(SizeError::TooLarge));
    }

    #[test]
    fn byte_default_unit() {
        let bytes = |t| parse_size(t, SizeUnit::Bytes);
        assert_eq!(bytes("500"), Ok(500));
        assert_eq!(bytes("1k"), Ok(1024));
        assert_eq!(bytes("64m"), Ok(64 << 20));
        assert_eq!(bytes("0.5"), Err(SizeError::Invalid));
        assert_eq!(bytes("1.0"), Ok(1));
    }

    #[test]
    fn prefix_leaves_the_rest() {
        assert_eq!(parse_size_prefix("10mb", SizeUnit::MiB), Ok((10 << 20, 3)));
        assert_eq!(parse_size_prefix("  7 x", SizeUnit::MiB), Ok((7 << 20, 3)));
        assert_eq!(parse_size_prefix("0x", SizeUnit::Bytes), Ok((0, 1)));
    }
}
