//! The network options in QEMU's spellings: `-netdev tap|user,id=..`, `-device
//! virtio-net-pci,netdev=..`, the legacy `-net nic` / `-net tap|user|none` (on hub 0), and
//! `-nic TYPE[,model=..,mac=..]`. Every NIC is a virtio-net PCI function: a NIC whose model
//! is left out (QEMU would make an e1000) becomes one with a warning; another model is
//! refused. What refers to what is resolved once the whole command line is read
//! ([`finish`]): ids, the hub, default MAC addresses and QEMU's default NIC.

use super::CliError;
use super::drive::split_options;
use crate::config::{Config, MacAddr, NetdevConfig, NetdevKind, NicConfig, TapConfig};
use devices::net::slirp::{Spelling, parse_user_options};

/// The only NIC model godwit has, by its QEMU names.
const MODEL: &str = "virtio-net-pci";

fn err<T>(spec: &str, msg: impl std::fmt::Display) -> Result<T, CliError> {
    Err(CliError(format!("{spec}: {msg}")))
}

/// `KEY=VALUE` pairs after the leading type word (or a `type=` pair).
fn pairs(value: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut ty = None;
    let mut out = Vec::new();
    for (i, part) in split_options(value).into_iter().enumerate() {
        match part.split_once('=') {
            Some(("type", v)) => ty = Some(v.to_string()),
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None if i == 0 => ty = Some(part),
            None => out.push((part, String::new())),
        }
    }
    (ty, out)
}

fn on_off(spec: &str, k: &str, v: &str) -> Result<bool, CliError> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => err(spec, format!("Parameter '{k}' expects 'on' or 'off'")),
    }
}

/// A made-up back-end id for `-net` and `-nic`, as QEMU's `#netN`.
fn generated_id(cfg: &Config) -> String {
    format!("#net{:03}", cfg.netdevs.len())
}

/// `tap` options (the netdev's own `id` is set by the caller).
fn tap(spec: &str, opts: &[(String, String)], id: &str) -> Result<TapConfig, CliError> {
    let mut t = TapConfig {
        id: id.to_string(),
        ..TapConfig::default()
    };
    for (k, v) in opts {
        match k.as_str() {
            "id" | "name" => {}
            "ifname" => t.ifname = Some(v.clone()),
            "script" => t.script = Some(v.clone()),
            "downscript" => t.downscript = Some(v.clone()),
            "fd" => t.fd = Some(v.clone()),
            "vnet_hdr" => t.vnet_hdr = Some(on_off(spec, k, v)?),
            "vhost" if !on_off(spec, k, v)? => {}
            "vhost" | "vhostforce" | "vhostfd" | "vhostfds" => {
                return err(spec, "godwit has no vhost-net: the NIC is served in godwit itself (use vhost=off)");
            }
            "queues" if v == "1" => {}
            "queues" | "fds" => return err(spec, "godwit's NIC has one queue pair"),
            "helper" | "br" => return err(spec, format!("'{k}' is not supported by godwit (use ifname= and script=)")),
            "sndbuf" | "poll-us" => {}
            _ => return err(spec, format!("Invalid parameter '{k}'")),
        }
    }
    Ok(t)
}

/// A back end from `TYPE,OPTIONS` (`-netdev`, `-net` and `-nic` share them).
fn backend(spec: &str, value: &str, ty: &str, id: &str, spelling: Spelling) -> Result<NetdevKind, CliError> {
    let (_, opts) = pairs(value);
    match ty {
        "tap" => Ok(NetdevKind::Tap(tap(spec, &opts, id)?)),
        "user" => {
            let mut user = parse_user_options(value, spelling).map_err(|e| CliError(format!("{spec}: {e}")))?;
            user.id = Some(id.to_string());
            Ok(NetdevKind::User(user))
        }
        _ => err(spec, format!("Parameter 'type' does not accept value '{ty}'")),
    }
}

/// `-netdev TYPE,id=ID,...`.
pub fn netdev(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let spec = format!("-netdev {value}");
    let (ty, opts) = pairs(value);
    let ty = ty.unwrap_or_default();
    let id = opts.iter().find(|(k, _)| k == "id").map(|(_, v)| v.clone());
    let Some(id) = id else {
        return err(&spec, "Parameter 'id' is missing");
    };
    if cfg.netdevs.iter().any(|n| n.id == id) {
        return err(&spec, format!("Duplicate ID '{id}' for netdev"));
    }
    let kind = backend(&spec, value, &ty, &id, Spelling::Netdev)?;
    cfg.net_given = true;
    cfg.netdevs.push(NetdevConfig {
        id,
        kind,
        spec,
        hub: false,
    });
    Ok(())
}

