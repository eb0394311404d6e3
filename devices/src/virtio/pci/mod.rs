//! The virtio-pci modern transport (virtio 1.2 §4.1): a PCI function whose BAR0 holds the
//! virtio structures, with MSI-X interrupts.

pub mod caps;
pub mod common_cfg;
pub mod interrupt;
mod ioevent;
pub mod msix;
pub mod state;

#[cfg(test)]
mod tests;

use super::queue::{SharedQueue, new_queue, queue_from_state};
use super::{Activation, GuestMem, MsiSink, VIRTIO_F_VERSION_1, VirtioDevice, VirtioError, VirtioInterrupt, status};
use crate::bus::lock;
use crate::device::Device;
use crate::pci::config_space::ConfigError;
use crate::pci::{ConfigSpace, PciBar, PciDevice};
use crate::state::{Persist, StateError, VersionedState};
use caps::*;
use common_cfg::{Action, CommonCfg, Regs};
use interrupt::PciInterrupt;
use msix::{Msix, MsixError};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use virtio_queue::QueueT;

pub use state::VirtioPciState;

pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// Modern (non-transitional) device ids are 0x1040 + the virtio device type.
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;
/// Non-transitional devices must have a subsystem id of 0x40 or more; QEMU's is 0x1100.
const SUBSYSTEM_ID: u16 = 0x1100;
/// Revision 1 marks a modern-only device to Linux.
const REVISION: u8 = 1;

#[derive(Debug, Error)]
pub enum VirtioPciError {
    #[error("PCI configuration space: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Msix(#[from] MsixError),
    #[error("device has {0} queues; the transport supports 1 to {MAX_MSIX_VECTORS} minus one")]
    QueueCount(usize),
    #[error("bad queue size: {0}")]
    Queue(virtio_queue::Error),
}

/// What `info pci` and a qtree listing show about a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioPciInfo {
    pub name: String,
    pub vendor_id: u16,
    pub device_id: u16,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
    pub class: u32,
    pub revision: u8,
    pub bar0: Option<PciBar>,
    pub memory_enabled: bool,
    pub msix_vectors: u16,
    pub msix_enabled: bool,
    pub config_vector: u16,
    pub queue_vectors: Vec<u16>,
    pub queue_sizes: Vec<u16>,
    pub status: u8,
    pub features_offered: u64,
    pub features_acked: u64,
}

pub struct VirtioPciDevice {
    config: ConfigSpace,
    common: CommonCfg,
    queues: Vec<SharedQueue>,
    max_sizes: Vec<u16>,
    interrupt: Arc<PciInterrupt>,
    device: Box<dyn VirtioDevice>,
    mem: GuestMem,
    offered: u64,
    name: String,
    activated: bool,
    paused: bool,
    shut_down: bool,
    /// KVM's ioeventfds, when the VMM offers them, and the listeners armed with them.
    ioevents: Option<Arc<dyn super::IoEvents>>,
    notifiers: ioevent::Notifiers,
}

