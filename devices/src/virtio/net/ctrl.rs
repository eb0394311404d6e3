//! The control queue (virtio 1.2 §5.1.6.5): rx mode, MAC filter, MAC address and announce
//! acknowledgement commands.
//!
//! A command is `{u8 class, u8 command}`, its data, then one device-writable `ack` byte.
//! A chain without room for the header or the ack cannot be answered and breaks the
//! device (NEEDS_RESET); anything wrong inside a well-framed command (unknown class or
//! command, a feature the driver did not accept, data of the wrong size) is answered
//! `VIRTIO_NET_ERR` and changes nothing.

use super::control::NicState;
use super::features::Negotiated;
use super::filter::{MacTable, parse_macs};
use super::mac::{MAC_LEN, MacAddr};
use crate::virtio::GuestMem;
use crate::virtio::chain::{self, ChainError};
use std::io::{Read, Write};
use thiserror::Error;
use virtio_bindings::virtio_net as vn;
use virtio_queue::DescriptorChain;

pub const OK: u8 = vn::VIRTIO_NET_OK as u8;
pub const ERR: u8 = vn::VIRTIO_NET_ERR as u8;
/// Command data beyond this is refused unread (a full MAC table is under 400 bytes).
pub const MAX_DATA: usize = 64 << 10;

const CLASS_RX: u8 = vn::VIRTIO_NET_CTRL_RX as u8;
const CLASS_MAC: u8 = vn::VIRTIO_NET_CTRL_MAC as u8;
const CLASS_ANNOUNCE: u8 = vn::VIRTIO_NET_CTRL_ANNOUNCE as u8;
const MAC_TABLE_SET: u8 = vn::VIRTIO_NET_CTRL_MAC_TABLE_SET as u8;
const MAC_ADDR_SET: u8 = vn::VIRTIO_NET_CTRL_MAC_ADDR_SET as u8;
const ANNOUNCE_ACK: u8 = vn::VIRTIO_NET_CTRL_ANNOUNCE_ACK as u8;

#[derive(Debug, Error)]
pub enum CtrlError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("control chain {0} has no room for the 2-byte command header")]
    NoHeader(u16),
    #[error("control chain {0} has no room for the ack byte")]
    NoAck(u16),
    #[error("control chain {0} is not guest memory")]
    NotMemory(u16),
}

/// Runs the command in `chain` on `nic`; returns the used length (the ack byte).
pub fn process(
    mem: &GuestMem,
    chain: DescriptorChain<&GuestMem>,
    queue_size: u16,
    nic: &mut NicState,
    neg: Negotiated,
) -> Result<u32, CtrlError> {
    chain::check(&chain, queue_size)?;
    let head = chain.head_index();
    let mut reader = chain.clone().reader(mem).map_err(|_| CtrlError::NotMemory(head))?;
    let mut writer = chain.writer(mem).map_err(|_| CtrlError::NotMemory(head))?;
    if reader.available_bytes() < 2 {
        return Err(CtrlError::NoHeader(head));
    }
    if writer.available_bytes() < 1 {
        return Err(CtrlError::NoAck(head));
    }
    let mut header = [0u8; 2];
    reader.read_exact(&mut header).map_err(|_| CtrlError::NotMemory(head))?;
    let len = reader.available_bytes();
    let ack = if len > MAX_DATA {
        ERR
    } else {
        let mut data = vec![0u8; len];
        reader.read_exact(&mut data).map_err(|_| CtrlError::NotMemory(head))?;
        execute(header[0], header[1], &data, nic, neg)
    };
    writer.write_all(&[ack]).map_err(|_| CtrlError::NotMemory(head))?;
    Ok(1)
}

/// Carries out one command; returns the ack.
pub fn execute(class: u8, command: u8, data: &[u8], nic: &mut NicState, neg: Negotiated) -> u8 {
    let done = match class {
        CLASS_RX => rx_mode(command, data, nic, neg),
        CLASS_MAC if command == MAC_TABLE_SET && neg.ctrl_rx => mac_table(data, nic),
        CLASS_MAC if command == MAC_ADDR_SET && neg.ctrl_mac_addr => mac_addr(data, nic),
        CLASS_ANNOUNCE if command == ANNOUNCE_ACK && neg.guest_announce && nic.announce => {
            nic.announce = false;
            true
        }
        _ => false,
    };
    if done { OK } else { ERR }
}

/// `VIRTIO_NET_CTRL_RX_*`: one byte, on (non-zero) or off. Promisc and allmulti come with
/// `CTRL_RX`, the others with `CTRL_RX_EXTRA`.
fn rx_mode(command: u8, data: &[u8], nic: &mut NicState, neg: Negotiated) -> bool {
    let &[value] = data else { return false };
    let on = value != 0;
    let m = &mut nic.filter.mode;
    let switch = match u32::from(command) {
        vn::VIRTIO_NET_CTRL_RX_PROMISC if neg.ctrl_rx => &mut m.promisc,
        vn::VIRTIO_NET_CTRL_RX_ALLMULTI if neg.ctrl_rx => &mut m.allmulti,
        vn::VIRTIO_NET_CTRL_RX_ALLUNI if neg.ctrl_rx_extra => &mut m.alluni,
        vn::VIRTIO_NET_CTRL_RX_NOMULTI if neg.ctrl_rx_extra => &mut m.nomulti,
        vn::VIRTIO_NET_CTRL_RX_NOUNI if neg.ctrl_rx_extra => &mut m.nouni,
        vn::VIRTIO_NET_CTRL_RX_NOBCAST if neg.ctrl_rx_extra => &mut m.nobcast,
        _ => return false,
    };
    *switch = on;
    true
}

