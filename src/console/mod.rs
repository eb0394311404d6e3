//! The serial console's host side: where COM1's output goes and where its input comes from.
//!
//! The backend lives for the whole process, while the guest's UART is rebuilt on every
//! reboot; input is routed to whichever UART is current.

mod escape;
pub use escape::TERMINATED;
mod pty;

use crate::config::SerialBackend;
use crate::vm::VmEvent;
use crossbeam_channel::Sender;
use devices::bus::lock;
use devices::legacy::serial::SerialDevice;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::FromRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use vmm_sys_util::terminal::Terminal;

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

/// A writer shared by every UART instance the process creates.
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
    /// Set when the terminal was put in raw mode and must be restored at exit.
    raw_stdin: bool,
}

/// An unbuffered writer on a file descriptor we own a duplicate of.
fn dup_file(fd: i32) -> io::Result<File> {
    // SAFETY: dup on a valid descriptor; the result is owned by the returned File.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(new) })
}

impl Console {
    /// Opens the backend and starts its input thread (stdio and pty have input).
    pub fn open(backend: &SerialBackend, events: Sender<VmEvent>) -> Result<Console, ConsoleError> {
        let target: Target = Arc::new(Mutex::new(None));
        let mut raw_stdin = false;
        let out: Box<dyn Write + Send> = match backend {
            SerialBackend::Null => Box::new(io::sink()),
            SerialBackend::File(path) => Box::new(
                OpenOptions::new().create(true).append(true).open(path).map_err(|err| ConsoleError::File { path: path.display().to_string(), err })?,
            ),
            SerialBackend::Pty => {
                let (master, name) = pty::open().map_err(ConsoleError::Pty)?;
                println!("char device redirected to {name} (label serial0)");
                let reader = master.try_clone().map_err(ConsoleError::Pty)?;
                spawn_input(Box::new(pty::PtyIn(reader)), target.clone(), None)?;
                Box::new(pty::PtyOut(master))
            }
            SerialBackend::Stdio => {
                if io::stdin().is_terminal() {
                    raw_stdin = io::stdin().lock().set_raw_mode().is_ok();
                }
                let input = dup_file(0).map_err(ConsoleError::Pty)?;
                spawn_input(Box::new(input), target.clone(), Some(events))?;
                Box::new(dup_file(1).map_err(ConsoleError::Pty)?)
            }
        };
        Ok(Console { out: SharedOut(Arc::new(Mutex::new(out))), target, raw_stdin })
    }

    /// A writer for a new UART's output.
    pub fn output(&self) -> SharedOut {
        self.out.clone()
    }

    /// Routes input to `uart` from now on.
    pub fn attach(&self, uart: Arc<Mutex<SerialDevice>>) {
        *lock(&self.target) = Some(uart);
    }

    /// Puts the terminal back the way it was.
    pub fn restore_terminal(&self) {
        if self.raw_stdin {
            let _ = io::stdin().lock().set_canon_mode();
        }
    }

}

/// Copies input bytes into the current UART. With `events` (stdio), Ctrl-A escapes are
/// interpreted; a pty passes every byte through.
fn spawn_input(mut src: Box<dyn Read + Send>, target: Target, events: Option<Sender<VmEvent>>) -> Result<(), ConsoleError> {
    let mut out = dup_file(1).ok();
    let body = move || {
        let mut esc = escape::Escapes::default();
        let mut buf = [0u8; 256];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let mut to_guest = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if events.is_none() {
                    to_guest.push(b);
                    continue;
                }
                match esc.feed(b) {
                    escape::Action::Guest(bytes) => to_guest.extend_from_slice(bytes.as_slice()),
                    escape::Action::None => {}
                    escape::Action::Print(text) => {
                        if let Some(o) = out.as_mut() {
                            let _ = o.write_all(text.as_bytes());
                        }
                    }
                    escape::Action::Quit => {
                        if let Some(ev) = &events {
                            let _ = ev.send(VmEvent::Quit);
                        }
                        return;
                    }
                }
            }
            deliver(&target, &to_guest);
        }
    };
    std::thread::Builder::new().name("console-in".into()).spawn(body).map_err(ConsoleError::Thread)?;
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
            // A guest that never reads its UART must not wedge this thread forever:
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
