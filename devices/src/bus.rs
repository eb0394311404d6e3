//! Address-range dispatch for port I/O and MMIO exits.
//!
//! A [`Bus`] maps non-overlapping `[base, base+len)` ranges to devices; an access is handed
//! to the device with its offset inside the range. Accesses to nothing read as all ones and
//! are otherwise ignored, as on a real PC.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// A device reachable through a [`Bus`].
pub trait BusDevice: Send {
    /// Fills `data` from the register at `offset` within the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes `data` to the register at `offset` within the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("bus range at {0:#x} has zero length")]
    Empty(u64),
}

struct Entry {
    len: u64,
    /// Added to the offset the device sees (for devices split over several ranges).
    dev_offset: u64,
    dev: Arc<Mutex<dyn BusDevice>>,
}

/// A set of devices by address range.
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Entry>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, base: u64, len: u64, dev: Arc<Mutex<dyn BusDevice>>) -> Result<(), BusError> {
        self.insert_with_offset(base, len, dev, 0)
    }

    /// Like `insert`, but the device sees offsets starting at `dev_offset`, so one device
    /// can answer at ports that are not contiguous (the i8042 at 0x60 and 0x64).
    pub fn insert_with_offset(&mut self, base: u64, len: u64, dev: Arc<Mutex<dyn BusDevice>>, dev_offset: u64) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty(base));
        }
        let end = base.checked_add(len).ok_or(BusError::Overlap { base, len })?;
        if let Some((b, e)) = self.ranges.range(..end).next_back()
            && b + e.len > base
        {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(base, Entry { len, dev_offset, dev });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &Arc<Mutex<dyn BusDevice>>)> {
        let (base, e) = self.ranges.range(..=addr).next_back()?;
        (addr - base < e.len).then_some((addr - base + e.dev_offset, &e.dev))
    }

    /// Dispatches a read; returns false (and fills all ones) if nothing is mapped there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((off, dev)) => {
                lock(dev).read(off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a write; returns false if nothing is mapped there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((off, dev)) => {
                lock(dev).write(off, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering it if another thread panicked while holding it: a device
/// model must keep serving the guest rather than poison the whole VM.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(u8);
    impl BusDevice for Reg {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0 + offset as u8);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn dispatch_and_overlap() {
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, Arc::new(Mutex::new(Reg(1)))).unwrap();
        bus.insert(0x70, 2, Arc::new(Mutex::new(Reg(5)))).unwrap();
        assert_eq!(
            bus.insert(0x3fc, 8, Arc::new(Mutex::new(Reg(0)))),
            Err(BusError::Overlap { base: 0x3fc, len: 8 })
        );
        assert_eq!(
            bus.insert(0x3f0, 9, Arc::new(Mutex::new(Reg(0)))),
            Err(BusError::Overlap { base: 0x3f0, len: 9 })
        );
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b[0], 3);
        assert!(bus.write(0x71, &[9]));
        bus.read(0x70, &mut b);
        assert_eq!(b[0], 9);
        assert!(!bus.read(0x400, &mut b));
        assert_eq!(b[0], 0xff);
        assert!(!bus.write(0x3f7, &[1]));
        let split = Arc::new(Mutex::new(Reg(0x10)));
        bus.insert(0x60, 1, split.clone()).unwrap();
        bus.insert_with_offset(0x64, 1, split, 4).unwrap();
        bus.read(0x64, &mut b);
        assert_eq!(b[0], 0x14);
    }
}
