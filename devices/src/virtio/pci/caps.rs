//! The layout of BAR0 and the PCI capabilities that describe it to the driver.
//!
//! Everything sits in one 64-bit memory BAR, each structure on its own 4 KiB page:
//!
//! | offset | what |
//! | --- | --- |
//! | 0x0000 | common configuration ([`super::common_cfg`]) |
//! | 0x1000 | ISR status (1 byte, read to clear) |
//! | 0x2000 | device-specific configuration |
//! | 0x3000 | notify: queue `n` at `n * NOTIFY_MULTIPLIER` |
//! | 0x4000 | MSI-X table (up to 512 vectors) |
//! | 0x6000 | MSI-X pending-bit array |
//!
//! Config space carries, from 0x40: the common, notify, ISR, device and PCI-config-access
//! vendor capabilities (id 0x09, virtio 1.2 §4.1.4), then MSI-X (id 0x11).

use super::common_cfg::COMMON_CFG_LEN;
use crate::pci::config_space::{ConfigError, ConfigSpace};

pub const BAR0_SIZE: u64 = 0x8000;
pub const COMMON_OFFSET: u64 = 0x0000;
pub const ISR_OFFSET: u64 = 0x1000;
pub const DEVICE_OFFSET: u64 = 0x2000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
pub const MSIX_PBA_OFFSET: u64 = 0x6000;
pub const REGION_LEN: u64 = 0x1000;
/// Bytes between two queues' notify addresses.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// Table room before the PBA page: 0x2000 / 16.
pub const MAX_MSIX_VECTORS: u16 = 512;

const CAP_ID_VENDOR: u8 = 0x09;
const CAP_ID_MSIX: u8 = 0x11;
const CFG_TYPE_COMMON: u8 = 1;
const CFG_TYPE_NOTIFY: u8 = 2;
const CFG_TYPE_ISR: u8 = 3;
const CFG_TYPE_DEVICE: u8 = 4;
const CFG_TYPE_PCI: u8 = 5;

/// Where each capability is placed.
pub const CAP_COMMON: usize = 0x40;
pub const CAP_NOTIFY: usize = 0x50;
pub const CAP_ISR: usize = 0x64;
pub const CAP_DEVICE: usize = 0x74;
pub const CAP_PCI_CFG: usize = 0x84;
pub const CAP_MSIX: usize = 0x98;

/// Fields of the PCI-config-access capability (`struct virtio_pci_cfg_cap`).
pub const PCI_CFG_BAR: usize = CAP_PCI_CFG + 4;
pub const PCI_CFG_OFFSET: usize = CAP_PCI_CFG + 8;
pub const PCI_CFG_LENGTH: usize = CAP_PCI_CFG + 12;
pub const PCI_CFG_DATA: usize = CAP_PCI_CFG + 16;
/// Message Control of the MSI-X capability: enable is bit 15, function mask bit 14.
pub const MSIX_CONTROL: usize = CAP_MSIX + 2;
pub const MSIX_ENABLE: u16 = 1 << 15;
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;

/// A structure in BAR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Common,
    Isr,
    Device,
    Notify,
    MsixTable,
    MsixPba,
}

/// The structure an access of `len` bytes at BAR0 `offset` falls in, with the offset inside
/// it; None for holes and for accesses straddling two structures.
pub fn region(offset: u64, len: usize) -> Option<(Region, u64)> {
    let (region, start, size) = match offset {
        0x0000..0x1000 => (Region::Common, COMMON_OFFSET, REGION_LEN),
        0x1000..0x2000 => (Region::Isr, ISR_OFFSET, REGION_LEN),
        0x2000..0x3000 => (Region::Device, DEVICE_OFFSET, REGION_LEN),
        0x3000..0x4000 => (Region::Notify, NOTIFY_OFFSET, REGION_LEN),
        0x4000..0x6000 => (Region::MsixTable, MSIX_TABLE_OFFSET, MSIX_PBA_OFFSET - MSIX_TABLE_OFFSET),
        0x6000..0x7000 => (Region::MsixPba, MSIX_PBA_OFFSET, REGION_LEN),
        _ => return None,
    };
    let off = offset - start;
    (off + len as u64 <= size).then_some((region, off))
}

/// `struct virtio_pci_cap` for a structure in BAR0.
fn vendor_cap(cfg_type: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let len = 16 + extra.len();
    let mut c = vec![CAP_ID_VENDOR, 0, len as u8, cfg_type, 0, 0, 0, 0];
    c.extend_from_slice(&(offset as u32).to_le_bytes());
    c.extend_from_slice(&(length as u32).to_le_bytes());
    c.extend_from_slice(extra);
    c
}

/// Adds BAR0 and all capabilities for a function with `vectors` MSI-X vectors.
pub fn build(config: &mut ConfigSpace, vectors: u16) -> Result<(), ConfigError> {
    config.add_mem_bar(0, BAR0_SIZE, true, false)?;
    config.add_capability(CAP_COMMON, &vendor_cap(CFG_TYPE_COMMON, COMMON_OFFSET, COMMON_CFG_LEN, &[]), &[])?;
    let notify = vendor_cap(CFG_TYPE_NOTIFY, NOTIFY_OFFSET, REGION_LEN, &NOTIFY_MULTIPLIER.to_le_bytes());
    config.add_capability(CAP_NOTIFY, &notify, &[])?;
    config.add_capability(CAP_ISR, &vendor_cap(CFG_TYPE_ISR, ISR_OFFSET, 1, &[]), &[])?;
    config.add_capability(CAP_DEVICE, &vendor_cap(CFG_TYPE_DEVICE, DEVICE_OFFSET, REGION_LEN, &[]), &[])?;
    // The access window: the driver picks bar, offset and length, then reads or writes data.
    let pci_cfg = vendor_cap(CFG_TYPE_PCI, 0, 0, &[0; 4]);
    let mut writable = vec![0u8; 20];
    writable[4] = 0xff;
    writable[8..20].fill(0xff);
    config.add_capability(CAP_PCI_CFG, &pci_cfg, &writable)?;
    let mut msix = vec![CAP_ID_MSIX, 0];
    msix.extend_from_slice(&(vectors - 1).to_le_bytes());
    msix.extend_from_slice(&(MSIX_TABLE_OFFSET as u32).to_le_bytes()); // BIR 0
    msix.extend_from_slice(&(MSIX_PBA_OFFSET as u32).to_le_bytes());
    config.add_capability(CAP_MSIX, &msix, &[0, 0, 0, 0xc0])?;
    Ok(())
}

/// The BAR0 access the PCI-config-access capability currently selects: (offset, length).
/// None unless it names BAR0, a length of 1, 2 or 4, and an aligned offset inside the BAR.
pub fn pci_cfg_window(config: &ConfigSpace) -> Option<(u64, usize)> {
    let bar = config.u8_at(PCI_CFG_BAR);
    let offset = u64::from(config.u32_at(PCI_CFG_OFFSET));
    let len = config.u32_at(PCI_CFG_LENGTH) as usize;
    let ok = bar == 0 && matches!(len, 1 | 2 | 4) && offset.is_multiple_of(len as u64) && offset + len as u64 <= BAR0_SIZE;
    ok.then_some((offset, len))
}
