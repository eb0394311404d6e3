//! The migration commands in HMP's words: `migrate` (waiting for the end unless `-d`),
//! `migrate_set_parameter NAME VALUE` with HMP's value syntax, `migrate_set_capability`,
//! `migrate_set_downtime`, and `info migrate*` in QEMU 7.2's layouts.

use crate::engine::migration::MAX_DOWNTIME_MS;
use crate::engine::{
    Engine, EngineError, FdStore, MigrateArgs, MigrateSetParameters, MigrationCapability, MigrationCapabilityStatus, MigrationInfo,
    MigrationParameters, MigrationStats, XbzrleCacheStats,
};
use crate::size::{SizeUnit, parse_size};
use crate::vmm::{Outcome, Pending};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;

/// Polled (every second) by a non-detached `migrate` until the migration leaves
/// setup/active. Like QEMU, a block migration shows `Completed N %\r` each time and a
/// newline at the end; a RAM-only migration prints nothing.
struct Wait {
    engine: Arc<dyn Engine>,
    block: bool,
}

impl Pending for Wait {
    fn poll(&mut self, out: &mut dyn Write) -> bool {
        let info = self.engine.query_migrate();
        // In post-copy the prompt comes back as soon as it starts, as in QEMU.
        if info.status.is_some_and(|s| s.in_progress() && !s.in_postcopy()) {
            // Like QEMU, nothing until the disk figures exist (setup is over).
            if let (true, Some(d)) = (self.block, &info.disk) {
                let pct = if d.remaining > 0 && d.total > 0 {
                    d.transferred * 100 / d.total
                } else {
                    100
                };
                let _ = write!(out, "Completed {pct} %\r");
            }
            return false;
        }
        if self.block {
            let _ = writeln!(out);
        }
        true
    }
}

pub fn start(engine: &Arc<dyn Engine>, args: &MigrateArgs, fds: &FdStore) -> Result<Outcome, String> {
    engine.migrate(args, fds).map_err(|e| e.desc)?;
    if args.detach {
        return Ok(Outcome::Done);
    }
    let block_capability = engine
        .query_migrate_capabilities()
        .iter()
        .any(|c| c.capability == MigrationCapability::Block && c.state);
    Ok(Outcome::Wait(Box::new(Wait {
        engine: engine.clone(),
        block: args.blk || args.inc || block_capability,
    })))
}

/// `migrate_set_downtime SECONDS`; like QEMU's HMP, an out-of-range value is ignored.
pub fn set_downtime(e: &dyn Engine, seconds: f64) -> Result<(), EngineError> {
    let ms = seconds * 1000.0;
    if !(ms.is_finite() && ms >= 0.0 && ms <= MAX_DOWNTIME_MS as f64) {
        return Ok(());
    }
    e.migrate_set_parameters(&MigrateSetParameters {
        downtime_limit: Some(ms as u64),
        ..MigrateSetParameters::default()
    })
}

pub fn set_capability(e: &dyn Engine, name: &str, state: bool) -> Result<(), EngineError> {
    let capability = MigrationCapability::from_name(name).ok_or_else(|| format!("invalid parameter value: {name}"))?;
    e.migrate_set_capabilities(&[MigrationCapabilityStatus { capability, state }])
}

/// HMP's value syntaxes, with QEMU 7.2's complaints.
fn size(name: &str, v: &str) -> Result<u64, String> {
    parse_size(v, SizeUnit::Bytes).map_err(|_| format!("Parameter '{name}' expects a non-negative number below 2^64"))
}

fn uint(name: &str, v: &str, max: u64, ty: &str) -> Result<u64, String> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse::<u64>().ok(),
    };
    parsed
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("Parameter '{name}' expects {ty}"))
}

fn u8_of(name: &str, v: &str) -> Result<u8, String> {
    uint(name, v, u64::from(u8::MAX), "uint8_t").map(|n| n as u8)
}

fn flag(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("Parameter '{name}' expects 'on' or 'off'")),
    }
}

