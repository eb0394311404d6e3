//! PCI: type-0 configuration spaces, the host bridge, the 0xCF8/0xCFC access mechanism, and
//! MMIO routing by the functions' memory BARs.
pub mod config_space;
pub mod host_bridge;
pub mod mmio;
pub mod root;

use crate::device::Device;
pub use config_space::{ConfigSpace, PciBar};
pub use host_bridge::HostBridge;
pub use mmio::{PciMmio, assign_bars};
pub use root::{PciConfigIo, PciRoot};

/// A function on the PCI bus, seen through its configuration space. Its state, pause and
/// shutdown come with [`Device`], as for every device.
pub trait PciDevice: Device {
    /// Reads the dword at configuration register `reg` (byte offset `reg * 4`).
    fn read_config(&self, reg: usize) -> u32;
    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` within dword register `reg`.
    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]);
    /// A short human-readable name for `info pci`.
    fn name(&self) -> &str;
    /// The memory BAR at `index` as currently programmed, if the function has one there.
    fn bar(&self, _index: usize) -> Option<PciBar> {
        None
    }
    /// Reads from memory BAR `bar` at `offset` (only called while memory decode is on).
    fn mmio_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    /// Writes to memory BAR `bar` at `offset` (only called while memory decode is on).
    fn mmio_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}
