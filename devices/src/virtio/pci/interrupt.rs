//! Interrupt routing of a virtio-pci function: queue and config events go to the MSI-X
//! vectors the driver chose, and always set the ISR status bits.
//!
//! godwit gives PCI functions no INTx pin. Without MSI-X enabled only the ISR status
//! changes, which suits a polling driver (the probe guest); Linux always uses MSI-X.

use super::super::{MsiSink, VirtioInterrupt, status};
use super::msix::Msix;
use crate::bus::lock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// "No vector" in msix_config and queue_msix_vector.
pub const NO_VECTOR: u16 = 0xffff;
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

pub struct PciInterrupt {
    msix: Mutex<Msix>,
    sink: Arc<dyn MsiSink>,
    isr: AtomicU8,
    config_vector: AtomicU16,
    queue_vectors: Vec<AtomicU16>,
    /// Set by the device's I/O thread ([`VirtioInterrupt::set_needs_reset`]); the transport
    /// shows it in device_status.
    needs_reset: AtomicBool,
}

impl PciInterrupt {
    pub fn new(msix: Msix, sink: Arc<dyn MsiSink>, queues: usize) -> Self {
        PciInterrupt {
            msix: Mutex::new(msix),
            sink,
            isr: AtomicU8::new(0),
            config_vector: AtomicU16::new(NO_VECTOR),
            queue_vectors: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
            needs_reset: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the MSI-X table, with the sink for deliveries it releases.
    pub fn with_msix<R>(&self, f: impl FnOnce(&mut Msix, &dyn MsiSink) -> R) -> R {
        f(&mut lock(&self.msix), self.sink.as_ref())
    }

    pub fn msix(&self) -> Msix {
        lock(&self.msix).clone()
    }

    pub fn set_msix(&self, m: Msix) {
        *lock(&self.msix) = m;
    }

    /// A vector the driver may select: one in the table, or NO_VECTOR. Anything else reads
    /// back as NO_VECTOR, which is how the driver learns the mapping failed.
    fn valid(&self, v: u16) -> u16 {
        if v < lock(&self.msix).vectors() { v } else { NO_VECTOR }
    }

    pub fn config_vector(&self) -> u16 {
        self.config_vector.load(Ordering::Acquire)
    }

    pub fn set_config_vector(&self, v: u16) {
        self.config_vector.store(self.valid(v), Ordering::Release);
    }

    pub fn queue_vector(&self, q: usize) -> u16 {
        self.queue_vectors.get(q).map_or(NO_VECTOR, |v| v.load(Ordering::Acquire))
    }

    pub fn set_queue_vector(&self, q: usize, v: u16) {
        let v = self.valid(v);
        if let Some(slot) = self.queue_vectors.get(q) {
            slot.store(v, Ordering::Release);
        }
    }

    /// Reading the ISR clears it (virtio 1.2 §4.1.4.5).
    pub fn take_isr(&self) -> u8 {
        self.isr.swap(0, Ordering::AcqRel)
    }

    pub fn isr(&self) -> u8 {
        self.isr.load(Ordering::Acquire)
    }

    pub fn set_isr(&self, v: u8) {
        self.isr.store(v, Ordering::Release);
    }

    /// The device_status bits the device set on its own (NEEDS_RESET or nothing).
    pub fn device_status_bits(&self) -> u8 {
        if self.needs_reset.load(Ordering::Acquire) {
            status::NEEDS_RESET
        } else {
            0
        }
    }

    /// Forgets a NEEDS_RESET the device set (a restored status carries its own).
    pub fn clear_needs_reset(&self) {
        self.needs_reset.store(false, Ordering::Release);
    }

    /// Virtio reset: vectors unmapped, ISR clear, NEEDS_RESET forgotten. The MSI-X table itself belongs to PCI and
    /// survives.
    pub fn reset(&self) {
        self.isr.store(0, Ordering::Release);
        self.clear_needs_reset();
        self.config_vector.store(NO_VECTOR, Ordering::Release);
        for v in &self.queue_vectors {
            v.store(NO_VECTOR, Ordering::Release);
        }
    }

    fn raise(&self, vector: u16, isr: u8) {
        self.isr.fetch_or(isr, Ordering::AcqRel);
        if vector != NO_VECTOR {
            lock(&self.msix).trigger(vector, self.sink.as_ref());
        }
    }
}

impl VirtioInterrupt for PciInterrupt {
    fn signal_queue(&self, queue: u16) {
        self.raise(self.queue_vector(usize::from(queue)), ISR_QUEUE);
    }

    fn signal_config(&self) {
        self.raise(self.config_vector(), ISR_CONFIG);
    }

    fn set_needs_reset(&self) {
        if !self.needs_reset.swap(true, Ordering::AcqRel) {
            self.signal_config();
        }
    }
}
