//! The migration commands: `migrate`, `migrate_cancel`, `migrate_incoming` and the
//! settings, with QEMU 7.2's checks and error texts.

use super::{Machine, RunState};
use crate::migration::disks::Mode;
use crate::migration::info::{Stats, Status};
use crate::migration::{params, send, uri};
use devices::bus::lock;
use monitor::{Outcome, Pending, SizeUnit, parse_size};
use std::io::Write;
use std::sync::Arc;

/// Polled (every second) by a non-detached `migrate` until the migration leaves
/// setup/active. Like QEMU, a block migration shows `Completed N %\r` each time and a
/// newline at the end; a RAM-only migration prints nothing.
struct Wait {
    m: Arc<Machine>,
    block: bool,
}

impl Pending for Wait {
    fn poll(&mut self, out: &mut dyn Write) -> bool {
        let s = lock(&self.m.outgoing.stats);
        if s.status.in_progress() {
            // Like QEMU, nothing until the disk figures exist (setup is over).
            if let (true, Some((done, left, total))) = (self.block, s.disk) {
                let pct = if left > 0 && total > 0 { done * 100 / total } else { 100 };
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

pub fn start(m: &Arc<Machine>, detach: bool, blk: bool, inc: bool, resume: bool, spec: &str) -> Result<Outcome, String> {
    if resume {
        return Err("Cannot resume if there is no paused migration".into());
    }
    if m.migrating() {
        return Err("There's a migration process in progress".into());
    }
    match m.state() {
        RunState::InMigrate => return Err("Guest is waiting for an incoming migration".into()),
        RunState::PostMigrate => return Err("Can't migrate the vm that was paused due to previous migration".into()),
        _ => {}
    }
    let mode = {
        let p = lock(&m.outgoing.params);
        match (blk || inc, p.block) {
            (true, true) => return Err("Command options are incompatible with current migration capabilities".into()),
            (true, false) if inc => Mode::Incremental,
            (true, false) => Mode::Full,
            (false, true) if p.block_incremental => Mode::Incremental,
            (false, true) => Mode::Full,
            (false, false) => Mode::Shared,
        }
    };
    let vm = m.vm().ok_or("no VM")?;
    let Some(target) = uri::parse(spec).filter(|u| *u != uri::Uri::Defer) else {
        *lock(&m.outgoing.stats) = Stats {
            status: Status::Failed,
            ..Stats::default()
        };
        return Err("Parameter 'uri' expects a valid migration protocol".into());
    };
    m.outgoing.begin();
    *lock(&m.outgoing.stats) = Stats {
        status: Status::Setup,
        total_ram: vm.mem_size(),
        ..Stats::default()
    };
    if let Some(old) = lock(&m.outgoing_thread).take() {
        let _ = old.join();
    }
    let machine = m.clone();
    let handle = std::thread::Builder::new()
        .name("migration".into())
        .spawn(move || {
            let conn = match uri::connect(&target) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("godwit: {e}");
                    *lock(&machine.outgoing.stats) = Stats {
                        status: Status::Failed,
                        error: Some(e),
                        ..Stats::default()
                    };
                    return;
                }
            };
            machine.outgoing.connected(conn.abort);
            // A completed migration, or one whose outcome is unknown, leaves the guest to
            // the destination: `postmigrate`. Otherwise the run state stays what it is.
            let settle = |r: &Result<(), send::Stop>| {
                if matches!(r, Ok(()) | Err(send::Stop::Undecided(_))) {
                    machine.set_state(RunState::PostMigrate);
                }
            };
            let result = send::run(&vm, conn.writer, conn.reply, &machine.outgoing, mode, &settle);
            if let Some(mut child) = conn.child {
                let _ = child.wait();
            }
            machine.outgoing.disconnected();
            if let Err(send::Stop::Failed(e) | send::Stop::Undecided(e)) = result {
                eprintln!("godwit: {e}");
            }
        })
        .map_err(|e| format!("cannot start the migration thread: {e}"))?;
    *lock(&m.outgoing_thread) = Some(handle);
    if detach {
        Ok(Outcome::Done)
    } else {
        Ok(Outcome::Wait(Box::new(Wait {
            m: m.clone(),
            block: mode != Mode::Shared,
        })))
    }
}

/// Ends any outgoing migration before the VM goes away (a reset rebuilds it): one not yet
/// committed fails with `why`; one that is, is waited for. Returns once its thread is done.
pub fn end_outgoing(m: &Machine, why: &str) {
    if m.migrating() {
        m.outgoing.abort_for(why);
    }
    if let Some(t) = lock(&m.outgoing_thread).take() {
        let _ = t.join();
    }
}

/// Asks a running migration to stop; the source keeps running.
pub fn cancel(m: &Machine) {
    if !m.migrating() {
        return;
    }
    // Once END is on its way the destination decides; QEMU too ignores a late cancel.
    m.outgoing.request_cancel();
}

pub fn incoming(m: &Arc<Machine>, spec: &str) -> Result<(), String> {
    let mut inc = lock(&m.incoming);
    if !inc.deferred {
        return Err("'-incoming' was not specified on the command line".into());
    }
    if inc.started {
        return Err("The incoming migration has already been started".into());
    }
    let parsed = uri::parse(spec)
        .filter(|u| *u != uri::Uri::Defer)
        .ok_or_else(|| format!("unknown migration protocol: {spec}"))?;
    drop(inc);
    let vm = m.vm().ok_or("no VM")?;
    crate::incoming::start_parsed(&parsed, vm, m.events.clone(), m.incoming.clone())?;
    inc = lock(&m.incoming);
    inc.started = true;
    Ok(())
}

pub fn set_speed(m: &Machine, bytes_per_second: u64) {
    lock(&m.outgoing.params).max_bandwidth = bytes_per_second;
}

/// `migrate_set_downtime SECONDS`; like QEMU's HMP, an out-of-range value is ignored.
pub fn set_downtime(m: &Machine, seconds: f64) {
    let ms = seconds * 1000.0;
    if ms.is_finite() && ms >= 0.0 && ms <= params::MAX_DOWNTIME_MS as f64 {
        lock(&m.outgoing.params).downtime_limit_ms = ms as u64;
    }
}

pub fn set_parameter(m: &Machine, name: &str, value: &str) -> Result<(), String> {
    let size = |unit| parse_size(value, unit).map_err(|_| format!("Invalid size {value}"));
    let mut p = lock(&m.outgoing.params);
    match name {
        "max-bandwidth" => p.max_bandwidth = size(SizeUnit::MiB)?,
        "downtime-limit" => {
            let ms = parse_size(value, SizeUnit::Bytes)
                .map_err(|_| "Parameter 'downtime-limit' expects a non-negative number below 2^64".to_string())?;
            if ms > params::MAX_DOWNTIME_MS {
                return Err("Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms".into());
            }
            p.downtime_limit_ms = ms;
        }
        "xbzrle-cache-size" => {
            let v = size(SizeUnit::Bytes)?;
            if !v.is_power_of_two() || v < 4096 {
                return Err("Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size".into());
            }
            p.xbzrle_cache_size = v;
        }
        "max-postcopy-bandwidth" => p.max_postcopy_bandwidth = size(SizeUnit::Bytes)?,
        "multifd-channels" => match value.parse::<u64>() {
            Ok(n @ 1..=255) => p.multifd_channels = n,
            _ => return Err("Parameter 'multifd_channels' expects a value between 1 and 255".into()),
        },
        "block-incremental" => {
            p.block_incremental = match value {
                "on" => true,
                "off" => false,
                _ => return Err("Expected 'on' or 'off'".into()),
            }
        }
        "block-bitmap-mapping" => return Err("The block-bitmap-mapping parameter can only be set through QMP".into()),
        "announce-initial"
        | "announce-max"
        | "announce-rounds"
        | "announce-step"
        | "compress-level"
        | "compress-threads"
        | "compress-wait-thread"
        | "decompress-threads"
        | "throttle-trigger-threshold"
        | "cpu-throttle-initial"
        | "cpu-throttle-increment"
        | "cpu-throttle-tailslow"
        | "max-cpu-throttle"
        | "tls-creds"
        | "tls-hostname"
        | "tls-authz"
        | "x-checkpoint-delay"
        | "multifd-compression" => {
            return Err(format!("parameter '{name}' has no effect in godwit and is not supported"));
        }
        _ => return Err(format!("invalid parameter value: {name}")),
    }
    Ok(())
}
