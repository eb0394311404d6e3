//! `stdio` and `mon:stdio` monitors. With `mon:stdio` the terminal is
//! shared with a serial port through a [`Mux`]: Ctrl-A c switches.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::Instant;

use super::driver::{Driver, WriteTarget, Writer, serve_fd};
use super::fd::{self, Ready, error_text};
use super::{Context, MonitorError, SerialFrontend, Started};
use crate::mux::{Focus, Mux, MuxEvent, MuxItem, TERMINATED};
use crate::output::{OutputQueue, Overflow, Sink};

static STDIO_IN_USE: AtomicBool = AtomicBool::new(false);
static SAVED_TERMIOS: Mutex<Option<libc::termios>> = Mutex::new(None);
static ATEXIT: Once = Once::new();

/// Puts the terminal on stdin back the way it was before a stdio monitor
/// switched it to raw mode. Safe to call at any time, any number of times;
/// it also runs automatically at process exit.
pub fn restore_terminal() {
    let saved = *SAVED_TERMIOS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = saved {
        let _ = fd::set_termios(libc::STDIN_FILENO, &t);
    }
}

extern "C" fn restore_at_exit() {
    restore_terminal();
}

/// `-qmp stdio`: a QMP session on stdin and stdout (no terminal handling).
pub(crate) fn start_qmp(ctx: Context) -> Result<Started, MonitorError> {
    if STDIO_IN_USE.swap(true, Ordering::AcqRel) {
        return Err(MonitorError::StdioInUse);
    }
    let Some(q) = ctx.qmp.clone() else {
        return Err(MonitorError::Io("not a QMP monitor".into()));
    };
    let _ = fd::set_nonblocking(libc::STDIN_FILENO, true);
    let thread = thread::Builder::new()
        .name(format!("monitor-{}", ctx.label))
        .spawn(move || {
            let out = WriteTarget::Borrowed(libc::STDOUT_FILENO);
            super::qmp::serve(libc::STDIN_FILENO, super::qmp::Input::Plain, out, &q, &ctx.stop);
        })
        .map_err(|e| MonitorError::Io(error_text(&e)))?;
    Ok(Started::new(Arc::new(Mutex::new("stdio".to_string())), vec![thread]))
}

/// Where the terminal's input comes from and its output goes.
pub(crate) enum Terminal {
    /// The process's own stdin and stdout.
    Stdio,
    /// Descriptors handed in by the caller.
    Fds { input: OwnedFd, output: OwnedFd },
}

/// Output to a multiplexed terminal: timestamps applied, then queued.
pub(crate) struct MuxSink {
    queue: OutputQueue,
    mux: Arc<Mutex<Mux>>,
    clock: Instant,
}

impl Sink for MuxSink {
    fn send(&self, bytes: &[u8]) {
        let now = u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let filtered = self.mux.lock().unwrap_or_else(|p| p.into_inner()).filter_output(bytes, now);
        self.queue.push(&filtered);
    }
    fn pending(&self) -> usize {
        self.queue.pending()
    }
    fn is_dead(&self) -> bool {
        false
    }
}

/// Writes guest serial output to a multiplexed terminal. Never blocks;
/// bytes pass unchanged (apart from timestamps when toggled on).
#[derive(Clone)]
pub struct SerialWriter {
    sink: Arc<MuxSink>,
}

impl SerialWriter {
    /// Waits (at most `timeout`) until the terminal has taken every byte written so far.
    /// `Write::flush` does not wait: the UART flushes after every byte, from a vCPU.
    pub fn drain(&self, timeout: std::time::Duration) {
        Sink::flush(&*self.sink, timeout);
    }
}

