//! How godwit's messages on stderr start: `godwit: `, and with `-msg timestamp=on` the
//! UTC time before it, as QEMU writes `2024-01-01T12:00:00.123456Z qemu-system-x86_64: `.

use std::sync::atomic::{AtomicBool, Ordering};

static TIMESTAMP: AtomicBool = AtomicBool::new(false);

/// Turns the timestamps on or off (from `-msg timestamp=`).
pub fn set_timestamp(on: bool) {
    TIMESTAMP.store(on, Ordering::Relaxed);
}

/// The start of a message line.
pub fn prefix() -> String {
    if TIMESTAMP.load(Ordering::Relaxed) {
        format!("{} godwit: ", utc_now())
    } else {
        "godwit: ".to_string()
    }
}

/// The current time as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
fn utc_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(now.as_secs(), now.subsec_micros())
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn format_utc(secs: u64, micros: u32) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_layout() {
        assert_eq!(super::format_utc(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(super::format_utc(1_796_599_158, 865_682), "2026-12-06T23:19:18.865682Z");
        assert_eq!(super::format_utc(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
    }
}