impl VirtioPciDevice {
    /// Wraps `device` as a PCI function using `mem` for DMA and `msi` for interrupts. Its
    /// BAR0 is at address 0 until [`crate::pci::assign_bars`] (or the guest) places it.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMem, msi: Arc<dyn MsiSink>) -> Result<Self, VirtioPciError> {
        let max_sizes = device.queue_max_sizes();
        let nq = max_sizes.len();
        // One vector per queue plus one for config changes: what Linux asks for first.
        if nq == 0 || nq >= usize::from(MAX_MSIX_VECTORS) || nq > super::worker::MAX_QUEUES {
            return Err(VirtioPciError::QueueCount(nq));
        }
        let vectors = nq as u16 + 1;
        let id = VIRTIO_PCI_DEVICE_BASE + device.device_type() as u16;
        let mut config = ConfigSpace::new(VIRTIO_PCI_VENDOR, id, device.pci_class(), REVISION, VIRTIO_PCI_VENDOR, SUBSYSTEM_ID);
        caps::build(&mut config, vectors)?;
        let queues = max_sizes
            .iter()
            .map(|&s| new_queue(s).map(|q| Arc::new(Mutex::new(q))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(VirtioPciError::Queue)?;
        let interrupt = Arc::new(PciInterrupt::new(Msix::new(vectors)?, msi, nq));
        Ok(VirtioPciDevice {
            config,
            common: CommonCfg::default(),
            queues,
            max_sizes,
            interrupt,
            offered: device.features() | VIRTIO_F_VERSION_1,
            name: format!("{}-pci", device.name()),
            device,
            mem,
            activated: false,
            paused: false,
            shut_down: false,
            ioevents: None,
            notifiers: ioevent::Notifiers::default(),
        })
    }

    /// Lets queue notifies reach the device through ioeventfds while it runs.
    pub fn set_ioevents(&mut self, io: Arc<dyn super::IoEvents>) {
        self.ioevents = Some(io);
        self.arm_notifiers();
    }

    /// (Re)ties the notify addresses to eventfds, if the device runs and BAR0 is mapped.
    fn arm_notifiers(&mut self) {
        self.disarm_notifiers();
        let (Some(io), true) = (
            self.ioevents.clone(),
            self.activated && !self.shut_down && self.config.memory_enabled(),
        ) else {
            return;
        };
        let (Some(bar), Some(kicker)) = (self.config.bar(0), self.device.kicker()) else {
            return;
        };
        if bar.base != 0 {
            self.notifiers.arm(io.as_ref(), bar.base, self.queues.len(), kicker);
        }
    }

    fn disarm_notifiers(&mut self) {
        if let Some(io) = &self.ioevents
            && self.notifiers.armed()
        {
            self.notifiers.disarm(io.as_ref());
        }
    }

    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    /// The device model, e.g. to show its configuration.
    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    pub fn info(&self) -> VirtioPciInfo {
        let c = &self.config;
        let m = self.interrupt.msix();
        VirtioPciInfo {
            name: self.name.clone(),
            vendor_id: c.u16_at(0x00),
            device_id: c.u16_at(0x02),
            subsystem_vendor_id: c.u16_at(0x2c),
            subsystem_id: c.u16_at(0x2e),
            class: c.u32_at(0x08) >> 8,
            revision: c.u8_at(0x08),
            bar0: c.bar(0),
            memory_enabled: c.memory_enabled(),
            msix_vectors: m.vectors(),
            msix_enabled: m.enabled(),
            config_vector: self.interrupt.config_vector(),
            queue_vectors: (0..self.queues.len()).map(|q| self.interrupt.queue_vector(q)).collect(),
            queue_sizes: self.queues.iter().map(|q| lock(q).size()).collect(),
            status: self.common.status | self.interrupt.device_status_bits(),
            features_offered: self.offered,
            features_acked: self.common.driver_features,
        }
    }

    fn regs(&self) -> Regs<'_> {
        Regs {
            offered: self.offered,
            queues: &self.queues,
            interrupt: &self.interrupt,
        }
    }

    /// DRIVER_OK: hand the queues to the device. A ready queue outside guest memory, or a
    /// device that cannot start, sets NEEDS_RESET (virtio 1.2 §2.1.2).
    fn activate(&mut self) -> Result<(), VirtioError> {
        let event_idx = self.common.driver_features & super::VIRTIO_F_RING_EVENT_IDX != 0;
        for q in &self.queues {
            let mut q = lock(q);
            q.set_event_idx(event_idx);
        }
        let result = match self.queues.iter().position(|q| {
            let q = lock(q);
            q.ready() && !q.is_valid(&self.mem)
        }) {
            Some(bad) => Err(VirtioError::BadRing(bad)),
            None if self.shut_down => Err(VirtioError::ShutDown),
            None => self.device.activate(Activation {
                mem: self.mem.clone(),
                queues: self.queues.clone(),
                interrupt: self.interrupt.clone() as Arc<dyn VirtioInterrupt>,
                acked_features: self.common.driver_features,
                paused: self.paused,
            }),
        };
        match &result {
            Ok(()) => {
                self.activated = true;
                self.arm_notifiers();
            }
            Err(_) => {
                self.common.status |= status::NEEDS_RESET;
                self.interrupt.signal_config();
            }
        }
        result
    }

