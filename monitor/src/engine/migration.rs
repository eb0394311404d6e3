//! Migration requests and answers, shaped as QEMU 7.2's QMP schema has them
//! (`MigrationInfo`, `MigrationParameters`, `MigrationCapability`, ...).

use serde::{Deserialize, Serialize};

/// The longest `downtime-limit` QEMU accepts, in milliseconds.
pub const MAX_DOWNTIME_MS: u64 = 2_000_000;

/// `MigrationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationStatus {
    None,
    Setup,
    Cancelling,
    Cancelled,
    Active,
    Completed,
    Failed,
    PostcopyActive,
    PostcopyPaused,
    PostcopyRecover,
}

impl MigrationStatus {
    pub fn name(self) -> &'static str {
        match self {
            MigrationStatus::None => "none",
            MigrationStatus::Setup => "setup",
            MigrationStatus::Cancelling => "cancelling",
            MigrationStatus::Cancelled => "cancelled",
            MigrationStatus::Active => "active",
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
            MigrationStatus::PostcopyActive => "postcopy-active",
            MigrationStatus::PostcopyPaused => "postcopy-paused",
            MigrationStatus::PostcopyRecover => "postcopy-recover",
        }
    }

    /// Still moving data (what QEMU calls "active-like").
    pub fn in_progress(self) -> bool {
        matches!(
            self,
            MigrationStatus::Setup
                | MigrationStatus::Active
                | MigrationStatus::Cancelling
                | MigrationStatus::PostcopyActive
                | MigrationStatus::PostcopyPaused
                | MigrationStatus::PostcopyRecover
        )
    }

    /// The guest runs at the destination, with RAM still owed by the source.
    pub fn in_postcopy(self) -> bool {
        matches!(
            self,
            MigrationStatus::PostcopyActive | MigrationStatus::PostcopyPaused | MigrationStatus::PostcopyRecover
        )
    }
}

/// `MigrationStats`: the figures of the RAM (or, for `disk`, the disk) transfer.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationStats {
    pub transferred: u64,
    pub remaining: u64,
    pub total: u64,
    pub duplicate: u64,
    pub skipped: u64,
    pub normal: u64,
    pub normal_bytes: u64,
    pub dirty_pages_rate: u64,
    pub mbps: f64,
    pub dirty_sync_count: u64,
    pub postcopy_requests: u64,
    pub page_size: u64,
    pub multifd_bytes: u64,
    pub pages_per_second: u64,
    pub precopy_bytes: u64,
    pub downtime_bytes: u64,
    pub postcopy_bytes: u64,
    pub dirty_sync_missed_zero_copy: u64,
}

/// `XBZRLECacheStats`: the figures of xbzrle, while the capability is on.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct XbzrleCacheStats {
    pub cache_size: u64,
    /// Bytes of delta entries written (their headers included).
    pub bytes: u64,
    /// Pages found in the cache (sent as a delta, or whole when the delta overflowed).
    pub pages: u64,
    pub cache_miss: u64,
    /// Misses per page sent, over the last sync period.
    pub cache_miss_rate: f64,
    /// Page bytes per delta byte, over the last sync period.
    pub encoding_rate: f64,
    /// Pages found whose delta was too big, sent whole.
    pub overflow: u64,
}

/// `query-migrate`. Members are present exactly when QEMU 7.2 has them for the status.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<MigrationStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram: Option<MigrationStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<MigrationStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_time: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_downtime: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_time: Option<u64>,
    /// With the `xbzrle` capability, while active and once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xbzrle_cache: Option<XbzrleCacheStats>,
    /// While the vCPUs are throttled (auto-converge, or the convergence guarantee).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_throttle_percentage: Option<u64>,
    /// godwit's own: the step the convergence guarantee (`x-godwit-converge-deadline`)
    /// took, `throttle` or `stop-and-copy`, once it took one.
    #[serde(rename = "x-godwit-converge-step", skip_serializing_if = "Option::is_none")]
    pub converge_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_desc: Option<String>,
    /// The destination's listening addresses, as `tcp:0.0.0.0:4444` (QMP gives them as
    /// `SocketAddress` objects; see `crate::qmp`).
    #[serde(skip)]
    pub socket_address: Vec<String>,
}

/// `MigrationCapability`, in QEMU 7.2's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationCapability {
    Xbzrle,
    RdmaPinAll,
    AutoConverge,
    ZeroBlocks,
    Compress,
    Events,
    PostcopyRam,
    XColo,
    ReleaseRam,
    Block,
    ReturnPath,
    PauseBeforeSwitchover,
    Multifd,
    DirtyBitmaps,
    PostcopyBlocktime,
    LateBlockActivate,
    XIgnoreShared,
    ValidateUuid,
    BackgroundSnapshot,
    ZeroCopySend,
    PostcopyPreempt,
}

impl MigrationCapability {
    pub const ALL: [MigrationCapability; 21] = [
        Self::Xbzrle,
        Self::RdmaPinAll,
        Self::AutoConverge,
        Self::ZeroBlocks,
        Self::Compress,
        Self::Events,
        Self::PostcopyRam,
        Self::XColo,
        Self::ReleaseRam,
        Self::Block,
        Self::ReturnPath,
        Self::PauseBeforeSwitchover,
        Self::Multifd,
        Self::DirtyBitmaps,
        Self::PostcopyBlocktime,
        Self::LateBlockActivate,
        Self::XIgnoreShared,
        Self::ValidateUuid,
        Self::BackgroundSnapshot,
        Self::ZeroCopySend,
        Self::PostcopyPreempt,
    ];

