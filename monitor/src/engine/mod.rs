//! The one command engine behind every monitor.
//!
//! HMP and QMP both drive the machine through [`Engine`]: typed requests (one method per
//! operation, with typed arguments) answered with typed values shaped as QEMU 7.2's QMP
//! schema defines them. QMP serialises those values as they are; HMP prints them in its
//! own text layouts ([`crate::hmp`]). Neither language holds command logic of its own.
//!
//! The engine is shared by all monitors at once (`Arc<dyn Engine>`): an implementation
//! must let read-only queries through while a long operation (a `stop` waiting for a
//! migration's switch-over, a `savevm`) is under way.

pub mod block;
pub mod catalog;
pub mod events;
pub mod fds;
pub mod jobs;
pub mod migration;
pub mod types;

use thiserror::Error;

pub use block::{BlockDeviceInfo, BlockInfo, DiskSnapshots, SnapshotInfo};
pub use catalog::{
    Actions, CommandLineOptionInfo, CommandLineParameterInfo, CpuDefinitionInfo, CpuFeature, MachineInfo, ObjectPropertyInfo,
    ObjectTypeInfo,
};
pub use events::{Event, EventBus};
pub use fds::FdStore;
pub use jobs::{JobInfo, JobStatus, JobType, Jobs, SnapshotJob};
pub use migration::{
    AnnounceSchedule, MigrateArgs, MigrateSetParameters, MigrationCapability, MigrationCapabilityStatus, MigrationInfo,
    MigrationParameters, MigrationStats, MigrationStatus, XbzrleCacheStats,
};
pub use types::{ChardevInfo, CpuInfoFast, KvmInfo, NameInfo, PciDeviceInfo, RunState, StatusInfo, TargetInfo, UuidInfo, VersionInfo};

/// QEMU's error classes (`ErrorClass` in its QAPI schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotActive,
    DeviceNotFound,
    KVMMissingCap,
}

/// Why an operation was refused or failed: QEMU's class and its one-line description
/// (what HMP prints after `Error: `, what QMP sends as `desc`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{desc}")]
pub struct EngineError {
    pub class: ErrorClass,
    pub desc: String,
}

impl EngineError {
    pub fn generic(desc: impl Into<String>) -> Self {
        EngineError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }

    pub fn device_not_found(desc: impl Into<String>) -> Self {
        EngineError {
            class: ErrorClass::DeviceNotFound,
            desc: desc.into(),
        }
    }
}

impl From<String> for EngineError {
    fn from(desc: String) -> Self {
        EngineError::generic(desc)
    }
}

