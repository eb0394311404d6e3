//! The one interface every device model offers the VMM, whatever bus it sits on: quiesce
//! and restart it around a migration or snapshot, save its state, check a saved state
//! against it without changing anything, restore it, and stop it for good.
//!
//! The VMM keeps every device in one list (in `src/vm/devices.rs`) and drives them all
//! through this trait; nothing device-specific is needed there.

use crate::state::{Persist, StateError, VersionedState};

/// A device the VMM can quiesce, save, check, restore and stop.
pub trait Device: Send {
    /// Finishes the work in progress and parks the device's threads, if it has any; once
    /// this returns the device touches neither guest memory nor its back end until
    /// [`Device::resume`].
    fn pause(&mut self) {}
    fn resume(&mut self) {}
    /// Stops the device's threads for good (VM teardown) and writes back whatever its back
    /// end caches, so the next owner of that back end finds it complete.
    fn shutdown(&mut self) {}
    /// The device's complete state as a versioned value. Call only while paused.
    fn save_state(&self) -> Vec<u8>;
    /// Decodes `bytes` in full and checks that they fit this device (same kind, same
    /// configuration as the guest was told), changing nothing.
    fn check_state(&self, bytes: &[u8]) -> Result<(), StateError>;
    /// Loads a state produced by [`Device::save_state`]. Fails, before changing anything,
    /// where [`Device::check_state`] fails.
    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError>;
}

/// A device without threads whose whole state is one [`Persist`] value: it gets
/// [`Device`] from that alone.
pub trait PlainDevice: Persist + Send {}

impl<T: PlainDevice> Device for T {
    fn save_state(&self) -> Vec<u8> {
        self.save().to_bytes()
    }

    fn check_state(&self, bytes: &[u8]) -> Result<(), StateError> {
        <T as Persist>::State::from_bytes(bytes).map(|_| ())
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        self.restore(&<T as Persist>::State::from_bytes(bytes)?)
    }
}
