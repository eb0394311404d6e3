//! `-netdev user,...` and `-net user,...` parsed into a [`UserNetConfig`], with QEMU 7.2's
//! defaults and its error messages (the caller puts its `qemu: -netdev ...: ` prefix in
//! front, as QEMU does).

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use super::addresses::{AddressError, Ipv4Options, Ipv6Options, ipv4_plan, ipv6_plan};
use super::cparse::strtol_whole;
use super::hostfwd::{HostFwd, HostFwdError};
use super::qemu_opts::{id_wellformed, parse_bool, split};

/// Which command-line option the text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// `-netdev user,id=ID,...`: `id` is required.
    Netdev,
    /// `-net user,...` (the legacy hub form): `id` is optional.
    Net,
}

/// A malformed `user` network option: QEMU 7.2's message where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OptionsError {
    #[error("Parameter 'type' is missing")]
    MissingType,
    #[error("network back end type '{0}' is not 'user'")]
    NotUser(String),
    #[error("Parameter 'id' is missing")]
    MissingId,
    #[error("Parameter 'id' expects an identifier")]
    BadId,
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(String),
    #[error("Parameter '{0}' expects 'on' or 'off'")]
    ExpectsBool(String),
    #[error("Parameter 'ipv6-prefixlen' expects an int64 value")]
    ExpectsInt,
    #[error("Parameter 'ipv6-net' expects a valid IPv6 prefix")]
    BadIpv6Net,
    #[error("Parameter 'ipv6-prefixlen' expects a number")]
    BadIpv6NetLen,
    #[error("user network option '{0}' is not supported by godwit")]
    Unsupported(String),
    #[error("Parameter '{0}' must not contain a NUL character")]
    Nul(String),
    #[error("IPv4 disabled but netmask/host/dns provided")]
    Ipv4Disabled,
    #[error("IPv6 disabled but prefix/host6/dns6 provided")]
    Ipv6Disabled,
    #[error("IPv4 and IPv6 disabled")]
    BothDisabled,
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("'domainname' parameter cannot be empty")]
    DomainnameEmpty,
    #[error("'domainname' parameter cannot exceed 255 bytes")]
    DomainnameLong,
    #[error("'vhostname' parameter cannot exceed 255 bytes")]
    HostnameLong,
    #[error("'tftp-server-name' parameter cannot exceed 255 bytes")]
    TftpServerNameLong,
    /// libslirp refuses a name that does not fit BOOTP's 128-byte file field.
    #[error("'bootfile' parameter cannot exceed 127 bytes")]
    BootfileLong,
    #[error("Invalid host forwarding rule '{rule}' ({reason})")]
    HostFwd { rule: String, reason: HostFwdError },
}

/// A user-mode network (libslirp) back end's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNetConfig {
    pub id: Option<String>,
    /// `restrict=on`: the guest reaches only the host forwards and slirp's own services.
    pub restrict: bool,
    pub ipv4: bool,
    pub net: Ipv4Addr,
    pub mask: Ipv4Addr,
    /// The host's (gateway's) address, the guest's view of the host.
    pub host: Ipv4Addr,
    pub dns: Ipv4Addr,
    pub dhcp_start: Ipv4Addr,
    pub ipv6: bool,
    pub ipv6_prefix: Ipv6Addr,
    pub ipv6_prefix_len: u8,
    pub ipv6_host: Ipv6Addr,
    pub ipv6_dns: Ipv6Addr,
    /// Host name DHCP hands the guest.
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub dnssearch: Vec<String>,
    /// Directory the built-in TFTP server exports.
    pub tftp: Option<String>,
    /// BOOTP file name.
    pub bootfile: Option<String>,
    pub tftp_server_name: Option<String>,
    /// Host forwards, in the order written.
    pub hostfwd: Vec<HostFwd>,
    /// Warnings QEMU would print (deprecated spellings); the caller shows them.
    pub warnings: Vec<String>,
}

impl Default for UserNetConfig {
    /// QEMU's defaults: 10.0.2.0/24 and fec0::/64, host .2, DNS .3, DHCP from .15.
    fn default() -> Self {
        let raw = Raw::default();
        let mut config = raw.build(true, true).unwrap_or_else(|_| unreachable!("the defaults are valid"));
        config.id = None;
        config
    }
}

impl UserNetConfig {
    /// What `info network` shows after the back end's id, as QEMU 7.2 prints it.
    pub fn info(&self) -> String {
        format!("net={},restrict={}", self.net, if self.restrict { "on" } else { "off" })
    }
}

