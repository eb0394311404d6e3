//! Running monitors on real devices: stdio (optionally shared with a serial
//! port), ptys, and TCP, telnet and UNIX sockets.
//!
//! Every monitor gets its own threads. A client that is slow or gone never
//! blocks the VMM or other monitors: output goes through a bounded queue
//! drained by a writer thread, and the VMM lock is taken only while a
//! command executes.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use monitor::*;
//! # struct MyVmm;
//! # impl Vmm for MyVmm {
//! #     fn execute(&self, _: &Command, _: &mut dyn std::io::Write) -> Result<Outcome, String> { Ok(Outcome::Done) }
//! # }
//! let vmm: SharedVmm = Arc::new(MyVmm);
//! let handle = MonitorBuilder::new("0.1.0", vmm)
//!     .label(compat_label(0))
//!     .start("telnet:127.0.0.1:5555,server,nowait")
//!     .unwrap_or_else(|e| {
//!         for line in e.report_lines("godwit", "telnet:127.0.0.1:5555,server,nowait") {
//!             eprintln!("{line}");
//!         }
//!         std::process::exit(1)
//!     });
//! println!("{}", handle.chardevs()[0]); // compat_monitor0: filename=disconnected:telnet:...
//! ```

mod driver;
mod fd;
mod pty;
pub(crate) mod qmp;
mod socket;
pub mod spec;
mod stdio;
pub mod telnet;

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use thiserror::Error;

pub use spec::{ChardevSpec, SpecError, TcpSpec, UnixSpec};
pub use stdio::{SerialWriter, restore_terminal};

use crate::engine::Engine;
use crate::mux::{DEFAULT_ESCAPE, MuxEvent};
use crate::vmm::SharedVmm;
use qmp::QmpMonitor;

/// The label QEMU gives the `index`-th `-monitor` (`compat_monitor0`, ...).
pub fn compat_label(index: usize) -> String {
    format!("compat_monitor{index}")
}

/// Why a monitor could not be started. `Display` gives QEMU's message;
/// [`MonitorError::report_lines`] gives the full lines QEMU prints.
#[derive(Debug, Error)]
pub enum MonitorError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("address resolution failed for {host}:{port}: {reason}")]
    Resolve { host: String, port: String, reason: String },
    #[error("Failed to find an available port: {0}")]
    Bind(String),
    #[error("Failed to bind socket to {path}: {reason}")]
    BindUnix { path: String, reason: String },
    #[error("Failed to connect to '{target}': {reason}")]
    Connect { target: String, reason: String },
    #[error("cannot use stdio by multiple character devices")]
    StdioInUse,
    #[error("a serial port can share the monitor only with mon:stdio")]
    SerialWithoutMux,
    #[error("Failed to create PTY: {0}")]
    Pty(String),
    #[error("QMP is not available on '{0}' (use a socket or stdio)")]
    QmpUnsupported(String),
    #[error("{0}")]
    Io(String),
}

impl MonitorError {
    /// The lines QEMU prints on stderr for this error, with `program` in
    /// place of `qemu-system-x86_64`: `godwit: -monitor bogus:1: 'bogus:1'
    /// is not a valid char driver`, then (for syntax errors)
    /// `godwit: -monitor bogus:1: parse error: bogus:1`.
    pub fn report_lines(&self, program: &str, spec: &str) -> Vec<String> {
        let mut lines = vec![format!("{program}: -monitor {spec}: {self}")];
        if matches!(self, MonitorError::Spec(e) if e.adds_parse_error_line()) {
            lines.push(format!("{program}: -monitor {spec}: parse error: {spec}"));
        }
        lines
    }
}

/// One line of `info chardev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevInfo {
    pub label: String,
    pub filename: String,
}

impl fmt::Display for ChardevInfo {
    /// `compat_monitor0: filename=unix:/path,server=on`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: filename={}", self.label, self.filename)
    }
}

/// The serial port sharing `mon:stdio` with the monitor.
pub trait SerialFrontend: Send {
    /// Bytes the user typed while the serial port had the focus.
    fn input(&mut self, bytes: &[u8]);
    /// Escape sequences: `Break` (send a break to the UART), `SaveDisk`
    /// (commit `-snapshot` disks), and, for information, `Help`,
    /// `Switch`, `ToggleTimestamps` and `Exit`. `Exit` has already printed
    /// `QEMU: Terminated` and run `quit` through the VMM.
    fn event(&mut self, event: MuxEvent) {
        let _ = event;
    }
}

/// What a started transport hands back to the handle.
pub(crate) struct Started {
    filename: Arc<Mutex<String>>,
    threads: Vec<JoinHandle<()>>,
    pty_path: Option<PathBuf>,
    local_addr: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
    serial: Option<SerialWriter>,
    /// For `mon:stdio`, the filename of the underlying `LABEL-base` device.
    base_name: Option<String>,
}

