//! The PC devices godwit always has, wired to port I/O and interrupts.

use super::VmEvent;
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

pub struct Platform {
    pub pio: Bus,
    pub mmio: Bus,
    pub serial: Arc<Mutex<SerialDevice>>,
    pub i8042: Arc<Mutex<I8042>>,
    pub cmos: Arc<Mutex<Cmos>>,
    pub speaker: Arc<Mutex<Speaker>>,
    pub pci: Arc<Mutex<PciRoot>>,
    pub pci_io: Arc<Mutex<PciConfigIo>>,
}

fn irq(vm: &VmFd, gsi: u32) -> Result<IrqEvent, PlatformError> {
    let e = IrqEvent::new().map_err(PlatformError::Event)?;
    vm.register_irqfd(e.eventfd(), gsi)
        .map_err(|err| PlatformError::Irqfd { irq: gsi, err })?;
    Ok(e)
}

/// Creates the legacy devices and the PCI host bridge. `below_4g`/`above_4g` are the RAM
/// sizes the CMOS reports.
pub fn build(
    vm: &Arc<VmFd>,
    serial_out: SerialOutput,
    events: Sender<VmEvent>,
    below_4g: u64,
    above_4g: u64,
) -> Result<Platform, PlatformError> {
    let mut pio = Bus::new();
    let serial = Arc::new(Mutex::new(SerialDevice::new(irq(vm, COM1_IRQ)?, serial_out)));
    pio.insert(COM1_PORT, UART_PORTS, serial.clone())?;

    let reset_events = events;
    let i8042 = Arc::new(Mutex::new(I8042::new(
        irq(vm, KBD_IRQ)?,
        Box::new(move || {
            let _ = reset_events.send(VmEvent::Reset);
        }),
    )));
    pio.insert(I8042_DATA_PORT, 1, i8042.clone())?;
    pio.insert_with_offset(I8042_COMMAND_PORT, 1, i8042.clone(), I8042_COMMAND_PORT - I8042_DATA_PORT)?;

    let cmos = Arc::new(Mutex::new(Cmos::new(below_4g, above_4g)));
    pio.insert(CMOS_PORT, CMOS_PORTS, cmos.clone())?;
    pio.insert(POST_PORT, 1, Arc::new(Mutex::new(PostCode::default())))?;
    let speaker = Arc::new(Mutex::new(Speaker::new(Box::new(super::kvm::KvmPit2(vm.clone())))));
    pio.insert(SPEAKER_PORT, 1, speaker.clone())?;

    let mut root = PciRoot::new();
    root.add_at(0, Arc::new(Mutex::new(HostBridge::default())))?;
    let pci = Arc::new(Mutex::new(root));
    let pci_io = Arc::new(Mutex::new(PciConfigIo::new(pci.clone())));
    pio.insert(PCI_CONFIG_PORT, PCI_CONFIG_PORTS, pci_io.clone())?;

    // PCI memory BARs live in [3 GiB, IOAPIC); accesses are routed by the BARs' current values.
    let mut mmio = Bus::new();
    let window = Arc::new(Mutex::new(PciMmio::new(PCI_MMIO_START, pci.clone())));
    mmio.insert(PCI_MMIO_START, PCI_MMIO_END - PCI_MMIO_START, window)?;

    Ok(Platform {
        pio,
        mmio,
        serial,
        i8042,
        cmos,
        speaker,
        pci,
        pci_io,
    })
}
