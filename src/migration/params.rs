//! Migration parameters and capabilities, with QEMU 7.2's names, defaults, checks and
//! texts. godwit acts on the bandwidth, the downtime limit, block migration and events;
//! the other values read as QEMU's defaults, and changing one is refused.

use monitor::engine::migration::MAX_DOWNTIME_MS;
use monitor::engine::{MigrateSetParameters, MigrationCapability, MigrationCapabilityStatus, MigrationParameters};
use thiserror::Error;

/// Why `migrate-set-parameters` or `migrate-set-capabilities` changed nothing: QEMU's
/// range checks in its words, or a setting godwit would not act on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamsError {
    #[error("Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms")]
    DowntimeLimit,
    #[error("Parameter 'multifd_channels' expects a value between 1 and 255")]
    MultifdChannels,
    #[error("Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size")]
    XbzrleCacheSize,
    /// An `announce-*` parameter outside QEMU's bounds (a step of 0 included, worded alike).
    #[error("Parameter '{name}' expects a value between 0 and {max}")]
    AnnounceRange { name: &'static str, max: u64 },
    /// A parameter QEMU has that godwit does not act on (named as QMP spells it).
    #[error("parameter '{0}' has no effect in godwit and is not supported")]
    Unsupported(&'static str),
    /// A capability godwit does not have, switched on.
    #[error("capability '{}' is not supported by godwit", .0.name())]
    Capability(MigrationCapability),
}

/// The parameters godwit acts on, plus the values it keeps for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Bytes per second; 0 means unlimited.
    pub max_bandwidth: u64,
    /// Milliseconds the guest may stay paused at switch-over.
    pub downtime_limit_ms: u64,
    pub xbzrle_cache_size: u64,
    pub max_postcopy_bandwidth: u64,
    pub multifd_channels: u8,
    pub block_incremental: bool,
    /// The `block` capability: every `migrate` copies the disks (as `-b`, or `-i` with
    /// `block-incremental` on).
    pub block: bool,
    /// The `events` capability: status changes and passes are QMP events.
    pub events: bool,
    /// The `late-block-activate` capability: an incoming migration leaves the disks
    /// inactive until the guest starts.
    pub late_block_activate: bool,
    /// The `return-path` capability: over a socket godwit's destination always answers
    /// on the way back (docs/migration.md), so this only records what was asked.
    pub return_path: bool,
    /// How the destination announces its NICs after a switch-over (and `announce_self`).
    pub announce: Announce,
}

/// QEMU's self-announcement schedule (the engine's type).
pub use monitor::engine::AnnounceSchedule as Announce;

/// QEMU's default schedule: 50 ms, then 100 ms longer each time, at most 550 ms, 5 rounds.
pub const DEFAULT_ANNOUNCE: Announce = Announce {
    initial: 50,
    max: 550,
    rounds: 5,
    step: 100,
};

/// The pause after announcement round `n` (counted from 0).
pub fn announce_delay(s: &Announce, n: u64) -> std::time::Duration {
    let ms = s.initial.saturating_add(n.saturating_mul(s.step)).min(s.max);
    std::time::Duration::from_millis(ms)
}

pub const DEFAULT_BANDWIDTH: u64 = 128 << 20;
pub const DEFAULT_DOWNTIME_MS: u64 = 300;

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
            events: false,
            late_block_activate: false,
            return_path: false,
            announce: DEFAULT_ANNOUNCE,
        }
    }
}

impl Params {
    /// `query-migrate-parameters`.
    pub fn info(&self) -> MigrationParameters {
        MigrationParameters {
            announce_initial: self.announce.initial,
            announce_max: self.announce.max,
            announce_rounds: self.announce.rounds,
            announce_step: self.announce.step,
            max_bandwidth: self.max_bandwidth,
            downtime_limit: self.downtime_limit_ms,
            block_incremental: self.block_incremental,
            multifd_channels: self.multifd_channels,
            xbzrle_cache_size: self.xbzrle_cache_size,
            max_postcopy_bandwidth: self.max_postcopy_bandwidth,
            ..MigrationParameters::default()
        }
    }