impl Started {
    fn new(filename: Arc<Mutex<String>>, threads: Vec<JoinHandle<()>>) -> Self {
        Started {
            filename,
            threads,
            pty_path: None,
            local_addr: None,
            unix_path: None,
            serial: None,
            base_name: None,
        }
    }
}

/// What every monitor thread needs.
pub(crate) struct Context {
    version: String,
    vmm: SharedVmm,
    stop: Arc<AtomicBool>,
    label: String,
    program: String,
    /// The option that asked for the monitor (`-monitor`, `-qmp`), for notices.
    option: String,
    /// For a QMP monitor: the protocol's shared state (HMP monitors have none).
    qmp: Option<Arc<QmpMonitor>>,
}

/// The short way to start a monitor.
pub struct Monitor;

impl Monitor {
    /// `MonitorBuilder::new(version, vmm).label(label).start(spec)`.
    pub fn start(spec: &str, label: &str, version: &str, vmm: SharedVmm) -> Result<MonitorHandle, MonitorError> {
        MonitorBuilder::new(version, vmm).label(label).start(spec)
    }
}

/// Configures and starts one monitor.
pub struct MonitorBuilder {
    version: String,
    vmm: SharedVmm,
    label: String,
    program: String,
    escape: u8,
    serial: Option<Box<dyn SerialFrontend>>,
    qmp: Option<Arc<QmpMonitor>>,
    option: String,
}

impl MonitorBuilder {
    /// `version` appears in the banner (`godwit VERSION monitor - ...`).
    pub fn new(version: impl Into<String>, vmm: SharedVmm) -> Self {
        MonitorBuilder {
            version: version.into(),
            vmm,
            label: compat_label(0),
            program: "godwit".into(),
            escape: DEFAULT_ESCAPE,
            serial: None,
            qmp: None,
            option: "-monitor".into(),
        }
    }

    /// The option named in the "waiting for connection" notice (default `-monitor`).
    pub fn option_name(mut self, option: impl Into<String>) -> Self {
        self.option = option.into();
        self
    }

    /// Makes this a QMP monitor on `engine` (`vmm`, HMP over the same engine, runs
    /// `human-monitor-command`); `pretty` lays replies out one member a line.
    pub fn qmp(mut self, engine: Arc<dyn Engine>, pretty: bool) -> Self {
        self.qmp = Some(Arc::new(QmpMonitor::new(engine, Arc::clone(&self.vmm), pretty)));
        self
    }

    /// The chardev label (default `compat_monitor0`).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// The program name in the "waiting for connection" notice.
    pub fn program_name(mut self, name: impl Into<String>) -> Self {
        self.program = name.into();
        self
    }

    /// The `mon:stdio` escape character (default Ctrl-A, as `-echr 1`).
    pub fn escape_char(mut self, escape: u8) -> Self {
        self.escape = escape;
        self
    }

    /// A serial port sharing `mon:stdio`; it gets the focus first, and
    /// Ctrl-A c switches to the monitor.
    pub fn serial(mut self, frontend: Box<dyn SerialFrontend>) -> Self {
        self.serial = Some(frontend);
        self
    }

    fn context(&self, stop: &Arc<AtomicBool>) -> Context {
        Context {
            version: self.version.clone(),
            vmm: Arc::clone(&self.vmm),
            stop: Arc::clone(stop),
            label: self.label.clone(),
            program: self.program.clone(),
            option: self.option.clone(),
            qmp: self.qmp.clone(),
        }
    }

    /// Starts the monitor described by a `-monitor` argument. Blocks until
    /// the first client connects for socket servers without `nowait`.
    pub fn start(self, spec: &str) -> Result<MonitorHandle, MonitorError> {
        let parsed = ChardevSpec::parse(spec)?;
        self.start_spec(parsed, spec)
    }