    pub const NAMES: [&'static str; 21] = [
        "xbzrle",
        "rdma-pin-all",
        "auto-converge",
        "zero-blocks",
        "compress",
        "events",
        "postcopy-ram",
        "x-colo",
        "release-ram",
        "block",
        "return-path",
        "pause-before-switchover",
        "multifd",
        "dirty-bitmaps",
        "postcopy-blocktime",
        "late-block-activate",
        "x-ignore-shared",
        "validate-uuid",
        "background-snapshot",
        "zero-copy-send",
        "postcopy-preempt",
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| Self::ALL[i])
    }
}

/// One capability and whether it is on (`MigrationCapabilityStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationCapabilityStatus {
    pub capability: MigrationCapability,
    pub state: bool,
}

/// `query-migrate-parameters`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationParameters {
    pub announce_initial: u64,
    pub announce_max: u64,
    pub announce_rounds: u64,
    pub announce_step: u64,
    pub compress_level: u8,
    pub compress_threads: u8,
    pub compress_wait_thread: bool,
    pub decompress_threads: u8,
    pub throttle_trigger_threshold: u8,
    pub cpu_throttle_initial: u8,
    pub cpu_throttle_increment: u8,
    pub cpu_throttle_tailslow: bool,
    pub tls_creds: String,
    pub tls_hostname: String,
    pub tls_authz: String,
    pub max_bandwidth: u64,
    pub downtime_limit: u64,
    pub x_checkpoint_delay: u32,
    pub block_incremental: bool,
    pub multifd_channels: u8,
    pub multifd_compression: String,
    pub multifd_zlib_level: u8,
    pub multifd_zstd_level: u8,
    pub xbzrle_cache_size: u64,
    pub max_postcopy_bandwidth: u64,
    pub max_cpu_throttle: u8,
    /// godwit's own: the seconds within which a migration must end (0: no deadline, as
    /// in QEMU). Shown only when set.
    #[serde(skip_serializing_if = "is_zero")]
    pub x_godwit_converge_deadline: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Default for MigrationParameters {
    /// QEMU 7.2's defaults.
    fn default() -> Self {
        MigrationParameters {
            announce_initial: 50,
            announce_max: 550,
            announce_rounds: 5,
            announce_step: 100,
            compress_level: 1,
            compress_threads: 8,
            compress_wait_thread: true,
            decompress_threads: 2,
            throttle_trigger_threshold: 50,
            cpu_throttle_initial: 20,
            cpu_throttle_increment: 10,
            cpu_throttle_tailslow: false,
            tls_creds: String::new(),
            tls_hostname: String::new(),
            tls_authz: String::new(),
            max_bandwidth: 128 << 20,
            downtime_limit: 300,
            x_checkpoint_delay: 20000,
            block_incremental: false,
            multifd_channels: 2,
            multifd_compression: "none".into(),
            multifd_zlib_level: 1,
            multifd_zstd_level: 1,
            xbzrle_cache_size: 64 << 20,
            max_postcopy_bandwidth: 0,
            max_cpu_throttle: 99,
            x_godwit_converge_deadline: 0,
        }
    }
}

/// `migrate-set-parameters`: the parameters to change, each optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MigrateSetParameters {
    pub announce_initial: Option<u64>,
    pub announce_max: Option<u64>,
    pub announce_rounds: Option<u64>,
    pub announce_step: Option<u64>,
    pub compress_level: Option<u8>,
    pub compress_threads: Option<u8>,
    pub compress_wait_thread: Option<bool>,
    pub decompress_threads: Option<u8>,
    pub throttle_trigger_threshold: Option<u8>,
    pub cpu_throttle_initial: Option<u8>,
    pub cpu_throttle_increment: Option<u8>,
    pub cpu_throttle_tailslow: Option<bool>,
    pub tls_creds: Option<String>,
    pub tls_hostname: Option<String>,
    pub tls_authz: Option<String>,
    pub max_bandwidth: Option<u64>,
    pub downtime_limit: Option<u64>,
    pub x_checkpoint_delay: Option<u32>,
    pub block_incremental: Option<bool>,
    pub multifd_channels: Option<u8>,
    pub multifd_compression: Option<String>,
    pub multifd_zlib_level: Option<u8>,
    pub multifd_zstd_level: Option<u8>,
    pub xbzrle_cache_size: Option<u64>,
    pub max_postcopy_bandwidth: Option<u64>,
    pub max_cpu_throttle: Option<u8>,
    pub x_godwit_converge_deadline: Option<u64>,
}

/// QEMU's `AnnounceParameters` timing, in milliseconds: the first round at once, the next
/// after `initial`, each later one `step` longer, at most `max`, `rounds` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceSchedule {
    pub initial: u64,
    pub max: u64,
    pub rounds: u64,
    pub step: u64,
}

/// `migrate`: where to, and how (`blk`/`inc` copy the disks; `detach` only matters to
/// HMP, which otherwise waits for the end; `resume` is post-copy recovery).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrateArgs {
    pub uri: String,
    pub blk: bool,
    pub inc: bool,
    pub detach: bool,
    pub resume: bool,
}
