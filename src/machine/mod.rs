//! The machine as the monitors see it: run state, the current VM (rebuilt on every reset),
//! and migration in both directions. It is the command engine both monitor languages
//! drive (`engine.rs` implements `monitor::engine::Engine`).

mod catalog;
mod cpu_model;
mod engine;
pub use engine::MachineEngine;
mod qom;
pub use qom::QomLayout;
mod incoming;
mod info;
mod jobs;
mod migrate;
mod network;
mod runstate;

pub use incoming::{IncomingState, finish as finish_incoming, postcopy_running, start as start_incoming};
pub use monitor::engine::RunState;

use crate::migration::send::Shared;
use crate::network::Networks;
use crate::vm::{Vm, VmEvent};
use crossbeam_channel::Sender;
use devices::bus::lock;
use monitor::engine::{ChardevInfo, Event, EventBus, Jobs};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

pub struct Machine {
    vm: Mutex<Option<Arc<Vm>>>,
    state: Mutex<RunState>,
    /// In `inmigrate`, whether to run once the incoming migration completes (`cont`/`-S`).
    autostart: Mutex<bool>,
    events: Sender<VmEvent>,
    /// Where QMP's events go.
    bus: Arc<EventBus>,
    /// One command that changes the machine at a time (what one monitor's `savevm` and
    /// another's `migrate` must not interleave). Queries never take it, so `info migrate`
    /// answers while a `stop` waits for a switch-over.
    commands: Mutex<()>,
    name: Option<String>,
    pub outgoing: Arc<Shared>,
    outgoing_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub incoming: Arc<Mutex<IncomingState>>,
    /// `info chardev` entries for devices other than monitors (the serial port).
    chardevs: Mutex<Vec<ChardevInfo>>,
    /// The running monitors; asked live for `info chardev` (connected or not).
    monitors: Mutex<Vec<monitor::MonitorHandle>>,
    /// Set once the first VM is built and `-incoming` listens. Monitors come up earlier (a
    /// `server` without `nowait` waits for its client before the guest starts), but like
    /// QEMU's, which serve nothing before its main loop runs, they answer only then: a
    /// script that sees the monitor answer can count on the destination listening.
    ready: (Mutex<bool>, std::sync::Condvar),
    /// The network back ends, kept across resets.
    networks: Arc<Networks>,
    /// QMP's jobs (the snapshot commands).
    pub jobs: Jobs,
    /// `-no-reboot`: a reset ends the run (a `SHUTDOWN`, not a `RESET`).
    pub no_reboot: AtomicBool,
    /// `-no-shutdown` (or `set-action shutdown=pause`): a guest power-off pauses it.
    pub no_shutdown: AtomicBool,
    /// `-uuid`.
    uuid: std::sync::OnceLock<String>,
    /// What `qom-list` and `qom-get` show.
    qom: std::sync::OnceLock<QomLayout>,
}

impl Machine {
    pub fn new(events: Sender<VmEvent>, name: Option<String>, state: RunState, autostart: bool, networks: Arc<Networks>) -> Arc<Machine> {
        let bus = Arc::new(EventBus::default());
        Arc::new(Machine {
            vm: Mutex::new(None),
            state: Mutex::new(state),
            autostart: Mutex::new(autostart),
            events,
            bus: bus.clone(),
            commands: Mutex::new(()),
            name,
            outgoing: Arc::new(Shared::with_bus(bus)),
            outgoing_thread: Mutex::new(None),
            incoming: Arc::new(Mutex::new(IncomingState::default())),
            chardevs: Mutex::new(Vec::new()),
            monitors: Mutex::new(Vec::new()),
            ready: (Mutex::new(false), std::sync::Condvar::new()),
            networks,
            jobs: Jobs::default(),
            no_reboot: AtomicBool::new(false),
            no_shutdown: AtomicBool::new(false),
            uuid: std::sync::OnceLock::new(),
            qom: std::sync::OnceLock::new(),
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

    /// Sets the UUID `-uuid` gave (once).
    pub fn set_uuid(&self, uuid: &str) {
        let _ = self.uuid.set(uuid.to_string());
    }

    /// Sets the QOM tree's layout (once, at start-up).
    pub fn set_qom(&self, layout: QomLayout) {
        let _ = self.qom.set(layout);
    }

    pub fn qom(&self) -> QomLayout {
        self.qom.get().cloned().unwrap_or_default()
    }

    /// `-uuid`, or QEMU's all-zero default.
    pub fn uuid(&self) -> String {
        self.uuid
            .get()
            .cloned()
            .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into())
    }

    pub fn events(&self) -> Sender<VmEvent> {
        self.events.clone()
    }

    /// QMP's events.
    pub fn bus(&self) -> &EventBus {
        &self.bus
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

    /// The VM, for a command that needs one (there is one from set-up to exit, except
    /// for the moment a reset rebuilds it).
    fn the_vm(&self) -> Result<Arc<Vm>, String> {
        self.vm().ok_or_else(|| "no VM".to_string())
    }

    pub fn state(&self) -> RunState {
        *lock(&self.state)
    }

    /// Changes the run state; leaving or entering `running` is QMP's `STOP` or `RESUME`.
    pub fn set_state(&self, s: RunState) {
        let old = std::mem::replace(&mut *lock(&self.state), s);
        if old == RunState::Running && s != RunState::Running {
            self.bus.emit(Event::stop());
        } else if old != RunState::Running && s == RunState::Running {
            self.bus.emit(Event::resume());
        }
    }

    pub fn autostart(&self) -> bool {
        *lock(&self.autostart)
    }

    pub fn add_chardev(&self, label: &str, filename: String) {
        lock(&self.chardevs).push(ChardevInfo {
            label: label.to_string(),
            filename,
            frontend_open: true,
        });
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

    /// Before the process ends: lets every monitor deliver what it owes its client (the
    /// answer to a `quit`, the `SHUTDOWN` event), a second at most.
    pub fn flush_monitors(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        for h in lock(&self.monitors).iter() {
            h.flush(deadline);
        }
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
