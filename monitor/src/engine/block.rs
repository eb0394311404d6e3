//! Disks and their snapshots, shaped as QEMU 7.2's `query-block` reply.

use serde::Serialize;

/// One internal snapshot (`SnapshotInfo` in QEMU's schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: String,
    #[serde(rename = "vm-state-size")]
    pub vm_state_size: u64,
    #[serde(rename = "date-sec")]
    pub date_sec: u64,
    #[serde(rename = "date-nsec")]
    pub date_nsec: u64,
    #[serde(rename = "vm-clock-sec")]
    pub vm_clock_sec: u64,
    #[serde(rename = "vm-clock-nsec")]
    pub vm_clock_nsec: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icount: Option<u64>,
}

/// The snapshots of one disk that takes part in `savevm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSnapshots {
    pub device: String,
    pub snapshots: Vec<SnapshotInfo>,
}

/// An image file and, for an overlay, its backing chain (`ImageInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub filename: String,
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "actual-size", skip_serializing_if = "Option::is_none")]
    pub actual_size: Option<u64>,
    #[serde(rename = "cluster-size", skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u64>,
    #[serde(rename = "dirty-flag", skip_serializing_if = "Option::is_none")]
    pub dirty_flag: Option<bool>,
    #[serde(rename = "backing-filename", skip_serializing_if = "Option::is_none")]
    pub backing_filename: Option<String>,
    #[serde(rename = "backing-image", skip_serializing_if = "Option::is_none")]
    pub backing_image: Option<Box<ImageInfo>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotInfo>,
    #[serde(rename = "format-specific", skip_serializing_if = "Option::is_none")]
    pub format_specific: Option<FormatSpecific>,
}

/// What only a qcow2 image has (`ImageInfoSpecific`, type `qcow2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FormatSpecific {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: Qcow2Specific,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Qcow2Specific {
    /// `0.10` for version 2, `1.1` for version 3.
    pub compat: &'static str,
    pub compression_type: &'static str,
    pub lazy_refcounts: bool,
    pub refcount_bits: u32,
    pub corrupt: bool,
    pub extended_l2: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlockCache {
    pub writeback: bool,
    pub direct: bool,
    #[serde(rename = "no-flush")]
    pub no_flush: bool,
}

/// The medium of a drive (`BlockDeviceInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDeviceInfo {
    /// The file as given (`json:{...}` for a `snapshot=on` overlay).
    pub file: String,
    #[serde(rename = "node-name")]
    pub node_name: String,
    pub ro: bool,
    pub drv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    pub backing_file_depth: u32,
    pub encrypted: bool,
    pub detect_zeroes: &'static str,
    pub bps: u64,
    pub bps_rd: u64,
    pub bps_wr: u64,
    pub iops: u64,
    pub iops_rd: u64,
    pub iops_wr: u64,
    pub image: ImageInfo,
    pub cache: BlockCache,
    pub write_threshold: u64,
}

/// One drive of `query-block` (`BlockInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockInfo {
    pub device: String,
    pub qdev: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub removable: bool,
    pub locked: bool,
    #[serde(rename = "io-status")]
    pub io_status: &'static str,
    pub inserted: BlockDeviceInfo,
}

/// A node's or a device's I/O counters (`BlockDeviceStats`). Only what is accounted is
/// counted: `account_invalid` and `account_failed` say whether requests the guest got
/// wrong, and requests that failed in the image, are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlockDeviceStats {
    pub rd_bytes: u64,
    pub wr_bytes: u64,
    pub unmap_bytes: u64,
    pub rd_operations: u64,
    pub wr_operations: u64,
    pub flush_operations: u64,
    pub unmap_operations: u64,
    pub rd_total_time_ns: u64,
    pub wr_total_time_ns: u64,
    pub flush_total_time_ns: u64,
    pub unmap_total_time_ns: u64,
    pub wr_highest_offset: u64,
    pub rd_merged: u64,
    pub wr_merged: u64,
    pub unmap_merged: u64,
    pub failed_rd_operations: u64,
    pub failed_wr_operations: u64,
    pub failed_flush_operations: u64,
    pub failed_unmap_operations: u64,
    pub invalid_rd_operations: u64,
    pub invalid_wr_operations: u64,
    pub invalid_flush_operations: u64,
    pub invalid_unmap_operations: u64,
    /// Since the last request completed; absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_time_ns: Option<u64>,
    pub account_invalid: bool,
    pub account_failed: bool,
    /// No `block-set-latency-histogram` intervals: always empty.
    pub timed_stats: Vec<serde_json::Value>,
}

/// One entry of `query-blockstats` (`BlockStats`): a device (with `query-nodes` off) or a
/// node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qdev: Option<String>,
    #[serde(rename = "node-name", skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    pub stats: BlockDeviceStats,
}
