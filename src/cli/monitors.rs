//! `-qmp DEV`, `-qmp-pretty DEV`, `-chardev socket,...` and `-mon chardev=ID[,mode=...]`:
//! monitors beyond `-monitor`, QMP or HMP, on the devices QEMU's options name. A `-mon`
//! may come before the `-chardev` it names, so they are matched once every option is read.

use super::CliError;
use crate::config::{Config, MonConfig};
use monitor::ChardevSpec;

fn err<T>(msg: String) -> Result<T, CliError> {
    Err(CliError(msg))
}

/// `-qmp DEV` (`pretty` for `-qmp-pretty`).
pub fn qmp(name: &str, value: &str, cfg: &mut Config, pretty: bool) -> Result<(), CliError> {
    let spec = ChardevSpec::parse(value).map_err(|e| {
        let mut msg = format!("-{name} {value}: {e}");
        if e.adds_parse_error_line() {
            msg.push_str(&format!("\ngodwit: -{name} {value}: parse error: {value}"));
        }
        CliError(msg)
    })?;
    cfg.extra_monitors.push(MonConfig {
        spec: Some(spec),
        chardev: None,
        text: value.to_string(),
        control: true,
        pretty,
        label: None,
        after: cfg.monitors.len(),
    });
    Ok(())
}

/// `name=value` pairs (a bare first item is the backend).
fn pairs(value: &str) -> Vec<(&str, &str)> {
    value.split(',').map(|p| p.split_once('=').unwrap_or((p, ""))).collect()
}

fn flag(option: &str, name: &str, v: &str) -> Result<bool, CliError> {
    match v {
        "on" | "yes" | "true" | "y" | "" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => err(format!("-chardev {option}: Parameter '{name}' expects 'on' or 'off'")),
    }
}

/// `-chardev socket,id=ID,(path=P|host=H,port=N|fd=N)[,server=on][,wait=off]`.
pub fn chardev(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let mut items = pairs(value).into_iter();
    let backend = items.next().map(|(b, _)| b).unwrap_or_default();
    if backend == "file" {
        return super::serial::chardev_file(value, cfg);
    }
    if backend != "socket" {
        return err(format!(
            "-chardev {value}: '{backend}' is not a valid char driver name (godwit has socket and file chardevs)"
        ));
    }
    let (mut id, mut path, mut host, mut port, mut fd) = (None, None, None, None, None);
    let (mut server, mut wait, mut telnet, mut nodelay) = (false, true, false, false);
    for (k, v) in items {
        match k {
            "id" => id = Some(v.to_string()),
            "path" => path = Some(v.to_string()),
            "host" => host = Some(v.to_string()),
            "port" => port = Some(v.to_string()),
            "fd" => fd = Some(v.to_string()),
            "server" => server = flag(value, k, v)?,
            "wait" => wait = flag(value, k, v)?,
            "nowait" => wait = false,
            "telnet" => telnet = flag(value, k, v)?,
            "nodelay" => nodelay = flag(value, k, v)?,
            "ipv4" | "ipv6" | "abstract" | "tight" | "mux" | "logappend" | "signal" => {}
            _ => return err(format!("-chardev {value}: Invalid parameter '{k}'")),
        }
    }
    let Some(id) = id else {
        return err(format!("-chardev {value}: chardev: no id specified"));
    };
    let yes = |b: bool| if b { "on" } else { "off" };
    let spec = match (path, host, port, fd) {
        (_, _, _, Some(n)) => {
            let n: i32 = n
                .parse()
                .map_err(|_| CliError(format!("-chardev {value}: Invalid file descriptor number '{n}'")))?;
            ChardevSpec::SocketFd(n)
        }
        (Some(p), None, None, None) => {
            ChardevSpec::parse(&format!("unix:{},server={},wait={}", p.replace(',', ",,"), yes(server), yes(wait)))
                .map_err(|e| CliError(format!("-chardev {value}: {e}")))?
        }
        (None, h, Some(p), None) => ChardevSpec::parse(&format!(
            "{}:{}:{p},server={},wait={},nodelay={}",
            if telnet { "telnet" } else { "tcp" },
            h.unwrap_or_default(),
            yes(server),
            yes(wait),
            yes(nodelay)
        ))
        .map_err(|e| CliError(format!("-chardev {value}: {e}")))?,
        _ => {
            return err(format!(
                "-chardev {value}: chardev: socket: exactly one of 'path', 'host'+'port' or 'fd' is needed"
            ));
        }
    };
    if cfg.chardevs.iter().any(|(i, _)| *i == id) {
        return err(format!(
            "-chardev {value}: attempt to add duplicate property '{id}' to object (type 'container')"
        ));
    }
    cfg.chardevs.push((id, spec));
    Ok(())
}

