//! The table of accepted options and what each does to the configuration.

use super::{CliError, help, parse_size};
use crate::config::{Config, SerialBackend};

pub struct Ctx<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

pub enum Effect {
    None,
    Print(String),
    Serial(SerialBackend),
    NoDefaults,
}

type Apply = fn(&Ctx<'_>, &mut Config) -> Result<Effect, CliError>;

pub struct Opt {
    pub name: &'static str,
    pub takes_value: bool,
    pub apply: Apply,
}

const fn flag(name: &'static str, apply: Apply) -> Opt {
    Opt {
        name,
        takes_value: false,
        apply,
    }
}
const fn arg(name: &'static str, apply: Apply) -> Opt {
    Opt {
        name,
        takes_value: true,
        apply,
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

static OPTIONS: &[Opt] = &[
    flag("enable-kvm", |_, _| Ok(Effect::None)),
    arg("accel", |c, _| accel(c.name, c.value)),
    arg("machine", machine),
    arg("M", machine),
    arg("m", memory),
    arg("smp", smp),
    arg("cpu", cpu),
    arg("kernel", |c, cfg| {
        cfg.kernel = Some(c.value.into());
        Ok(Effect::None)
    }),
    arg("initrd", |c, cfg| {
        cfg.initrd = Some(c.value.into());
        Ok(Effect::None)
    }),
    arg("append", |c, cfg| {
        cfg.append = c.value.to_string();
        Ok(Effect::None)
    }),
    arg("bios", |c, cfg| {
        cfg.bios = Some(c.value.into());
        Ok(Effect::None)
    }),
    flag("nographic", |_, cfg| {
        cfg.nographic = true;
        Ok(Effect::None)
    }),
    arg("display", display),
    flag("nodefaults", |_, _| Ok(Effect::NoDefaults)),
    arg("serial", serial),
    arg("name", |c, cfg| {
        // `-name guest=NAME,process=...` or a bare name.
        let name = c
            .value
            .split(',')
            .find_map(|p| p.strip_prefix("guest="))
            .unwrap_or(c.value.split(',').next().unwrap_or(""));
        cfg.name = Some(name.to_string());
        Ok(Effect::None)
    }),
    flag("S", |_, cfg| {
        cfg.start_paused = true;
        Ok(Effect::None)
    }),
    arg("pidfile", |c, cfg| {
        cfg.pidfile = Some(c.value.into());
        Ok(Effect::None)
    }),
    flag("daemonize", |_, cfg| {
        cfg.daemonize = true;
        Ok(Effect::None)
    }),
    flag("no-reboot", |_, cfg| {
        cfg.no_reboot = true;
        Ok(Effect::None)
    }),
    flag("version", |_, _| Ok(Effect::Print(help::version()))),
    flag("h", |_, _| Ok(Effect::Print(help::usage()))),
    flag("help", |_, _| Ok(Effect::Print(help::usage()))),
    arg("monitor", |c, cfg| {
        cfg.monitors.push(c.value.to_string());
        Ok(Effect::None)
    }),
    arg("netdev", |c, cfg| super::net::netdev(c.value, cfg).map(|()| Effect::None)),
    arg("net", |c, cfg| {
        Ok(match super::net::net(c.value, cfg)? {
            Some(text) => Effect::Print(text),
            None => Effect::None,
        })
    }),
    arg("nic", |c, cfg| super::net::nic(c.value, cfg).map(|()| Effect::None)),
    arg("device", |c, cfg| super::device::device(c.value, cfg).map(|()| Effect::None)),
    arg("qmp", |c, cfg| {
        super::monitors::qmp(c.name, c.value, cfg, false).map(|()| Effect::None)
    }),
    arg("qmp-pretty", |c, cfg| {
        super::monitors::qmp(c.name, c.value, cfg, true).map(|()| Effect::None)
    }),
    arg("chardev", |c, cfg| super::monitors::chardev(c.value, cfg).map(|()| Effect::None)),
    arg("object", |c, cfg| super::object::object(c.value, cfg).map(|()| Effect::None)),
    arg("mon", |c, cfg| super::monitors::mon(c.value, cfg).map(|()| Effect::None)),
    arg("drive", |c, cfg| {
        let d = super::drive::parse(c.value, cfg)?;
        cfg.drives.push(d);
        Ok(Effect::None)
    }),
    arg("hda", |c, cfg| legacy_disk(c, cfg, 0)),
    arg("hdb", |c, cfg| legacy_disk(c, cfg, 1)),
    arg("hdc", |c, cfg| legacy_disk(c, cfg, 2)),
    arg("hdd", |c, cfg| legacy_disk(c, cfg, 3)),
    arg("incoming", |c, cfg| {
        if crate::migration::uri::parse(c.value).is_none() {
            return err(format!("-incoming {}: unknown migration protocol: {}", c.value, c.value));
        }
        cfg.incoming = Some(c.value.to_string());
        Ok(Effect::None)
    }),
    arg("loadvm", |c, cfg| {
        cfg.loadvm = Some(c.value.to_string());
        Ok(Effect::None)
    }),
    arg("add-fd", |c, cfg| super::fdset::add_fd(c.value, cfg).map(|()| Effect::None)),
    arg("uuid", |c, cfg| super::system::uuid(c.value, cfg).map(|()| Effect::None)),
    arg("rtc", |c, _| super::system::rtc(c.value).map(|()| Effect::None)),
    arg("boot", |c, _| super::system::boot(c.value).map(|()| Effect::None)),
    arg("overcommit", |c, _| super::system::overcommit(c.value).map(|()| Effect::None)),
    arg("audiodev", |c, _| super::system::audiodev(c.value).map(|()| Effect::None)),
    arg("msg", |c, cfg| super::system::msg(c.value, cfg).map(|()| Effect::None)),
    arg("sandbox", |c, _| super::system::sandbox(c.value).map(|()| Effect::None)),
    flag("no-shutdown", |_, cfg| {
        cfg.no_shutdown = true;
        Ok(Effect::None)
    }),
    // godwit has no ACPI tables and reads no configuration files of its own.
    flag("no-acpi", |_, _| Ok(Effect::None)),
    flag("no-user-config", |_, _| Ok(Effect::None)),
    // What libvirt writes for a disk (with `-device virtio-blk-pci,drive=NODE`).
    arg("blockdev", |c, cfg| super::blockdev::blockdev(c.value, cfg).map(|()| Effect::None)),
];

fn legacy_disk(c: &Ctx<'_>, cfg: &mut Config, index: usize) -> Result<Effect, CliError> {
    cfg.drives.push(super::drive::legacy(c.value, index));
    Ok(Effect::None)
}

pub fn lookup(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name == name)
}

fn accel(opt: &str, value: &str) -> Result<Effect, CliError> {
    let kind = value.split(',').next().unwrap_or("");
    match kind {
        // A list (`kvm:tcg`, as libvirt's probe asks) takes the first that works: KVM.
        "kvm" => Ok(Effect::None),
        _ if kind.contains(':') && kind.split(':').any(|k| k == "kvm") => Ok(Effect::None),
        "help" => Ok(Effect::Print("Accelerators supported in godwit:\nkvm\n".into())),
        _ => err(format!("-{opt} {value}: invalid accelerator {kind} (godwit runs on KVM only)")),
    }
}

/// Machine names godwit answers to. It has one machine: a legacy PC (8259 PIC, IOAPIC, PIT,
/// 8250, i8042, CMOS RTC) with a PCI host bridge on configuration mechanism #1.
const MACHINE_ALIASES: &[&str] = &["pc", "q35", "godwit"];

fn machine(c: &Ctx<'_>, cfg: &mut Config) -> Result<Effect, CliError> {
    let mut kind = None;
    for (i, part) in c.value.split(',').enumerate() {
        let (k, v) = part.split_once('=').unwrap_or(if i == 0 { ("type", part) } else { (part, "on") });
        match k {
            "type" => kind = Some(v),
            "accel" => {
                accel(c.name, v).map_err(|_| {
                    CliError(format!(
                        "-{} {}: invalid accelerator {v} (godwit runs on KVM only)",
                        c.name, c.value
                    ))
                })?;
            }
            "memory-backend" => cfg.memory_backend = Some(v.to_string()),
            // Accepted QEMU machine properties that change nothing in godwit.
            "usb" | "vmport" | "dump-guest-core" | "mem-merge" | "kernel-irqchip" | "hpet" | "smm" => {}
            _ => {
                return err(format!(
                    "-{} {}: Property '{k}' not found (godwit's machine has no such option)",
                    c.name, c.value
                ));
            }
        }
    }
    let Some(kind) = kind else { return Ok(Effect::None) };
    if kind == "help" || kind == "?" {
        return Ok(Effect::Print(help::machines()));
    }
    let known = kind == "none"
        || MACHINE_ALIASES.contains(&kind)
        || kind.starts_with("pc-i440fx-")
        || kind.starts_with("pc-q35-")
        || kind.starts_with("pc-");
    if !known {
        return err(format!(
            "unsupported machine type '{kind}': use -machine help to list supported machines"
        ));
    }
    if kind == "q35" || kind.starts_with("pc-q35-") {
        cfg.warnings.push(format!(
            "-machine {kind}: godwit runs its one PC machine (8259/IOAPIC, PCI on 0xCF8), without a Q35 chipset or PCI Express"
        ));
    }
    cfg.machine = kind.to_string();
    Ok(Effect::None)
}

fn memory(c: &Ctx<'_>, cfg: &mut Config) -> Result<Effect, CliError> {
    let mut size = None;
    for (i, part) in c.value.split(',').enumerate() {
        match part.split_once('=') {
            Some(("size", v)) => size = Some(v),
            None if i == 0 => size = Some(part),
            Some(("slots" | "maxmem", _)) => {
                return err(format!("-m {}: memory hotplug (slots, maxmem) is not supported", c.value));
            }
            _ => {
                return err(format!(
                    "-m {}: Invalid parameter '{}'",
                    c.value,
                    part.split('=').next().unwrap_or(part)
                ));
            }
        }
    }
    let Some(text) = size else {
        return err(format!("-m {}: missing 'size'", c.value));
    };
    let bytes = parse_size(text, 1 << 20)
        .ok_or_else(|| CliError(format!("-m {}: Parameter 'size' expects a non-negative number below 2^64", c.value)))?;
    if bytes < 2 << 20 {
        return err(format!("-m {}: memory size must be at least 2 MiB", c.value));
    }
    // Page-align like QEMU does, so memory slots are whole pages.
    cfg.mem_size = bytes.div_ceil(4096) * 4096;
    cfg.mem_given = true;
    Ok(Effect::None)
}

/// Most vCPUs godwit's MP table and xAPIC ids can describe.
pub const MAX_VCPUS: u64 = 254;

fn smp(c: &Ctx<'_>, cfg: &mut Config) -> Result<Effect, CliError> {
    let mut cpus = None;
    let mut topo = 1u64;
    let mut topo_given = false;
    for (i, part) in c.value.split(',').enumerate() {
        let (k, v) = part.split_once('=').unwrap_or(if i == 0 { ("cpus", part) } else { (part, "") });
        let n: u64 = v.parse().map_err(|_| CliError(format!("Parameter 'smp.{k}' expects integer")))?;
        match k {
            "cpus" => cpus = Some(n),
            "sockets" | "dies" | "clusters" | "cores" | "threads" => {
                topo = topo.saturating_mul(n);
                topo_given = true;
            }
            "maxcpus" => {}
            _ => return err(format!("-smp {}: Invalid parameter '{k}'", c.value)),
        }
    }
    let n = cpus.unwrap_or(if topo_given { topo } else { 1 });
    if n == 0 {
        return err(format!(
            "Invalid SMP CPUs 0. The min CPUs supported by machine '{}' is 1",
            cfg.machine
        ));
    }
    if n > MAX_VCPUS {
        return err(format!(
            "Invalid SMP CPUs {n}. The max CPUs supported by machine '{}' is {MAX_VCPUS}",
            cfg.machine
        ));
    }
    cfg.vcpus = n as u8;
    Ok(Effect::None)
}

/// CPU model names accepted by `-cpu`. Whatever the name, the guest sees the CPUID features
/// KVM supports on this host (as `-cpu host` would), which keeps migration between like hosts
/// simple; see `-cpu help`.
pub const CPU_MODELS: &[&str] = &[
    "host",
    "max",
    "base",
    "qemu64",
    "qemu32",
    "kvm64",
    "kvm32",
    "pentium",
    "pentium2",
    "pentium3",
    "coreduo",
    "core2duo",
    "n270",
    "athlon",
    "phenom",
    "Conroe",
    "Penryn",
    "Nehalem",
    "Westmere",
    "SandyBridge",
    "IvyBridge",
    "Haswell",
    "Broadwell",
    "Skylake-Client",
    "Skylake-Server",
    "Cascadelake-Server",
    "Cooperlake",
    "Icelake-Server",
    "SapphireRapids",
    "Opteron_G1",
    "Opteron_G2",
    "Opteron_G3",
    "Opteron_G4",
    "Opteron_G5",
    "EPYC",
    "EPYC-Rome",
    "EPYC-Milan",
    "EPYC-Genoa",
];

/// Whether `-cpu` takes `model`: versioned names such as `Skylake-Client-v4` or
/// `EPYC-IBPB` map to their base model.
pub fn known_cpu_model(model: &str) -> bool {
    CPU_MODELS
        .iter()
        .any(|m| model == *m || model.strip_prefix(m).is_some_and(|rest| rest.starts_with('-')))
}

fn cpu(c: &Ctx<'_>, cfg: &mut Config) -> Result<Effect, CliError> {
    let model = c.value.split(',').next().unwrap_or("");
    if model == "help" || model == "?" {
        return Ok(Effect::Print(help::cpu_models()));
    }
    if !known_cpu_model(model) {
        return err(format!("unable to find CPU model '{model}'"));
    }
    cfg.cpu_model = model.to_string();
    Ok(Effect::None)
}

fn display(c: &Ctx<'_>, _: &mut Config) -> Result<Effect, CliError> {
    match c.value.split(',').next().unwrap_or("") {
        "none" => Ok(Effect::None),
        "gtk" | "sdl" | "vnc" | "curses" | "egl-headless" | "spice-app" | "dbus" | "cocoa" => err(format!(
            "-display {}: godwit has no graphical display (use -display none or -nographic)",
            c.value
        )),
        other => err(format!("-display {}: Parameter 'type' does not accept value '{other}'", c.value)),
    }
}

fn serial(c: &Ctx<'_>, _: &mut Config) -> Result<Effect, CliError> {
    let v = c.value;
    let backend = match v {
        "stdio" => SerialBackend::Stdio { mux: false },
        "mon:stdio" => SerialBackend::Stdio { mux: true },
        "pty" => SerialBackend::Pty,
        "none" | "null" => SerialBackend::Null,
        _ => match v.strip_prefix("file:") {
            Some(path) if !path.is_empty() => SerialBackend::File(path.into()),
            _ => return err(format!("-serial {v}: '{v}' is not a valid char driver")),
        },
    };
    Ok(Effect::Serial(backend))
}
