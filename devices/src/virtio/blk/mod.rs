//! virtio-blk (device type 2) over a [`BlockBackend`].
//!
//! One request queue, served by an I/O thread ([`worker`]); requests are executed one at a
//! time in avail-ring order ([`request`]). The backend sits behind a mutex the VMM can share
//! (savevm writes vmstate and snapshots into the same qcow2 while the device is paused).

pub mod request;
pub mod stats;
pub mod worker;

#[cfg(test)]
mod tests;

use super::worker::Worker;
use super::{Activation, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VirtioDevice, VirtioError};
use crate::block::dirty::DirtyMap;
use crate::block::{BlockBackend, SECTOR_SIZE};
use crate::bus::lock;
use crate::state::{StateError, StateReader, StateWriter, VersionedState};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use virtio_bindings::virtio_blk as vb;
use worker::BlkHandler;

pub const VIRTIO_ID_BLOCK: u32 = 2;
/// Mass storage controller, "other" (class 01, subclass 80).
pub const PCI_CLASS_STORAGE_OTHER: u32 = 0x01_80_00;
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
/// Bytes of the serial that GET_ID returns.
pub const ID_BYTES: usize = vb::VIRTIO_BLK_ID_BYTES as usize;
/// Largest single segment the driver may use (a hint; any size is handled).
pub const SIZE_MAX: u32 = 1 << 20;
/// Largest discard or write-zeroes segment, in sectors (just under 2 GiB, like QEMU's).
pub const MAX_DISCARD_SECTORS: u32 = 0x3f_ffff;
/// Segments per discard or write-zeroes request.
pub const MAX_DISCARD_SEGMENTS: u32 = 16;
/// Bytes of `struct virtio_blk_config` through `write_zeroes_may_unmap` and its padding.
const CONFIG_LEN: usize = 0x3c;

const fn bit(b: u32) -> u64 {
    1 << b
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BlkError {
    #[error("virtio-blk queue size {0} is not a power of two between 4 and 32768")]
    BadQueueSize(u16),
}

/// How the drive is presented to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlkConfig {
    /// What GET_ID reports (QEMU's `serial=`); cut to 20 bytes.
    pub serial: String,
    /// Present the disk read-only (also implied by a read-only backend).
    pub read_only: bool,
    /// Offer DISCARD (QEMU's `discard=unmap`); never on read-only disks.
    pub discard: bool,
    /// Offer WRITE_ZEROES; never on read-only disks.
    pub write_zeroes: bool,
    pub queue_size: u16,
    /// The backend is read-only only until the VMM swaps in the real one (a migration
    /// destination's image before hand-over): `read_only` alone decides.
    pub backend_ro_for_now: bool,
}

impl Default for BlkConfig {
    fn default() -> Self {
        BlkConfig {
            serial: String::new(),
            read_only: false,
            discard: true,
            write_zeroes: true,
            backend_ro_for_now: false,
            queue_size: DEFAULT_QUEUE_SIZE,
        }
    }
}

/// The disk as the request code sees it.
pub struct Disk {
    pub backend: Arc<Mutex<Box<dyn BlockBackend>>>,
    /// Written ranges, for block migration (marked after each write completes).
    pub dirty: Arc<DirtyMap>,
    /// Size in 512-byte sectors.
    pub capacity: u64,
    pub read_only: bool,
    /// DISCARD and WRITE_ZEROES as negotiated.
    pub discard: bool,
    pub write_zeroes: bool,
    pub serial: [u8; ID_BYTES],
    /// What the requests did, for `query-blockstats`.
    pub stats: Arc<stats::BlkStats>,
}

pub struct VirtioBlk {
    backend: Arc<Mutex<Box<dyn BlockBackend>>>,
    dirty: Arc<DirtyMap>,
    config: BlkConfig,
    read_only: bool,
    capacity: u64,
    features: u64,
    worker: Option<Worker>,
    shut_down: bool,
    broken: worker::BrokenReason,
    stats: Arc<stats::BlkStats>,
}