    /// Starts the monitor on a device already parsed (from `-chardev`); `spec` names it in
    /// messages.
    pub fn start_spec(self, parsed: ChardevSpec, spec: &str) -> Result<MonitorHandle, MonitorError> {
        if let Some(q) = self.qmp.clone() {
            return self.start_qmp(q, parsed, spec);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = self.context(&stop);
        let mux = matches!(parsed, ChardevSpec::Stdio { mux: true });
        if self.serial.is_some() && !mux {
            return Err(MonitorError::SerialWithoutMux);
        }
        let started = match &parsed {
            ChardevSpec::None => None,
            ChardevSpec::Stdio { mux } => Some(stdio::start(stdio::Terminal::Stdio, *mux, self.serial, self.escape, ctx)?),
            ChardevSpec::Pty => Some(pty::start(ctx)?),
            ChardevSpec::Tcp(t) => Some(socket::start_tcp(t, spec, ctx)?),
            ChardevSpec::Unix(u) => Some(socket::start_unix(u, spec, ctx)?),
            ChardevSpec::SocketFd(fd) => Some(socket::start_fd(*fd, ctx)?),
        };
        Ok(MonitorHandle {
            label: self.label,
            stop,
            started,
            stdio: matches!(parsed, ChardevSpec::Stdio { .. }),
            qmp: None,
        })
    }

    fn start_qmp(self, q: Arc<QmpMonitor>, parsed: ChardevSpec, spec: &str) -> Result<MonitorHandle, MonitorError> {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = self.context(&stop);
        let started = match &parsed {
            ChardevSpec::None => None,
            ChardevSpec::Stdio { mux: false } => Some(stdio::start_qmp(ctx)?),
            ChardevSpec::Tcp(t) => Some(socket::start_tcp(t, spec, ctx)?),
            ChardevSpec::Unix(u) => Some(socket::start_unix(u, spec, ctx)?),
            ChardevSpec::SocketFd(fd) => Some(socket::start_fd(*fd, ctx)?),
            ChardevSpec::Stdio { mux: true } | ChardevSpec::Pty => return Err(MonitorError::QmpUnsupported(spec.to_string())),
        };
        Ok(MonitorHandle {
            label: self.label,
            stop,
            started,
            stdio: false,
            qmp: Some(q),
        })
    }

    /// Runs a stdio-style monitor on the given descriptors instead of the
    /// process's stdin and stdout (for tests, or descriptors inherited from
    /// a parent). `mux` behaves like `mon:stdio`. The terminal mode of the
    /// descriptors is left alone.
    pub fn start_on_fds(self, input: OwnedFd, output: OwnedFd, mux: bool) -> Result<MonitorHandle, MonitorError> {
        if self.serial.is_some() && !mux {
            return Err(MonitorError::SerialWithoutMux);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = self.context(&stop);
        let started = stdio::start(stdio::Terminal::Fds { input, output }, mux, self.serial, self.escape, ctx)?;
        Ok(MonitorHandle {
            label: self.label,
            stop,
            started: Some(started),
            stdio: false,
            qmp: None,
        })
    }
}

/// A running monitor. Dropping it stops the monitor's threads (they notice
/// within 100 ms); [`MonitorHandle::shutdown`] also waits for them.
pub struct MonitorHandle {
    label: String,
    stop: Arc<AtomicBool>,
    started: Option<Started>,
    stdio: bool,
    qmp: Option<Arc<QmpMonitor>>,
}

impl MonitorHandle {
    /// Whether this is a QMP monitor.
    pub fn is_qmp(&self) -> bool {
        self.qmp.is_some()
    }

    /// Waits (until `deadline` at most) until a QMP client has been sent everything it is
    /// owed: the events so far and the answer to a command in progress (the process is
    /// about to end). HMP monitors owe nothing.
    pub fn flush(&self, deadline: std::time::Instant) {
        if let Some(q) = &self.qmp {
            q.flush(deadline);
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The `info chardev` lines for this monitor (none for `none`; two for
    /// `mon:stdio`, `LABEL-base: filename=stdio` and `LABEL: filename=mux`).
    /// Socket filenames follow the connection state, as in QEMU.
    pub fn chardevs(&self) -> Vec<ChardevInfo> {
        let Some(started) = &self.started else {
            return Vec::new();
        };
        let filename = started.filename.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut list = Vec::new();
        if let Some(base) = &started.base_name {
            list.push(ChardevInfo {
                label: format!("{}-base", self.label),
                filename: base.clone(),
            });
        }
        list.push(ChardevInfo {
            label: self.label.clone(),
            filename,
        });
        list
    }

    /// For `pty`: the slave's path.
    pub fn pty_path(&self) -> Option<&Path> {
        self.started.as_ref()?.pty_path.as_deref()
    }

    /// For `pty`: the line QEMU prints on stdout,
    /// `char device redirected to /dev/pts/N (label compat_monitor0)`.
    pub fn redirect_message(&self) -> Option<String> {
        let path = self.pty_path()?;
        Some(format!("char device redirected to {} (label {})", path.display(), self.label))
    }

    /// For `tcp:`/`telnet:` servers: the bound address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.started.as_ref()?.local_addr
    }

    /// For `mon:stdio` with a serial front end: where guest serial output
    /// goes.
    pub fn serial_writer(&self) -> Option<SerialWriter> {
        self.started.as_ref()?.serial.clone()
    }

    /// Waits (at most `timeout`) until the guest serial output this monitor carries has
    /// reached its terminal, so nothing is lost if the process exits next.
    pub fn drain_serial(&self, timeout: std::time::Duration) {
        if let Some(w) = self.started.as_ref().and_then(|s| s.serial.as_ref()) {
            w.drain(timeout);
        }
    }

    /// Stops the monitor and waits for its threads (a command running in
    /// the VMM is waited for).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(started) = self.started.as_mut() {
            for thread in started.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(path) = self.started.as_ref().and_then(|s| s.unix_path.as_ref()) {
            let _ = std::fs::remove_file(path);
        }
        if self.stdio {
            restore_terminal();
        }
    }
}