/// The model a NIC option names, checked: godwit's virtio-net, or nothing (with a note).
fn model(spec: &str, given: Option<&str>, cfg: &mut Config) -> Result<(), CliError> {
    match given {
        None => {
            cfg.warnings.push(format!(
                "{spec}: no NIC model given; godwit's NIC is {MODEL} (QEMU would make an e1000)"
            ));
            Ok(())
        }
        Some("virtio" | "virtio-net-pci" | "virtio-net") => Ok(()),
        Some(other) => Err(CliError(format!(
            "Unsupported NIC model: {other} (godwit has {MODEL} only: use model=virtio)"
        ))),
    }
}

/// The name QEMU gives a NIC without `id=`: its model and its index among them.
fn nic_name(cfg: &Config) -> String {
    format!("{MODEL}.{}", cfg.nics.len())
}

fn parse_mac(spec: &str, v: &str, device: bool) -> Result<MacAddr, CliError> {
    v.parse().or_else(|_| {
        if device {
            err(spec, format!("Property 'virtio-net-device.mac' doesn't take value '{v}'"))
        } else {
            err(spec, "invalid syntax for ethernet address")
        }
    })
}

/// `-net nic|tap|user|none,...`: everything joins hub 0. `model=help` asks for a listing
/// to print instead.
pub fn net(value: &str, cfg: &mut Config) -> Result<Option<String>, CliError> {
    let spec = format!("-net {value}");
    let (ty, opts) = pairs(value);
    cfg.net_given = true;
    match ty.as_deref().unwrap_or("") {
        "none" => Ok(None),
        "nic" => {
            let (mut mac, mut name, mut model_given) = (None, None, None);
            for (k, v) in &opts {
                match k.as_str() {
                    "macaddr" => mac = Some(parse_mac(&spec, v, false)?),
                    "model" if v == "help" || v == "?" => return Ok(Some(format!("Supported NIC models:\n{MODEL}\n"))),
                    "model" => model_given = Some(v.clone()),
                    "name" | "id" => name = Some(v.clone()),
                    "addr" | "vectors" => {}
                    _ => return err(&spec, format!("Invalid parameter '{k}'")),
                }
            }
            model(&spec, model_given.as_deref(), cfg)?;
            let name = name.unwrap_or_else(|| nic_name(cfg));
            cfg.nics.push(NicConfig {
                name,
                qdev_id: String::new(),
                mac,
                netdev: None,
                hub: true,
                spec,
            });
            Ok(None)
        }
        ty @ ("tap" | "user") => {
            let id = opts
                .iter()
                .find(|(k, _)| k == "id" || k == "name")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| generated_id(cfg));
            let kind = backend(&spec, value, ty, &id, Spelling::Net)?;
            cfg.netdevs.push(NetdevConfig { id, kind, spec, hub: true });
            Ok(None)
        }
        other => err(&spec, format!("Parameter 'type' does not accept value '{other}'")),
    }
}

/// `-nic TYPE[,model=..,mac=..,BACK-END OPTIONS]`: a NIC with its own back end.
pub fn nic(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let spec = format!("-nic {value}");
    let (ty, opts) = pairs(value);
    cfg.net_given = true;
    let ty = ty.unwrap_or_else(|| "user".into());
    if ty == "none" {
        return Ok(());
    }
    let (mut mac, mut model_given, mut rest) = (None, None, Vec::new());
    for (k, v) in &opts {
        match k.as_str() {
            "mac" => mac = Some(parse_mac(&spec, v, true)?),
            "model" => model_given = Some(v.clone()),
            _ => rest.push(if v.is_empty() { k.clone() } else { format!("{k}={v}") }),
        }
    }
    model(&spec, model_given.as_deref(), cfg)?;
    let id = generated_id(cfg);
    let backend_text = std::iter::once(ty.clone()).chain(rest).collect::<Vec<_>>().join(",");
    let kind = backend(&spec, &backend_text, &ty, &id, Spelling::Net)?;
    cfg.netdevs.push(NetdevConfig {
        id: id.clone(),
        kind,
        spec: spec.clone(),
        hub: false,
    });
    let name = nic_name(cfg);
    cfg.nics.push(NicConfig {
        name,
        qdev_id: String::new(),
        mac,
        netdev: Some(id),
        hub: false,
        spec,
    });
    Ok(())
}

