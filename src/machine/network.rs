//! The NICs as the monitors see them: `info network`, `set_link`, and announcements
//! (`announce_self`, and after an incoming migration, as QEMU does).

use super::Machine;
use crate::migration::params::{Announce, announce_delay};
use crate::vm::nics::Nic;
use devices::bus::lock;
use devices::virtio::net::NetControl;
use monitor::engine::EngineError;
use std::fmt::Write as _;
use std::sync::Arc;

impl Machine {
    /// `info network`, in QEMU 7.2's layout: each NIC with its back end under it, hub 0
    /// with its ports, then back ends no NIC uses.
    pub fn network_text(&self) -> Result<String, String> {
        let vm = self.the_vm()?;
        let mut s = String::new();
        let mut shown = Vec::new();
        for nic in vm.nics() {
            let line = format!("{}: index=0,type=nic,{}", nic.cfg.name, nic.control.info());
            let backend = nic.cfg.netdev.as_deref().and_then(|id| self.networks.get(id));
            let peer = backend.and_then(|b| b.kind.map(|k| format!("{}: index=0,type={k},{}", b.id, b.info())));
            if let Some(b) = backend {
                shown.push(b.id.clone());
            }
            if nic.cfg.hub {
                s.push_str("hub 0\n");
                if let Some(p) = peer {
                    let _ = writeln!(s, " \\ hub0port1: {p}");
                }
                let _ = writeln!(s, " \\ hub0port0: {line}");
            } else {
                let _ = writeln!(s, "{line}");
                if let Some(p) = peer {
                    let _ = writeln!(s, " \\ {p}");
                }
            }
        }
        for b in self.networks.all().iter().filter(|b| !shown.contains(&b.id)) {
            if let Some(kind) = b.kind {
                let _ = writeln!(s, "{}: index=0,type={kind},{}", b.id, b.info());
            }
        }
        Ok(s)
    }

    /// `set_link NAME on|off`: NAME is a NIC or its back end. Kept across resets.
    pub fn set_link(&self, name: &str, up: bool) -> Result<(), EngineError> {
        let vm = self.the_vm()?;
        let nic = vm
            .nics()
            .iter()
            .find(|n| n.cfg.name == name || n.cfg.netdev.as_deref() == Some(name))
            .ok_or_else(|| EngineError::device_not_found(format!("Device '{name}' not found")))?;
        if let Some(b) = nic.cfg.netdev.as_deref().and_then(|id| self.networks.get(id)) {
            b.set_link_up(up);
        }
        nic.control.set_link(up);
        Ok(())
    }

    /// `announce_self`: the NICs named (all when none is) announce themselves on
    /// `schedule`, else on the announce-* migration parameters.
    pub fn announce_self(&self, names: &[String], schedule: Option<Announce>) -> Result<(), String> {
        let vm = self.the_vm()?;
        let chosen: Vec<&Nic> = vm
            .nics()
            .iter()
            .filter(|n| names.is_empty() || names.contains(&n.cfg.name))
            .collect();
        let schedule = schedule.unwrap_or_else(|| lock(&self.outgoing.params).announce);
        announce(chosen.iter().map(|n| n.control.clone()).collect(), schedule);
        Ok(())
    }

    /// After an incoming migration: the bridges between here and the source learn where
    /// the guest's addresses now are, as QEMU makes them learn.
    pub fn announce_after_migration(&self) {
        let _ = self.announce_self(&[], None);
    }
}

/// Runs the rounds on a thread of their own: the first at once, the next on the schedule.
fn announce(nics: Vec<Arc<NetControl>>, schedule: Announce) {
    if nics.is_empty() || schedule.rounds == 0 {
        return;
    }
    let run = move || {
        for round in 0..schedule.rounds {
            for n in &nics {
                n.announce();
            }
            if round + 1 < schedule.rounds {
                std::thread::sleep(announce_delay(&schedule, round));
            }
        }
    };
    // A thread that cannot start only costs the announcements; the guest still moves.
    let _ = std::thread::Builder::new().name("announce".into()).spawn(run);
}
