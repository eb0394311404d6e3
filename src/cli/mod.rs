//! The command line, in QEMU's spelling.
//!
//! Options take one dash or two (`-m`, `--m`), and a value as the next argument. Errors
//! read like QEMU's: `-foo: invalid option`, `-m: requires an argument`.

pub mod blockdev;
mod device;
mod drive;
mod fdset;
mod help;
mod json;
mod monitors;
mod net;
mod object;
mod options;
mod serial;
mod size;
mod system;

pub use options::{CPU_MODELS, MAX_VCPUS, known_cpu_model};
pub use size::parse_size;

use crate::config::Config;
use thiserror::Error;

/// A command-line error; `Display` is the whole line after `godwit: `.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CliError(pub String);

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    Run(Box<Config>),
    /// Print this text on stdout and exit 0 (`-version`, `-h`, `-cpu help`, ...).
    Print(String),
}

/// Parses `args` (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Action, CliError> {
    let mut cfg = Config::default();
    let mut serial: Option<crate::config::SerialBackend> = None;
    let mut nodefaults = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            // A bare path is the first hard disk, as in QEMU.
            let d = drive::legacy(&arg, 0);
            cfg.drives.push(d);
            continue;
        };
        let opt = options::lookup(name).ok_or_else(|| CliError(format!("-{name}: invalid option")))?;
        let value = if opt.takes_value {
            Some(args.next().ok_or_else(|| CliError(format!("-{name}: requires an argument")))?)
        } else {
            None
        };
        let ctx = options::Ctx {
            name,
            value: value.as_deref().unwrap_or(""),
        };
        match (opt.apply)(&ctx, &mut cfg)? {
            options::Effect::None => {}
            options::Effect::Print(text) => return Ok(Action::Print(text)),
            options::Effect::Serial(s) => {
                if serial.is_some() {
                    return Err(CliError(format!("-serial {}: godwit has one serial port (COM1)", ctx.value)));
                }
                serial = Some(s);
            }
            options::Effect::NoDefaults => nodefaults = true,
        }
    }
    if let Some(s) = serial::finish(&mut cfg, &serial)? {
        serial = Some(s);
    }
    object::finish(&mut cfg)?;
    cfg.serial = match serial {
        Some(s) => s,
        None if cfg.nographic && !nodefaults => crate::config::SerialBackend::Stdio { mux: true },
        None => crate::config::SerialBackend::Null,
    };
    monitors::finish(&mut cfg)?;
    check_stdio(&mut cfg)?;
    net::finish(&mut cfg, nodefaults)?;
    if cfg.incoming.is_some() && cfg.loadvm.is_some() {
        return Err(CliError("'incoming' and 'loadvm' options are mutually exclusive".into()));
    }
    if cfg.machine == "none" {
        // No guest: the process serves its monitors (what libvirt's capability probe runs).
        return Ok(Action::Run(Box::new(cfg)));
    }
    if cfg.kernel.is_none() && cfg.bios.is_none() {
        return Err(CliError(
            "no -kernel or -bios given: godwit boots a kernel directly or runs the firmware you name".into(),
        ));
    }
    if cfg.kernel.is_some() && cfg.bios.is_some() {
        return Err(CliError(
            "-kernel and -bios together are not supported: godwit loads kernels itself".into(),
        ));
    }
    if cfg.kernel.is_none() && (cfg.initrd.is_some() || !cfg.append.is_empty()) {
        return Err(CliError("-initrd and -append only work with -kernel".into()));
    }
    Ok(Action::Run(Box::new(cfg)))
}

/// Only one character device may own the terminal (QEMU's rule); a `mon:stdio` monitor
/// next to a `mon:stdio` serial port is the same multiplexer, listed once.
fn check_stdio(cfg: &mut Config) -> Result<(), CliError> {
    use crate::config::SerialBackend::Stdio;
    if cfg.serial == (Stdio { mux: true }) {
        cfg.monitors.retain(|m| m != "mon:stdio");
    }
    let serial_stdio = matches!(cfg.serial, Stdio { .. });
    let monitors_stdio = cfg.monitors.iter().filter(|m| *m == "stdio" || *m == "mon:stdio").count()
        + cfg
            .extra_monitors
            .iter()
            .filter(|m| matches!(m.spec, Some(monitor::ChardevSpec::Stdio { .. })))
            .count();
    if monitors_stdio + usize::from(serial_stdio) > 1 {
        return Err(CliError("cannot use stdio by multiple character devices".into()));
    }
    if cfg.daemonize {
        if serial_stdio {
            let what = if cfg.nographic { "-nographic" } else { "-serial stdio" };
            return Err(CliError(format!("{what} cannot be used with -daemonize")));
        }
        if let Some(m) = cfg.monitors.iter().find(|m| *m == "stdio" || *m == "mon:stdio") {
            return Err(CliError(format!("-monitor {m}: cannot use stdio with -daemonize")));
        }
    }
    Ok(())
}