/// `-device virtio-net-pci,netdev=ID[,mac=..][,id=..]`.
pub fn device(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let spec = format!("-device {value}");
    let (driver, opts) = pairs(value);
    let driver = driver.unwrap_or_default();
    if !matches!(driver.as_str(), "virtio-net-pci" | "virtio-net") {
        return err(
            &spec,
            format!("'{driver}' is not a device godwit has (it has virtio-net-pci and isa-serial)"),
        );
    }
    let (mut mac, mut netdev, mut id) = (None, None, None);
    for (k, v) in &opts {
        match k.as_str() {
            "mac" => mac = Some(parse_mac(&spec, v, true)?),
            "netdev" => netdev = Some(v.clone()),
            "id" => id = Some(v.clone()),
            // Placement and firmware: godwit places functions itself and boots no ROM.
            "bus" | "addr" | "romfile" | "rombar" | "bootindex" => {}
            _ => return err(&spec, format!("Property '{driver}.{k}' not found")),
        }
    }
    cfg.net_given = true;
    let name = id.clone().unwrap_or_else(|| nic_name(cfg));
    cfg.nics.push(NicConfig {
        name,
        qdev_id: id.unwrap_or_default(),
        mac,
        netdev,
        hub: false,
        spec,
    });
    Ok(())
}

/// Once every option is read: QEMU's default NIC (`-net nic -net user`) when no network
/// option was given, the hub joined, every `netdev=` resolved, default MACs handed out.
pub fn finish(cfg: &mut Config, nodefaults: bool) -> Result<(), CliError> {
    if !cfg.net_given && !nodefaults {
        let user = devices::net::slirp::UserNetConfig {
            id: Some(generated_id(cfg)),
            ..Default::default()
        };
        cfg.netdevs.push(NetdevConfig {
            id: user.id.clone().unwrap_or_default(),
            kind: NetdevKind::User(user),
            spec: "-net user".into(),
            hub: true,
        });
        cfg.nics.push(NicConfig {
            name: nic_name(cfg),
            qdev_id: String::new(),
            mac: None,
            netdev: None,
            hub: true,
            spec: "-net nic".into(),
        });
    }
    join_hub(cfg)?;
    resolve(cfg)?;
    let mut next = 0u8;
    for n in &mut cfg.nics {
        if n.mac.is_none() {
            let mut mac = MacAddr::QEMU_DEFAULT;
            mac.0[5] = mac.0[5].wrapping_add(next);
            next = next.wrapping_add(1);
            n.mac = Some(mac);
        }
    }
    Ok(())
}

