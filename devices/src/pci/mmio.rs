//! MMIO routing by memory BARs, and firmware-style BAR assignment.
//!
//! The VMM registers one [`PciMmio`] over the whole 32-bit PCI hole. Every access is matched
//! against the BARs' *current* values, so a guest that reprograms a BAR needs no callback
//! into the VMM: the next access simply lands at the new place.

use super::PciRoot;
use super::config_space::{COMMAND_MEMORY, NUM_BARS, PciBar};
use crate::bus::{BusDevice, lock};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// The window godwit gives to 32-bit BARs: above low RAM (which ends at 3 GiB at most) and
/// below the IOAPIC.
pub const PCI_MMIO_START: u64 = 0xc000_0000;
pub const PCI_MMIO_END: u64 = 0xfec0_0000;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PciMmioError {
    #[error("no room for BAR{bar} ({size:#x} bytes) of PCI slot {slot} in the MMIO window")]
    NoSpace { slot: usize, bar: usize, size: u64 },
}

/// The MMIO front end over `[base, base + len)` of guest physical space.
pub struct PciMmio {
    base: u64,
    root: Arc<Mutex<PciRoot>>,
}

impl PciMmio {
    /// A router for a bus range starting at guest address `base` (offsets the bus hands in
    /// are relative to it).
    pub fn new(base: u64, root: Arc<Mutex<PciRoot>>) -> Self {
        PciMmio { base, root }
    }

    /// Runs `f` on the function and BAR that decode `addr`, with the offset inside the BAR.
    fn route<R>(&self, addr: u64, f: impl FnOnce(&mut dyn super::PciDevice, usize, u64) -> R) -> Option<R> {
        let root = lock(&self.root);
        for (_, dev) in root.devices() {
            let mut d = lock(dev);
            if (d.read_config(1) as u16) & COMMAND_MEMORY == 0 {
                continue;
            }
            let hit = (0..NUM_BARS)
                .filter_map(|i| d.bar(i))
                .find_map(|b| b.offset_of(addr).map(|off| (b.index, off)));
            if let Some((bar, off)) = hit {
                return Some(f(&mut *d, bar, off));
            }
        }
        None
    }
}

impl BusDevice for PciMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let addr = self.base.wrapping_add(offset);
        if self.route(addr, |d, bar, off| d.mmio_read(bar, off, data)).is_none() {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let addr = self.base.wrapping_add(offset);
        self.route(addr, |d, bar, off| d.mmio_write(bar, off, data));
    }
}

