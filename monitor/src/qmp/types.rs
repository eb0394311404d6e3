//! The QAPI types godwit's QMP commands take and return, declared as QEMU 7.2's schema
//! declares them (members, optionality, types). Implicit argument types are named as QEMU
//! names them (`q_obj_migrate-arg`); `query-qmp-schema` masks non-builtin names anyway.

use super::schema::{ANY, BOOL, EMPTY_TY, Enum, INT, NUMBER, Obj, SIZE, STR, STR_OR_NULL, Ty, U8, U32, U64, opt, req};
use crate::engine::MigrationCapability;

macro_rules! obj {
    ($obj:ident, $ty:ident, $name:literal, [$($m:expr),* $(,)?]) => {
        pub static $obj: Obj = Obj { name: $name, members: &[$($m),*] };
        pub static $ty: Ty = Ty::Obj(&$obj);
    };
}

macro_rules! enumeration {
    ($e:ident, $ty:ident, $name:literal, [$($v:literal),* $(,)?]) => {
        pub static $e: Enum = Enum { name: $name, values: &[$($v),*] };
        pub static $ty: Ty = Ty::Enum(&$e);
    };
}

pub(crate) use {enumeration, obj};

pub static STR_LIST: Ty = Ty::Array(&STR);

// General.
obj!(
    VERSION_TRIPLE,
    VERSION_TRIPLE_TY,
    "VersionTriple",
    [req("major", &INT), req("minor", &INT), req("micro", &INT)]
);
obj!(
    VERSION_INFO,
    VERSION_INFO_TY,
    "VersionInfo",
    [req("qemu", &VERSION_TRIPLE_TY), req("package", &STR)]
);
obj!(COMMAND_INFO, COMMAND_INFO_TY, "CommandInfo", [req("name", &STR)]);
pub static COMMAND_INFO_LIST: Ty = Ty::Array(&COMMAND_INFO_TY);
enumeration!(QMP_CAPABILITY, QMP_CAPABILITY_TY, "QMPCapability", ["oob"]);
pub static QMP_CAPABILITY_LIST: Ty = Ty::Array(&QMP_CAPABILITY_TY);
obj!(
    QMP_CAPABILITIES_ARG,
    QMP_CAPABILITIES_ARG_TY,
    "q_obj_qmp_capabilities-arg",
    [opt("enable", &QMP_CAPABILITY_LIST)]
);
enumeration!(
    RUN_STATE,
    RUN_STATE_TY,
    "RunState",
    [
        "debug",
        "inmigrate",
        "internal-error",
        "io-error",
        "paused",
        "postmigrate",
        "prelaunch",
        "finish-migrate",
        "restore-vm",
        "running",
        "save-vm",
        "shutdown",
        "suspended",
        "watchdog",
        "guest-panicked",
        "colo",
    ]
);
obj!(
    STATUS_INFO,
    STATUS_INFO_TY,
    "StatusInfo",
    [req("running", &BOOL), req("singlestep", &BOOL), req("status", &RUN_STATE_TY)]
);
obj!(NAME_INFO, NAME_INFO_TY, "NameInfo", [opt("name", &STR)]);
obj!(UUID_INFO, UUID_INFO_TY, "UuidInfo", [req("UUID", &STR)]);
obj!(KVM_INFO, KVM_INFO_TY, "KvmInfo", [req("enabled", &BOOL), req("present", &BOOL)]);
enumeration!(SYS_EMU_TARGET, SYS_EMU_TARGET_TY, "SysEmuTarget", ["i386", "x86_64"]);
obj!(TARGET_INFO, TARGET_INFO_TY, "TargetInfo", [req("arch", &SYS_EMU_TARGET_TY)]);
obj!(
    CPU_PROPS,
    CPU_PROPS_TY,
    "CpuInstanceProperties",
    [
        opt("node-id", &INT),
        opt("socket-id", &INT),
        opt("die-id", &INT),
        opt("cluster-id", &INT),
        opt("core-id", &INT),
        opt("thread-id", &INT),
    ]
);
obj!(
    CPU_INFO_FAST,
    CPU_INFO_FAST_TY,
    "CpuInfoFast",
    [
        req("cpu-index", &INT),
        req("qom-path", &STR),
        req("thread-id", &INT),
        opt("props", &CPU_PROPS_TY),
        req("target", &SYS_EMU_TARGET_TY),
    ]
);
pub static CPU_INFO_FAST_LIST: Ty = Ty::Array(&CPU_INFO_FAST_TY);
obj!(
    CHARDEV_INFO,
    CHARDEV_INFO_TY,
    "ChardevInfo",
    [req("label", &STR), req("filename", &STR), req("frontend-open", &BOOL)]
);
pub static CHARDEV_INFO_LIST: Ty = Ty::Array(&CHARDEV_INFO_TY);
obj!(
    HMP_ARG,
    HMP_ARG_TY,
    "q_obj_human-monitor-command-arg",
    [req("command-line", &STR), opt("cpu-index", &INT)]
);
obj!(
    SET_LINK_ARG,
    SET_LINK_ARG_TY,
    "q_obj_set_link-arg",
    [req("name", &STR), req("up", &BOOL)]
);
obj!(
    ANNOUNCE_ARG,
    ANNOUNCE_ARG_TY,
    "AnnounceParameters",
    [
        req("initial", &INT),
        req("max", &INT),
        req("rounds", &INT),
        req("step", &INT),
        opt("interfaces", &STR_LIST),
        opt("id", &STR),
    ]
);
obj!(FDNAME_ARG, FDNAME_ARG_TY, "q_obj_getfd-arg", [req("fdname", &STR)]);
obj!(CLOSEFD_ARG, CLOSEFD_ARG_TY, "q_obj_closefd-arg", [req("fdname", &STR)]);

