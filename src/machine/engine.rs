//! The machine as the command engine both monitors drive: each request of
//! `monitor::engine::Engine` maps to one operation of the machine, its errors to QEMU's
//! classes.

use super::Machine;
use devices::bus::lock;
use monitor::engine::types::VersionTriple;
use monitor::engine::{
    Actions, BlockDeviceInfo, CommandLineOptionInfo, CpuDefinitionInfo, CpuFeature, MachineInfo, ObjectPropertyInfo, ObjectTypeInfo,
};
use monitor::engine::{
    AnnounceSchedule, BlockInfo, ChardevInfo, CpuInfoFast, CpuSelection, DiskSnapshots, Engine, EngineError, EngineResult, EventBus,
    FdStore, JobInfo, JobType, KvmInfo, MigrateArgs, MigrateSetParameters, MigrationCapabilityStatus, MigrationInfo, MigrationParameters,
    NameInfo, PciDeviceInfo, SnapshotJob, StatusInfo, UuidInfo, VersionInfo,
};
use std::sync::Arc;

/// The engine is the machine, shared by every monitor.
pub struct MachineEngine(pub Arc<Machine>);

impl MachineEngine {
    /// A command that changes the machine: one at a time, after set-up.
    fn command<T>(&self, f: impl FnOnce(&Arc<Machine>) -> Result<T, String>) -> EngineResult<T> {
        let _one = lock(&self.0.commands);
        f(&self.0).map_err(EngineError::generic)
    }
}

/// The QEMU release whose command line and monitors godwit implements: what
/// `query-version`, the QMP greeting and `info version` report as the version, so that
/// management software (libvirt requires 4.2.0 or later) picks the behaviour it expects.
/// godwit's own version is in `package`, as a distribution names its build there.
pub const QEMU_COMPAT: (u32, u32, u32) = (7, 2, 0);

/// godwit's version, as QEMU reports its own: the compatibility level, then
/// ` (godwit X.Y.Z)` (`info version` prints `7.2.0 (godwit 0.1.0)`).
pub fn version() -> VersionInfo {
    VersionInfo {
        qemu: VersionTriple {
            major: QEMU_COMPAT.0,
            minor: QEMU_COMPAT.1,
            micro: QEMU_COMPAT.2,
        },
        package: format!(" (godwit {})", env!("CARGO_PKG_VERSION")),
    }
}

impl Engine for MachineEngine {
    fn wait_ready(&self) {
        self.0.wait_ready();
    }

    fn events(&self) -> &EventBus {
        self.0.bus()
    }

    fn query_status(&self) -> StatusInfo {
        StatusInfo::of(self.0.state())
    }

    fn query_name(&self) -> NameInfo {
        NameInfo { name: self.0.name.clone() }
    }

    fn query_version(&self) -> VersionInfo {
        version()
    }

    fn query_uuid(&self) -> UuidInfo {
        UuidInfo { uuid: self.0.uuid() }
    }

    fn query_kvm(&self) -> KvmInfo {
        KvmInfo {
            enabled: true,
            present: true,
        }
    }

    fn query_cpus_fast(&self) -> EngineResult<Vec<CpuInfoFast>> {
        // `-machine none` has no CPUs (QEMU answers an empty list too).
        if self.0.vm().is_none() && self.0.qom().vcpus == 0 {
            return Ok(Vec::new());
        }
        self.0.cpus().map_err(EngineError::generic)
    }

    fn query_block(&self) -> EngineResult<Vec<BlockInfo>> {
        let vm = self.0.the_vm()?;
        Ok(crate::vm::block_info::block_info(vm.disks()))
    }

    fn query_blockstats(&self, query_nodes: bool) -> EngineResult<Vec<monitor::engine::block::BlockStats>> {
        let vm = self.0.the_vm()?;
        Ok(crate::vm::block_info::block_stats(vm.disks(), query_nodes))
    }

    fn query_named_block_nodes(&self) -> EngineResult<Vec<BlockDeviceInfo>> {
        let vm = self.0.the_vm()?;
        Ok(crate::vm::block_info::named_nodes(vm.disks()))
    }

    fn query_chardev(&self) -> Vec<ChardevInfo> {
        self.0.chardevs()
    }

    fn query_pci(&self) -> EngineResult<Vec<PciDeviceInfo>> {
        self.0.pci().map_err(EngineError::generic)
    }

    fn stop(&self) -> EngineResult<()> {
        self.command(|m| {
            m.stop();
            Ok(())
        })
    }

    fn cont(&self) -> EngineResult<()> {
        self.command(|m| m.cont())
    }

    fn system_reset(&self) -> EngineResult<()> {
        self.command(|m| {
            m.system_reset();
            Ok(())
        })
    }

    fn system_powerdown(&self) -> EngineResult<()> {
        Err(EngineError::generic(
            "this machine has no ACPI power button the guest could be told about (godwit has no ACPI yet)",
        ))
    }

    /// Not behind other commands: `quit` ends the run even while one works.
    fn quit(&self) {
        self.0.quit();
    }

    fn savevm(&self, tag: Option<&str>) -> EngineResult<()> {
        self.command(|m| m.savevm(tag))
    }

    fn loadvm(&self, tag: &str) -> EngineResult<()> {
        self.command(|m| m.loadvm(tag))
    }

    fn delvm(&self, tag: &str) -> EngineResult<()> {
        self.command(|m| crate::snapshot::delete(&*m.the_vm()?, tag).map_err(|e| e.to_string()))
    }

