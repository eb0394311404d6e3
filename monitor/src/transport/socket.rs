//! `tcp:`, `telnet:` and `unix:` monitors, as servers (one client at a
//! time; others wait in the listen backlog) or as clients.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;

use super::driver::{Driver, TICK, WriteTarget, Writer, serve_fd};
use super::fd::{self, Ready, error_text};
use super::spec::{TcpSpec, UnixSpec};
use super::telnet::{NEGOTIATION, TelnetFilter};
use super::{Context, MonitorError, Started};
use crate::output::Overflow;

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn raw(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }

    fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(on),
            Listener::Unix(l) => l.set_nonblocking(on),
        }
    }
}

/// How a listener names itself in `info chardev`.
struct Names {
    /// `disconnected:tcp:127.0.0.1:4444,server=on`
    disconnected: String,
    /// Builds the connected name from (local, peer) addresses.
    connected: Box<dyn Fn(&TcpOrUnix) -> String + Send>,
}

/// A connected client.
struct Client {
    fd: OwnedFd,
    addrs: TcpOrUnix,
}

enum TcpOrUnix {
    Tcp {
        local: Option<SocketAddr>,
        peer: Option<SocketAddr>,
    },
    Unix,
}

fn accept(listener: &Listener) -> std::io::Result<Client> {
    Ok(match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept()?;
            let local = stream.local_addr().ok();
            Client {
                fd: OwnedFd::from(stream),
                addrs: TcpOrUnix::Tcp { local, peer: Some(peer) },
            }
        }
        Listener::Unix(l) => {
            let (stream, _) = l.accept()?;
            Client {
                fd: OwnedFd::from(stream),
                addrs: TcpOrUnix::Unix,
            }
        }
    })
}

fn addr_text(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "?:?".to_string(), |a| format!("{}:{}", a.ip(), a.port()))
}

/// Resolves HOST:PORT like QEMU (an empty host means every IPv4 address).
fn resolve(host: &str, port: &str) -> Result<SocketAddr, MonitorError> {
    let fail = |reason: &str| MonitorError::Resolve {
        host: host.to_string(),
        port: port.to_string(),
        reason: reason.to_string(),
    };
    let port_number: u16 = port.parse().map_err(|_| fail("Servname not supported for ai_socktype"))?;
    let lookup_host = if host.is_empty() { "0.0.0.0" } else { host };
    let mut addrs = (lookup_host, port_number).to_socket_addrs().map_err(|e| {
        let text = error_text(&e);
        fail(text.strip_prefix("failed to lookup address information: ").unwrap_or(&text))
    })?;
    addrs.next().ok_or_else(|| fail("No address associated with hostname"))
}

/// Starts a `tcp:` or `telnet:` monitor.
pub(crate) fn start_tcp(spec: &TcpSpec, spec_text: &str, ctx: Context) -> Result<Started, MonitorError> {
    let addr = resolve(&spec.host, &spec.port)?;
    let scheme = if spec.telnet { "telnet" } else { "tcp" };
    let options = Options {
        telnet: spec.telnet,
        nodelay: spec.nodelay,
    };
    if !spec.server {
        let stream = TcpStream::connect(addr).map_err(|e| MonitorError::Connect {
            target: format!("{}:{}", spec.host, spec.port),
            reason: error_text(&e),
        })?;
        let name = format!(
            "{scheme}:{} <-> {}",
            addr_text(stream.local_addr().ok()),
            addr_text(stream.peer_addr().ok())
        );
        let client = Client {
            fd: OwnedFd::from(stream),
            addrs: TcpOrUnix::Unix,
        };
        let disconnected = format!("disconnected:{scheme}:{}", addr_text(Some(addr)));
        return start_client(client, name, disconnected, options, ctx);
    }
    let listener = TcpListener::bind(addr).map_err(|e| MonitorError::Bind(error_text(&e)))?;
    let local = listener.local_addr().map_err(|e| MonitorError::Bind(error_text(&e)))?;
    let names = Names {
        disconnected: format!("disconnected:{scheme}:{},server=on", addr_text(Some(local))),
        connected: Box::new(move |addrs| match addrs {
            TcpOrUnix::Tcp { local, peer } => {
                format!("{scheme}:{},server=on <-> {}", addr_text(*local), addr_text(*peer))
            }
            TcpOrUnix::Unix => String::new(),
        }),
    };
    let mut started = start_server(Listener::Tcp(listener), names, spec.wait, spec_text, options, ctx)?;
    started.local_addr = Some(local);
    Ok(started)
}

