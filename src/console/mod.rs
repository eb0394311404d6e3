//! The serial console's host side: where COM1's output goes and where its input comes from.
//!
//! The backend lives for the whole process, while the guest's UART is rebuilt on every
//! reboot; input is routed to whichever UART is current. With `mon:stdio` (the `-nographic`
//! default) the terminal is shared with the monitor through the monitor crate's
//! multiplexer, which then carries the UART's bytes both ways.

mod pty;

use crate::config::SerialBackend;
use devices::bus::lock;
use devices::legacy::serial::SerialDevice;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("cannot open serial output file '{path}': {}", crate::errtext::io(err))]
    File { path: String, err: io::Error },
    #[error("cannot create a pty for the serial port: {0}")]
    Pty(io::Error),
    #[error("cannot start the console input thread: {0}")]
    Thread(io::Error),
}

/// The UART that input goes to (replaced on every reboot).
type Target = Arc<Mutex<Option<Arc<Mutex<SerialDevice>>>>>;

/// A writer shared by every UART instance the process creates; its destination can be
/// set once the monitor multiplexer exists.
#[derive(Clone)]
pub struct SharedOut(Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        lock(&self.0).flush()
    }
}

pub struct Console {
    out: SharedOut,
    target: Target,
    /// The terminal settings to put back at exit, if we changed them.
    saved_termios: Option<libc::termios>,
}

/// An unbuffered file on a duplicate of `fd`.
fn dup_file(fd: i32) -> io::Result<File> {
    // SAFETY: dup on a valid descriptor; the result is owned by the returned File.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(new) })
}

/// Turns off line buffering and echo on stdin but keeps Ctrl-C as a signal, like QEMU's
/// plain `stdio` character device. Returns the settings to restore.
fn stdin_raw_keep_signals() -> Option<libc::termios> {
    if !io::stdin().is_terminal() {
        return None;
    }
    let fd = io::stdin().as_raw_fd();
    // SAFETY: termios is plain data filled by tcgetattr on a terminal descriptor.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return None;
        }
        let saved = t;
        t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::IEXTEN);
        t.c_iflag &= !(libc::ICRNL | libc::IXON);
        t.c_oflag |= libc::OPOST | libc::ONLCR;
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        (libc::tcsetattr(fd, libc::TCSANOW, &t) == 0).then_some(saved)
    }
}

impl Console {
    /// Opens the backend. Stdio and pty get an input thread; a multiplexed stdio starts
    /// with no output until [`Console::set_output`] hands it the multiplexer's writer.
    pub fn open(backend: &SerialBackend) -> Result<Console, ConsoleError> {
        let target: Target = Arc::new(Mutex::new(None));
        let mut saved_termios = None;
        let out: Box<dyn Write + Send> = match backend {
            SerialBackend::Null | SerialBackend::Stdio { mux: true } => Box::new(io::sink()),
            SerialBackend::File(path) => {
                Box::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|err| ConsoleError::File {
                            path: path.display().to_string(),
                            err,
                        })?,
                )
            }
            SerialBackend::Fd(fd) => Box::new(dup_file(*fd).map_err(|err| ConsoleError::File {
                path: format!("/dev/fdset (descriptor {fd})"),
                err,
            })?),
            SerialBackend::Pty => {
                let (master, name) = pty::open().map_err(ConsoleError::Pty)?;
                println!("char device redirected to {name} (label serial0)");
                let reader = master.try_clone().map_err(ConsoleError::Pty)?;
                spawn_input(Box::new(pty::PtyIn(reader)), target.clone())?;
                Box::new(pty::PtyOut(master))
            }
            SerialBackend::Stdio { mux: false } => {
                saved_termios = stdin_raw_keep_signals();
                let input = dup_file(0).map_err(ConsoleError::Pty)?;
                spawn_input(Box::new(input), target.clone())?;
                Box::new(dup_file(1).map_err(ConsoleError::Pty)?)
            }
        };
        Ok(Console {
            out: SharedOut(Arc::new(Mutex::new(out))),
            target,
            saved_termios,
        })
    }

    /// A writer for a new UART's output.
    pub fn output(&self) -> SharedOut {
        self.out.clone()
    }

    /// Sends the UART's output to `w` from now on (the `mon:stdio` multiplexer).
    pub fn set_output(&self, w: Box<dyn Write + Send>) {
        *lock(&self.out.0) = w;
    }

    /// Routes input to `uart` from now on.
    pub fn attach(&self, uart: Arc<Mutex<SerialDevice>>) {
        *lock(&self.target) = Some(uart);
    }

    /// What the monitor multiplexer feeds the user's keystrokes to.
    pub fn frontend(&self) -> Box<dyn monitor::SerialFrontend> {
        Box::new(Frontend(self.target.clone()))
    }

    /// Puts the terminal back the way it was.
    pub fn restore_terminal(&self) {
        if let Some(t) = &self.saved_termios {
            // SAFETY: restoring settings read earlier from the same descriptor.
            unsafe { libc::tcsetattr(io::stdin().as_raw_fd(), libc::TCSANOW, t) };
        }
        monitor::restore_terminal();
    }
}

struct Frontend(Target);

impl monitor::SerialFrontend for Frontend {
    fn input(&mut self, bytes: &[u8]) {
        deliver(&self.0, bytes);
    }
}

/// Copies bytes from `src` into the current UART.
fn spawn_input(mut src: Box<dyn Read + Send>, target: Target) -> Result<(), ConsoleError> {
    let body = move || {
        let mut buf = [0u8; 256];
        loop {
            match src.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => deliver(&target, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    };
    std::thread::Builder::new()
        .name("console-in".into())
        .spawn(body)
        .map_err(ConsoleError::Thread)?;
    Ok(())
}

/// Feeds bytes to the UART, waiting while its FIFO is full (the guest reads it).
fn deliver(target: &Target, mut bytes: &[u8]) {
    let mut idle = 0;
    while !bytes.is_empty() {
        let uart = lock(target).clone();
        let took = uart.map_or(bytes.len(), |u| lock(&u).enqueue_input(bytes));
        bytes = &bytes[took..];
        if took == 0 {
            idle += 1;
            // A guest that never reads its UART must not wedge input forever:
            // after ~2 s of a full FIFO the rest of this chunk is dropped.
            if idle > 2000 {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        } else {
            idle = 0;
        }
    }
}
