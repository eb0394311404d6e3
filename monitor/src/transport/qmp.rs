//! QMP sessions on a descriptor (a socket client, or stdin/stdout): the greeting, then
//! requests read (with the descriptors that come along on a UNIX socket) and answered in
//! order, and the engine's events written as they happen. One thread per connection
//! waits on the input and on an eventfd the event bus rings; a writer thread drains the
//! bounded output queue, so a client that does not read never blocks the machine.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::driver::{TICK, WriteTarget, Writer};
use crate::engine::events::Stamped;
use crate::engine::{Engine, FdStore};
use crate::output::{OutputQueue, Overflow};
use crate::qmp::commands::Ctx;
use crate::qmp::{Session, encode, greeting};
use crate::vmm::SharedVmm;

/// Queued output above which no more requests are read until the client reads.
const HIGH_WATER: usize = 1 << 20;
/// The most descriptors one message may carry (QEMU's limit too).
const MAX_FDS: usize = 16;
/// How long the answer to `quit` may take to leave before the process ends.
const QUIT_FLUSH: Duration = Duration::from_secs(1);

/// One QMP monitor: what its connections (one at a time) share.
pub(crate) struct QmpMonitor {
    pub(crate) engine: Arc<dyn Engine>,
    /// HMP over the same engine, for `human-monitor-command`.
    pub(crate) hmp: SharedVmm,
    /// Descriptors given with `getfd`: the monitor's, kept across connections.
    pub(crate) fds: FdStore,
    pub(crate) pretty: bool,
    active: Mutex<Option<Arc<Connection>>>,
}

/// What `MonitorHandle::flush` looks at in the connection being served.
struct Connection {
    busy: AtomicBool,
    queue: OutputQueue,
    events: Receiver<Stamped>,
}

impl QmpMonitor {
    pub(crate) fn new(engine: Arc<dyn Engine>, hmp: SharedVmm, pretty: bool) -> Self {
        QmpMonitor {
            engine,
            hmp,
            fds: FdStore::default(),
            pretty,
            active: Mutex::new(None),
        }
    }