/// Does what firmware would: gives every memory BAR of every function an address in
/// `[start, end)` aligned to its size (largest first, so nothing is wasted on alignment),
/// then turns on memory decode. Returns the assignments made, as `(slot, bar)`.
pub fn assign_bars(root: &PciRoot, start: u64, end: u64) -> Result<Vec<(usize, PciBar)>, PciMmioError> {
    let mut bars: Vec<(usize, PciBar)> = Vec::new();
    for (slot, dev) in root.devices() {
        let d = lock(dev);
        bars.extend((0..NUM_BARS).filter_map(|i| d.bar(i)).map(|b| (slot, b)));
    }
    bars.sort_by(|a, b| b.1.size.cmp(&a.1.size).then(a.0.cmp(&b.0)).then(a.1.index.cmp(&b.1.index)));
    let mut next = start;
    let mut done = Vec::with_capacity(bars.len());
    for (slot, bar) in bars {
        let no_space = PciMmioError::NoSpace {
            slot,
            bar: bar.index,
            size: bar.size,
        };
        let base = next.checked_next_multiple_of(bar.size).ok_or(no_space.clone())?;
        let limit = base.checked_add(bar.size).ok_or(no_space.clone())?;
        if limit > end || (!bar.is_64bit && limit > 1 << 32) {
            return Err(no_space);
        }
        next = limit;
        let dev = root.slot(slot).expect("slot listed above");
        let mut d = lock(dev);
        let reg = 4 + bar.index;
        d.write_config(reg, 0, &(base as u32).to_le_bytes());
        if bar.is_64bit {
            d.write_config(reg + 1, 0, &((base >> 32) as u32).to_le_bytes());
        }
        done.push((slot, PciBar { base, ..bar }));
    }
    for (_, dev) in root.devices() {
        let mut d = lock(dev);
        if (0..NUM_BARS).any(|i| d.bar(i).is_some()) {
            let cmd = d.read_config(1) as u16 | COMMAND_MEMORY;
            d.write_config(1, 0, &cmd.to_le_bytes());
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{ConfigSpace, HostBridge, PciDevice};
    use crate::state::StateError;

    /// A function with two BARs whose registers read back their offset.
    struct Fake {
        config: ConfigSpace,
        last_write: Option<(usize, u64, Vec<u8>)>,
    }

    impl Fake {
        fn new() -> Self {
            let mut config = ConfigSpace::new(0x1234, 0x5678, 0xff0000, 0, 0, 0);
            config.add_mem_bar(0, 0x1000, true, false).unwrap();
            config.add_mem_bar(2, 0x10_0000, true, true).unwrap();
            Fake { config, last_write: None }
        }
    }

    impl crate::device::Device for Fake {
        fn save_state(&self) -> Vec<u8> {
            Vec::new()
        }
        fn check_state(&self, _bytes: &[u8]) -> Result<(), StateError> {
            Ok(())
        }
        fn restore_state(&mut self, _bytes: &[u8]) -> Result<(), StateError> {
            Ok(())
        }
    }

    impl PciDevice for Fake {
        fn read_config(&self, reg: usize) -> u32 {
            self.config.read_reg(reg)
        }
        fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
            self.config.write_reg(reg, offset, data);
        }
        fn name(&self) -> &str {
            "fake"
        }
        fn bar(&self, index: usize) -> Option<PciBar> {
            self.config.bar(index)
        }
        fn mmio_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(bar as u8 * 0x10 + offset as u8);
        }
        fn mmio_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.last_write = Some((bar, offset, data.to_vec()));
        }
    }

    #[test]
    fn assign_route_and_relocate() {
        let fake = Arc::new(Mutex::new(Fake::new()));
        let mut root = PciRoot::new();
        root.add(Arc::new(Mutex::new(HostBridge::default()))).unwrap();
        root.add(fake.clone()).unwrap();
        let done = assign_bars(&root, PCI_MMIO_START, PCI_MMIO_END).unwrap();
        assert_eq!(done.len(), 2);
        let root = Arc::new(Mutex::new(root));
        let mut mmio = PciMmio::new(PCI_MMIO_START, root.clone());
        let bar0 = lock(&fake).config.bar(0).unwrap().base;
        let bar2 = lock(&fake).config.bar(2).unwrap().base;
        assert_eq!(bar2, PCI_MMIO_START, "largest first");
        assert_eq!(bar0, PCI_MMIO_START + 0x10_0000);
        assert!(lock(&fake).config.memory_enabled());
        let mut b = [0u8; 4];
        mmio.read(bar0 - PCI_MMIO_START + 3, &mut b);
        assert_eq!(b, [3; 4]);
        mmio.read(bar2 - PCI_MMIO_START + 5, &mut b);
        assert_eq!(b, [0x25; 4]);
        mmio.write(bar0 - PCI_MMIO_START + 8, &[1, 2]);
        assert_eq!(lock(&fake).last_write, Some((0, 8, vec![1, 2])));
        // Unclaimed addresses read as all ones.
        mmio.read(0x3000_0000, &mut b);
        assert_eq!(b, [0xff; 4]);

        // The guest moves BAR0; routing follows without any VMM involvement.
        let new = 0xd000_0000u32;
        lock(&fake).write_config(4, 0, &new.to_le_bytes());
        mmio.read(u64::from(new) - PCI_MMIO_START + 7, &mut b);
        assert_eq!(b, [7; 4]);
        mmio.read(bar0 - PCI_MMIO_START + 7, &mut b);
        assert_eq!(b, [0xff; 4], "old place is empty");

        // Memory decode off: nothing answers.
        lock(&fake).write_config(1, 0, &[0, 0]);
        mmio.read(u64::from(new) - PCI_MMIO_START, &mut b);
        assert_eq!(b, [0xff; 4]);
    }

    #[test]
    fn window_too_small() {
        let mut root = PciRoot::new();
        root.add(Arc::new(Mutex::new(Fake::new()))).unwrap();
        let err = assign_bars(&root, 0xc000_0000, 0xc008_0000).unwrap_err();
        assert_eq!(
            err,
            PciMmioError::NoSpace {
                slot: 0,
                bar: 2,
                size: 0x10_0000
            }
        );
    }
}