impl VirtioBlk {
    pub fn new(backend: Box<dyn BlockBackend>, config: BlkConfig) -> Result<Self, BlkError> {
        let qs = config.queue_size;
        if !(4..=32768).contains(&qs) || !qs.is_power_of_two() {
            return Err(BlkError::BadQueueSize(qs));
        }
        // An image opened read-only makes the disk read-only, unless the VMM says it only
        // holds the image that way for now (a migration destination, before hand-over).
        let read_only = config.read_only || (backend.read_only() && !config.backend_ro_for_now);
        // A tail shorter than a sector cannot be addressed by the guest.
        let capacity = backend.virtual_size() / SECTOR_SIZE;
        let mut features = VIRTIO_F_RING_INDIRECT_DESC
            | VIRTIO_F_RING_EVENT_IDX
            | bit(vb::VIRTIO_BLK_F_SIZE_MAX)
            | bit(vb::VIRTIO_BLK_F_SEG_MAX)
            | bit(vb::VIRTIO_BLK_F_BLK_SIZE)
            | bit(vb::VIRTIO_BLK_F_FLUSH);
        if read_only {
            features |= bit(vb::VIRTIO_BLK_F_RO);
        } else {
            if config.discard {
                features |= bit(vb::VIRTIO_BLK_F_DISCARD);
            }
            if config.write_zeroes {
                features |= bit(vb::VIRTIO_BLK_F_WRITE_ZEROES);
            }
        }
        Ok(VirtioBlk {
            dirty: Arc::new(DirtyMap::new(capacity * SECTOR_SIZE)),
            backend: Arc::new(Mutex::new(backend)),
            config,
            read_only,
            capacity,
            features,
            worker: None,
            shut_down: false,
            broken: Arc::default(),
            stats: Arc::default(),
        })
    }

    /// The image, shared with the I/O thread. Lock it only while the device is paused if
    /// the guest must not see the change mid-request.
    pub fn backend(&self) -> Arc<Mutex<Box<dyn BlockBackend>>> {
        self.backend.clone()
    }

    /// The device's request counters, shared with whoever reports them.
    pub fn stats(&self) -> Arc<stats::BlkStats> {
        self.stats.clone()
    }

    /// The bitmap of guest writes (off until block migration starts it).
    pub fn dirty_map(&self) -> Arc<DirtyMap> {
        self.dirty.clone()
    }

    pub fn capacity_sectors(&self) -> u64 {
        self.capacity
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn config(&self) -> &BlkConfig {
        &self.config
    }

    /// Why the device needs a reset (the driver broke it), if it does; the handle stays
    /// valid after the device is handed to the transport.
    pub fn error_handle(&self) -> worker::BrokenReason {
        self.broken.clone()
    }

    fn serial(&self) -> [u8; ID_BYTES] {
        let mut s = [0u8; ID_BYTES];
        let b = self.config.serial.as_bytes();
        let n = b.len().min(ID_BYTES);
        s[..n].copy_from_slice(&b[..n]);
        s
    }

    /// `struct virtio_blk_config` (virtio 1.2 §5.2.4), little-endian.
    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        c[0x00..0x08].copy_from_slice(&self.capacity.to_le_bytes());
        c[0x08..0x0c].copy_from_slice(&SIZE_MAX.to_le_bytes());
        // Two descriptors go to the header and the status byte.
        c[0x0c..0x10].copy_from_slice(&(u32::from(self.config.queue_size) - 2).to_le_bytes());
        c[0x14..0x18].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        c[0x22..0x24].copy_from_slice(&1u16.to_le_bytes()); // num_queues
        c[0x24..0x28].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[0x28..0x2c].copy_from_slice(&MAX_DISCARD_SEGMENTS.to_le_bytes());
        c[0x2c..0x30].copy_from_slice(&1u32.to_le_bytes()); // discard_sector_alignment
        c[0x30..0x34].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[0x34..0x38].copy_from_slice(&MAX_DISCARD_SEGMENTS.to_le_bytes());
        c[0x38] = 1; // write_zeroes_may_unmap
        c
    }
}

