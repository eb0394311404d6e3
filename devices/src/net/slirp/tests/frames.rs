//! A tiny Ethernet/ARP/IPv4/UDP/TCP/DHCP frame builder and parser for acting as the guest.

use std::net::{Ipv4Addr, SocketAddrV4};

pub type Mac = [u8; 6];
pub const BROADCAST: Mac = [0xff; 6];
const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
pub const SYN: u8 = 0x02;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// The Internet checksum of `parts` laid end to end.
fn checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src[..], &ethertype.to_be_bytes()[..], payload].concat()
}

fn arp(op: u16, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    let body = [&[0, 1, 8, 0, 6, 4][..], &op.to_be_bytes(), &sha, &spa.octets(), &tha, &tpa.octets()].concat();
    let dst = if op == 1 { BROADCAST } else { tha };
    ethernet(dst, sha, ETH_ARP, &body)
}

pub fn arp_request(sha: Mac, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    arp(1, sha, spa, [0; 6], tpa)
}

pub fn arp_reply(sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    arp(2, sha, spa, tha, tpa)
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(20 + payload.len()).unwrap().to_be_bytes();
    let mut header = [
        &[0x45, 0, len[0], len[1], 0, 0, 0x40, 0, 64, proto, 0, 0][..],
        &src.octets(),
        &dst.octets(),
    ]
    .concat();
    let sum = checksum(&[&header]).to_be_bytes();
    header[10..12].copy_from_slice(&sum);
    [header, payload.to_vec()].concat()
}

/// The transport checksum over the IPv4 pseudo-header.
fn transport_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> [u8; 2] {
    let len = u16::try_from(segment.len()).unwrap().to_be_bytes();
    checksum(&[&src.octets(), &dst.octets(), &[0, proto], &len, segment]).to_be_bytes()
}

pub fn udp_frame(dst_mac: Mac, src_mac: Mac, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap().to_be_bytes();
    let mut seg = [&src.port().to_be_bytes()[..], &dst.port().to_be_bytes(), &len, &[0, 0], payload].concat();
    let sum = transport_sum(*src.ip(), *dst.ip(), PROTO_UDP, &seg);
    seg[6..8].copy_from_slice(&sum);
    ethernet(dst_mac, src_mac, ETH_IPV4, &ipv4(*src.ip(), *dst.ip(), PROTO_UDP, &seg))
}

/// A TCP segment without options.
pub struct TcpOut<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: &'a [u8],
}

pub fn tcp_frame(dst_mac: Mac, src_mac: Mac, t: &TcpOut<'_>) -> Vec<u8> {
    let ports = [t.src.port().to_be_bytes(), t.dst.port().to_be_bytes()].concat();
    let head = [
        &ports[..],
        &t.seq.to_be_bytes(),
        &t.ack.to_be_bytes(),
        &[0x50, t.flags, 0xff, 0xff, 0, 0, 0, 0],
    ]
    .concat();
    let mut seg = [head, t.payload.to_vec()].concat();
    let sum = transport_sum(*t.src.ip(), *t.dst.ip(), PROTO_TCP, &seg);
    seg[16..18].copy_from_slice(&sum);
    ethernet(dst_mac, src_mac, ETH_IPV4, &ipv4(*t.src.ip(), *t.dst.ip(), PROTO_TCP, &seg))
}

/// A DHCPDISCOVER from `mac`, broadcast.
pub fn dhcp_discover(mac: Mac, xid: u32) -> Vec<u8> {
    let mut bootp = vec![0u8; 240];
    bootp[..4].copy_from_slice(&[1, 1, 6, 0]);
    bootp[4..8].copy_from_slice(&xid.to_be_bytes());
    bootp[28..34].copy_from_slice(&mac);
    bootp[236..240].copy_from_slice(&[99, 130, 83, 99]);
    bootp.extend_from_slice(&[53, 1, 1, 255]);
    let src = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
    let dst = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    udp_frame(BROADCAST, mac, src, dst, &bootp)
}

/// What a received frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Arp {
        op: u16,
        sha: Mac,
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
    },
    Udp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Vec<u8>,
    },
    Tcp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: Vec<u8>,
    },
    RouterAdvertisement(Vec<(std::net::Ipv6Addr, u8)>),
    Other,
}

/// A received frame: its Ethernet source and what it carries.
#[derive(Debug, Clone)]
pub struct Received {
    pub src_mac: Mac,
    pub packet: Packet,
}

