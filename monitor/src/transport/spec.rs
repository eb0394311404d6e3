//! `-monitor DEV` specifications in QEMU's legacy chardev syntax:
//! `stdio`, `mon:stdio`, `pty`, `none`,
//! `tcp:[HOST]:PORT[,server][,nowait]...`, `telnet:...`,
//! `unix:PATH[,server][,nowait]...`, with short (`server`, `nowait`) or long
//! (`server=on`, `wait=off`) booleans.

use thiserror::Error;

/// A parsed monitor device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChardevSpec {
    /// No monitor.
    None,
    /// The process's stdin/stdout; `mux` for `mon:stdio`.
    Stdio {
        mux: bool,
    },
    Pty,
    Tcp(TcpSpec),
    Unix(UnixSpec),
    /// A listening socket inherited from the caller (`-chardev socket,id=ID,fd=N`).
    SocketFd(i32),
}

/// `tcp:` or `telnet:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSpec {
    /// Empty means every address.
    pub host: String,
    pub port: String,
    pub telnet: bool,
    pub server: bool,
    /// Block at start-up until the first client connects (servers only).
    pub wait: bool,
    pub nodelay: bool,
}

/// `unix:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSpec {
    pub path: String,
    pub server: bool,
    pub wait: bool,
}

/// A bad specification; `Display` is QEMU's message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("'{0}' is not a valid char driver")]
    InvalidDriver(String),
    #[error("parse error: {0}")]
    Parse(String),
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(String),
    #[error("Parameter '{0}' expects 'on' or 'off'")]
    ExpectsOnOff(String),
    #[error("character device backend '{0}' is not supported")]
    UnsupportedBackend(String),
    #[error("chardev option '{0}' is not supported")]
    UnsupportedOption(String),
}

impl SpecError {
    /// QEMU follows most of these with a second line, `parse error: SPEC`.
    pub fn adds_parse_error_line(&self) -> bool {
        matches!(
            self,
            SpecError::InvalidDriver(_) | SpecError::InvalidParameter(_) | SpecError::ExpectsOnOff(_)
        )
    }
}

/// Options every socket spec accepts (QEMU's chardev option list); the
/// ones godwit does not implement are refused explicitly.
const BOOL_OPTIONS: &[&str] = &[
    "server",
    "wait",
    "delay",
    "nodelay",
    "telnet",
    "ipv4",
    "ipv6",
    "mux",
    "signal",
    "abstract",
    "tight",
    "tn3270",
    "websocket",
    "logappend",
];
const VALUE_OPTIONS: &[&str] = &["host", "port", "path", "to", "reconnect", "logfile", "tls-creds", "tls-authz"];
const UNSUPPORTED: &[&str] = &["reconnect", "logfile", "tls-creds", "tls-authz"];

#[derive(Debug, Default)]
struct Options {
    items: Vec<(String, String)>,
}

impl Options {
    /// QEMU's `name=value,...` syntax: `,,` is a literal comma, `name`
    /// alone means `name=on`, `noname` alone means `name=off`, and with
    /// `first` set an unnamed first item is that option's value.
    fn parse(text: &str, first: Option<&str>) -> Result<Options, SpecError> {
        let mut options = Options::default();
        let mut rest = text;
        let mut index = 0;
        while !rest.is_empty() || (index == 0 && first.is_some()) {
            let name_len = rest.find(['=', ',']).unwrap_or(rest.len());
            let (name, value);
            if rest.as_bytes().get(name_len) == Some(&b'=') {
                name = rest[..name_len].to_string();
                let (v, after) = take_value(&rest[name_len + 1..]);
                value = v;
                rest = after;
            } else if let (0, Some(first)) = (index, first) {
                name = first.to_string();
                let (v, after) = take_value(rest);
                value = v;
                rest = after;
            } else {
                let flag = &rest[..name_len];
                rest = rest[name_len..].strip_prefix(',').unwrap_or(&rest[name_len..]);
                if let Some(stripped) = flag.strip_prefix("no").filter(|n| BOOL_OPTIONS.contains(n)) {
                    (name, value) = (stripped.to_string(), "off".to_string());
                } else {
                    (name, value) = (flag.to_string(), "on".to_string());
                }
            }
            if !BOOL_OPTIONS.contains(&name.as_str()) && !VALUE_OPTIONS.contains(&name.as_str()) {
                return Err(SpecError::InvalidParameter(name));
            }
            if BOOL_OPTIONS.contains(&name.as_str()) {
                parse_bool(&name, &value)?;
            }
            options.items.push((name, value));
            index += 1;
        }
        Ok(options)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.items.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        self.get(name).map_or(default, |v| parse_bool(name, v).unwrap_or(default))
    }

