//! HMP on top of the engine: each typed [`Command`] becomes one engine request, and the
//! typed answer is printed in QEMU 7.2's HMP text. Nothing here decides anything about
//! the machine; that is the engine's, shared with QMP.

mod block;
mod info;
mod migration;
mod snapshots;

use crate::command::Command;
use crate::engine::{Engine, EngineError, FdStore, MigrateArgs, MigrateSetParameters};
use crate::help::help_text;
use crate::vmm::{Outcome, Vmm};
use std::io::Write;
use std::sync::Arc;

pub use migration::{format_capabilities, format_migrate, format_parameters};
pub use snapshots::{format_snapshots, size_to_str};

/// The HMP language over an engine: what every HMP monitor (and QMP's
/// `human-monitor-command`) runs commands with.
pub struct Hmp {
    engine: Arc<dyn Engine>,
    /// HMP has no `getfd`: its `fd:` URIs find nothing, as an HMP monitor given no
    /// descriptor does in QEMU.
    fds: FdStore,
}

impl Hmp {
    pub fn new(engine: Arc<dyn Engine>) -> Self {
        Hmp {
            engine,
            fds: FdStore::default(),
        }
    }
}

fn text(out: &mut dyn Write, s: &str) -> Result<(), String> {
    out.write_all(s.as_bytes()).map_err(|e| e.to_string())
}

fn done(r: Result<(), EngineError>) -> Result<Outcome, String> {
    r.map(|()| Outcome::Done).map_err(|e| e.desc)
}

impl Vmm for Hmp {
    fn wait_ready(&self) {
        self.engine.wait_ready();
    }

    fn execute(&self, command: &Command, out: &mut dyn Write) -> Result<Outcome, String> {
        let e = &*self.engine;
        e.wait_ready();
        match command {
            Command::Info(i) => info::run(e, i, out).map(|()| Outcome::Done),
            Command::Stop => done(e.stop()),
            Command::Cont => done(e.cont()),
            Command::Quit => {
                e.quit();
                Ok(Outcome::Quit)
            }
            Command::SystemReset => done(e.system_reset()),
            Command::SystemPowerdown => done(e.system_powerdown()),
            Command::SaveVm { tag } => done(e.savevm(tag.as_deref())),
            Command::LoadVm { tag } => done(e.loadvm(tag)),
            Command::DelVm { tag } => done(e.delvm(tag)),
            Command::Migrate {
                detach,
                blk,
                inc,
                resume,
                uri,
            } => {
                let args = MigrateArgs {
                    uri: uri.clone(),
                    blk: *blk,
                    inc: *inc,
                    detach: *detach,
                    resume: *resume,
                };
                migration::start(&self.engine, &args, &self.fds)
            }
            Command::MigrateCancel => {
                e.migrate_cancel();
                Ok(Outcome::Done)
            }
            Command::MigrateIncoming { uri } => done(e.migrate_incoming(uri, &self.fds)),
            Command::MigrateRecover { uri } => done(e.migrate_recover(uri)),
            Command::MigrateSetSpeed { bytes_per_second } => done(e.migrate_set_parameters(&MigrateSetParameters {
                max_bandwidth: Some(*bytes_per_second),
                ..MigrateSetParameters::default()
            })),
            Command::MigrateSetDowntime { seconds } => done(migration::set_downtime(e, *seconds)),
            Command::MigrateSetParameter { parameter, value } => done(migration::set_parameter(e, parameter, value)),
            Command::MigrateSetCapability { capability, state } => done(migration::set_capability(e, capability, *state)),
            Command::MigrateStartPostcopy => done(e.migrate_start_postcopy()),
            Command::SetLink { name, up } => done(e.set_link(name, *up)),
            Command::AnnounceSelf { interfaces, .. } => {
                let names: Vec<String> = interfaces
                    .as_deref()
                    .map(|l| l.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect())
                    .unwrap_or_default();
                done(e.announce_self(&names, None))
            }
            Command::Help { topic } => text(out, &help_text(topic.as_deref())).map(|()| Outcome::Done),
        }
    }
}
