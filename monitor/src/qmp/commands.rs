//! godwit's QMP command table: each command's name, argument and answer types (from
//! `types.rs`) and the handler that turns it into one engine request.

use super::catalog as cat;
use super::catalog_types::*;
use super::handlers as h;
use super::schema::{EMPTY, EMPTY_TY, Obj, Ty};
use super::types::*;
use crate::engine::{Engine, EngineError, FdStore};
use crate::vmm::Vmm;
use serde_json::{Map, Value};
use std::os::fd::OwnedFd;

/// What a handler works with.
pub struct Ctx<'a> {
    pub engine: &'a dyn Engine,
    /// HMP over the same engine, for `human-monitor-command`.
    pub hmp: &'a dyn Vmm,
    /// This monitor's descriptors (`getfd`).
    pub fds: &'a FdStore,
    /// Descriptors received with the command's bytes (SCM_RIGHTS), not yet claimed.
    pub received: &'a mut Vec<OwnedFd>,
}

pub type Handler = fn(&mut Ctx<'_>, &Map<String, Value>) -> Result<Value, EngineError>;

pub struct Command {
    pub name: &'static str,
    pub args: &'static Obj,
    pub args_ty: &'static Ty,
    pub ret: &'static Ty,
    pub run: Handler,
}

const fn cmd(name: &'static str, args: &'static Obj, args_ty: &'static Ty, ret: &'static Ty, run: Handler) -> Command {
    Command {
        name,
        args,
        args_ty,
        ret,
        run,
    }
}

/// A command without arguments.
const fn bare(name: &'static str, ret: &'static Ty, run: Handler) -> Command {
    cmd(name, &EMPTY, &EMPTY_TY, ret, run)
}

pub static COMMANDS: &[Command] = &[
    // Answered by the session (negotiation); listed for query-commands and the schema.
    cmd(
        "qmp_capabilities",
        &QMP_CAPABILITIES_ARG,
        &QMP_CAPABILITIES_ARG_TY,
        &EMPTY_TY,
        h::capabilities_again,
    ),
    bare("query-version", &VERSION_INFO_TY, h::query_version),
    bare("query-commands", &COMMAND_INFO_LIST, h::query_commands),
    bare("query-qmp-schema", &SCHEMA_INFO_LIST, h::query_qmp_schema),
    bare("query-status", &STATUS_INFO_TY, h::query_status),
    bare("query-name", &NAME_INFO_TY, h::query_name),
    bare("query-uuid", &UUID_INFO_TY, h::query_uuid),
    bare("query-kvm", &KVM_INFO_TY, h::query_kvm),
    bare("query-target", &TARGET_INFO_TY, h::query_target),
    bare("query-cpus-fast", &CPU_INFO_FAST_LIST, h::query_cpus_fast),
    bare("query-block", &BLOCK_INFO_LIST, h::query_block),
    bare("query-chardev", &CHARDEV_INFO_LIST, h::query_chardev),
    bare("query-pci", &PCI_INFO_LIST, h::query_pci),
    bare("stop", &EMPTY_TY, h::stop),
    bare("cont", &EMPTY_TY, h::cont),
    bare("system_reset", &EMPTY_TY, h::system_reset),
    bare("system_powerdown", &EMPTY_TY, h::system_powerdown),
    bare("quit", &EMPTY_TY, h::quit),
    cmd(
        "human-monitor-command",
        &HMP_ARG,
        &HMP_ARG_TY,
        &super::schema::STR,
        h::human_monitor_command,
    ),
    cmd("getfd", &FDNAME_ARG, &FDNAME_ARG_TY, &EMPTY_TY, h::getfd),
    cmd("closefd", &CLOSEFD_ARG, &CLOSEFD_ARG_TY, &EMPTY_TY, h::closefd),
    cmd("migrate", &MIGRATE_ARG, &MIGRATE_ARG_TY, &EMPTY_TY, h::migrate),
    bare("migrate_cancel", &EMPTY_TY, h::migrate_cancel),
    bare("migrate-start-postcopy", &EMPTY_TY, h::migrate_start_postcopy),
    cmd(
        "migrate-incoming",
        &MIGRATE_INCOMING_ARG,
        &MIGRATE_INCOMING_ARG_TY,
        &EMPTY_TY,
        h::migrate_incoming,
    ),
    cmd(
        "migrate-recover",
        &MIGRATE_RECOVER_ARG,
        &MIGRATE_RECOVER_ARG_TY,
        &EMPTY_TY,
        h::migrate_recover,
    ),
    cmd(
        "migrate-set-capabilities",
        &SET_CAPABILITIES_ARG,
        &SET_CAPABILITIES_ARG_TY,
        &EMPTY_TY,
        h::migrate_set_capabilities,
    ),
    bare("query-migrate-capabilities", &CAPABILITY_STATUS_LIST, h::query_migrate_capabilities),
    cmd(
        "migrate-set-parameters",
        &MIGRATE_SET_PARAMETERS,
        &MIGRATE_SET_PARAMETERS_TY,
        &EMPTY_TY,
        h::migrate_set_parameters,
    ),
    bare("query-migrate-parameters", &MIGRATION_PARAMETERS_TY, h::query_migrate_parameters),
    bare("query-migrate", &MIGRATION_INFO_TY, h::query_migrate),
    cmd(
        "snapshot-save",
        &SNAPSHOT_SAVE_ARG,
        &SNAPSHOT_SAVE_ARG_TY,
        &EMPTY_TY,
        h::snapshot_save,
    ),
    cmd(
        "snapshot-load",
        &SNAPSHOT_LOAD_ARG,
        &SNAPSHOT_LOAD_ARG_TY,
        &EMPTY_TY,
        h::snapshot_load,
    ),
    cmd(
        "snapshot-delete",
        &SNAPSHOT_DELETE_ARG,
        &SNAPSHOT_DELETE_ARG_TY,
        &EMPTY_TY,
        h::snapshot_delete,
    ),
    bare("query-jobs", &JOB_INFO_LIST, h::query_jobs),
    cmd("set_link", &SET_LINK_ARG, &SET_LINK_ARG_TY, &EMPTY_TY, h::set_link),
    cmd("announce-self", &ANNOUNCE_ARG, &ANNOUNCE_ARG_TY, &EMPTY_TY, h::announce_self),
    cmd("job-dismiss", &JOB_DISMISS_ARG, &JOB_DISMISS_ARG_TY, &EMPTY_TY, h::job_dismiss),
    // What the machine is made of (libvirt's capability probe) and the QOM tree.
    cmd(
        "qom-list-types",
        &QOM_LIST_TYPES_ARG,
        &QOM_LIST_TYPES_ARG_TY,
        &OBJECT_TYPE_INFO_LIST,
        cat::qom_list_types,
    ),
    cmd(
        "device-list-properties",
        &TYPENAME_ARG,
        &TYPENAME_ARG_TY,
        &OBJECT_PROPERTY_INFO_LIST,
        cat::device_list_properties,
    ),
    cmd(
        "qom-list-properties",
        &QOM_LIST_PROPERTIES_ARG,
        &QOM_LIST_PROPERTIES_ARG_TY,
        &OBJECT_PROPERTY_INFO_LIST,
        cat::qom_list_properties,
    ),
    cmd(
        "qom-list",
        &QOM_LIST_ARG,
        &QOM_LIST_ARG_TY,
        &OBJECT_PROPERTY_INFO_LIST,
        cat::qom_list,
    ),
    cmd("qom-get", &QOM_GET_ARG, &QOM_GET_ARG_TY, &super::schema::ANY, cat::qom_get),
    bare("query-machines", &MACHINE_INFO_LIST, cat::query_machines),
    bare("query-cpu-definitions", &CPU_DEFINITION_INFO_LIST, cat::query_cpu_definitions),
    cmd(
        "query-cpu-model-expansion",
        &CPU_MODEL_EXPANSION_ARG,
        &CPU_MODEL_EXPANSION_ARG_TY,
        &CPU_MODEL_EXPANSION_INFO_TY,
        super::cpu_model::query_cpu_model_expansion,
    ),
    bare("query-tpm-models", &TPM_MODEL_LIST, cat::query_tpm_models),
    bare("query-tpm-types", &TPM_TYPE_LIST, cat::query_tpm_types),
    cmd(
        "query-command-line-options",
        &CLI_OPTIONS_ARG,
        &CLI_OPTIONS_ARG_TY,
        &CLI_OPTION_INFO_LIST,
        cat::query_command_line_options,
    ),
    bare("query-iothreads", &IOTHREAD_INFO_LIST, cat::query_iothreads),
    bare("query-balloon", &BALLOON_INFO_TY, cat::query_balloon),
    cmd(
        "query-named-block-nodes",
        &NAMED_BLOCK_NODES_ARG,
        &NAMED_BLOCK_NODES_ARG_TY,
        &BLOCK_DEVICE_INFO_LIST,
        cat::query_named_block_nodes,
    ),
    cmd(
        "query-blockstats",
        &BLOCKSTATS_ARG,
        &BLOCKSTATS_ARG_TY,
        &BLOCK_STATS_LIST,
        cat::query_blockstats,
    ),
    cmd("set-action", &SET_ACTION_ARG, &SET_ACTION_ARG_TY, &EMPTY_TY, cat::set_action),
];

pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}
