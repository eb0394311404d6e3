//! virtio-net (device type 1) over a [`NetBackend`].
//!
//! Three queues, rx (0), tx (1) and control (2), served by one I/O thread ([`handler`] on
//! the shared [`Worker`]). The same thread waits on the back end's `rx_fd` as the worker's
//! fourth, pseudo queue ([`BACKEND_EVENT`]), so a frame from the outside costs one wake-up.
//! The NIC's own state (address, link, filter, announce bit) lives in a [`NetControl`]
//! shared with the VMM, which sets the link and announces through it while the device sits
//! in the transport as a `Box<dyn VirtioDevice>`.

pub mod control;
pub mod ctrl;
pub mod features;
pub mod filter;
pub mod handler;
pub mod mac;
pub mod rx;
pub mod state;
pub mod tx;

use super::worker::{Kicker, Watch, Worker};
use super::{Activation, VirtioDevice, VirtioError};
use crate::bus::lock;
use crate::net::NetBackend;
use crate::state::{StateError, VersionedState};
use control::{Attachment, NicState};
use features::Negotiated;
use handler::NetHandler;
use rx::{MIN_RX_BUF, MIN_RX_BUF_GSO, RxLayout};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use virtio_queue::QueueT;

pub use control::{NetControl, SharedBackend, rarp_frame};
pub use mac::MacAddr;
pub use state::VirtioNetState;

pub const VIRTIO_ID_NET: u32 = 1;
/// Network controller, Ethernet.
pub const PCI_CLASS_NETWORK_ETHERNET: u32 = 0x02_00_00;
/// The `model=` QEMU shows in `info network`.
pub const MODEL: &str = "virtio-net-pci";
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
pub const CTRL_QUEUE: usize = 2;
const NUM_QUEUES: usize = 3;
/// The worker's pseudo queue for "the back end has a frame".
pub const BACKEND_EVENT: usize = 3;
/// Bytes of `struct virtio_net_config` shown: mac, status, max_virtqueue_pairs.
const CONFIG_LEN: usize = 10;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NetError {
    #[error("virtio-net queue size {0} is not a power of two between 4 and 32768")]
    BadQueueSize(u16),
}

/// How the NIC is presented to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// QEMU's `mac=` (default 52:54:00:12:34:56).
    pub mac: MacAddr,
    /// Entries of each queue.
    pub queue_size: u16,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            mac: MacAddr::QEMU_DEFAULT,
            queue_size: DEFAULT_QUEUE_SIZE,
        }
    }
}

pub struct VirtioNet {
    backend: SharedBackend,
    vnet_hdr: bool,
    control: Arc<NetControl>,
    config: NetConfig,
    features: u64,
    /// The I/O thread of the active device; it waits on the back end's descriptor, so it
    /// stops before the back end can go.
    worker: Option<Worker>,
    shut_down: bool,
}

impl VirtioNet {
    pub fn new(backend: Box<dyn NetBackend>, config: NetConfig) -> Result<VirtioNet, NetError> {
        let qs = config.queue_size;
        if !(4..=32768).contains(&qs) || !qs.is_power_of_two() {
            return Err(NetError::BadQueueSize(qs));
        }
        let vnet_hdr = backend.vnet_hdr();
        let backend: SharedBackend = Arc::new(Mutex::new(backend));
        Ok(VirtioNet {
            control: Arc::new(NetControl::new(backend.clone(), config.mac)),
            backend,
            vnet_hdr,
            features: features::offered(vnet_hdr),
            config,
            worker: None,
            shut_down: false,
        })
    }

    /// The VMM's handle: link, announce, `info network`. Valid for the device's lifetime,
    /// across resets.
    pub fn control(&self) -> Arc<NetControl> {
        self.control.clone()
    }

    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// `struct virtio_net_config` (virtio 1.2 §5.1.4), little-endian.
    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let nic = self.control.nic();
        let mut c = [0u8; CONFIG_LEN];
        c[0..6].copy_from_slice(&nic.mac.0);
        c[6..8].copy_from_slice(&nic.status().to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        c
    }