/// `-mon chardev=ID[,mode=readline|control][,pretty=on|off]`.
pub fn mon(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let (mut chardev, mut control, mut pretty) = (None, false, false);
    for (k, v) in pairs(value) {
        match k {
            "chardev" => chardev = Some(v.to_string()),
            "id" => {}
            "mode" => {
                control = match v {
                    "control" => true,
                    "readline" => false,
                    _ => return err(format!("-mon {value}: Parameter 'mode' does not accept value '{v}'")),
                }
            }
            "pretty" => {
                pretty = flag(value, k, v).map_err(|_| CliError(format!("-mon {value}: Parameter 'pretty' expects 'on' or 'off'")))?
            }
            _ => return err(format!("-mon {value}: Invalid parameter '{k}'")),
        }
    }
    let Some(chardev) = chardev else {
        return err(format!("-mon {value}: Parameter 'chardev' is missing"));
    };
    cfg.extra_monitors.push(MonConfig {
        spec: None,
        chardev: Some(chardev.clone()),
        text: value.to_string(),
        control,
        pretty,
        label: Some(chardev),
        after: cfg.monitors.len(),
    });
    Ok(())
}

/// Once every option is read: each `-mon` gets its `-chardev`.
pub fn finish(cfg: &mut Config) -> Result<(), CliError> {
    for m in &mut cfg.extra_monitors {
        let Some(id) = &m.chardev else { continue };
        let found = cfg.chardevs.iter().find(|(i, _)| i == id).map(|(_, s)| s.clone());
        match found {
            Some(s) => m.spec = Some(s),
            None => return err(format!("-mon {}: chardev \"{id}\" not found", m.text)),
        }
    }
    if cfg.daemonize && cfg.extra_monitors.iter().any(|m| matches!(m.spec, Some(ChardevSpec::Stdio { .. }))) {
        return err("-qmp stdio: cannot use stdio with -daemonize".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use monitor::ChardevSpec;

    use crate::cli::test_line as run;

    #[test]
    fn qmp_chardev_and_mon() {
        let c = run("-kernel k -monitor pty -qmp unix:/tmp/q.sock,server,nowait -mon chardev=c1,mode=control -chardev socket,id=c1,path=/tmp/c1.sock,server=on,wait=off -chardev socket,id=c2,fd=7 -mon chardev=c2").unwrap();
        let m = &c.extra_monitors;
        assert_eq!(m.len(), 3);
        assert!(m[0].control && m[0].label.is_none() && m[0].after == 1);
        assert!(matches!(&m[1].spec, Some(ChardevSpec::Unix(u)) if u.path == "/tmp/c1.sock" && u.server && !u.wait));
        assert_eq!(m[1].label.as_deref(), Some("c1"));
        assert!(!m[2].control && m[2].spec == Some(ChardevSpec::SocketFd(7)));
        let t = run("-kernel k -chardev socket,id=t,host=127.0.0.1,port=4444,server=on,wait=off -mon chardev=t,mode=control,pretty=on")
            .unwrap();
        assert!(matches!(&t.extra_monitors[0].spec, Some(ChardevSpec::Tcp(s)) if s.port == "4444" && s.server));
        assert!(t.extra_monitors[0].pretty);
    }

    #[test]
    fn errors_read_like_qemu() {
        assert_eq!(
            run("-kernel k -mon chardev=nope").unwrap_err(),
            "-mon chardev=nope: chardev \"nope\" not found"
        );
        assert_eq!(
            run("-kernel k -mon mode=control").unwrap_err(),
            "-mon mode=control: Parameter 'chardev' is missing"
        );
        assert_eq!(
            run("-kernel k -mon chardev=x,mode=bogus").unwrap_err(),
            "-mon chardev=x,mode=bogus: Parameter 'mode' does not accept value 'bogus'"
        );
        assert_eq!(
            run("-kernel k -chardev socket,path=/x").unwrap_err(),
            "-chardev socket,path=/x: chardev: no id specified"
        );
        assert_eq!(
            run("-kernel k -chardev socket,id=a,path=/x,bogus=1").unwrap_err(),
            "-chardev socket,id=a,path=/x,bogus=1: Invalid parameter 'bogus'"
        );
        assert_eq!(
            run("-kernel k -qmp bogus").unwrap_err(),
            "-qmp bogus: 'bogus' is not a valid char driver\ngodwit: -qmp bogus: parse error: bogus"
        );
    }
}
