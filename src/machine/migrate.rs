//! The migration commands: `migrate`, `migrate_cancel`, `migrate_incoming` and the
//! settings, with QEMU 7.2's checks and error texts.

use super::{Machine, RunState};
use crate::migration::disks::Mode;
use crate::migration::info::{Stats, Status};
use crate::migration::{fd, send, tls, uri};
use devices::bus::lock;
use monitor::engine::{FdStore, MigrateArgs, MigrateSetParameters, MigrationCapabilityStatus, MigrationInfo};
use std::sync::Arc;

impl Machine {
    /// `migrate`: checks, then the migration runs on a thread of its own. `fd:NAME` takes
    /// the descriptor from `fds` (the calling monitor's).
    pub fn migrate(self: &Arc<Self>, args: &MigrateArgs, fds: &FdStore) -> Result<(), String> {
        if args.resume {
            return self.migrate_resume(&args.uri);
        }
        if self.migrating() {
            return Err("There's a migration process in progress".into());
        }
        match self.state() {
            RunState::Inmigrate => return Err("Guest is waiting for an incoming migration".into()),
            RunState::Postmigrate => return Err("Can't migrate the vm that was paused due to previous migration".into()),
            _ => {}
        }
        let mode = self.block_mode(args)?;
        let vm = self.the_vm()?;
        let Some(target) = uri::parse(&args.uri).filter(|u| *u != uri::Uri::Defer) else {
            self.outgoing.reset_stats(Stats {
                status: Status::Failed,
                ..Stats::default()
            });
            return Err("Parameter 'uri' expects a valid migration protocol".into());
        };
        let target = match target {
            uri::Uri::Fd(name) => match fds.take(&name).map_err(|e| e.desc).and_then(fd::outgoing) {
                Ok(conn) => Target::Connected(conn),
                Err(e) => {
                    // As in QEMU, the migration was set up before the descriptor was missed.
                    self.outgoing.reset_stats(Stats {
                        status: Status::Setup,
                        ..Stats::default()
                    });
                    self.outgoing.reset_stats(Stats {
                        status: Status::Failed,
                        error: Some(e.clone()),
                        ..Stats::default()
                    });
                    return Err(e);
                }
            },
            other => Target::Uri(other),
        };
        if let Err(e) = self.multifd_check(&target) {
            // QEMU 7.2 shows the status without a reason (the command said it).
            self.outgoing.reset_stats(Stats {
                status: Status::Failed,
                ..Stats::default()
            });
            return Err(e);
        }
        self.outgoing.begin();
        self.outgoing.reset_stats(Stats {
            status: Status::Setup,
            total_ram: vm.mem_size(),
            ..Stats::default()
        });
        if let Some(old) = lock(&self.outgoing_thread).take() {
            let _ = old.join();
        }
        let machine = self.clone();
        let handle = std::thread::Builder::new()
            .name("migration".into())
            .spawn(move || machine.run_outgoing(target, &vm, mode))
            .map_err(|e| format!("cannot start the migration thread: {e}"))?;
        *lock(&self.outgoing_thread) = Some(handle);
        Ok(())
    }

    /// `migrate -r URI`: a paused post-copy goes on over a new connection.
    fn migrate_resume(&self, spec: &str) -> Result<(), String> {
        if lock(&self.outgoing.stats).status != Status::PostcopyPaused {
            return Err("Cannot resume if there is no paused migration".into());
        }
        let target = uri::parse(spec)
            .filter(|u| matches!(u, uri::Uri::Tcp { .. } | uri::Uri::Unix(_)))
            .ok_or("Parameter 'uri' expects a valid migration protocol")?;
        self.outgoing.resume_to(target);
        Ok(())
    }

    /// multifd opens more connections to the same address: `tcp:` and `unix:` only, as in
    /// QEMU 7.2 (which fails an `exec:` migration with these words).
    fn multifd_check(&self, target: &Target) -> Result<(), String> {
        let p = lock(&self.outgoing.params);
        if !p.multifd {
            return Ok(());
        }
        if !matches!(target, Target::Uri(uri::Uri::Tcp { .. } | uri::Uri::Unix(_))) {
            return Err("multifd is not supported by current protocol".into());
        }
        Ok(())
    }

    /// How the disks travel: `-b`/`-i`, or the `block` capability (not both).
    fn block_mode(&self, args: &MigrateArgs) -> Result<Mode, String> {
        let p = lock(&self.outgoing.params);
        Ok(match (args.blk || args.inc, p.block) {
            (true, true) => return Err("Command options are incompatible with current migration capabilities".into()),
            (true, false) if args.inc => Mode::Incremental,
            (true, false) => Mode::Full,
            (false, true) if p.block_incremental => Mode::Incremental,
            (false, true) => Mode::Full,
            (false, false) => Mode::Shared,
        })
    }

