//! The NIC on a real tap, inside a network namespace of the test's own: the guest asks
//! for the host's address and the host kernel answers.

use super::*;
use crate::net::tap::Tap;
use crate::net::tap::tests::{in_netns, no_scripts, set_up, socket};
use std::os::fd::AsRawFd;

const HOST_IP: [u8; 4] = [10, 9, 0, 1];
const GUEST_IP: [u8; 4] = [10, 9, 0, 2];

/// Gives the interface an IPv4 address (SIOCSIFADDR), as `ip addr add` would.
fn set_ipv4(ifname: &str, ip: [u8; 4]) {
    #[repr(C)]
    struct IfReqAddr {
        name: [u8; 16],
        addr: libc::sockaddr_in,
        _pad: [u8; 8],
    }
    let mut req = IfReqAddr {
        name: [0; 16],
        addr: libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip),
            },
            sin_zero: [0; 8],
        },
        _pad: [0; 8],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
    // SAFETY: SIOCSIFADDR reads one `struct ifreq` holding a sockaddr_in, which `req` is.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFADDR, &req) };
    assert_eq!(r, 0, "SIOCSIFADDR: {}", std::io::Error::last_os_error());
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&OWN.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&OWN.0);
    f.extend_from_slice(&GUEST_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&HOST_IP);
    f
}

#[test]
fn the_host_answers_the_guests_arp() {
    in_netns(|| {
        let tap = Tap::open(&no_scripts(Some("vm%d"))).unwrap();
        let ifname = tap.ifname().to_string();
        set_up(&ifname);
        set_ipv4(&ifname, HOST_IP);
        let net = VirtioNet::new(Box::new(tap), NetConfig::default()).unwrap();
        let control = net.control();
        let g = Guest::new(Box::new(net), guest_memory());
        let (unused_wire, _) = Wire::new(false);
        let mut n = Nic::init(g, unused_wire, control, ALL);
        assert_eq!(n.control.backend_info(), format!("ifname={ifname},script=no,downscript=no"));
        let bufs = n.post_rx(&[1526; 8]);
        n.transmit(&[0; 12], &arp_request());
        // The kernel's own IPv6 traffic may come first: look for the ARP reply.
        for _ in 0..8 {
            let (head, len) = n.received(1)[0];
            let got = n.get(bufs[head as usize % 8], len as usize);
            let f = &got[12..];
            if f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] {
                assert_eq!(&f[..6], &OWN.0, "to the guest");
                assert_eq!(&f[28..32], &HOST_IP, "from the host's address");
                assert_eq!(&f[38..42], &GUEST_IP);
                return;
            }
        }
        panic!("no ARP reply from the host");
    });
}
