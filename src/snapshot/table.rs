//! Snapshot table entries as the monitors show them, and the local time QEMU names
//! untagged snapshots with.

use devices::block::qcow2::snapshot::SnapshotInfo as Qcow2Snapshot;
use monitor::engine::SnapshotInfo;

/// Seconds since the epoch as local time.
pub(super) fn local_time(secs: i64) -> libc::tm {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r fills the tm we own from a plain time value.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    }
}

/// One qcow2 snapshot table entry as QMP's `SnapshotInfo`.
pub fn to_info(s: &Qcow2Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        id: s.id.clone(),
        name: s.name.clone(),
        vm_state_size: s.vm_state_size,
        date_sec: u64::from(s.date_sec),
        date_nsec: u64::from(s.date_nsec),
        vm_clock_sec: s.vm_clock_nsec / 1_000_000_000,
        vm_clock_nsec: s.vm_clock_nsec % 1_000_000_000,
        icount: s.icount,
    }
}
