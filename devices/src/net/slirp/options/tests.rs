use super::*;

fn parse(text: &str) -> Result<UserNetConfig, OptionsError> {
    parse_user_options(text, Spelling::Netdev)
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn defaults_are_qemus() {
    let c = parse("user,id=n0").unwrap();
    assert_eq!(c.id.as_deref(), Some("n0"));
    assert!(!c.restrict && c.ipv4 && c.ipv6);
    assert_eq!((c.net, c.mask), (ip("10.0.2.0"), ip("255.255.255.0")));
    assert_eq!((c.host, c.dns, c.dhcp_start), (ip("10.0.2.2"), ip("10.0.2.3"), ip("10.0.2.15")));
    assert_eq!(c.ipv6_prefix, "fec0::".parse::<Ipv6Addr>().unwrap());
    assert_eq!((c.ipv6_prefix_len, c.ipv6_host), (64, "fec0::2".parse::<Ipv6Addr>().unwrap()));
    assert_eq!(c.info(), "net=10.0.2.0,restrict=off");
    assert!(c.hostfwd.is_empty() && c.warnings.is_empty());
    assert_eq!(
        UserNetConfig {
            id: Some("n0".into()),
            ..UserNetConfig::default()
        },
        c
    );
}

#[test]
fn every_option_lands_in_the_config() {
    let c = parse(
        "user,id=n1,net=192.168.76.0/24,host=192.168.76.1,dns=192.168.76.53,dhcpstart=192.168.76.100,\
         hostname=guest,domainname=example.test,dnssearch=a.test,dnssearch=b.test,restrict=yes,\
         tftp=/srv/tftp,bootfile=pxelinux.0,tftp-server-name=boot,\
         hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp::5353-192.168.76.101:53",
    )
    .unwrap();
    assert_eq!(
        (c.net, c.host, c.dns),
        (ip("192.168.76.0"), ip("192.168.76.1"), ip("192.168.76.53"))
    );
    assert_eq!(c.dhcp_start, ip("192.168.76.100"));
    assert_eq!(
        (c.hostname.as_deref(), c.domainname.as_deref()),
        (Some("guest"), Some("example.test"))
    );
    assert_eq!(c.dnssearch, ["a.test", "b.test"]);
    assert!(c.restrict);
    assert_eq!(c.info(), "net=192.168.76.0,restrict=on");
    assert_eq!((c.tftp.as_deref(), c.bootfile.as_deref()), (Some("/srv/tftp"), Some("pxelinux.0")));
    assert_eq!(c.tftp_server_name.as_deref(), Some("boot"));
    let rules: Vec<_> = c
        .hostfwd
        .iter()
        .map(|r| (r.rule.as_str(), r.udp, r.host_port, r.guest_port))
        .collect();
    assert_eq!(
        rules,
        [
            ("tcp:127.0.0.1:2222-:22", false, 2222, 22),
            ("udp::5353-192.168.76.101:53", true, 5353, 53)
        ]
    );
}

#[test]
fn spellings_of_type_and_id() {
    assert!(parse("type=user,id=n").is_ok());
    assert!(parse("id=n,type=user").is_ok());
    assert_eq!(parse_user_options("user", Spelling::Net).unwrap().id, None);
    assert_eq!(parse_user_options("user,id=x", Spelling::Net).unwrap().id.as_deref(), Some("x"));
    assert_eq!(err("user"), "Parameter 'id' is missing");
    assert_eq!(err("id=n"), "Parameter 'type' is missing");
    assert_eq!(err("tap,id=n"), "network back end type 'tap' is not 'user'");
    for bad in ["user,id=", "user,id=1a", "user,id=a b", "user,id=n,,a"] {
        assert_eq!(err(bad), "Parameter 'id' expects an identifier", "{bad}");
    }
}

#[test]
fn unknown_and_mistyped_parameters() {
    assert_eq!(err("user,id=n,foo=1"), "Invalid parameter 'foo'");
    assert_eq!(err("user,id=n,name=x"), "Invalid parameter 'name'");
    assert_eq!(err("user,id=n,restrict=maybe"), "Parameter 'restrict' expects 'on' or 'off'");
    assert_eq!(err("user,id=n,restrict=ON"), "Parameter 'restrict' expects 'on' or 'off'");
    assert_eq!(err("user,id=n,ipv4=maybe"), "Parameter 'ipv4' expects 'on' or 'off'");
    assert_eq!(
        err("user,id=n,ipv6-prefixlen=x"),
        "Parameter 'ipv6-prefixlen' expects an int64 value"
    );
    assert_eq!(err("user,id=n,smb=/tmp"), "user network option 'smb' is not supported by godwit");
    assert_eq!(
        err("user,id=n,guestfwd=tcp:10.0.2.100:1-cmd:cat"),
        "user network option 'guestfwd' is not supported by godwit"
    );
    for (text, restrict) in [
        ("restrict=y", true),
        ("restrict=true", true),
        ("restrict=no", false),
        ("restrict=on", true),
    ] {
        assert_eq!(parse(&format!("user,id=n,{text}")).unwrap().restrict, restrict, "{text}");
    }
}

#[test]
fn short_form_booleans_are_accepted_with_qemus_warning() {
    let c = parse("user,id=n,restrict").unwrap();
    assert!(c.restrict);
    assert_eq!(
        c.warnings,
        ["short-form boolean option 'restrict' deprecated\nPlease use restrict=on instead"]
    );
    assert!(!parse("user,id=n,restrict=on,norestrict").unwrap().restrict);
}

#[test]
fn address_errors_are_qemus() {
    let cases = [
        ("net=x", "Failed to parse netmask"),
        ("net=10.0.2.0/x", "Failed to parse netmask (trailing chars)"),
        ("net=10.0.2.0/3", "Invalid netmask provided (must be in range 4-32)"),
        ("host=x", "Failed to parse host"),
        ("host=10.0.3.2", "Host doesn't belong to network"),
        ("dns=x", "Failed to parse DNS"),
        ("restrict=on,dns=10.0.3.3", "DNS doesn't belong to network"),
        ("dns=10.0.2.2", "DNS must be different from host"),
        ("dhcpstart=x", "Failed to parse DHCP start address"),
        ("dhcpstart=10.0.3.15", "DHCP doesn't belong to network"),
        ("dhcpstart=10.0.2.3", "DHCP must be different from host and DNS"),
        ("ipv6-net=x", "Failed to parse IPv6 prefix"),
        (
            "ipv6-net=fec0::/200",
            "Invalid IPv6 prefix provided (IPv6 prefix length must be between 0 and 126)",
        ),
        ("ipv6-net=fec0::/x", "Parameter 'ipv6-prefixlen' expects a number"),
        ("ipv6-net=fec0::/", "Parameter 'ipv6-prefixlen' expects a number"),
        ("ipv6-net=", "Parameter 'ipv6-net' expects a valid IPv6 prefix"),
        ("ipv6-host=x", "Failed to parse IPv6 host"),
        ("ipv6-host=fec1::2", "IPv6 Host doesn't belong to network"),
        ("ipv6-dns=x", "Failed to parse IPv6 DNS"),
        ("domainname=", "'domainname' parameter cannot be empty"),
        ("ipv4=off,ipv6=off", "IPv4 and IPv6 disabled"),
        ("ipv4=off,net=10.0.0.0/8", "IPv4 disabled but netmask/host/dns provided"),
        ("ipv6=on,net=10.0.5.0/24", "IPv4 disabled but netmask/host/dns provided"),
        ("ipv6=off,ipv6-net=fec0::/64", "IPv6 disabled but prefix/host6/dns6 provided"),
        ("ipv4=on,ipv6-net=fec0::/64", "IPv6 disabled but prefix/host6/dns6 provided"),
    ];
    for (opts, want) in cases {
        assert_eq!(err(&format!("user,id=n,{opts}")), want, "{opts}");
    }
    let long = "a".repeat(256);
    assert_eq!(
        err(&format!("user,id=n,hostname={long}")),
        "'vhostname' parameter cannot exceed 255 bytes"
    );
    assert_eq!(
        err(&format!("user,id=n,domainname={long}")),
        "'domainname' parameter cannot exceed 255 bytes"
    );
    assert_eq!(
        err(&format!("user,id=n,tftp-server-name={long}")),
        "'tftp-server-name' parameter cannot exceed 255 bytes"
    );
    let long_boot = format!("user,id=n,bootfile={}", &long[..128]);
    assert_eq!(err(&long_boot), "'bootfile' parameter cannot exceed 127 bytes");
    assert!(parse(&format!("user,id=n,bootfile={}", &long[..127])).is_ok());
    assert_eq!(
        err("user,id=n,hostname=a\0b"),
        "Parameter 'hostname' must not contain a NUL character"
    );
}

#[test]
fn changed_networks() {
    let c = parse("user,id=n,net=10.9.0.0/16,dhcpstart=10.9.3.4").unwrap();
    assert_eq!((c.host, c.dns, c.dhcp_start), (ip("10.9.2.2"), ip("10.9.2.3"), ip("10.9.3.4")));
    let c = parse("user,id=n,ip=10.0.5.0").unwrap();
    assert_eq!((c.net, c.dhcp_start), (ip("10.0.5.0"), ip("10.0.5.15")));
    let c = parse("user,id=n,ipv6-net=fd00:1::/48,ipv6-prefixlen=32").unwrap();
    assert_eq!((c.ipv6_prefix_len, c.ipv6_dns), (48, "fd00:1::3".parse::<Ipv6Addr>().unwrap()));
    let c = parse("user,id=n,ipv6=off").unwrap();
    assert!(c.ipv4 && !c.ipv6);
    let c = parse("user,id=n,ipv6=on").unwrap();
    assert!(!c.ipv4 && c.ipv6);
    let c = parse("user,id=n,ipv4=on,ipv6=on").unwrap();
    assert!(c.ipv4 && c.ipv6);
}

#[test]
fn hostfwd_errors_name_the_last_bad_rule_first() {
    assert_eq!(
        err("user,id=n,hostfwd=bogus"),
        "Invalid host forwarding rule 'bogus' (No : separators)"
    );
    assert_eq!(
        err("user,id=n,hostfwd=foo:1:2,hostfwd=tcp::1-:0"),
        "Invalid host forwarding rule 'tcp::1-:0' (Bad guest port)"
    );
    assert_eq!(
        err("user,id=n,hostfwd=tcp::1-:2,,3"),
        "Invalid host forwarding rule 'tcp::1-:2,3' (Bad guest port)"
    );
    // Address errors come before the rules, as in QEMU.
    assert_eq!(err("user,id=n,hostfwd=bogus,host=x"), "Failed to parse host");
}
