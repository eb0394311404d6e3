//! The GDT and identity page tables the 64-bit Linux entry expects to find in place.

use super::BootError;
use crate::layout::{BOOT_GDT, BOOT_IDT, PD, PD_COUNT, PDPT, PML4};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Boot GDT: null, null, then __BOOT_CS (0x10, 64-bit code) and __BOOT_DS (0x18, data),
/// the selectors the boot protocol names.
pub const GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

const PRESENT_RW: u64 = 0x3;
const PAGE_2M: u64 = 0x80;

/// Writes the GDT, an empty IDT and page tables that identity-map the first 4 GiB.
pub fn write<M: GuestMemoryBackend>(mem: &M) -> Result<(), BootError> {
    let w = |addr: u64, v: u64| mem.write_obj(v, GuestAddress(addr)).map_err(BootError::Memory);
    for (i, d) in GDT.iter().enumerate() {
        w(BOOT_GDT + 8 * i as u64, *d)?;
    }
    w(BOOT_IDT, 0)?;
    w(PML4, PDPT | PRESENT_RW)?;
    let mut table = vec![0u8; (PD_COUNT * 4096) as usize];
    for i in 0..PD_COUNT {
        w(PDPT + 8 * i, (PD + i * 4096) | PRESENT_RW)?;
    }
    for (i, entry) in table.chunks_exact_mut(8).enumerate() {
        entry.copy_from_slice(&(((i as u64) << 21) | PRESENT_RW | PAGE_2M).to_le_bytes());
    }
    mem.write_slice(&table, GuestAddress(PD)).map_err(BootError::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn tables_map_4g() {
        let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write(&mem).unwrap();
        let pdpt3: u64 = mem.read_obj(GuestAddress(PDPT + 24)).unwrap();
        assert_eq!(pdpt3, (PD + 3 * 4096) | 3);
        let last: u64 = mem.read_obj(GuestAddress(PD + PD_COUNT * 4096 - 8)).unwrap();
        assert_eq!(last, ((4u64 << 30) - (2 << 20)) | 0x83);
    }
}
