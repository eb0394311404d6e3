//! A 256-byte type-0 configuration space with a per-bit write mask.
//!
//! Memory BARs need no special casing: the write mask of a BAR covers only the address bits
//! above its size, so the guest's size probe (write all ones, read back) sees the size mask,
//! and the BAR's current value is always what the guest (or [`super::mmio::assign_bars`])
//! last wrote. Sizes are recovered from the mask, so a saved space carries its BARs with it.

use crate::state::{StateError, StateReader, StateWriter, VersionedState};
use thiserror::Error;

pub const CONFIG_SIZE: usize = 256;
/// Configuration offset of BAR0; BARn is at `BAR0 + 4n`.
pub const BAR0: usize = 0x10;
pub const NUM_BARS: usize = 6;
/// Command register bit enabling memory decode.
pub const COMMAND_MEMORY: u16 = 0x2;
/// Status register bit announcing a capability list.
const STATUS_CAP_LIST: u8 = 0x10;
const CAP_POINTER: usize = 0x34;
/// Capabilities live after the standard type-0 header.
pub const CAP_START: usize = 0x40;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("BAR{0} does not exist or is already in use")]
    BadBarIndex(usize),
    #[error("BAR size {0:#x} is not a power of two of at least 16 bytes")]
    BadBarSize(u64),
    #[error("capability at {offset:#x} with length {len} does not fit the configuration space")]
    BadCapability { offset: usize, len: usize },
}

/// A memory BAR as currently programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciBar {
    pub index: usize,
    pub base: u64,
    pub size: u64,
    pub is_64bit: bool,
    pub prefetchable: bool,
}

impl PciBar {
    /// The offset of `addr` within this BAR, if the BAR contains it.
    pub fn offset_of(&self, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(self.base)?;
        (off < self.size).then_some(off)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE],
    writable: [u8; CONFIG_SIZE],
}

