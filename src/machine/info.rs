//! The machine's answers to queries: typed values for what QMP has (CPUs, disks, PCI,
//! character devices, snapshots), text for what only HMP shows (`info qtree`, `info
//! mtree`, `info registers`).

use super::Machine;
use crate::layout::{IOAPIC_BASE, LAPIC_BASE};
use devices::bus::lock;
use devices::pci::PciDevice;
use monitor::engine::types::{CpuProps, PciClassInfo, PciIds, PciRegion};
use monitor::engine::{ChardevInfo, CpuInfoFast, CpuSelection, PciDeviceInfo};
use std::fmt::Write as _;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

impl Machine {
    pub fn cpus(&self) -> Result<Vec<CpuInfoFast>, String> {
        let vm = self.the_vm()?;
        Ok(vm
            .thread_ids()
            .into_iter()
            .map(|(i, tid)| CpuInfoFast {
                cpu_index: i as u32,
                qom_path: format!("/machine/unattached/device[{i}]"),
                thread_id: i64::from(tid),
                props: CpuProps {
                    core_id: i as u32,
                    thread_id: 0,
                    socket_id: 0,
                },
                target: "x86_64",
            })
            .collect())
    }

    pub fn chardevs(&self) -> Vec<ChardevInfo> {
        let mut v = lock(&self.chardevs).clone();
        for h in lock(&self.monitors).iter() {
            v.extend(h.chardevs().into_iter().map(|c| ChardevInfo {
                label: c.label,
                filename: c.filename,
                frontend_open: true,
            }));
        }
        v
    }

    pub fn pci(&self) -> Result<Vec<PciDeviceInfo>, String> {
        let vm = self.the_vm()?;
        let root = lock(&vm.platform().pci);
        Ok(root.devices().map(|(slot, dev)| pci_function(slot, &*lock(dev))).collect())
    }

    pub fn registers_text(&self, which: CpuSelection) -> Result<String, String> {
        let vm = self.the_vm()?;
        let states = vm.vcpu_states().map_err(|e| e.to_string())?;
        let format = crate::cpu::registers_text::format;
        Ok(match which {
            CpuSelection::All => states.iter().enumerate().map(|(i, st)| format(i, st)).collect(),
            CpuSelection::One(n) if n < 0 || n as usize >= states.len() => format!("CPU#{n} not available\n"),
            CpuSelection::One(n) => format(n as usize, &states[n as usize]),
        })
    }

    pub fn qtree_text(&self) -> Result<String, String> {
        let vm = self.the_vm()?;
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

    pub fn mtree_text(&self) -> Result<String, String> {
        let vm = self.the_vm()?;
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
}

/// One function as `query-pci` describes it, read from its configuration space.
fn pci_function(slot: usize, d: &dyn PciDevice) -> PciDeviceInfo {
    let r0 = d.read_config(0);
    let subsys = d.read_config(11);
    let irq = d.read_config(15);
    let pin = (irq >> 8) & 0xff;
    let regions = (0..6)
        .filter_map(|i| d.bar(i))
        .map(|b| PciRegion {
            bar: b.index as u32,
            kind: "memory",
            address: b.base,
            size: b.size,
            prefetch: b.prefetchable,
            mem_type_64: b.is_64bit,
        })
        .collect();
    PciDeviceInfo {
        bus: 0,
        slot: slot as u32,
        function: 0,
        class_info: PciClassInfo {
            class: d.read_config(2) >> 16,
            desc: monitor::engine::types::pci_class_desc(d.read_config(2) >> 16).map(str::to_string),
        },
        id: PciIds {
            vendor: r0 as u16,
            device: (r0 >> 16) as u16,
            subsystem_vendor: subsys as u16,
            subsystem: (subsys >> 16) as u16,
        },
        irq: (pin != 0).then_some(irq & 0xff),
        irq_pin: pin,
        qdev_id: String::new(),
        regions,
    }
}
