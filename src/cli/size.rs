//! QEMU's size syntax: a number, fractions allowed, with an optional B/K/M/G/T/P/E suffix.

/// Parses `text` as a size whose bare-number unit is `default_unit` bytes.
/// Returns None for anything QEMU would reject (negative, garbage, overflow).
pub fn parse_size(text: &str, default_unit: u64) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (num, suffix) = text.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.matches('.').count() > 1 {
        return None;
    }
    let unit: u64 = match suffix {
        "" => default_unit,
        "b" | "B" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        "t" | "T" => 1 << 40,
        "p" | "P" => 1 << 50,
        "e" | "E" => 1 << 60,
        _ => return None,
    };
    match num.split_once('.') {
        None => num.parse::<u64>().ok()?.checked_mul(unit),
        Some((int, frac)) => {
            // Exact integer arithmetic for the whole part; the fraction is scaled as a float
            // the way QEMU does it, then truncated.
            let whole = int.parse::<u64>().ok()?.checked_mul(unit)?;
            let f: f64 = format!("0.{frac}").parse().ok()?;
            whole.checked_add((f * unit as f64) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIB: u64 = 1 << 20;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256", MIB), Some(256 * MIB));
        assert_eq!(parse_size("2G", MIB), Some(2 << 30));
        assert_eq!(parse_size("2g", MIB), Some(2 << 30));
        assert_eq!(parse_size("1.5G", MIB), Some(3 << 29));
        assert_eq!(parse_size("512k", MIB), Some(512 << 10));
        assert_eq!(parse_size("1000b", MIB), Some(1000));
        assert_eq!(parse_size("0", MIB), Some(0));
        for bad in ["", "abc", "-1", "1x", ".5", "1.2.3", "99999999999999999999", "16E"] {
            assert_eq!(parse_size(bad, MIB), None, "{bad}");
        }
        assert_eq!(parse_size("99999999G", MIB), Some(99_999_999 << 30));
    }
}
