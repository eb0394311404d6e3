//! Migration status and statistics, and how they answer `query-migrate` (which `info
//! migrate` prints). Every figure is measured by the sender as it works; nothing is
//! estimated for show.

use monitor::engine::{MigrationInfo, MigrationStats};

/// QEMU's migration states (one type for the engine, both monitors and the sender).
pub use monitor::engine::MigrationStatus as Status;

/// Everything `info migrate` shows, for one migration.
#[derive(Debug, Clone)]
pub struct Stats {
    pub status: Status,
    /// When the migration began, while it runs (for the live `total-time`).
    pub started: Option<std::time::Instant>,
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
    /// Bytes written to the multifd channels (counted in `transferred` too).
    pub multifd_bytes: u64,
    /// Destination side: the listening addresses (`socket address:` block).
    pub socket_addresses: Vec<String>,
    /// Disk statistics (block migration), when it runs: transferred, remaining, total.
    pub disk: Option<(u64, u64, u64)>,
    /// Stream bytes of disk records (counted in `transferred`, not shown as RAM).
    pub disk_bytes: u64,
    /// The vCPU throttle in percent while one is set (auto-converge, the guarantee).
    pub throttle_pct: u8,
    /// The step the convergence guarantee took (`throttle`, `stop-and-copy`), if any.
    pub converge_step: Option<&'static str>,
    /// xbzrle's figures, with the capability on.
    pub xbzrle: Option<crate::migration::xbzrle::Counters>,
    /// Post-copy: pages the destination asked for, and the stream bytes of RAM sent
    /// after the switch.
    pub postcopy_requests: u64,
    pub postcopy_bytes: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            status: Status::None,
            started: None,
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
            multifd_bytes: 0,
            socket_addresses: Vec::new(),
            disk: None,
            disk_bytes: 0,
            throttle_pct: 0,
            converge_step: None,
            xbzrle: None,
            postcopy_requests: 0,
            postcopy_bytes: 0,
        }
    }
}

impl Stats {
    /// `query-migrate` on the source: the members QEMU 7.2 has for the status.
    pub fn source_info(&self) -> MigrationInfo {
        if self.status == Status::None {
            return MigrationInfo::default();
        }
        let mut info = MigrationInfo {
            status: Some(self.status),
            ..MigrationInfo::default()
        };
        let active = self.status.in_progress() && self.status != Status::Setup;
        match self.status {
            _ if active => {
                let elapsed = self.started.map_or(self.total_time_ms, |t| t.elapsed().as_millis() as u64);
                info.total_time = Some(elapsed);
                info.expected_downtime = Some(self.expected_downtime_ms);
                info.setup_time = Some(self.setup_ms);
                info.ram = Some(self.ram_stats(true));
                info.disk = self.disk.map(|(done, left, all)| MigrationStats {
                    transferred: done,
                    remaining: left,
                    total: all,
                    ..MigrationStats::default()
                });
                info.cpu_throttle_percentage = (self.throttle_pct > 0).then_some(u64::from(self.throttle_pct));
                info.xbzrle_cache = self.xbzrle;
                info.converge_step = self.converge_step.map(str::to_string);
            }
            Status::Completed => {
                info.total_time = Some(self.total_time_ms);
                info.downtime = Some(self.downtime_ms);
                info.setup_time = Some(self.setup_ms);
                info.ram = Some(self.ram_stats(false));
                info.xbzrle_cache = self.xbzrle;
                info.converge_step = self.converge_step.map(str::to_string);
            }
            Status::Failed => info.error_desc = self.error.clone(),
            _ => {}
        }
        info
    }

    /// `query-migrate` on the destination: its status, and where it listens until done.
    pub fn destination_info(&self) -> MigrationInfo {
        MigrationInfo {
            status: (self.status != Status::None).then_some(self.status),
            socket_address: if self.status == Status::Completed {
                Vec::new()
            } else {
                self.socket_addresses.clone()
            },
            ..MigrationInfo::default()
        }
    }

    fn ram_stats(&self, active: bool) -> MigrationStats {
        MigrationStats {
            // Disk records travel in the same stream; they are not RAM.
            transferred: self.transferred - self.disk_bytes.min(self.transferred),
            remaining: self.remaining,
            total: self.total_ram,
            duplicate: self.duplicate,
            normal: self.normal,
            normal_bytes: self.normal * 4096,
            dirty_pages_rate: if active { self.dirty_pages_rate } else { 0 },
            mbps: self.mbps,
            dirty_sync_count: self.dirty_sync_count,
            page_size: 4096,
            pages_per_second: self.pages_per_second,
            precopy_bytes: self.precopy_bytes,
            downtime_bytes: self.downtime_bytes,
            postcopy_requests: self.postcopy_requests,
            postcopy_bytes: self.postcopy_bytes,
            multifd_bytes: self.multifd_bytes,
            ..MigrationStats::default()
        }
    }
}
