//! The virtio-net feature bits godwit offers, and what the accepted ones mean to the device.

use crate::net::Offloads;
use crate::virtio::{VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC};
use virtio_bindings::virtio_net as vn;

const fn bit(b: u32) -> u64 {
    1 << b
}

pub const CSUM: u64 = bit(vn::VIRTIO_NET_F_CSUM);
pub const GUEST_CSUM: u64 = bit(vn::VIRTIO_NET_F_GUEST_CSUM);
pub const MAC: u64 = bit(vn::VIRTIO_NET_F_MAC);
pub const GUEST_TSO4: u64 = bit(vn::VIRTIO_NET_F_GUEST_TSO4);
pub const GUEST_TSO6: u64 = bit(vn::VIRTIO_NET_F_GUEST_TSO6);
pub const GUEST_ECN: u64 = bit(vn::VIRTIO_NET_F_GUEST_ECN);
pub const GUEST_UFO: u64 = bit(vn::VIRTIO_NET_F_GUEST_UFO);
pub const HOST_TSO4: u64 = bit(vn::VIRTIO_NET_F_HOST_TSO4);
pub const HOST_TSO6: u64 = bit(vn::VIRTIO_NET_F_HOST_TSO6);
pub const HOST_ECN: u64 = bit(vn::VIRTIO_NET_F_HOST_ECN);
pub const HOST_UFO: u64 = bit(vn::VIRTIO_NET_F_HOST_UFO);
pub const MRG_RXBUF: u64 = bit(vn::VIRTIO_NET_F_MRG_RXBUF);
pub const STATUS: u64 = bit(vn::VIRTIO_NET_F_STATUS);
pub const CTRL_VQ: u64 = bit(vn::VIRTIO_NET_F_CTRL_VQ);
pub const CTRL_RX: u64 = bit(vn::VIRTIO_NET_F_CTRL_RX);
pub const CTRL_RX_EXTRA: u64 = bit(vn::VIRTIO_NET_F_CTRL_RX_EXTRA);
pub const GUEST_ANNOUNCE: u64 = bit(vn::VIRTIO_NET_F_GUEST_ANNOUNCE);
pub const CTRL_MAC_ADDR: u64 = bit(vn::VIRTIO_NET_F_CTRL_MAC_ADDR);

/// Checksum and segmentation offloads: they change what a frame's virtio-net header may
/// ask of the other side, so only a back end that carries the header can take them.
pub const OFFLOADS: u64 = CSUM | GUEST_CSUM | HOST_TSO4 | HOST_TSO6 | HOST_ECN | HOST_UFO | GUEST_TSO4 | GUEST_TSO6 | GUEST_ECN | GUEST_UFO;

/// What the device offers (the transport adds VERSION_1).
pub fn offered(vnet_hdr: bool) -> u64 {
    let always = VIRTIO_F_RING_INDIRECT_DESC
        | VIRTIO_F_RING_EVENT_IDX
        | MAC
        | STATUS
        | MRG_RXBUF
        | CTRL_VQ
        | CTRL_RX
        | CTRL_RX_EXTRA
        | CTRL_MAC_ADDR
        | GUEST_ANNOUNCE;
    if vnet_hdr { always | OFFLOADS } else { always }
}

/// The accepted features the I/O thread acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub mrg_rxbuf: bool,
    /// The guest takes segmentation offloaded frames (it must then post 64 KiB buffers when
    /// it does not merge them).
    pub guest_gso: bool,
    pub ctrl_rx: bool,
    pub ctrl_rx_extra: bool,
    pub ctrl_mac_addr: bool,
    pub guest_announce: bool,
}

impl Negotiated {
    pub fn new(acked: u64) -> Negotiated {
        let has = |f: u64| acked & f != 0;
        Negotiated {
            mrg_rxbuf: has(MRG_RXBUF),
            guest_gso: has(GUEST_TSO4 | GUEST_TSO6 | GUEST_UFO),
            ctrl_rx: has(CTRL_VQ) && has(CTRL_RX),
            ctrl_rx_extra: has(CTRL_VQ) && has(CTRL_RX_EXTRA),
            ctrl_mac_addr: has(CTRL_VQ) && has(CTRL_MAC_ADDR),
            guest_announce: has(CTRL_VQ) && has(GUEST_ANNOUNCE),
        }
    }
}

/// The offloads a back end may use towards a guest that accepted `acked`.
pub fn guest_offloads(acked: u64) -> Offloads {
    let has = |f: u64| acked & f != 0;
    Offloads {
        csum: has(GUEST_CSUM),
        tso4: has(GUEST_TSO4),
        tso6: has(GUEST_TSO6),
        ecn: has(GUEST_ECN),
        ufo: has(GUEST_UFO),
    }
}
