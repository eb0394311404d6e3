//! Migration status and statistics, and `info migrate` in QEMU 7.2's text grammar.
//! Every figure is measured by the sender as it works; nothing is estimated for show.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    None,
    Setup,
    Active,
    Cancelling,
    Cancelled,
    Completed,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Setup => "setup",
            Status::Active => "active",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    /// Still moving data (what QEMU calls "active-like").
    pub fn in_progress(self) -> bool {
        matches!(self, Status::Setup | Status::Active | Status::Cancelling)
    }
}

/// Everything `info migrate` shows, for one migration.
#[derive(Debug, Clone)]
pub struct Stats {
    pub status: Status,
    pub error: Option<String>,
    pub total_time_ms: u64,
    pub setup_ms: u64,
    pub expected_downtime_ms: u64,
    pub downtime_ms: u64,
    /// Bytes written for RAM, record headers included.
    pub transferred: u64,
    pub remaining: u64,
    pub total_ram: u64,
    pub duplicate: u64,
    pub normal: u64,
    pub dirty_sync_count: u64,
    pub mbps: f64,
    pub pages_per_second: u64,
    pub dirty_pages_rate: u64,
    pub precopy_bytes: u64,
    pub downtime_bytes: u64,
    /// Destination side: the listening addresses (`socket address:` block).
    pub socket_addresses: Vec<String>,
    /// Disk statistics (block migration), when it runs: transferred, remaining, total.
    pub disk: Option<(u64, u64, u64)>,
    /// Stream bytes of disk records (counted in `transferred`, not shown as RAM).
    pub disk_bytes: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            status: Status::None,
            error: None,
            total_time_ms: 0,
            setup_ms: 0,
            expected_downtime_ms: 0,
            downtime_ms: 0,
            transferred: 0,
            remaining: 0,
            total_ram: 0,
            duplicate: 0,
            normal: 0,
            dirty_sync_count: 0,
            mbps: 0.0,
            pages_per_second: 0,
            dirty_pages_rate: 0,
            precopy_bytes: 0,
            downtime_bytes: 0,
            socket_addresses: Vec::new(),
            disk: None,
            disk_bytes: 0,
        }
    }
}

const GLOBALS: &str = "globals:\nstore-global-state: on\nonly-migratable: off\nsend-configuration: on\nsend-section-footer: on\ndecompress-error-check: on\nclear-bitmap-shift: 18\n";

/// `info migrate`, line for line as QEMU 7.2 prints it (with `\n` line ends).
pub fn format(s: &Stats, destination: bool) -> String {
    let mut o = String::from(GLOBALS);
    if s.status != Status::None {
        match (&s.error, s.status) {
            (Some(e), Status::Failed) => {
                let _ = writeln!(o, "Migration status: failed ({e})");
            }
            _ => {
                let _ = writeln!(o, "Migration status: {}", s.status.name());
            }
        }
        let active = s.status.in_progress() && s.status != Status::Setup;
        let show_ram = !destination && (active || s.status == Status::Completed);
        let total = if show_ram { s.total_time_ms } else { 0 };
        let _ = writeln!(o, "total time: {total} ms");
        if show_ram {
            if active {
                let _ = writeln!(o, "expected downtime: {} ms", s.expected_downtime_ms);
            } else {
                let _ = writeln!(o, "downtime: {} ms", s.downtime_ms);
            }
            let _ = writeln!(o, "setup: {} ms", s.setup_ms);
            let k = |b: u64| b >> 10;
            let _ = writeln!(o, "transferred ram: {} kbytes", k(s.transferred - s.disk_bytes.min(s.transferred)));
            let _ = writeln!(o, "throughput: {:.2} mbps", s.mbps);
            let _ = writeln!(o, "remaining ram: {} kbytes", k(s.remaining));
            let _ = writeln!(o, "total ram: {} kbytes", k(s.total_ram));
            let _ = writeln!(o, "duplicate: {} pages", s.duplicate);
            o.push_str("skipped: 0 pages\n");
            let _ = writeln!(o, "normal: {} pages", s.normal);
            let _ = writeln!(o, "normal bytes: {} kbytes", k(s.normal * 4096));
            let _ = writeln!(o, "dirty sync count: {}", s.dirty_sync_count);
            o.push_str("page size: 4 kbytes\n");
            o.push_str("multifd bytes: 0 kbytes\n");
            let _ = writeln!(o, "pages-per-second: {}", s.pages_per_second);
            if s.dirty_pages_rate != 0 && active {
                let _ = writeln!(o, "dirty pages rate: {} pages", s.dirty_pages_rate);
            }
            if s.precopy_bytes != 0 {
                let _ = writeln!(o, "precopy ram: {} kbytes", k(s.precopy_bytes));
            }
            if s.downtime_bytes != 0 {
                let _ = writeln!(o, "downtime ram: {} kbytes", k(s.downtime_bytes));
            }
            if let (Some((done, left, all)), true) = (s.disk, active) {
                let _ = writeln!(o, "transferred disk: {} kbytes", k(done));
                let _ = writeln!(o, "remaining disk: {} kbytes", k(left));
                let _ = writeln!(o, "total disk: {} kbytes", k(all));
            }
        }
    }
    if destination && !s.socket_addresses.is_empty() && s.status != Status::Completed {
        o.push_str("socket address: [\n");
        for a in &s.socket_addresses {
            let _ = writeln!(o, "\t{a}");
        }
        o.push_str("]\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_layout() {
        let s = Stats {
            status: Status::Completed,
            total_time_ms: 36,
            setup_ms: 6,
            transferred: 5224 << 10,
            total_ram: 524808 << 10,
            duplicate: 130189,
            normal: 1018,
            dirty_sync_count: 2,
            mbps: 1456.654,
            precopy_bytes: 5204 << 10,
            downtime_bytes: 20 << 10,
            ..Stats::default()
        };
        let text = format(&s, false);
        let want = "Migration status: completed\ntotal time: 36 ms\ndowntime: 0 ms\nsetup: 6 ms\ntransferred ram: 5224 kbytes\nthroughput: 1456.65 mbps\nremaining ram: 0 kbytes\ntotal ram: 524808 kbytes\nduplicate: 130189 pages\nskipped: 0 pages\nnormal: 1018 pages\nnormal bytes: 4072 kbytes\ndirty sync count: 2\npage size: 4 kbytes\nmultifd bytes: 0 kbytes\npages-per-second: 0\nprecopy ram: 5204 kbytes\ndowntime ram: 20 kbytes\n";
        assert_eq!(text, format!("{GLOBALS}{want}"));
    }

    #[test]
    fn other_states() {
        assert_eq!(format(&Stats::default(), false), GLOBALS);
        let f = Stats {
            status: Status::Failed,
            error: Some("Failed to connect to '127.0.0.1:1': Connection refused".into()),
            total_time_ms: 5,
            ..Stats::default()
        };
        assert!(
            format(&f, false)
                .ends_with("Migration status: failed (Failed to connect to '127.0.0.1:1': Connection refused)\ntotal time: 0 ms\n")
        );
        let d = Stats {
            socket_addresses: vec!["tcp:0.0.0.0:4444".into()],
            ..Stats::default()
        };
        assert!(format(&d, true).ends_with("socket address: [\n\ttcp:0.0.0.0:4444\n]\n"));
        let a = Stats {
            status: Status::Active,
            expected_downtime_ms: 300,
            dirty_pages_rate: 1249,
            ..Stats::default()
        };
        let t = format(&a, false);
        assert!(
            t.contains("expected downtime: 300 ms\n") && t.contains("dirty pages rate: 1249 pages\n"),
            "{t}"
        );
    }
}
