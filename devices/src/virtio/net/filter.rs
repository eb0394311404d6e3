//! Receive filtering as the driver configures it through the control queue (virtio 1.2
//! §5.1.6.5.1 and §5.1.6.5.2): the rx mode switches and the MAC filter table.
//!
//! A frame passes when the device is promiscuous; otherwise by its destination address:
//! broadcast unless `nobcast`; other multicast never with `nomulti`, always with `allmulti`
//! (or a table that overflowed), else when listed; unicast never with `nouni`, always with
//! `alluni` (or an overflowed table), else when it is the NIC's own address or listed.

use super::mac::{MAC_LEN, MacAddr};

/// Entries the MAC filter table holds, unicast and multicast together (QEMU's number).
pub const MAC_TABLE_ENTRIES: usize = 64;

/// The `VIRTIO_NET_CTRL_RX` switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMode {
    pub promisc: bool,
    pub allmulti: bool,
    pub alluni: bool,
    pub nomulti: bool,
    pub nouni: bool,
    pub nobcast: bool,
}

impl Default for RxMode {
    /// After reset the device is promiscuous, as QEMU's is: a driver that never configures
    /// filtering (no `CTRL_RX`) must still see every frame.
    fn default() -> Self {
        RxMode {
            promisc: true,
            allmulti: false,
            alluni: false,
            nomulti: false,
            nouni: false,
            nobcast: false,
        }
    }
}

/// The addresses of `VIRTIO_NET_CTRL_MAC_TABLE_SET`. A list longer than the table has room
/// for is not kept: its kind of traffic is then let through whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MacTable {
    pub unicast: Vec<MacAddr>,
    pub multicast: Vec<MacAddr>,
    pub unicast_overflow: bool,
    pub multicast_overflow: bool,
}

impl MacTable {
    /// Builds the table from the driver's two lists (multicast gets the room unicast left).
    pub fn from_lists(unicast: Vec<MacAddr>, multicast: Vec<MacAddr>) -> MacTable {
        let mut t = MacTable::default();
        if unicast.len() <= MAC_TABLE_ENTRIES {
            t.unicast = unicast;
        } else {
            t.unicast_overflow = true;
        }
        if multicast.len() <= MAC_TABLE_ENTRIES - t.unicast.len() {
            t.multicast = multicast;
        } else {
            t.multicast_overflow = true;
        }
        t
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxFilter {
    pub mode: RxMode,
    pub table: MacTable,
}

impl RxFilter {
    /// Whether a frame (starting at its Ethernet header) for a NIC with address `own` is
    /// delivered to the guest.
    pub fn accepts(&self, own: MacAddr, frame: &[u8]) -> bool {
        if self.mode.promisc {
            return true;
        }
        let Some(dest) = MacAddr::destination(frame) else {
            return false;
        };
        let (m, t) = (&self.mode, &self.table);
        if dest.is_broadcast() {
            !m.nobcast
        } else if dest.is_multicast() {
            !m.nomulti && (m.allmulti || t.multicast_overflow || t.multicast.contains(&dest))
        } else {
            !m.nouni && (m.alluni || t.unicast_overflow || dest == own || t.unicast.contains(&dest))
        }
    }
}

/// Parses `count` addresses from `bytes` (6 bytes each).
pub fn parse_macs(bytes: &[u8]) -> Vec<MacAddr> {
    bytes
        .chunks_exact(MAC_LEN)
        .map(|c| MacAddr(c.try_into().expect("6 bytes")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    const OTHER: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    const MCAST: MacAddr = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);

    fn frame(dest: MacAddr) -> Vec<u8> {
        let mut f = dest.0.to_vec();
        f.extend_from_slice(&[0; 54]);
        f
    }

    #[test]
    fn modes_and_table() {
        let mut f = RxFilter::default();
        assert!(f.accepts(OWN, &frame(OTHER)), "promiscuous after reset");
        assert!(f.accepts(OWN, &[1, 2]), "even runts");
        f.mode.promisc = false;
        assert!(f.accepts(OWN, &frame(OWN)));
        assert!(!f.accepts(OWN, &frame(OTHER)));
        assert!(f.accepts(OWN, &frame(MacAddr::BROADCAST)));
        assert!(!f.accepts(OWN, &frame(MCAST)));
        assert!(!f.accepts(OWN, &[1, 2]));
        f.mode.allmulti = true;
        assert!(f.accepts(OWN, &frame(MCAST)));
        f.mode.nomulti = true;
        assert!(!f.accepts(OWN, &frame(MCAST)), "nomulti wins");
        assert!(f.accepts(OWN, &frame(MacAddr::BROADCAST)), "broadcast is not multicast here");
        f.mode.nobcast = true;
        assert!(!f.accepts(OWN, &frame(MacAddr::BROADCAST)));
        f.mode = RxMode {
            promisc: false,
            ..RxMode::default()
        };
        f.table = MacTable::from_lists(vec![OTHER], vec![MCAST]);
        assert!(f.accepts(OWN, &frame(OTHER)) && f.accepts(OWN, &frame(MCAST)));
        f.mode.nouni = true;
        assert!(!f.accepts(OWN, &frame(OTHER)) && !f.accepts(OWN, &frame(OWN)));
        f.mode.nouni = false;
        f.table = MacTable::from_lists(vec![OTHER; 65], vec![MCAST; 2]);
        assert!(f.table.unicast_overflow && !f.table.multicast_overflow);
        assert!(f.accepts(OWN, &frame(MacAddr([0x52, 0, 0, 0, 0, 9]))), "overflowed: all unicast");
        f.table = MacTable::from_lists(vec![OTHER; 60], vec![MCAST; 5]);
        assert!(!f.table.unicast_overflow && f.table.multicast_overflow);
        f.mode.alluni = true;
        assert!(f.accepts(OWN, &frame(MacAddr([0x52, 0, 0, 0, 0, 9]))));
    }
}