// PCI.
obj!(
    PCI_REGION,
    PCI_REGION_TY,
    "PciMemoryRegion",
    [
        req("bar", &INT),
        req("type", &STR),
        req("address", &INT),
        req("size", &INT),
        opt("prefetch", &BOOL),
        opt("mem_type_64", &BOOL),
    ]
);
pub static PCI_REGION_LIST: Ty = Ty::Array(&PCI_REGION_TY);
obj!(PCI_CLASS, PCI_CLASS_TY, "PciDeviceClass", [opt("desc", &STR), req("class", &INT)]);
obj!(
    PCI_ID,
    PCI_ID_TY,
    "PciDeviceId",
    [
        req("device", &INT),
        req("vendor", &INT),
        opt("subsystem", &INT),
        opt("subsystem-vendor", &INT),
    ]
);
obj!(
    PCI_DEVICE,
    PCI_DEVICE_TY,
    "PciDeviceInfo",
    [
        req("bus", &INT),
        req("slot", &INT),
        req("function", &INT),
        req("class_info", &PCI_CLASS_TY),
        req("id", &PCI_ID_TY),
        opt("irq", &INT),
        req("irq_pin", &INT),
        req("qdev_id", &STR),
        opt("pci_bridge", &ANY),
        req("regions", &PCI_REGION_LIST),
    ]
);
pub static PCI_DEVICE_LIST: Ty = Ty::Array(&PCI_DEVICE_TY);
obj!(
    PCI_INFO,
    PCI_INFO_TY,
    "PciInfo",
    [req("bus", &INT), req("devices", &PCI_DEVICE_LIST)]
);
pub static PCI_INFO_LIST: Ty = Ty::Array(&PCI_INFO_TY);

// Block.
obj!(
    SNAPSHOT_INFO,
    SNAPSHOT_INFO_TY,
    "SnapshotInfo",
    [
        req("id", &STR),
        req("name", &STR),
        req("vm-state-size", &INT),
        req("date-sec", &INT),
        req("date-nsec", &INT),
        req("vm-clock-sec", &INT),
        req("vm-clock-nsec", &INT),
        opt("icount", &INT),
    ]
);
pub static SNAPSHOT_INFO_LIST: Ty = Ty::Array(&SNAPSHOT_INFO_TY);
obj!(
    IMAGE_INFO,
    IMAGE_INFO_TY,
    "ImageInfo",
    [
        req("filename", &STR),
        req("format", &STR),
        opt("dirty-flag", &BOOL),
        opt("actual-size", &INT),
        req("virtual-size", &INT),
        opt("cluster-size", &INT),
        opt("encrypted", &BOOL),
        opt("compressed", &BOOL),
        opt("backing-filename", &STR),
        opt("full-backing-filename", &STR),
        opt("backing-filename-format", &STR),
        opt("snapshots", &SNAPSHOT_INFO_LIST),
        opt("backing-image", &IMAGE_INFO_TY),
        opt("format-specific", &ANY),
    ]
);
obj!(
    CACHE_INFO,
    CACHE_INFO_TY,
    "BlockdevCacheInfo",
    [req("writeback", &BOOL), req("direct", &BOOL), req("no-flush", &BOOL)]
);
enumeration!(
    DETECT_ZEROES,
    DETECT_ZEROES_TY,
    "BlockdevDetectZeroesOptions",
    ["off", "on", "unmap"]
);
obj!(
    BLOCK_DEVICE_INFO,
    BLOCK_DEVICE_INFO_TY,
    "BlockDeviceInfo",
    [
        req("file", &STR),
        opt("node-name", &STR),
        req("ro", &BOOL),
        req("drv", &STR),
        opt("backing_file", &STR),
        req("backing_file_depth", &INT),
        req("encrypted", &BOOL),
        req("detect_zeroes", &DETECT_ZEROES_TY),
        req("bps", &INT),
        req("bps_rd", &INT),
        req("bps_wr", &INT),
        req("iops", &INT),
        req("iops_rd", &INT),
        req("iops_wr", &INT),
        req("image", &IMAGE_INFO_TY),
        req("cache", &CACHE_INFO_TY),
        req("write_threshold", &INT),
    ]
);
enumeration!(IO_STATUS, IO_STATUS_TY, "BlockDeviceIoStatus", ["ok", "failed", "nospace"]);
obj!(
    BLOCK_INFO,
    BLOCK_INFO_TY,
    "BlockInfo",
    [
        req("device", &STR),
        opt("qdev", &STR),
        req("type", &STR),
        req("removable", &BOOL),
        req("locked", &BOOL),
        opt("inserted", &BLOCK_DEVICE_INFO_TY),
        opt("tray_open", &BOOL),
        opt("io-status", &IO_STATUS_TY),
    ]
);
pub static BLOCK_INFO_LIST: Ty = Ty::Array(&BLOCK_INFO_TY);