/// Hub 0 joins the `-net` NICs and back ends. godwit wires one NIC to one back end; a hub
/// with more of either is refused rather than half-built.
fn join_hub(cfg: &mut Config) -> Result<(), CliError> {
    let nics = cfg.nics.iter().filter(|n| n.hub).count();
    let backends: Vec<String> = cfg.netdevs.iter().filter(|n| n.hub).map(|n| n.id.clone()).collect();
    if nics > 1 || backends.len() > 1 {
        return Err(CliError(
            "-net: godwit joins one NIC and one back end on hub 0; use -netdev with -device (or -nic) for more".into(),
        ));
    }
    match (nics, backends.first()) {
        (0, Some(_)) => cfg.warnings.push("hub 0 with no nics".into()),
        (1, None) => {
            cfg.warnings.push("hub 0 is not connected to host network".into());
            let id = generated_id(cfg);
            cfg.netdevs.push(NetdevConfig {
                id: id.clone(),
                kind: NetdevKind::Null,
                spec: "-net".into(),
                hub: true,
            });
            if let Some(n) = cfg.nics.iter_mut().find(|n| n.hub) {
                n.netdev = Some(id);
            }
        }
        (1, Some(id)) => {
            if let Some(n) = cfg.nics.iter_mut().find(|n| n.hub) {
                n.netdev = Some(id.clone());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every NIC's back end exists and is used by that NIC alone; unused ones are noted.
fn resolve(cfg: &mut Config) -> Result<(), CliError> {
    let mut used: Vec<&str> = Vec::new();
    for n in &cfg.nics {
        let Some(id) = n.netdev.as_deref() else { continue };
        if !cfg.netdevs.iter().any(|d| d.id == id) {
            return err(&n.spec, format!("Property 'virtio-net-device.netdev' can't find value '{id}'"));
        }
        if used.contains(&id) {
            return err(
                &n.spec,
                format!("Property 'virtio-net-device.netdev' can't take value '{id}', it's in use"),
            );
        }
        used.push(id);
    }
    let unused: Vec<String> = cfg
        .netdevs
        .iter()
        .filter(|d| !d.hub && !used.contains(&d.id.as_str()))
        .map(|d| format!("netdev {} has no peer", d.id))
        .collect();
    cfg.warnings.extend(unused);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Action, parse};

    fn run(args: &str) -> Result<Config, CliError> {
        match parse(args.split_whitespace().map(String::from))? {
            Action::Run(c) => Ok(*c),
            Action::Print(t) => Err(CliError(format!("printed {t}"))),
        }
    }

    fn macs(c: &Config) -> Vec<String> {
        c.nics.iter().map(|n| n.mac.unwrap().to_string()).collect()
    }

    #[test]
    fn spellings() {
        let c = run("-kernel k -netdev user,id=n0 -device virtio-net-pci,netdev=n0,id=foo -nic user,mac=52:54:00:aa:bb:cc").unwrap();
        assert_eq!(c.nics.len(), 2);
        assert_eq!((c.nics[0].name.as_str(), c.nics[1].name.as_str()), ("foo", "virtio-net-pci.1"));
        assert_eq!(macs(&c), ["52:54:00:12:34:56", "52:54:00:aa:bb:cc"]);
        let c = run("-kernel k -net nic,model=virtio -net user,hostfwd=tcp::5555-:22").unwrap();
        assert_eq!(c.nics[0].netdev.as_deref(), Some(c.netdevs[0].id.as_str()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = run("-kernel k -net nic -net tap,ifname=tap7,script=no").unwrap();
        assert!(c.warnings[0].contains("QEMU would make an e1000"));
        assert!(matches!(&c.netdevs[0].kind, NetdevKind::Tap(t) if t.ifname.as_deref() == Some("tap7")));
        // QEMU's default: a NIC on user networking, unless told otherwise.
        let c = run("-kernel k").unwrap();
        assert_eq!((c.nics.len(), macs(&c)[0].as_str()), (1, "52:54:00:12:34:56"));
        assert!(matches!(c.netdevs[0].kind, NetdevKind::User(_)));
        assert!(run("-kernel k -nodefaults").unwrap().nics.is_empty());
        assert!(run("-kernel k -net none").unwrap().nics.is_empty());
        let c = run("-kernel k -net nic,model=virtio").unwrap();
        assert_eq!(c.warnings, ["hub 0 is not connected to host network"]);
        assert!(matches!(c.netdevs[0].kind, NetdevKind::Null));
        // Default MACs count only NICs without one.
        let c = run("-kernel k -nic user,mac=02:00:00:00:00:01 -nic user -nic user").unwrap();
        assert_eq!(macs(&c)[1..], ["52:54:00:12:34:56", "52:54:00:12:34:57"]);
    }

    #[test]
    fn errors_in_qemus_words() {
        let e = |a: &str| run(&format!("-kernel k {a}")).unwrap_err().0;
        assert_eq!(
            e("-device virtio-net-pci,netdev=nope"),
            "-device virtio-net-pci,netdev=nope: Property 'virtio-net-device.netdev' can't find value 'nope'"
        );
        assert_eq!(
            e("-netdev user,id=n0 -netdev user,id=n0"),
            "-netdev user,id=n0: Duplicate ID 'n0' for netdev"
        );
        assert!(e("-netdev user,id=n0 -device virtio-net-pci,netdev=n0 -device virtio-net-pci,netdev=n0").ends_with("it's in use"));
        assert_eq!(
            e("-net nic,macaddr=zz -net user"),
            "-net nic,macaddr=zz: invalid syntax for ethernet address"
        );
        assert!(e("-net nic,model=e1000 -net user").starts_with("Unsupported NIC model: e1000"));
        assert_eq!(
            e("-netdev bogus,id=x"),
            "-netdev bogus,id=x: Parameter 'type' does not accept value 'bogus'"
        );
        assert_eq!(e("-netdev user"), "-netdev user: Parameter 'id' is missing");
        assert!(e("-netdev tap,id=t,vhost=on").contains("godwit has no vhost-net"));
        assert!(e("-net nic -net nic -net user").contains("one NIC and one back end on hub 0"));
        assert!(e("-netdev user,id=n,hostfwd=bogus").contains("Invalid host forwarding rule 'bogus'"));
        assert!(e("-device virtio-net-pci,netdev=n,bogus=1 -netdev user,id=n").contains("Property 'virtio-net-pci.bogus' not found"));
        assert!(matches!(parse(["-net".into(), "nic,model=help".into()]), Ok(Action::Print(t)) if t.contains("virtio-net-pci")));
    }
}