    /// Waits until the client has been sent everything owed (events and answers), or
    /// the deadline passes.
    pub(crate) fn flush(&self, deadline: Instant) {
        let conn = self.active.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(c) = conn else { return };
        while Instant::now() < deadline && !c.queue.is_dead() {
            if !c.busy.load(Ordering::Acquire) && c.events.is_empty() && c.queue.pending() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// How a connection's input is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// A socket: `recvmsg`, taking descriptors passed with SCM_RIGHTS.
    Socket,
    /// Anything else (stdin): `read`.
    Plain,
}

fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with valid flags; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ring(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd; failure (full) is harmless.
    unsafe {
        libc::write(fd, (&one as *const u64).cast(), 8);
    }
}

fn unring(fd: RawFd) {
    let mut n: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64 from a non-blocking eventfd.
    unsafe {
        libc::read(fd, (&mut n as *mut u64).cast(), 8);
    }
}

/// Reads what is there; `Ok(None)` when nothing was, `Ok(Some(0))` at end of file.
fn receive(fd: RawFd, input: Input, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> std::io::Result<Option<usize>> {
    if input == Input::Plain {
        return super::fd::read(fd, buf);
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u8; 512];
    // SAFETY: msghdr is plain data; zeroed is a valid start that is filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: every pointer in `msg` refers to a live buffer of the stated length.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: walking the control messages recvmsg filled in, within `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = OwnedFd::from_raw_fd(data.add(i).read_unaligned());
                    if fds.len() < MAX_FDS {
                        fds.push(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Some(n.unsigned_abs()))
}

/// Runs one session until the client goes away or `stop` is set.
pub(crate) fn serve(input_fd: RawFd, input: Input, target: WriteTarget, m: &QmpMonitor, stop: &AtomicBool) {
    let Ok(writer) = Writer::spawn(
        target,
        if input == Input::Socket {
            Overflow::Disconnect
        } else {
            Overflow::Drop
        },
    ) else {
        return;
    };
    let Ok(bell) = eventfd() else { return };
    let bell = Arc::new(bell);
    let ringer = bell.clone();
    let events = m.engine.events().subscribe_with(Arc::new(move || ring(ringer.as_raw_fd())));
    let conn = Arc::new(Connection {
        busy: AtomicBool::new(false),
        queue: writer.queue.clone(),
        events: events.clone(),
    });
    *m.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
    m.engine.wait_ready();
    let mut s = Session::new();
    conn.queue.push(&encode(&greeting(&m.engine.query_version()), m.pretty));
    run(input_fd, input, bell.as_raw_fd(), &mut s, &conn, m, stop);
    *m.active.lock().unwrap_or_else(|p| p.into_inner()) = None;
    writer.finish(!stop.load(Ordering::Acquire));
}

fn forward_events(s: &Session, c: &Connection, pretty: bool) {
    while let Ok(e) = c.events.try_recv() {
        if let Some(v) = s.event(&e) {
            c.queue.push(&encode(&v, pretty));
        }
    }
}

fn run(input_fd: RawFd, input: Input, bell: RawFd, s: &mut Session, c: &Connection, m: &QmpMonitor, stop: &AtomicBool) {
    let mut buf = vec![0u8; 64 << 10];
    let mut received: Vec<OwnedFd> = Vec::new();
    loop {
        if stop.load(Ordering::Acquire) || c.queue.is_dead() {
            return;
        }
        let reading = c.queue.pending() < HIGH_WATER;
        let mut pfds = [
            libc::pollfd {
                fd: if reading { input_fd } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: bell,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds for the duration of the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), 2, TICK.as_millis() as libc::c_int) };
        if n < 0 {
            continue;
        }
        if pfds[1].revents != 0 {
            unring(bell);
        }
        forward_events(s, c, m.pretty);
        if pfds[0].revents == 0 {
            continue;
        }
        match receive(input_fd, input, &mut buf, &mut received) {
            Ok(Some(0)) | Err(_) => return,
            Ok(None) => {}
            Ok(Some(n)) => handle_input(&buf[..n], &mut received, s, c, m),
        }
    }
}

fn handle_input(bytes: &[u8], received: &mut Vec<OwnedFd>, s: &mut Session, c: &Connection, m: &QmpMonitor) {
    for frame in s.frames(bytes) {
        c.busy.store(true, Ordering::Release);
        let reply = {
            let mut ctx = Ctx {
                engine: &*m.engine,
                hmp: &*m.hmp,
                fds: &m.fds,
                received,
            };
            s.handle(frame, &mut ctx)
        };
        // Events a command caused come before its answer, as in QEMU.
        forward_events(s, c, m.pretty);
        c.queue.push(&encode(&reply.message, m.pretty));
        c.busy.store(false, Ordering::Release);
        if reply.quit {
            crate::output::Sink::flush(&c.queue, QUIT_FLUSH);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::MonitorBuilder;
    use crate::fake::Fake;
    use crate::hmp::Hmp;
    use serde_json::{Value, json};
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    struct Conn {
        s: UnixStream,
        r: BufReader<UnixStream>,
    }

    impl Conn {
        fn open(path: &std::path::Path) -> (Conn, Value) {
            let s = UnixStream::connect(path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut c = Conn {
                r: BufReader::new(s.try_clone().unwrap()),
                s,
            };
            let greeting = c.line();
            (c, greeting)
        }

        fn line(&mut self) -> Value {
            let mut l = String::new();
            self.r.read_line(&mut l).unwrap();
            assert!(l.ends_with("\r\n"), "{l:?}");
            serde_json::from_str(&l).unwrap()
        }

        fn send(&mut self, text: &str) {
            self.s.write_all(text.as_bytes()).unwrap();
        }

        /// Sends `text` with a descriptor attached (SCM_RIGHTS).
        fn send_with_fd(&mut self, text: &str, fd: i32) {
            let mut iov = libc::iovec {
                iov_base: text.as_ptr() as *mut libc::c_void,
                iov_len: text.len(),
            };
            let mut control = [0u64; 4];
            // SAFETY: msghdr is plain data; every pointer below refers to live buffers.
            unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(4) as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
                libc::CMSG_DATA(cmsg).cast::<i32>().write_unaligned(fd);
                assert_eq!(libc::sendmsg(self.s.as_raw_fd(), &msg, 0), text.len() as isize);
            }
        }
    }

    #[test]
    fn sessions_on_a_unix_socket() {
        let dir = std::env::temp_dir().join(format!("qmp-transport-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("q.sock");
        let engine = Fake::running();
        let spec = format!("unix:{},server,nowait", path.display());
        let h = MonitorBuilder::new("0.1.0", Arc::new(Hmp::new(engine.clone())))
            .qmp(engine.clone(), false)
            .start(&spec)
            .unwrap();
        assert!(h.is_qmp());
        let (mut c, greeting) = Conn::open(&path);
        assert_eq!(greeting["QMP"]["capabilities"], json!(["oob"]));
        // Two requests in one write, split across writes too.
        c.send("{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-kvm\", \"id\"");
        assert_eq!(c.line(), json!({"return": {}}));
        c.send(": 2}\n");
        assert_eq!(c.line(), json!({"return": {"enabled": true, "present": true}, "id": 2}));
        // The event a command causes comes before its answer.
        c.send("{\"execute\": \"stop\"}");
        assert_eq!(c.line()["event"], "STOP");
        assert_eq!(c.line(), json!({"return": {}}));
        let null = std::fs::File::open("/dev/null").unwrap();
        c.send_with_fd("{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f\"}}", null.as_raw_fd());
        assert_eq!(c.line(), json!({"return": {}}));
        c.send(&format!(
            "\"{}\" {{\"execute\": \"closefd\", \"arguments\": {{\"fdname\": \"f\"}}}}",
            "x".repeat(3 << 20)
        ));
        assert_eq!(c.line()["error"]["desc"], "JSON token size limit exceeded");
        assert_eq!(c.line(), json!({"return": {}}), "the descriptor was kept by name");
        h.flush(Instant::now() + Duration::from_secs(1));
        // The next client gets a fresh session.
        drop(c);
        let (mut c, _) = Conn::open(&path);
        c.send("{\"execute\": \"query-kvm\"}");
        assert_eq!(c.line()["error"]["class"], "CommandNotFound");
        h.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