/// The options as written, before defaults and checks.
#[derive(Debug, Default)]
struct Raw {
    ty: Option<String>,
    id: Option<String>,
    restrict: Option<bool>,
    ipv4: Option<bool>,
    ipv6: Option<bool>,
    ip: Option<String>,
    net: Option<String>,
    host: Option<String>,
    dns: Option<String>,
    dhcpstart: Option<String>,
    ipv6_prefix: Option<String>,
    ipv6_prefixlen: Option<i64>,
    ipv6_net: Option<String>,
    ipv6_host: Option<String>,
    ipv6_dns: Option<String>,
    hostname: Option<String>,
    domainname: Option<String>,
    tftp: Option<String>,
    bootfile: Option<String>,
    tftp_server_name: Option<String>,
    dnssearch: Vec<String>,
    hostfwd: Vec<String>,
}

/// Parses the text after `-netdev ` or `-net ` (`user,id=n0,...`; the type may also be
/// given as `type=user`). A later scalar option overrides an earlier one; `hostfwd` and
/// `dnssearch` may be repeated.
pub fn parse_user_options(text: &str, spelling: Spelling) -> Result<UserNetConfig, OptionsError> {
    let (opts, warnings) = split(text, "type");
    let mut raw = Raw::default();
    for opt in opts {
        raw.set(&opt.key, opt.value)?;
    }
    match raw.ty.as_deref() {
        None => return Err(OptionsError::MissingType),
        Some("user") => {}
        Some(other) => return Err(OptionsError::NotUser(other.to_string())),
    }
    match raw.id.as_deref() {
        None if spelling == Spelling::Netdev => return Err(OptionsError::MissingId),
        Some(id) if !id_wellformed(id) => return Err(OptionsError::BadId),
        _ => {}
    }
    raw.apply_ipv6_net()?;
    let (ipv4, ipv6) = raw.families();
    let mut config = raw.build(ipv4, ipv6)?;
    config.warnings = warnings;
    Ok(config)
}

/// A boolean option's value.
fn boolean(key: &str, value: &str) -> Result<bool, OptionsError> {
    parse_bool(value).ok_or_else(|| OptionsError::ExpectsBool(key.to_string()))
}

impl Raw {
    /// Records one `key=value`.
    fn set(&mut self, key: &str, value: String) -> Result<(), OptionsError> {
        let slot = match key {
            "type" => &mut self.ty,
            "id" => &mut self.id,
            "restrict" => return boolean(key, &value).map(|b| self.restrict = Some(b)),
            "ipv4" => return boolean(key, &value).map(|b| self.ipv4 = Some(b)),
            "ipv6" => return boolean(key, &value).map(|b| self.ipv6 = Some(b)),
            "ipv6-prefixlen" => {
                let len = strtol_whole(value.as_bytes(), 0).filter(|_| !value.is_empty());
                self.ipv6_prefixlen = Some(len.ok_or(OptionsError::ExpectsInt)?);
                return Ok(());
            }
            "hostfwd" => {
                self.hostfwd.push(value);
                return Ok(());
            }
            "dnssearch" => {
                self.dnssearch.push(value);
                return Ok(());
            }
            "smb" | "smbserver" | "guestfwd" => return Err(OptionsError::Unsupported(key.to_string())),
            _ => self.string_slot(key)?,
        };
        *slot = Some(value);
        Ok(())
    }

    /// Where a plain string option goes.
    fn string_slot(&mut self, key: &str) -> Result<&mut Option<String>, OptionsError> {
        Ok(match key {
            "ip" => &mut self.ip,
            "net" => &mut self.net,
            "host" => &mut self.host,
            "dns" => &mut self.dns,
            "dhcpstart" => &mut self.dhcpstart,
            "ipv6-prefix" => &mut self.ipv6_prefix,
            "ipv6-net" => &mut self.ipv6_net,
            "ipv6-host" => &mut self.ipv6_host,
            "ipv6-dns" => &mut self.ipv6_dns,
            "hostname" => &mut self.hostname,
            "domainname" => &mut self.domainname,
            "tftp" => &mut self.tftp,
            "bootfile" => &mut self.bootfile,
            "tftp-server-name" => &mut self.tftp_server_name,
            _ => return Err(OptionsError::InvalidParameter(key.to_string())),
        })
    }

    /// `ipv6-net=PREFIX[/LEN]` stands for `ipv6-prefix` and `ipv6-prefixlen` (64 when no
    /// length is given), overriding both wherever they were written.
    fn apply_ipv6_net(&mut self) -> Result<(), OptionsError> {
        let Some(net) = self.ipv6_net.take() else { return Ok(()) };
        let (prefix, len) = net.split_once('/').map_or((net.as_str(), None), |(p, l)| (p, Some(l)));
        if net.is_empty() {
            return Err(OptionsError::BadIpv6Net);
        }
        let len = match len {
            None => 64,
            Some(l) => strtol_whole(l.as_bytes(), 10)
                .filter(|_| !l.is_empty())
                .ok_or(OptionsError::BadIpv6NetLen)?,
        };
        self.ipv6_prefix = Some(prefix.to_string());
        self.ipv6_prefixlen = Some(len);
        Ok(())
    }

