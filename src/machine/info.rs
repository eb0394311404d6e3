//! `info ...` answers about the machine.

use super::Machine;
use crate::layout::{IOAPIC_BASE, LAPIC_BASE};
use crate::migration::{info as mig, params};
use devices::bus::lock;
use monitor::InfoCommand;
use std::fmt::Write as _;
use std::io::Write;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

fn class_name(class: u32) -> &'static str {
    match class >> 8 {
        0x0100 => "SCSI controller",
        0x0180 => "Storage controller",
        0x0200 => "Ethernet controller",
        0x0600 => "Host bridge",
        0x0601 => "ISA bridge",
        0x0780 => "Communication controller",
        0x00ff => "Class 00ff",
        _ => "Class",
    }
}

pub fn run(m: &Machine, cmd: &InfoCommand, out: &mut dyn Write) -> Result<(), String> {
    let text = match cmd {
        InfoCommand::Status => format!("{}\n", m.state().status_line()),
        InfoCommand::Name => m.name.as_ref().map(|n| format!("{n}\n")).unwrap_or_default(),
        InfoCommand::Version => format!("{} (godwit)\n", env!("CARGO_PKG_VERSION")),
        InfoCommand::Kvm => "kvm support: enabled\n".into(),
        InfoCommand::Uuid => "00000000-0000-0000-0000-000000000000\n".into(),
        InfoCommand::Cpus => {
            let vm = m.vm().ok_or("no VM")?;
            let mut s = String::new();
            for (i, tid) in vm.thread_ids() {
                let _ = writeln!(s, "{}CPU #{i}: thread_id={tid}", if i == 0 { "* " } else { "  " });
            }
            s
        }
        InfoCommand::Registers { all, vcpu } => {
            let vm = m.vm().ok_or("no VM")?;
            let states = vm.vcpu_states().map_err(|e| e.to_string())?;
            let mut s = String::new();
            match (all, vcpu) {
                (true, _) => states
                    .iter()
                    .enumerate()
                    .for_each(|(i, st)| s.push_str(&crate::hmp::registers::format(i, st))),
                (false, Some(n)) if *n < 0 || *n as usize >= states.len() => {
                    let _ = writeln!(s, "CPU#{n} not available");
                }
                (false, n) => {
                    let i = n.unwrap_or(0) as usize;
                    s.push_str(&crate::hmp::registers::format(i, &states[i]));
                }
            }
            s
        }
        InfoCommand::Chardev => m.chardev_lines().iter().map(|l| format!("{l}\n")).collect(),
        InfoCommand::Pci => pci(m)?,
        InfoCommand::Qtree => qtree(m)?,
        InfoCommand::Mtree { .. } => mtree(m)?,
        InfoCommand::Roots => "system\nio\n".into(),
        InfoCommand::Block { device, .. } => {
            let vm = m.vm().ok_or("no VM")?;
            let all = crate::vm::disks::info_block(vm.disks());
            match device {
                // One device: its paragraph, after an empty line, as QEMU prints it.
                Some(name) => {
                    let para = all
                        .split("\n\n")
                        .find(|p| p.starts_with(&format!("{name} ")))
                        .ok_or_else(|| format!("Device '{name}' not found"))?;
                    format!("\n{para}\n")
                }
                None => all,
            }
        }
        InfoCommand::Snapshots => crate::snapshot::info(&*m.vm().ok_or("no VM")?),
        InfoCommand::Migrate => {
            let inc = lock(&m.incoming);
            if inc.started || inc.deferred {
                mig::format(&inc.stats, true)
            } else {
                drop(inc);
                mig::format(&lock(&m.outgoing.stats), false)
            }
        }
        InfoCommand::MigrateParameters => lock(&m.outgoing.params).format(),
        InfoCommand::MigrateCapabilities => params::format_capabilities(&lock(&m.outgoing.params)),
        // Answered by the session itself.
        InfoCommand::History => String::new(),
    };
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

fn pci(m: &Machine) -> Result<String, String> {
    let vm = m.vm().ok_or("no VM")?;
    let root = lock(&vm.platform().pci);
    let mut s = String::new();
    for (slot, dev) in root.devices() {
        let d = lock(dev);
        let r0 = d.read_config(0);
        let class = d.read_config(2) >> 8;
        let subsys = d.read_config(11);
        let irq = d.read_config(15);
        let _ = writeln!(s, "  Bus  0, device {slot:3}, function 0:");
        let _ = writeln!(s, "    {}: PCI device {:04x}:{:04x}", class_name(class), r0 & 0xffff, r0 >> 16);
        let _ = writeln!(s, "      PCI subsystem {:04x}:{:04x}", subsys & 0xffff, subsys >> 16);
        let pin = (irq >> 8) & 0xff;
        if pin != 0 {
            let _ = writeln!(s, "      IRQ {}, pin {}", irq & 0xff, (b'A' + pin as u8 - 1) as char);
        }
        let _ = writeln!(s, "      id \"\"");
    }
    Ok(s)
}

fn qtree(m: &Machine) -> Result<String, String> {
    let vm = m.vm().ok_or("no VM")?;
    let mut s = String::from("bus: main-system-bus\n  type System\n");
    let _ = writeln!(
        s,
        "  dev: kvm-ioapic, id \"\"\n    gpio-in \"\" 24\n    mmio {IOAPIC_BASE:016x}/0000000000001000"
    );
    s.push_str("  dev: godwit-pcihost, id \"\"\n    bus: pci.0\n      type PCI\n");
    for (slot, dev) in lock(&vm.platform().pci).devices() {
        let d = lock(dev);
        let _ = writeln!(
            s,
            "      dev: {}, id \"\"\n        addr = {slot:02x}.0",
            d.name().to_lowercase().replace(' ', "-")
        );
    }
    s.push_str("  dev: isa-bus, id \"\"\n    bus: isa.0\n      type ISA\n");
    for (name, io, irq) in [
        ("isa-serial", "03f8", Some(4)),
        ("i8042", "0060", Some(1)),
        ("mc146818rtc", "0070", None),
        ("kvm-pit", "0040", None),
        ("isa-pcspk", "0061", None),
    ] {
        let _ = writeln!(s, "      dev: {name}, id \"\"\n        iobase = 0x{io}");
        if let Some(i) = irq {
            let _ = writeln!(s, "        irq = {i}");
        }
    }
    Ok(s)
}

fn mtree(m: &Machine) -> Result<String, String> {
    let vm = m.vm().ok_or("no VM")?;
    let mut s = String::from("address-space: memory\n  0000000000000000-ffffffffffffffff (prio 0, i/o): system\n");
    for (i, r) in vm.ram().iter().enumerate() {
        let (a, len) = (r.start_addr().0, r.len());
        let name = if i == 0 { "ram-below-4g" } else { "ram-above-4g" };
        let _ = writeln!(s, "    {a:016x}-{:016x} (prio 0, ram): {name}", a + len - 1);
    }
    let _ = writeln!(s, "    {IOAPIC_BASE:016x}-{:016x} (prio 0, i/o): kvm-ioapic", IOAPIC_BASE + 0xfff);
    let _ = writeln!(
        s,
        "    {LAPIC_BASE:016x}-{:016x} (prio 4096, i/o): kvm-apic-msi",
        LAPIC_BASE + 0xfffff
    );
    s.push_str("\naddress-space: I/O\n  0000000000000000-000000000000ffff (prio 0, i/o): io\n");
    for (base, len, name) in [
        (0x40u64, 4u64, "kvm-pit"),
        (0x60, 1, "i8042-data"),
        (0x61, 1, "pcspk"),
        (0x64, 1, "i8042-cmd"),
        (0x70, 2, "rtc"),
        (0x80, 1, "ioport80"),
        (0x3f8, 8, "serial"),
        (0xcf8, 8, "pci-conf"),
    ] {
        let _ = writeln!(s, "    {base:016x}-{:016x} (prio 0, i/o): {name}", base + len - 1);
    }
    s.push('\n');
    Ok(s)
}
