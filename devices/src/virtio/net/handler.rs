//! The virtio-net I/O thread's work: receive (on an rx notify or when the back end has a
//! frame), transmit, control commands. Anything broken in what the driver gave stops the
//! device: NEEDS_RESET, a config interrupt, and nothing more is done until reset.

use super::control::NetControl;
use super::features::Negotiated;
use super::rx::{self, Delivery, RxLayout};
use super::{BACKEND_EVENT, CTRL_QUEUE, RX_QUEUE, SharedBackend, TX_QUEUE, ctrl, tx};
use crate::bus::lock;
use crate::net::{MAX_FRAME, VNET_HDR_LEN};
use crate::virtio::queue::SharedQueue;
use crate::virtio::worker::{QueueHandler, Yield};
use crate::virtio::{GuestMem, VirtioInterrupt};
use std::fmt::Display;
use std::io::{ErrorKind, IoSlice};
use std::sync::Arc;
use virtio_queue::{QueueOwnedT, QueueT};

pub struct NetHandler {
    pub mem: GuestMem,
    pub queues: Vec<SharedQueue>,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    pub control: Arc<NetControl>,
    pub backend: SharedBackend,
    /// Frames to and from the back end carry the virtio-net header.
    pub vnet_hdr: bool,
    pub negotiated: Negotiated,
    pub rx_layout: RxLayout,
    /// The I/O thread waits on the back end's `rx_fd`: on until the guest has no room for
    /// a frame (or the back end fails), on again once the back end said `WouldBlock`.
    pub watch_backend: bool,
    /// One frame, header first; without a back-end header the NIC writes a zeroed one.
    pub rx_buf: Vec<u8>,
    pub tx_buf: Vec<u8>,
    /// Rx notifies are on: the device waits for receive buffers.
    pub rx_waiting: bool,
}

/// What to do with the frame in `rx_buf` next.
enum Next {
    Frame(usize),
    /// Too short to be one: dropped, look at the next.
    Runt,
    /// Nothing more for now.
    Idle,
}

/// What a queue pass returns: true when done, false when it stopped for a pause.
type Done = bool;

impl NetHandler {
    /// Buffers a frame size for the I/O thread.
    pub fn buffer() -> Vec<u8> {
        vec![0; MAX_FRAME]
    }

    /// Marks the device broken (once) and tells the driver.
    fn fail(&self, why: impl Display) {
        let mut nic = self.control.nic();
        if nic.broken.is_none() {
            nic.broken = Some(why.to_string());
            nic.pending_rx = None;
            drop(nic);
            self.interrupt.set_needs_reset();
        }
    }

    fn broken(&self) -> bool {
        self.control.nic().broken.is_some()
    }

    /// Receives until the back end is empty, the guest has no room, or a pause is asked for.
    fn receive(&mut self, ctl: &Yield) -> Done {
        loop {
            if ctl.requested() {
                return false;
            }
            let len = match self.next_frame() {
                Next::Frame(len) => len,
                Next::Runt => continue,
                Next::Idle => return true,
            };
            {
                let nic = self.control.nic();
                if nic.broken.is_some() {
                    return true;
                }
                if !nic.link_up || !nic.filter.accepts(nic.mac, &self.rx_buf[VNET_HDR_LEN..len]) {
                    continue;
                }
            }
            if !self.put_frame(len) {
                return true;
            }
        }
    }

    /// The frame held for the guest, else one from the back end (watching it again once
    /// it is empty).
    fn next_frame(&mut self) -> Next {
        if let Some(frame) = self.control.nic().pending_rx.take() {
            self.rx_buf[..frame.len()].copy_from_slice(&frame);
            return Next::Frame(frame.len());
        }
        let offset = if self.vnet_hdr { 0 } else { VNET_HDR_LEN };
        let got = lock(&self.backend).recv(&mut self.rx_buf[offset..]);
        match got {
            Ok(n) if offset + n < VNET_HDR_LEN => Next::Runt,
            Ok(n) => {
                self.rx_buf[..offset].fill(0);
                Next::Frame(offset + n)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Next::Runt,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.watch_backend = true;
                Next::Idle
            }
            // A failing back end is left alone until the next rx notify or link change,
            // rather than polled in a loop.
            Err(_) => {
                self.watch_backend = false;
                Next::Idle
            }
        }
    }