    /// Virtio reset: the device stops (waiting for its I/O thread), queues and registers
    /// return to their initial values. The driver then reads back status 0.
    fn reset(&mut self) {
        self.disarm_notifiers();
        self.device.reset();
        self.activated = false;
        for q in &self.queues {
            lock(q).reset();
        }
        self.common.reset();
        self.interrupt.reset();
    }

    /// Reads BAR0. Only the ISR read has a side effect (it clears), so `&self` suffices,
    /// which the PCI-config-access window needs.
    fn bar_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some((region, off)) = caps::region(offset, data.len()) else {
            return;
        };
        match region {
            Region::Common => self.common.read(off, data, &self.regs()),
            Region::Isr if off == 0 => data[0] = self.interrupt.take_isr(),
            Region::Device => self.device.read_config(off, data),
            Region::MsixTable => self.interrupt.with_msix(|m, _| m.read_table(off, data)),
            Region::MsixPba => self.interrupt.with_msix(|m, _| m.read_pba(off, data)),
            Region::Isr | Region::Notify => {}
        }
    }

    fn bar_write(&mut self, offset: u64, data: &[u8]) {
        let Some((region, off)) = caps::region(offset, data.len()) else {
            return;
        };
        match region {
            Region::Common => match self.common.write(
                off,
                data,
                &Regs {
                    offered: self.offered,
                    queues: &self.queues,
                    interrupt: &self.interrupt,
                },
            ) {
                Action::None => {}
                Action::Reset => self.reset(),
                Action::Activate => {
                    // Failure is reported to the driver through NEEDS_RESET.
                    let _ = self.activate();
                }
            },
            Region::Device => self.device.write_config(off, data),
            Region::Notify => {
                // The value written is the queue index; the address says the same.
                let mult = u64::from(NOTIFY_MULTIPLIER);
                let q = off / mult;
                if self.activated && !self.shut_down && off % mult == 0 && q < self.queues.len() as u64 {
                    self.device.queue_notify(q as u16);
                }
            }
            Region::MsixTable => self.interrupt.with_msix(|m, sink| m.write_table(off, data, sink)),
            Region::Isr | Region::MsixPba => {}
        }
    }

    /// Follows the MSI-X Message Control bits the guest just wrote.
    fn sync_msix_control(&self) {
        let ctl = self.config.u16_at(MSIX_CONTROL);
        self.interrupt
            .with_msix(|m, sink| m.set_control(ctl & MSIX_ENABLE != 0, ctl & MSIX_FUNCTION_MASK != 0, sink));
    }
}

