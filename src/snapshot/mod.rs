//! `savevm`, `loadvm`, `delvm`, `info snapshots` and `-loadvm`: internal snapshots of every
//! writable qcow2 disk, with the VM state (the migration stream) in the first one's
//! vmstate area, as QEMU stores them.

pub mod table;
pub mod vmstate;

#[cfg(test)]
mod tests;

use crate::migration::dirty::DirtyError;
use crate::migration::recv::{self, RecvError};
use crate::migration::send::Stop;
use crate::vm::disks::Disk;
use crate::vm::{Vm, VmError};
use devices::block::BlockError;
use devices::bus::lock;
use monitor::engine::DiskSnapshots;
use thiserror::Error;
use vmstate::{VmstateReader, VmstateWriter, write_state};

/// Why a snapshot could not be saved, checked, loaded, deleted or listed, in QEMU's words
/// where QEMU has them.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// A writable disk whose image cannot hold snapshots (not qcow2).
    #[error("Device '{id}' is writable but does not support snapshots")]
    Unsupported { id: String },
    /// No writable disk at all: nowhere to put the VM state.
    #[error("no block device can store vmstate for snapshot")]
    NoDisk,
    /// A disk's image stopped being qcow2 (it was handed over to a migration's destination).
    #[error("Device '{id}' does not support snapshots")]
    NotQcow2 { id: String },
    /// A snapshot operation or flush on a disk's image failed.
    #[error("Device '{id}': {err}")]
    Device {
        id: String,
        #[source]
        err: BlockError,
    },
    /// `loadvm`: some disk has no snapshot of that name.
    #[error("Snapshot '{tag}' does not exist in one or more devices")]
    NotFound { tag: String },
    /// `loadvm`: the snapshot holds no VM state (made by `qemu-img snapshot -c`).
    #[error("This is a disk-only snapshot. Revert to it  offline using qemu-img")]
    DiskOnly { tag: String },
    /// The snapshot's VM state does not fit this VM, or could not be loaded.
    #[error("Error while loading VM state: {0}")]
    Load(#[source] RecvError),
    /// The VM state could not be written to the image's vmstate area.
    #[error("cannot write the VM state: {}", crate::errtext::io(.0))]
    WriteState(#[source] std::io::Error),
    /// The machine state could not be saved.
    #[error(transparent)]
    State(#[from] VmError),
    /// The pages the guest touched could not be found.
    #[error(transparent)]
    Pages(#[from] DirtyError),
    /// Guest RAM could not be read into the stream.
    #[error(transparent)]
    Stream(Stop),
    /// `delvm`: a disk could not be flushed after the deletion.
    #[error(transparent)]
    Flush(BlockError),
}

/// The disks taking part, vmstate disk first: every writable disk, each of which must be
/// able to hold snapshots. Read-only disks are skipped.
fn participants(vm: &Vm) -> Result<Vec<&Disk>, SnapshotError> {
    let mut v = Vec::new();
    for d in vm.disks().iter().filter(|d| !d.cfg.read_only) {
        if lock(&d.backend).as_qcow2().is_none() {
            return Err(SnapshotError::Unsupported { id: d.cfg.id.clone() });
        }
        v.push(d);
    }
    if v.is_empty() {
        return Err(SnapshotError::NoDisk);
    }
    Ok(v)
}

/// The ID of the snapshot *named* `tag` on `d`. The monitor's commands take names, as in
/// QEMU (an ID that happens to equal another snapshot's name must not select that one),
/// while the qcow2 layer looks an ID up first; so the engine always passes IDs down.
fn id_of(d: &Disk, tag: &str) -> Option<String> {
    lock(&d.backend)
        .as_qcow2()
        .and_then(|q| q.snapshots().into_iter().find(|s| s.name == tag).map(|s| s.id))
}

fn has(d: &Disk, tag: &str) -> bool {
    id_of(d, tag).is_some()
}

/// Deletes the snapshot named `tag` from `d`, if it has one.
fn delete_named(d: &Disk, tag: &str) -> Result<(), SnapshotError> {
    match id_of(d, tag) {
        Some(id) => qcow2_op(d, |q| q.snapshot_delete(&id)).map(|_| ()),
        None => Ok(()),
    }
}

fn qcow2_op<T>(d: &Disk, f: impl FnOnce(&mut devices::block::Qcow2) -> Result<T, BlockError>) -> Result<T, SnapshotError> {
    let mut b = lock(&d.backend);
    let q = b.as_qcow2().ok_or_else(|| SnapshotError::NotQcow2 { id: d.cfg.id.clone() })?;
    f(q).map_err(|err| device_error(d, err))
}

fn device_error(d: &Disk, err: BlockError) -> SnapshotError {
    SnapshotError::Device { id: d.cfg.id.clone(), err }
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
pub fn save(vm: &Vm, tag: &str) -> Result<(), SnapshotError> {
    let parts = participants(vm)?;
    for d in &parts {
        delete_named(d, tag)?;
    }
    let result = (|| {
        let mut w = VmstateWriter::new(parts[0].backend.clone());
        let clock = write_state(vm, &mut w)?;
        let size = w.finish().map_err(SnapshotError::WriteState)?;
        for (i, d) in parts.iter().enumerate() {
            qcow2_op(d, |q| q.snapshot_create(tag, if i == 0 { size } else { 0 }, clock, None))?;
        }
        for d in &parts {
            lock(&d.backend).flush().map_err(|err| device_error(d, err))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for d in &parts {
            let _ = delete_named(d, tag);
            let _ = lock(&d.backend).flush();
        }
    }
    result
}

/// Checks that `tag` can be loaded into this VM, reading the saved state without changing
/// anything; returns the size of its VM state.
pub fn check_load(vm: &Vm, tag: &str) -> Result<u64, SnapshotError> {
    let parts = participants(vm)?;
    if !parts.iter().all(|d| has(d, tag)) {
        return Err(SnapshotError::NotFound { tag: tag.to_string() });
    }
    let (id, size) = qcow2_op(parts[0], |q| {
        Ok(q.snapshots()
            .into_iter()
            .find(|s| s.name == tag)
            .map_or((String::new(), 0), |s| (s.id, s.vm_state_size)))
    })?;
    if size == 0 {
        return Err(SnapshotError::DiskOnly { tag: tag.to_string() });
    }
    recv::check(vm, Box::new(VmstateReader::of_snapshot(parts[0].backend.clone(), &id, size))).map_err(SnapshotError::Load)?;
    Ok(size)
}

/// Why a `loadvm` failed: before anything changed (the VM may run on as it was), or part
/// way, with disks reverted or RAM half loaded (it must not run until loaded again).
#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Unchanged(SnapshotError),
    #[error(transparent)]
    Partial(SnapshotError),
}

impl LoadError {
    /// Whether a disk was reverted or RAM loaded before the failure.
    pub fn changed_anything(&self) -> bool {
        matches!(self, LoadError::Partial(_))
    }
}

/// Reverts every disk to `tag` and loads its VM state. The VM must be paused; everything
/// that can be checked is checked (by `check_load`) before any disk is reverted.
pub fn load(vm: &Vm, tag: &str) -> Result<(), LoadError> {
    let size = check_load(vm, tag).map_err(LoadError::Unchanged)?;
    let parts = participants(vm).map_err(LoadError::Unchanged)?;
    for d in &parts {
        let id = id_of(d, tag).ok_or_else(|| LoadError::Partial(SnapshotError::NotFound { tag: tag.to_string() }))?;
        qcow2_op(d, |q| q.snapshot_revert(&id)).map_err(LoadError::Partial)?;
    }
    // Loaded over the RAM as it is; pages the stream does not carry are zeroed afterwards.
    recv::run_over(vm, Box::new(VmstateReader::active(parts[0].backend.clone(), size)))
        .map_err(|e| LoadError::Partial(SnapshotError::Load(e)))
}

/// Deletes `tag` from every disk that has it (silent if none has, as in QEMU).
pub fn delete(vm: &Vm, tag: &str) -> Result<(), SnapshotError> {
    let parts = match participants(vm) {
        Ok(p) => p,
        Err(SnapshotError::NoDisk) => return Ok(()),
        Err(e) => return Err(e),
    };
    for d in parts {
        if has(d, tag) {
            delete_named(d, tag)?;
            lock(&d.backend).flush().map_err(SnapshotError::Flush)?;
        }
    }
    Ok(())
}

/// The snapshots of every disk taking part, vmstate disk first (for `info snapshots`).
pub fn list(vm: &Vm) -> Result<Vec<DiskSnapshots>, SnapshotError> {
    Ok(participants(vm)?
        .iter()
        .map(|d| DiskSnapshots {
            device: d.cfg.id.clone(),
            snapshots: lock(&d.backend)
                .as_qcow2()
                .map(|q| q.snapshots())
                .unwrap_or_default()
                .iter()
                .map(table::to_info)
                .collect(),
        })
        .collect())
}