    /// `migrate-set-parameters`: everything is checked before anything changes.
    pub fn set(&mut self, p: &MigrateSetParameters) -> Result<(), ParamsError> {
        check(p)?;
        if let Some(v) = p.max_bandwidth {
            self.max_bandwidth = v;
        }
        if let Some(v) = p.downtime_limit {
            self.downtime_limit_ms = v;
        }
        if let Some(v) = p.xbzrle_cache_size {
            self.xbzrle_cache_size = v;
        }
        if let Some(v) = p.max_postcopy_bandwidth {
            self.max_postcopy_bandwidth = v;
        }
        if let Some(v) = p.multifd_channels {
            self.multifd_channels = v;
        }
        if let Some(v) = p.block_incremental {
            self.block_incremental = v;
        }
        let a = &mut self.announce;
        for (field, value) in [
            (&mut a.initial, p.announce_initial),
            (&mut a.max, p.announce_max),
            (&mut a.rounds, p.announce_rounds),
            (&mut a.step, p.announce_step),
        ] {
            if let Some(v) = value {
                *field = v;
            }
        }
        Ok(())
    }

    /// `query-migrate-capabilities`, in QEMU's order: only the capabilities godwit has
    /// (management software such as libvirt switches on whatever is listed).
    pub fn capabilities(&self) -> Vec<MigrationCapabilityStatus> {
        MigrationCapability::ALL
            .iter()
            .filter(|c| supported(**c))
            .map(|&capability| MigrationCapabilityStatus {
                capability,
                state: match capability {
                    MigrationCapability::Block => self.block,
                    MigrationCapability::Events => self.events,
                    MigrationCapability::LateBlockActivate => self.late_block_activate,
                    MigrationCapability::ReturnPath => self.return_path,
                    _ => false,
                },
            })
            .collect()
    }

    /// `migrate-set-capabilities`: godwit does `block`, `events`, `late-block-activate` and
    /// `return-path`;
    /// switching another
    /// one on is refused (before anything changes).
    pub fn set_capabilities(&mut self, caps: &[MigrationCapabilityStatus]) -> Result<(), ParamsError> {
        for c in caps {
            if c.state && !supported(c.capability) {
                return Err(ParamsError::Capability(c.capability));
            }
        }
        for c in caps {
            match c.capability {
                MigrationCapability::Block => self.block = c.state,
                MigrationCapability::Events => self.events = c.state,
                MigrationCapability::LateBlockActivate => self.late_block_activate = c.state,
                MigrationCapability::ReturnPath => self.return_path = c.state,
                _ => {}
            }
        }
        Ok(())
    }
}

/// The capabilities godwit acts on.
fn supported(c: MigrationCapability) -> bool {
    matches!(
        c,
        MigrationCapability::Block | MigrationCapability::Events | MigrationCapability::LateBlockActivate | MigrationCapability::ReturnPath
    )
}

