//! The destination of a migration: `-incoming URI` (or `-incoming defer` then
//! `migrate_incoming URI`) listens, or starts the command, before the guest would run; the
//! stream loads on a thread of its own while the VM waits, paused, in `inmigrate`.

use crate::migration::info::{Stats, Status};
use crate::migration::{recv, uri};
use crate::vm::{Vm, VmEvent};
use crossbeam_channel::Sender;
use devices::bus::lock;
use std::sync::{Arc, Mutex};

/// The destination side of a migration.
#[derive(Default)]
pub struct IncomingState {
    /// `-incoming defer`: waiting for `migrate_incoming`.
    pub deferred: bool,
    /// The stream has been asked for (listening or loading).
    pub started: bool,
    pub stats: Stats,
}

/// For `-incoming SPEC` at start-up: binds now, so a busy port is reported at once.
pub fn start(spec: &str, vm: Arc<Vm>, events: Sender<VmEvent>, state: Arc<Mutex<IncomingState>>) -> Result<(), String> {
    let parsed = uri::parse(spec).ok_or_else(|| format!("-incoming {spec}: unknown migration protocol: {spec}"))?;
    if parsed == uri::Uri::Defer {
        lock(&state).deferred = true;
        return Ok(());
    }
    start_parsed(&parsed, vm, events, state.clone()).map_err(|e| format!("-incoming {spec}: {e}"))?;
    lock(&state).started = true;
    Ok(())
}

/// Listens on `target` and loads the stream in the background; the result arrives as
/// `VmEvent::Incoming`.
pub fn start_parsed(target: &uri::Uri, vm: Arc<Vm>, events: Sender<VmEvent>, state: Arc<Mutex<IncomingState>>) -> Result<(), String> {
    let listener = uri::Incoming::listen(target)?;
    lock(&state).stats.socket_addresses = listener.addresses();
    std::thread::Builder::new()
        .name("incoming".into())
        .spawn(move || {
            let result = listener.accept().and_then(|(input, reply)| {
                lock(&state).stats.status = Status::Active;
                recv::run(&vm, input, reply).map_err(|e| e.to_string())
            });
            lock(&state).stats.status = if result.is_ok() { Status::Completed } else { Status::Failed };
            let _ = events.send(VmEvent::Incoming(result));
        })
        .map_err(|e| format!("cannot start the incoming migration thread: {e}"))?;
    Ok(())
}
