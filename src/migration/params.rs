//! Migration parameters and capabilities, with QEMU 7.2's names, defaults, checks and
//! texts. godwit acts on the bandwidth, the downtime limit, block migration, events,
//! auto-converge and its throttle schedule, xbzrle and its cache size, multifd (channels,
//! compression and its levels), its own convergence deadline, and TLS (`tls-creds`, `tls-hostname`, `tls-authz`); the other values read as
//! QEMU's defaults, and changing one is refused.

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
    /// A compression level outside what the library takes (QEMU 7.2 drops the value).
    #[error("Parameter '{name}' expects a value between 0 and {max}")]
    Level { name: &'static str, max: u8 },
    #[error("Parameter 'multifd-compression' does not accept value '{0}'")]
    Compression(String),
    #[error("Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size")]
    XbzrleCacheSize,
    /// A throttle parameter outside QEMU's bounds, in its words (`range` as QEMU says it).
    #[error("Parameter '{name}' expects an integer in the range of {range}")]
    ThrottleRange { name: &'static str, range: &'static str },
    /// An `announce-*` parameter outside QEMU's bounds (a step of 0 included, worded alike).
    #[error("Parameter '{name}' expects a value between 0 and {max}")]
    AnnounceRange { name: &'static str, max: u64 },
    /// A parameter QEMU has that godwit does not act on (named as QMP spells it).
    #[error("parameter '{0}' has no effect in godwit and is not supported")]
    Unsupported(&'static str),
    /// A capability godwit does not have, switched on.
    #[error("capability '{}' is not supported by godwit", .0.name())]
    Capability(MigrationCapability),
    /// QEMU 7.2 takes both, sending post-copy pages on the main channel; godwit's multifd
    /// channels write guest RAM directly, which a post-copy destination under userfaultfd
    /// cannot allow, so the pair is refused (in the words older QEMUs used).
    #[error("Postcopy is not yet compatible with multifd")]
    PostcopyMultifd,
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
    /// The `multifd` capability: pages travel over `multifd_channels` extra connections.
    pub multifd: bool,
    pub multifd_compression: crate::migration::multifd::Compression,
    pub multifd_zlib_level: u8,
    pub multifd_zstd_level: u8,
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
    /// The `auto-converge` capability: throttle the vCPUs while the guest dirties memory
    /// faster than the migration sends it.
    pub auto_converge: bool,
    /// The throttle's schedule (QEMU's `cpu-throttle-*` parameters).
    pub throttle: Throttle,
    /// The `xbzrle` capability: re-sent pages go as deltas against a page cache of
    /// `xbzrle_cache_size` bytes. The destination must have it on too.
    pub xbzrle: bool,
    /// The `postcopy-ram` capability: `migrate_start_postcopy` may switch a migration to
    /// post-copy. The destination must have it on too.
    pub postcopy_ram: bool,
    /// `x-godwit-converge-deadline`: the seconds within which a migration must end; 0 (the
    /// default) leaves it to pre-copy, as in QEMU.
    pub converge_deadline_s: u64,
    /// `tls-creds`: the id of a `tls-creds-*` object; empty for a plaintext migration.
    pub tls_creds: String,
    /// `tls-hostname`: the name the destination's certificate must carry (else the URI's host).
    pub tls_hostname: String,
    /// `tls-authz`: the id of the `authz-simple` object a destination checks clients with.
    pub tls_authz: String,
}

/// QEMU's throttle parameters: `throttle-trigger-threshold`, `cpu-throttle-initial`,
/// `cpu-throttle-increment`, `cpu-throttle-tailslow`, `max-cpu-throttle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Percent of the bytes sent in a period that the bytes dirtied may reach.
    pub trigger_threshold: u8,
    pub initial: u8,
    pub increment: u8,
    /// Smaller steps near the throttle that would match the dirty rate to the threshold.
    pub tailslow: bool,
    pub max: u8,
}

pub const DEFAULT_THROTTLE: Throttle = Throttle {
    trigger_threshold: 50,
    initial: 20,
    increment: 10,
    tailslow: false,
    max: 99,
};

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
            multifd: false,
            multifd_compression: crate::migration::multifd::Compression::None,
            multifd_zlib_level: 1,
            multifd_zstd_level: 1,
            block_incremental: false,
            block: false,
            events: false,
            late_block_activate: false,
            return_path: false,
            announce: DEFAULT_ANNOUNCE,
            auto_converge: false,
            throttle: DEFAULT_THROTTLE,
            xbzrle: false,
            postcopy_ram: false,
            converge_deadline_s: 0,
            tls_creds: String::new(),
            tls_hostname: String::new(),
            tls_authz: String::new(),
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
            multifd_compression: self.multifd_compression.name().into(),
            multifd_zlib_level: self.multifd_zlib_level,
            multifd_zstd_level: self.multifd_zstd_level,
            xbzrle_cache_size: self.xbzrle_cache_size,
            max_postcopy_bandwidth: self.max_postcopy_bandwidth,
            throttle_trigger_threshold: self.throttle.trigger_threshold,
            cpu_throttle_initial: self.throttle.initial,
            cpu_throttle_increment: self.throttle.increment,
            cpu_throttle_tailslow: self.throttle.tailslow,
            max_cpu_throttle: self.throttle.max,
            x_godwit_converge_deadline: self.converge_deadline_s,
            tls_creds: self.tls_creds.clone(),
            tls_hostname: self.tls_hostname.clone(),
            tls_authz: self.tls_authz.clone(),
            ..MigrationParameters::default()
        }
    }

    /// How the multifd channels work.
    pub fn multifd_settings(&self) -> crate::migration::multifd::Settings {
        crate::migration::multifd::Settings {
            channels: self.multifd_channels,
            compression: self.multifd_compression,
            zlib_level: self.multifd_zlib_level,
            zstd_level: self.multifd_zstd_level,
        }
    }

    /// The TLS parameters, for resolving them against the `-object`s.
    pub fn tls(&self) -> crate::migration::tls::TlsParams<'_> {
        crate::migration::tls::TlsParams {
            creds: &self.tls_creds,
            hostname: &self.tls_hostname,
            authz: &self.tls_authz,
        }
    }

    /// `migrate-set-parameters`: everything is checked before anything changes.
    pub fn set(&mut self, p: &MigrateSetParameters) -> Result<(), ParamsError> {
        check(p, self)?;
        let t = &mut self.throttle;
        t.trigger_threshold = p.throttle_trigger_threshold.unwrap_or(t.trigger_threshold);
        t.initial = p.cpu_throttle_initial.unwrap_or(t.initial);
        t.increment = p.cpu_throttle_increment.unwrap_or(t.increment);
        t.tailslow = p.cpu_throttle_tailslow.unwrap_or(t.tailslow);
        t.max = p.max_cpu_throttle.unwrap_or(t.max);
        if let Some(v) = p.x_godwit_converge_deadline {
            self.converge_deadline_s = v;
        }
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
        if let Some(c) = p
            .multifd_compression
            .as_deref()
            .and_then(crate::migration::multifd::Compression::from_name)
        {
            self.multifd_compression = c;
        }
        self.multifd_zlib_level = p.multifd_zlib_level.unwrap_or(self.multifd_zlib_level);
        self.multifd_zstd_level = p.multifd_zstd_level.unwrap_or(self.multifd_zstd_level);
        if let Some(v) = p.block_incremental {
            self.block_incremental = v;
        }
        // As in QEMU, the objects are looked up when a migration uses them.
        for (field, value) in [
            (&mut self.tls_creds, &p.tls_creds),
            (&mut self.tls_hostname, &p.tls_hostname),
            (&mut self.tls_authz, &p.tls_authz),
        ] {
            if let Some(v) = value {
                field.clone_from(v);
            }
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
                    MigrationCapability::AutoConverge => self.auto_converge,
                    MigrationCapability::LateBlockActivate => self.late_block_activate,
                    MigrationCapability::ReturnPath => self.return_path,
                    MigrationCapability::Xbzrle => self.xbzrle,
                    MigrationCapability::PostcopyRam => self.postcopy_ram,
                    MigrationCapability::Multifd => self.multifd,
                    _ => false,
                },
            })
            .collect()
    }

    /// `migrate-set-capabilities`: godwit does `block`, `events`, `auto-converge`, `xbzrle`,
    /// `late-block-activate` and `return-path`; switching another one on is refused (before
    /// anything changes).
    pub fn set_capabilities(&mut self, caps: &[MigrationCapabilityStatus]) -> Result<(), ParamsError> {
        for c in caps {
            if c.state && !supported(c.capability) {
                return Err(ParamsError::Capability(c.capability));
            }
        }
        let after = |cap: MigrationCapability, now: bool| caps.iter().rev().find(|c| c.capability == cap).map_or(now, |c| c.state);
        if after(MigrationCapability::PostcopyRam, self.postcopy_ram) && after(MigrationCapability::Multifd, self.multifd) {
            return Err(ParamsError::PostcopyMultifd);
        }
        for c in caps {
            match c.capability {
                MigrationCapability::Block => self.block = c.state,
                MigrationCapability::Events => self.events = c.state,
                MigrationCapability::AutoConverge => self.auto_converge = c.state,
                MigrationCapability::LateBlockActivate => self.late_block_activate = c.state,
                MigrationCapability::ReturnPath => self.return_path = c.state,
                MigrationCapability::Xbzrle => self.xbzrle = c.state,
                MigrationCapability::PostcopyRam => self.postcopy_ram = c.state,
                MigrationCapability::Multifd => self.multifd = c.state,
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
        MigrationCapability::Xbzrle
            | MigrationCapability::Multifd
            | MigrationCapability::Block
            | MigrationCapability::Events
            | MigrationCapability::AutoConverge
            | MigrationCapability::LateBlockActivate
            | MigrationCapability::ReturnPath
            | MigrationCapability::PostcopyRam
    )
}

/// Whether `v`, if given, differs from the value `now`.
fn changes<T: PartialEq>(v: Option<T>, now: T) -> bool {
    v.is_some_and(|v| v != now)
}

/// QEMU's range checks (`migrate_params_check`, in its order, on the values the parameters
/// would have: `cur` holds them now), then godwit's refusal of parameters it would not act
/// on, when they would change: one given its current value (what
/// `query-migrate-parameters` shows, as libvirt sends every parameter back after a job)
/// changes nothing and passes, from HMP and QMP alike.
fn check(p: &MigrateSetParameters, cur: &Params) -> Result<(), ParamsError> {
    let out = |v: Option<u8>, lo: u8, hi: u8| v.is_some_and(|v| v < lo || v > hi);
    if out(p.throttle_trigger_threshold, 1, 100) {
        return Err(ParamsError::ThrottleRange {
            name: "throttle_trigger_threshold",
            range: "1 to 100",
        });
    }
    for (name, v) in [
        ("cpu_throttle_initial", p.cpu_throttle_initial),
        ("cpu_throttle_increment", p.cpu_throttle_increment),
    ] {
        if out(v, 1, 99) {
            return Err(ParamsError::ThrottleRange { name, range: "1 to 99" });
        }
    }
    if p.downtime_limit.is_some_and(|v| v > MAX_DOWNTIME_MS) {
        return Err(ParamsError::DowntimeLimit);
    }
    if p.multifd_channels == Some(0) {
        return Err(ParamsError::MultifdChannels);
    }
    if let Some(c) = p
        .multifd_compression
        .as_deref()
        .filter(|c| crate::migration::multifd::Compression::from_name(c).is_none())
    {
        return Err(ParamsError::Compression(c.to_string()));
    }
    for (name, v, max) in [
        ("multifd_zlib_level", p.multifd_zlib_level, 9),
        ("multifd_zstd_level", p.multifd_zstd_level, 20),
    ] {
        if v.is_some_and(|v| v > max) {
            return Err(ParamsError::Level { name, max });
        }
    }
    if p.xbzrle_cache_size.is_some_and(|v| !v.is_power_of_two() || v < 4096) {
        return Err(ParamsError::XbzrleCacheSize);
    }
    let t = &cur.throttle;
    let (initial, max) = (p.cpu_throttle_initial.unwrap_or(t.initial), p.max_cpu_throttle.unwrap_or(t.max));
    if max < initial || max > 99 {
        return Err(ParamsError::ThrottleRange {
            name: "max_cpu_throttle",
            range: "cpu_throttle_initial to 99",
        });
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
    let now = cur.info();
    let unsupported = [
        ("compress-level", changes(p.compress_level, now.compress_level)),
        ("compress-threads", changes(p.compress_threads, now.compress_threads)),
        ("compress-wait-thread", changes(p.compress_wait_thread, now.compress_wait_thread)),
        ("decompress-threads", changes(p.decompress_threads, now.decompress_threads)),
        ("x-checkpoint-delay", changes(p.x_checkpoint_delay, now.x_checkpoint_delay)),
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
    fn postcopy_and_multifd_exclude_each_other() {
        let on = |capability, state| MigrationCapabilityStatus { capability, state };
        let mut p = Params::default();
        p.set_capabilities(&[on(MigrationCapability::Multifd, true)]).unwrap();
        let e = p.set_capabilities(&[on(MigrationCapability::PostcopyRam, true)]).unwrap_err();
        assert_eq!(e.to_string(), "Postcopy is not yet compatible with multifd");
        assert!(!p.postcopy_ram, "a refusal changes nothing");
        let both = [on(MigrationCapability::Multifd, false), on(MigrationCapability::PostcopyRam, true)];
        p.set_capabilities(&both).unwrap();
        assert!(p.postcopy_ram && !p.multifd);
        assert!(p.set_capabilities(&[on(MigrationCapability::Multifd, true)]).is_err());
    }

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
        // QEMU 7.2: a power of two of at least a page, whatever the guest's size.
        for bad in [0, 2048, 100 << 20] {
            let m = MigrateSetParameters {
                xbzrle_cache_size: Some(bad),
                ..MigrateSetParameters::default()
            };
            assert_eq!(p.set(&m), Err(ParamsError::XbzrleCacheSize), "{bad}");
        }
        for good in [4096, 1 << 30] {
            let m = MigrateSetParameters {
                xbzrle_cache_size: Some(good),
                ..MigrateSetParameters::default()
            };
            p.set(&m).unwrap();
            assert_eq!(p.info().xbzrle_cache_size, good);
        }
        p = Params::default();
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
        let threads = MigrateSetParameters {
            compress_threads: Some(4),
            ..MigrateSetParameters::default()
        };
        let e = p.set(&threads).unwrap_err();
        assert_eq!(e, ParamsError::Unsupported("compress-threads"));
        assert_eq!(
            e.to_string(),
            "parameter 'compress-threads' has no effect in godwit and is not supported"
        );
        // The value it has now (QEMU's default) changes nothing: it passes, with the rest.
        let same = MigrateSetParameters {
            compress_threads: Some(8),
            compress_level: Some(1),
            compress_wait_thread: Some(true),
            decompress_threads: Some(2),
            x_checkpoint_delay: Some(20000),
            multifd_compression: Some("none".into()),
            multifd_zlib_level: Some(1),
            multifd_zstd_level: Some(1),
            downtime_limit: Some(500),
            ..MigrateSetParameters::default()
        };
        p.set(&same).unwrap();
        assert_eq!(p.info().downtime_limit, 500);
        let delay = MigrateSetParameters {
            x_checkpoint_delay: Some(100),
            downtime_limit: Some(400),
            ..same.clone()
        };
        assert_eq!(p.set(&delay), Err(ParamsError::Unsupported("x-checkpoint-delay")));
        assert_eq!(p.info().downtime_limit, 500, "nothing changed");
        let tls = MigrateSetParameters {
            tls_creds: Some("tls0".into()),
            tls_hostname: Some("dest.example.com".into()),
            ..MigrateSetParameters::default()
        };
        p.set(&tls).unwrap();
        assert_eq!((p.info().tls_creds.as_str(), p.info().tls_authz.as_str()), ("tls0", ""));
        p.set(&MigrateSetParameters {
            tls_creds: Some(String::new()),
            ..MigrateSetParameters::default()
        })
        .unwrap();
        assert_eq!((p.tls_creds.as_str(), p.tls_hostname.as_str()), ("", "dest.example.com"));
        p.set(&MigrateSetParameters {
            max_bandwidth: Some(5),
            ..MigrateSetParameters::default()
        })
        .unwrap();
        assert_eq!(p.info().max_bandwidth, 5);
    }

    #[test]
    fn multifd_parameters_are_checked_then_kept() {
        let mut p = Params::default();
        let set = |p: &mut Params, m: MigrateSetParameters| p.set(&m).map_err(|e| e.to_string());
        let lz4 = MigrateSetParameters {
            multifd_compression: Some("lz4".into()),
            ..Default::default()
        };
        assert_eq!(
            set(&mut p, lz4).unwrap_err(),
            "Parameter 'multifd-compression' does not accept value 'lz4'"
        );
        let zlib = MigrateSetParameters {
            multifd_zlib_level: Some(10),
            multifd_compression: Some("zlib".into()),
            ..Default::default()
        };
        assert_eq!(
            set(&mut p, zlib).unwrap_err(),
            "Parameter 'multifd_zlib_level' expects a value between 0 and 9"
        );
        let zstd = MigrateSetParameters {
            multifd_zstd_level: Some(21),
            ..Default::default()
        };
        assert_eq!(
            set(&mut p, zstd).unwrap_err(),
            "Parameter 'multifd_zstd_level' expects a value between 0 and 20"
        );
        assert_eq!(p, Params::default(), "nothing changed");
        let none = MigrateSetParameters {
            multifd_channels: Some(0),
            ..Default::default()
        };
        assert_eq!(
            set(&mut p, none).unwrap_err(),
            "Parameter 'multifd_channels' expects a value between 1 and 255"
        );
        let good = MigrateSetParameters {
            multifd_channels: Some(255),
            multifd_compression: Some("zstd".into()),
            multifd_zlib_level: Some(9),
            multifd_zstd_level: Some(20),
            ..Default::default()
        };
        set(&mut p, good).unwrap();
        let i = p.info();
        assert_eq!((i.multifd_channels, i.multifd_compression.as_str()), (255, "zstd"));
        assert_eq!((i.multifd_zlib_level, i.multifd_zstd_level), (9, 20));
        let s = p.multifd_settings();
        assert_eq!(
            (s.channels, s.compression, s.zlib_level, s.zstd_level),
            (255, crate::migration::multifd::Compression::Zstd, 9, 20)
        );
    }

    #[test]
    fn capabilities() {
        let mut p = Params::default();
        let listed: Vec<&str> = p.capabilities().iter().map(|c| c.capability.name()).collect();
        assert_eq!(
            listed,
            [
                "xbzrle",
                "auto-converge",
                "events",
                "postcopy-ram",
                "block",
                "return-path",
                "multifd",
                "late-block-activate"
            ],
            "only what godwit has"
        );
        let on = |capability| MigrationCapabilityStatus { capability, state: true };
        let e = p
            .set_capabilities(&[on(MigrationCapability::Block), on(MigrationCapability::Compress)])
            .unwrap_err();
        assert_eq!(e, ParamsError::Capability(MigrationCapability::Compress));
        assert_eq!(e.to_string(), "capability 'compress' is not supported by godwit");
        assert!(!p.block, "nothing changed");
        p.set_capabilities(&[on(MigrationCapability::Block), on(MigrationCapability::Events)])
            .unwrap();
        assert!(p.block && p.events);
        p.set_capabilities(&[on(MigrationCapability::LateBlockActivate), on(MigrationCapability::ReturnPath)])
            .unwrap();
        assert!(p.late_block_activate && p.return_path);
        p.set_capabilities(&[on(MigrationCapability::Xbzrle)]).unwrap();
        assert!(p.xbzrle && p.capabilities()[0].state, "xbzrle is listed first, as in QEMU");
        p.set_capabilities(&[on(MigrationCapability::Multifd)]).unwrap();
        assert!(p.multifd && p.capabilities()[5].state);
    }

    #[test]
    fn throttle_parameters_are_checked_like_qemu() {
        let mut p = Params::default();
        let set = |p: &mut Params, m: MigrateSetParameters| p.set(&m).map_err(|e| e.to_string());
        let e = set(
            &mut p,
            MigrateSetParameters {
                max_cpu_throttle: Some(10),
                ..Default::default()
            },
        );
        assert_eq!(
            e.unwrap_err(),
            "Parameter 'max_cpu_throttle' expects an integer in the range of cpu_throttle_initial to 99"
        );
        let e = set(
            &mut p,
            MigrateSetParameters {
                cpu_throttle_increment: Some(100),
                ..Default::default()
            },
        );
        assert_eq!(
            e.unwrap_err(),
            "Parameter 'cpu_throttle_increment' expects an integer in the range of 1 to 99"
        );
        let e = set(
            &mut p,
            MigrateSetParameters {
                throttle_trigger_threshold: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(
            e.unwrap_err(),
            "Parameter 'throttle_trigger_threshold' expects an integer in the range of 1 to 100"
        );
        set(
            &mut p,
            MigrateSetParameters {
                max_cpu_throttle: Some(50),
                ..Default::default()
            },
        )
        .unwrap();
        // The initial value is checked against the maximum it would have.
        let e = set(
            &mut p,
            MigrateSetParameters {
                cpu_throttle_initial: Some(60),
                ..Default::default()
            },
        );
        assert_eq!(
            e.unwrap_err(),
            "Parameter 'max_cpu_throttle' expects an integer in the range of cpu_throttle_initial to 99"
        );
        set(
            &mut p,
            MigrateSetParameters {
                cpu_throttle_initial: Some(5),
                cpu_throttle_tailslow: Some(true),
                x_godwit_converge_deadline: Some(30),
                ..Default::default()
            },
        )
        .unwrap();
        let i = p.info();
        assert_eq!((i.cpu_throttle_initial, i.max_cpu_throttle, i.cpu_throttle_tailslow), (5, 50, true));
        assert_eq!(i.x_godwit_converge_deadline, 30);
        let on = MigrationCapabilityStatus {
            capability: MigrationCapability::AutoConverge,
            state: true,
        };
        p.set_capabilities(&[on]).unwrap();
        let listed = p
            .capabilities()
            .into_iter()
            .find(|c| c.capability == MigrationCapability::AutoConverge);
        assert!(p.auto_converge && listed.is_some_and(|c| c.state));
    }
}
