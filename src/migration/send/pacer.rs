//! Counts what goes out, holds the average rate to `max-bandwidth` (a token bucket that
//! carries every byte over, so large records cannot overshoot it), and measures the
//! bandwidth per 100 ms window the way QEMU's `migration_update_counters` does.

use super::Shared;
use devices::bus::lock;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_millis(100);

/// How far ahead of the limit the sending may run before it sleeps. Sleeping after every
/// record costs far more than the record on a busy host (each sleep overshoots), so the
/// bucket lets a burst of this much time's worth go, then sleeps back onto the schedule:
/// the average still holds exactly (QEMU allows a whole 100 ms window's worth).
const SLACK: Duration = Duration::from_millis(5);

/// How long to sleep with `sent` bytes out at `limit` bytes per second, `elapsed` after
/// the bucket started: until the schedule, once more than [`SLACK`] ahead of it.
fn ahead_by(sent: u64, limit: u64, elapsed: Duration) -> Option<Duration> {
    let due = Duration::from_secs_f64(sent as f64 / limit as f64);
    (due > elapsed + SLACK).then(|| due - elapsed)
}

pub(in crate::migration) struct Pacer<'a> {
    shared: &'a Shared,
    window_start: Instant,
    window_bytes: u64,
    window_pages: u64,
    /// Bytes per millisecond, from the last complete window (0 until one is measured).
    pub(super) bandwidth: f64,
    /// Held to `max-bandwidth` (the pre-copy); the stop-and-copy goes unlimited.
    pub(super) limited: bool,
    /// The limit the bucket was started with, when it was started, and bytes sent since.
    bucket: Option<(u64, Instant, u64)>,
    /// The limit held the sending back in the current window (it slept).
    window_held: bool,
    /// ... and in the last complete one: `max-bandwidth`, not the link, set the pace, so a
    /// round costs far more time than the unlimited stop-and-copy of the same pages.
    pub(super) capped: bool,
    /// Post-copy: held to `max-postcopy-bandwidth` instead.
    postcopy: bool,
}

impl<'a> Pacer<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        Pacer {
            shared,
            window_start: Instant::now(),
            window_bytes: 0,
            window_pages: 0,
            bandwidth: 0.0,
            limited: true,
            bucket: None,
            window_held: false,
            capped: false,
            postcopy: false,
        }
    }

    /// From the switch to post-copy on, the limit is `max-postcopy-bandwidth` (0: none).
    pub(super) fn start_postcopy(&mut self) {
        self.limited = true;
        self.postcopy = true;
        self.bucket = None;
    }

    pub(in crate::migration) fn account(&mut self, bytes: u64, pages: u64) {
        self.window_bytes += bytes;
        self.window_pages += pages;
        self.hold_rate(bytes);
        if self.window_start.elapsed() >= WINDOW {
            self.close_window();
        }
    }

    /// Bytes per millisecond: the last complete window's, or before one has closed, what
    /// the window under way has measured so far (an idle guest is done long before the
    /// first 100 ms; QEMU waits for that window, or for nothing at all to be left).
    pub(super) fn rate(&self) -> f64 {
        if self.bandwidth > 0.0 {
            return self.bandwidth;
        }
        let ms = self.window_start.elapsed().as_secs_f64() * 1000.0;
        if ms > 0.0 { self.window_bytes as f64 / ms } else { 0.0 }
    }

    /// Sleeps as long as the bytes sent so far are ahead of the limit.
    fn hold_rate(&mut self, bytes: u64) {
        let limit = match (self.limited, self.postcopy) {
            (false, _) => 0,
            (true, false) => lock(&self.shared.params).max_bandwidth,
            (true, true) => lock(&self.shared.params).max_postcopy_bandwidth,
        };
        if limit == 0 {
            self.bucket = None;
            return;
        }
        // A new or changed limit starts a fresh bucket.
        let (l, start, sent) = match self.bucket {
            Some((l, start, sent)) if l == limit => (l, start, sent + bytes),
            _ => (limit, Instant::now(), bytes),
        };
        self.bucket = Some((l, start, sent));
        if let Some(wait) = ahead_by(sent, l, start.elapsed()) {
            self.window_held = true;
            std::thread::sleep(wait);
        }
    }

    /// Measures the window that just ended: throughput, pages per second, and the
    /// downtime the data left would cost at that bandwidth.
    fn close_window(&mut self) {
        let ms = self.window_start.elapsed().as_secs_f64() * 1000.0;
        self.bandwidth = self.window_bytes as f64 / ms;
        let mut s = lock(&self.shared.stats);
        s.mbps = self.window_bytes as f64 * 8.0 / (ms / 1000.0) / 1e6;
        s.pages_per_second = (self.window_pages as f64 / (ms / 1000.0)) as u64;
        if self.window_bytes > 10_000 && self.bandwidth > 0.0 {
            let disk_left = s.disk.map_or(0, |d| d.1);
            s.expected_downtime_ms = ((s.remaining + disk_left) as f64 / self.bandwidth) as u64;
        }
        drop(s);
        self.capped = self.window_held;
        self.window_held = false;
        self.window_start = Instant::now();
        self.window_bytes = 0;
        self.window_pages = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_sleeps_only_past_the_slack_and_then_back_to_schedule() {
        let ms = Duration::from_millis;
        let wait = |sent, at| ahead_by(sent, 1_000_000, ms(at)).map(|d| (d.as_secs_f64() * 1000.0).round() as u64);
        // 1 MB/s: 1000 bytes a millisecond.
        assert_eq!(wait(4_000, 0), None);
        assert_eq!(wait(5_000, 0), None);
        assert_eq!(wait(6_000, 0), Some(6));
        assert_eq!(wait(20_000, 12), Some(8));
        assert_eq!(wait(20_000, 30), None);
    }
}
