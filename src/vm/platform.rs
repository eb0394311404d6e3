//! The PC devices godwit always has, wired to port I/O and interrupts.

use super::VmEvent;
use super::device_list::DeviceList;
use crossbeam_channel::Sender;
use devices::bus::{Bus, BusError};
use devices::irq::IrqEvent;
use devices::legacy::cmos::{CMOS_PORT, CMOS_PORTS, Cmos};
use devices::legacy::i8042::{I8042, I8042_COMMAND_PORT, I8042_DATA_PORT, KBD_IRQ};
use devices::legacy::port80::{POST_PORT, PostCode};
use devices::legacy::serial::{COM1_IRQ, COM1_PORT, SerialDevice, SerialOutput, UART_PORTS};
use devices::legacy::speaker::{SPEAKER_PORT, Speaker};
use devices::pci::mmio::{PCI_MMIO_END, PCI_MMIO_START, PciMmio};
use devices::pci::root::{PCI_CONFIG_PORT, PCI_CONFIG_PORTS};
use devices::pci::{HostBridge, PciConfigIo, PciRoot};
use kvm_ioctls::VmFd;
use std::sync::{Arc, Mutex};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PlatformError {
    #[error("cannot create an interrupt eventfd: {0}")]
    Event(std::io::Error),
    #[error("cannot connect IRQ {irq} to KVM: {err}")]
    Irqfd { irq: u32, err: kvm_ioctls::Error },
    #[error("device layout: {0}")]
    Bus(#[from] BusError),
    #[error("PCI: {0}")]
    Pci(#[from] devices::pci::root::PciError),
}

/// The PC devices, wired to the buses; each stateful one is also in the device list.
pub struct Platform {
    pub pio: Bus,
    pub mmio: Bus,
    /// The UART, for routing console input to it.
    pub serial: Arc<Mutex<SerialDevice>>,
    pub pci: Arc<Mutex<PciRoot>>,
}

fn irq(vm: &VmFd, gsi: u32) -> Result<IrqEvent, PlatformError> {
    let e = IrqEvent::new().map_err(PlatformError::Event)?;
    vm.register_irqfd(e.eventfd(), gsi)
        .map_err(|err| PlatformError::Irqfd { irq: gsi, err })?;
    Ok(e)
}

/// Creates the legacy devices and the PCI host bridge, and lists them in `list` under the
/// names their states carry. `below_4g`/`above_4g` are the RAM sizes the CMOS reports.
pub fn build(
    vm: &Arc<VmFd>,
    serial_out: SerialOutput,
    events: Sender<VmEvent>,
    below_4g: u64,
    above_4g: u64,
    list: &mut DeviceList,
) -> Result<Platform, PlatformError> {
    let mut pio = Bus::new();
    let serial = Arc::new(Mutex::new(SerialDevice::new(irq(vm, COM1_IRQ)?, serial_out)));
    pio.insert(COM1_PORT, UART_PORTS, serial.clone())?;
    list.add("serial0", serial.clone());

    let reset_events = events;
    let i8042 = Arc::new(Mutex::new(I8042::new(
        irq(vm, KBD_IRQ)?,
        Box::new(move || {
            let _ = reset_events.send(VmEvent::Reset);
        }),
    )));
    pio.insert(I8042_DATA_PORT, 1, i8042.clone())?;
    pio.insert_with_offset(I8042_COMMAND_PORT, 1, i8042.clone(), I8042_COMMAND_PORT - I8042_DATA_PORT)?;
    list.add("i8042", i8042);

    let cmos = Arc::new(Mutex::new(Cmos::new(below_4g, above_4g)));
    pio.insert(CMOS_PORT, CMOS_PORTS, cmos.clone())?;
    list.add("rtc", cmos);
    pio.insert(POST_PORT, 1, Arc::new(Mutex::new(PostCode::default())))?;
    let speaker = Arc::new(Mutex::new(Speaker::new(Box::new(super::kvm::KvmPit2(vm.clone())))));
    pio.insert(SPEAKER_PORT, 1, speaker.clone())?;
    list.add("pcspk", speaker);

    let mut root = PciRoot::new();
    let bridge = Arc::new(Mutex::new(HostBridge::default()));
    root.add_at(0, bridge.clone())?;
    let pci = Arc::new(Mutex::new(root));
    let pci_io = Arc::new(Mutex::new(PciConfigIo::new(pci.clone())));
    pio.insert(PCI_CONFIG_PORT, PCI_CONFIG_PORTS, pci_io.clone())?;
    list.add("pci-config-io", pci_io);
    list.add_pci_at(0, bridge);

    // PCI memory BARs live in [3 GiB, IOAPIC); accesses are routed by the BARs' current values.
    let mut mmio = Bus::new();
    let window = Arc::new(Mutex::new(PciMmio::new(PCI_MMIO_START, pci.clone())));
    mmio.insert(PCI_MMIO_START, PCI_MMIO_END - PCI_MMIO_START, window)?;

    Ok(Platform { pio, mmio, serial, pci })
}