    fn query_snapshots(&self) -> EngineResult<Vec<DiskSnapshots>> {
        let vm = self.0.the_vm()?;
        crate::snapshot::list(&vm).map_err(|e| EngineError::generic(e.to_string()))
    }

    fn migrate(&self, args: &MigrateArgs, fds: &FdStore) -> EngineResult<()> {
        self.command(|m| m.migrate(args, fds))
    }

    /// Not behind other commands: a cancel must reach a migration a `stop` waits for.
    fn migrate_cancel(&self) {
        self.0.migrate_cancel();
    }

    fn migrate_start_postcopy(&self) -> EngineResult<()> {
        self.0.migrate_start_postcopy().map_err(EngineError::generic)
    }

    /// Not behind other commands: the destination's loader waits for it.
    fn migrate_recover(&self, uri: &str) -> EngineResult<()> {
        self.0.migrate_recover(uri).map_err(EngineError::generic)
    }

    fn migrate_incoming(&self, uri: &str, fds: &FdStore) -> EngineResult<()> {
        self.command(|m| m.migrate_incoming(uri, fds))
    }

    fn query_migrate(&self) -> MigrationInfo {
        self.0.query_migrate()
    }

    fn migrate_set_parameters(&self, p: &MigrateSetParameters) -> EngineResult<()> {
        self.0.migrate_set_parameters(p).map_err(EngineError::generic)
    }

    fn query_migrate_parameters(&self) -> MigrationParameters {
        lock(&self.0.outgoing.params).info()
    }

    fn migrate_set_capabilities(&self, caps: &[MigrationCapabilityStatus]) -> EngineResult<()> {
        self.0.migrate_set_capabilities(caps).map_err(EngineError::generic)
    }

    fn query_migrate_capabilities(&self) -> Vec<MigrationCapabilityStatus> {
        lock(&self.0.outgoing.params).capabilities()
    }

    fn set_link(&self, name: &str, up: bool) -> EngineResult<()> {
        let _one = lock(&self.0.commands);
        self.0.set_link(name, up)
    }

    fn announce_self(&self, interfaces: &[String], schedule: Option<AnnounceSchedule>) -> EngineResult<()> {
        self.command(|m| m.announce_self(interfaces, schedule))
    }

    fn network_text(&self) -> EngineResult<String> {
        self.0.network_text().map_err(EngineError::generic)
    }

    fn snapshot_job(&self, kind: JobType, job: &SnapshotJob) -> EngineResult<()> {
        self.0.snapshot_job(kind, job)
    }

    fn query_jobs(&self) -> Vec<JobInfo> {
        self.0.jobs.query()
    }

    fn job_dismiss(&self, id: &str) -> EngineResult<()> {
        self.0.jobs.dismiss(self.0.bus(), id)
    }

    fn registers_text(&self, which: CpuSelection) -> EngineResult<String> {
        self.0.registers_text(which).map_err(EngineError::generic)
    }

    fn mtree_text(&self) -> EngineResult<String> {
        self.0.mtree_text().map_err(EngineError::generic)
    }

    fn qtree_text(&self) -> EngineResult<String> {
        self.0.qtree_text().map_err(EngineError::generic)
    }

    fn qom_list_types(&self) -> Vec<ObjectTypeInfo> {
        super::catalog::types()
    }

    fn device_list_properties(&self, typename: &str) -> EngineResult<Vec<ObjectPropertyInfo>> {
        super::catalog::device_properties(typename)
    }

    fn qom_list_properties(&self, typename: &str) -> EngineResult<Vec<ObjectPropertyInfo>> {
        super::catalog::object_properties(typename)
    }

    fn query_machines(&self) -> Vec<MachineInfo> {
        super::catalog::machines()
    }

    fn query_cpu_definitions(&self) -> Vec<CpuDefinitionInfo> {
        super::catalog::cpu_definitions()
    }

    /// vCPU 0's features, in a VM of as many vCPUs as the current one (one without a VM).
    fn cpu_model_features(&self, model: &str) -> EngineResult<Vec<CpuFeature>> {
        let vcpus = self.0.vm().map_or(1, |vm| u8::try_from(vm.vcpu_count()).unwrap_or(u8::MAX));
        super::cpu_model::features(model, vcpus)
    }

    fn query_command_line_options(&self, option: Option<&str>) -> EngineResult<Vec<CommandLineOptionInfo>> {
        super::catalog::command_line_options(option)
    }

    fn qom_list(&self, path: &str) -> EngineResult<Vec<ObjectPropertyInfo>> {
        self.0.qom().list(path)
    }

    fn qom_get(&self, path: &str, property: &str) -> EngineResult<serde_json::Value> {
        self.0.qom().get(path, property)
    }

    /// `reboot` and `shutdown` as `-no-reboot` and `-no-shutdown` set them; godwit has no
    /// panic device or watchdog, so only their defaults are accepted.
    fn set_action(&self, a: &Actions) -> EngineResult<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let unsupported = |what: &str, v: &str| EngineError::generic(format!("godwit has no {what} device: {what}={v} cannot apply"));
        match a.panic.as_deref() {
            None | Some("none") | Some("shutdown") => {}
            Some(v) => return Err(unsupported("panic", v)),
        }
        match a.watchdog.as_deref() {
            None | Some("reset") => {}
            Some(v) => return Err(unsupported("watchdog", v)),
        }
        if let Some(r) = &a.reboot {
            self.0.no_reboot.store(r == "shutdown", Relaxed);
        }
        if let Some(s) = &a.shutdown {
            self.0.no_shutdown.store(s == "pause", Relaxed);
        }
        Ok(())
    }
}
