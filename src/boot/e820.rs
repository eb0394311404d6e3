//! The BIOS-style memory map handed to Linux in the zero page.

use crate::layout::{EBDA_START, HIMEM_START, ram_ranges};

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// (address, size, type) entries for a guest of `mem` bytes: conventional memory below
/// the EBDA, the reserved EBDA and BIOS area, then RAM from 1 MiB (and above 4 GiB).
pub fn map(mem: u64) -> Vec<(u64, u64, u32)> {
    let mut v = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, 0xa0000 - EBDA_START, E820_RESERVED),
        (0xf0000, 0x10000, E820_RESERVED),
    ];
    for (start, size) in ram_ranges(mem) {
        let (s, e) = (start.max(HIMEM_START), start + size);
        if e > s {
            v.push((s, e - s, E820_RAM));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_gib_guest() {
        let m = map(4 << 30);
        assert_eq!(m[3], (HIMEM_START, (3 << 30) - HIMEM_START, E820_RAM));
        assert_eq!(m[4], (4 << 30, 1 << 30, E820_RAM));
        let ram: u64 = m.iter().filter(|e| e.2 == E820_RAM).map(|e| e.1).sum();
        assert_eq!(ram, (4 << 30) - (HIMEM_START - EBDA_START));
    }
}
