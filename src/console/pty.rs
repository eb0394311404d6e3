//! Allocating a pseudo-terminal for `-serial pty`.

use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

/// Opens a pty pair in raw mode; returns the master side and the slave's path.
/// The slave is closed here: clients open it by name.
pub fn open() -> io::Result<(File, String)> {
    let (mut master, mut slave) = (0, 0);
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: openpty writes two fds and a NUL-terminated name into buffers we own;
    // the name buffer is larger than any pty path.
    let r = unsafe { libc::openpty(&mut master, &mut slave, name.as_mut_ptr(), std::ptr::null(), std::ptr::null()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `slave` is a valid descriptor from openpty; termios is plain data.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(slave, libc::TCSANOW, &t);
        }
        libc::close(slave);
    }
    // SAFETY: name was NUL-terminated by openpty.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
    // SAFETY: `master` is a fresh descriptor owned by the returned File.
    Ok((unsafe { File::from_raw_fd(master) }, path))
}

/// The master side as an output that never blocks: while nobody has the slave open (or
/// reads it), output is dropped rather than stalling the vCPU that writes the UART.
pub struct PtyOut(pub File);

impl io::Write for PtyOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let ready = unsafe { libc::poll(&mut p, 1, 0) };
        if ready <= 0 || p.revents & libc::POLLOUT == 0 {
            return Ok(buf.len());
        }
        match self.0.write(buf) {
            Ok(n) => Ok(n),
            Err(_) => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The master side as an input that survives clients coming and going: with no slave open,
/// reads fail with EIO, so wait and try again.
pub struct PtyIn(pub File);

impl io::Read for PtyIn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Ok(0) | Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                Ok(n) => return Ok(n),
            }
        }
    }
}
