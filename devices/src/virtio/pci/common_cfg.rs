//! The common configuration structure (virtio 1.2 §4.1.4.3): feature negotiation, device
//! status, and per-queue set-up through `queue_select`.
//!
//! Register writes that change the device's life (reset, DRIVER_OK) are returned as an
//! [`Action`] for the transport to carry out, so this file stays a plain register file.

use super::super::queue::SharedQueue;
use super::super::{VIRTIO_F_VERSION_1, status};
use super::interrupt::PciInterrupt;
use crate::bus::lock;
use crate::state::{StateError, StateReader, StateWriter, VersionedState};
use virtio_queue::QueueT;

/// Bytes of the structure (through `queue_reset` of virtio 1.2, which reads as zero).
pub const COMMON_CFG_LEN: u64 = 0x40;

const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const CONFIG_MSIX_VECTOR: u64 = 0x10;
const NUM_QUEUES: u64 = 0x12;
const DEVICE_STATUS: u64 = 0x14;
const CONFIG_GENERATION: u64 = 0x15;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;

/// What the transport must do after a register write.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// The driver wrote 0 to device_status.
    Reset,
    /// The driver set DRIVER_OK.
    Activate,
}

/// The transport's view the registers need: offered features, queues and vectors.
pub struct Regs<'a> {
    pub offered: u64,
    pub queues: &'a [SharedQueue],
    pub interrupt: &'a PciInterrupt,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommonCfg {
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    /// Features the driver accepted (always a subset of those offered).
    pub driver_features: u64,
    pub status: u8,
    pub config_generation: u8,
    pub queue_select: u16,
}

impl CommonCfg {
    /// Back to the state after reset, keeping the generation counter running.
    pub fn reset(&mut self) {
        *self = CommonCfg {
            config_generation: self.config_generation,
            ..CommonCfg::default()
        };
    }