// Jobs.
enumeration!(
    JOB_TYPE,
    JOB_TYPE_TY,
    "JobType",
    [
        "commit",
        "stream",
        "mirror",
        "backup",
        "create",
        "amend",
        "snapshot-load",
        "snapshot-save",
        "snapshot-delete",
    ]
);
enumeration!(
    JOB_STATUS,
    JOB_STATUS_TY,
    "JobStatus",
    [
        "undefined",
        "created",
        "running",
        "paused",
        "ready",
        "standby",
        "waiting",
        "pending",
        "aborting",
        "concluded",
        "null",
    ]
);
obj!(
    JOB_INFO,
    JOB_INFO_TY,
    "JobInfo",
    [
        req("id", &STR),
        req("type", &JOB_TYPE_TY),
        req("status", &JOB_STATUS_TY),
        req("current-progress", &INT),
        req("total-progress", &INT),
        opt("error", &STR),
    ]
);
pub static JOB_INFO_LIST: Ty = Ty::Array(&JOB_INFO_TY);
obj!(
    SNAPSHOT_SAVE_ARG,
    SNAPSHOT_SAVE_ARG_TY,
    "q_obj_snapshot-save-arg",
    [
        req("job-id", &STR),
        req("tag", &STR),
        req("vmstate", &STR),
        req("devices", &STR_LIST),
    ]
);
obj!(
    SNAPSHOT_LOAD_ARG,
    SNAPSHOT_LOAD_ARG_TY,
    "q_obj_snapshot-load-arg",
    [
        req("job-id", &STR),
        req("tag", &STR),
        req("vmstate", &STR),
        req("devices", &STR_LIST),
    ]
);
obj!(
    SNAPSHOT_DELETE_ARG,
    SNAPSHOT_DELETE_ARG_TY,
    "q_obj_snapshot-delete-arg",
    [req("job-id", &STR), req("tag", &STR), req("devices", &STR_LIST),]
);
obj!(JOB_DISMISS_ARG, JOB_DISMISS_ARG_TY, "q_obj_job-dismiss-arg", [req("id", &STR)]);