    /// Hands the frame in `rx_buf[..len]` to the guest; false if it has to wait (kept as
    /// the pending frame) or the device broke.
    fn put_frame(&mut self, len: usize) -> bool {
        let result = {
            let mut q = lock(&self.queues[RX_QUEUE]);
            if self.rx_waiting {
                let _ = q.disable_notification(&self.mem);
                self.rx_waiting = false;
            }
            rx::deliver(&self.mem, &mut q, &mut self.rx_buf[..len], self.rx_layout)
        };
        match result {
            Ok(Delivery::Delivered { interrupt }) => {
                if interrupt {
                    self.interrupt.signal_queue(RX_QUEUE as u16);
                }
                true
            }
            // The driver can never take it (e.g. a jumbo frame for 1526-byte buffers).
            Ok(Delivery::TooBig) => true,
            Ok(Delivery::NoRoom) => {
                let mut nic = self.control.nic();
                // Unless the link went down meanwhile, which loses the frame.
                if nic.link_up {
                    nic.pending_rx = Some(self.rx_buf[..len].to_vec());
                }
                drop(nic);
                // The rx notify brings the thread back: until then frames wait in the back
                // end, which is not watched (it is level triggered).
                self.rx_waiting = true;
                self.watch_backend = false;
                false
            }
            Err(e) => {
                self.fail(format!("virtio-net rx: {e}"));
                self.watch_backend = false;
                false
            }
        }
    }

    /// Sends `tx_buf[..len]` (header first) unless the link is down.
    fn send(&self, len: usize) {
        if !self.control.nic().link_up {
            return;
        }
        let start = if self.vnet_hdr { 0 } else { VNET_HDR_LEN };
        // A back end that cannot take the frame drops it, as a wire would.
        let _ = lock(&self.backend).send(&[IoSlice::new(&self.tx_buf[start..len])]);
    }

    /// Runs `one` on each available chain of `q` until the ring is empty, completing each
    /// with the used length it returns; `one` returning None means the device broke.
    fn drain(&mut self, q: usize, ctl: &Yield, one: fn(&mut Self, virtio_queue::DescriptorChain<&GuestMem>, u16) -> Option<u32>) -> Done {
        let queue = self.queues[q].clone();
        let mem = self.mem.clone();
        loop {
            {
                let mut qq = lock(&queue);
                if !qq.ready() {
                    return true;
                }
                let _ = qq.disable_notification(&mem);
            }
            loop {
                if ctl.requested() {
                    return false;
                }
                let (chain, size) = {
                    let mut qq = lock(&queue);
                    let size = qq.size();
                    match qq.iter(&mem) {
                        Ok(mut it) => (it.next(), size),
                        Err(e) => {
                            self.fail(format!("virtio-net queue {q}: {e}"));
                            return true;
                        }
                    }
                };
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                let Some(used) = one(self, chain, size) else { return true };
                let mut qq = lock(&queue);
                if let Err(e) = qq.add_used(&mem, head, used) {
                    drop(qq);
                    self.fail(format!("virtio-net queue {q}: {e}"));
                    return true;
                }
                if qq.needs_notification(&mem).unwrap_or(true) {
                    drop(qq);
                    self.interrupt.signal_queue(q as u16);
                }
            }
            // Buffers added while notifies were off would otherwise wait for a notify
            // that never comes: look again after turning them on.
            if !matches!(lock(&queue).enable_notification(&mem), Ok(true)) {
                return true;
            }
        }
    }

    fn transmit_one(&mut self, chain: virtio_queue::DescriptorChain<&GuestMem>, size: u16) -> Option<u32> {
        match tx::read_frame(chain.memory(), chain.clone(), size, &mut self.tx_buf) {
            Ok(len) => {
                self.send(len);
                Some(0)
            }
            Err(e) => {
                self.fail(format!("virtio-net tx: {e}"));
                None
            }
        }
    }

    fn control_one(&mut self, chain: virtio_queue::DescriptorChain<&GuestMem>, size: u16) -> Option<u32> {
        let result = {
            let mut nic = self.control.nic();
            ctrl::process(chain.memory(), chain.clone(), size, &mut nic, self.negotiated)
        };
        match result {
            Ok(used) => Some(used),
            Err(e) => {
                self.fail(format!("virtio-net ctrl: {e}"));
                None
            }
        }
    }
}

impl QueueHandler for NetHandler {
    fn process_queue(&mut self, queue: usize, ctl: &Yield) -> bool {
        if self.broken() {
            // Nothing is received until reset: the back end's frames wait there.
            self.watch_backend = false;
            return true;
        }
        match queue {
            RX_QUEUE | BACKEND_EVENT => self.receive(ctl),
            TX_QUEUE => self.drain(TX_QUEUE, ctl, Self::transmit_one),
            CTRL_QUEUE => self.drain(CTRL_QUEUE, ctl, Self::control_one),
            _ => true,
        }
    }

    fn watching(&self) -> u64 {
        if self.watch_backend { 1 << BACKEND_EVENT } else { 0 }
    }
}
