//! `fd:` migrations: the stream goes over a descriptor the caller opened and passed in
//! (libvirt connects the two sides itself and hands each its end with `getfd`). A socket
//! carries the destination's answers back as any socket URI does; a pipe carries none,
//! like `exec:`.

use super::uri::{Accepted, Outgoing, STALL_TIMEOUT};
use crate::errtext;
use std::fs::File;
use std::io::BufReader;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Whether `fd` is a socket (which can answer back) rather than a pipe or a file.
fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat fills a plain-data struct we own; an all-zero stat is a valid start.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes for the duration of the call.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    ok && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

/// The stream code blocks on reads and writes; a descriptor passed in may be non-blocking.
fn set_blocking(fd: RawFd) -> Result<(), String> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no pointers involved.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(format!("cannot use the migration descriptor: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// A socket that stops moving fails the transfer after `t` (as the socket URIs do).
fn set_timeout(fd: RawFd, option: libc::c_int, t: Duration) {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setting a timeval socket option from a valid pointer and its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

fn dup(fd: &OwnedFd) -> Result<File, String> {
    fd.try_clone().map(File::from).map_err(|e| errtext::io(&e))
}

/// The source's end of an `fd:` migration.
pub fn outgoing(fd: OwnedFd) -> Result<Outgoing, String> {
    set_blocking(fd.as_raw_fd())?;
    let socket = is_socket(fd.as_raw_fd());
    let raw = fd.as_raw_fd();
    let reply = if socket {
        set_timeout(raw, libc::SO_SNDTIMEO, STALL_TIMEOUT);
        set_timeout(raw, libc::SO_RCVTIMEO, STALL_TIMEOUT);
        Some(Box::new(dup(&fd)?) as Box<dyn std::io::Read + Send>)
    } else {
        None
    };
    // The aborter owns a copy, so shutting it down never hits a reused descriptor number.
    let kill = dup(&fd)?;
    let socket = if socket { Some(dup(&fd)?) } else { None };
    Ok(Outgoing {
        writer: Box::new(File::from(fd)),
        reply,
        abort: Box::new(move || {
            // SAFETY: shutdown(2) on a descriptor `kill` keeps open; a pipe just says ENOTSOCK.
            unsafe {
                libc::shutdown(kill.as_raw_fd(), libc::SHUT_RDWR);
            }
        }),
        child: None,
        socket,
    })
}

/// The destination's end: the stream is already connected, nothing to accept.
pub fn incoming(fd: OwnedFd) -> Result<Accepted, String> {
    set_blocking(fd.as_raw_fd())?;
    let (back, socket) = if is_socket(fd.as_raw_fd()) {
        set_timeout(fd.as_raw_fd(), libc::SO_SNDTIMEO, STALL_TIMEOUT);
        (Some(Box::new(dup(&fd)?) as Box<dyn std::io::Write + Send>), Some(dup(&fd)?))
    } else {
        (None, None)
    };
    Ok(Accepted {
        input: Box::new(BufReader::with_capacity(64 << 10, File::from(fd))),
        reply: back,
        socket,
    })
}

/// `-incoming fd:N`: descriptor N, inherited from whoever started godwit.
pub fn inherited(number: &str) -> Result<OwnedFd, String> {
    let fd: RawFd = number
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("Invalid file descriptor number '{number}'"))?;
    // SAFETY: F_GETFD only asks whether the number is an open descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("Invalid file descriptor number '{number}'"));
    }
    // SAFETY: the descriptor is open and, passed to godwit for this, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn socket_pair_carries_both_ways() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut out = outgoing(OwnedFd::from(a)).unwrap();
        let a = incoming(OwnedFd::from(b)).unwrap();
        let (mut input, back) = (a.input, a.reply);
        out.writer.write_all(b"GWMS").unwrap();
        let mut got = [0u8; 4];
        input.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"GWMS");
        back.unwrap().write_all(b"GWOK").unwrap();
        out.reply.as_mut().unwrap().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"GWOK");
        (out.abort)();
        assert!(out.writer.write_all(&[0u8; 1 << 20]).is_err(), "aborted");
    }

    #[test]
    fn pipes_have_no_way_back_and_numbers_are_checked() {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        assert!(outgoing(w).unwrap().reply.is_none());
        assert!(incoming(r).unwrap().reply.is_none());
        assert_eq!(inherited("x").unwrap_err(), "Invalid file descriptor number 'x'");
        assert_eq!(inherited("987654").unwrap_err(), "Invalid file descriptor number '987654'");
    }
}