    /// The migration thread: connect (with TLS when `tls-creds` is set), run, and settle
    /// the run state.
    fn run_outgoing(&self, target: Target, vm: &crate::vm::Vm, mode: Mode) {
        let again = match &target {
            Target::Uri(u @ (uri::Uri::Tcp { .. } | uri::Uri::Unix(_))) => Some(u.clone()),
            _ => None,
        };
        let conn = match self.tls_for(&target) {
            Ok(tls) => {
                let connected = match target {
                    Target::Uri(u) => uri::connect(&u),
                    Target::Connected(conn) => Ok(conn),
                };
                match (connected, tls) {
                    (Ok(c), Some(t)) => tls::connect(c, &t).map_err(|e| e.to_string()),
                    (other, _) => other,
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("godwit: {e}");
                self.outgoing.reset_stats(Stats {
                    status: Status::Failed,
                    error: Some(e),
                    ..Stats::default()
                });
                return;
            }
        };
        self.outgoing.connected(conn.abort);
        // The stop-and-copy pauses a running guest: `finish-migrate` (QMP's `STOP`), as in
        // QEMU. A completed migration, or one whose outcome is unknown, leaves the guest to
        // the destination: `postmigrate`. A failed one runs the guest on (`RESUME`) if the
        // stop-and-copy had paused it.
        let stopped = || self.set_state(RunState::FinishMigrate);
        let settle = |r: &Result<(), send::Stop>| {
            if matches!(r, Ok(()) | Err(send::Stop::Undecided(_))) || self.outgoing.in_postcopy() {
                self.set_state(RunState::Postmigrate);
            } else if self.state() == RunState::FinishMigrate {
                self.set_state(RunState::Running);
            }
        };
        // Each channel the way the main connection was made: with TLS when it is set.
        let connect = move || {
            let u = again.as_ref().ok_or("multifd is not supported by current protocol")?;
            let c = uri::connect(u)?;
            match self.tls_for(&Target::Uri(u.clone())).map_err(|e| e.to_string())? {
                Some(t) => tls::connect(c, &t).map_err(|e| e.to_string()),
                None => Ok(c),
            }
        };
        let hooks = send::RunStateHooks {
            stopped: &stopped,
            settle: &settle,
            channel: Some(&connect),
        };
        let result = send::run_with(vm, conn.writer, conn.reply, &self.outgoing, mode, &hooks);
        if let Some(mut child) = conn.child {
            let _ = child.wait();
        }
        self.outgoing.disconnected();
        if let Err(e @ (send::Stop::Failed(_) | send::Stop::Undecided(_))) = result {
            eprintln!("godwit: {e}");
        }
    }

    /// The source's TLS for `target`, resolved as the migration starts (QEMU's order: the
    /// credentials, their endpoint, then a hostname to check). `exec:` and pipes cannot
    /// carry a handshake.
    fn tls_for(&self, target: &Target) -> Result<Option<tls::ClientTls>, tls::TlsError> {
        let params = lock(&self.outgoing.params).clone();
        let objects = lock(&self.outgoing.tls).clone();
        let host = match target {
            Target::Uri(uri::Uri::Tcp { host, .. }) => Some(host.as_str()),
            _ => None,
        };
        if matches!(target, Target::Uri(uri::Uri::Exec(_))) && !params.tls_creds.is_empty() {
            return Err(tls::TlsError::Exec);
        }
        let tls = objects.client(&params.tls(), host)?;
        match target {
            Target::Connected(c) if tls.is_some() && c.socket.is_none() => Err(tls::TlsError::NotSocket),
            _ => Ok(tls),
        }
    }

    /// Asks a running migration to stop; the source keeps running. Once END is on its
    /// way the destination decides; QEMU too ignores a late cancel.
    pub fn migrate_cancel(&self) {
        if self.migrating() {
            self.outgoing.request_cancel();
        }
    }

    /// `migrate_start_postcopy`: raises the flag the migration looks at after each sync
    /// (QEMU's checks: the capability, then a migration begun).
    pub fn migrate_start_postcopy(&self) -> Result<(), String> {
        if !lock(&self.outgoing.params).postcopy_ram {
            return Err("Enable postcopy with migrate_set_capability before the start of migration".into());
        }
        if lock(&self.outgoing.stats).status == Status::None {
            return Err("Postcopy must be started after migration has been started".into());
        }
        self.outgoing.request_postcopy();
        Ok(())
    }

    /// `migrate_recover URI` (QMP `migrate-recover`): a paused post-copy's destination
    /// listens there for the source's `migrate -r URI`.
    pub fn migrate_recover(&self, spec: &str) -> Result<(), String> {
        let mut inc = lock(&self.incoming);
        if inc.stats.status != Status::PostcopyPaused {
            return Err("Migrate recover can only be run when postcopy is paused.".into());
        }
        let parsed = uri::parse(spec)
            .filter(|u| matches!(u, uri::Uri::Tcp { .. } | uri::Uri::Unix(_)))
            .ok_or_else(|| format!("unknown migration protocol: {spec}"))?;
        let l = uri::Incoming::listen(&parsed)?;
        inc.stats.socket_addresses = l.addresses();
        inc.recover = Some(l);
        Ok(())
    }

    pub fn migrate_incoming(&self, spec: &str, fds: &FdStore) -> Result<(), String> {
        let mut inc = lock(&self.incoming);
        if !inc.deferred {
            return Err("'-incoming' was not specified on the command line".into());
        }
        if inc.started {
            return Err("The incoming migration has already been started".into());
        }
        let parsed = uri::parse(spec)
            .filter(|u| *u != uri::Uri::Defer)
            .ok_or_else(|| format!("unknown migration protocol: {spec}"))?;
        drop(inc);
        let vm = self.the_vm()?;
        let late = lock(&self.outgoing.params).late_block_activate;
        vm.late_block_activate.store(late, std::sync::atomic::Ordering::Relaxed);
        // QEMU announces `setup` before it answers: a client waiting on events (libvirt's
        // restore) sees the migration under way from then on, before any data arrives.
        self.outgoing.announce_status(Status::Setup);
        let source = match parsed {
            uri::Uri::Fd(name) if name.starts_with(|c: char| c.is_ascii_digit()) => {
                super::incoming::Source::Connected(fd::inherited(&name)?)
            }
            uri::Uri::Fd(name) => super::incoming::Source::Connected(fds.take(&name).map_err(|e| e.desc)?),
            other => super::incoming::Source::Listening(uri::Incoming::listen(&other)?),
        };
        super::incoming::start_source(source, vm, self.events.clone(), self.incoming.clone(), self.outgoing.clone())?;
        inc = lock(&self.incoming);
        inc.started = true;
        Ok(())
    }

    /// `query-migrate`: the destination's side while it waits or loads; once a migration
    /// out has begun (a destination that became a source), the source's, as in QEMU.
    pub fn query_migrate(&self) -> MigrationInfo {
        let out = lock(&self.outgoing.stats);
        if out.status != Status::None {
            return out.source_info();
        }
        drop(out);
        let inc = lock(&self.incoming);
        if inc.started || inc.deferred {
            return inc.stats.destination_info();
        }
        MigrationInfo::default()
    }

    pub fn migrate_set_parameters(&self, p: &MigrateSetParameters) -> Result<(), String> {
        lock(&self.outgoing.params).set(p).map_err(|e| e.to_string())
    }

    pub fn migrate_set_capabilities(&self, caps: &[MigrationCapabilityStatus]) -> Result<(), String> {
        if self.migrating() {
            return Err("There's a migration process in progress".into());
        }
        // As QEMU, a destination checks that the host can do post-copy (userfaultfd).
        let postcopy_on = caps
            .iter()
            .any(|c| c.state && c.capability == monitor::engine::MigrationCapability::PostcopyRam);
        if postcopy_on
            && self.state() == RunState::Inmigrate
            && !lock(&self.outgoing.params).postcopy_ram
            && crate::migration::postcopy::uffd::Uffd::new().is_err()
        {
            return Err("Postcopy is not supported".into());
        }
        lock(&self.outgoing.params).set_capabilities(caps).map_err(|e| e.to_string())
    }
}

/// Where an outgoing migration goes: a URI to connect to on the migration thread, or a
/// connection already made (`fd:`).
enum Target {
    Uri(uri::Uri),
    Connected(uri::Outgoing),
}

/// Ends any outgoing migration before the VM goes away (a reset rebuilds it): one not yet
/// committed fails with `why`; one that is, is waited for. Returns once its thread is done.
pub fn end_outgoing(m: &Machine, why: &str) {
    if m.migrating() {
        m.outgoing.abort_for(why);
    }
    if let Some(t) = lock(&m.outgoing_thread).take() {
        let _ = t.join();
    }
}
