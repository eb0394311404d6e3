//! The guest network's addresses, worked out from `net=`, `host=`, `dns=`, `dhcpstart=` and
//! the `ipv6-*` options with QEMU 7.2's defaults, checks and messages (`net_slirp_init`).

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use super::cparse::{get_str_sep, inet_aton, strtol};

/// QEMU reads the network part of `net=` into a 20-byte buffer.
const NET_BUF: usize = 20;

/// A malformed or inconsistent address option: QEMU 7.2's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("Failed to parse netmask")]
    Net,
    #[error("Failed to parse netmask (trailing chars)")]
    NetmaskTrailing,
    #[error("Invalid netmask provided (must be in range 4-32)")]
    NetmaskRange,
    #[error("Failed to parse host")]
    Host,
    #[error("Host doesn't belong to network")]
    HostOutside,
    #[error("Failed to parse DNS")]
    Dns,
    #[error("DNS doesn't belong to network")]
    DnsOutside,
    #[error("DNS must be different from host")]
    DnsIsHost,
    #[error("Failed to parse DHCP start address")]
    Dhcp,
    #[error("DHCP doesn't belong to network")]
    DhcpOutside,
    #[error("DHCP must be different from host and DNS")]
    DhcpClash,
    #[error("Failed to parse IPv6 prefix")]
    Ipv6Prefix,
    #[error("Invalid IPv6 prefix provided (IPv6 prefix length must be between 0 and 126)")]
    Ipv6PrefixLen,
    #[error("Failed to parse IPv6 host")]
    Ipv6Host,
    #[error("IPv6 Host doesn't belong to network")]
    Ipv6HostOutside,
    #[error("Failed to parse IPv6 DNS")]
    Ipv6Dns,
    #[error("IPv6 DNS doesn't belong to network")]
    Ipv6DnsOutside,
}

/// The IPv4 options as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ipv4Options<'a> {
    /// `net=` (or `ip=` with `/24` appended).
    pub net: Option<&'a str>,
    pub host: Option<&'a str>,
    pub dns: Option<&'a str>,
    pub dhcp_start: Option<&'a str>,
}

/// The IPv4 side of the guest network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Plan {
    pub net: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub host: Ipv4Addr,
    pub dns: Ipv4Addr,
    pub dhcp_start: Ipv4Addr,
}

/// The IPv6 options as written (`ipv6-net=` already split into prefix and length).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ipv6Options<'a> {
    pub prefix: Option<&'a str>,
    /// 0 means the default, 64.
    pub prefix_len: i64,
    pub host: Option<&'a str>,
    pub dns: Option<&'a str>,
}

/// The IPv6 side of the guest network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Plan {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub host: Ipv6Addr,
    pub dns: Ipv6Addr,
}

/// QEMU's classful guess of the mask for a `net=` without `/N`.
fn classful_mask(net: u32) -> u32 {
    match net {
        a if a & 0x8000_0000 == 0 => 0xff00_0000,
        a if a & 0xfff0_0000 == 0xac10_0000 => 0xfff0_0000,
        a if a & 0xc000_0000 == 0x8000_0000 => 0xffff_0000,
        a if a & 0xffff_0000 == 0xc0a8_0000 => 0xffff_0000,
        a if a & 0xffff_0000 == 0xc612_0000 => 0xfffe_0000,
        a if a & 0xe000_0000 == 0xe000_0000 => 0xffff_ff00,
        _ => 0xffff_fff0,
    }
}

/// `net=A.B.C.D[/N|/MASK]`: the network (masked) and its mask.
fn parse_net(text: &str) -> Result<(u32, u32), AddressError> {
    let mut rest = text.as_bytes();
    let Some(addr) = get_str_sep(&mut rest, b'/', NET_BUF) else {
        let net = u32::from(inet_aton(text.as_bytes()).ok_or(AddressError::Net)?);
        let mask = classful_mask(net);
        return Ok((net & mask, mask));
    };
    let net = u32::from(inet_aton(addr).ok_or(AddressError::Net)?);
    let (shift, end) = strtol(rest, 10);
    let mask = if end != rest.len() {
        u32::from(inet_aton(rest).ok_or(AddressError::NetmaskTrailing)?)
    } else if !(4..=32).contains(&shift) {
        return Err(AddressError::NetmaskRange);
    } else {
        u32::MAX << (32 - shift)
    };
    Ok((net & mask, mask))
}

