//! QMP's snapshot commands as jobs: `snapshot-save`, `snapshot-load` and `snapshot-delete`
//! are checked as QEMU 7.2 checks them, then run the same `savevm`/`loadvm`/`delvm` as HMP
//! on a thread of their own; the outcome is the job's (`query-jobs`, `JOB_STATUS_CHANGE`).

use super::Machine;
use crate::vm::Vm;
use devices::bus::lock;
use monitor::engine::{EngineResult, JobType, SnapshotJob};
use std::sync::Arc;

/// The disks a job names, as QEMU names block nodes (`query-block`'s `node-name`; godwit
/// also takes the drive's `id`): their indexes in the VM's disk list.
fn resolve(vm: &Vm, names: &[String]) -> Result<Vec<usize>, String> {
    if names.is_empty() {
        return Err("At least one device is required for snapshot".into());
    }
    let info = crate::vm::block_info::block_info(vm.disks());
    names
        .iter()
        .map(|n| {
            info.iter()
                .position(|b| b.inserted.node_name == *n || b.device == *n)
                .ok_or_else(|| format!("No block device node '{n}'"))
        })
        .collect()
}

/// QEMU's checks of `devices` and `vmstate`, then godwit's own rule: its snapshots cover
/// every writable disk at once, with the VM state on the first one.
fn check(vm: &Vm, kind: JobType, job: &SnapshotJob) -> Result<(), String> {
    let mut chosen = resolve(vm, &job.devices)?;
    let writable: Vec<usize> = (0..vm.disks().len()).filter(|i| !vm.disks()[*i].cfg.read_only).collect();
    if let (Some(vmstate), true) = (&job.vmstate, kind != JobType::SnapshotDelete) {
        let state = resolve(vm, std::slice::from_ref(vmstate))
            .ok()
            .and_then(|v| v.first().copied())
            .filter(|i| chosen.contains(i))
            .ok_or_else(|| format!("vmstate block device '{vmstate}' does not exist"))?;
        if Some(&state) != writable.first() {
            return Err(format!(
                "godwit keeps the VM state on the first writable disk; vmstate '{vmstate}' is not it"
            ));
        }
    }
    chosen.sort_unstable();
    chosen.dedup();
    if chosen != writable {
        return Err("godwit snapshots every writable disk together: 'devices' must name each of them".into());
    }
    Ok(())
}

impl Machine {
    /// Starts a snapshot job; its checks and work happen on the job's thread.
    pub fn snapshot_job(self: &Arc<Self>, kind: JobType, job: &SnapshotJob) -> EngineResult<()> {
        self.jobs.start(&self.bus, &job.job_id, kind)?;
        let machine = self.clone();
        let job = job.clone();
        let id = job.job_id.clone();
        let spawned = std::thread::Builder::new().name(format!("job-{id}")).spawn(move || {
            let result = machine.run_snapshot_job(kind, &job);
            machine.jobs.finish(&machine.bus, &job.job_id, result);
        });
        if let Err(e) = spawned {
            self.jobs.finish(&self.bus, &id, Err(format!("cannot start the job's thread: {e}")));
        }
        Ok(())
    }

    fn run_snapshot_job(&self, kind: JobType, job: &SnapshotJob) -> Result<(), String> {
        // One command that changes the machine at a time, jobs included.
        let _one = lock(&self.commands);
        let vm = self.the_vm()?;
        check(&vm, kind, job)?;
        let exists = crate::snapshot::list(&vm)
            .map_err(|e| e.to_string())?
            .iter()
            .any(|d| d.snapshots.iter().any(|s| s.name == job.tag));
        match kind {
            JobType::SnapshotSave if exists => Err(format!("Snapshot '{}' already exists in one or more devices", job.tag)),
            JobType::SnapshotSave => self.savevm(Some(&job.tag)),
            JobType::SnapshotLoad => self.loadvm(&job.tag),
            // Like QEMU's job, deleting a snapshot that is not there is no error.
            JobType::SnapshotDelete if !exists => Ok(()),
            JobType::SnapshotDelete => crate::snapshot::delete(&vm, &job.tag).map_err(|e| e.to_string()),
        }
    }
}