/// QEMU's range checks (`migrate_params_check`), then godwit's refusal of parameters it
/// would not act on.
fn check(p: &MigrateSetParameters) -> Result<(), ParamsError> {
    if p.downtime_limit.is_some_and(|v| v > MAX_DOWNTIME_MS) {
        return Err(ParamsError::DowntimeLimit);
    }
    if p.multifd_channels == Some(0) {
        return Err(ParamsError::MultifdChannels);
    }
    if p.xbzrle_cache_size.is_some_and(|v| !v.is_power_of_two() || v < 4096) {
        return Err(ParamsError::XbzrleCacheSize);
    }
    // QEMU's bounds (and its words: a step of 0 is refused with the same text).
    for (name, value, min, max) in [
        ("announce_initial", p.announce_initial, 0, 100_000),
        ("announce_max", p.announce_max, 0, 100_000),
        ("announce_rounds", p.announce_rounds, 0, 1000),
        ("announce_step", p.announce_step, 1, 10_000),
    ] {
        if value.is_some_and(|v| v < min || v > max) {
            return Err(ParamsError::AnnounceRange { name, max });
        }
    }
    let unsupported = [
        ("compress-level", p.compress_level.is_some()),
        ("compress-threads", p.compress_threads.is_some()),
        ("compress-wait-thread", p.compress_wait_thread.is_some()),
        ("decompress-threads", p.decompress_threads.is_some()),
        ("throttle-trigger-threshold", p.throttle_trigger_threshold.is_some()),
        ("cpu-throttle-initial", p.cpu_throttle_initial.is_some()),
        ("cpu-throttle-increment", p.cpu_throttle_increment.is_some()),
        ("cpu-throttle-tailslow", p.cpu_throttle_tailslow.is_some()),
        ("max-cpu-throttle", p.max_cpu_throttle.is_some()),
        ("tls-creds", p.tls_creds.is_some()),
        ("tls-hostname", p.tls_hostname.is_some()),
        ("tls-authz", p.tls_authz.is_some()),
        ("x-checkpoint-delay", p.x_checkpoint_delay.is_some()),
        ("multifd-compression", p.multifd_compression.is_some()),
        ("multifd-zlib-level", p.multifd_zlib_level.is_some()),
        ("multifd-zstd-level", p.multifd_zstd_level.is_some()),
    ];
    match unsupported.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(ParamsError::Unsupported(name)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_before_anything_changes() {
        let mut p = Params::default();
        let bad = MigrateSetParameters {
            max_bandwidth: Some(1),
            downtime_limit: Some(MAX_DOWNTIME_MS + 1),
            ..MigrateSetParameters::default()
        };
        assert_eq!(p.set(&bad), Err(ParamsError::DowntimeLimit));
        assert_eq!(p, Params::default());
        let odd = MigrateSetParameters {
            xbzrle_cache_size: Some(1000),
            ..MigrateSetParameters::default()
        };
        assert_eq!(p.set(&odd), Err(ParamsError::XbzrleCacheSize));
        let step = MigrateSetParameters {
            announce_step: Some(0),
            ..MigrateSetParameters::default()
        };
        let e = p.set(&step).unwrap_err();
        assert_eq!(
            e,
            ParamsError::AnnounceRange {
                name: "announce_step",
                max: 10_000
            }
        );
        assert_eq!(e.to_string(), "Parameter 'announce_step' expects a value between 0 and 10000");
        let tls = MigrateSetParameters {
            tls_creds: Some("x".into()),
            ..MigrateSetParameters::default()
        };
        let e = p.set(&tls).unwrap_err();
        assert_eq!(e, ParamsError::Unsupported("tls-creds"));
        assert_eq!(e.to_string(), "parameter 'tls-creds' has no effect in godwit and is not supported");
        p.set(&MigrateSetParameters {
            max_bandwidth: Some(5),
            ..MigrateSetParameters::default()
        })
        .unwrap();
        assert_eq!(p.info().max_bandwidth, 5);
    }

    #[test]
    fn capabilities() {
        let mut p = Params::default();
        let listed: Vec<&str> = p.capabilities().iter().map(|c| c.capability.name()).collect();
        assert_eq!(
            listed,
            ["events", "block", "return-path", "late-block-activate"],
            "only what godwit has"
        );
        let on = |capability| MigrationCapabilityStatus { capability, state: true };
        let e = p
            .set_capabilities(&[on(MigrationCapability::Block), on(MigrationCapability::Xbzrle)])
            .unwrap_err();
        assert_eq!(e, ParamsError::Capability(MigrationCapability::Xbzrle));
        assert_eq!(e.to_string(), "capability 'xbzrle' is not supported by godwit");
        assert!(!p.block, "nothing changed");
        p.set_capabilities(&[on(MigrationCapability::Block), on(MigrationCapability::Events)])
            .unwrap();
        assert!(p.block && p.events);
        p.set_capabilities(&[on(MigrationCapability::LateBlockActivate), on(MigrationCapability::ReturnPath)])
            .unwrap();
        assert!(p.late_block_activate && p.return_path);
    }
}
