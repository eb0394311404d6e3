//! Ethernet MAC addresses as QEMU's `macaddr=` writes them.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Bytes in an Ethernet address.
pub const MAC_LEN: usize = 6;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; MAC_LEN]);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid MAC address '{0}'")]
pub struct BadMac(pub String);

impl MacAddr {
    /// QEMU's first default address; the n-th NIC without `mac=` gets the last byte + n.
    pub const QEMU_DEFAULT: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    pub const BROADCAST: MacAddr = MacAddr([0xff; MAC_LEN]);

    /// Group (multicast or broadcast) addresses have the lowest bit of the first byte set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The destination address of an Ethernet frame, if the frame is long enough to have one.
    pub fn destination(frame: &[u8]) -> Option<MacAddr> {
        frame.get(..MAC_LEN).map(|d| MacAddr(d.try_into().expect("6 bytes")))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl FromStr for MacAddr {
    type Err = BadMac;

    /// Six hex bytes separated by ':' or '-' (one or two digits each), as QEMU accepts them.
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(s.to_string());
        let mut mac = [0u8; MAC_LEN];
        let mut parts = s.split([':', '-']);
        for byte in &mut mac {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_show() {
        let m: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(m, MacAddr::QEMU_DEFAULT);
        assert_eq!(m.to_string(), "52:54:00:12:34:56");
        assert_eq!("1-2-3-a-b-FF".parse::<MacAddr>().unwrap().to_string(), "01:02:03:0a:0b:ff");
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00:12:34:5g",
            "525:4:00:12:34:56",
            "52::00:12:34:56",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(!m.is_multicast());
        assert_eq!(MacAddr::destination(&[1, 2, 3]), None);
    }
}
