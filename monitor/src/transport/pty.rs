//! `pty` monitors: a pseudo-terminal whose slave side clients open. Each
//! time a client opens it, a new session starts with a banner; when the
//! last client closes it, the session ends.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;

use super::driver::{Driver, TICK, WriteTarget, Writer, serve_fd};
use super::fd::{self, Ready, error_text};
use super::{Context, MonitorError, Started};
use crate::output::Overflow;

/// Allocates a pty in raw mode; returns the master and the slave's path.
fn open_pty() -> std::io::Result<(OwnedFd, PathBuf)> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: the out-pointers are valid; name, termios and winsize may be
    // null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both descriptors are open and ours.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    if let Some(mut t) = fd::get_termios(slave.as_raw_fd()) {
        // SAFETY: `t` is a valid termios obtained from tcgetattr.
        unsafe { libc::cfmakeraw(&mut t) };
        fd::set_termios(slave.as_raw_fd(), &t)?;
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `name` is writable for its full length, which we pass.
    let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string into `name`.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let path = PathBuf::from(path.to_string_lossy().into_owned());
    // Close our slave descriptor, as QEMU does: the master then reports a
    // hang-up until a client opens the slave, which is how we see clients.
    drop(slave);
    // SAFETY: F_SETFD on a descriptor we own.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    fd::set_nonblocking(master.as_raw_fd(), true)?;
    Ok((master, path))
}

/// Starts a `pty` monitor.
pub(crate) fn start(ctx: Context) -> Result<Started, MonitorError> {
    let (master, path) = open_pty().map_err(|e| MonitorError::Pty(error_text(&e)))?;
    let filename = Arc::new(Mutex::new(format!("pty:{}", path.display())));
    let thread = thread::Builder::new()
        .name(format!("monitor-{}", ctx.label))
        .spawn(move || run(master, ctx))
        .map_err(|e| MonitorError::Io(error_text(&e)))?;
    let mut started = Started::new(filename, vec![thread]);
    started.pty_path = Some(path);
    Ok(started)
}

fn run(master: OwnedFd, ctx: Context) {
    let raw = master.as_raw_fd();
    while !ctx.stop.load(Ordering::Acquire) {
        match fd::wait(raw, false, TICK) {
            // No client has the slave open.
            Ok(Ready::Hangup) | Err(_) => {
                thread::sleep(TICK);
                continue;
            }
            Ok(Ready::Readable | Ready::Timeout) => {}
        }
        let Ok(write_fd) = master.try_clone() else {
            thread::sleep(TICK);
            continue;
        };
        let Ok(writer) = Writer::spawn(WriteTarget::Owned(write_fd), Overflow::Disconnect) else {
            thread::sleep(TICK);
            continue;
        };
        let mut driver = Driver::new(&ctx.version, Arc::clone(&ctx.vmm), Arc::new(writer.queue.clone()));
        driver.open();
        serve_fd(raw, &mut driver, &ctx.stop, None);
        writer.finish(false);
        // Drop whatever the departed client left unread or unsent.
        // SAFETY: tcflush on the master we own.
        unsafe { libc::tcflush(raw, libc::TCIOFLUSH) };
    }
}