impl PciDevice for VirtioPciDevice {
    fn read_config(&self, reg: usize) -> u32 {
        let value = self.config.read_reg(reg);
        if reg * 4 != PCI_CFG_DATA {
            return value;
        }
        // The PCI-config-access window reads BAR0 through config space.
        let mut bytes = [0u8; 4];
        if let Some((offset, len)) = pci_cfg_window(&self.config) {
            self.bar_read(offset, &mut bytes[..len]);
        }
        u32::from_le_bytes(bytes)
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write_reg(reg, offset, data);
        let start = reg * 4 + offset;
        let touches = |at: usize, len: usize| start < at + len && at < start + data.len();
        if touches(MSIX_CONTROL, 2) {
            self.sync_msix_control();
        }
        // BAR0 moved, or memory decoding changed: the notify addresses follow.
        if self.notifiers.armed() || self.activated {
            let (command, bar0) = (0x04, 0x10);
            if touches(command, 2) || touches(bar0, 8) {
                self.arm_notifiers();
            }
        }
        if touches(PCI_CFG_DATA, 4)
            && let Some((off, len)) = pci_cfg_window(&self.config)
        {
            let bytes = self.config.u32_at(PCI_CFG_DATA).to_le_bytes();
            self.bar_write(off, &bytes[..len]);
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn bar(&self, index: usize) -> Option<PciBar> {
        self.config.bar(index)
    }

    fn mmio_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == 0 {
            self.bar_read(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn mmio_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == 0 {
            self.bar_write(offset, data);
        }
    }
}

impl Persist for VirtioPciDevice {
    type State = VirtioPciState;

    fn save(&self) -> VirtioPciState {
        VirtioPciState {
            device_type: self.device.device_type(),
            config: self.config.clone(),
            common: CommonCfg {
                status: self.common.status | self.interrupt.device_status_bits(),
                ..self.common.clone()
            },
            queues: self.queues.iter().map(|q| lock(q).state()).collect(),
            queue_vectors: (0..self.queues.len()).map(|q| self.interrupt.queue_vector(q)).collect(),
            config_vector: self.interrupt.config_vector(),
            isr: self.interrupt.isr(),
            msix: self.interrupt.msix(),
            activated: self.activated,
            device: self.device.state(),
        }
    }

    /// Restores into this device (normally freshly built for the same disk and guest
    /// memory). A device that was running is restarted, parked if this one is paused.
    fn restore(&mut self, s: &VirtioPciState) -> Result<(), StateError> {
        let queues = self.checked_queues(s)?;
        if self.activated {
            self.disarm_notifiers();
            self.device.reset();
            self.activated = false;
        }
        self.device.set_state(&s.device)?;
        for (slot, q) in self.queues.iter().zip(queues) {
            *lock(slot) = q;
        }
        self.config = s.config.clone();
        self.common = s.common.clone();
        self.interrupt.set_msix(s.msix.clone());
        self.interrupt.set_config_vector(s.config_vector);
        for (q, v) in s.queue_vectors.iter().enumerate() {
            self.interrupt.set_queue_vector(q, *v);
        }
        self.interrupt.set_isr(s.isr);
        self.interrupt.clear_needs_reset();
        if s.activated {
            self.activate().map_err(|e| invalid(format!("cannot restart the device: {e}")))?;
        }
        Ok(())
    }
}

fn invalid(why: String) -> StateError {
    StateError::Invalid {
        name: VirtioPciState::NAME,
        why,
    }
}

impl VirtioPciDevice {
    /// Checks a saved state against this function (device kind, queues, MSI-X, BAR0, the
    /// device's own state) and returns its queues, rebuilt; changes nothing.
    fn checked_queues(&self, s: &VirtioPciState) -> Result<Vec<virtio_queue::Queue>, StateError> {
        if s.device_type != self.device.device_type() {
            return Err(invalid(format!(
                "state of virtio device type {} for a device of type {}",
                s.device_type,
                self.device.device_type()
            )));
        }
        if s.queues.len() != self.queues.len() || s.msix.vectors() != self.interrupt.msix().vectors() {
            return Err(invalid("queue or MSI-X vector count differs".into()));
        }
        if s.config.bar(0).map(|b| b.size) != Some(BAR0_SIZE) {
            return Err(invalid("BAR0 layout differs".into()));
        }
        self.device.check_state(&s.device)?;
        s.queues
            .iter()
            .zip(&self.max_sizes)
            .map(|(q, &max)| queue_from_state(VirtioPciState::NAME, *q, max))
            .collect()
    }
}

impl Device for VirtioPciDevice {
    /// Quiesces the device: the request in progress completes, the I/O thread parks. Guest
    /// memory and the saved state are then consistent until `resume`.
    fn pause(&mut self) {
        self.paused = true;
        self.device.pause();
    }

    fn resume(&mut self) {
        self.paused = false;
        self.device.resume();
    }

    /// Stops the I/O thread for good (VM teardown); later notifies are ignored.
    fn shutdown(&mut self) {
        self.shut_down = true;
        self.disarm_notifiers();
        self.device.shutdown();
    }

    /// Call only while paused.
    fn save_state(&self) -> Vec<u8> {
        self.save().to_bytes()
    }

    fn check_state(&self, bytes: &[u8]) -> Result<(), StateError> {
        self.checked_queues(&VirtioPciState::from_bytes(bytes)?).map(|_| ())
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.restore(&VirtioPciState::from_bytes(bytes)?)
    }
}

impl Drop for VirtioPciDevice {
    fn drop(&mut self) {
        self.disarm_notifiers();
    }
}