pub fn parse(frame: &[u8]) -> Received {
    if let Some(prefixes) = router_advertisement(frame) {
        return Received {
            src_mac: frame[6..12].try_into().unwrap(),
            packet: Packet::RouterAdvertisement(prefixes),
        };
    }
    let src_mac: Mac = frame.get(6..12).and_then(|m| m.try_into().ok()).unwrap_or([0; 6]);
    let packet = match frame.get(12..14).map(|t| be16(t, 0)) {
        Some(ETH_ARP) if frame.len() >= 42 => parse_arp(&frame[14..]),
        Some(ETH_IPV4) if frame.len() >= 34 => parse_ipv4(&frame[14..]),
        _ => Packet::Other,
    };
    Received { src_mac, packet }
}

fn parse_arp(a: &[u8]) -> Packet {
    Packet::Arp {
        op: be16(a, 6),
        sha: a[8..14].try_into().unwrap(),
        spa: ip_at(a, 14),
        tpa: ip_at(a, 24),
    }
}

fn parse_ipv4(ip: &[u8]) -> Packet {
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)).min(ip.len());
    let (src, dst, seg) = (ip_at(ip, 12), ip_at(ip, 16), &ip[hlen.min(total)..total]);
    let addr = |ip, at| SocketAddrV4::new(ip, be16(seg, at));
    match ip[9] {
        PROTO_UDP if seg.len() >= 8 => Packet::Udp {
            src: addr(src, 0),
            dst: addr(dst, 2),
            payload: seg[8..].to_vec(),
        },
        PROTO_TCP if seg.len() >= 20 => {
            let off = (usize::from(seg[12] >> 4) * 4).min(seg.len());
            let (seq, ack, flags) = (be32(seg, 4), be32(seg, 8), seg[13]);
            Packet::Tcp {
                src: addr(src, 0),
                dst: addr(dst, 2),
                seq,
                ack,
                flags,
                payload: seg[off..].to_vec(),
            }
        }
        _ => Packet::Other,
    }
}

/// The DHCP message type (option 53) and offered address of a BOOTP reply.
pub fn dhcp_reply(payload: &[u8]) -> Option<(u8, Ipv4Addr)> {
    if payload.len() < 240 || payload[0] != 2 {
        return None;
    }
    let mut opts = &payload[240..];
    while let [code, rest @ ..] = opts {
        match (code, rest) {
            (255, _) => break,
            (0, _) => opts = rest,
            (53, [1, kind, ..]) => return Some((*kind, ip_at(payload, 16))),
            (_, [len, tail @ ..]) => opts = tail.get(usize::from(*len)..)?,
            _ => break,
        }
    }
    None
}

const ETH_IPV6: u16 = 0x86dd;
const PROTO_ICMPV6: u8 = 58;

/// An ICMPv6 Router Solicitation from `mac`'s link-local address to all routers.
pub fn router_solicitation(mac: Mac) -> Vec<u8> {
    let src = std::net::Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    );
    let dst = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    let mut icmp = vec![133, 0, 0, 0, 0, 0, 0, 0];
    let len = u32::try_from(icmp.len()).unwrap().to_be_bytes();
    let sum = checksum(&[&src.octets(), &dst.octets(), &len, &[0, 0, 0, PROTO_ICMPV6], &icmp]).to_be_bytes();
    icmp[2..4].copy_from_slice(&sum);
    let plen = u16::try_from(icmp.len()).unwrap().to_be_bytes();
    let ip = [
        &[0x60, 0, 0, 0, plen[0], plen[1], PROTO_ICMPV6, 255][..],
        &src.octets(),
        &dst.octets(),
        &icmp,
    ]
    .concat();
    ethernet([0x33, 0x33, 0, 0, 0, 2], mac, ETH_IPV6, &ip)
}

/// The prefixes (address, length) a Router Advertisement frame announces; `None` if the
/// frame is not one.
pub fn router_advertisement(frame: &[u8]) -> Option<Vec<(std::net::Ipv6Addr, u8)>> {
    let ip = frame.get(14..).filter(|_| frame.get(12..14) == Some(&ETH_IPV6.to_be_bytes()[..]))?;
    let icmp = ip.get(40..).filter(|_| ip.get(6) == Some(&PROTO_ICMPV6))?;
    if icmp.first() != Some(&134) {
        return None;
    }
    let mut prefixes = Vec::new();
    let mut opts = icmp.get(16..)?;
    while let [kind, len, ..] = *opts {
        let size = usize::from(len) * 8;
        let opt = opts.get(..size).filter(|_| size > 0)?;
        if kind == 3 && size == 32 {
            let addr: [u8; 16] = opt[16..32].try_into().ok()?;
            prefixes.push((addr.into(), opt[2]));
        }
        opts = &opts[size..];
    }
    Some(prefixes)
}
