//! The saved state of a virtio-pci function: PCI config space (with BARs and the MSI-X
//! control bits), transport registers, queues, MSI-X table and PBA, and the device model's
//! own state as an opaque versioned value.

use super::super::queue::{decode_queue, encode_queue};
use super::common_cfg::CommonCfg;
use super::msix::Msix;
use crate::pci::ConfigSpace;
use crate::state::{StateError, StateReader, StateWriter, VersionedState};
use virtio_queue::QueueState;

/// Nested states are stored as their own name-and-version-tagged values.
fn nested<T: VersionedState>(r: &mut StateReader<'_>) -> Result<T, StateError> {
    T::from_bytes(r.bytes()?)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioPciState {
    pub device_type: u32,
    pub config: ConfigSpace,
    pub common: CommonCfg,
    pub queues: Vec<QueueState>,
    pub queue_vectors: Vec<u16>,
    pub config_vector: u16,
    pub isr: u8,
    pub msix: Msix,
    /// The device was running (DRIVER_OK accepted); restore restarts it.
    pub activated: bool,
    /// [`super::super::VirtioDevice::state`].
    pub device: Vec<u8>,
}

impl VersionedState for VirtioPciState {
    const NAME: &'static str = "virtio-pci";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.u32(self.device_type);
        w.bytes(&self.config.to_bytes());
        w.bytes(&self.common.to_bytes());
        w.u16(self.queues.len() as u16);
        for (q, v) in self.queues.iter().zip(&self.queue_vectors) {
            encode_queue(w, q);
            w.u16(*v);
        }
        w.u16(self.config_vector);
        w.u8(self.isr);
        w.bytes(&self.msix.to_bytes());
        w.bool(self.activated);
        w.bytes(&self.device);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let device_type = r.u32()?;
        let config = nested(r)?;
        let common = nested(r)?;
        let n = r.u16()?;
        let mut queues = Vec::new();
        let mut queue_vectors = Vec::new();
        for _ in 0..n {
            queues.push(decode_queue(r)?);
            queue_vectors.push(r.u16()?);
        }
        Ok(VirtioPciState {
            device_type,
            config,
            common,
            queues,
            queue_vectors,
            config_vector: r.u16()?,
            isr: r.u8()?,
            msix: nested(r)?,
            activated: r.bool()?,
            device: r.bytes()?.to_vec(),
        })
    }
}
