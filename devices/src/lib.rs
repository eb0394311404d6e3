//! Device models and block formats for godwit.
//!
//! Nothing here knows about KVM: devices see port/MMIO accesses through [`bus::BusDevice`],
//! raise interrupts through [`irq::IrqEvent`], and save/restore through [`state`].
#[cfg(test)]
pub(crate) mod alloc_probe;
pub mod block;
pub mod bus;
pub mod device;
pub mod irq;
pub mod legacy;
pub mod net;
pub mod pagelog;
pub mod pci;
pub mod state;
pub mod virtio;
