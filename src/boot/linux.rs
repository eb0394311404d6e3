//! Loading a bzImage, its initrd and command line, and filling the zero page.

use super::{BootError, Entry, e820};
use crate::layout::{CMDLINE, CMDLINE_MAX, HIMEM_START, ZERO_PAGE, ram_ranges};
use linux_loader::loader::KernelLoader;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::bzimage::BzImage;
use std::fs::File;
use std::path::Path;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

const HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const XLF_KERNEL_64: u16 = 1;
/// The 64-bit entry sits this far into the protected-mode kernel (boot protocol 2.12+).
const STARTUP_64_OFFSET: u64 = 0x200;
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
const E820_MAX: usize = 128;

pub struct LinuxBoot<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
    pub mem_size: u64,
}

/// Loads everything and returns the boot vCPU's entry.
pub fn load<M: GuestMemoryBackend>(mem: &M, b: &LinuxBoot<'_>) -> Result<Entry, BootError> {
    let mut f = File::open(b.kernel).map_err(|err| BootError::OpenKernel {
        path: b.kernel.display().to_string(),
        err,
    })?;
    let loaded = BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START))).map_err(|e| match e {
        linux_loader::loader::Error::Bzimage(linux_loader::loader::bzimage::Error::InvalidBzImage)
        | linux_loader::loader::Error::Bzimage(linux_loader::loader::bzimage::Error::ReadBzImageHeader)
        | linux_loader::loader::Error::Bzimage(linux_loader::loader::bzimage::Error::Underflow) => BootError::BadKernel,
        other => BootError::KernelLoad(other),
    })?;
    let mut hdr = loaded.setup_header.ok_or(BootError::BadKernel)?;
    if hdr.header != HDR_MAGIC {
        return Err(BootError::BadKernel);
    }
    if hdr.version < 0x020c || hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BootError::No64BitEntry(b.kernel.display().to_string()));
    }

    // Command line: bounded by what the kernel says it accepts (and our window).
    let max = if hdr.cmdline_size == 0 { 255 } else { hdr.cmdline_size as usize }.min(CMDLINE_MAX - 1);
    if b.cmdline.len() > max {
        return Err(BootError::CmdlineTooLong { len: b.cmdline.len(), max });
    }
    let mut bytes = b.cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE))?;
    hdr.cmd_line_ptr = CMDLINE as u32;
    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;

    // The kernel decompresses into [load, load + init_size): the initrd must stay clear of it.
    let kernel_end = loaded.kernel_load.0 + u64::from(hdr.init_size).max(loaded.kernel_end - loaded.kernel_load.0);
    if let Some(path) = b.initrd {
        let (addr, size) = load_initrd(mem, path, u64::from(hdr.initrd_addr_max), kernel_end, b.mem_size)?;
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }

    let mut params = boot_params { hdr, ..Default::default() };
    let map = e820::map(b.mem_size);
    if map.len() > E820_MAX {
        return Err(BootError::E820TooLarge);
    }
    for (i, (addr, size, kind)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *kind,
        };
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE))?;
    Ok(Entry::Linux64 {
        rip: loaded.kernel_load.0 + STARTUP_64_OFFSET,
        zero_page: ZERO_PAGE,
    })
}

/// Puts the initrd as high as allowed below 4 GiB, page aligned; returns (address, size).
fn load_initrd<M: GuestMemoryBackend>(
    mem: &M,
    path: &Path,
    addr_max: u64,
    kernel_end: u64,
    mem_size: u64,
) -> Result<(u64, u64), BootError> {
    let shown = || path.display().to_string();
    let data = std::fs::read(path).map_err(|err| BootError::InitrdRead { path: shown(), err })?;
    let size = data.len() as u64;
    // initrd_addr_max is the highest byte address the initrd may occupy.
    let addr_max = if addr_max == 0 { 0x37ff_ffff } else { addr_max };
    let low_end = ram_ranges(mem_size)[0].1;
    let top = (addr_max + 1).min(low_end);
    let start = top.checked_sub(size).map(|s| s & !0xfff).filter(|s| *s >= kernel_end);
    let start = start.ok_or_else(|| BootError::InitrdTooBig { path: shown(), size })?;
    mem.write_slice(&data, GuestAddress(start))
        .map_err(|err| BootError::InitrdWrite { path: shown(), err })?;
    Ok((start, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn an_initrd_that_cannot_be_read_or_placed_says_which() {
        let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let missing = std::env::temp_dir().join(format!("godwit-no-initrd-{}", std::process::id()));
        let e = load_initrd(&mem, &missing, 0, 1 << 20, 16 << 20).unwrap_err();
        assert!(matches!(&e, BootError::InitrdRead { err, .. } if err.kind() == std::io::ErrorKind::NotFound));
        assert_eq!(
            e.to_string(),
            format!("could not load initial ram disk '{}': No such file or directory", missing.display())
        );
        let big = std::env::temp_dir().join(format!("godwit-big-initrd-{}", std::process::id()));
        std::fs::write(&big, vec![0u8; 2 << 20]).unwrap();
        let e = load_initrd(&mem, &big, 0, 15 << 20, 16 << 20).unwrap_err();
        assert!(matches!(e, BootError::InitrdTooBig { size: 0x20_0000, .. }), "{e:?}");
        assert!(
            e.to_string()
                .ends_with(": 2097152 bytes do not fit in guest memory above the kernel")
        );
        let _ = std::fs::remove_file(&big);
    }
}