/// Starts a `unix:` monitor.
pub(crate) fn start_unix(spec: &UnixSpec, spec_text: &str, ctx: Context) -> Result<Started, MonitorError> {
    let path = spec.path.clone();
    let options = Options {
        telnet: false,
        nodelay: false,
    };
    if !spec.server {
        let stream = UnixStream::connect(&path).map_err(|e| MonitorError::Connect {
            target: path.clone(),
            reason: error_text(&e),
        })?;
        let client = Client {
            fd: OwnedFd::from(stream),
            addrs: TcpOrUnix::Unix,
        };
        return start_client(client, format!("unix:{path}"), format!("disconnected:unix:{path}"), options, ctx);
    }
    // Like QEMU, replace a stale socket left by an earlier run (but never
    // anything that is not a socket).
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path).map_err(|e| MonitorError::BindUnix {
        path: path.clone(),
        reason: error_text(&e),
    })?;
    let connected_name = format!("unix:{path},server=on");
    let names = Names {
        disconnected: format!("disconnected:unix:{path},server=on"),
        connected: Box::new(move |_| connected_name.clone()),
    };
    let mut started = start_server(Listener::Unix(listener), names, spec.wait, spec_text, options, ctx)?;
    started.unix_path = Some(PathBuf::from(path));
    Ok(started)
}

#[derive(Clone, Copy)]
struct Options {
    telnet: bool,
    nodelay: bool,
}

fn start_server(
    listener: Listener,
    names: Names,
    wait: bool,
    spec_text: &str,
    options: Options,
    ctx: Context,
) -> Result<Started, MonitorError> {
    let filename = Arc::new(Mutex::new(names.disconnected.clone()));
    let mut first = None;
    if wait {
        eprintln!(
            "{}: {} {spec_text}: info: QEMU waiting for connection on: {}",
            ctx.program, ctx.option, names.disconnected
        );
        let client = accept(&listener).map_err(|e| MonitorError::Io(error_text(&e)))?;
        // Name it now, so that `info chardev` is right as soon as we return.
        set_name(&filename, (names.connected)(&client.addrs));
        first = Some(client);
    }
    listener.set_nonblocking(true).map_err(|e| MonitorError::Io(error_text(&e)))?;
    let name_slot = Arc::clone(&filename);
    let thread = thread::Builder::new()
        .name(format!("monitor-{}", ctx.label))
        .spawn(move || {
            let mut next = first;
            while !ctx.stop.load(Ordering::Acquire) {
                let client = match next.take() {
                    Some(client) => client,
                    None => match fd::wait(listener.raw(), true, TICK) {
                        Ok(Ready::Readable) => match accept(&listener) {
                            Ok(client) => client,
                            Err(_) => continue,
                        },
                        Ok(_) => continue,
                        Err(_) => {
                            thread::sleep(TICK);
                            continue;
                        }
                    },
                };
                set_name(&name_slot, (names.connected)(&client.addrs));
                serve_client(client.fd, options, &ctx);
                set_name(&name_slot, names.disconnected.clone());
            }
        })
        .map_err(|e| MonitorError::Io(error_text(&e)))?;
    Ok(Started::new(filename, vec![thread]))
}

