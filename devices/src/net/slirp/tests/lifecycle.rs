use std::net::{TcpListener, TcpStream, UdpSocket};

use super::guest::{Guest, backend, free_tcp_port, free_udp_port};
use crate::net::NetBackend;
use crate::net::slirp::{SlirpBackend, SlirpState, Spelling, parse_user_options};

fn start(opts: &str) -> Result<SlirpBackend, String> {
    let config = parse_user_options(opts, Spelling::Netdev).map_err(|e| e.to_string())?;
    SlirpBackend::new(&config).map_err(|e| e.to_string())
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn a_busy_host_port_fails_with_qemus_message_and_binds_nothing() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let free = free_udp_port();
    let opts = format!("user,id=busy,hostfwd=udp:127.0.0.1:{free}-:53,hostfwd=tcp:127.0.0.1:{port}-:22");
    assert_eq!(
        start(&opts).err().unwrap(),
        format!("Could not set up host forwarding rule 'tcp:127.0.0.1:{port}-:22'")
    );
    // Rules are bound last to first, as in QEMU: the UDP rule was never bound.
    UdpSocket::bind(("127.0.0.1", free)).unwrap();
    // A rule after a bound one fails too, and the bound one is released.
    let opts = format!("user,id=busy2,hostfwd=tcp:127.0.0.1:{port}-:22,hostfwd=udp:127.0.0.1:{free}-:53");
    assert_eq!(
        start(&opts).err().unwrap(),
        format!("Could not set up host forwarding rule 'tcp:127.0.0.1:{port}-:22'")
    );
    UdpSocket::bind(("127.0.0.1", free)).unwrap();
}

#[test]
fn malformed_options_fail_before_anything_starts() {
    assert_eq!(
        start("user,id=n,hostfwd=bogus").err().unwrap(),
        "Invalid host forwarding rule 'bogus' (No : separators)"
    );
    assert_eq!(
        start("user,id=n,net=10.0.2.0/3").err().unwrap(),
        "Invalid netmask provided (must be in range 4-32)"
    );
}

#[test]
fn dropping_closes_the_listeners_and_stops_the_thread() {
    let (tcp, udp) = (free_tcp_port(), free_udp_port());
    let net = backend(&format!(
        "user,id=dropme,hostfwd=tcp:127.0.0.1:{tcp}-:22,hostfwd=udp:127.0.0.1:{udp}-:53"
    ));
    assert!(thread_names().iter().any(|n| n == "slirp-dropme"));
    assert!(TcpListener::bind(("127.0.0.1", tcp)).is_err(), "slirp listens on the TCP port");
    assert!(UdpSocket::bind(("127.0.0.1", udp)).is_err(), "slirp has the UDP port");
    drop(net);
    TcpListener::bind(("127.0.0.1", tcp)).unwrap();
    UdpSocket::bind(("127.0.0.1", udp)).unwrap();
    assert!(!thread_names().iter().any(|n| n == "slirp-dropme"));
}

#[test]
fn host_forwards_added_and_removed_at_run_time() {
    let net = backend("user,id=mon");
    let port = free_tcp_port();
    net.hostfwd_add(&format!("tcp:127.0.0.1:{port}-:22")).unwrap();
    TcpStream::connect(("127.0.0.1", port)).unwrap();
    let info = net.connection_info().unwrap();
    assert!(info.contains("TCP[HOST_FORWARD]") && info.contains(&port.to_string()), "{info}");
    let again = net.hostfwd_add(&format!("tcp:127.0.0.1:{port}-:23")).unwrap_err();
    assert_eq!(
        again.to_string(),
        format!("Could not set up host forwarding rule 'tcp:127.0.0.1:{port}-:23'")
    );
    assert_eq!(
        net.hostfwd_add("bogus").unwrap_err().to_string(),
        "Invalid host forwarding rule 'bogus' (No : separators)"
    );
    assert!(net.hostfwd_remove(&format!("tcp:127.0.0.1:{port}")).unwrap());
    assert!(!net.hostfwd_remove(&format!("tcp:127.0.0.1:{port}")).unwrap());
    assert_eq!(net.hostfwd_remove("bogus").unwrap_err().to_string(), "invalid format");
    TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn info_and_frame_format() {
    let net = backend("user,id=inf,net=192.168.7.0/24");
    assert_eq!(net.info(), "net=192.168.7.0,restrict=off");
    assert!(!net.vnet_hdr());
}

#[test]
fn state_saves_and_loads_into_a_new_stack() {
    let mut guest = Guest::new("user,id=save");
    guest.arp_gateway();
    let state = guest.net.save_state().unwrap();
    assert_eq!(state.slirp_version, 4);
    let restored = backend("user,id=load");
    restored.load_state(&state).unwrap();
    let newer = SlirpState {
        slirp_version: 99,
        data: state.data.clone(),
    };
    assert!(restored.load_state(&newer).unwrap_err().to_string().contains("newer"));
}

#[test]
fn a_flood_fills_the_queues_drops_the_excess_and_the_link_recovers() {
    use super::frames::{Packet, arp_request};
    use super::guest::{GATEWAY, GUEST_IP, GUEST_MAC, WAIT};
    use crate::net::slirp::RX_QUEUE_FRAMES;

    let mut guest = Guest::new("user,id=flood");
    let request = arp_request(GUEST_MAC, GUEST_IP, GATEWAY);
    let deadline = std::time::Instant::now() + WAIT;
    // Unread replies pile up to the queue's bound, then slirp's further replies are dropped.
    while guest.net.rx_dropped() == 0 {
        assert!(std::time::Instant::now() < deadline, "no frame dropped after a flood");
        for _ in 0..64 {
            guest.send(&request);
        }
    }
    let mut queued = 0;
    while guest.recv(std::time::Duration::from_millis(200)).is_some() {
        queued += 1;
    }
    assert!(queued >= RX_QUEUE_FRAMES, "{queued} frames were queued");
    let reply = guest.arp_gateway();
    assert!(matches!(reply.packet, Packet::Arp { op: 2, .. }));
}
