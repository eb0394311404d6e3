//! The host bridge at 00:00.0. Linux's PCI probe wants a host-bridge-class function on bus 0
//! before it trusts configuration mechanism #1.

use super::{ConfigSpace, PciDevice};
use crate::device::PlainDevice;
use crate::state::{Persist, StateError};

const VENDOR_INTEL: u16 = 0x8086;
/// A device id with no chipset quirks attached to it in Linux (used by other KVM VMMs too).
const DEVICE_VIRT_HOST_BRIDGE: u16 = 0x0d57;
const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

pub struct HostBridge {
    config: ConfigSpace,
}

impl Default for HostBridge {
    fn default() -> Self {
        HostBridge {
            config: ConfigSpace::new(VENDOR_INTEL, DEVICE_VIRT_HOST_BRIDGE, CLASS_HOST_BRIDGE, 0, 0, 0),
        }
    }
}

impl PciDevice for HostBridge {
    fn read_config(&self, reg: usize) -> u32 {
        self.config.read_reg(reg)
    }
    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write_reg(reg, offset, data);
    }
    fn name(&self) -> &str {
        "Host bridge"
    }
}

impl PlainDevice for HostBridge {}

impl Persist for HostBridge {
    type State = ConfigSpace;
    fn save(&self) -> ConfigSpace {
        self.config.clone()
    }
    fn restore(&mut self, s: &ConfigSpace) -> Result<(), StateError> {
        self.config = s.clone();
        Ok(())
    }
}