/// `migrate_set_parameter NAME VALUE`: the value parsed as HMP parses it for that
/// parameter, then set through the engine (which checks ranges and refuses what godwit
/// does not do).
pub fn set_parameter(e: &dyn Engine, name: &str, v: &str) -> Result<(), EngineError> {
    let mut p = MigrateSetParameters::default();
    match name {
        "announce-initial" => p.announce_initial = Some(size(name, v)?),
        "announce-max" => p.announce_max = Some(size(name, v)?),
        "announce-rounds" => p.announce_rounds = Some(size(name, v)?),
        "announce-step" => p.announce_step = Some(size(name, v)?),
        "compress-level" => p.compress_level = Some(u8_of(name, v)?),
        "compress-threads" => p.compress_threads = Some(u8_of(name, v)?),
        "compress-wait-thread" => p.compress_wait_thread = Some(flag(name, v)?),
        "decompress-threads" => p.decompress_threads = Some(u8_of(name, v)?),
        "throttle-trigger-threshold" => p.throttle_trigger_threshold = Some(u8_of(name, v)?),
        "cpu-throttle-initial" => p.cpu_throttle_initial = Some(u8_of(name, v)?),
        "cpu-throttle-increment" => p.cpu_throttle_increment = Some(u8_of(name, v)?),
        "cpu-throttle-tailslow" => p.cpu_throttle_tailslow = Some(flag(name, v)?),
        "max-cpu-throttle" => p.max_cpu_throttle = Some(u8_of(name, v)?),
        "tls-creds" => p.tls_creds = Some(v.to_string()),
        "tls-hostname" => p.tls_hostname = Some(v.to_string()),
        "tls-authz" => p.tls_authz = Some(v.to_string()),
        // A plain number means MiB here, unlike every other size.
        "max-bandwidth" => p.max_bandwidth = Some(parse_size(v, SizeUnit::MiB).map_err(|_| format!("Invalid size {v}"))?),
        "downtime-limit" => p.downtime_limit = Some(size(name, v)?),
        "x-checkpoint-delay" => p.x_checkpoint_delay = Some(uint(name, v, u64::from(u32::MAX), "uint32_t")? as u32),
        "block-incremental" => p.block_incremental = Some(flag(name, v)?),
        "multifd-channels" => p.multifd_channels = Some(u8_of(name, v)?),
        "multifd-compression" => match v {
            "none" | "zlib" | "zstd" => p.multifd_compression = Some(v.to_string()),
            _ => return Err(format!("Parameter '{name}' does not accept value '{v}'").into()),
        },
        "multifd-zlib-level" => p.multifd_zlib_level = Some(u8_of(name, v)?),
        "multifd-zstd-level" => p.multifd_zstd_level = Some(u8_of(name, v)?),
        "xbzrle-cache-size" => p.xbzrle_cache_size = Some(size(name, v)?),
        "max-postcopy-bandwidth" => p.max_postcopy_bandwidth = Some(size(name, v)?),
        "x-godwit-converge-deadline" => p.x_godwit_converge_deadline = Some(uint(name, v, u64::MAX, "uint64_t")?),
        "block-bitmap-mapping" => return Err("The block-bitmap-mapping parameter can only be set through QMP".into()),
        _ => return Err(format!("invalid parameter value: {name}").into()),
    }
    e.migrate_set_parameters(&p)
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// `info migrate_parameters`, in QEMU 7.2's order and units.
pub fn format_parameters(p: &MigrationParameters) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "announce-initial: {} ms", p.announce_initial);
    let _ = writeln!(o, "announce-max: {} ms", p.announce_max);
    let _ = writeln!(o, "announce-rounds: {}", p.announce_rounds);
    let _ = writeln!(o, "announce-step: {} ms", p.announce_step);
    let _ = writeln!(o, "compress-level: {}", p.compress_level);
    let _ = writeln!(o, "compress-threads: {}", p.compress_threads);
    let _ = writeln!(o, "compress-wait-thread: {}", on_off(p.compress_wait_thread));
    let _ = writeln!(o, "decompress-threads: {}", p.decompress_threads);
    let _ = writeln!(o, "throttle-trigger-threshold: {}", p.throttle_trigger_threshold);
    let _ = writeln!(o, "cpu-throttle-initial: {}", p.cpu_throttle_initial);
    let _ = writeln!(o, "cpu-throttle-increment: {}", p.cpu_throttle_increment);
    let _ = writeln!(o, "cpu-throttle-tailslow: {}", on_off(p.cpu_throttle_tailslow));
    let _ = writeln!(o, "max-cpu-throttle: {}", p.max_cpu_throttle);
    let _ = writeln!(o, "tls-creds: '{}'", p.tls_creds);
    let _ = writeln!(o, "tls-hostname: '{}'", p.tls_hostname);
    let _ = writeln!(o, "max-bandwidth: {} bytes/second", p.max_bandwidth);
    let _ = writeln!(o, "downtime-limit: {} ms", p.downtime_limit);
    let _ = writeln!(o, "x-checkpoint-delay: {} ms", p.x_checkpoint_delay);
    let _ = writeln!(o, "block-incremental: {}", on_off(p.block_incremental));
    let _ = writeln!(o, "multifd-channels: {}", p.multifd_channels);
    let _ = writeln!(o, "multifd-compression: {}", p.multifd_compression);
    let _ = writeln!(o, "xbzrle-cache-size: {} bytes", p.xbzrle_cache_size);
    let _ = writeln!(o, "max-postcopy-bandwidth: {}", p.max_postcopy_bandwidth);
    let _ = writeln!(o, "tls-authz: '{}'", p.tls_authz);
    // godwit's own, after QEMU's lines and only when set (as QEMU prints
    // block-bitmap-mapping), so the default listing is QEMU's.
    if p.x_godwit_converge_deadline != 0 {
        let _ = writeln!(o, "x-godwit-converge-deadline: {} s", p.x_godwit_converge_deadline);
    }
    o
}

