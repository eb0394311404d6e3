//! The NIC's own state, shared by the I/O thread (receive filter, control commands), the
//! transport (config reads) and the VMM, whose handle ([`NetControl`]) sets the link,
//! announces the guest after a migration and shows the NIC in `info network`.
//!
//! Locks: the attachment before the NIC state; the back end on its own (never held with
//! either). The I/O thread takes only the NIC state and the back end.

use super::features::Negotiated;
use super::filter::RxFilter;
use super::mac::MacAddr;
use super::{BACKEND_EVENT, MODEL};
use crate::bus::lock;
use crate::net::{NetBackend, VNET_HDR_LEN};
use crate::virtio::VirtioInterrupt;
use crate::virtio::worker::Kicker;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};
use virtio_bindings::virtio_net as vn;

/// The back end, shared by the I/O thread and the control handle.
pub type SharedBackend = Arc<Mutex<Box<dyn NetBackend>>>;

/// Everything the driver and the VMM change about the NIC while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicState {
    /// The address the NIC filters on and shows in its config (the driver may change it).
    pub mac: MacAddr,
    pub link_up: bool,
    /// `VIRTIO_NET_S_ANNOUNCE`: the guest is asked to announce itself, until it acks.
    pub announce: bool,
    pub filter: RxFilter,
    /// Why the driver's buffers made the device stop (NEEDS_RESET), until reset.
    pub broken: Option<String>,
    /// A received frame (header first) waiting for the driver's receive buffers.
    pub pending_rx: Option<Vec<u8>>,
}

impl NicState {
    /// The state after a virtio reset: the configured address, promiscuous, nothing
    /// pending; the link is the VMM's and stays as it was.
    pub fn after_reset(mac: MacAddr, link_up: bool) -> NicState {
        NicState {
            mac,
            link_up,
            announce: false,
            filter: RxFilter::default(),
            broken: None,
            pending_rx: None,
        }
    }

    /// The config space `status` field.
    pub fn status(&self) -> u16 {
        let mut s = 0;
        if self.link_up {
            s |= vn::VIRTIO_NET_S_LINK_UP as u16;
        }
        if self.announce {
            s |= vn::VIRTIO_NET_S_ANNOUNCE as u16;
        }
        s
    }
}

/// What the running device lends the control handle.
pub struct Attachment {
    pub interrupt: Arc<dyn VirtioInterrupt>,
    pub kicker: Kicker,
    pub negotiated: Negotiated,
}

/// The VMM's handle on one NIC (see [`super::VirtioNet::control`]).
pub struct NetControl {
    backend: SharedBackend,
    nic: Mutex<NicState>,
    attached: Mutex<Option<Attachment>>,
}

impl NetControl {
    pub(crate) fn new(backend: SharedBackend, mac: MacAddr) -> NetControl {
        NetControl {
            backend,
            nic: Mutex::new(NicState::after_reset(mac, true)),
            attached: Mutex::new(None),
        }
    }

    pub(super) fn nic(&self) -> MutexGuard<'_, NicState> {
        lock(&self.nic)
    }

    pub(super) fn attach(&self, a: Option<Attachment>) {
        *lock(&self.attached) = a;
    }

    /// The address the NIC answers to now (the configured one unless the driver set another).
    pub fn mac(&self) -> MacAddr {
        self.nic().mac
    }

    pub fn link(&self) -> bool {
        self.nic().link_up
    }

    /// QEMU's `set_link`: while down, frames the guest sends are dropped, nothing is
    /// received, and the config `status` reads down; the driver hears of each change
    /// through a config interrupt.
    pub fn set_link(&self, up: bool) {
        let attached = lock(&self.attached);
        {
            let mut nic = self.nic();
            if nic.link_up == up {
                return;
            }
            nic.link_up = up;
            // A frame held for the guest is lost with the link, as on a wire.
            nic.pending_rx = None;
        }
        if let Some(a) = attached.as_ref() {
            a.interrupt.signal_config();
            // The I/O thread drains (link down) or resumes (link up) the back end.
            a.kicker.kick(BACKEND_EVENT);
        }
    }

    /// QEMU's self-announcement (after a migration, or `announce_self`): one RARP frame
    /// from the NIC's address through the back end, if the link is up; and, if the guest
    /// accepted `GUEST_ANNOUNCE`, `VIRTIO_NET_S_ANNOUNCE` with a config interrupt, so it
    /// sends its own announcements (gratuitous ARP, IPv6 NA) until it acks.
    pub fn announce(&self) {
        let (mac, link_up) = {
            let nic = self.nic();
            (nic.mac, nic.link_up)
        };
        if link_up {
            self.send_rarp(mac);
        }
        let attached = lock(&self.attached);
        if let Some(a) = attached.as_ref().filter(|a| a.negotiated.guest_announce) {
            self.nic().announce = true;
            a.interrupt.signal_config();
        }
    }

    fn send_rarp(&self, mac: MacAddr) {
        let frame = rarp_frame(mac);
        let mut backend = lock(&self.backend);
        let header = [0u8; VNET_HDR_LEN];
        let with_header = [IoSlice::new(&header), IoSlice::new(&frame)];
        let pieces = if backend.vnet_hdr() { &with_header[..] } else { &with_header[1..] };
        // Like any frame, one the back end cannot take now is lost.
        let _ = backend.send(pieces);
    }

    /// Why the device stopped and needs a reset, if it did (for the VMM to report).
    pub fn error(&self) -> Option<String> {
        self.nic().broken.clone()
    }

    /// The NIC's part of `info network`: `model=virtio-net-pci,macaddr=52:54:00:12:34:56`.
    pub fn info(&self) -> String {
        format!("model={MODEL},macaddr={}", self.mac())
    }

    /// The back end's part of `info network` ([`NetBackend::info`]).
    pub fn backend_info(&self) -> String {
        lock(&self.backend).info()
    }
}

/// Bytes of the announcement: the Ethernet minimum, without the FCS.
pub const RARP_LEN: usize = 60;

/// The frame QEMU announces a NIC with: a broadcast RARP "reverse request" (opcode 3) whose
/// sender and target hardware addresses are the NIC's and protocol addresses are 0.
pub fn rarp_frame(mac: MacAddr) -> [u8; RARP_LEN] {
    let mut f = [0u8; RARP_LEN];
    f[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&0x8035u16.to_be_bytes()); // ETH_P_RARP
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&3u16.to_be_bytes()); // reverse request
    f[22..28].copy_from_slice(&mac.0); // sender hardware address; sender IP 0
    f[32..38].copy_from_slice(&mac.0); // target hardware address; target IP 0
    f
}