impl ConfigSpace {
    /// A header-type-0 function with the given identity and no BARs or capabilities.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8, subsys_vendor: u16, subsys: u16) -> Self {
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SIZE],
            writable: [0; CONFIG_SIZE],
        };
        c.set_u16(0x00, vendor);
        c.set_u16(0x02, device);
        c.bytes[0x08] = revision;
        c.bytes[0x09..0x0c].copy_from_slice(&class.to_le_bytes()[..3]);
        c.set_u16(0x2c, subsys_vendor);
        c.set_u16(0x2e, subsys);
        // Command register: I/O, memory, bus master, parity, SERR, INTx disable are writable.
        c.writable[0x04] = 0x47;
        c.writable[0x05] = 0x05;
        c.writable[0x0c] = 0xff; // cache line size
        c.writable[0x0d] = 0xff; // latency timer
        c.writable[0x3c] = 0xff; // interrupt line
        c
    }

    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    pub fn read_reg(&self, reg: usize) -> u32 {
        let off = reg * 4;
        if off + 4 > CONFIG_SIZE {
            return 0xffff_ffff;
        }
        u32::from_le_bytes(self.bytes[off..off + 4].try_into().expect("4-byte slice"))
    }

    /// Applies a guest write through the write mask.
    pub fn write_reg(&mut self, reg: usize, offset: usize, data: &[u8]) {
        let start = reg * 4 + offset;
        if offset + data.len() > 4 || start + data.len() > CONFIG_SIZE {
            return;
        }
        for (i, b) in data.iter().enumerate() {
            let m = self.writable[start + i];
            self.bytes[start + i] = (self.bytes[start + i] & !m) | (b & m);
        }
    }

    pub fn bytes(&self) -> &[u8; CONFIG_SIZE] {
        &self.bytes
    }

    pub fn u8_at(&self, off: usize) -> u8 {
        self.bytes.get(off).copied().unwrap_or(0xff)
    }

    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.u8_at(off), self.u8_at(off + 1)])
    }

    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes([self.u8_at(off), self.u8_at(off + 1), self.u8_at(off + 2), self.u8_at(off + 3)])
    }

    /// Sets a dword regardless of the write mask (for the device model itself).
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn command(&self) -> u16 {
        self.u16_at(0x04)
    }

    pub fn memory_enabled(&self) -> bool {
        self.command() & COMMAND_MEMORY != 0
    }

    /// Declares a memory BAR of `size` bytes (a power of two) at `index`; a 64-bit BAR also
    /// takes register `index + 1` for the high half. The BAR starts at address 0.
    pub fn add_mem_bar(&mut self, index: usize, size: u64, is_64bit: bool, prefetchable: bool) -> Result<(), ConfigError> {
        let regs = if is_64bit { 2 } else { 1 };
        if index + regs > NUM_BARS || (index..index + regs).any(|i| self.bar_mask(i) != 0) {
            return Err(ConfigError::BadBarIndex(index));
        }
        if size < 16 || !size.is_power_of_two() || (!is_64bit && size > 1 << 31) {
            return Err(ConfigError::BadBarSize(size));
        }
        let mask = !(size - 1);
        let flags = if is_64bit { 0x4 } else { 0 } | if prefetchable { 0x8 } else { 0 };
        let off = BAR0 + index * 4;
        self.set_u32(off, flags);
        self.writable[off..off + 4].copy_from_slice(&((mask as u32) & !0xf).to_le_bytes());
        if is_64bit {
            self.set_u32(off + 4, 0);
            self.writable[off + 4..off + 8].copy_from_slice(&((mask >> 32) as u32).to_le_bytes());
        }
        Ok(())
    }

    fn bar_mask(&self, index: usize) -> u32 {
        let off = BAR0 + index * 4;
        u32::from_le_bytes(self.writable[off..off + 4].try_into().expect("4-byte slice"))
    }

    /// The memory BAR at `index` as the guest currently sees it (None for an unused
    /// register or the high half of a 64-bit BAR).
    pub fn bar(&self, index: usize) -> Option<PciBar> {
        let mut i = 0;
        while i < NUM_BARS {
            let lo_mask = self.bar_mask(i);
            let lo = self.u32_at(BAR0 + i * 4);
            if lo_mask == 0 || lo & 1 != 0 {
                i += 1;
                continue;
            }
            let is_64bit = lo & 0x6 == 0x4 && i + 1 < NUM_BARS;
            let (hi, hi_mask) = if is_64bit {
                (self.u32_at(BAR0 + i * 4 + 4), self.bar_mask(i + 1))
            } else {
                (0, u32::MAX)
            };
            if i == index {
                let mask = ((u64::from(hi_mask) << 32) | u64::from(lo_mask)) & !0xf;
                return Some(PciBar {
                    index,
                    base: (u64::from(hi) << 32) | u64::from(lo & !0xf),
                    size: (!mask).wrapping_add(1),
                    is_64bit,
                    prefetchable: lo & 0x8 != 0,
                });
            }
            if i > index {
                return None;
            }
            i += if is_64bit { 2 } else { 1 };
        }
        None
    }

    /// Links a capability into the list at `offset` (dword-aligned, at or after 0x40).
    /// `body[0]` is the capability id; `body[1]` (the next pointer) is filled in here.
    /// `writable` gives the guest-writable bits of the body (shorter means read-only rest).
    pub fn add_capability(&mut self, offset: usize, body: &[u8], writable: &[u8]) -> Result<(), ConfigError> {
        let bad = ConfigError::BadCapability { offset, len: body.len() };
        if offset < CAP_START
            || !offset.is_multiple_of(4)
            || body.len() < 2
            || offset + body.len() > CONFIG_SIZE
            || writable.len() > body.len()
        {
            return Err(bad);
        }
        // Walk to the end of the chain (bounded, in case the chain were ever corrupt).
        let mut link = CAP_POINTER;
        for _ in 0..CONFIG_SIZE / 4 {
            let next = self.bytes[link] as usize;
            if next == 0 {
                break;
            }
            link = next + 1;
        }
        self.bytes[offset..offset + body.len()].copy_from_slice(body);
        self.bytes[offset + 1] = 0;
        self.writable[offset..offset + writable.len()].copy_from_slice(writable);
        self.bytes[link] = offset as u8;
        self.bytes[0x06] |= STATUS_CAP_LIST;
        Ok(())
    }
}

