//! What the driver and the VMM set: rx filtering through the control queue, link state,
//! self-announcement.

use super::*;
use crate::virtio::net::ctrl::{ERR, OK};
use crate::virtio::net::features as f;

const RX: u8 = 0;
const MAC: u8 = 1;
const ANNOUNCE: u8 = 3;

fn table(uni: &[MacAddr], multi: &[MacAddr]) -> Vec<u8> {
    let mut t = (uni.len() as u32).to_le_bytes().to_vec();
    uni.iter().for_each(|m| t.extend_from_slice(&m.0));
    t.extend_from_slice(&(multi.len() as u32).to_le_bytes());
    multi.iter().for_each(|m| t.extend_from_slice(&m.0));
    t
}

/// Injects a frame to each destination, one at a time; returns those the guest got. A
/// buffer a filtered frame left unused is kept in `spare` for the next one.
fn seen(n: &mut Nic, spare: &mut Option<u64>, dests: &[MacAddr]) -> Vec<MacAddr> {
    let mut got = Vec::new();
    for d in dests {
        let b = match spare.take() {
            Some(b) => b,
            None => n.post_rx(&[1526])[0],
        };
        n.wire.inject(&frame(*d, 60, 0));
        if n.rx.idle_for(&n.g.mem, 50) {
            *spare = Some(b);
        } else {
            n.received(1);
            got.push(MacAddr(n.get(b + 12, 6).try_into().unwrap()));
        }
    }
    got
}

#[test]
fn filtering_by_control_commands() {
    let mcast = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    let mut n = Nic::start(false, ALL & !f::MRG_RXBUF);
    let mut spare = None;
    let mut seen = |n: &mut Nic, dests: &[MacAddr]| seen(n, &mut spare, dests);
    let everyone = [OWN, OTHER, MacAddr::BROADCAST, mcast];
    assert_eq!(seen(&mut n, &everyone), everyone, "promiscuous after reset");
    assert_eq!(n.command(RX, 0, &[0]), OK, "promisc off");
    assert_eq!(seen(&mut n, &everyone), [OWN, MacAddr::BROADCAST]);
    assert_eq!(n.command(RX, 1, &[1]), OK, "allmulti");
    assert_eq!(seen(&mut n, &everyone), [OWN, MacAddr::BROADCAST, mcast]);
    assert_eq!(n.command(RX, 5, &[1]), OK, "nobcast");
    assert_eq!(seen(&mut n, &everyone), [OWN, mcast]);
    assert_eq!(n.command(RX, 3, &[1]), OK, "nomulti");
    assert_eq!(seen(&mut n, &everyone), [OWN]);
    assert_eq!(n.command(RX, 2, &[1]), OK, "alluni");
    assert_eq!(seen(&mut n, &everyone), [OWN, OTHER]);
    for (cmd, on) in [(1, 0), (2, 0), (3, 0), (5, 0)] {
        assert_eq!(n.command(RX, cmd, &[on]), OK);
    }
    // The MAC table: one extra unicast address and one multicast group.
    assert_eq!(n.command(MAC, 0, &table(&[OTHER], &[mcast])), OK);
    assert_eq!(seen(&mut n, &[OTHER, mcast, MacAddr([1, 0, 0x5e, 0, 0, 2])]), [OTHER, mcast]);
    assert_eq!(n.command(RX, 4, &[1]), OK, "nouni");
    assert_eq!(seen(&mut n, &[OTHER, MacAddr::BROADCAST]), [MacAddr::BROADCAST]);
    assert_eq!(n.command(RX, 4, &[0]), OK);
    // ADDR_SET: the config and the filter follow, the old address is no longer ours.
    let new = MacAddr([0x52, 0x54, 0, 1, 2, 3]);
    assert_eq!(n.command(MAC, 1, &new.0), OK);
    assert_eq!(n.config_mac(), new);
    assert_eq!(n.control.mac(), new);
    assert_eq!(n.control.info(), "model=virtio-net-pci,macaddr=52:54:00:01:02:03");
    assert_eq!(seen(&mut n, &[new, OWN]), [new]);

    // Malformed commands are answered ERR and change nothing.
    assert_eq!(n.command(RX, 0, &[0, 0]), ERR);
    assert_eq!(n.command(RX, 0, &[]), ERR);
    assert_eq!(n.command(RX, 9, &[1]), ERR);
    assert_eq!(n.command(MAC, 0, &table(&[OWN], &[])[..7]), ERR);
    assert_eq!(n.command(MAC, 0, &[0xff, 0xff, 0xff, 0xff]), ERR, "a count far past the data");
    assert_eq!(n.command(MAC, 1, &[1, 2, 3]), ERR);
    assert_eq!(n.command(2, 0, &[0, 0]), ERR, "no VLAN filtering");
    assert_eq!(n.command(0x7f, 0, &[]), ERR);
    assert_eq!(n.config_mac(), new);
    assert!(!n.needs_reset());
    assert_eq!(seen(&mut n, &[new, OTHER]), [new, OTHER], "the table still holds OTHER");
}

