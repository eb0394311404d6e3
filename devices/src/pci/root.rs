//! Bus 0 and configuration mechanism #1 (the address latch at 0xCF8, data at 0xCFC-0xCFF).

use super::PciDevice;
use crate::bus::{BusDevice, lock};
use crate::state::{Persist, StateError, StateReader, StateWriter, VersionedState};
use std::sync::{Arc, Mutex};
use thiserror::Error;

pub const PCI_CONFIG_PORT: u64 = 0xcf8;
/// Latch (4 ports) plus data window (4 ports).
pub const PCI_CONFIG_PORTS: u64 = 8;
pub const SLOTS: usize = 32;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PciError {
    #[error("PCI slot {0} is already in use")]
    SlotInUse(usize),
    #[error("no free PCI slot left")]
    NoFreeSlot,
}

/// The functions on bus 0, one per slot (no multi-function devices).
#[derive(Default)]
pub struct PciRoot {
    slots: Vec<Option<Arc<Mutex<dyn PciDevice>>>>,
}

impl PciRoot {
    pub fn new() -> Self {
        PciRoot {
            slots: (0..SLOTS).map(|_| None).collect(),
        }
    }

    pub fn add_at(&mut self, slot: usize, dev: Arc<Mutex<dyn PciDevice>>) -> Result<(), PciError> {
        match self.slots.get_mut(slot) {
            Some(s @ None) => {
                *s = Some(dev);
                Ok(())
            }
            _ => Err(PciError::SlotInUse(slot)),
        }
    }

    /// Puts a device in the first free slot and returns the slot number.
    pub fn add(&mut self, dev: Arc<Mutex<dyn PciDevice>>) -> Result<usize, PciError> {
        let slot = self.slots.iter().position(Option::is_none).ok_or(PciError::NoFreeSlot)?;
        self.slots[slot] = Some(dev);
        Ok(slot)
    }

    /// Devices present, with their slot numbers.
    pub fn devices(&self) -> impl Iterator<Item = (usize, &Arc<Mutex<dyn PciDevice>>)> {
        self.slots.iter().enumerate().filter_map(|(i, d)| d.as_ref().map(|d| (i, d)))
    }

    /// The device in `slot`, if any.
    pub fn slot(&self, slot: usize) -> Option<&Arc<Mutex<dyn PciDevice>>> {
        self.slots.get(slot)?.as_ref()
    }

    fn device(&self, bus: u32, slot: u32, func: u32) -> Option<&Arc<Mutex<dyn PciDevice>>> {
        if bus != 0 || func != 0 {
            return None;
        }
        self.slots.get(slot as usize)?.as_ref()
    }
}

/// The I/O-port front end: decodes the latch and forwards data accesses to the function.
pub struct PciConfigIo {
    latch: u32,
    root: Arc<Mutex<PciRoot>>,
}

impl PciConfigIo {
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        PciConfigIo { latch: 0, root }
    }

    /// (bus, slot, function, register) selected by the latch, if the enable bit is set.
    fn target(&self) -> Option<(u32, u32, u32, usize)> {
        if self.latch & 0x8000_0000 == 0 {
            return None;
        }
        let l = self.latch;
        Some(((l >> 16) & 0xff, (l >> 11) & 0x1f, (l >> 8) & 0x7, ((l >> 2) & 0x3f) as usize))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset == 0 && data.len() == 4 {
            data.copy_from_slice(&self.latch.to_le_bytes());
            return;
        }
        if offset < 4 {
            // Byte/word reads of the latch ports read nothing meaningful on real hardware.
            data.fill(0xff);
            return;
        }
        let byte = (offset - 4) as usize;
        let value = match self.target() {
            Some((b, s, f, reg)) => {
                let root = lock(&self.root);
                root.device(b, s, f).map_or(0xffff_ffff, |d| lock(d).read_config(reg))
            }
            None => 0xffff_ffff,
        };
        let bytes = value.to_le_bytes();
        for (i, d) in data.iter_mut().enumerate() {
            *d = bytes.get(byte + i).copied().unwrap_or(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset < 4 {
            // Only a dword write updates the latch; Linux's probe pokes 0xCFB with a byte
            // and expects the latch to survive.
            if offset == 0 && data.len() == 4 {
                self.latch = u32::from_le_bytes(data.try_into().expect("4 bytes"));
            }
            return;
        }
        let byte = (offset - 4) as usize;
        if byte + data.len() > 4 {
            return;
        }
        if let Some((b, s, f, reg)) = self.target() {
            let root = lock(&self.root);
            if let Some(d) = root.device(b, s, f) {
                lock(d).write_config(reg, byte, data);
            }
        }
    }
}

impl Persist for PciConfigIo {
    type State = PciConfigIoState;
    fn save(&self) -> PciConfigIoState {
        PciConfigIoState { latch: self.latch }
    }
    fn restore(&mut self, s: &PciConfigIoState) -> Result<(), StateError> {
        self.latch = s.latch;
        Ok(())
    }
}

impl crate::device::PlainDevice for PciConfigIo {}

/// The latch, saved so a guest caught between latch and data access resumes correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciConfigIoState {
    pub latch: u32,
}

impl VersionedState for PciConfigIoState {
    const NAME: &'static str = "pci-config-io";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.u32(self.latch);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        Ok(PciConfigIoState { latch: r.u32()? })
    }
}

#[cfg(test)]
mod tests {
    use super::super::HostBridge;
    use super::*;

    fn io() -> PciConfigIo {
        let mut root = PciRoot::new();
        root.add_at(0, Arc::new(Mutex::new(HostBridge::default()))).unwrap();
        PciConfigIo::new(Arc::new(Mutex::new(root)))
    }

    fn rd32(io: &mut PciConfigIo, addr: u32) -> u32 {
        io.write(0, &addr.to_le_bytes());
        let mut d = [0u8; 4];
        io.read(4, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn probe_like_linux() {
        let mut io = io();
        // pci_check_type1: byte write to 0xCFB must not disturb the latch.
        io.write(0, &0x8000_0000u32.to_le_bytes());
        io.write(3, &[0x01]);
        let mut d = [0u8; 4];
        io.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x8000_0000);
        assert_eq!(rd32(&mut io, 0x8000_0000), 0x0d57_8086);
        assert_eq!(rd32(&mut io, 0x8000_0008) >> 8, 0x060000);
        assert_eq!(rd32(&mut io, 0x8000_0800), 0xffff_ffff, "slot 1 is empty");
        assert_eq!(rd32(&mut io, 0x0000_0000), 0xffff_ffff, "disabled latch");
        io.write(0, &0x8000_0000u32.to_le_bytes());
        let mut w = [0u8; 2];
        io.read(6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0d57);
    }
}
