//! `info block [DEVICE]`.

use crate::engine::BlockInfo;
use crate::engine::block::BlockStats;
use std::fmt::Write as _;

/// One paragraph per drive, as godwit has always laid it out (QEMU 7.2's, with a
/// `Read-only:` line for read-only drives).
fn paragraph(b: &BlockInfo) -> String {
    let i = &b.inserted;
    // A drive without a name (a `-blockdev` node under a device) goes by its node name.
    let mut s = if b.device.is_empty() {
        format!("{}: {} ({})\n", i.node_name, i.file, i.drv)
    } else {
        format!("{} ({}): {} ({})\n", b.device, i.node_name, i.file, i.drv)
    };
    let _ = writeln!(s, "    Attached to:      {}", b.qdev);
    if i.ro {
        s.push_str("    Read-only:        yes\n");
    }
    let mode = if i.cache.writeback { "writeback" } else { "writethrough" };
    let flushes = if i.cache.no_flush { ", ignore flushes" } else { "" };
    let _ = writeln!(s, "    Cache mode:       {mode}{flushes}");
    if let Some(f) = &i.backing_file {
        let _ = writeln!(s, "    Backing file:     {f} (chain depth: {})", i.backing_file_depth);
    }
    s.push('\n');
    s
}

/// Every drive, or one (after an empty line, as QEMU prints it).
pub fn info_block(drives: &[BlockInfo], device: Option<&str>) -> Result<String, String> {
    match device {
        None => Ok(drives.iter().map(paragraph).collect()),
        Some(name) => drives
            .iter()
            .find(|b| b.device == name || (b.device.is_empty() && b.inserted.node_name == name))
            .map(|b| format!("\n{}\n", paragraph(b).trim_end_matches('\n')))
            .ok_or_else(|| format!("Device '{name}' not found")),
    }
}

/// `info blockstats`: one line per device, named as `query-blockstats` names it (a device
/// without a drive name prints an empty one, as QEMU does).
pub fn info_blockstats(devices: &[BlockStats]) -> String {
    let mut out = String::new();
    for b in devices {
        let s = &b.stats;
        let _ = writeln!(
            out,
            "{}: rd_bytes={} wr_bytes={} rd_operations={} wr_operations={} flush_operations={} wr_total_time_ns={} rd_total_time_ns={} flush_total_time_ns={} rd_merged={} wr_merged={} idle_time_ns={}",
            b.device.as_deref().unwrap_or(""),
            s.rd_bytes,
            s.wr_bytes,
            s.rd_operations,
            s.wr_operations,
            s.flush_operations,
            s.wr_total_time_ns,
            s.rd_total_time_ns,
            s.flush_total_time_ns,
            s.rd_merged,
            s.wr_merged,
            s.idle_time_ns.unwrap_or(0)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::block::BlockDeviceStats;

    #[test]
    fn blockstats_lines_as_qemu_prints_them() {
        let one = |device: &str, wr: u64| BlockStats {
            device: Some(device.into()),
            qdev: None,
            node_name: None,
            stats: BlockDeviceStats {
                wr_bytes: wr,
                wr_operations: 1,
                idle_time_ns: Some(5),
                ..BlockDeviceStats::default()
            },
        };
        assert_eq!(
            info_blockstats(&[one("virtio0", 4096), one("", 512)]),
            "virtio0: rd_bytes=0 wr_bytes=4096 rd_operations=0 wr_operations=1 flush_operations=0 wr_total_time_ns=0 rd_total_time_ns=0 flush_total_time_ns=0 rd_merged=0 wr_merged=0 idle_time_ns=5\n\
             : rd_bytes=0 wr_bytes=512 rd_operations=0 wr_operations=1 flush_operations=0 wr_total_time_ns=0 rd_total_time_ns=0 flush_total_time_ns=0 rd_merged=0 wr_merged=0 idle_time_ns=5\n"
        );
    }
}
