//! The destination of a migration: `-incoming URI` (or `-incoming defer` then
//! `migrate_incoming URI`) listens, or starts the command, before the guest would run; the
//! stream loads on a thread of its own while the VM waits, paused, in `inmigrate`. An
//! `fd:` source is connected already. Status changes are QMP's `MIGRATION` events when the
//! `events` capability is on, as on the source.

use crate::migration::info::{Stats, Status};
use crate::migration::send::Shared;
use crate::migration::{fd, recv, tls, uri};
use crate::vm::{Vm, VmEvent};
use crossbeam_channel::Sender;
use devices::bus::lock;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

/// The destination side of a migration.
#[derive(Default)]
pub struct IncomingState {
    /// `-incoming defer`: waiting for `migrate_incoming`.
    pub deferred: bool,
    /// The stream has been asked for (listening or loading).
    pub started: bool,
    pub stats: Stats,
    /// The guest runs already (post-copy); the migration completes at the stream's end.
    pub postcopy: bool,
    /// `migrate_recover URI`: where a paused post-copy waits for the source.
    pub recover: Option<uri::Incoming>,
}

/// Where the stream comes from.
pub enum Source {
    Listening(uri::Incoming),
    /// `fd:`: a connected socket or a pipe.
    Connected(OwnedFd),
}

/// For `-incoming SPEC` at start-up: binds now, so a busy port is reported at once.
pub fn start(
    spec: &str,
    vm: Arc<Vm>,
    events: Sender<VmEvent>,
    state: Arc<Mutex<IncomingState>>,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let parsed = uri::parse(spec).ok_or_else(|| format!("-incoming {spec}: unknown migration protocol: {spec}"))?;
    let source = match parsed {
        uri::Uri::Defer => {
            lock(&state).deferred = true;
            return Ok(());
        }
        // No monitor exists yet: `fd:N` is a descriptor number godwit inherited.
        uri::Uri::Fd(n) => fd::inherited(&n).map(Source::Connected),
        other => uri::Incoming::listen(&other).map(Source::Listening),
    };
    let source = source.map_err(|e| format!("-incoming {spec}: {e}"))?;
    start_source(source, vm, events, state.clone(), shared).map_err(|e| format!("-incoming {spec}: {e}"))?;
    lock(&state).started = true;
    Ok(())
}

/// The loaded guest is set to run (or stay paused): the migration is complete.
pub fn finish(state: &Mutex<IncomingState>, shared: &Shared) {
    set_status(state, shared, Status::Completed);
}

/// Post-copy began: the guest is set to run while its pages arrive.
pub fn postcopy_running(state: &Mutex<IncomingState>, shared: &Shared) {
    lock(state).postcopy = true;
    set_status(state, shared, Status::PostcopyActive);
}

fn set_status(state: &Mutex<IncomingState>, shared: &Shared, status: Status) {
    lock(state).stats.status = status;
    shared.announce_status(status);
}

/// With `tls-creds` set (looked up as each connection arrives, as QEMU does), the
/// connection made a TLS session; otherwise as it is.
fn secure(a: uri::Accepted, shared: &Shared, exec: bool) -> Result<uri::Accepted, String> {
    let params = lock(&shared.params).clone();
    let objects = lock(&shared.tls).clone();
    match objects.server(&params.tls()).map_err(|e| e.to_string())? {
        None => Ok(a),
        Some(_) if exec => Err(tls::TlsError::Exec.to_string()),
        Some(t) => tls::accept(a, &t).map_err(|e| e.to_string()),
    }
}

