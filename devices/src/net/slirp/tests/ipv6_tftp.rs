//! IPv6 (on by default, as in QEMU) and the built-in TFTP/BOOTP file options.

use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use super::frames::{self, Packet};
use super::guest::{GATEWAY, GUEST_IP, GUEST_MAC, Guest, WAIT};

fn advertised(opts: &str, wait: Duration) -> Option<Vec<(Ipv6Addr, u8)>> {
    let mut guest = Guest::new(opts);
    guest.send(&frames::router_solicitation(GUEST_MAC));
    let ra = guest.expect(wait, |p| matches!(p, Packet::RouterAdvertisement(_)))?;
    let Packet::RouterAdvertisement(prefixes) = ra.packet else {
        unreachable!()
    };
    Some(prefixes)
}

#[test]
fn router_solicitation_gets_qemus_default_ipv6_prefix() {
    let prefixes = advertised("user,id=v6", WAIT).expect("no router advertisement");
    assert_eq!(prefixes, [("fec0::".parse().unwrap(), 64)]);
    let prefixes = advertised("user,id=v6b,ipv6-net=fd00:1:2::/48", WAIT).expect("no router advertisement");
    assert_eq!(prefixes, [("fd00:1:2::".parse().unwrap(), 48)]);
}

#[test]
fn ipv6_off_means_no_router_advertisement() {
    assert_eq!(advertised("user,id=v4only,ipv6=off", Duration::from_millis(500)), None);
}

/// A scratch directory removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tftp_serves_files_and_dhcp_names_the_bootfile() {
    let dir = Scratch(std::env::temp_dir().join(format!("godwit-slirp-tftp-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("boot.txt"), b"hello tftp").unwrap();
    let mut guest = Guest::new(&format!("user,id=tftp,tftp={},bootfile=boot.txt", dir.0.display()));
    guest.send(&frames::dhcp_discover(GUEST_MAC, 7));
    let offer = guest
        .expect(WAIT, |p| matches!(p, Packet::Udp { dst, .. } if dst.port() == 68))
        .expect("no DHCP offer");
    let Packet::Udp { payload, .. } = offer.packet else {
        unreachable!()
    };
    assert_eq!(&payload[108..117], b"boot.txt\0", "BOOTP file field");
    guest.arp_gateway();
    let client = SocketAddrV4::new(GUEST_IP, 1069);
    guest.udp(client, SocketAddrV4::new(GATEWAY, 69), b"\0\x01boot.txt\0octet\0");
    let data = guest
        .expect(WAIT, |p| matches!(p, Packet::Udp { dst, .. } if *dst == client))
        .expect("no TFTP reply");
    let Packet::Udp { payload, .. } = data.packet else { unreachable!() };
    assert_eq!(payload, b"\0\x03\0\x01hello tftp");
}