    fn selected<'a>(&self, r: &Regs<'a>) -> Option<&'a SharedQueue> {
        r.queues.get(usize::from(self.queue_select))
    }

    /// (start, width, value) of the register containing byte `off`.
    fn field(&self, off: u64, r: &Regs<'_>) -> Option<(u64, u64, u64)> {
        let q = self.selected(r).map(|q| lock(q));
        let qv = |f: &dyn Fn(&virtio_queue::Queue) -> u64| q.as_ref().map_or(0, |q| f(q));
        let word = |v: u64, sel: u32| {
            if sel < 2 { (v >> (32 * sel)) & 0xffff_ffff } else { 0 }
        };
        let (start, width, value) = match off {
            0x00..0x04 => (DEVICE_FEATURE_SELECT, 4, u64::from(self.device_feature_select)),
            0x04..0x08 => (DEVICE_FEATURE, 4, word(r.offered, self.device_feature_select)),
            0x08..0x0c => (DRIVER_FEATURE_SELECT, 4, u64::from(self.driver_feature_select)),
            0x0c..0x10 => (DRIVER_FEATURE, 4, word(self.driver_features, self.driver_feature_select)),
            0x10..0x12 => (CONFIG_MSIX_VECTOR, 2, u64::from(r.interrupt.config_vector())),
            0x12..0x14 => (NUM_QUEUES, 2, r.queues.len() as u64),
            0x14 => (DEVICE_STATUS, 1, u64::from(self.status | r.interrupt.device_status_bits())),
            0x15 => (CONFIG_GENERATION, 1, u64::from(self.config_generation)),
            0x16..0x18 => (QUEUE_SELECT, 2, u64::from(self.queue_select)),
            0x18..0x1a => (QUEUE_SIZE, 2, qv(&|q| u64::from(q.size()))),
            0x1a..0x1c => {
                let v = if q.is_some() {
                    r.interrupt.queue_vector(usize::from(self.queue_select))
                } else {
                    super::interrupt::NO_VECTOR
                };
                (QUEUE_MSIX_VECTOR, 2, u64::from(v))
            }
            0x1c..0x1e => (QUEUE_ENABLE, 2, qv(&|q| u64::from(q.ready()))),
            // Each queue's notify address is its index times the multiplier.
            0x1e..0x20 => (QUEUE_NOTIFY_OFF, 2, qv(&|_| u64::from(self.queue_select))),
            0x20..0x28 => (QUEUE_DESC, 8, qv(&|q| q.desc_table())),
            0x28..0x30 => (QUEUE_DRIVER, 8, qv(&|q| q.avail_ring())),
            0x30..0x38 => (QUEUE_DEVICE, 8, qv(&|q| q.used_ring())),
            _ => return None,
        };
        Some((start, width, value))
    }

    pub fn read(&self, offset: u64, data: &mut [u8], r: &Regs<'_>) {
        for (i, d) in data.iter_mut().enumerate() {
            let off = offset.saturating_add(i as u64);
            *d = match self.field(off, r) {
                Some((start, _, value)) => (value >> (8 * (off - start))) as u8,
                None => 0,
            };
        }
    }

    pub fn write(&mut self, offset: u64, data: &[u8], r: &Regs<'_>) -> Action {
        let v = match data.len() {
            1 => u64::from(data[0]),
            2 => u64::from(u16::from_le_bytes([data[0], data[1]])),
            4 => u64::from(u32::from_le_bytes(data.try_into().expect("4 bytes"))),
            8 => u64::from_le_bytes(data.try_into().expect("8 bytes")),
            _ => return Action::None,
        };
        let len = data.len() as u64;
        match (offset, len) {
            (DEVICE_FEATURE_SELECT, 4) => self.device_feature_select = v as u32,
            (DRIVER_FEATURE_SELECT, 4) => self.driver_feature_select = v as u32,
            (DRIVER_FEATURE, 4) => self.write_driver_features(v, r.offered),
            (CONFIG_MSIX_VECTOR, 2) => r.interrupt.set_config_vector(v as u16),
            (DEVICE_STATUS, 1) => return self.write_status(v as u8),
            (QUEUE_SELECT, 2) => self.queue_select = v as u16,
            (QUEUE_MSIX_VECTOR, 2) => {
                if self.selected(r).is_some() {
                    r.interrupt.set_queue_vector(usize::from(self.queue_select), v as u16);
                }
            }
            _ => self.write_queue(offset, len, v, r),
        }
        Action::None
    }

    fn write_driver_features(&mut self, v: u64, offered: u64) {
        // Features are fixed once FEATURES_OK is set; unoffered bits are dropped.
        if self.status & status::FEATURES_OK != 0 || self.driver_feature_select > 1 {
            return;
        }
        let shift = 32 * self.driver_feature_select;
        let mask = 0xffff_ffffu64 << shift;
        self.driver_features = (self.driver_features & !mask) | ((v << shift) & mask & offered);
    }

    fn write_status(&mut self, v: u8) -> Action {
        if v == 0 {
            return Action::Reset;
        }
        let old = self.status;
        let mut new = v;
        // FEATURES_OK sticks only for an acceptable set: modern drivers must take VERSION_1.
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 && self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            new &= !status::FEATURES_OK;
        }
        let starting = new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0;
        if starting && (new & status::FEATURES_OK == 0 || new & status::FAILED != 0) {
            // DRIVER_OK without negotiated features cannot work: tell the driver to reset.
            self.status = (new & !status::DRIVER_OK) | status::NEEDS_RESET;
            return Action::None;
        }
        // NEEDS_RESET is the device's to set and only reset clears it.
        self.status = new | (old & status::NEEDS_RESET);
        if starting && old & status::NEEDS_RESET == 0 {
            Action::Activate
        } else {
            Action::None
        }
    }

    /// Queue set-up: allowed only before the queue is enabled and before DRIVER_OK.
    fn write_queue(&mut self, offset: u64, len: u64, v: u64, r: &Regs<'_>) {
        let Some(q) = self.selected(r) else { return };
        let mut q = lock(q);
        if q.ready() || self.status & status::DRIVER_OK != 0 {
            return;
        }
        let lo = Some(v as u32);
        let hi = Some((v >> 32) as u32);
        match (offset, len) {
            // virtio-queue keeps the old size if the new one is not a power of two <= max.
            (QUEUE_SIZE, 2) => q.set_size(v as u16),
            (QUEUE_ENABLE, 2) if v == 1 => q.set_ready(true),
            (QUEUE_DESC, 4) => q.set_desc_table_address(lo, None),
            (o, 4) if o == QUEUE_DESC + 4 => q.set_desc_table_address(None, lo),
            (QUEUE_DESC, 8) => q.set_desc_table_address(lo, hi),
            (QUEUE_DRIVER, 4) => q.set_avail_ring_address(lo, None),
            (o, 4) if o == QUEUE_DRIVER + 4 => q.set_avail_ring_address(None, lo),
            (QUEUE_DRIVER, 8) => q.set_avail_ring_address(lo, hi),
            (QUEUE_DEVICE, 4) => q.set_used_ring_address(lo, None),
            (o, 4) if o == QUEUE_DEVICE + 4 => q.set_used_ring_address(None, lo),
            (QUEUE_DEVICE, 8) => q.set_used_ring_address(lo, hi),
            _ => {}
        }
    }
}

impl VersionedState for CommonCfg {
    const NAME: &'static str = "virtio-common-cfg";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.u32(self.device_feature_select);
        w.u32(self.driver_feature_select);
        w.u64(self.driver_features);
        w.u8(self.status);
        w.u8(self.config_generation);
        w.u16(self.queue_select);
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        Ok(CommonCfg {
            device_feature_select: r.u32()?,
            driver_feature_select: r.u32()?,
            driver_features: r.u64()?,
            status: r.u8()?,
            config_generation: r.u8()?,
            queue_select: r.u16()?,
        })
    }
}
