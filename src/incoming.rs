//! `-incoming URI`: listen (or start the command) before the guest would run, then load
//! the stream on a thread of its own while the VM waits, paused.

use crate::migration::{recv, uri};
use crate::vm::{Vm, VmEvent};
use crossbeam_channel::Sender;
use std::sync::Arc;

/// Binds now, so a busy port is reported at start-up; the transfer happens in the
/// background and ends in `VmEvent::Incoming`.
pub fn start(spec: &str, vm: Arc<Vm>, events: Sender<VmEvent>) -> Result<(), String> {
    let parsed = uri::parse(spec).ok_or_else(|| format!("-incoming {spec}: unknown migration protocol: {spec}"))?;
    if parsed == uri::Uri::Defer {
        return Err(format!("-incoming {spec}: waiting for migrate_incoming needs the monitor, which this godwit build does not have yet"));
    }
    let listener = uri::Incoming::listen(&parsed).map_err(|e| format!("-incoming {spec}: {e}"))?;
    std::thread::Builder::new()
        .name("incoming".into())
        .spawn(move || {
            let result = listener.accept().and_then(|input| recv::run(&vm, input));
            let _ = events.send(VmEvent::Incoming(result));
        })
        .map_err(|e| format!("cannot start the incoming migration thread: {e}"))?;
    Ok(())
}
