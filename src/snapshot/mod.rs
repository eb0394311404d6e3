//! `savevm`, `loadvm`, `delvm`, `info snapshots` and `-loadvm`: internal snapshots of every
//! writable qcow2 disk, with the VM state (the migration stream) in the first one's
//! vmstate area, as QEMU stores them.

pub mod table;
pub mod vmstate;

use crate::migration::recv;
use crate::vm::Vm;
use crate::vm::disks::Disk;
use devices::bus::lock;
use vmstate::{VmstateReader, VmstateWriter, write_state};

const NO_DISK: &str = "no block device can store vmstate for snapshot";

/// The disks taking part, vmstate disk first: every writable disk, each of which must be
/// able to hold snapshots. Read-only disks are skipped.
fn participants(vm: &Vm) -> Result<Vec<&Disk>, String> {
    let mut v = Vec::new();
    for d in vm.disks().iter().filter(|d| !d.cfg.read_only) {
        if lock(&d.backend).as_qcow2().is_none() {
            return Err(format!("Device '{}' is writable but does not support snapshots", d.cfg.id));
        }
        v.push(d);
    }
    if v.is_empty() {
        return Err(NO_DISK.into());
    }
    Ok(v)
}

fn has(d: &Disk, tag: &str) -> bool {
    lock(&d.backend)
        .as_qcow2()
        .is_some_and(|q| q.snapshots().iter().any(|s| s.name == tag))
}

fn qcow2_op<T>(d: &Disk, f: impl FnOnce(&mut devices::block::Qcow2) -> Result<T, devices::block::BlockError>) -> Result<T, String> {
    let mut b = lock(&d.backend);
    let q = b
        .as_qcow2()
        .ok_or_else(|| format!("Device '{}' does not support snapshots", d.cfg.id))?;
    f(q).map_err(|e| format!("Device '{}': {e}", d.cfg.id))
}

/// QEMU's name for a snapshot saved without a tag: `vm-YYYYMMDDHHMMSS`, local time.
pub fn default_tag() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tm = table::local_time(now as i64);
    format!(
        "vm-{:04}{:02}{:02}{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Saves the VM under `tag` (replacing a snapshot of that name). The VM must be paused;
/// on failure no snapshot of that name is left behind and the images stay consistent.
pub fn save(vm: &Vm, tag: &str) -> Result<(), String> {
    let parts = participants(vm)?;
    for d in &parts {
        if has(d, tag) {
            qcow2_op(d, |q| q.snapshot_delete(tag))?;
        }
    }
    let result = (|| {
        let mut w = VmstateWriter::new(parts[0].backend.clone());
        let clock = write_state(vm, &mut w)?;
        let size = w.finish().map_err(|e| format!("cannot write the VM state: {e}"))?;
        for (i, d) in parts.iter().enumerate() {
            qcow2_op(d, |q| q.snapshot_create(tag, if i == 0 { size } else { 0 }, clock, None))?;
        }
        for d in &parts {
            lock(&d.backend).flush().map_err(|e| format!("Device '{}': {e}", d.cfg.id))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for d in &parts {
            if has(d, tag) {
                let _ = qcow2_op(d, |q| q.snapshot_delete(tag));
            }
            let _ = lock(&d.backend).flush();
        }
    }
    result
}

/// Checks that `tag` can be loaded into this VM, reading the saved state without changing
/// anything; returns the size of its VM state.
pub fn check_load(vm: &Vm, tag: &str) -> Result<u64, String> {
    let parts = participants(vm)?;
    if !parts.iter().all(|d| has(d, tag)) {
        return Err(format!("Snapshot '{tag}' does not exist in one or more devices"));
    }
    let size = qcow2_op(parts[0], |q| {
        Ok(q.snapshots().into_iter().find(|s| s.name == tag).map_or(0, |s| s.vm_state_size))
    })?;
    if size == 0 {
        return Err("This is a disk-only snapshot. Revert to it  offline using qemu-img".into());
    }
    recv::check(vm, Box::new(VmstateReader::of_snapshot(parts[0].backend.clone(), tag, size)))
        .map_err(|e| format!("Error while loading VM state: {e}"))?;
    Ok(size)
}

/// Reverts every disk to `tag` and loads its VM state. The VM must be paused; everything
/// that can be checked is checked (by `check_load`) before any disk is reverted.
pub fn load(vm: &Vm, tag: &str) -> Result<(), String> {
    let size = check_load(vm, tag)?;
    let parts = participants(vm)?;
    for d in &parts {
        qcow2_op(d, |q| q.snapshot_revert(tag))?;
    }
    // Loaded over the RAM as it is; pages the stream does not carry are zeroed afterwards.
    recv::run_over(vm, Box::new(VmstateReader::active(parts[0].backend.clone(), size)))
        .map_err(|e| format!("Error while loading VM state: {e}"))
}

/// Deletes `tag` from every disk that has it (silent if none has, as in QEMU).
pub fn delete(vm: &Vm, tag: &str) -> Result<(), String> {
    let parts = match participants(vm) {
        Ok(p) => p,
        Err(e) if e == NO_DISK => return Ok(()),
        Err(e) => return Err(e),
    };
    for d in parts {
        if has(d, tag) {
            qcow2_op(d, |q| q.snapshot_delete(tag))?;
            lock(&d.backend).flush().map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// `info snapshots`.
pub fn info(vm: &Vm) -> String {
    let Ok(parts) = participants(vm) else {
        return format!("{NO_DISK}\n");
    };
    let lists: Vec<(String, Vec<_>)> = parts
        .iter()
        .map(|d| {
            (
                d.cfg.id.clone(),
                lock(&d.backend).as_qcow2().map(|q| q.snapshots()).unwrap_or_default(),
            )
        })
        .collect();
    table::format(&lists)
}
