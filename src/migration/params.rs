//! Migration parameters and capabilities, with QEMU 7.2's names, defaults and texts.

use std::fmt::Write;

/// The parameters godwit acts on, plus QEMU's others kept for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Bytes per second; 0 means unlimited.
    pub max_bandwidth: u64,
    /// Milliseconds the guest may stay paused at switch-over.
    pub downtime_limit_ms: u64,
    pub xbzrle_cache_size: u64,
    pub max_postcopy_bandwidth: u64,
    pub multifd_channels: u64,
    pub block_incremental: bool,
    /// The `block` capability: every `migrate` copies the disks (as `-b`, or `-i` with
    /// `block-incremental` on).
    pub block: bool,
}

pub const DEFAULT_BANDWIDTH: u64 = 128 << 20;
pub const DEFAULT_DOWNTIME_MS: u64 = 300;
pub const MAX_DOWNTIME_MS: u64 = 2_000_000;

impl Default for Params {
    fn default() -> Self {
        Params {
            max_bandwidth: DEFAULT_BANDWIDTH,
            downtime_limit_ms: DEFAULT_DOWNTIME_MS,
            xbzrle_cache_size: 64 << 20,
            max_postcopy_bandwidth: 0,
            multifd_channels: 2,
            block_incremental: false,
            block: false,
        }
    }
}

impl Params {
    /// `info migrate_parameters` as QEMU 7.2 prints it.
    pub fn format(&self) -> String {
        let mut o = String::new();
        o.push_str("announce-initial: 50 ms\nannounce-max: 550 ms\nannounce-rounds: 5\nannounce-step: 100 ms\n");
        o.push_str("compress-level: 1\ncompress-threads: 8\ncompress-wait-thread: on\ndecompress-threads: 2\n");
        o.push_str("throttle-trigger-threshold: 50\ncpu-throttle-initial: 20\ncpu-throttle-increment: 10\ncpu-throttle-tailslow: off\nmax-cpu-throttle: 99\n");
        o.push_str("tls-creds: ''\ntls-hostname: ''\n");
        let _ = writeln!(o, "max-bandwidth: {} bytes/second", self.max_bandwidth);
        let _ = writeln!(o, "downtime-limit: {} ms", self.downtime_limit_ms);
        o.push_str("x-checkpoint-delay: 20000 ms\n");
        let _ = writeln!(o, "block-incremental: {}", if self.block_incremental { "on" } else { "off" });
        let _ = writeln!(o, "multifd-channels: {}", self.multifd_channels);
        o.push_str("multifd-compression: none\n");
        let _ = writeln!(o, "xbzrle-cache-size: {} bytes", self.xbzrle_cache_size);
        let _ = writeln!(o, "max-postcopy-bandwidth: {}", self.max_postcopy_bandwidth);
        o.push_str("tls-authz: ''\n");
        o
    }
}

/// QEMU 7.2's capabilities, in its order (the monitor's table, which completion uses too).
/// godwit implements `block`; the other optional data paths read `off` and switching one
/// on is refused.
pub use monitor::complete::MIGRATION_CAPABILITIES as CAPABILITIES;

pub fn format_capabilities(p: &Params) -> String {
    CAPABILITIES
        .iter()
        .map(|c| format!("{c}: {}\n", if *c == "block" && p.block { "on" } else { "off" }))
        .collect()
}

/// `migrate_set_capability NAME on|off`.
pub fn set_capability(p: &mut Params, name: &str, on: bool) -> Result<(), String> {
    if !CAPABILITIES.contains(&name) {
        return Err(format!("invalid parameter value: {name}"));
    }
    if name == "block" {
        p.block = on;
        return Ok(());
    }
    if on {
        return Err(format!("capability '{name}' is not supported by godwit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_print_like_qemu() {
        let t = Params::default().format();
        assert!(t.contains("\nmax-bandwidth: 134217728 bytes/second\ndowntime-limit: 300 ms\n"));
        assert_eq!(t.lines().count(), 24);
        let mut p = Params::default();
        assert_eq!(format_capabilities(&p).lines().count(), 21);
        assert_eq!(set_capability(&mut p, "bogus", true).unwrap_err(), "invalid parameter value: bogus");
        assert!(set_capability(&mut p, "xbzrle", true).is_err());
        assert!(set_capability(&mut p, "xbzrle", false).is_ok());
        assert!(!format_capabilities(&p).contains("block: on"));
        set_capability(&mut p, "block", true).unwrap();
        assert!(format_capabilities(&p).contains("\nblock: on\n"));
    }
}