impl From<&str> for EngineError {
    fn from(desc: &str) -> Self {
        EngineError::generic(desc)
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Which CPUs `info registers` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSelection {
    All,
    One(i64),
}

/// The machine, as every monitor drives it.
pub trait Engine: Send + Sync {
    /// Blocks until the machine is set up (QEMU serves no monitor before its main loop).
    fn wait_ready(&self) {}
    /// Where the machine's events go; monitors subscribe here.
    fn events(&self) -> &EventBus;

    fn query_status(&self) -> StatusInfo;
    fn query_name(&self) -> NameInfo;
    fn query_version(&self) -> VersionInfo;
    fn query_uuid(&self) -> UuidInfo;
    fn query_kvm(&self) -> KvmInfo;
    /// `query-target`: what the guest's CPUs are.
    fn query_target(&self) -> TargetInfo {
        TargetInfo { arch: "x86_64" }
    }
    fn query_cpus_fast(&self) -> EngineResult<Vec<CpuInfoFast>>;
    fn query_block(&self) -> EngineResult<Vec<BlockInfo>>;
    /// `query-named-block-nodes`: every node (by default each drive's medium).
    fn query_named_block_nodes(&self) -> EngineResult<Vec<BlockDeviceInfo>> {
        Ok(self.query_block()?.into_iter().map(|b| b.inserted).collect())
    }
    /// `query-blockstats`: each device's counters, or (`query_nodes`) each node's.
    fn query_blockstats(&self, query_nodes: bool) -> EngineResult<Vec<block::BlockStats>>;
    fn query_chardev(&self) -> Vec<ChardevInfo>;
    fn query_pci(&self) -> EngineResult<Vec<PciDeviceInfo>>;

    fn stop(&self) -> EngineResult<()>;
    fn cont(&self) -> EngineResult<()>;
    fn system_reset(&self) -> EngineResult<()>;
    fn system_powerdown(&self) -> EngineResult<()>;
    /// Ends the process once the monitor has answered.
    fn quit(&self);

    /// `savevm`: `None` picks QEMU's `vm-YYYYMMDDHHMMSS` name.
    fn savevm(&self, tag: Option<&str>) -> EngineResult<()>;
    fn loadvm(&self, tag: &str) -> EngineResult<()>;
    fn delvm(&self, tag: &str) -> EngineResult<()>;
    /// The internal snapshots of every disk taking part, by device name.
    fn query_snapshots(&self) -> EngineResult<Vec<DiskSnapshots>>;

    /// `migrate`; an `fd:NAME` URI takes the descriptor `NAME` from `fds`, the calling
    /// monitor's (QEMU looks it up in the monitor the command came from).
    fn migrate(&self, args: &MigrateArgs, fds: &FdStore) -> EngineResult<()>;
    fn migrate_cancel(&self);
    fn migrate_start_postcopy(&self) -> EngineResult<()>;
    /// `migrate-incoming`; `fd:NAME` as for `migrate` (a number is a descriptor godwit
    /// inherited, as with `-incoming fd:N`).
    fn migrate_incoming(&self, uri: &str, fds: &FdStore) -> EngineResult<()>;
    /// `migrate-recover`: the destination of a paused post-copy listens on `uri`.
    fn migrate_recover(&self, uri: &str) -> EngineResult<()>;
    fn query_migrate(&self) -> MigrationInfo;
    fn migrate_set_parameters(&self, p: &MigrateSetParameters) -> EngineResult<()>;
    fn query_migrate_parameters(&self) -> MigrationParameters;
    fn migrate_set_capabilities(&self, caps: &[MigrationCapabilityStatus]) -> EngineResult<()>;
    fn query_migrate_capabilities(&self) -> Vec<MigrationCapabilityStatus>;

    /// `set_link`: `name` is a NIC's or its back end's.
    fn set_link(&self, name: &str, up: bool) -> EngineResult<()>;
    /// `announce_self` / `announce-self`: the NICs named (all when empty) announce
    /// themselves, on `schedule` or else on the announce-* migration parameters.
    fn announce_self(&self, interfaces: &[String], schedule: Option<AnnounceSchedule>) -> EngineResult<()>;
    /// `info network` (HMP only, as in QEMU).
    fn network_text(&self) -> EngineResult<String>;
    /// `snapshot-save`, `snapshot-load`, `snapshot-delete`: checked, then run as a job on
    /// a thread of its own (the job's outcome is in `query_jobs`).
    fn snapshot_job(&self, kind: JobType, job: &SnapshotJob) -> EngineResult<()>;
    fn query_jobs(&self) -> Vec<JobInfo>;
    fn job_dismiss(&self, id: &str) -> EngineResult<()>;

    /// `info registers` (HMP only, as in QEMU): the CPUs' registers as text.
    fn registers_text(&self, which: CpuSelection) -> EngineResult<String>;
    /// `info mtree` (HMP only): the address spaces as text.
    fn mtree_text(&self) -> EngineResult<String>;
    /// `info qtree` (HMP only): the device tree as text.
    fn qtree_text(&self) -> EngineResult<String>;

    /// `qom-list-types`: every object type there is (see [`catalog`]).
    fn qom_list_types(&self) -> Vec<ObjectTypeInfo> {
        Vec::new()
    }
    /// `device-list-properties`: a device type's properties.
    fn device_list_properties(&self, typename: &str) -> EngineResult<Vec<ObjectPropertyInfo>> {
        Err(EngineError::device_not_found(format!("Device '{typename}' not found")))
    }
    /// `qom-list-properties`: any object type's properties.
    fn qom_list_properties(&self, typename: &str) -> EngineResult<Vec<ObjectPropertyInfo>> {
        Err(EngineError::generic(format!("Class '{typename}' not found")))
    }
    fn query_machines(&self) -> Vec<MachineInfo> {
        Vec::new()
    }
    fn query_cpu_definitions(&self) -> Vec<CpuDefinitionInfo> {
        Vec::new()
    }
    /// The CPUID features a guest of CPU `model` sees; QEMU's error for a model it lacks.
    fn cpu_model_features(&self, model: &str) -> EngineResult<Vec<CpuFeature>> {
        Err(EngineError::generic(format!("CPU model '{model}' not found")))
    }
    /// `query-command-line-options` (`None`: every option).
    fn query_command_line_options(&self, option: Option<&str>) -> EngineResult<Vec<CommandLineOptionInfo>> {
        match option {
            None => Ok(Vec::new()),
            Some(o) => Err(EngineError::generic(format!("invalid option name: {o}"))),
        }
    }
    /// `qom-list`: the properties (children and links included) of the object at `path`.
    fn qom_list(&self, path: &str) -> EngineResult<Vec<ObjectPropertyInfo>> {
        Err(EngineError::device_not_found(format!("Device '{path}' not found")))
    }
    /// `qom-get`: one property's value.
    fn qom_get(&self, path: &str, _property: &str) -> EngineResult<serde_json::Value> {
        Err(EngineError::device_not_found(format!("Device '{path}' not found")))
    }
    /// `set-action`.
    fn set_action(&self, _actions: &Actions) -> EngineResult<()> {
        Err(EngineError::generic("set-action is not supported"))
    }
}