/// Accepts connections until one brings a usable stream: a connection whose TLS set-up
/// fails (a bad certificate, a client `tls-authz` refuses, a plaintext source) is closed
/// with one line on stderr, and the destination waits for the next attempt, as QEMU's.
///
/// With the `multifd` capability on, the listener stays open for the channels, and is
/// returned with the stream.
fn accept_loop(l: uri::Incoming, shared: &Shared) -> Result<(uri::Accepted, Option<uri::Incoming>), String> {
    loop {
        match secure(l.accept_one()?, shared, false) {
            Ok(a) if lock(&shared.params).multifd => return Ok((a, Some(l))),
            Ok(a) => {
                l.close();
                return Ok((a, None));
            }
            Err(e) => eprintln!("godwit: {e}"),
        }
    }
}

/// A post-copy whose stream broke: `postcopy-paused` (the guest runs on with the pages it
/// has) until `migrate_recover` listens and the source connects there (`postcopy-recover`).
fn wait_recover(state: &Mutex<IncomingState>, shared: &Shared) -> recv::Reconnected {
    eprintln!("godwit: Detected IO failure for postcopy. Migration paused.");
    set_status(state, shared, Status::PostcopyPaused);
    loop {
        let listener = lock(state).recover.take();
        let Some(l) = listener else {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        };
        // No multifd channels follow (post-copy and multifd exclude each other).
        let accepted = accept_loop(l, shared).map(|(a, channels)| {
            if let Some(c) = channels {
                c.close();
            }
            a
        });
        match accepted {
            Ok(uri::Accepted {
                input, reply: Some(reply), ..
            }) => {
                set_status(state, shared, Status::PostcopyRecover);
                return (input, reply);
            }
            Ok(_) => eprintln!("godwit: a post-copy resumes only over a socket"),
            Err(e) => eprintln!("godwit: {e}"),
        }
        set_status(state, shared, Status::PostcopyPaused);
    }
}

/// Loads the stream from `source` in the background; the result arrives as
/// `VmEvent::Incoming`.
pub fn start_source(
    source: Source,
    vm: Arc<Vm>,
    events: Sender<VmEvent>,
    state: Arc<Mutex<IncomingState>>,
    shared: Arc<Shared>,
) -> Result<(), String> {
    if let Source::Listening(l) = &source {
        lock(&state).stats.socket_addresses = l.addresses();
    }
    std::thread::Builder::new()
        .name("incoming".into())
        .spawn(move || {
            let accepted = match source {
                Source::Listening(l) if l.is_exec() => l.accept().and_then(|a| secure(a, &shared, true)).map(|a| (a, None)),
                Source::Listening(l) => accept_loop(l, &shared),
                Source::Connected(fd) => fd::incoming(fd).and_then(|a| secure(a, &shared, false)).map(|a| (a, None)),
            };
            let result = accepted.and_then(|(a, listener)| {
                set_status(&state, &shared, Status::Active);
                let expect = {
                    let p = lock(&shared.params);
                    crate::migration::xbzrle::Caps {
                        xbzrle: p.xbzrle,
                        postcopy: p.postcopy_ram,
                        multifd: p.multifd,
                    }
                };
                let run_now = || {
                    let _ = events.send(VmEvent::PostcopyRun);
                };
                let reconnect = |_: &recv::RecvError| Some(wait_recover(&state, &shared));
                let resumed = || set_status(&state, &shared, Status::PostcopyActive);
                let ev = recv::PostcopyEvents {
                    run_now: &run_now,
                    reconnect: &reconnect,
                    resumed: &resumed,
                };
                let secure = |a| secure(a, &shared, false);
                let channels = listener.as_ref().map(|l| crate::migration::multifd::ChannelListener {
                    listener: l,
                    secure: &secure,
                });
                let r = recv::run_listening(&vm, a.input, a.reply, expect, channels.as_ref(), &ev).map_err(|e| e.to_string());
                if let Some(l) = listener {
                    l.close();
                }
                r
            });
            // A success is announced once the guest runs (`finish`), as in QEMU.
            if result.is_err() {
                set_status(&state, &shared, Status::Failed);
            }
            let _ = events.send(VmEvent::Incoming(result));
        })
        .map_err(|e| format!("cannot start the incoming migration thread: {e}"))?;
    Ok(())
}
