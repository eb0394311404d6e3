//! virtio 1.x devices and the virtio-pci modern transport.
//!
//! A device model ([`VirtioDevice`], e.g. [`blk::VirtioBlk`]) knows its queues, features and
//! configuration layout; the transport ([`pci::VirtioPciDevice`]) exposes it as a PCI function
//! and runs the virtio status machine. Queue processing happens on a per-device I/O thread
//! ([`worker`]): a notify, exiting to a vCPU thread or signalled by KVM on an ioeventfd the
//! thread waits on, only wakes that thread. Interrupts leave through an [`MsiSink`] the VMM
//! implements (KVM_SIGNAL_MSI), so nothing here knows KVM.

pub mod blk;
pub mod chain;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod net;
pub mod pci;
pub mod queue;
pub mod worker;

#[cfg(test)]
pub(crate) mod testing;

use crate::state::StateError;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use virtio_queue::Queue;

/// Guest memory as the devices see it: every write the devices make through it (vm-memory's
/// `Bytes`, virtio-queue's used ring and `Writer`) is logged in the dirty bitmap.
pub type GuestMem = vm_memory::GuestMemoryMmap<crate::pagelog::PageLog>;

/// Feature bits the transport and the ring implementation handle for every device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
pub const VIRTIO_F_RING_INDIRECT_DESC: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
pub const VIRTIO_F_RING_EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

/// device_status bits (virtio 1.2 §2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// Where MSI messages go. The VMM implements this with KVM_SIGNAL_MSI.
pub trait MsiSink: Send + Sync {
    /// Delivers one message: `addr` and `data` come straight from the MSI-X table entry.
    fn signal(&self, addr: u64, data: u32);
}

/// How a device's I/O thread tells the driver about used buffers or a config change.
/// Lets a guest write to an MMIO address signal an eventfd inside KVM, without a VM exit
/// to the VMM (KVM_IOEVENTFD): the transport's queue notifies use it when the VMM has it.
pub trait IoEvents: Send + Sync {
    fn register(&self, addr: u64, fd: &vmm_sys_util::eventfd::EventFd) -> std::io::Result<()>;
    fn unregister(&self, addr: u64, fd: &vmm_sys_util::eventfd::EventFd) -> std::io::Result<()>;
}

pub trait VirtioInterrupt: Send + Sync {
    fn signal_queue(&self, queue: u16);
    fn signal_config(&self);
    /// The device cannot go on with what the driver gave it (virtio 1.2 §2.1.2): sets
    /// NEEDS_RESET in device_status and raises a config interrupt. Callable from the I/O
    /// thread; only a virtio reset clears it.
    fn set_needs_reset(&self);
}

#[derive(Debug, Error)]
pub enum VirtioError {
    #[error("queue {0} is required but was not enabled by the driver")]
    QueueNotReady(usize),
    #[error("queue {0}'s rings do not lie in guest memory")]
    BadRing(usize),
    #[error("cannot start the device's I/O thread: {0}")]
    Thread(#[from] worker::WorkerError),
    #[error("the device was shut down")]
    ShutDown,
}

/// What a device gets when the driver sets DRIVER_OK (or a saved, running device is restored).
pub struct Activation {
    pub mem: GuestMem,
    /// All queues, shared with the transport (which reads them for the guest and saves them).
    /// Ready queues have been checked to lie in guest memory.
    pub queues: Vec<Arc<Mutex<Queue>>>,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// The features the driver accepted.
    pub acked_features: u64,
    /// Start with the I/O thread parked (the VMM is quiesced and will call resume).
    pub paused: bool,
}

/// A virtio device model, independent of the transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (2 = block).
    fn device_type(&self) -> u32;
    /// 24-bit PCI class code (class, subclass, prog-if).
    fn pci_class(&self) -> u32;
    /// A short name for listings (e.g. "virtio-blk").
    fn name(&self) -> &str;
    /// The maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Device and ring features offered (the transport adds VERSION_1).
    fn features(&self) -> u64;
    /// Reads the device-specific configuration at `offset`; bytes beyond it read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration (ignored by devices without writable fields).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts processing the queues.
    fn activate(&mut self, act: Activation) -> Result<(), VirtioError>;
    /// The driver notified queue `queue` (called on a vCPU thread: must not block on I/O).
    fn queue_notify(&mut self, queue: u16);
    /// While active, a handle on the I/O thread: it kicks queues from any thread, and takes
    /// the eventfds KVM signals for queue notifies (ioeventfds), which the thread then waits
    /// on itself.
    fn kicker(&self) -> Option<worker::Kicker> {
        None
    }
    /// Stops processing and forgets the activation (virtio reset); waits for the I/O thread.
    fn reset(&mut self);
    /// Finishes the request in progress and parks the I/O thread; returns when parked.
    fn pause(&mut self);
    fn resume(&mut self);
    /// Stops the I/O thread for good and writes back what the back end caches.
    fn shutdown(&mut self);
    /// Device-specific state (not the queues or transport, which the transport saves).
    fn state(&self) -> Vec<u8>;
    /// Decodes a device-specific state in full and checks it fits this device (what the
    /// guest was told: size, features, ...), changing nothing.
    fn check_state(&self, bytes: &[u8]) -> Result<(), StateError>;
    /// Loads a device-specific state; fails, before changing anything, where
    /// [`VirtioDevice::check_state`] fails.
    fn set_state(&mut self, bytes: &[u8]) -> Result<(), StateError>;
}
