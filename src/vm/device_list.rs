//! Every device of a VM in one list, driven through one trait ([`devices::device::Device`]):
//! paused and resumed around migrations and snapshots, saved, checked and restored as
//! versioned values, and shut down with the VM. A device is listed under the name its
//! state carries in the migration stream and in snapshots (`serial0`, `pci.0/03.0`, ...).

use devices::bus::lock;
use devices::device::Device;
use devices::pci::{PciDevice, PciRoot};
use devices::state::StateError;
use std::sync::{Arc, Mutex};

/// One device's saved state, by the name that identifies the device in its machine.
pub type NamedState = (String, Vec<u8>);

#[derive(Default)]
pub struct DeviceList {
    entries: Vec<(String, Arc<Mutex<dyn Device>>)>,
}

impl DeviceList {
    /// Lists `dev` under `name` (which its state will carry).
    pub fn add(&mut self, name: impl Into<String>, dev: Arc<Mutex<dyn Device>>) {
        self.entries.push((name.into(), dev));
    }

    /// Plugs `dev` into the first free slot of bus 0 and lists it as `pci.0/SS.0`.
    pub fn add_pci<D: PciDevice + 'static>(
        &mut self,
        root: &Mutex<PciRoot>,
        dev: Arc<Mutex<D>>,
    ) -> Result<usize, devices::pci::root::PciError> {
        let slot = lock(root).add(dev.clone())?;
        self.add(pci_name(slot), dev);
        Ok(slot)
    }

    /// Lists a function already plugged at `slot` (the host bridge).
    pub fn add_pci_at(&mut self, slot: usize, dev: Arc<Mutex<dyn Device>>) {
        self.add(pci_name(slot), dev);
    }

    /// Quiesces every device, in order (see [`Device::pause`]).
    pub fn pause(&self) {
        self.entries.iter().for_each(|(_, d)| lock(d).pause());
    }

    pub fn resume(&self) {
        self.entries.iter().for_each(|(_, d)| lock(d).resume());
    }

    /// Stops every device for good (VM teardown).
    pub fn shutdown(&self) {
        self.entries.iter().for_each(|(_, d)| lock(d).shutdown());
    }

    /// Every device's state. The devices must be paused.
    pub fn save(&self) -> Vec<NamedState> {
        self.entries.iter().map(|(n, d)| (n.clone(), lock(d).save_state())).collect()
    }

    /// Checks a machine's device states against these devices: each present exactly once,
    /// nothing unknown, every state decoded in full and fitting its device. Changes nothing.
    pub fn check(&self, states: &[NamedState]) -> Result<(), StateError> {
        for (name, _) in states {
            if !self.entries.iter().any(|(n, _)| n == name) {
                return Err(invalid(format!("unknown device '{name}'")));
            }
        }
        for (name, dev) in &self.entries {
            let mut found = states.iter().filter(|(n, _)| n == name);
            let bytes = found.next().ok_or_else(|| invalid(format!("missing device '{name}'")))?;
            if found.next().is_some() {
                return Err(invalid(format!("device '{name}' appears twice")));
            }
            lock(dev).check_state(&bytes.1)?;
        }
        Ok(())
    }

    /// Restores what [`DeviceList::save`] produced. Everything is checked first, so a
    /// state that does not fit leaves every device as it was.
    pub fn restore(&self, states: &[NamedState]) -> Result<(), StateError> {
        self.check(states)?;
        for (name, dev) in &self.entries {
            if let Some((_, bytes)) = states.iter().find(|(n, _)| n == name) {
                lock(dev).restore_state(bytes)?;
            }
        }
        Ok(())
    }
}

fn pci_name(slot: usize) -> String {
    format!("pci.0/{slot:02x}.0")
}

fn invalid(why: String) -> StateError {
    StateError::Invalid { name: "machine", why }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::device::PlainDevice;
    use devices::state::{Persist, StateReader, StateWriter, VersionedState};

    #[derive(Clone, Debug, PartialEq)]
    struct Counter(u32);
    struct CounterState(u32);

    impl VersionedState for CounterState {
        const NAME: &'static str = "counter";
        const VERSION: u16 = 1;
        fn encode(&self, w: &mut StateWriter) {
            w.u32(self.0);
        }
        fn decode(r: &mut StateReader<'_>, _: u16) -> Result<Self, StateError> {
            Ok(CounterState(r.u32()?))
        }
    }

    impl Persist for Counter {
        type State = CounterState;
        fn save(&self) -> CounterState {
            CounterState(self.0)
        }
        fn restore(&mut self, s: &CounterState) -> Result<(), StateError> {
            self.0 = s.0;
            Ok(())
        }
    }

    impl PlainDevice for Counter {}

    fn list(values: &[u32]) -> (DeviceList, Vec<Arc<Mutex<Counter>>>) {
        let mut l = DeviceList::default();
        let devs: Vec<_> = values.iter().map(|v| Arc::new(Mutex::new(Counter(*v)))).collect();
        for (i, d) in devs.iter().enumerate() {
            l.add(format!("c{i}"), d.clone());
        }
        (l, devs)
    }

    #[test]
    fn a_state_that_does_not_fit_changes_nothing() {
        let (src, _) = list(&[1, 2]);
        let saved = src.save();
        let (dst, devs) = list(&[7, 8]);
        dst.restore(&saved).unwrap();
        assert_eq!((lock(&devs[0]).0, lock(&devs[1]).0), (1, 2));

        // The second device's state is bad: the first one must not be touched either.
        let (dst, devs) = list(&[7, 8]);
        let mut bad = saved.clone();
        bad[1].1.truncate(3);
        assert!(dst.restore(&bad).is_err());
        assert_eq!((lock(&devs[0]).0, lock(&devs[1]).0), (7, 8));

        let mut unknown = saved.clone();
        unknown.push(("c9".into(), saved[0].1.clone()));
        assert!(dst.check(&unknown).unwrap_err().to_string().contains("unknown device 'c9'"));
        assert!(dst.check(&saved[..1]).unwrap_err().to_string().contains("missing device 'c1'"));
        let twice = vec![saved[0].clone(), saved[0].clone(), saved[1].clone()];
        assert!(dst.check(&twice).unwrap_err().to_string().contains("appears twice"));
        assert_eq!((lock(&devs[0]).0, lock(&devs[1]).0), (7, 8));
    }
}
