//! Migration URIs (`tcp:HOST:PORT`, `tcp:[V6]:PORT`, `unix:PATH`, `exec:CMD`, `fd:NAME`,
//! `defer`): parsing, connecting (source) and listening (destination). `fd:` connections
//! are made in `super::fd`, from the descriptor the name stands for.

use crate::errtext;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A destination that stops reading makes the source fail after this long, instead of
/// hanging forever with the guest's dirty log running.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
    Exec(String),
    /// A descriptor given to a monitor with `getfd` (or, for `-incoming`, a number).
    Fd(String),
    Defer,
}

pub fn parse(s: &str) -> Option<Uri> {
    if s == "defer" {
        return Some(Uri::Defer);
    }
    if let Some(rest) = s.strip_prefix("tcp:") {
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6.split_once("]:")?;
            (h.to_string(), p)
        } else {
            let (h, p) = rest.rsplit_once(':')?;
            (h.to_string(), p)
        };
        // Options after a comma (",keep-alive=on", ...) are accepted and ignored.
        let port = port.split(',').next()?.parse().ok()?;
        return Some(Uri::Tcp { host, port });
    }
    if let Some(p) = s.strip_prefix("unix:") {
        return (!p.is_empty()).then(|| Uri::Unix(p.into()));
    }
    if let Some(c) = s.strip_prefix("exec:") {
        return (!c.trim().is_empty()).then(|| Uri::Exec(c.to_string()));
    }
    if let Some(name) = s.strip_prefix("fd:") {
        return (!name.is_empty()).then(|| Uri::Fd(name.to_string()));
    }
    None
}

fn bind_host(h: &str) -> &str {
    if h.is_empty() || h == "0" { "0.0.0.0" } else { h }
}

/// A way to break a blocked transfer (cancel): shut the socket down or kill the command.
pub type Aborter = Box<dyn Fn() + Send + Sync>;

pub struct Outgoing {
    pub writer: Box<dyn Write + Send>,
    /// The connection's way back (sockets only), for the destination's answers.
    pub reply: Option<Box<dyn Read + Send>>,
    pub abort: Aborter,
    /// An `exec:` command to wait for once the stream is written.
    pub child: Option<Child>,
    /// The connection's socket (none for `exec:` and pipes), for a TLS session over it.
    pub socket: Option<std::fs::File>,
}

/// Another handle on a socket, as a file (TLS reads and writes it directly).
pub fn socket_file<S: std::os::fd::AsFd>(s: &S) -> Result<std::fs::File, String> {
    s.as_fd().try_clone_to_owned().map(std::fs::File::from).map_err(|e| errtext::io(&e))
}

/// Linux can connect a TCP socket to itself when its ephemeral source port happens to be
/// the very port it dials and nothing listens there. Everything written would then come
/// back as if the destination had sent it, so such a connection counts as refused.
fn connected_to_itself(s: &TcpStream) -> bool {
    matches!((s.local_addr(), s.peer_addr()), (Ok(l), Ok(p)) if l == p)
}