impl VersionedState for ConfigSpace {
    const NAME: &'static str = "pci-config";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.bytes(&self.bytes);
        w.bytes(&self.writable);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let (b, m) = (r.bytes()?, r.bytes()?);
        if b.len() != CONFIG_SIZE || m.len() != CONFIG_SIZE {
            return Err(StateError::Invalid {
                name: Self::NAME,
                why: "config space is not 256 bytes".into(),
            });
        }
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SIZE],
            writable: [0; CONFIG_SIZE],
        };
        c.bytes.copy_from_slice(b);
        c.writable.copy_from_slice(m);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_bounds() {
        let mut c = ConfigSpace::new(0x8086, 0x0d57, 0x060000, 0, 0, 0);
        assert_eq!(c.read_reg(0), 0x0d57_8086);
        assert_eq!(c.read_reg(2) >> 8, 0x060000);
        c.write_reg(0, 0, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.read_reg(0), 0x0d57_8086, "ids are read-only");
        c.write_reg(1, 0, &[0xff, 0xff]);
        assert_eq!(c.read_reg(1) & 0xffff, 0x0547);
        c.write_reg(15, 0, &[0x0b]);
        assert_eq!(c.read_reg(15) & 0xff, 0x0b);
        c.write_reg(63, 3, &[1, 2]); // crosses the dword: ignored
        assert_eq!(c.read_reg(64), 0xffff_ffff);
        assert_eq!(ConfigSpace::from_bytes(&c.to_bytes()).unwrap(), c);
    }

    fn write32(c: &mut ConfigSpace, off: usize, v: u32) {
        c.write_reg(off / 4, 0, &v.to_le_bytes());
    }

    #[test]
    fn bars_size_and_move() {
        let mut c = ConfigSpace::new(0x1af4, 0x1042, 0x018000, 1, 0x1af4, 0);
        c.add_mem_bar(0, 0x4000, true, false).unwrap();
        c.add_mem_bar(2, 0x1000, false, true).unwrap();
        assert_eq!(c.add_mem_bar(1, 0x1000, false, false), Err(ConfigError::BadBarIndex(1)));
        assert_eq!(c.add_mem_bar(3, 0x1001, false, false), Err(ConfigError::BadBarSize(0x1001)));
        // Size probe as Linux's __pci_read_base does it.
        write32(&mut c, 0x10, !0);
        write32(&mut c, 0x14, !0);
        assert_eq!(c.u32_at(0x10), 0xffff_c004);
        assert_eq!(c.u32_at(0x14), 0xffff_ffff);
        write32(&mut c, 0x18, !0);
        assert_eq!(c.u32_at(0x18), 0xffff_f008);
        write32(&mut c, 0x10, 0xc000_0000);
        write32(&mut c, 0x14, 0x1);
        let b = c.bar(0).unwrap();
        assert_eq!((b.base, b.size, b.is_64bit, b.prefetchable), (0x1_c000_0000, 0x4000, true, false));
        assert_eq!(b.offset_of(0x1_c000_3fff), Some(0x3fff));
        assert_eq!(b.offset_of(0x1_c000_4000), None);
        assert_eq!(c.bar(1), None, "high half of BAR0");
        let b2 = c.bar(2).unwrap();
        assert_eq!((b2.base, b2.size, b2.is_64bit, b2.prefetchable), (0xffff_f000, 0x1000, false, true));
        assert_eq!(c.bar(3), None);
        assert!(!c.memory_enabled());
        c.write_reg(1, 0, &[0x02, 0x00]);
        assert!(c.memory_enabled());
        // Sizes survive a save and restore.
        assert_eq!(ConfigSpace::from_bytes(&c.to_bytes()).unwrap().bar(0), c.bar(0));
    }

    #[test]
    fn capability_chain() {
        let mut c = ConfigSpace::new(0x1af4, 0x1042, 0x018000, 1, 0x1af4, 0);
        assert_eq!(c.read_reg(1) >> 16 & 0x10, 0);
        c.add_capability(0x40, &[0x09, 0xaa, 4, 1], &[]).unwrap();
        c.add_capability(0x48, &[0x11, 0, 0, 0], &[0, 0, 0, 0xc0]).unwrap();
        assert!(c.add_capability(0x41, &[0x09, 0], &[]).is_err());
        assert!(c.add_capability(0xfc, &[0x09, 0, 0, 0, 0], &[]).is_err());
        assert_eq!(c.read_reg(1) >> 16 & 0x10, 0x10);
        assert_eq!(c.u8_at(0x34), 0x40);
        assert_eq!(c.u8_at(0x41), 0x48);
        assert_eq!(c.u8_at(0x49), 0);
        c.write_reg(0x48 / 4, 2, &[0xff, 0xff]);
        assert_eq!(c.u16_at(0x4a), 0xc000);
    }
}