/// An optional address option, `default` when absent.
fn addr_or(text: Option<&str>, default: u32, err: AddressError) -> Result<u32, AddressError> {
    text.map_or(Ok(default), |t| inet_aton(t.as_bytes()).map(u32::from).ok_or(err))
}

/// Works out the IPv4 network as QEMU does: 10.0.2.0/24 unless `net=` says otherwise, the
/// host (.2), DNS (.3) and DHCP start (.15) within it unless given.
pub fn ipv4_plan(o: &Ipv4Options<'_>, restrict: bool) -> Result<Ipv4Plan, AddressError> {
    let (net, mask) = match o.net {
        Some(text) => parse_net(text)?,
        None => (0x0a00_0200, 0xffff_ff00),
    };
    let host = addr_or(o.host, net | (0x0202 & !mask), AddressError::Host)?;
    if host & mask != net {
        return Err(AddressError::HostOutside);
    }
    let dns = addr_or(o.dns, net | (0x0203 & !mask), AddressError::Dns)?;
    if restrict && dns & mask != net {
        return Err(AddressError::DnsOutside);
    }
    if dns == host {
        return Err(AddressError::DnsIsHost);
    }
    let dhcp = addr_or(o.dhcp_start, net | (0x020f & !mask), AddressError::Dhcp)?;
    if dhcp & mask != net {
        return Err(AddressError::DhcpOutside);
    }
    if dhcp == host || dhcp == dns {
        return Err(AddressError::DhcpClash);
    }
    let [net, mask, host, dns, dhcp_start] = [net, mask, host, dns, dhcp].map(Ipv4Addr::from);
    Ok(Ipv4Plan {
        net,
        mask,
        host,
        dns,
        dhcp_start,
    })
}

/// Whether `a` and `b` share their first `len` bits.
fn same_net(a: Ipv6Addr, b: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(a) & mask == u128::from(b) & mask
}

/// `prefix` with `low` or'ed into its last byte (QEMU's default host and DNS).
fn with_low_byte(prefix: Ipv6Addr, low: u8) -> Ipv6Addr {
    let mut octets = prefix.octets();
    octets[15] |= low;
    Ipv6Addr::from(octets)
}