// Migration.
enumeration!(
    MIGRATION_STATUS,
    MIGRATION_STATUS_TY,
    "MigrationStatus",
    [
        "none",
        "setup",
        "cancelling",
        "cancelled",
        "active",
        "postcopy-active",
        "postcopy-paused",
        "postcopy-recover",
        "completed",
        "failed",
        "colo",
        "pre-switchover",
        "device",
        "wait-unplug",
    ]
);
obj!(
    MIGRATION_STATS,
    MIGRATION_STATS_TY,
    "MigrationStats",
    [
        req("transferred", &INT),
        req("remaining", &INT),
        req("total", &INT),
        req("duplicate", &INT),
        req("skipped", &INT),
        req("normal", &INT),
        req("normal-bytes", &INT),
        req("dirty-pages-rate", &INT),
        req("mbps", &NUMBER),
        req("dirty-sync-count", &INT),
        req("postcopy-requests", &INT),
        req("page-size", &INT),
        req("multifd-bytes", &U64),
        req("pages-per-second", &U64),
        req("precopy-bytes", &U64),
        req("downtime-bytes", &U64),
        req("postcopy-bytes", &U64),
        req("dirty-sync-missed-zero-copy", &U64),
    ]
);
obj!(
    XBZRLE_CACHE_STATS,
    XBZRLE_CACHE_STATS_TY,
    "XBZRLECacheStats",
    [
        req("cache-size", &SIZE),
        req("bytes", &INT),
        req("pages", &INT),
        req("cache-miss", &INT),
        req("cache-miss-rate", &NUMBER),
        req("encoding-rate", &NUMBER),
        req("overflow", &INT),
    ]
);
enumeration!(
    SOCKET_ADDRESS_TYPE,
    SOCKET_ADDRESS_TYPE_TY,
    "SocketAddressType",
    ["inet", "unix", "vsock", "fd"]
);
obj!(
    SOCKET_ADDRESS,
    SOCKET_ADDRESS_TY,
    "SocketAddress",
    [
        req("type", &SOCKET_ADDRESS_TYPE_TY),
        opt("host", &STR),
        opt("port", &STR),
        opt("ipv4", &BOOL),
        opt("ipv6", &BOOL),
        opt("path", &STR),
        opt("str", &STR),
    ]
);
pub static SOCKET_ADDRESS_LIST: Ty = Ty::Array(&SOCKET_ADDRESS_TY);
obj!(
    MIGRATION_INFO,
    MIGRATION_INFO_TY,
    "MigrationInfo",
    [
        opt("status", &MIGRATION_STATUS_TY),
        opt("ram", &MIGRATION_STATS_TY),
        opt("disk", &MIGRATION_STATS_TY),
        opt("total-time", &INT),
        opt("expected-downtime", &INT),
        opt("downtime", &INT),
        opt("setup-time", &INT),
        opt("xbzrle-cache", &XBZRLE_CACHE_STATS_TY),
        opt("cpu-throttle-percentage", &INT),
        opt("x-godwit-converge-step", &STR),
        opt("error-desc", &STR),
        opt("blocked-reasons", &STR_LIST),
        opt("socket-address", &SOCKET_ADDRESS_LIST),
    ]
);
pub static MIGRATION_CAPABILITY: Enum = Enum {
    name: "MigrationCapability",
    values: &MigrationCapability::NAMES,
};
pub static MIGRATION_CAPABILITY_TY: Ty = Ty::Enum(&MIGRATION_CAPABILITY);
obj!(
    CAPABILITY_STATUS,
    CAPABILITY_STATUS_TY,
    "MigrationCapabilityStatus",
    [req("capability", &MIGRATION_CAPABILITY_TY), req("state", &BOOL),]
);
pub static CAPABILITY_STATUS_LIST: Ty = Ty::Array(&CAPABILITY_STATUS_TY);
obj!(
    SET_CAPABILITIES_ARG,
    SET_CAPABILITIES_ARG_TY,
    "q_obj_migrate-set-capabilities-arg",
    [req("capabilities", &CAPABILITY_STATUS_LIST),]
);
enumeration!(
    MULTIFD_COMPRESSION,
    MULTIFD_COMPRESSION_TY,
    "MultiFDCompression",
    ["none", "zlib", "zstd"]
);

/// The members of `MigrationParameters` (query) and `MigrateSetParameters`: the same
/// names and types, except that the TLS strings may be null when setting.
macro_rules! migration_parameters {
    ($obj:ident, $ty:ident, $name:literal, $tls:expr) => {
        obj!(
            $obj,
            $ty,
            $name,
            [
                opt("announce-initial", &SIZE),
                opt("announce-max", &SIZE),
                opt("announce-rounds", &SIZE),
                opt("announce-step", &SIZE),
                opt("compress-level", &U8),
                opt("compress-threads", &U8),
                opt("compress-wait-thread", &BOOL),
                opt("decompress-threads", &U8),
                opt("throttle-trigger-threshold", &U8),
                opt("cpu-throttle-initial", &U8),
                opt("cpu-throttle-increment", &U8),
                opt("cpu-throttle-tailslow", &BOOL),
                opt("tls-creds", $tls),
                opt("tls-hostname", $tls),
                opt("tls-authz", $tls),
                opt("max-bandwidth", &SIZE),
                opt("downtime-limit", &U64),
                opt("x-checkpoint-delay", &U32),
                opt("block-incremental", &BOOL),
                opt("multifd-channels", &U8),
                opt("multifd-compression", &MULTIFD_COMPRESSION_TY),
                opt("multifd-zlib-level", &U8),
                opt("multifd-zstd-level", &U8),
                opt("xbzrle-cache-size", &SIZE),
                opt("max-postcopy-bandwidth", &SIZE),
                opt("max-cpu-throttle", &U8),
                opt("block-bitmap-mapping", &ANY),
                opt("x-godwit-converge-deadline", &U64),
            ]
        );
    };
}
migration_parameters!(MIGRATION_PARAMETERS, MIGRATION_PARAMETERS_TY, "MigrationParameters", &STR);
migration_parameters!(
    MIGRATE_SET_PARAMETERS,
    MIGRATE_SET_PARAMETERS_TY,
    "MigrateSetParameters",
    &STR_OR_NULL
);
obj!(
    MIGRATE_ARG,
    MIGRATE_ARG_TY,
    "q_obj_migrate-arg",
    [
        req("uri", &STR),
        opt("blk", &BOOL),
        opt("inc", &BOOL),
        opt("detach", &BOOL),
        opt("resume", &BOOL),
    ]
);
obj!(
    MIGRATE_RECOVER_ARG,
    MIGRATE_RECOVER_ARG_TY,
    "q_obj_migrate-recover-arg",
    [req("uri", &STR)]
);
obj!(
    MIGRATE_INCOMING_ARG,
    MIGRATE_INCOMING_ARG_TY,
    "q_obj_migrate-incoming-arg",
    [req("uri", &STR)]
);

