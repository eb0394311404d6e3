//! What the disk did, counted as the guest's requests complete: QEMU's block accounting
//! (`query-blockstats`), kept per device for as long as the device lives.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A kind of request, as QEMU accounts it (write-zeroes counts as a write, discard as an
/// unmap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
    Unmap,
}

/// Counters of one kind.
#[derive(Debug, Default)]
pub struct OpStats {
    pub bytes: AtomicU64,
    pub operations: AtomicU64,
    pub failed: AtomicU64,
    pub total_time_ns: AtomicU64,
}

/// Every kind, the end of the highest write, and when the last request completed.
#[derive(Debug)]
pub struct BlkStats {
    pub read: OpStats,
    pub write: OpStats,
    pub flush: OpStats,
    pub unmap: OpStats,
    pub wr_highest_offset: AtomicU64,
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last completion, plus one (0: none yet).
    last: AtomicU64,
}

impl Default for BlkStats {
    fn default() -> Self {
        BlkStats {
            read: OpStats::default(),
            write: OpStats::default(),
            flush: OpStats::default(),
            unmap: OpStats::default(),
            wr_highest_offset: AtomicU64::default(),
            epoch: Instant::now(),
            last: AtomicU64::default(),
        }
    }
}

impl BlkStats {
    /// How long since the last request completed (QEMU's `idle_time_ns`); None before the
    /// first.
    pub fn idle_time(&self) -> Option<Duration> {
        let last = self.last.load(Relaxed).checked_sub(1)?;
        Some(self.epoch.elapsed().saturating_sub(Duration::from_nanos(last)))
    }

    pub fn of(&self, op: Op) -> &OpStats {
        match op {
            Op::Read => &self.read,
            Op::Write => &self.write,
            Op::Flush => &self.flush,
            Op::Unmap => &self.unmap,
        }
    }

    /// A request that completed (`ok`) or failed in the image after `took`.
    pub fn done(&self, op: Op, bytes: u64, took: Duration, ok: bool) {
        let since = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last.store(since + 1, Relaxed);
        let s = self.of(op);
        if !ok {
            s.failed.fetch_add(1, Relaxed);
            return;
        }
        s.operations.fetch_add(1, Relaxed);
        s.bytes.fetch_add(bytes, Relaxed);
        s.total_time_ns
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// A write (or write-zeroes) that ended at byte `end`.
    pub fn wrote_up_to(&self, end: u64) {
        self.wr_highest_offset.fetch_max(end, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_successes_and_failures_apart() {
        let s = BlkStats::default();
        assert_eq!(s.idle_time(), None);
        s.done(Op::Write, 4096, Duration::from_micros(3), true);
        s.done(Op::Write, 4096, Duration::from_micros(5), true);
        s.done(Op::Write, 4096, Duration::from_micros(1), false);
        s.wrote_up_to(8192);
        s.wrote_up_to(4096);
        assert_eq!(s.write.operations.load(Relaxed), 2);
        assert_eq!(s.write.bytes.load(Relaxed), 8192);
        assert_eq!(s.write.failed.load(Relaxed), 1);
        assert_eq!(s.write.total_time_ns.load(Relaxed), 8000);
        assert_eq!(s.wr_highest_offset.load(Relaxed), 8192);
        assert_eq!(s.read.operations.load(Relaxed), 0);
        let idle = s.idle_time().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert!(s.idle_time().unwrap() >= idle + Duration::from_millis(2));
    }
}
