//! Monitor commands: what each one does to the machine, with QEMU 7.2's errors.

use super::{Machine, RunState, info, migrate};
use crate::vm::VmEvent;
use monitor::{Command, Outcome, Vmm};
use std::io::Write;
use std::sync::Arc;

/// The machine behind the monitor's `Vmm` interface.
pub struct Hmp(pub Arc<Machine>);

fn w(out: &mut dyn Write, text: &str) -> Result<(), String> {
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

impl Vmm for Hmp {
    fn wait_ready(&mut self) {
        self.0.wait_ready();
    }

    fn execute(&mut self, command: &Command, out: &mut dyn Write) -> Result<Outcome, String> {
        let m = &self.0;
        m.wait_ready();
        match command {
            Command::Info(i) => return info::run(m, i, out).map(|()| Outcome::Done),
            Command::Stop => m.stop(),
            Command::Cont => m.cont()?,
            Command::Quit => {
                let _ = m.events.send(VmEvent::QuitCommand);
                return Ok(Outcome::Quit);
            }
            Command::SystemReset => {
                let _ = m.events.send(VmEvent::ResetCommand);
            }
            Command::SystemPowerdown => {
                return Err("this machine has no ACPI power button the guest could be told about (godwit has no ACPI yet)".into());
            }
            Command::SaveVm { tag } => m.savevm(tag.as_deref())?,
            Command::LoadVm { tag } => m.loadvm(tag)?,
            Command::DelVm { tag } => crate::snapshot::delete(&*m.vm().ok_or("no VM")?, tag)?,
            Command::Migrate {
                detach,
                blk,
                inc,
                resume,
                uri,
            } => return migrate::start(m, *detach, *blk, *inc, *resume, uri),
            Command::MigrateCancel => migrate::cancel(m),
            Command::MigrateIncoming { uri } => migrate::incoming(m, uri)?,
            Command::MigrateSetSpeed { bytes_per_second } => migrate::set_speed(m, *bytes_per_second),
            Command::MigrateSetDowntime { seconds } => migrate::set_downtime(m, *seconds),
            Command::MigrateSetParameter { parameter, value } => migrate::set_parameter(m, parameter, value)?,
            Command::MigrateSetCapability { capability, state } => {
                if m.migrating() {
                    return Err("There's a migration process in progress".into());
                }
                crate::migration::params::set_capability(&mut devices::bus::lock(&m.outgoing.params), capability, *state)?;
            }
            Command::MigrateStartPostcopy => return Err("Enable postcopy with migrate_set_capability before the start of migration".into()),
            Command::Help { topic } => w(out, &monitor::help_text(topic.as_deref()))?,
        }
        Ok(Outcome::Done)
    }
}

impl Machine {
    /// `savevm`: the VM stops for the save and runs again afterwards if it was running.
    pub fn savevm(&self, tag: Option<&str>) -> Result<(), String> {
        let vm = self.vm().ok_or("no VM")?;
        let _hold = vm.hold_run_state();
        if self.migrating() {
            return Err("There's a migration process in progress".into());
        }
        let tag = tag.map_or_else(crate::snapshot::default_tag, str::to_string);
        let running = self.state() == RunState::Running;
        vm.pause();
        let r = crate::snapshot::save(&vm, &tag);
        if running {
            vm.resume();
        }
        r
    }

    /// `loadvm`: checks the snapshot, reverts the disks, loads the state; runs again only
    /// if the VM was running.
    pub fn loadvm(&self, tag: &str) -> Result<(), String> {
        let vm = self.vm().ok_or("no VM")?;
        let _hold = vm.hold_run_state();
        if self.migrating() {
            return Err("There's a migration process in progress".into());
        }
        crate::snapshot::check_load(&vm, tag)?;
        let running = self.state() == RunState::Running;
        vm.pause();
        match crate::snapshot::load(&vm, tag) {
            Ok(()) => {
                if running {
                    vm.resume();
                } else if self.state() == RunState::Prelaunch {
                    self.set_state(RunState::Paused);
                }
                Ok(())
            }
            Err(crate::snapshot::LoadError::Unchanged(e)) => {
                if running {
                    vm.resume();
                }
                Err(e)
            }
            // Disks reverted or RAM half loaded: like QEMU, the guest stays stopped.
            Err(crate::snapshot::LoadError::Partial(e)) => {
                self.set_state(RunState::Paused);
                Err(e)
            }
        }
    }

    /// `stop`: pauses the vCPUs (in `inmigrate` it only cancels the automatic start).
    pub fn stop(&self) {
        let vm = self.vm();
        let _hold = vm.as_ref().map(|v| v.hold_run_state());
        match self.state() {
            RunState::InMigrate => *devices::bus::lock(&self.autostart) = false,
            RunState::Running => {
                if let Some(vm) = &vm {
                    vm.pause();
                }
                self.set_state(RunState::Paused);
            }
            _ => {}
        }
    }

    /// `cont`: runs the vCPUs again.
    pub fn cont(&self) -> Result<(), String> {
        let vm = self.vm();
        let _hold = vm.as_ref().map(|v| v.hold_run_state());
        match self.state() {
            RunState::Running => Ok(()),
            RunState::InMigrate => {
                *devices::bus::lock(&self.autostart) = true;
                Ok(())
            }
            RunState::InternalError => Err("Resetting the Virtual Machine is required".into()),
            RunState::Paused | RunState::Prelaunch | RunState::PostMigrate => {
                if let Some(vm) = &vm {
                    // After a completed migration the images belong to the destination;
                    // running again takes them back (and fails while it holds them).
                    vm.activate_disks()?;
                    vm.resume();
                }
                self.set_state(RunState::Running);
                Ok(())
            }
        }
    }
}
