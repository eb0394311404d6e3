//! The machine as the monitor sees it: run state, the current VM (rebuilt on every reset),
//! and migration in both directions. Implements the monitor's `Vmm` trait (see `hmp.rs`).

mod hmp;
pub use hmp::Hmp;
mod info;
mod migrate;

use crate::migration::info::Stats;
use crate::migration::send::Shared;
use crate::vm::{Vm, VmEvent};
use crossbeam_channel::Sender;
use devices::bus::lock;
use std::sync::{Arc, Mutex};

/// QEMU's run states, as far as godwit has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    Prelaunch,
    InMigrate,
    PostMigrate,
    InternalError,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Prelaunch => "prelaunch",
            RunState::InMigrate => "inmigrate",
            RunState::PostMigrate => "postmigrate",
            RunState::InternalError => "internal-error",
        }
    }

    /// `info status`: `VM status: running`, `VM status: paused`, `VM status: paused (prelaunch)`.
    pub fn status_line(self) -> String {
        match self {
            RunState::Running => "VM status: running".into(),
            RunState::Paused => "VM status: paused".into(),
            other => format!("VM status: paused ({})", other.name()),
        }
    }
}

/// The destination side of a migration.
#[derive(Default)]
pub struct IncomingState {
    /// `-incoming defer`: waiting for `migrate_incoming`.
    pub deferred: bool,
    /// The stream has been asked for (listening or loading).
    pub started: bool,
    pub stats: Stats,
}

pub struct Machine {
    vm: Mutex<Option<Arc<Vm>>>,
    state: Mutex<RunState>,
    /// In `inmigrate`, whether to run once the incoming migration completes (`cont`/`-S`).
    autostart: Mutex<bool>,
    events: Sender<VmEvent>,
    name: Option<String>,
    pub outgoing: Arc<Shared>,
    outgoing_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub incoming: Arc<Mutex<IncomingState>>,
    /// `info chardev` lines for devices other than monitors (the serial port).
    chardevs: Mutex<Vec<String>>,
    /// The running monitors; asked live for `info chardev` (connected or not).
    monitors: Mutex<Vec<monitor::MonitorHandle>>,
    /// Set once the first VM is built and `-incoming` listens. Monitors come up earlier (a
    /// `server` without `nowait` waits for its client before the guest starts), but like
    /// QEMU's, which serve nothing before its main loop runs, they answer only then: a
    /// script that sees the monitor answer can count on the destination listening.
    ready: (Mutex<bool>, std::sync::Condvar),
}

impl Machine {
    pub fn new(events: Sender<VmEvent>, name: Option<String>, state: RunState, autostart: bool) -> Arc<Machine> {
        Arc::new(Machine {
            vm: Mutex::new(None),
            state: Mutex::new(state),
            autostart: Mutex::new(autostart),
            events,
            name,
            outgoing: Arc::new(Shared::default()),
            outgoing_thread: Mutex::new(None),
            incoming: Arc::new(Mutex::new(IncomingState::default())),
            chardevs: Mutex::new(Vec::new()),
            monitors: Mutex::new(Vec::new()),
            ready: (Mutex::new(false), std::sync::Condvar::new()),
        })
    }

    /// The machine is set up (see `ready`); monitors may answer.
    pub fn set_ready(&self) {
        *lock(&self.ready.0) = true;
        self.ready.1.notify_all();
    }

    /// Waits until the machine is set up (a start-up that fails exits the process).
    pub fn wait_ready(&self) {
        let mut r = lock(&self.ready.0);
        while !*r {
            r = self.ready.1.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn events(&self) -> Sender<VmEvent> {
        self.events.clone()
    }

    pub fn set_vm(&self, vm: Arc<Vm>) {
        *lock(&self.vm) = Some(vm);
    }

    /// Forgets the current VM (before a reset builds the next one, which must be able to
    /// open and lock the same images).
    pub fn clear_vm(&self) {
        lock(&self.vm).take();
    }

    pub fn vm(&self) -> Option<Arc<Vm>> {
        lock(&self.vm).clone()
    }

    pub fn state(&self) -> RunState {
        *lock(&self.state)
    }

    pub fn set_state(&self, s: RunState) {
        *lock(&self.state) = s;
    }

    pub fn autostart(&self) -> bool {
        *lock(&self.autostart)
    }

    pub fn add_chardev(&self, line: String) {
        lock(&self.chardevs).push(line);
    }

    pub fn add_monitor(&self, h: monitor::MonitorHandle) {
        lock(&self.monitors).push(h);
    }

    /// Waits (a second at most) until serial output queued in monitor multiplexers is out.
    pub fn drain_serial(&self) {
        for h in lock(&self.monitors).iter() {
            h.drain_serial(std::time::Duration::from_secs(1));
        }
    }

    /// `info chardev`, one line each.
    pub fn chardev_lines(&self) -> Vec<String> {
        let mut v = lock(&self.chardevs).clone();
        for h in lock(&self.monitors).iter() {
            v.extend(h.chardevs().iter().map(|c| c.to_string()));
        }
        v
    }

    /// An outgoing migration is moving data.
    pub fn migrating(&self) -> bool {
        lock(&self.outgoing.stats).status.in_progress()
    }

    /// Before the VM is torn down: see [`migrate::end_outgoing`].
    pub fn end_outgoing(&self, why: &str) {
        migrate::end_outgoing(self, why);
    }
}