    fn check_supported(&self) -> Result<(), SpecError> {
        for (name, _) in &self.items {
            if UNSUPPORTED.contains(&name.as_str()) {
                return Err(SpecError::UnsupportedOption(name.clone()));
            }
        }
        for name in ["tn3270", "websocket"] {
            if self.flag(name, false) {
                return Err(SpecError::UnsupportedOption(name.to_string()));
            }
        }
        Ok(())
    }
}

/// A value up to the next single comma (`,,` stands for a comma).
fn take_value(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == ',' {
            if chars.peek().map(|(_, c)| *c) == Some(',') {
                chars.next();
                value.push(',');
                continue;
            }
            return (value, &text[i + 1..]);
        }
        value.push(c);
    }
    (value, "")
}

fn parse_bool(name: &str, value: &str) -> Result<bool, SpecError> {
    match value {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(SpecError::ExpectsOnOff(name.to_string())),
    }
}

impl ChardevSpec {
    /// Parses a `-monitor` argument.
    pub fn parse(spec: &str) -> Result<ChardevSpec, SpecError> {
        if spec == "none" {
            return Ok(ChardevSpec::None);
        }
        let (mux, text) = match spec.strip_prefix("mon:") {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        match text {
            "stdio" => return Ok(ChardevSpec::Stdio { mux }),
            "pty" => return Ok(ChardevSpec::Pty),
            "null" | "vc" | "msmouse" | "braille" | "testdev" | "wctablet" => {
                return Err(SpecError::UnsupportedBackend(text.to_string()));
            }
            _ => {}
        }
        for (prefix, telnet) in [("tcp:", false), ("telnet:", true)] {
            if let Some(rest) = text.strip_prefix(prefix) {
                return parse_tcp(spec, rest, telnet).map(ChardevSpec::Tcp);
            }
        }
        if let Some(rest) = text.strip_prefix("unix:") {
            let options = Options::parse(rest, Some("path"))?;
            options.check_supported()?;
            return Ok(ChardevSpec::Unix(UnixSpec {
                path: options.get("path").unwrap_or_default().to_string(),
                server: options.flag("server", false),
                wait: options.flag("wait", true),
            }));
        }
        for prefix in [
            "vc:",
            "file:",
            "pipe:",
            "udp:",
            "tn3270:",
            "websocket:",
            "chardev:",
            "con:",
            "COM",
            "/dev/",
        ] {
            if text.starts_with(prefix) {
                return Err(SpecError::UnsupportedBackend(prefix.trim_end_matches(':').to_string()));
            }
        }
        Err(SpecError::InvalidDriver(text.to_string()))
    }

    /// Whether `start` blocks until a client connects.
    pub fn waits(&self) -> bool {
        match self {
            ChardevSpec::Tcp(t) => t.server && t.wait,
            ChardevSpec::Unix(u) => u.server && u.wait,
            _ => false,
        }
    }
}

/// `HOST:PORT[,options]` or `:PORT[,options]`, with QEMU's length limits
/// (64 bytes of host, 32 of port).
fn parse_tcp(spec: &str, rest: &str, telnet: bool) -> Result<TcpSpec, SpecError> {
    let fail = || SpecError::Parse(spec.to_string());
    let (host, after_host) = match rest.find(':') {
        Some(i) if i <= 64 => (&rest[..i], &rest[i + 1..]),
        _ => return Err(fail()),
    };
    let port_len = after_host.find(',').unwrap_or(after_host.len());
    if port_len == 0 || port_len > 32 {
        return Err(fail());
    }
    let port = &after_host[..port_len];
    let options = match after_host[port_len..].strip_prefix(',') {
        Some(opts) => Options::parse(opts, None)?,
        None => Options::default(),
    };
    options.check_supported()?;
    Ok(TcpSpec {
        host: options.get("host").unwrap_or(host).to_string(),
        port: options.get("port").unwrap_or(port).to_string(),
        telnet: telnet || options.flag("telnet", false),
        server: options.flag("server", false),
        wait: options.flag("wait", true),
        nodelay: options.flag("nodelay", false) || !options.flag("delay", true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(spec: &str) -> TcpSpec {
        match ChardevSpec::parse(spec) {
            Ok(ChardevSpec::Tcp(t)) => t,
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn simple_backends() {
        assert_eq!(ChardevSpec::parse("stdio"), Ok(ChardevSpec::Stdio { mux: false }));
        assert_eq!(ChardevSpec::parse("mon:stdio"), Ok(ChardevSpec::Stdio { mux: true }));
        assert_eq!(ChardevSpec::parse("pty"), Ok(ChardevSpec::Pty));
        assert_eq!(ChardevSpec::parse("none"), Ok(ChardevSpec::None));
    }

    #[test]
    fn socket_forms() {
        let t = tcp("telnet:127.0.0.1:5555,server,nowait");
        assert!(t.telnet && t.server && !t.wait);
        assert_eq!((t.host.as_str(), t.port.as_str()), ("127.0.0.1", "5555"));
        let t = tcp("tcp::4444,server=on,wait=off");
        assert!(!t.telnet && t.server && !t.wait && t.host.is_empty());
        let t = tcp("telnet:localhost:5559,server,wait");
        assert!(t.server && t.wait);
        let t = tcp("tcp:127.0.0.1:5760,server=on,wait=on,nodelay=on");
        assert!(t.nodelay && t.wait);
        assert!(tcp("tcp:h:1,server,nodelay").nodelay);
        assert!(tcp("tcp:h:1,telnet=on,server=yes").telnet);
        assert!(!tcp("tcp:127.0.0.1:1").server);
        let u = match ChardevSpec::parse("unix:/tmp/a,,b.sock,server,nowait") {
            Ok(ChardevSpec::Unix(u)) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(u.path, "/tmp/a,b.sock");
        assert!(u.server && !u.wait);
        assert!(ChardevSpec::parse("unix:/x.sock,server").unwrap().waits());
        assert!(!ChardevSpec::parse("unix:/x.sock,server,nowait").unwrap().waits());
    }

    #[test]
    fn errors_match_qemu() {
        let err = |s| ChardevSpec::parse(s).unwrap_err().to_string();
        assert_eq!(err("bogus:1"), "'bogus:1' is not a valid char driver");
        assert_eq!(err(""), "'' is not a valid char driver");
        assert_eq!(err("stdio,foo"), "'stdio,foo' is not a valid char driver");
        assert_eq!(err("pty:x"), "'pty:x' is not a valid char driver");
        assert_eq!(err("tcp:127.0.0.1"), "parse error: tcp:127.0.0.1");
        assert_eq!(err("tcp:127.0.0.1:5761,server,nowait,foo"), "Invalid parameter 'foo'");
        assert_eq!(err("tcp:127.0.0.1:5761,server=maybe"), "Parameter 'server' expects 'on' or 'off'");
        assert!(ChardevSpec::parse("bogus:1").unwrap_err().adds_parse_error_line());
        assert!(!ChardevSpec::parse("tcp:x").unwrap_err().adds_parse_error_line());
        assert!(matches!(ChardevSpec::parse("file:/tmp/x"), Err(SpecError::UnsupportedBackend(_))));
        assert!(matches!(
            ChardevSpec::parse("tcp:h:1,server,tls-creds=x"),
            Err(SpecError::UnsupportedOption(_))
        ));
    }
}
