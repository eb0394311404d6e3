//! What the machine is made of, as management software asks before it starts a guest
//! (libvirt's capability probe): object types, their properties, machine types, CPU
//! models, command-line options, and the QOM tree of the running machine. Shaped as QEMU
//! 7.2's schema has them; each implementation answers only for what it really has.

use serde::Serialize;

/// `qom-list-types`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectTypeInfo {
    pub name: String,
    #[serde(rename = "abstract", skip_serializing_if = "std::ops::Not::not")]
    pub is_abstract: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// One property (`device-list-properties`, `qom-list-properties`, `qom-list`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectPropertyInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "default-value", skip_serializing_if = "Option::is_none")]
    pub default_value: Option<serde_json::Value>,
}

impl ObjectPropertyInfo {
    pub fn new(name: &str, ty: &str) -> Self {
        ObjectPropertyInfo {
            name: name.into(),
            ty: ty.into(),
            description: None,
            default_value: None,
        }
    }
}

/// `query-machines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MachineInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_default: Option<bool>,
    pub cpu_max: i64,
    pub hotpluggable_cpus: bool,
    pub numa_mem_supported: bool,
    pub deprecated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_cpu_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ram_id: Option<String>,
}

/// `query-cpu-definitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuDefinitionInfo {
    pub name: String,
    pub migration_safe: bool,
    #[serde(rename = "static")]
    pub is_static: bool,
    pub unavailable_features: Vec<String>,
    pub typename: String,
    pub deprecated: bool,
}

/// One CPU feature property of a model (`query-cpu-model-expansion`): its QEMU name and
/// whether a guest of that model has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFeature {
    pub name: String,
    pub enabled: bool,
}

/// A parameter of a command-line option (`query-command-line-options`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLineParameterInfo {
    pub name: String,
    /// `string`, `boolean`, `number` or `size`.
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLineOptionInfo {
    pub option: String,
    pub parameters: Vec<CommandLineParameterInfo>,
}

/// `set-action`: what a guest reboot and a guest power-off do (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Actions {
    /// `reset` or `shutdown` (`-no-reboot`).
    pub reboot: Option<String>,
    /// `poweroff` or `pause` (`-no-shutdown`).
    pub shutdown: Option<String>,
    pub panic: Option<String>,
    pub watchdog: Option<String>,
}
