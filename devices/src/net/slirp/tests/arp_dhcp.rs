use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::frames::{self, Packet};
use super::guest::{GATEWAY, GUEST_IP, GUEST_MAC, Guest, SLIRP_MAC, WAIT};
use crate::net::NetBackend;

#[test]
fn arp_request_for_the_gateway_gets_slirps_mac() {
    let mut guest = Guest::new("user,id=arp");
    let reply = guest.arp_gateway();
    assert_eq!(reply.src_mac, SLIRP_MAC);
    assert_eq!(
        reply.packet,
        Packet::Arp {
            op: 2,
            sha: SLIRP_MAC,
            spa: GATEWAY,
            tpa: GUEST_IP
        }
    );
    // Level-triggered: nothing left, so recv says WouldBlock and rx_fd is not readable.
    let mut buf = [0u8; 64];
    assert_eq!(guest.net.recv(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(!super::guest::readable(guest.net.rx_fd(), std::time::Duration::ZERO));
}

/// The address a DISCOVER is offered, and the offer's source.
fn offer(opts: &str) -> (Ipv4Addr, SocketAddrV4) {
    let mut guest = Guest::new(opts);
    guest.send(&frames::dhcp_discover(GUEST_MAC, 0x1234_5678));
    let is_offer = |p: &Packet| matches!(p, Packet::Udp { dst, payload, .. } if dst.port() == 68 && frames::dhcp_reply(payload).is_some());
    let Packet::Udp { src, payload, .. } = guest.expect(WAIT, is_offer).expect("no DHCP offer").packet else {
        unreachable!()
    };
    let (kind, addr) = frames::dhcp_reply(&payload).unwrap();
    assert_eq!(kind, 2, "DHCPOFFER");
    (addr, src)
}

#[test]
fn dhcp_discover_gets_an_offer_of_the_dhcp_start_address() {
    let (addr, server) = offer("user,id=dhcp");
    assert_eq!(addr, Ipv4Addr::new(10, 0, 2, 15));
    assert_eq!(server, SocketAddrV4::new(GATEWAY, 67));
}

#[test]
fn dhcp_offers_follow_dhcpstart_and_net() {
    assert_eq!(offer("user,id=dhcp2,dhcpstart=10.0.2.100").0, Ipv4Addr::new(10, 0, 2, 100));
    let (addr, server) = offer("user,id=dhcp3,net=192.168.76.0/24");
    assert_eq!(addr, Ipv4Addr::new(192, 168, 76, 15));
    assert_eq!(*server.ip(), Ipv4Addr::new(192, 168, 76, 2));
}