/// Starts a server on a listening socket inherited from the caller (libvirt binds the
/// monitor's socket itself and passes it down).
pub(crate) fn start_fd(raw: RawFd, ctx: Context) -> Result<Started, MonitorError> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only asks whether the number is an open descriptor.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(MonitorError::Io(format!("Invalid file descriptor number '{raw}'")));
    }
    // SAFETY: listen(2) on the inherited socket; already listening is fine.
    unsafe {
        libc::listen(raw, 1);
    }
    // SAFETY: getsockname fills a sockaddr_storage we own, with its size.
    let family = unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(raw, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len) < 0 {
            return Err(MonitorError::Io(format!("descriptor {raw} is not a socket")));
        }
        libc::c_int::from(ss.ss_family)
    };
    let options = Options {
        telnet: false,
        nodelay: false,
    };
    if family == libc::AF_UNIX {
        // SAFETY: the caller handed this descriptor to godwit for the monitor.
        let l = unsafe { UnixListener::from_raw_fd(raw) };
        let path = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_default();
        let connected_name = format!("unix:{path},server=on");
        let names = Names {
            disconnected: format!("disconnected:unix:{path},server=on"),
            connected: Box::new(move |_| connected_name.clone()),
        };
        return start_server(Listener::Unix(l), names, false, "", options, ctx);
    }
    // SAFETY: as above, for a TCP socket.
    let l = unsafe { TcpListener::from_raw_fd(raw) };
    let local = l.local_addr().map_err(|e| MonitorError::Io(error_text(&e)))?;
    let names = Names {
        disconnected: format!("disconnected:tcp:{},server=on", addr_text(Some(local))),
        connected: Box::new(move |addrs| match addrs {
            TcpOrUnix::Tcp { local, peer } => format!("tcp:{},server=on <-> {}", addr_text(*local), addr_text(*peer)),
            TcpOrUnix::Unix => String::new(),
        }),
    };
    let mut started = start_server(Listener::Tcp(l), names, false, "", options, ctx)?;
    started.local_addr = Some(local);
    Ok(started)
}

fn start_client(client: Client, connected: String, disconnected: String, options: Options, ctx: Context) -> Result<Started, MonitorError> {
    let filename = Arc::new(Mutex::new(connected));
    let name_slot = Arc::clone(&filename);
    let thread = thread::Builder::new()
        .name(format!("monitor-{}", ctx.label))
        .spawn(move || {
            serve_client(client.fd, options, &ctx);
            set_name(&name_slot, disconnected);
        })
        .map_err(|e| MonitorError::Io(error_text(&e)))?;
    Ok(Started::new(filename, vec![thread]))
}

fn set_name(slot: &Mutex<String>, name: String) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = name;
}

/// Runs one session on a connected socket, then closes it.
fn serve_client(fd: OwnedFd, options: Options, ctx: &Context) {
    let raw = fd.as_raw_fd();
    if fd::set_nonblocking(raw, true).is_err() {
        return;
    }
    if let Some(q) = &ctx.qmp {
        if let Ok(write_fd) = fd.try_clone() {
            super::qmp::serve(raw, super::qmp::Input::Socket, WriteTarget::Socket(write_fd), q, &ctx.stop);
        }
        // SAFETY: shutting down a socket we still own; the result is irrelevant.
        unsafe {
            libc::shutdown(raw, libc::SHUT_RDWR);
        }
        return;
    }
    if options.nodelay {
        let on: libc::c_int = 1;
        // SAFETY: setting an int socket option from a valid pointer and size.
        unsafe {
            libc::setsockopt(
                raw,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let Ok(write_fd) = fd.try_clone() else {
        return;
    };
    let Ok(writer) = Writer::spawn(WriteTarget::Socket(write_fd), Overflow::Disconnect) else {
        return;
    };
    if options.telnet {
        writer.queue.push(&NEGOTIATION);
    }
    let mut driver = Driver::new(&ctx.version, Arc::clone(&ctx.vmm), Arc::new(writer.queue.clone()));
    driver.open();
    let mut telnet = options.telnet.then(TelnetFilter::new);
    serve_fd(raw, &mut driver, &ctx.stop, telnet.as_mut());
    writer.finish(!ctx.stop.load(Ordering::Acquire));
    // SAFETY: shutting down a socket we still own; the result is irrelevant.
    unsafe {
        libc::shutdown(raw, libc::SHUT_RDWR);
    }
    drop(fd);
}
