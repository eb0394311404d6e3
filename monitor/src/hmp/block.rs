//! `info block [DEVICE]`.

use crate::engine::BlockInfo;
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