impl VirtioDevice for VirtioBlk {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn pci_class(&self) -> u32 {
        PCI_CLASS_STORAGE_OTHER
    }

    fn name(&self) -> &str {
        "virtio-blk"
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![self.config.queue_size]
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.config_bytes();
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::try_from(offset).ok().and_then(|o| c.get(o + i)).copied().unwrap_or(0);
        }
    }

    fn activate(&mut self, act: Activation) -> Result<(), VirtioError> {
        if self.shut_down {
            return Err(VirtioError::ShutDown);
        }
        if !act.queues.first().is_some_and(|q| virtio_queue::QueueT::ready(&*lock(q))) {
            return Err(VirtioError::QueueNotReady(0));
        }
        let acked = act.acked_features;
        let disk = Disk {
            backend: self.backend.clone(),
            dirty: self.dirty.clone(),
            capacity: self.capacity,
            read_only: self.read_only,
            discard: acked & bit(vb::VIRTIO_BLK_F_DISCARD) != 0,
            write_zeroes: acked & bit(vb::VIRTIO_BLK_F_WRITE_ZEROES) != 0,
            serial: self.serial(),
            stats: self.stats.clone(),
        };
        let nq = act.queues.len();
        *lock(&self.broken) = None;
        let handler = BlkHandler::new(act.mem, act.queues, act.interrupt, disk, self.broken.clone());
        self.worker = Some(Worker::spawn("virtio-blk", nq, handler, act.paused)?);
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) {
        if let Some(w) = &self.worker {
            w.kick(usize::from(queue));
        }
    }

    fn kicker(&self) -> Option<crate::virtio::worker::Kicker> {
        self.worker.as_ref().map(|w| w.kicker())
    }

    fn reset(&mut self) {
        // Dropping the worker stops and joins it: no request is in flight after this.
        self.worker = None;
        *lock(&self.broken) = None;
    }

    fn pause(&mut self) {
        if let Some(w) = &self.worker {
            w.pause();
        }
    }

    fn resume(&mut self) {
        if let Some(w) = &self.worker {
            w.resume();
        }
    }

    fn shutdown(&mut self) {
        self.shut_down = true;
        self.worker = None;
        // Cached metadata written back, so the image is clean for whoever opens it next.
        let _ = lock(&self.backend).flush();
    }

    fn state(&self) -> Vec<u8> {
        VirtioBlkState {
            capacity: self.capacity,
            read_only: self.read_only,
            features: self.features,
        }
        .to_bytes()
    }

    fn check_state(&self, bytes: &[u8]) -> Result<(), StateError> {
        let s = VirtioBlkState::from_bytes(bytes)?;
        // The guest was told a size and features; a different disk would corrupt it.
        if s.capacity != self.capacity || s.read_only != self.read_only || s.features != self.features {
            return Err(StateError::Invalid {
                name: VirtioBlkState::NAME,
                why: format!(
                    "saved disk has {} sectors (read-only {}, features {:#x}), this one {} (read-only {}, features {:#x})",
                    s.capacity, s.read_only, s.features, self.capacity, self.read_only, self.features
                ),
            });
        }
        Ok(())
    }

    fn set_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        // Nothing to load: the state only says which disk the guest knows.
        self.check_state(bytes)
    }
}

/// What the guest has been told about the disk. The image itself is not device state: it
/// is shared or copied separately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioBlkState {
    pub capacity: u64,
    pub read_only: bool,
    pub features: u64,
}

impl VersionedState for VirtioBlkState {
    const NAME: &'static str = "virtio-blk";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.u64(self.capacity);
        w.bool(self.read_only);
        w.u64(self.features);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        Ok(VirtioBlkState {
            capacity: r.u64()?,
            read_only: r.bool()?,
            features: r.u64()?,
        })
    }
}