/// `info migrate_capabilities`.
pub fn format_capabilities(caps: &[MigrationCapabilityStatus]) -> String {
    caps.iter()
        .map(|c| format!("{}: {}\n", c.capability.name(), on_off(c.state)))
        .collect()
}

const GLOBALS: &str = "globals:\nstore-global-state: on\nonly-migratable: off\nsend-configuration: on\nsend-section-footer: on\ndecompress-error-check: on\nclear-bitmap-shift: 18\n";

fn kb(b: u64) -> u64 {
    b >> 10
}

fn ram_lines(o: &mut String, r: &MigrationStats) {
    let _ = writeln!(o, "transferred ram: {} kbytes", kb(r.transferred));
    let _ = writeln!(o, "throughput: {:.2} mbps", r.mbps);
    let _ = writeln!(o, "remaining ram: {} kbytes", kb(r.remaining));
    let _ = writeln!(o, "total ram: {} kbytes", kb(r.total));
    let _ = writeln!(o, "duplicate: {} pages", r.duplicate);
    let _ = writeln!(o, "skipped: {} pages", r.skipped);
    let _ = writeln!(o, "normal: {} pages", r.normal);
    let _ = writeln!(o, "normal bytes: {} kbytes", kb(r.normal_bytes));
    let _ = writeln!(o, "dirty sync count: {}", r.dirty_sync_count);
    let _ = writeln!(o, "page size: {} kbytes", kb(r.page_size));
    let _ = writeln!(o, "multifd bytes: {} kbytes", kb(r.multifd_bytes));
    let _ = writeln!(o, "pages-per-second: {}", r.pages_per_second);
    let optional = [
        (r.dirty_pages_rate, "dirty pages rate", r.dirty_pages_rate, "pages"),
        (r.postcopy_requests, "postcopy request count", r.postcopy_requests, ""),
        (r.precopy_bytes, "precopy ram", kb(r.precopy_bytes), "kbytes"),
        (r.downtime_bytes, "downtime ram", kb(r.downtime_bytes), "kbytes"),
        (r.postcopy_bytes, "postcopy ram", kb(r.postcopy_bytes), "kbytes"),
    ];
    for (present, label, value, unit) in optional {
        if present != 0 {
            let _ = writeln!(o, "{label}: {value}{}{unit}", if unit.is_empty() { "" } else { " " });
        }
    }
}