    /// Stops the I/O thread, so nothing touches guest memory or the back end.
    fn stop(&mut self) {
        self.control.attach(None);
        self.worker = None;
    }

    /// Tells a back end with a header which offloads the guest takes.
    fn apply_offloads(&self, acked: u64) {
        if self.vnet_hdr {
            // A refusal only means the host keeps sending plain frames.
            let _ = lock(&self.backend).set_offloads(features::guest_offloads(acked));
        }
    }

    fn start(&mut self, act: Activation) -> Result<(), VirtioError> {
        let negotiated = Negotiated::new(act.acked_features);
        let min_buf = if negotiated.guest_gso { MIN_RX_BUF_GSO } else { MIN_RX_BUF };
        let handler = NetHandler {
            mem: act.mem,
            queues: act.queues,
            interrupt: act.interrupt.clone(),
            control: self.control.clone(),
            backend: self.backend.clone(),
            vnet_hdr: self.vnet_hdr,
            negotiated,
            rx_layout: RxLayout {
                mergeable: negotiated.mrg_rxbuf,
                min_buf,
            },
            watch_backend: true,
            rx_buf: NetHandler::buffer(),
            tx_buf: NetHandler::buffer(),
            // Notifies are on in a fresh ring: the first frame turns them off.
            rx_waiting: true,
        };
        let watch = Watch {
            queue: BACKEND_EVENT,
            fd: lock(&self.backend).rx_fd(),
        };
        let worker = Worker::spawn_watching("virtio-net", BACKEND_EVENT + 1, &[watch], handler, act.paused)?;
        self.control.attach(Some(Attachment {
            interrupt: act.interrupt,
            kicker: worker.kicker(),
            negotiated,
        }));
        self.worker = Some(worker);
        Ok(())
    }
}

impl Drop for VirtioNet {
    /// The I/O thread stops before the back end can go (it holds it, and waits on its fd).
    fn drop(&mut self) {
        self.stop();
    }
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn pci_class(&self) -> u32 {
        PCI_CLASS_NETWORK_ETHERNET
    }

    fn name(&self) -> &str {
        "virtio-net"
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![self.config.queue_size; NUM_QUEUES]
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
        for q in [RX_QUEUE, TX_QUEUE] {
            if !act.queues.get(q).is_some_and(|q| lock(q).ready()) {
                return Err(VirtioError::QueueNotReady(q));
            }
        }
        self.apply_offloads(act.acked_features);
        self.start(act)
    }

    fn queue_notify(&mut self, queue: u16) {
        if let Some(w) = &self.worker {
            w.kick(usize::from(queue));
        }
    }

    fn kicker(&self) -> Option<Kicker> {
        self.worker.as_ref().map(Worker::kicker)
    }

    /// Virtio reset: the I/O thread stops, the NIC forgets what the driver set (address,
    /// filter, announce bit, a held frame) and the back end its offloads.
    fn reset(&mut self) {
        self.stop();
        let link_up = self.control.link();
        *self.control.nic() = NicState::after_reset(self.config.mac, link_up);
        self.apply_offloads(0);
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
        self.stop();
    }

    fn state(&self) -> Vec<u8> {
        VirtioNetState {
            features: self.features,
            nic: self.control.nic().clone(),
        }
        .to_bytes()
    }

    fn check_state(&self, bytes: &[u8]) -> Result<(), StateError> {
        self.checked(bytes).map(|_| ())
    }

    fn set_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        *self.control.nic() = self.checked(bytes)?.nic;
        Ok(())
    }
}

impl VirtioNet {
    /// A saved state decoded in full and matched to this NIC.
    fn checked(&self, bytes: &[u8]) -> Result<VirtioNetState, StateError> {
        let s = VirtioNetState::from_bytes(bytes)?;
        // Offloads the guest may have accepted need a back end that carries the header.
        if s.features != self.features {
            return Err(StateError::Invalid {
                name: VirtioNetState::NAME,
                why: format!("saved NIC offered features {:#x}, this one offers {:#x}", s.features, self.features),
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
