//! The disks as `query-block` (and so `info block`) describes them.

use super::disks::Disk;
use devices::block::BlockBackend;
use devices::block::qcow2::header;
use devices::bus::lock;
use devices::virtio::blk::stats::BlkStats;
use monitor::engine::BlockInfo;
use monitor::engine::block::{BlockCache, BlockDeviceInfo, BlockDeviceStats, BlockStats, FormatSpecific, ImageInfo, Qcow2Specific};
use std::os::unix::fs::MetadataExt;

/// Every disk, in order.
pub fn block_info(disks: &[Disk]) -> Vec<BlockInfo> {
    disks.iter().enumerate().map(|(i, d)| one(i, d)).collect()
}

fn one(i: usize, d: &Disk) -> BlockInfo {
    let mut b = lock(&d.backend);
    let file = if d.cfg.snapshot {
        format!("json:{{\"driver\": \"qcow2\", \"file\": \"{}\"}}", d.cfg.file.display())
    } else {
        d.cfg.file.display().to_string()
    };
    let image = image_info(b.as_mut(), &file);
    let (backing_file, backing_file_depth) = chain(&image);
    // A `-blockdev` disk has no drive name: QEMU shows its node, and the device by its id.
    let (device, node_name, qdev) = match &d.cfg.blockdev {
        Some(bd) => (
            String::new(),
            d.cfg.id.clone(),
            match &bd.qdev_id {
                Some(q) => format!("/machine/peripheral/{q}/virtio-backend"),
                None => format!("/machine/peripheral-anon/device[{i}]/virtio-backend"),
            },
        ),
        None => (
            d.cfg.id.clone(),
            format!("#block{}", 100 + 100 * i),
            format!("/machine/peripheral-anon/device[{i}]/virtio-backend"),
        ),
    };
    BlockInfo {
        device,
        qdev,
        kind: "unknown",
        removable: false,
        locked: false,
        io_status: "ok",
        inserted: BlockDeviceInfo {
            file,
            node_name,
            ro: d.cfg.read_only,
            drv: b.format().name().to_string(),
            backing_file,
            backing_file_depth,
            encrypted: false,
            detect_zeroes: "off",
            bps: 0,
            bps_rd: 0,
            bps_wr: 0,
            iops: 0,
            iops_rd: 0,
            iops_wr: 0,
            image,
            cache: BlockCache {
                writeback: true,
                direct: false,
                no_flush: d.cfg.ignore_flush || d.cfg.snapshot,
            },
            write_threshold: 0,
        },
    }
}

/// Every node: a disk's format node and, for a `-blockdev` disk, its protocol node (the
/// file itself, as QEMU's `file` and `host_device` drivers describe it).
pub fn named_nodes(disks: &[Disk]) -> Vec<BlockDeviceInfo> {
    let mut out = Vec::new();
    for (d, b) in disks.iter().zip(block_info(disks)) {
        let format = b.inserted;
        let Some(bd) = &d.cfg.blockdev else {
            out.push(format);
            continue;
        };
        let meta = std::fs::metadata(&d.cfg.file).ok();
        let file = d.cfg.file.display().to_string();
        let image = ImageInfo {
            filename: file.clone(),
            format: bd.storage_driver.clone(),
            virtual_size: meta.as_ref().map_or(0, |m| m.len()),
            actual_size: meta.as_ref().map(|m| m.blocks() * 512),
            cluster_size: None,
            dirty_flag: Some(false),
            backing_filename: None,
            backing_image: None,
            snapshots: Vec::new(),
            format_specific: None,
        };
        let storage = BlockDeviceInfo {
            file,
            node_name: bd.storage_node.clone(),
            drv: bd.storage_driver.clone(),
            backing_file: None,
            backing_file_depth: 0,
            image,
            ..format.clone()
        };
        out.push(format);
        out.push(storage);
    }
    out
}