#[test]
fn commands_need_their_features() {
    let mut n = Nic::start(false, ALL & !f::CTRL_RX_EXTRA & !f::CTRL_MAC_ADDR & !f::GUEST_ANNOUNCE);
    assert_eq!(n.command(RX, 0, &[0]), OK);
    assert_eq!(n.command(RX, 5, &[1]), ERR, "nobcast needs CTRL_RX_EXTRA");
    assert_eq!(n.command(MAC, 1, &OTHER.0), ERR);
    assert_eq!(n.config_mac(), OWN);
    n.control.announce();
    assert_eq!(n.config_status() & 2, 0, "no ANNOUNCE bit without GUEST_ANNOUNCE");
    assert_eq!(n.wire.sent()[12..14], [0x80, 0x35], "the RARP still goes out");
    assert_eq!(n.command(ANNOUNCE, 0, &[]), ERR);
}

#[test]
fn link_down_and_up() {
    let mut n = Nic::start(false, ALL);
    let c = n.control.clone();
    c.set_link(false);
    assert!(n.config_irq());
    assert!(!c.link());
    assert_eq!(n.config_status(), 0);
    c.set_link(false);
    assert!(n.no_config_irq(30), "no change, no interrupt");
    // Down: sends are used but go nowhere; nothing is received.
    n.transmit(&header(), &frame(OTHER, 60, 1));
    assert!(n.wire.quiet_for(50));
    n.post_rx(&[1526]);
    n.wire.inject(&frame(OWN, 60, 2));
    assert!(n.rx.idle_for(&n.g.mem, 50));
    c.set_link(true);
    assert!(n.config_irq());
    assert_eq!(n.config_status(), 1);
    // Up: the frame that arrived while down is gone; new traffic flows.
    let f3 = frame(OWN, 60, 3);
    n.wire.inject(&f3);
    assert_eq!(n.received(1)[0].1, 72);
    assert_eq!(n.get(RX_BUFS + 12, 60), f3);
    let f4 = frame(OTHER, 60, 4);
    n.transmit(&header(), &f4);
    assert_eq!(n.wire.sent(), f4);

    // Before the driver is ready the link still reads down, without interrupts.
    let (mut g, _w, c2) = Nic::plugged(false);
    c2.set_link(false);
    assert_eq!(g.read(g.caps.device + 6, 2), 0);
}

#[test]
fn announce_sends_rarp_and_asks_the_guest() {
    let mut n = Nic::start(true, ALL);
    n.control.announce();
    let sent = n.wire.sent();
    assert_eq!(&sent[..12], &[0; 12], "a zeroed header for a back end with headers");
    let rarp = &sent[12..];
    let mut expected = vec![0xff; 6];
    expected.extend_from_slice(&OWN.0);
    expected.extend_from_slice(&[0x80, 0x35, 0, 1, 8, 0, 6, 4, 0, 3]);
    expected.extend_from_slice(&OWN.0);
    expected.extend_from_slice(&[0; 4]);
    expected.extend_from_slice(&OWN.0);
    expected.extend_from_slice(&[0; 4]);
    expected.resize(60, 0);
    assert_eq!(rarp, &expected[..]);
    assert_eq!(rarp_frame(OWN).to_vec(), expected);
    assert!(n.config_irq());
    assert_eq!(n.config_status(), 3, "link up and announce");
    assert_eq!(n.command(ANNOUNCE, 0, &[]), OK);
    assert_eq!(n.config_status(), 1);
    assert_eq!(n.command(ANNOUNCE, 0, &[]), ERR, "nothing left to ack");

    // Link down: nothing goes out, the guest is still asked.
    n.control.set_link(false);
    assert!(n.config_irq());
    n.control.announce();
    assert!(n.wire.quiet_for(50));
    assert!(n.config_irq());
    assert_eq!(n.config_status(), 2);

    // Not started: just the frame, without a header from a plain back end.
    let (_g, wire, control) = Nic::plugged(false);
    control.announce();
    assert_eq!(wire.sent(), rarp_frame(OWN).to_vec());
}