fn xbzrle_lines(o: &mut String, x: &XbzrleCacheStats) {
    let _ = writeln!(o, "cache size: {} bytes", x.cache_size);
    let _ = writeln!(o, "xbzrle transferred: {} kbytes", kb(x.bytes));
    let _ = writeln!(o, "xbzrle pages: {} pages", x.pages);
    let _ = writeln!(o, "xbzrle cache miss: {} pages", x.cache_miss);
    let _ = writeln!(o, "xbzrle cache miss rate: {:.2}", x.cache_miss_rate);
    let _ = writeln!(o, "xbzrle encoding rate: {:.2}", x.encoding_rate);
    let _ = writeln!(o, "xbzrle overflow: {}", x.overflow);
}

/// `info migrate`, line for line as QEMU 7.2 prints the same `query-migrate` answer.
pub fn format_migrate(info: &MigrationInfo) -> String {
    let mut o = String::from(GLOBALS);
    if let Some(status) = info.status {
        match &info.error_desc {
            Some(e) => {
                let _ = writeln!(o, "Migration status: {} ({e})", status.name());
            }
            None => {
                let _ = writeln!(o, "Migration status: {}", status.name());
            }
        }
        let _ = writeln!(o, "total time: {} ms", info.total_time.unwrap_or(0));
        if let Some(d) = info.expected_downtime {
            let _ = writeln!(o, "expected downtime: {d} ms");
        }
        if let Some(d) = info.downtime {
            let _ = writeln!(o, "downtime: {d} ms");
        }
        if let Some(s) = info.setup_time {
            let _ = writeln!(o, "setup: {s} ms");
        }
    }
    if let Some(r) = &info.ram {
        ram_lines(&mut o, r);
    }
    if let Some(d) = &info.disk {
        let _ = writeln!(o, "transferred disk: {} kbytes", kb(d.transferred));
        let _ = writeln!(o, "remaining disk: {} kbytes", kb(d.remaining));
        let _ = writeln!(o, "total disk: {} kbytes", kb(d.total));
    }
    if let Some(x) = &info.xbzrle_cache {
        xbzrle_lines(&mut o, x);
    }
    if let Some(pct) = info.cpu_throttle_percentage {
        let _ = writeln!(o, "cpu throttle percentage: {pct}");
    }
    if let Some(step) = &info.converge_step {
        let _ = writeln!(o, "x-godwit-converge-step: {step}");
    }
    if !info.socket_address.is_empty() {
        o.push_str("socket address: [\n");
        for a in &info.socket_address {
            let _ = writeln!(o, "\t{a}");
        }
        o.push_str("]\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MigrationStatus;

    #[test]
    fn completed_layout() {
        let info = MigrationInfo {
            status: Some(MigrationStatus::Completed),
            total_time: Some(36),
            downtime: Some(0),
            setup_time: Some(6),
            ram: Some(MigrationStats {
                transferred: 5224 << 10,
                total: 524808 << 10,
                duplicate: 130189,
                normal: 1018,
                normal_bytes: 1018 * 4096,
                dirty_sync_count: 2,
                mbps: 1456.654,
                page_size: 4096,
                precopy_bytes: 5204 << 10,
                downtime_bytes: 20 << 10,
                ..MigrationStats::default()
            }),
            ..MigrationInfo::default()
        };
        let want = "Migration status: completed\ntotal time: 36 ms\ndowntime: 0 ms\nsetup: 6 ms\ntransferred ram: 5224 kbytes\nthroughput: 1456.65 mbps\nremaining ram: 0 kbytes\ntotal ram: 524808 kbytes\nduplicate: 130189 pages\nskipped: 0 pages\nnormal: 1018 pages\nnormal bytes: 4072 kbytes\ndirty sync count: 2\npage size: 4 kbytes\nmultifd bytes: 0 kbytes\npages-per-second: 0\nprecopy ram: 5204 kbytes\ndowntime ram: 20 kbytes\n";
        assert_eq!(format_migrate(&info), format!("{GLOBALS}{want}"));
    }

    #[test]
    fn other_states() {
        assert_eq!(format_migrate(&MigrationInfo::default()), GLOBALS);
        let f = MigrationInfo {
            status: Some(MigrationStatus::Failed),
            error_desc: Some("Failed to connect to '127.0.0.1:1': Connection refused".into()),
            ..MigrationInfo::default()
        };
        assert!(
            format_migrate(&f)
                .ends_with("Migration status: failed (Failed to connect to '127.0.0.1:1': Connection refused)\ntotal time: 0 ms\n")
        );
        let d = MigrationInfo {
            socket_address: vec!["tcp:0.0.0.0:4444".into()],
            ..MigrationInfo::default()
        };
        assert!(format_migrate(&d).ends_with("socket address: [\n\ttcp:0.0.0.0:4444\n]\n"));
    }

    #[test]
    fn parameters_print_like_qemu() {
        let p = MigrationParameters::default();
        let t = format_parameters(&p);
        assert!(t.contains("\nmax-bandwidth: 134217728 bytes/second\ndowntime-limit: 300 ms\n"));
        assert!(t.starts_with("announce-initial: 50 ms\n") && t.ends_with("max-postcopy-bandwidth: 0\ntls-authz: ''\n"));
        assert_eq!(t.lines().count(), 24);
    }

    #[test]
    fn throttle_and_godwit_lines() {
        let info = MigrationInfo {
            status: Some(MigrationStatus::Active),
            disk: Some(MigrationStats::default()),
            cpu_throttle_percentage: Some(30),
            converge_step: Some("throttle".into()),
            ..MigrationInfo::default()
        };
        let t = format_migrate(&info);
        assert!(
            t.ends_with("total disk: 0 kbytes\ncpu throttle percentage: 30\nx-godwit-converge-step: throttle\n"),
            "{t}"
        );
        let p = MigrationParameters {
            x_godwit_converge_deadline: 20,
            ..MigrationParameters::default()
        };
        assert!(format_parameters(&p).ends_with("tls-authz: ''\nx-godwit-converge-deadline: 20 s\n"));
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["cpu-throttle-percentage"], 30);
        assert_eq!(json["x-godwit-converge-step"], "throttle");
        let q = serde_json::to_value(MigrationParameters::default()).unwrap();
        assert!(q.get("x-godwit-converge-deadline").is_none(), "not shown unless set");
    }

    #[test]
    fn xbzrle_lines_like_qemu() {
        let info = MigrationInfo {
            status: Some(MigrationStatus::Completed),
            disk: Some(MigrationStats::default()),
            xbzrle_cache: Some(XbzrleCacheStats {
                cache_size: 33554432,
                bytes: 467394 << 10,
                pages: 152943,
                cache_miss: 8212,
                cache_miss_rate: 0.001,
                encoding_rate: 1.3333,
                overflow: 5534,
            }),
            cpu_throttle_percentage: Some(30),
            ..MigrationInfo::default()
        };
        let t = format_migrate(&info);
        let want = "total disk: 0 kbytes\ncache size: 33554432 bytes\nxbzrle transferred: 467394 kbytes\n\
                    xbzrle pages: 152943 pages\nxbzrle cache miss: 8212 pages\nxbzrle cache miss rate: 0.00\n\
                    xbzrle encoding rate: 1.33\nxbzrle overflow: 5534\ncpu throttle percentage: 30\n";
        assert!(t.ends_with(want), "{t}");
        let json = serde_json::to_value(&info).unwrap();
        let x = &json["xbzrle-cache"];
        assert_eq!((x["cache-size"].as_u64(), x["cache-miss"].as_u64()), (Some(33554432), Some(8212)));
        assert_eq!(x["encoding-rate"], 1.3333);
    }
}
