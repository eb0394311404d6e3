//! An engine with no machine behind it: enough state for every QMP and HMP command to
//! run (status, jobs, a migration target), for the crate's tests and the monitor fuzz
//! targets.

use crate::engine::types::{CpuProps, PciClassInfo, PciIds, VersionTriple};
use crate::engine::*;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Fake {
    pub bus: EventBus,
    pub running: Mutex<bool>,
    pub jobs: Jobs,
    pub migrated_to: Mutex<Option<String>>,
}

impl Engine for Fake {
    fn events(&self) -> &EventBus {
        &self.bus
    }
    fn query_status(&self) -> StatusInfo {
        StatusInfo::of(if *self.running.lock().unwrap() {
            RunState::Running
        } else {
            RunState::Paused
        })
    }
    fn query_name(&self) -> NameInfo {
        NameInfo { name: Some("vm".into()) }
    }
    fn query_version(&self) -> VersionInfo {
        VersionInfo {
            qemu: VersionTriple {
                major: 0,
                minor: 1,
                micro: 0,
            },
            package: " (godwit)".into(),
        }
    }
    fn query_uuid(&self) -> UuidInfo {
        UuidInfo {
            uuid: "00000000-0000-0000-0000-000000000000".into(),
        }
    }
    fn query_kvm(&self) -> KvmInfo {
        KvmInfo {
            enabled: true,
            present: true,
        }
    }
    fn query_cpus_fast(&self) -> EngineResult<Vec<CpuInfoFast>> {
        Ok(vec![CpuInfoFast {
            cpu_index: 0,
            qom_path: "/machine/unattached/device[0]".into(),
            thread_id: 42,
            props: CpuProps {
                core_id: 0,
                thread_id: 0,
                socket_id: 0,
            },
            target: "x86_64",
        }])
    }
    fn query_block(&self) -> EngineResult<Vec<BlockInfo>> {
        Ok(Vec::new())
    }
    fn query_blockstats(&self, _: bool) -> EngineResult<Vec<crate::engine::block::BlockStats>> {
        Ok(Vec::new())
    }
    fn query_chardev(&self) -> Vec<ChardevInfo> {
        vec![ChardevInfo {
            label: "compat_monitor0".into(),
            filename: "unix:/x,server=on".into(),
            frontend_open: true,
        }]
    }
    /// One model, `host`, with one feature the guest has and one it lacks.
    fn cpu_model_features(&self, model: &str) -> EngineResult<Vec<CpuFeature>> {
        if model != "host" {
            return Err(EngineError::generic(format!("CPU model '{model}' not found")));
        }
        Ok([("fpu", true), ("avx2", false)]
            .map(|(n, enabled)| CpuFeature { name: n.into(), enabled })
            .to_vec())
    }

    fn query_pci(&self) -> EngineResult<Vec<PciDeviceInfo>> {
        Ok(vec![PciDeviceInfo {
            bus: 0,
            slot: 0,
            function: 0,
            class_info: PciClassInfo { class: 0x600, desc: None },
            id: PciIds {
                vendor: 0x8086,
                device: 0xd57,
                subsystem_vendor: 0,
                subsystem: 0,
            },
            irq: None,
            irq_pin: 0,
            qdev_id: String::new(),
            regions: Vec::new(),
        }])
    }
    fn stop(&self) -> EngineResult<()> {
        let mut r = self.running.lock().unwrap();
        if *r {
            *r = false;
            self.bus.emit(Event::stop());
        }
        Ok(())
    }
    fn cont(&self) -> EngineResult<()> {
        *self.running.lock().unwrap() = true;
        self.bus.emit(Event::resume());
        Ok(())
    }
    fn system_reset(&self) -> EngineResult<()> {
        Ok(())
    }
    fn set_link(&self, name: &str, _: bool) -> EngineResult<()> {
        Err(EngineError::device_not_found(format!("Device '{name}' not found")))
    }
    fn announce_self(&self, _: &[String], _: Option<AnnounceSchedule>) -> EngineResult<()> {
        Ok(())
    }
    fn network_text(&self) -> EngineResult<String> {
        Ok(String::new())
    }
    fn system_powerdown(&self) -> EngineResult<()> {
        Ok(())
    }
    fn quit(&self) {
        self.bus.emit(Event::shutdown(false, "host-qmp-quit"));
    }
    fn savevm(&self, _: Option<&str>) -> EngineResult<()> {
        Ok(())
    }
    fn loadvm(&self, _: &str) -> EngineResult<()> {
        Ok(())
    }
    fn delvm(&self, _: &str) -> EngineResult<()> {
        Ok(())
    }
    fn query_snapshots(&self) -> EngineResult<Vec<DiskSnapshots>> {
        Ok(Vec::new())
    }
    fn migrate(&self, args: &MigrateArgs, fds: &FdStore) -> EngineResult<()> {
        if let Some(name) = args.uri.strip_prefix("fd:") {
            fds.take(name)?;
        }
        *self.migrated_to.lock().unwrap() = Some(args.uri.clone());
        Ok(())
    }
    fn migrate_cancel(&self) {}
    fn migrate_start_postcopy(&self) -> EngineResult<()> {
        Ok(())
    }
    fn migrate_incoming(&self, _: &str, _: &FdStore) -> EngineResult<()> {
        Ok(())
    }
    fn migrate_recover(&self, _: &str) -> EngineResult<()> {
        Ok(())
    }
    fn query_migrate(&self) -> MigrationInfo {
        MigrationInfo {
            socket_address: vec!["tcp:0.0.0.0:4444".into(), "unix:/tmp/m.sock".into()],
            ..MigrationInfo::default()
        }
    }
    /// Refuses a change of what godwit does not act on, as godwit does.
    fn migrate_set_parameters(&self, p: &MigrateSetParameters) -> EngineResult<()> {
        match p.compress_level {
            Some(v) if v != MigrationParameters::default().compress_level => {
                Err("parameter 'compress-level' has no effect in godwit and is not supported".into())
            }
            _ => Ok(()),
        }
    }
    fn query_migrate_parameters(&self) -> MigrationParameters {
        MigrationParameters::default()
    }
    fn migrate_set_capabilities(&self, _: &[MigrationCapabilityStatus]) -> EngineResult<()> {
        Ok(())
    }
    fn query_migrate_capabilities(&self) -> Vec<MigrationCapabilityStatus> {
        MigrationCapability::ALL
            .iter()
            .map(|c| MigrationCapabilityStatus {
                capability: *c,
                state: false,
            })
            .collect()
    }
    fn snapshot_job(&self, kind: JobType, job: &SnapshotJob) -> EngineResult<()> {
        self.jobs.start(&self.bus, &job.job_id, kind)?;
        self.jobs.finish(&self.bus, &job.job_id, Ok(()));
        Ok(())
    }
    fn query_jobs(&self) -> Vec<JobInfo> {
        self.jobs.query()
    }
    fn job_dismiss(&self, id: &str) -> EngineResult<()> {
        self.jobs.dismiss(&self.bus, id)
    }
    fn registers_text(&self, _: CpuSelection) -> EngineResult<String> {
        Ok(String::new())
    }
    fn mtree_text(&self) -> EngineResult<String> {
        Ok(String::new())
    }
    fn qtree_text(&self) -> EngineResult<String> {
        Ok(String::new())
    }
}

impl Fake {
    pub fn running() -> Arc<Fake> {
        Arc::new(Fake {
            running: Mutex::new(true),
            ..Fake::default()
        })
    }
}