    /// QEMU's rule: `ipv6=on` alone turns IPv4 off and `ipv4=on` alone turns IPv6 off.
    fn families(&self) -> (bool, bool) {
        let ipv4 = !matches!((self.ipv4, self.ipv6), (None, Some(true)) | (Some(false), _));
        let ipv6 = !matches!((self.ipv4, self.ipv6), (Some(true), None) | (_, Some(false)));
        (ipv4, ipv6)
    }

    /// Applies the defaults and QEMU's checks, in QEMU's order.
    fn build(self, ipv4: bool, ipv6: bool) -> Result<UserNetConfig, OptionsError> {
        let net = self.net.clone().or_else(|| self.ip.as_ref().map(|ip| format!("{ip}/24")));
        if !ipv4 && (net.is_some() || self.host.is_some() || self.dns.is_some()) {
            return Err(OptionsError::Ipv4Disabled);
        }
        if !ipv6 && (self.ipv6_prefix.is_some() || self.ipv6_host.is_some() || self.ipv6_dns.is_some()) {
            return Err(OptionsError::Ipv6Disabled);
        }
        if !ipv4 && !ipv6 {
            return Err(OptionsError::BothDisabled);
        }
        let restrict = self.restrict.unwrap_or(false);
        let v4 = Ipv4Options {
            net: net.as_deref(),
            host: self.host.as_deref(),
            dns: self.dns.as_deref(),
            dhcp_start: self.dhcpstart.as_deref(),
        };
        let v4 = ipv4_plan(&v4, restrict)?;
        let v6 = Ipv6Options {
            prefix: self.ipv6_prefix.as_deref(),
            prefix_len: self.ipv6_prefixlen.unwrap_or(0),
            host: self.ipv6_host.as_deref(),
            dns: self.ipv6_dns.as_deref(),
        };
        let v6 = ipv6_plan(&v6, restrict)?;
        self.check_strings()?;
        let hostfwd = parse_hostfwds(&self.hostfwd)?;
        Ok(UserNetConfig {
            id: self.id,
            restrict,
            ipv4,
            net: v4.net,
            mask: v4.mask,
            host: v4.host,
            dns: v4.dns,
            dhcp_start: v4.dhcp_start,
            ipv6,
            ipv6_prefix: v6.prefix,
            ipv6_prefix_len: v6.prefix_len,
            ipv6_host: v6.host,
            ipv6_dns: v6.dns,
            hostname: self.hostname,
            domainname: self.domainname,
            dnssearch: self.dnssearch,
            tftp: self.tftp,
            bootfile: self.bootfile,
            tftp_server_name: self.tftp_server_name,
            hostfwd,
            warnings: Vec::new(),
        })
    }

    /// QEMU's length checks, and no NUL in what is handed to C.
    fn check_strings(&self) -> Result<(), OptionsError> {
        match self.domainname.as_deref() {
            Some("") => return Err(OptionsError::DomainnameEmpty),
            Some(d) if d.len() > 255 => return Err(OptionsError::DomainnameLong),
            _ => {}
        }
        if self.hostname.as_ref().is_some_and(|h| h.len() > 255) {
            return Err(OptionsError::HostnameLong);
        }
        if self.tftp_server_name.as_ref().is_some_and(|t| t.len() > 255) {
            return Err(OptionsError::TftpServerNameLong);
        }
        if self.bootfile.as_ref().is_some_and(|b| b.len() > 127) {
            return Err(OptionsError::BootfileLong);
        }
        let named = [
            ("hostname", &self.hostname),
            ("domainname", &self.domainname),
            ("tftp", &self.tftp),
            ("bootfile", &self.bootfile),
            ("tftp-server-name", &self.tftp_server_name),
        ];
        let singles = named.into_iter().filter_map(|(k, v)| v.as_deref().map(|v| (k, v)));
        let lists = self.dnssearch.iter().map(|v| ("dnssearch", v.as_str()));
        match singles.chain(lists).find(|(_, v)| v.contains('\0')) {
            Some((key, _)) => Err(OptionsError::Nul(key.to_string())),
            None => Ok(()),
        }
    }
}

/// Parses the rules last to first, as QEMU does (it reports the last bad rule), and
/// returns them in the order written.
fn parse_hostfwds(rules: &[String]) -> Result<Vec<HostFwd>, OptionsError> {
    let mut parsed = rules
        .iter()
        .rev()
        .map(|rule| {
            HostFwd::parse(rule).map_err(|reason| OptionsError::HostFwd {
                rule: rule.clone(),
                reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    parsed.reverse();
    Ok(parsed)
}

#[cfg(test)]
mod tests;