/// Works out the IPv6 network as QEMU does: fec0::/64, host ::2 and DNS ::3 in it.
pub fn ipv6_plan(o: &Ipv6Options<'_>, restrict: bool) -> Result<Ipv6Plan, AddressError> {
    let prefix: Ipv6Addr = o.prefix.unwrap_or("fec0::").parse().map_err(|_| AddressError::Ipv6Prefix)?;
    let len = if o.prefix_len == 0 { 64 } else { o.prefix_len };
    let prefix_len = u8::try_from(len).ok().filter(|&l| l <= 126).ok_or(AddressError::Ipv6PrefixLen)?;
    let host = match o.host {
        Some(text) => {
            let host = text.parse().map_err(|_| AddressError::Ipv6Host)?;
            if !same_net(prefix, host, prefix_len) {
                return Err(AddressError::Ipv6HostOutside);
            }
            host
        }
        None => with_low_byte(prefix, 2),
    };
    let dns = match o.dns {
        Some(text) => text.parse().map_err(|_| AddressError::Ipv6Dns)?,
        None => with_low_byte(prefix, 3),
    };
    if restrict && !same_net(prefix, dns, prefix_len) {
        return Err(AddressError::Ipv6DnsOutside);
    }
    Ok(Ipv6Plan {
        prefix,
        prefix_len,
        host,
        dns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(net: Option<&str>, host: Option<&str>, dns: Option<&str>, dhcp: Option<&str>) -> Result<Ipv4Plan, AddressError> {
        ipv4_plan(
            &Ipv4Options {
                net,
                host,
                dns,
                dhcp_start: dhcp,
            },
            false,
        )
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_defaults_are_qemus() {
        let p = v4(None, None, None, None).unwrap();
        assert_eq!((p.net, p.mask), (ip("10.0.2.0"), ip("255.255.255.0")));
        assert_eq!((p.host, p.dns, p.dhcp_start), (ip("10.0.2.2"), ip("10.0.2.3"), ip("10.0.2.15")));
    }

    #[test]
    fn net_moves_the_defaults() {
        let p = v4(Some("192.168.7.9/24"), None, None, None).unwrap();
        assert_eq!(
            (p.net, p.host, p.dhcp_start),
            (ip("192.168.7.0"), ip("192.168.7.2"), ip("192.168.7.15"))
        );
        let p = v4(Some("10.0.0.0/8"), None, None, None).unwrap();
        assert_eq!((p.host, p.dns, p.dhcp_start), (ip("10.0.2.2"), ip("10.0.2.3"), ip("10.0.2.15")));
        let p = v4(Some("10.0.2.0/255.255.0.0"), None, None, None).unwrap();
        assert_eq!((p.net, p.mask), (ip("10.0.0.0"), ip("255.255.0.0")));
        // Without /N the mask is QEMU's classful guess.
        let p = v4(Some("172.17.0.0"), None, None, None).unwrap();
        assert_eq!(p.mask, ip("255.240.0.0"));
        assert_eq!(v4(Some("192.168.1.0"), None, None, None).unwrap().mask, ip("255.255.0.0"));
        assert_eq!(v4(Some("10.1.2.3"), None, None, None).unwrap().net, ip("10.0.0.0"));
    }

    #[test]
    fn malformed_or_inconsistent_ipv4_options_give_qemus_errors() {
        use AddressError::*;
        assert_eq!(v4(Some("x"), None, None, None), Err(Net));
        assert_eq!(v4(Some("x/24"), None, None, None), Err(Net));
        assert_eq!(v4(Some("10.0.2.0/x"), None, None, None), Err(NetmaskTrailing));
        assert_eq!(v4(Some("10.0.2.0/3"), None, None, None), Err(NetmaskRange));
        assert_eq!(v4(Some("10.0.2.0/33"), None, None, None), Err(NetmaskRange));
        assert_eq!(v4(Some("10.0.2.0/"), None, None, None), Err(NetmaskRange));
        assert_eq!(v4(None, Some("x"), None, None), Err(Host));
        assert_eq!(v4(None, Some("10.0.3.2"), None, None), Err(HostOutside));
        assert_eq!(v4(None, None, Some("x"), None), Err(Dns));
        assert_eq!(v4(None, None, Some("10.0.2.2"), None), Err(DnsIsHost));
        assert_eq!(v4(None, None, None, Some("x")), Err(Dhcp));
        assert_eq!(v4(None, None, None, Some("10.0.3.15")), Err(DhcpOutside));
        assert_eq!(v4(None, None, None, Some("10.0.2.2")), Err(DhcpClash));
        assert_eq!(v4(None, None, None, Some("10.0.2.3")), Err(DhcpClash));
    }

    #[test]
    fn dns_outside_the_network_is_refused_only_when_restricted() {
        let o = Ipv4Options {
            dns: Some("10.0.3.3"),
            ..Default::default()
        };
        assert_eq!(ipv4_plan(&o, false).unwrap().dns, ip("10.0.3.3"));
        assert_eq!(ipv4_plan(&o, true), Err(AddressError::DnsOutside));
    }

    #[test]
    fn ipv6_defaults_and_errors() {
        let p = ipv6_plan(&Ipv6Options::default(), false).unwrap();
        assert_eq!(p.prefix, "fec0::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.prefix_len, 64);
        assert_eq!(p.host, "fec0::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dns, "fec0::3".parse::<Ipv6Addr>().unwrap());
        let bad = |o: Ipv6Options<'_>| ipv6_plan(&o, false).unwrap_err();
        assert_eq!(
            bad(Ipv6Options {
                prefix: Some("x"),
                ..Default::default()
            }),
            AddressError::Ipv6Prefix
        );
        assert_eq!(
            bad(Ipv6Options {
                prefix_len: 127,
                ..Default::default()
            }),
            AddressError::Ipv6PrefixLen
        );
        assert_eq!(
            bad(Ipv6Options {
                prefix_len: -1,
                ..Default::default()
            }),
            AddressError::Ipv6PrefixLen
        );
        assert_eq!(
            bad(Ipv6Options {
                host: Some("x"),
                ..Default::default()
            }),
            AddressError::Ipv6Host
        );
        assert_eq!(
            bad(Ipv6Options {
                host: Some("fec1::2"),
                ..Default::default()
            }),
            AddressError::Ipv6HostOutside
        );
        assert_eq!(
            bad(Ipv6Options {
                dns: Some("x"),
                ..Default::default()
            }),
            AddressError::Ipv6Dns
        );
        let outside = Ipv6Options {
            dns: Some("fec1::3"),
            ..Default::default()
        };
        assert!(ipv6_plan(&outside, false).is_ok());
        assert_eq!(ipv6_plan(&outside, true), Err(AddressError::Ipv6DnsOutside));
    }
}