/// Parses a whitespace-separated command line as the tests write them: the
/// configuration, or the one-line error (or what would be printed).
#[cfg(test)]
pub(crate) fn test_line(line: &str) -> Result<Config, String> {
    match parse(line.split_whitespace().map(String::from)) {
        Ok(Action::Run(c)) => Ok(*c),
        Ok(Action::Print(t)) => Err(format!("printed: {t}")),
        Err(e) => Err(e.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SerialBackend;

    fn run(line: &str) -> Result<Config, String> {
        super::test_line(line)
    }

    #[test]
    fn qemu_style_line() {
        let c = run("-enable-kvm -machine pc,accel=kvm -m 2G -smp 2 -cpu host -kernel k -initrd i -append console=ttyS0 -nographic -name vm1 -S -no-reboot").unwrap();
        assert_eq!(c.mem_size, 2 << 30);
        assert_eq!(c.vcpus, 2);
        assert_eq!(c.kernel.as_deref(), Some(std::path::Path::new("k")));
        assert_eq!(c.append, "console=ttyS0");
        assert_eq!(c.serial, SerialBackend::Stdio { mux: true });
        assert!(c.start_paused && c.no_reboot);
        assert_eq!(c.name.as_deref(), Some("vm1"));
        assert!(c.warnings.is_empty());
        let q = run("-machine q35 -kernel k").unwrap();
        assert_eq!(q.warnings.len(), 1);
        assert!(q.warnings[0].contains("without a Q35 chipset"), "{:?}", q.warnings);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(run("-m 256 -kernel k").unwrap().mem_size, 256 << 20);
        assert_eq!(run("-m size=1024 -kernel k").unwrap().mem_size, 1 << 30);
        assert_eq!(run("--m 1G -kernel k").unwrap().mem_size, 1 << 30);
        assert_eq!(run("-m 0 -kernel k").unwrap_err(), "-m 0: memory size must be at least 2 MiB");
        assert_eq!(
            run("-m abc -kernel k").unwrap_err(),
            "-m abc: Parameter 'size' expects a non-negative number below 2^64"
        );
        assert_eq!(
            run("-m size=1G,maxmem=4G -kernel k").unwrap_err(),
            "-m size=1G,maxmem=4G: memory hotplug (slots, maxmem) is not supported"
        );
    }

    #[test]
    fn errors_read_like_qemu() {
        assert_eq!(run("-foo").unwrap_err(), "-foo: invalid option");
        assert_eq!(run("-kernel k -m").unwrap_err(), "-m: requires an argument");
        assert_eq!(run("-kernel k -smp abc").unwrap_err(), "Parameter 'smp.cpus' expects integer");
        assert_eq!(
            run("-kernel k -smp 0").unwrap_err(),
            "Invalid SMP CPUs 0. The min CPUs supported by machine 'pc' is 1"
        );
        assert_eq!(
            run("-kernel k -serial bogus").unwrap_err(),
            "-serial bogus: 'bogus' is not a valid char driver"
        );
        assert_eq!(
            run("-kernel k -accel tcg").unwrap_err(),
            "-accel tcg: invalid accelerator tcg (godwit runs on KVM only)"
        );
        assert_eq!(run("-kernel k -cpu bogus").unwrap_err(), "unable to find CPU model 'bogus'");
        assert!(run("-kernel k -machine bogus").unwrap_err().starts_with("unsupported machine type"));
        assert_eq!(
            run("-nographic -daemonize -kernel k").unwrap_err(),
            "-nographic cannot be used with -daemonize"
        );
        assert!(run("-m 64").unwrap_err().starts_with("no -kernel or -bios given"));
        assert_eq!(
            run("-kernel k -nographic -monitor stdio").unwrap_err(),
            "cannot use stdio by multiple character devices"
        );
        assert_eq!(
            run("-kernel k -serial stdio -monitor stdio").unwrap_err(),
            "cannot use stdio by multiple character devices"
        );
        assert_eq!(
            run("-kernel k -display none -daemonize -monitor stdio").unwrap_err(),
            "-monitor stdio: cannot use stdio with -daemonize"
        );
        let m = run("-kernel k -nographic -monitor pty -monitor telnet::5555,server,nowait").unwrap();
        assert_eq!(m.monitors, vec!["pty".to_string(), "telnet::5555,server,nowait".to_string()]);
        assert_eq!(run("-kernel k -nographic -monitor mon:stdio").unwrap().monitors.len(), 0);
        assert_eq!(
            run("-kernel k -incoming bogus:1").unwrap_err(),
            "-incoming bogus:1: unknown migration protocol: bogus:1"
        );
        assert_eq!(
            run("-kernel k -incoming tcp:0:6666").unwrap().incoming.as_deref(),
            Some("tcp:0:6666")
        );
    }

    #[test]
    fn smp_forms_and_serial() {
        assert_eq!(run("-kernel k -smp cpus=4,sockets=1,cores=4,threads=1").unwrap().vcpus, 4);
        assert_eq!(run("-kernel k -smp sockets=2,cores=2").unwrap().vcpus, 4);
        assert_eq!(run("-kernel k -serial pty").unwrap().serial, SerialBackend::Pty);
        assert_eq!(
            run("-kernel k -serial file:/tmp/x").unwrap().serial,
            SerialBackend::File("/tmp/x".into())
        );
        assert_eq!(run("-kernel k -nographic -nodefaults").unwrap().serial, SerialBackend::Null);
        assert_eq!(run("-kernel k -display none").unwrap().serial, SerialBackend::Null);
    }

    #[test]
    fn libvirt_probe_line() {
        let c = run("-S -no-user-config -nodefaults -nographic -machine none,accel=kvm:tcg -qmp unix:/tmp/q.sock,server,nowait -pidfile /tmp/p -daemonize").unwrap();
        assert_eq!(c.machine, "none");
        assert!(c.kernel.is_none() && c.daemonize && c.start_paused);
        assert_eq!(
            run("-machine none,accel=tcg").unwrap_err(),
            "-machine none,accel=tcg: invalid accelerator tcg (godwit runs on KVM only)"
        );
    }

    #[test]
    fn print_actions() {
        for opt in ["-version", "-h", "-help", "--help", "-cpu help", "-machine help"] {
            let r = parse(opt.split_whitespace().map(String::from)).unwrap();
            assert!(matches!(r, Action::Print(t) if !t.is_empty()), "{opt}");
        }
    }
}
