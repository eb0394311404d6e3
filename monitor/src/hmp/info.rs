//! `info ...`: the engine's answers in QEMU 7.2's HMP layouts.

use super::{block, migration, snapshots, text};
use crate::command::InfoCommand;
use crate::engine::{CpuSelection, Engine, PciDeviceInfo, RunState};
use std::fmt::Write as _;
use std::io::Write;

pub fn run(e: &dyn Engine, cmd: &InfoCommand, out: &mut dyn Write) -> Result<(), String> {
    let s = match cmd {
        InfoCommand::Status => format!("{}\n", status_line(e.query_status().status)),
        InfoCommand::Name => e.query_name().name.map(|n| format!("{n}\n")).unwrap_or_default(),
        InfoCommand::Version => {
            let v = e.query_version();
            format!("{}.{}.{}{}\n", v.qemu.major, v.qemu.minor, v.qemu.micro, v.package)
        }
        InfoCommand::Kvm => format!("kvm support: {}\n", if e.query_kvm().enabled { "enabled" } else { "disabled" }),
        InfoCommand::Uuid => format!("{}\n", e.query_uuid().uuid),
        InfoCommand::Cpus => cpus(e)?,
        InfoCommand::Registers { all, vcpu } => {
            let which = match (all, vcpu) {
                (true, _) => CpuSelection::All,
                (false, n) => CpuSelection::One(n.unwrap_or(0)),
            };
            e.registers_text(which).map_err(|e| e.desc)?
        }
        InfoCommand::Chardev => e
            .query_chardev()
            .iter()
            .map(|c| format!("{}: filename={}\n", c.label, c.filename))
            .collect(),
        InfoCommand::Pci => pci(&e.query_pci().map_err(|e| e.desc)?),
        InfoCommand::Qtree => e.qtree_text().map_err(|e| e.desc)?,
        InfoCommand::Network => e.network_text().map_err(|e| e.desc)?,
        InfoCommand::Mtree { .. } => e.mtree_text().map_err(|e| e.desc)?,
        InfoCommand::Roots => "system\nio\n".into(),
        InfoCommand::Blockstats => block::info_blockstats(&e.query_blockstats(false).map_err(|e| e.desc)?),
        InfoCommand::Block { device, .. } => block::info_block(&e.query_block().map_err(|e| e.desc)?, device.as_deref())?,
        // As in QEMU, why nothing can be listed is printed as the listing.
        InfoCommand::Snapshots => match e.query_snapshots() {
            Ok(disks) => snapshots::format_snapshots(&disks),
            Err(err) => format!("{}\n", err.desc),
        },
        InfoCommand::Migrate => migration::format_migrate(&e.query_migrate()),
        InfoCommand::MigrateParameters => migration::format_parameters(&e.query_migrate_parameters()),
        InfoCommand::MigrateCapabilities => migration::format_capabilities(&e.query_migrate_capabilities()),
        // Answered by the session itself.
        InfoCommand::History => String::new(),
    };
    text(out, &s)
}

/// `VM status: running`, `VM status: paused`, `VM status: paused (prelaunch)`.
pub fn status_line(s: RunState) -> String {
    match s {
        RunState::Running => "VM status: running".into(),
        RunState::Paused => "VM status: paused".into(),
        other => format!("VM status: paused ({})", other.name()),
    }
}

fn cpus(e: &dyn Engine) -> Result<String, String> {
    let mut s = String::new();
    for c in e.query_cpus_fast().map_err(|e| e.desc)? {
        let mark = if c.cpu_index == 0 { "* " } else { "  " };
        let _ = writeln!(s, "{mark}CPU #{}: thread_id={}", c.cpu_index, c.thread_id);
    }
    Ok(s)
}

/// The engine's description of the class, or QEMU's fallback text.
fn class_name(info: &crate::engine::types::PciClassInfo) -> String {
    match (&info.desc, info.class) {
        (Some(d), _) => d.clone(),
        (None, 0x00ff) => "Class 00ff".into(),
        (None, _) => "Class".into(),
    }
}

fn pci(devices: &[PciDeviceInfo]) -> String {
    let mut s = String::new();
    for d in devices {
        let _ = writeln!(s, "  Bus {:2}, device {:3}, function {}:", d.bus, d.slot, d.function);
        let _ = writeln!(
            s,
            "    {}: PCI device {:04x}:{:04x}",
            class_name(&d.class_info),
            d.id.vendor,
            d.id.device
        );
        let _ = writeln!(s, "      PCI subsystem {:04x}:{:04x}", d.id.subsystem_vendor, d.id.subsystem);
        if let (Some(irq), pin @ 1..=4) = (d.irq, d.irq_pin) {
            let _ = writeln!(s, "      IRQ {irq}, pin {}", (b'A' + pin as u8 - 1) as char);
        }
        let _ = writeln!(s, "      id \"{}\"", d.qdev_id);
    }
    s
}