/// `MAC_TABLE_SET`: `{le32 entries; u8 macs[entries][6]}` for unicast, then the same for
/// multicast, exactly filling the data.
fn mac_table(data: &[u8], nic: &mut NicState) -> bool {
    let Some((unicast, rest)) = mac_list(data) else { return false };
    let Some((multicast, rest)) = mac_list(rest) else { return false };
    if !rest.is_empty() {
        return false;
    }
    nic.filter.table = MacTable::from_lists(unicast, multicast);
    true
}

/// One counted list of addresses at the start of `data`, and what follows it.
fn mac_list(data: &[u8]) -> Option<(Vec<MacAddr>, &[u8])> {
    let count = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    let bytes = usize::try_from(count).ok()?.checked_mul(MAC_LEN)?;
    let list = data.get(4..)?.get(..bytes)?;
    Some((parse_macs(list), &data[4 + bytes..]))
}

/// `MAC_ADDR_SET`: the 6-byte address the NIC answers to from now on.
fn mac_addr(data: &[u8], nic: &mut NicState) -> bool {
    let Ok(mac) = <[u8; MAC_LEN]>::try_from(data) else { return false };
    nic.mac = MacAddr(mac);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Negotiated {
        Negotiated {
            mrg_rxbuf: true,
            guest_gso: false,
            ctrl_rx: true,
            ctrl_rx_extra: true,
            ctrl_mac_addr: true,
            guest_announce: true,
        }
    }

    #[test]
    fn commands_and_errors() {
        let mut nic = NicState::after_reset(MacAddr::QEMU_DEFAULT, true);
        assert_eq!(execute(CLASS_RX, 0, &[0], &mut nic, all()), OK);
        assert!(!nic.filter.mode.promisc);
        assert_eq!(execute(CLASS_RX, 0, &[1, 0], &mut nic, all()), ERR, "two data bytes");
        assert_eq!(execute(CLASS_RX, 0, &[], &mut nic, all()), ERR, "none");
        assert_eq!(execute(CLASS_RX, 6, &[1], &mut nic, all()), ERR, "no such switch");
        let basic = Negotiated {
            ctrl_rx_extra: false,
            ..all()
        };
        assert_eq!(execute(CLASS_RX, 5, &[1], &mut nic, basic), ERR, "nobcast needs CTRL_RX_EXTRA");
        assert_eq!(execute(CLASS_RX, 5, &[7], &mut nic, all()), OK);
        assert!(nic.filter.mode.nobcast);

        let mut table = 1u32.to_le_bytes().to_vec();
        table.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        table.extend_from_slice(&2u32.to_le_bytes());
        table.extend_from_slice(&[1, 0, 0x5e, 0, 0, 1, 0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(execute(CLASS_MAC, 0, &table, &mut nic, all()), OK);
        assert_eq!(nic.filter.table.unicast, vec![MacAddr([2, 0, 0, 0, 0, 1])]);
        assert_eq!(nic.filter.table.multicast.len(), 2);
        let before = nic.clone();
        for bad in [
            &table[..table.len() - 1],
            &[table.clone(), vec![0]].concat()[..],
            &[0xff; 8][..],
            &[][..],
        ] {
            assert_eq!(execute(CLASS_MAC, 0, bad, &mut nic, all()), ERR);
        }
        assert_eq!(nic, before, "refused tables change nothing");

        assert_eq!(execute(CLASS_MAC, 1, &[2, 2, 2, 2, 2, 2], &mut nic, all()), OK);
        assert_eq!(nic.mac, MacAddr([2; 6]));
        assert_eq!(execute(CLASS_MAC, 1, &[2; 5], &mut nic, all()), ERR);
        assert_eq!(
            execute(
                CLASS_MAC,
                1,
                &[3; 6],
                &mut nic,
                Negotiated {
                    ctrl_mac_addr: false,
                    ..all()
                }
            ),
            ERR
        );

        assert_eq!(execute(CLASS_ANNOUNCE, 0, &[], &mut nic, all()), ERR, "nothing to ack");
        nic.announce = true;
        assert_eq!(execute(CLASS_ANNOUNCE, 0, &[], &mut nic, all()), OK);
        assert!(!nic.announce);
        assert_eq!(execute(2, 0, &[0, 0], &mut nic, all()), ERR, "VLAN filtering is not offered");
        assert_eq!(execute(0xff, 0xff, &[], &mut nic, all()), ERR);
    }
}
