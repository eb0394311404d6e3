//! Thin, checked wrappers over the few system calls the transports need:
//! `poll`, `read`, `write`/`send`, `fcntl` and terminal modes.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What `wait` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    Readable,
    /// The other side hung up (or the descriptor is in error).
    Hangup,
    Timeout,
}

fn poll_one(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<libc::c_short> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is a valid pollfd for the duration of the call and we
    // pass a count of one.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(if n == 0 { 0 } else { pfd.revents })
}

/// Waits until `fd` is readable (if `want_read`), hangs up, or `timeout`
/// passes.
pub(crate) fn wait(fd: RawFd, want_read: bool, timeout: Duration) -> io::Result<Ready> {
    let events = if want_read { libc::POLLIN } else { 0 };
    let revents = poll_one(fd, events, timeout)?;
    if want_read && revents & libc::POLLIN != 0 {
        // Read first: data may still be buffered behind a hangup.
        return Ok(Ready::Readable);
    }
    if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Ok(Ready::Hangup);
    }
    Ok(Ready::Timeout)
}

/// Reads what is available. `Ok(None)` if nothing was (a spurious wakeup);
/// `Ok(Some(0))` at end of file. EIO (a pty whose other side closed) counts
/// as end of file.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 {
        return Ok(Some(n.unsigned_abs()));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR) => Ok(None),
        Some(libc::EIO) => Ok(Some(0)),
        _ => Err(err),
    }
}

/// Writes all of `data`, waiting (in 100 ms slices) while the descriptor is
/// full, and giving up once `abort` is set. Sockets are written with
/// `MSG_NOSIGNAL` so a vanished peer gives EPIPE rather than SIGPIPE.
pub(crate) fn write_all(fd: RawFd, socket: bool, mut data: &[u8], abort: &AtomicBool) -> io::Result<()> {
    while !data.is_empty() {
        if abort.load(Ordering::Acquire) {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        // SAFETY: `data` is valid for reads of `data.len()` bytes.
        let n = unsafe {
            if socket {
                libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL)
            } else {
                libc::write(fd, data.as_ptr().cast(), data.len())
            }
        };
        if n >= 0 {
            data = &data[n.unsigned_abs()..];
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                let revents = poll_one(fd, libc::POLLOUT, Duration::from_millis(100))?;
                if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                    return Err(io::Error::from(io::ErrorKind::BrokenPipe));
                }
            }
            _ => return Err(err),
        }
    }
    Ok(())
}

/// Sets or clears `O_NONBLOCK`.
pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no pointers involved.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The terminal settings of `fd`, if it is a terminal.
pub(crate) fn get_termios(fd: RawFd) -> Option<libc::termios> {
    // SAFETY: termios is plain data; an all-zero value is valid to pass to
    // tcgetattr, which fills it in.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios.
    let ok = unsafe { libc::tcgetattr(fd, &mut t) } == 0;
    ok.then_some(t)
}

pub(crate) fn set_termios(fd: RawFd, t: &libc::termios) -> io::Result<()> {
    // SAFETY: `t` points to a valid termios for the duration of the call.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The raw mode QEMU uses for stdio: no echo, no line editing, no CR/LF
/// translation on input, 8-bit characters; output post-processing stays on
/// and signals (Ctrl-C) stay on unless `keep_signals` is false.
pub(crate) fn raw_mode(mut t: libc::termios, keep_signals: bool) -> libc::termios {
    t.c_iflag &= !(libc::IGNBRK | libc::BRKINT | libc::PARMRK | libc::ISTRIP | libc::INLCR | libc::IGNCR | libc::ICRNL | libc::IXON);
    t.c_oflag |= libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN);
    if !keep_signals {
        t.c_lflag &= !libc::ISIG;
    }
    t.c_cflag &= !(libc::CSIZE | libc::PARENB);
    t.c_cflag |= libc::CS8;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    t
}

/// The text of an OS error without Rust's " (os error N)" suffix, as QEMU
/// prints `strerror`.
pub(crate) fn error_text(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
