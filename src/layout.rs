//! The guest physical address map: where godwit puts RAM, boot structures and device windows.

/// RAM beyond this size is placed above 4 GiB, leaving [3 GiB, 4 GiB) to devices, as
/// QEMU's pc machine does for guests of 3.5 GiB and more.
pub const LOW_RAM_MAX: u64 = 3 << 30;
/// Where RAM above the 32-bit PCI hole starts.
pub const HIGH_RAM_START: u64 = 4 << 30;
/// End of conventional memory; [EBDA_START, 1 MiB) is reserved (EBDA, VGA hole, BIOS).
pub const EBDA_START: u64 = 0x9fc00;
/// The start of high memory, where the protected-mode kernel is loaded.
pub const HIMEM_START: u64 = 0x10_0000;

/// Boot GDT (null, null, 64-bit code 0x10, data 0x18) and an empty IDT.
pub const BOOT_GDT: u64 = 0x500;
pub const BOOT_IDT: u64 = 0x520;
/// Stack for the kernel's first instructions (grows down, below the zero page).
pub const BOOT_STACK: u64 = 0x6ff0;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Identity-map page tables for the 64-bit entry: PML4, PDPT, then four page directories
/// covering 4 GiB with 2 MiB pages.
pub const PML4: u64 = 0x9000;
pub const PDPT: u64 = 0xa000;
pub const PD: u64 = 0xb000;
pub const PD_COUNT: u64 = 4;
/// Kernel command line and its size limit.
pub const CMDLINE: u64 = 0x2_0000;
pub const CMDLINE_MAX: usize = 0x1_0000;
/// The MP floating pointer and configuration table live in the reserved BIOS area
/// [0xF0000, 1 MiB), which Linux scans and which has room for 250+ CPUs (the 1 KiB EBDA
/// does not).
pub const MPTABLE: u64 = 0xf_0000;

/// KVM needs three pages for the real-mode TSS and one for the identity map, in a range the
/// guest never uses; these are where QEMU puts them.
pub const KVM_IDENTITY_MAP: u64 = 0xfeff_c000;
pub const KVM_TSS: u64 = 0xfeff_d000;
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
pub const LAPIC_BASE: u64 = 0xfee0_0000;

/// With `-bios`, the last 128 KiB of the image are also visible here (the legacy BIOS area).
pub const BIOS_LEGACY_BASE: u64 = 0xe_0000;
pub const BIOS_LEGACY_SIZE: u64 = 128 << 10;
/// Biggest firmware image accepted (it must fit below the KVM pages at the top of 4 GiB).
pub const BIOS_MAX: u64 = 16 << 20;

/// (start, size) of each RAM range for a guest of `mem` bytes.
pub fn ram_ranges(mem: u64) -> Vec<(u64, u64)> {
    if mem <= LOW_RAM_MAX {
        vec![(0, mem)]
    } else {
        vec![(0, LOW_RAM_MAX), (HIGH_RAM_START, mem - LOW_RAM_MAX)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hole() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        assert_eq!(ram_ranges(3 << 30), vec![(0, 3 << 30)]);
        assert_eq!(ram_ranges(4 << 30), vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
    }
}
