//! `-bios FILE`: the image sits just below 4 GiB (so the reset vector at 0xFFFFFFF0 is its
//! last 16 bytes) and its last 128 KiB are also copied to 0xE0000, as QEMU places them.

use super::BootError;
use crate::layout::{BIOS_LEGACY_BASE, BIOS_LEGACY_SIZE, BIOS_MAX};
use std::path::Path;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// A loaded firmware image and the guest address of its first byte.
pub struct BiosImage {
    pub data: Vec<u8>,
    pub base: u64,
}

/// Reads and checks the image: a non-empty multiple of 64 KiB, at most `BIOS_MAX`.
pub fn read(path: &Path) -> Result<BiosImage, BootError> {
    let bad = || BootError::Bios(path.display().to_string());
    let data = std::fs::read(path).map_err(|_| bad())?;
    let size = data.len() as u64;
    if size == 0 || size % 0x10000 != 0 || size > BIOS_MAX {
        return Err(bad());
    }
    Ok(BiosImage {
        base: (1u64 << 32) - size,
        data,
    })
}

/// Copies the image's tail into low RAM where legacy code expects the BIOS segment.
pub fn copy_legacy<M: GuestMemoryBackend>(mem: &M, bios: &BiosImage) -> Result<(), BootError> {
    let n = (bios.data.len() as u64).min(BIOS_LEGACY_SIZE) as usize;
    let tail = &bios.data[bios.data.len() - n..];
    let at = BIOS_LEGACY_BASE + BIOS_LEGACY_SIZE - n as u64;
    mem.write_slice(tail, GuestAddress(at)).map_err(BootError::Memory)
}
