use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};

use super::frames::{ACK, PSH, Packet, Received, SYN, TcpOut};
use super::guest::{GUEST_IP, Guest, WAIT, free_tcp_port, free_udp_port};

/// Whether `p` is a TCP segment to `dst` with `flags` set and its payload.
fn tcp_to(p: &Packet, dst: SocketAddrV4, flags: u8) -> bool {
    matches!(p, Packet::Tcp { dst: d, flags: f, .. } if *d == dst && f & flags == flags)
}

#[test]
fn tcp_host_forward_reaches_the_guest_and_bytes_flow_both_ways() {
    let port = free_tcp_port();
    let mut guest = Guest::new(&format!("user,id=fwd,hostfwd=tcp:127.0.0.1:{port}-:22"));
    guest.arp_gateway();
    let mut host = TcpStream::connect(("127.0.0.1", port)).unwrap();
    host.set_read_timeout(Some(WAIT)).unwrap();
    let sshd = SocketAddrV4::new(GUEST_IP, 22);
    let syn = guest.expect(WAIT, |p| tcp_to(p, sshd, SYN)).expect("no SYN for the guest").packet;
    let Packet::Tcp {
        src: peer, seq: their_seq, ..
    } = syn
    else {
        unreachable!()
    };
    // Complete the handshake as the guest's sshd would.
    let mut ours = 1000u32;
    guest.tcp(&TcpOut {
        src: sshd,
        dst: peer,
        seq: ours,
        ack: their_seq + 1,
        flags: SYN | ACK,
        payload: b"",
    });
    ours += 1;
    host.write_all(b"hello").unwrap();
    let mut got = Vec::new();
    let mut next = their_seq + 1;
    while got.len() < 5 {
        let seg = guest.expect(
            WAIT,
            |p| matches!(p, Packet::Tcp { dst, payload, .. } if *dst == sshd && !payload.is_empty()),
        );
        let Some(Received {
            packet: Packet::Tcp { seq, payload, .. },
            ..
        }) = seg
        else {
            panic!("no data for the guest")
        };
        assert_eq!(seq, next);
        next += u32::try_from(payload.len()).unwrap();
        got.extend(payload);
    }
    assert_eq!(got, b"hello");
    guest.tcp(&TcpOut {
        src: sshd,
        dst: peer,
        seq: ours,
        ack: next,
        flags: PSH | ACK,
        payload: b"world",
    });
    let mut reply = [0u8; 5];
    host.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"world");
}

#[test]
fn udp_host_forward_carries_datagrams_both_ways() {
    let port = free_udp_port();
    let mut guest = Guest::new(&format!("user,id=udpfwd,hostfwd=udp:127.0.0.1:{port}-:5353"));
    guest.arp_gateway();
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    host.set_read_timeout(Some(WAIT)).unwrap();
    host.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let service = SocketAddrV4::new(GUEST_IP, 5353);
    let is_ping = |p: &Packet| matches!(p, Packet::Udp { dst, payload, .. } if *dst == service && payload == b"ping");
    let Packet::Udp { src: peer, .. } = guest.expect(WAIT, is_ping).expect("no datagram for the guest").packet else {
        unreachable!()
    };
    guest.udp(service, peer, b"pong");
    let mut buf = [0u8; 16];
    let (n, from) = host.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, (Ipv4Addr::LOCALHOST, port).into());
}
