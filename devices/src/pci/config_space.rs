//! A 256-byte type-0 configuration space with a per-bit write mask.

use crate::state::{StateError, StateReader, StateWriter, VersionedState};

pub const CONFIG_SIZE: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE],
    writable: [u8; CONFIG_SIZE],
}

impl ConfigSpace {
    /// A header-type-0 function with the given identity and no BARs or capabilities.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8, subsys_vendor: u16, subsys: u16) -> Self {
        let mut c = ConfigSpace { bytes: [0; CONFIG_SIZE], writable: [0; CONFIG_SIZE] };
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
            return Err(StateError::Invalid { name: Self::NAME, why: "config space is not 256 bytes".into() });
        }
        let mut c = ConfigSpace { bytes: [0; CONFIG_SIZE], writable: [0; CONFIG_SIZE] };
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
}
