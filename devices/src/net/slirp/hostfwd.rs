//! Host forwarding rules, `[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`, parsed as
//! QEMU 7.2's `slirp_hostfwd` parses them (same accepted spellings, same failure reasons),
//! and the `[tcp|udp]:[HOSTADDR]:HOSTPORT` form `hostfwd_remove` takes.

use std::net::Ipv4Addr;

use thiserror::Error;

use super::cparse::{get_str_sep, inet_aton, strtol, strtol_whole};

/// QEMU copies each field into a 256-byte buffer.
const FIELD_BUF: usize = 256;

/// Why a rule is malformed: QEMU's `fail_reason` texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HostFwdError {
    #[error("No : separators")]
    NoSeparators,
    #[error("Bad protocol name")]
    BadProtocol,
    #[error("Missing : separator")]
    MissingSeparator,
    #[error("Bad host address")]
    BadHostAddress,
    #[error("Bad host port separator")]
    BadHostPortSeparator,
    #[error("Bad host port")]
    BadHostPort,
    #[error("Missing guest address")]
    MissingGuestAddress,
    #[error("Bad guest address")]
    BadGuestAddress,
    #[error("Bad guest port")]
    BadGuestPort,
    /// A `hostfwd_remove` argument that does not parse (QEMU's monitor says this).
    #[error("invalid format")]
    InvalidFormat,
}

/// One host forwarding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFwd {
    /// The rule as written (QEMU's messages quote it).
    pub rule: String,
    pub udp: bool,
    /// Host address to listen on; `0.0.0.0` (all) when left empty.
    pub host_addr: Ipv4Addr,
    /// Host port; 0 lets the kernel pick one.
    pub host_port: u16,
    /// Guest address; `None` when left empty, which libslirp (as in QEMU) takes as the
    /// DHCP start address.
    pub guest_addr: Option<Ipv4Addr>,
    pub guest_port: u16,
}

/// The socket a rule listens on, as `hostfwd_remove` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFwdKey {
    pub udp: bool,
    pub host_addr: Ipv4Addr,
    pub host_port: u16,
}

impl HostFwd {
    /// Parses a `hostfwd=` value.
    pub fn parse(rule: &str) -> Result<Self, HostFwdError> {
        let mut p = rule.as_bytes();
        let protocol = get_str_sep(&mut p, b':', FIELD_BUF).ok_or(HostFwdError::NoSeparators)?;
        let udp = protocol_is_udp(protocol).ok_or(HostFwdError::BadProtocol)?;
        let host = get_str_sep(&mut p, b':', FIELD_BUF).ok_or(HostFwdError::MissingSeparator)?;
        let host_addr = optional_addr(host).ok_or(HostFwdError::BadHostAddress)?;
        let port = get_str_sep(&mut p, b'-', FIELD_BUF).ok_or(HostFwdError::BadHostPortSeparator)?;
        let host_port = port_in(port, 0).ok_or(HostFwdError::BadHostPort)?;
        let guest = get_str_sep(&mut p, b':', FIELD_BUF).ok_or(HostFwdError::MissingGuestAddress)?;
        let guest_addr = optional_addr(guest).ok_or(HostFwdError::BadGuestAddress)?;
        let guest_port = port_in(p, 1).ok_or(HostFwdError::BadGuestPort)?;
        Ok(HostFwd {
            rule: rule.to_string(),
            udp,
            host_addr: host_addr.unwrap_or(Ipv4Addr::UNSPECIFIED),
            host_port,
            guest_addr,
            guest_port,
        })
    }

    /// The listening socket this rule opens.
    pub fn key(&self) -> HostFwdKey {
        HostFwdKey {
            udp: self.udp,
            host_addr: self.host_addr,
            host_port: self.host_port,
        }
    }
}

impl HostFwdKey {
    /// Parses a `hostfwd_remove` argument, `[tcp|udp]:[HOSTADDR]:HOSTPORT`, as QEMU 7.2's
    /// monitor does (the port in decimal, the whole rest of the text).
    pub fn parse(spec: &str) -> Result<Self, HostFwdError> {
        let mut p = spec.as_bytes();
        let protocol = get_str_sep(&mut p, b':', FIELD_BUF).ok_or(HostFwdError::InvalidFormat)?;
        let udp = protocol_is_udp(protocol).ok_or(HostFwdError::InvalidFormat)?;
        let host = get_str_sep(&mut p, b':', FIELD_BUF).ok_or(HostFwdError::InvalidFormat)?;
        let host_addr = optional_addr(host).ok_or(HostFwdError::InvalidFormat)?;
        let (port, end) = strtol(p, 10);
        let host_port = (end == p.len() && !p.is_empty()).then(|| u16::try_from(port).ok()).flatten();
        let host_port = host_port.ok_or(HostFwdError::InvalidFormat)?;
        Ok(HostFwdKey {
            udp,
            host_addr: host_addr.unwrap_or(Ipv4Addr::UNSPECIFIED),
            host_port,
        })
    }
}

