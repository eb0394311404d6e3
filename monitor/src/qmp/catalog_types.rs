//! The QAPI types of the commands management software asks before and while it starts a
//! guest (`qom-list-types`, `device-list-properties`, `query-machines`, `qom-get`, ...),
//! declared as QEMU 7.2's schema declares them.

use super::schema::{ANY, BOOL, Enum, INT, Obj, STR, Ty, opt, req};
use super::types::{STR_LIST, enumeration, obj};

obj!(
    QOM_LIST_TYPES_ARG,
    QOM_LIST_TYPES_ARG_TY,
    "q_obj_qom-list-types-arg",
    [opt("implements", &STR), opt("abstract", &BOOL)]
);
obj!(
    OBJECT_TYPE_INFO,
    OBJECT_TYPE_INFO_TY,
    "ObjectTypeInfo",
    [req("name", &STR), opt("abstract", &BOOL), opt("parent", &STR)]
);
pub static OBJECT_TYPE_INFO_LIST: Ty = Ty::Array(&OBJECT_TYPE_INFO_TY);
obj!(
    TYPENAME_ARG,
    TYPENAME_ARG_TY,
    "q_obj_device-list-properties-arg",
    [req("typename", &STR)]
);
obj!(
    QOM_LIST_PROPERTIES_ARG,
    QOM_LIST_PROPERTIES_ARG_TY,
    "q_obj_qom-list-properties-arg",
    [req("typename", &STR)]
);
obj!(
    OBJECT_PROPERTY_INFO,
    OBJECT_PROPERTY_INFO_TY,
    "ObjectPropertyInfo",
    [
        req("name", &STR),
        req("type", &STR),
        opt("description", &STR),
        opt("default-value", &ANY)
    ]
);
pub static OBJECT_PROPERTY_INFO_LIST: Ty = Ty::Array(&OBJECT_PROPERTY_INFO_TY);
obj!(QOM_LIST_ARG, QOM_LIST_ARG_TY, "q_obj_qom-list-arg", [req("path", &STR)]);
obj!(
    QOM_GET_ARG,
    QOM_GET_ARG_TY,
    "q_obj_qom-get-arg",
    [req("path", &STR), req("property", &STR)]
);
obj!(
    MACHINE_INFO,
    MACHINE_INFO_TY,
    "MachineInfo",
    [
        req("name", &STR),
        opt("alias", &STR),
        opt("is-default", &BOOL),
        req("cpu-max", &INT),
        req("hotpluggable-cpus", &BOOL),
        req("numa-mem-supported", &BOOL),
        req("deprecated", &BOOL),
        opt("default-cpu-type", &STR),
        opt("default-ram-id", &STR),
    ]
);
pub static MACHINE_INFO_LIST: Ty = Ty::Array(&MACHINE_INFO_TY);
obj!(
    CPU_DEFINITION_INFO,
    CPU_DEFINITION_INFO_TY,
    "CpuDefinitionInfo",
    [
        req("name", &STR),
        opt("migration-safe", &BOOL),
        req("static", &BOOL),
        opt("unavailable-features", &STR_LIST),
        req("typename", &STR),
        opt("alias-of", &STR),
        req("deprecated", &BOOL),
    ]
);
pub static CPU_DEFINITION_INFO_LIST: Ty = Ty::Array(&CPU_DEFINITION_INFO_TY);
enumeration!(
    CPU_MODEL_EXPANSION_TYPE,
    CPU_MODEL_EXPANSION_TYPE_TY,
    "CpuModelExpansionType",
    ["static", "full"]
);
obj!(
    CPU_MODEL_INFO,
    CPU_MODEL_INFO_TY,
    "CpuModelInfo",
    [req("name", &STR), opt("props", &ANY)]
);
obj!(
    CPU_MODEL_EXPANSION_ARG,
    CPU_MODEL_EXPANSION_ARG_TY,
    "q_obj_query-cpu-model-expansion-arg",
    [req("type", &CPU_MODEL_EXPANSION_TYPE_TY), req("model", &CPU_MODEL_INFO_TY)]
);
obj!(
    CPU_MODEL_EXPANSION_INFO,
    CPU_MODEL_EXPANSION_INFO_TY,
    "CpuModelExpansionInfo",
    [req("model", &CPU_MODEL_INFO_TY)]
);
enumeration!(TPM_MODEL, TPM_MODEL_TY, "TpmModel", ["tpm-tis", "tpm-crb", "tpm-spapr"]);
pub static TPM_MODEL_LIST: Ty = Ty::Array(&TPM_MODEL_TY);
enumeration!(TPM_TYPE, TPM_TYPE_TY, "TpmType", ["passthrough", "emulator"]);
pub static TPM_TYPE_LIST: Ty = Ty::Array(&TPM_TYPE_TY);
obj!(
    CLI_OPTIONS_ARG,
    CLI_OPTIONS_ARG_TY,
    "q_obj_query-command-line-options-arg",
    [opt("option", &STR)]
);
enumeration!(
    CLI_PARAMETER_TYPE,
    CLI_PARAMETER_TYPE_TY,
    "CommandLineParameterType",
    ["string", "boolean", "number", "size"]
);
obj!(
    CLI_PARAMETER_INFO,
    CLI_PARAMETER_INFO_TY,
    "CommandLineParameterInfo",
    [
        req("name", &STR),
        req("type", &CLI_PARAMETER_TYPE_TY),
        opt("help", &STR),
        opt("default", &STR)
    ]
);
pub static CLI_PARAMETER_INFO_LIST: Ty = Ty::Array(&CLI_PARAMETER_INFO_TY);
obj!(
    CLI_OPTION_INFO,
    CLI_OPTION_INFO_TY,
    "CommandLineOptionInfo",
    [req("option", &STR), req("parameters", &CLI_PARAMETER_INFO_LIST)]
);
pub static CLI_OPTION_INFO_LIST: Ty = Ty::Array(&CLI_OPTION_INFO_TY);
obj!(
    IOTHREAD_INFO,
    IOTHREAD_INFO_TY,
    "IOThreadInfo",
    [
        req("id", &STR),
        req("thread-id", &INT),
        req("poll-max-ns", &INT),
        req("poll-grow", &INT),
        req("poll-shrink", &INT),
        req("aio-max-batch", &INT),
    ]
);
pub static IOTHREAD_INFO_LIST: Ty = Ty::Array(&IOTHREAD_INFO_TY);
obj!(
    NAMED_BLOCK_NODES_ARG,
    NAMED_BLOCK_NODES_ARG_TY,
    "q_obj_query-named-block-nodes-arg",
    [opt("flat", &BOOL)]
);
pub static BLOCK_DEVICE_INFO_LIST: Ty = Ty::Array(&super::types::BLOCK_DEVICE_INFO_TY);
obj!(
    BLOCKSTATS_ARG,
    BLOCKSTATS_ARG_TY,
    "q_obj_query-blockstats-arg",
    [opt("query-nodes", &BOOL)]
);
static TIMED_STATS_LIST: Ty = Ty::Array(&ANY);
obj!(
    BLOCK_DEVICE_STATS,
    BLOCK_DEVICE_STATS_TY,
    "BlockDeviceStats",
    [
        req("rd_bytes", &INT),
        req("wr_bytes", &INT),
        req("unmap_bytes", &INT),
        req("rd_operations", &INT),
        req("wr_operations", &INT),
        req("flush_operations", &INT),
        req("unmap_operations", &INT),
        req("rd_total_time_ns", &INT),
        req("wr_total_time_ns", &INT),
        req("flush_total_time_ns", &INT),
        req("unmap_total_time_ns", &INT),
        req("wr_highest_offset", &INT),
        req("rd_merged", &INT),
        req("wr_merged", &INT),
        req("unmap_merged", &INT),
        req("failed_rd_operations", &INT),
        req("failed_wr_operations", &INT),
        req("failed_flush_operations", &INT),
        req("failed_unmap_operations", &INT),
        req("invalid_rd_operations", &INT),
        req("invalid_wr_operations", &INT),
        req("invalid_flush_operations", &INT),
        req("invalid_unmap_operations", &INT),
        opt("idle_time_ns", &INT),
        req("account_invalid", &BOOL),
        req("account_failed", &BOOL),
        req("timed_stats", &TIMED_STATS_LIST),
    ]
);
obj!(
    BLOCK_STATS,
    BLOCK_STATS_TY,
    "BlockStats",
    [
        opt("device", &STR),
        opt("qdev", &STR),
        opt("node-name", &STR),
        req("stats", &BLOCK_DEVICE_STATS_TY),
    ]
);
pub static BLOCK_STATS_LIST: Ty = Ty::Array(&BLOCK_STATS_TY);
obj!(BALLOON_INFO, BALLOON_INFO_TY, "BalloonInfo", [req("actual", &INT)]);
enumeration!(REBOOT_ACTION, REBOOT_ACTION_TY, "RebootAction", ["reset", "shutdown"]);
enumeration!(SHUTDOWN_ACTION, SHUTDOWN_ACTION_TY, "ShutdownAction", ["poweroff", "pause"]);
enumeration!(
    PANIC_ACTION,
    PANIC_ACTION_TY,
    "PanicAction",
    ["pause", "shutdown", "exit-failure", "none"]
);
enumeration!(
    WATCHDOG_ACTION,
    WATCHDOG_ACTION_TY,
    "WatchdogAction",
    ["reset", "shutdown", "poweroff", "pause", "debug", "none", "inject-nmi"]
);
obj!(
    SET_ACTION_ARG,
    SET_ACTION_ARG_TY,
    "q_obj_set-action-arg",
    [
        opt("reboot", &REBOOT_ACTION_TY),
        opt("shutdown", &SHUTDOWN_ACTION_TY),
        opt("panic", &PANIC_ACTION_TY),
        opt("watchdog", &WATCHDOG_ACTION_TY),
    ]
);