/// `query-blockstats`: each device's counters (the guest's requests, as QEMU counts them at
/// the device), or with `query_nodes` each disk's top node, whose only figure, as in QEMU
/// (which accounts requests at the device), is the end of the highest write.
pub fn block_stats(disks: &[Disk], query_nodes: bool) -> Vec<BlockStats> {
    disks
        .iter()
        .zip(block_info(disks))
        .map(|(d, b)| {
            let device = device_stats(&d.stats);
            if query_nodes {
                return BlockStats {
                    device: None,
                    qdev: None,
                    node_name: Some(b.inserted.node_name),
                    stats: BlockDeviceStats {
                        wr_highest_offset: device.wr_highest_offset,
                        ..BlockDeviceStats::default()
                    },
                };
            }
            BlockStats {
                device: Some(b.device),
                qdev: Some(b.qdev),
                node_name: Some(b.inserted.node_name),
                stats: device,
            }
        })
        .collect()
}

fn device_stats(s: &BlkStats) -> BlockDeviceStats {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    BlockDeviceStats {
        rd_bytes: get(&s.read.bytes),
        wr_bytes: get(&s.write.bytes),
        unmap_bytes: get(&s.unmap.bytes),
        rd_operations: get(&s.read.operations),
        wr_operations: get(&s.write.operations),
        flush_operations: get(&s.flush.operations),
        unmap_operations: get(&s.unmap.operations),
        rd_total_time_ns: get(&s.read.total_time_ns),
        wr_total_time_ns: get(&s.write.total_time_ns),
        flush_total_time_ns: get(&s.flush.total_time_ns),
        unmap_total_time_ns: get(&s.unmap.total_time_ns),
        wr_highest_offset: get(&s.wr_highest_offset),
        failed_rd_operations: get(&s.read.failed),
        failed_wr_operations: get(&s.write.failed),
        failed_flush_operations: get(&s.flush.failed),
        failed_unmap_operations: get(&s.unmap.failed),
        idle_time_ns: s.idle_time().map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        account_failed: true,
        ..BlockDeviceStats::default()
    }
}

/// An image and its backing chain.
fn image_info(b: &mut dyn BlockBackend, filename: &str) -> ImageInfo {
    let format = b.format().name().to_string();
    let virtual_size = b.virtual_size();
    let actual_size = std::fs::metadata(b.path()).ok().map(|m| m.blocks() * 512);
    let backing = b.as_qcow2().and_then(|q| q.backing()).map(|layer| {
        let name = layer.path().display().to_string();
        Box::new(image_info(layer, &name))
    });
    let qcow2 = b.as_qcow2().map(|q| q.header().clone());
    ImageInfo {
        filename: filename.to_string(),
        format,
        virtual_size,
        actual_size,
        cluster_size: qcow2.as_ref().map(|h| 1 << h.cluster_bits),
        dirty_flag: qcow2.as_ref().map(|h| h.incompatible_features & header::INCOMPAT_DIRTY != 0),
        format_specific: qcow2.as_ref().map(qcow2_specific),
        backing_filename: backing.as_ref().map(|i| i.filename.clone()),
        backing_image: backing,
        snapshots: Vec::new(),
    }
}

/// `format-specific` of a qcow2 image, from its header.
fn qcow2_specific(h: &header::Header) -> FormatSpecific {
    FormatSpecific {
        kind: "qcow2",
        data: Qcow2Specific {
            compat: if h.version >= 3 { "1.1" } else { "0.10" },
            compression_type: if h.incompatible_features & header::INCOMPAT_COMPRESSION != 0 {
                "zstd"
            } else {
                "zlib"
            },
            lazy_refcounts: h.compatible_features & header::COMPAT_LAZY_REFCOUNTS != 0,
            refcount_bits: 1 << h.refcount_order,
            corrupt: h.incompatible_features & header::INCOMPAT_CORRUPT != 0,
            extended_l2: h.incompatible_features & header::INCOMPAT_EXTL2 != 0,
        },
    }
}

/// The first backing file and the length of the chain under the image.
fn chain(image: &ImageInfo) -> (Option<String>, u32) {
    let mut depth = 0;
    let mut cur = image.backing_image.as_deref();
    while let Some(layer) = cur {
        depth += 1;
        cur = layer.backing_image.as_deref();
    }
    (image.backing_filename.clone(), depth)
}
