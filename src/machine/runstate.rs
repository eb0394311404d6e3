//! The commands that stop, run, save and restore the VM, with QEMU 7.2's errors.

use super::{Machine, RunState};
use crate::vm::VmEvent;
use devices::bus::lock;
use monitor::engine::Event;

impl Machine {
    /// `savevm`: the VM stops for the save and runs again afterwards if it was running.
    pub fn savevm(&self, tag: Option<&str>) -> Result<(), String> {
        let vm = self.the_vm()?;
        let _hold = vm.hold_run_state();
        if self.migrating() {
            return Err("There's a migration process in progress".into());
        }
        let tag = tag.map_or_else(crate::snapshot::default_tag, str::to_string);
        let running = self.state() == RunState::Running;
        vm.pause();
        self.announce_pause(running);
        let r = crate::snapshot::save(&vm, &tag).map_err(|e| e.to_string());
        if running {
            vm.resume();
            self.bus.emit(Event::resume());
        }
        r
    }

    /// A command that pauses a running guest for a while (`savevm`, `loadvm`) shows as
    /// QMP's `STOP` and `RESUME`, as in QEMU, though the run state stays `running`.
    fn announce_pause(&self, running: bool) {
        if running {
            self.bus.emit(Event::stop());
        }
    }

    /// `loadvm`: checks the snapshot, reverts the disks, loads the state; runs again only
    /// if the VM was running.
    pub fn loadvm(&self, tag: &str) -> Result<(), String> {
        let vm = self.the_vm()?;
        let _hold = vm.hold_run_state();
        if self.migrating() {
            return Err("There's a migration process in progress".into());
        }
        crate::snapshot::check_load(&vm, tag).map_err(|e| e.to_string())?;
        let running = self.state() == RunState::Running;
        vm.pause();
        self.announce_pause(running);
        match crate::snapshot::load(&vm, tag) {
            Ok(()) => {
                if running {
                    vm.resume();
                    self.bus.emit(Event::resume());
                } else if self.state() == RunState::Prelaunch {
                    self.set_state(RunState::Paused);
                }
                Ok(())
            }
            Err(e) if !e.changed_anything() => {
                if running {
                    vm.resume();
                    self.bus.emit(Event::resume());
                }
                Err(e.to_string())
            }
            // Disks reverted or RAM half loaded: like QEMU, the guest stays stopped (its
            // STOP was announced with the pause).
            Err(e) => {
                *lock(&self.state) = RunState::Paused;
                Err(e.to_string())
            }
        }
    }

    /// `stop`: pauses the vCPUs (in `inmigrate` it only cancels the automatic start).
    pub fn stop(&self) {
        let vm = self.vm();
        let _hold = vm.as_ref().map(|v| v.hold_run_state());
        match self.state() {
            RunState::Inmigrate => *lock(&self.autostart) = false,
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
            RunState::Inmigrate => {
                *lock(&self.autostart) = true;
                Ok(())
            }
            RunState::InternalError | RunState::Shutdown => Err("Resetting the Virtual Machine is required".into()),
            RunState::Paused | RunState::Prelaunch | RunState::Postmigrate | RunState::FinishMigrate => {
                if let Some(vm) = &vm {
                    // After a completed migration the images belong to the destination;
                    // running again takes them back (and fails while it holds them).
                    vm.activate_disks().map_err(|e| e.to_string())?;
                    vm.resume();
                }
                self.set_state(RunState::Running);
                Ok(())
            }
        }
    }

    /// `quit`: the main loop ends the run (and tears the VM down) once it reads this. The
    /// `SHUTDOWN` event and the end of every job are announced first, as QEMU announces
    /// them before its answer.
    pub fn quit(&self) {
        self.bus.emit(Event::shutdown(false, "host-qmp-quit"));
        self.jobs.clear(&self.bus);
        let _ = self.events.send(VmEvent::QuitCommand);
    }

    /// `system_reset`: the main loop rebuilds the VM (or, with `-no-reboot`, ends the run).
    pub fn system_reset(&self) {
        let reason = "host-qmp-system-reset";
        if self.no_reboot.load(std::sync::atomic::Ordering::Relaxed) {
            self.bus.emit(Event::shutdown(false, reason));
            self.jobs.clear(&self.bus);
        } else {
            self.bus.emit(Event::reset(false, reason));
        }
        let _ = self.events.send(VmEvent::ResetCommand);
    }
}
