//! Network back ends: where a NIC's frames go once they leave the guest, and where the
//! frames it receives come from (a tap device, user-mode networking through libslirp).
//!
//! A back end carries whole Ethernet frames. When [`NetBackend::vnet_hdr`] says so, every
//! frame in both directions starts with a `struct virtio_net_hdr_v1` of [`VNET_HDR_LEN`]
//! bytes (checksum and segmentation offload information, as a tap opened with
//! `IFF_VNET_HDR` exchanges it); otherwise frames are bare and the NIC adds or strips the
//! header itself. The NIC's I/O thread waits for [`NetBackend::rx_fd`] to become readable
//! and then calls [`NetBackend::recv`] until it returns `WouldBlock`.

pub mod null;
pub mod slirp;
pub mod tap;

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

/// Bytes of `struct virtio_net_hdr_v1` (with `num_buffers`), the header a virtio 1.x
/// driver puts in front of every frame.
pub const VNET_HDR_LEN: usize = 12;

/// Largest frame a back end hands over, header included: a 64 KiB TSO super-frame plus
/// the Ethernet and virtio headers.
pub const MAX_FRAME: usize = 65562;

/// Offloads the guest accepted, which a back end with a vnet header passes on to the host
/// (the tap's `TUNSETOFFLOAD`): the host may then hand the guest frames that rely on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    pub csum: bool,
    pub tso4: bool,
    pub tso6: bool,
    pub ecn: bool,
    pub ufo: bool,
}

/// One network back end (QEMU's netdev).
pub trait NetBackend: Send {
    /// Whether frames carry a [`VNET_HDR_LEN`]-byte virtio-net header in both directions.
    fn vnet_hdr(&self) -> bool;
    /// Sends one frame, given in pieces (header first when [`NetBackend::vnet_hdr`]).
    /// A back end that cannot take the frame now drops it, as a real link would.
    fn send(&mut self, frame: &[IoSlice<'_>]) -> io::Result<()>;
    /// Receives one frame into `buf` (header first when [`NetBackend::vnet_hdr`]);
    /// `WouldBlock` when nothing is waiting. A frame longer than `buf` is cut.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// A descriptor that is readable while [`NetBackend::recv`] has a frame (level
    /// triggered: it stays readable until `recv` returned `WouldBlock`).
    fn rx_fd(&self) -> RawFd;
    /// Passes the offloads the guest accepted on to the host. Only called when
    /// [`NetBackend::vnet_hdr`] is true.
    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()> {
        let _ = offloads;
        Ok(())
    }
    /// What `info network` shows after the back end's id, e.g.
    /// `ifname=tap0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown` or
    /// `net=10.0.2.0,restrict=off`.
    fn info(&self) -> String;
}