impl Write for SerialWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink.send(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts a monitor on a terminal. `mux` with or without a serial front
/// end; without `mux`, a plain monitor.
pub(crate) fn start(
    terminal: Terminal,
    mux: bool,
    serial: Option<Box<dyn SerialFrontend>>,
    escape: u8,
    ctx: Context,
) -> Result<Started, MonitorError> {
    let (input, output, owned_in): (RawFd, WriteTarget, Option<OwnedFd>) = match terminal {
        Terminal::Stdio => {
            if STDIO_IN_USE.swap(true, Ordering::AcqRel) {
                return Err(MonitorError::StdioInUse);
            }
            if let Some(t) = fd::get_termios(libc::STDIN_FILENO) {
                *SAVED_TERMIOS.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
                ATEXIT.call_once(|| {
                    // SAFETY: registering a plain extern "C" function.
                    unsafe { libc::atexit(restore_at_exit) };
                });
                // mon:stdio passes Ctrl-C to the guest, as QEMU does.
                let _ = fd::set_termios(libc::STDIN_FILENO, &fd::raw_mode(t, !mux));
            }
            (libc::STDIN_FILENO, WriteTarget::Borrowed(libc::STDOUT_FILENO), None)
        }
        Terminal::Fds { input, output } => (input.as_raw_fd(), WriteTarget::Owned(output), Some(input)),
    };
    let writer = Writer::spawn(output, Overflow::Drop).map_err(|e| MonitorError::Io(error_text(&e)))?;
    let (name_base, name) = if mux { ("stdio", "mux") } else { ("stdio", "stdio") };
    let filename = Arc::new(Mutex::new(name.to_string()));
    let mut started;
    if mux {
        let has_serial = serial.is_some();
        let mux = Arc::new(Mutex::new(Mux::new(escape, has_serial)));
        let sink = Arc::new(MuxSink {
            queue: writer.queue.clone(),
            mux: Arc::clone(&mux),
            clock: Instant::now(),
        });
        let serial_writer = SerialWriter { sink: Arc::clone(&sink) };
        let thread = thread::Builder::new()
            .name(format!("monitor-{}", ctx.label))
            .spawn(move || {
                run_mux(input, mux, sink, serial, &ctx);
                writer.finish(!ctx.stop.load(Ordering::Acquire));
                drop(owned_in);
            })
            .map_err(|e| MonitorError::Io(error_text(&e)))?;
        started = Started::new(filename, vec![thread]);
        started.serial = Some(serial_writer);
        started.base_name = Some(name_base.to_string());
    } else {
        let thread = thread::Builder::new()
            .name(format!("monitor-{}", ctx.label))
            .spawn(move || {
                let mut driver = Driver::new(&ctx.version, Arc::clone(&ctx.vmm), Arc::new(writer.queue.clone()));
                driver.open();
                serve_fd(input, &mut driver, &ctx.stop, None);
                writer.finish(!ctx.stop.load(Ordering::Acquire));
                drop(owned_in);
            })
            .map_err(|e| MonitorError::Io(error_text(&e)))?;
        started = Started::new(filename, vec![thread]);
    }
    Ok(started)
}

fn run_mux(input: RawFd, mux: Arc<Mutex<Mux>>, sink: Arc<MuxSink>, mut serial: Option<Box<dyn SerialFrontend>>, ctx: &Context) {
    let has_serial = serial.is_some();
    let mut driver = Driver::new(&ctx.version, Arc::clone(&ctx.vmm), Arc::clone(&sink) as Arc<dyn Sink>);
    if !has_serial {
        driver.open();
    }
    let mut buf = vec![0u8; 4096];
    let mut eof = false;
    loop {
        // With a serial port attached, input ending (stdin at EOF, as under a test
        // harness) must not stop the guest's output: keep serving until stopped.
        if ctx.stop.load(Ordering::Acquire) || driver.is_closed() || (eof && !has_serial && (driver.is_idle() || driver.has_running())) {
            return;
        }
        let timeout = driver.timeout();
        if eof || !driver.wants_input() {
            thread::sleep(timeout);
        } else {
            match fd::wait(input, true, timeout) {
                Ok(Ready::Readable) => match fd::read(input, &mut buf) {
                    Ok(Some(0)) | Err(_) => eof = true,
                    Ok(Some(n)) => {
                        let items = mux.lock().unwrap_or_else(|p| p.into_inner()).feed(&buf[..n]);
                        for item in items {
                            handle(item, &mut driver, &sink, &mux, serial.as_deref_mut(), has_serial);
                        }
                    }
                    Ok(None) => {}
                },
                Ok(Ready::Hangup) | Err(_) => eof = true,
                Ok(Ready::Timeout) => {}
            }
        }
        driver.tick();
    }
}

fn handle(
    item: MuxItem,
    driver: &mut Driver,
    sink: &MuxSink,
    mux: &Mutex<Mux>,
    serial: Option<&mut (dyn SerialFrontend + 'static)>,
    has_serial: bool,
) {
    match item {
        MuxItem::Serial(bytes) => {
            if let Some(serial) = serial {
                serial.input(&bytes);
            }
        }
        MuxItem::Monitor(bytes) => driver.input(&bytes),
        MuxItem::Event(event) => {
            match event {
                MuxEvent::Help => {
                    let text = mux.lock().unwrap_or_else(|p| p.into_inner()).help_text();
                    sink.send(&text);
                }
                MuxEvent::Exit => {
                    sink.send(TERMINATED);
                    driver.quit();
                }
                MuxEvent::Switch(Focus::Monitor) => {
                    if !has_serial && !driver.is_busy() {
                        // The monitor is the only front end: it leaves and
                        // comes straight back.
                        driver.send(b"\r\n");
                    }
                    if driver.is_open() {
                        driver.reprompt();
                    } else {
                        driver.open();
                    }
                }
                MuxEvent::Switch(Focus::Serial) => {
                    if driver.is_open() && !driver.is_busy() {
                        driver.send(b"\r\n");
                    }
                }
                MuxEvent::SaveDisk | MuxEvent::Break | MuxEvent::ToggleTimestamps => {}
            }
            if let Some(serial) = serial {
                serial.event(event);
            }
        }
    }
}
