//! The test acting as the guest: a [`SlirpBackend`] plus the guest's MAC and address, which
//! answers slirp's ARP requests for itself while waiting for the frames a test expects.

use std::io::{ErrorKind, IoSlice};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use super::frames::{self, Mac, Packet, Received};
use crate::net::NetBackend;
use crate::net::slirp::{SlirpBackend, Spelling, parse_user_options};

pub const GUEST_MAC: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// slirp's MAC for 10.0.2.2: 52:55 and the address.
pub const SLIRP_MAC: Mac = [0x52, 0x55, 10, 0, 2, 2];
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Guest {
    pub net: SlirpBackend,
    pub ip: Ipv4Addr,
}

/// A back end for `-netdev` options `opts`.
pub fn backend(opts: &str) -> SlirpBackend {
    let config = parse_user_options(opts, Spelling::Netdev).unwrap();
    SlirpBackend::new(&config).unwrap()
}

/// A loopback TCP port free right now.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback UDP port free right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits up to `timeout` for `fd` to become readable.
pub fn readable(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap();
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

impl Guest {
    pub fn new(opts: &str) -> Self {
        Guest {
            net: backend(opts),
            ip: GUEST_IP,
        }
    }

    pub fn send(&mut self, frame: &[u8]) {
        self.net.send(&[IoSlice::new(frame)]).unwrap();
    }

    /// The next frame from slirp within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            match self.net.recv(&mut buf) {
                Ok(n) => return Some(frames::parse(&buf[..n])),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("recv: {e}"),
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if !readable(self.net.rx_fd(), left) {
                return None;
            }
        }
    }

    /// Waits for a frame matching `want`, answering ARP requests for the guest meanwhile.
    pub fn expect(&mut self, timeout: Duration, mut want: impl FnMut(&Packet) -> bool) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let frame = self.recv(left)?;
            if want(&frame.packet) {
                return Some(frame);
            }
            match frame.packet {
                Packet::Arp { op: 1, sha, spa, tpa } if tpa == self.ip => self.send(&frames::arp_reply(GUEST_MAC, self.ip, sha, spa)),
                _ => {}
            }
        }
    }

    /// Asks who has the gateway (so slirp learns the guest's MAC); returns the answer.
    pub fn arp_gateway(&mut self) -> Received {
        self.send(&frames::arp_request(GUEST_MAC, self.ip, GATEWAY));
        let reply = |p: &Packet| matches!(p, Packet::Arp { op: 2, spa, .. } if *spa == GATEWAY);
        self.expect(WAIT, reply).expect("no ARP reply for the gateway")
    }

    /// Sends a TCP segment to slirp.
    pub fn tcp(&mut self, t: &frames::TcpOut<'_>) {
        self.send(&frames::tcp_frame(SLIRP_MAC, GUEST_MAC, t));
    }

    /// Sends a UDP datagram to slirp.
    pub fn udp(&mut self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        self.send(&frames::udp_frame(SLIRP_MAC, GUEST_MAC, src, dst, payload));
    }
}