/// `tcp` or empty is TCP, `udp` is UDP.
fn protocol_is_udp(protocol: &[u8]) -> Option<bool> {
    match protocol {
        b"" | b"tcp" => Some(false),
        b"udp" => Some(true),
        _ => None,
    }
}

/// An address field: `Some(None)` when empty, `None` when malformed.
fn optional_addr(field: &[u8]) -> Option<Option<Ipv4Addr>> {
    if field.is_empty() { Some(None) } else { inet_aton(field).map(Some) }
}

/// A port read by `strtol(.., 0)` over the whole field, within `min..=65535`.
fn port_in(field: &[u8], min: i64) -> Option<u16> {
    let port = strtol_whole(field, 0)?;
    if port < min { None } else { u16::try_from(port).ok() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(rule: &str) -> HostFwdError {
        HostFwd::parse(rule).unwrap_err()
    }

    #[test]
    fn parses_full_and_defaulted_rules() {
        let r = HostFwd::parse("tcp:127.0.0.1:2222-10.0.2.9:22").unwrap();
        assert_eq!(r.rule, "tcp:127.0.0.1:2222-10.0.2.9:22");
        assert!(!r.udp);
        assert_eq!(r.host_addr, Ipv4Addr::LOCALHOST);
        assert_eq!((r.host_port, r.guest_port), (2222, 22));
        assert_eq!(r.guest_addr, Some(Ipv4Addr::new(10, 0, 2, 9)));
        let r = HostFwd::parse("udp::5353-:53").unwrap();
        assert!(r.udp);
        assert_eq!(r.host_addr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.guest_addr, None);
        // Empty protocol is TCP; ports in C's base 0; an empty host port is port 0.
        let r = HostFwd::parse(":127.0.0.1:0x10-10.0.2.9:022").unwrap();
        assert_eq!((r.udp, r.host_port, r.guest_port), (false, 16, 18));
        assert_eq!(HostFwd::parse("tcp::-:2").unwrap().host_port, 0);
        assert_eq!(HostFwd::parse("tcp:: +5-: 2").unwrap().host_port, 5);
    }

    #[test]
    fn malformed_rules_give_qemus_reasons() {
        use HostFwdError::*;
        let cases = [
            ("bogus", NoSeparators),
            ("foo:1:2", BadProtocol),
            ("unix:/tmp/x-:2", BadProtocol),
            ("tcp:1", MissingSeparator),
            ("tcp:x:1-:2", BadHostAddress),
            ("tcp:[::1]:5555-:22", BadHostAddress),
            ("tcp::1", BadHostPortSeparator),
            ("tcp::x-:2", BadHostPort),
            ("tcp::5x-:2", BadHostPort),
            ("tcp::08-:2", BadHostPort),
            ("tcp::70000-:2", BadHostPort),
            ("tcp::1-2", MissingGuestAddress),
            ("tcp::1-x:2", BadGuestAddress),
            ("tcp::-1-:2", BadGuestAddress),
            ("tcp::1--:2", BadGuestAddress),
            ("tcp::1-:0", BadGuestPort),
            ("tcp::1-:x", BadGuestPort),
            ("tcp::1-:", BadGuestPort),
            ("tcp::1-:65536", BadGuestPort),
            ("tcp::1-:22:3", BadGuestPort),
        ];
        for (rule, want) in cases {
            assert_eq!(reason(rule), want, "{rule}");
        }
    }

    #[test]
    fn removal_keys() {
        let k = HostFwdKey::parse("udp:127.0.0.1:5555").unwrap();
        assert_eq!(
            k,
            HostFwdKey {
                udp: true,
                host_addr: Ipv4Addr::LOCALHOST,
                host_port: 5555
            }
        );
        assert_eq!(HostFwdKey::parse("::22").unwrap().host_port, 22);
        assert_eq!(
            HostFwd::parse("tcp::2222-:22").unwrap().key(),
            HostFwdKey::parse("tcp::2222").unwrap()
        );
        for bad in ["22", "icmp::22", "tcp:x:22", "tcp::", "tcp::22x", "tcp::70000", "tcp::-1"] {
            assert_eq!(HostFwdKey::parse(bad), Err(HostFwdError::InvalidFormat), "{bad}");
        }
    }
}
