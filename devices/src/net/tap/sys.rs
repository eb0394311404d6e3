//! The tun/tap driver's ioctls (linux/if_tun.h) on a descriptor of `/dev/net/tun`.

use std::io;
use std::os::fd::AsFd;
use std::os::raw::{c_int, c_uint};
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref, ioctl_with_val};
use vmm_sys_util::{ioctl_ior_nr, ioctl_iow_nr};

#[cfg(test)]
pub const IFF_TUN: i16 = 0x0001;
pub const IFF_TAP: i16 = 0x0002;
pub const IFF_NO_PI: i16 = 0x1000;
pub const IFF_VNET_HDR: i16 = 0x4000;
/// Bytes of an interface name, the terminating NUL included.
pub const IFNAMSIZ: usize = 16;

pub const TUN_F_CSUM: c_uint = 0x01;
pub const TUN_F_TSO4: c_uint = 0x02;
pub const TUN_F_TSO6: c_uint = 0x04;
pub const TUN_F_TSO_ECN: c_uint = 0x08;
pub const TUN_F_UFO: c_uint = 0x10;

const TUNTAP: c_uint = 0x54;
ioctl_iow_nr!(TUNSETIFF, TUNTAP, 202, c_int);
ioctl_ior_nr!(TUNGETFEATURES, TUNTAP, 207, c_uint);
ioctl_iow_nr!(TUNSETOFFLOAD, TUNTAP, 208, c_uint);
ioctl_ior_nr!(TUNGETIFF, TUNTAP, 210, c_uint);
ioctl_iow_nr!(TUNSETVNETHDRSZ, TUNTAP, 216, c_int);

/// `struct ifreq` with the name and flags members the tun ioctls use.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct IfReq {
    pub name: [u8; IFNAMSIZ],
    pub flags: i16,
    _pad: [u8; 22],
}

impl IfReq {
    /// A request for interface `name` (cut to 15 bytes, as QEMU cuts it) with `flags`.
    pub fn new(name: &str, flags: i16) -> IfReq {
        let mut r = IfReq { flags, ..IfReq::default() };
        let n = name.len().min(IFNAMSIZ - 1);
        r.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        r
    }

    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

fn check(ret: c_int) -> io::Result<()> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The IFF_* flags this kernel's tun driver supports.
pub fn features(fd: &impl AsFd) -> io::Result<c_uint> {
    let mut f: c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int into `f`, which outlives the call.
    check(unsafe { ioctl_with_mut_ref(&fd.as_fd(), TUNGETFEATURES(), &mut f) })?;
    Ok(f)
}

/// Attaches the descriptor to interface `req.name` (created if missing; a `%d` in the name
/// is replaced by a free number), filling in the name the kernel chose.
pub fn set_iff(fd: &impl AsFd, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `IfReq` has its layout (40
    // bytes) and lives through the call.
    check(unsafe { ioctl_with_mut_ref(&fd.as_fd(), TUNSETIFF(), req) })
}

/// The interface and flags the descriptor is attached to.
pub fn get_iff(fd: &impl AsFd) -> io::Result<IfReq> {
    let mut req = IfReq::default();
    // SAFETY: TUNGETIFF fills one `struct ifreq`, which `req` is laid out as and outlives.
    check(unsafe { ioctl_with_mut_ref(&fd.as_fd(), TUNGETIFF(), &mut req) })?;
    Ok(req)
}

pub fn set_vnet_hdr_size(fd: &impl AsFd, size: c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int from `size`, which outlives the call.
    check(unsafe { ioctl_with_ref(&fd.as_fd(), TUNSETVNETHDRSZ(), &size) })
}

pub fn set_offload(fd: &impl AsFd, flags: c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value and touches no memory of ours.
    check(unsafe { ioctl_with_val(&fd.as_fd(), TUNSETOFFLOAD(), flags.into()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_and_names() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40, "struct ifreq");
        assert_eq!(TUNSETIFF(), 0x4004_54ca);
        assert_eq!(TUNGETIFF(), 0x8004_54d2);
        assert_eq!(TUNSETVNETHDRSZ(), 0x4004_54d8);
        assert_eq!(IfReq::new("averyveryverylongname", 0).name(), "averyveryverylo");
        assert_eq!(IfReq::new("tap%d", 0).name(), "tap%d");
    }
}
