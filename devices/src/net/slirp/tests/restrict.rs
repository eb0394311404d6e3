use std::io::ErrorKind;
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::frames::{ACK, Packet, SYN, TcpOut};
use super::guest::{GATEWAY, GUEST_IP, Guest, WAIT, free_tcp_port};
use crate::net::NetBackend;

/// The guest opens a TCP connection to the host's loopback port `port` (10.0.2.2 stands for
/// the host); whether a host listener sees it within `wait`, and whether the guest got a
/// SYN-ACK.
fn guest_connects_to_host(guest: &mut Guest, listener: &TcpListener, wait: Duration) -> (bool, bool) {
    let port = listener.local_addr().unwrap().port();
    let src = SocketAddrV4::new(GUEST_IP, 40000);
    let dst = SocketAddrV4::new(GATEWAY, port);
    guest.tcp(&TcpOut {
        src,
        dst,
        seq: 77,
        ack: 0,
        flags: SYN,
        payload: b"",
    });
    let syn_ack = guest.expect(
        wait,
        |p| matches!(p, Packet::Tcp { dst: d, flags, .. } if *d == src && flags & (SYN | ACK) == SYN | ACK),
    );
    let deadline = Instant::now() + wait;
    listener.set_nonblocking(true).unwrap();
    loop {
        match listener.accept() {
            Ok(_) => return (true, syn_ack.is_some()),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => sleep(Duration::from_millis(20)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (false, syn_ack.is_some()),
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn unrestricted_guest_reaches_the_host() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut guest = Guest::new("user,id=open");
    guest.arp_gateway();
    assert_eq!(guest_connects_to_host(&mut guest, &listener, WAIT), (true, true));
}

#[test]
fn restricted_guest_reaches_nothing_but_host_forwards_still_work() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free_tcp_port();
    let mut guest = Guest::new(&format!("user,id=closed,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"));
    assert_eq!(guest.net.info(), "net=10.0.2.0,restrict=on");
    guest.arp_gateway();
    assert_eq!(
        guest_connects_to_host(&mut guest, &listener, Duration::from_secs(1)),
        (false, false)
    );
    let _host = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let sshd = SocketAddrV4::new(GUEST_IP, 22);
    let syn = guest.expect(
        WAIT,
        |p| matches!(p, Packet::Tcp { dst, flags, .. } if *dst == sshd && flags & SYN != 0),
    );
    assert!(syn.is_some(), "the host forward did not reach the guest");
}