// Events.
enumeration!(
    SHUTDOWN_CAUSE,
    SHUTDOWN_CAUSE_TY,
    "ShutdownCause",
    [
        "none",
        "host-error",
        "host-qmp-quit",
        "host-qmp-system-reset",
        "host-signal",
        "host-ui",
        "guest-shutdown",
        "guest-reset",
        "guest-panic",
        "subsystem-reset",
        "snapshot-load",
    ]
);
obj!(
    SHUTDOWN_ARG,
    SHUTDOWN_ARG_TY,
    "q_obj_SHUTDOWN-arg",
    [req("guest", &BOOL), req("reason", &SHUTDOWN_CAUSE_TY)]
);
obj!(
    RESET_ARG,
    RESET_ARG_TY,
    "q_obj_RESET-arg",
    [req("guest", &BOOL), req("reason", &SHUTDOWN_CAUSE_TY)]
);
obj!(
    MIGRATION_EVENT_ARG,
    MIGRATION_EVENT_ARG_TY,
    "q_obj_MIGRATION-arg",
    [req("status", &MIGRATION_STATUS_TY)]
);
obj!(
    MIGRATION_PASS_ARG,
    MIGRATION_PASS_ARG_TY,
    "q_obj_MIGRATION_PASS-arg",
    [req("pass", &INT)]
);
obj!(
    JOB_STATUS_CHANGE_ARG,
    JOB_STATUS_CHANGE_ARG_TY,
    "q_obj_JOB_STATUS_CHANGE-arg",
    [req("id", &STR), req("status", &JOB_STATUS_TY),]
);

/// The events godwit emits, with their `data` types.
pub static EVENTS: &[(&str, &Ty)] = &[
    ("SHUTDOWN", &SHUTDOWN_ARG_TY),
    ("POWERDOWN", &EMPTY_TY),
    ("RESET", &RESET_ARG_TY),
    ("STOP", &EMPTY_TY),
    ("RESUME", &EMPTY_TY),
    ("MIGRATION", &MIGRATION_EVENT_ARG_TY),
    ("MIGRATION_PASS", &MIGRATION_PASS_ARG_TY),
    ("JOB_STATUS_CHANGE", &JOB_STATUS_CHANGE_ARG_TY),
];

// Introspection: `SchemaInfo`, a flat union described by its base and every variant's
// members (all optional here).
enumeration!(
    SCHEMA_META_TYPE,
    SCHEMA_META_TYPE_TY,
    "SchemaMetaType",
    ["builtin", "enum", "array", "object", "alternate", "command", "event",]
);
obj!(
    SCHEMA_INFO,
    SCHEMA_INFO_TY,
    "SchemaInfo",
    [
        req("name", &STR),
        req("meta-type", &SCHEMA_META_TYPE_TY),
        opt("features", &STR_LIST),
        opt("json-type", &STR),
        opt("values", &STR_LIST),
        opt("members", &ANY),
        opt("element-type", &STR),
        opt("tag", &STR),
        opt("variants", &ANY),
        opt("arg-type", &STR),
        opt("ret-type", &STR),
        opt("allow-oob", &BOOL),
    ]
);
pub static SCHEMA_INFO_LIST: Ty = Ty::Array(&SCHEMA_INFO_TY);