pub fn connect(uri: &Uri) -> Result<Outgoing, String> {
    match uri {
        Uri::Tcp { host, port } => {
            let target = format!("{host}:{port}");
            let shown = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                target.clone()
            };
            let addrs: Vec<_> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("address resolution failed for {shown}: {}", errtext::io(&e)))?
                .collect();
            let mut last = None;
            for a in addrs {
                match TcpStream::connect_timeout(&a, STALL_TIMEOUT) {
                    // Nobody listens: the kernel paired the socket with itself.
                    Ok(s) if connected_to_itself(&s) => {
                        last = Some(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
                    }
                    Ok(s) => {
                        s.set_write_timeout(Some(STALL_TIMEOUT)).map_err(|e| e.to_string())?;
                        let _ = s.set_nodelay(true);
                        let k = s.try_clone().map_err(|e| e.to_string())?;
                        let back = s.try_clone().map_err(|e| e.to_string())?;
                        back.set_read_timeout(Some(STALL_TIMEOUT)).map_err(|e| e.to_string())?;
                        let socket = Some(socket_file(&s)?);
                        return Ok(Outgoing {
                            writer: Box::new(s),
                            reply: Some(Box::new(back)),
                            abort: Box::new(move || {
                                let _ = k.shutdown(Shutdown::Both);
                            }),
                            child: None,
                            socket,
                        });
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(format!(
                "Failed to connect to '{shown}': {}",
                last.map_or("no address".into(), |e| errtext::io(&e))
            ))
        }
        Uri::Unix(p) => {
            let s = UnixStream::connect(p).map_err(|e| format!("Failed to connect to '{}': {}", p.display(), errtext::io(&e)))?;
            s.set_write_timeout(Some(STALL_TIMEOUT)).map_err(|e| e.to_string())?;
            let k = s.try_clone().map_err(|e| e.to_string())?;
            let back = s.try_clone().map_err(|e| e.to_string())?;
            back.set_read_timeout(Some(STALL_TIMEOUT)).map_err(|e| e.to_string())?;
            let socket = Some(socket_file(&s)?);
            Ok(Outgoing {
                writer: Box::new(s),
                reply: Some(Box::new(back)),
                abort: Box::new(move || {
                    let _ = k.shutdown(Shutdown::Both);
                }),
                child: None,
                socket,
            })
        }
        Uri::Exec(cmd) => {
            let mut child = Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .stdin(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run '{cmd}': {}", errtext::io(&e)))?;
            let stdin = child.stdin.take().ok_or("no stdin for the exec command")?;
            let pid = child.id() as i32;
            Ok(Outgoing {
                writer: Box::new(stdin),
                reply: None,
                // SAFETY: kill(2) on the command we started; it is reaped by `child.wait`.
                abort: Box::new(move || unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }),
                child: Some(child),
                socket: None,
            })
        }
        Uri::Fd(name) => Err(format!("fd:{name} is connected by migration::fd")),
        Uri::Defer => Err("Parameter 'uri' expects a valid migration protocol".into()),
    }
}

/// Small enough that a record's 1 MiB payload mostly bypasses the buffer (read straight
/// into the reader's own), large enough that small records cost few system calls.
const READ_BUFFER: usize = 64 << 10;

/// The stream to read, and for sockets the way back to the source.
pub struct Accepted {
    pub input: Box<dyn Read + Send>,
    pub reply: Option<Box<dyn Write + Send>>,
    /// The socket itself (none for `exec:` and pipes), for a TLS session over it.
    pub socket: Option<std::fs::File>,
}

impl Accepted {
    /// A connected socket's stream, its way back and its handle.
    fn socket<S>(s: S) -> Result<Accepted, String>
    where
        S: Read + Write + Send + std::os::fd::AsFd + 'static,
    {
        let socket = socket_file(&s)?;
        let back = socket_file(&s)?;
        let timeout = STALL_TIMEOUT;
        set_write_timeout(&back, timeout);
        Ok(Accepted {
            input: Box::new(std::io::BufReader::with_capacity(READ_BUFFER, s)),
            reply: Some(Box::new(back)),
            socket: Some(socket),
        })
    }
}

/// A socket's send timeout (any handle on the socket sets it for all).
fn set_write_timeout(f: &std::fs::File, t: Duration) {
    set_timeout(f, libc::SO_SNDTIMEO, t);
}

/// A socket's receive timeout (`None`: none).
pub fn set_read_timeout(f: &std::fs::File, t: Option<Duration>) {
    set_timeout(f, libc::SO_RCVTIMEO, t.unwrap_or_default());
}

/// Sets the timeval socket option `opt` (zero: no timeout); a descriptor that is not a
/// socket just fails, which changes nothing.
fn set_timeout(f: &std::fs::File, opt: libc::c_int, t: Duration) {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(t.subsec_micros() as i32),
    };
    // SAFETY: setting a timeval socket option from a valid pointer and its size.
    unsafe {
        libc::setsockopt(
            f.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

/// The destination's end, listening (or its command started) before the stream arrives.
pub enum Incoming {
    Tcp(TcpListener, String),
    Unix(UnixListener, PathBuf),
    Exec(Child),
}

impl Incoming {
    pub fn listen(uri: &Uri) -> Result<Incoming, String> {
        match uri {
            Uri::Tcp { host, port } => {
                let h = bind_host(host);
                let l = TcpListener::bind((h, *port)).map_err(|e| format!("Failed to find an available port: {}", errtext::io(&e)))?;
                let a = l.local_addr().map_err(|e| e.to_string())?;
                // QEMU shows [::]:P as tcp::::P, i.e. the address without brackets.
                Ok(Incoming::Tcp(l, format!("tcp:{}:{}", a.ip(), a.port())))
            }
            Uri::Unix(p) => {
                let _ = std::fs::remove_file(p);
                let l = UnixListener::bind(p).map_err(|e| format!("Failed to bind socket to {}: {}", p.display(), errtext::io(&e)))?;
                Ok(Incoming::Unix(l, p.clone()))
            }
            Uri::Exec(cmd) => {
                let child = Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdout(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot run '{cmd}': {}", errtext::io(&e)))?;
                Ok(Incoming::Exec(child))
            }
            Uri::Fd(name) => Err(format!("fd:{name} is accepted by migration::fd")),
            Uri::Defer => Err("unknown migration protocol: defer".into()),
        }
    }

    /// What `info migrate` lists under `socket address:`.
    pub fn addresses(&self) -> Vec<String> {
        match self {
            Incoming::Tcp(_, a) => vec![a.clone()],
            Incoming::Unix(_, p) => vec![format!("unix:{}", p.display())],
            Incoming::Exec(_) => vec![],
        }
    }

    /// The listening socket (none for `exec:`), to wait on with a timeout.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            Incoming::Tcp(l, _) => Some(l.as_raw_fd()),
            Incoming::Unix(l, _) => Some(l.as_raw_fd()),
            Incoming::Exec(_) => None,
        }
    }

    /// Waits for one connection (the listener stays open for the next).
    pub fn accept_one(&self) -> Result<Accepted, String> {
        match self {
            Incoming::Tcp(l, _) => {
                let (s, _) = l.accept().map_err(|e| format!("accept: {}", errtext::io(&e)))?;
                Accepted::socket(s)
            }
            Incoming::Unix(l, _) => {
                let (s, _) = l.accept().map_err(|e| format!("accept: {}", errtext::io(&e)))?;
                Accepted::socket(s)
            }
            Incoming::Exec(_) => Err("an exec: source has one stream".into()),
        }
    }

    /// Done listening: a UNIX socket's path goes away.
    pub fn close(self) {
        if let Incoming::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Waits for the source and returns the stream to read, and for sockets the way back.
    pub fn accept(self) -> Result<Accepted, String> {
        match self {
            Incoming::Exec(mut c) => {
                let out = c.stdout.take().ok_or("no stdout from the exec command")?;
                // The command is reaped when godwit exits; its output is all we need.
                std::mem::forget(c);
                Ok(Accepted {
                    input: Box::new(std::io::BufReader::with_capacity(READ_BUFFER, out)),
                    reply: None,
                    socket: None,
                })
            }
            other => {
                let a = other.accept_one();
                other.close();
                a
            }
        }
    }

    pub fn is_exec(&self) -> bool {
        matches!(self, Incoming::Exec(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse("tcp:0:6666"),
            Some(Uri::Tcp {
                host: "0".into(),
                port: 6666
            })
        );
        assert_eq!(
            parse("tcp:127.0.0.1:4444"),
            Some(Uri::Tcp {
                host: "127.0.0.1".into(),
                port: 4444
            })
        );
        assert_eq!(
            parse("tcp:[::1]:4444"),
            Some(Uri::Tcp {
                host: "::1".into(),
                port: 4444
            })
        );
        assert_eq!(
            parse("tcp::4444"),
            Some(Uri::Tcp {
                host: "".into(),
                port: 4444
            })
        );
        assert_eq!(parse("unix:/tmp/m.sock"), Some(Uri::Unix("/tmp/m.sock".into())));
        assert_eq!(parse("exec:cat > /tmp/x"), Some(Uri::Exec("cat > /tmp/x".into())));
        assert_eq!(parse("defer"), Some(Uri::Defer));
        assert_eq!(parse("fd:mig"), Some(Uri::Fd("mig".into())));
        for bad in [
            "",
            "tcp:1",
            "tcp:h:notaport",
            "tcp:h:99999",
            "rdma:1:2",
            "unix:",
            "exec:",
            "fd:",
            "file:/x",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    /// A socket bound to a port and then connected to that same port is the state the
    /// kernel reaches by chance when a dialled port is free and also picked as the source.
    fn self_connected() -> TcpStream {
        use std::os::fd::FromRawFd;
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr is
        // fully initialised and its size is passed.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
                },
                sin_zero: [0; 8],
            };
            let p = &addr as *const libc::sockaddr_in as *const libc::sockaddr;
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, p, len), 0);
            assert_eq!(libc::connect(fd, p, len), 0, "{}", std::io::Error::last_os_error());
            TcpStream::from_raw_fd(fd)
        }
    }

    #[test]
    fn a_socket_connected_to_itself_is_noticed() {
        let mut s = self_connected();
        assert!(connected_to_itself(&s));
        // What it writes it reads back: why it must not pass for a destination.
        s.write_all(b"GWOK").unwrap();
        let mut back = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut back).unwrap();
        assert_eq!(&back, b"GWOK");
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(!connected_to_itself(&c));
    }

    #[test]
    fn refused_connection_reads_like_qemu() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = connect(&Uri::Tcp {
            host: "127.0.0.1".into(),
            port,
        })
        .err()
        .unwrap();
        assert_eq!(e, format!("Failed to connect to '127.0.0.1:{port}': Connection refused"));
    }
}
