//! The Intel MultiProcessor Specification 1.4 table, which tells a kernel without ACPI how
//! many CPUs there are and how ISA interrupts reach the IOAPIC.
//!
//! Layout at `MPTABLE`: a 16-byte floating pointer, then the configuration table header
//! and its entries: one processor per vCPU, the ISA bus, the IOAPIC, sixteen I/O interrupt
//! assignments (ISA IRQ n to IOAPIC pin n, as KVM's default routing wires them) and the two
//! local interrupt assignments (ExtINT on LINT0, NMI on LINT1).

use super::BootError;
use crate::layout::{HIMEM_START, IOAPIC_BASE, LAPIC_BASE, MPTABLE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const SPEC_REV: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const ISA_IRQS: u8 = 16;
const HEADER_LEN: usize = 44;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds the table for `cpus` vCPUs placed at `base`.
pub fn build(cpus: u8, base: u64) -> Result<Vec<u8>, BootError> {
    // APIC ids 0..cpus-1 are the CPUs; the IOAPIC takes the next id, which must stay < 255.
    if cpus == 0 || cpus >= 0xfe {
        return Err(BootError::TooManyCpus(cpus));
    }
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count = 0u16;
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend_from_slice(&[0, id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&0x0000_0600u32.to_le_bytes()); // family 6 signature
        entries.extend_from_slice(&0x0000_0201u32.to_le_bytes()); // FPU and APIC present
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_BASE as u32).to_le_bytes());
    count += 1;
    for irq in 0..ISA_IRQS {
        let kind = if irq == 0 { INT_TYPE_EXTINT } else { INT_TYPE_INT };
        // type 3: interrupt type, flags (conforming), source bus 0, source IRQ, IOAPIC, pin
        entries.extend_from_slice(&[3, kind, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // type 4: local interrupts to every local APIC (0xff) on LINT0 and LINT1.
    entries.extend_from_slice(&[4, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = base + 16;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&((HEADER_LEN + entries.len()) as u16).to_le_bytes());
    header.push(SPEC_REV);
    header.push(0); // checksum, filled below
    header.extend_from_slice(b"GODWIT  ");
    header.extend_from_slice(b"GODWIT-PC   ");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    header.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&(LAPIC_BASE as u32).to_le_bytes());
    header.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    let mut table = header;
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(table_addr as u32).to_le_bytes());
    fp.extend_from_slice(&[1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);
    fp.extend_from_slice(&table);
    Ok(fp)
}

/// Writes the table into the reserved EBDA.
pub fn write<M: GuestMemoryBackend>(mem: &M, cpus: u8) -> Result<(), BootError> {
    let t = build(cpus, MPTABLE)?;
    if MPTABLE + t.len() as u64 > HIMEM_START {
        return Err(BootError::TooManyCpus(cpus));
    }
    mem.write_slice(&t, GuestAddress(MPTABLE)).map_err(BootError::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_counts() {
        let t = build(2, MPTABLE).unwrap();
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let table = &t[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 2 + 1 + 1 + 16 + 2);
        assert_eq!(table[HEADER_LEN + 3], CPU_ENABLED | CPU_BOOTSTRAP);
        assert_eq!(table[HEADER_LEN + 20 + 1], 1, "second CPU has APIC id 1");
        // The largest table still fits in the BIOS area.
        assert!(MPTABLE + build(253, MPTABLE).unwrap().len() as u64 <= HIMEM_START);
        assert!(build(0, MPTABLE).is_err() && build(254, MPTABLE).is_err());
    }
}
