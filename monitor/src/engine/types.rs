//! The machine's general answers, shaped (member names and types) as QEMU 7.2's QMP
//! schema has them.

use serde::Serialize;

/// QEMU's run states, as far as godwit has them (`RunState` in QEMU's schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Paused,
    Prelaunch,
    Inmigrate,
    Postmigrate,
    /// The stop-and-copy of an outgoing migration: paused until the outcome is known.
    FinishMigrate,
    InternalError,
    Shutdown,
}

impl RunState {
    /// The name QEMU gives the state (`running`, `internal-error`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Prelaunch => "prelaunch",
            RunState::Inmigrate => "inmigrate",
            RunState::Postmigrate => "postmigrate",
            RunState::FinishMigrate => "finish-migrate",
            RunState::InternalError => "internal-error",
            RunState::Shutdown => "shutdown",
        }
    }
}

/// `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusInfo {
    pub running: bool,
    pub singlestep: bool,
    pub status: RunState,
}

impl StatusInfo {
    pub fn of(status: RunState) -> Self {
        StatusInfo {
            running: status == RunState::Running,
            singlestep: false,
            status,
        }
    }
}

/// `query-name`: no member at all when the VM has no name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VersionTriple {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// `query-version` (also the QMP greeting's `version` and HMP's `info version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub qemu: VersionTriple,
    pub package: String,
}

/// `query-uuid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UuidInfo {
    #[serde(rename = "UUID")]
    pub uuid: String,
}

/// `query-kvm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KvmInfo {
    pub enabled: bool,
    pub present: bool,
}

/// `query-target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    pub arch: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpuProps {
    #[serde(rename = "core-id")]
    pub core_id: u32,
    #[serde(rename = "thread-id")]
    pub thread_id: u32,
    #[serde(rename = "socket-id")]
    pub socket_id: u32,
}

/// One entry of `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuInfoFast {
    #[serde(rename = "cpu-index")]
    pub cpu_index: u32,
    #[serde(rename = "qom-path")]
    pub qom_path: String,
    #[serde(rename = "thread-id")]
    pub thread_id: i64,
    pub props: CpuProps,
    pub target: &'static str,
}

/// One entry of `query-chardev` (also `info chardev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChardevInfo {
    pub label: String,
    pub filename: String,
    #[serde(rename = "frontend-open")]
    pub frontend_open: bool,
}

/// QEMU's name for a PCI class (class and subclass), for the classes godwit's devices
/// have; `query-pci` gives it as `desc`, `info pci` prints it.
pub fn pci_class_desc(class: u32) -> Option<&'static str> {
    Some(match class {
        0x0100 => "SCSI controller",
        0x0180 => "Storage controller",
        0x0200 => "Ethernet controller",
        0x0600 => "Host bridge",
        0x0601 => "ISA bridge",
        0x0780 => "Communication controller",
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciClassInfo {
    /// The class and subclass (class code >> 8).
    pub class: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PciIds {
    pub vendor: u16,
    pub device: u16,
    #[serde(rename = "subsystem-vendor")]
    pub subsystem_vendor: u16,
    pub subsystem: u16,
}

/// A memory or I/O BAR as programmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciRegion {
    pub bar: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub address: u64,
    pub size: u64,
    pub prefetch: bool,
    pub mem_type_64: bool,
}

/// One function of `query-pci`'s bus 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDeviceInfo {
    pub bus: u32,
    pub slot: u32,
    pub function: u32,
    pub class_info: PciClassInfo,
    pub id: PciIds,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irq: Option<u32>,
    pub irq_pin: u32,
    pub qdev_id: String,
    pub regions: Vec<PciRegion>,
}
