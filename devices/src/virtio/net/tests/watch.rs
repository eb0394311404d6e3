//! The I/O thread's view of the back end, driven without the thread: watched while the
//! guest has room, not watched while a frame waits for buffers or the device is broken.

use super::*;
use crate::virtio::VirtioInterrupt;
use crate::virtio::net::handler::NetHandler;
use crate::virtio::net::rx::RxLayout;
use crate::virtio::queue::SharedQueue;
use crate::virtio::worker::{QueueHandler, Yield};
use virtio_queue::{Queue, QueueT};

struct NoIrq;
impl VirtioInterrupt for NoIrq {
    fn signal_queue(&self, _: u16) {}
    fn signal_config(&self) {}
    fn set_needs_reset(&self) {}
}

/// A ready queue on `ring`, as the driver set it up.
fn queue(ring: &Ring) -> SharedQueue {
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(ring.desc as u32), Some((ring.desc >> 32) as u32));
    q.set_avail_ring_address(Some(ring.avail as u32), Some((ring.avail >> 32) as u32));
    q.set_used_ring_address(Some(ring.used as u32), Some((ring.used >> 32) as u32));
    q.set_ready(true);
    Arc::new(Mutex::new(q))
}

fn handler(mem: &GuestMem, rx: &Ring) -> (NetHandler, Wire) {
    let (wire, backend) = Wire::new(false);
    (handler_on(mem, rx, Box::new(backend)), wire)
}

fn handler_on(mem: &GuestMem, rx: &Ring, backend: Box<dyn NetBackend>) -> NetHandler {
    let backend: SharedBackend = Arc::new(Mutex::new(backend));
    let queues = vec![queue(rx), queue(&Ring::new(TX_RING, QSIZE)), queue(&Ring::new(CTRL_RING, QSIZE))];
    NetHandler {
        mem: mem.clone(),
        queues,
        interrupt: Arc::new(NoIrq),
        control: Arc::new(NetControl::new(backend.clone(), OWN)),
        backend,
        vnet_hdr: false,
        negotiated: features::Negotiated::default(),
        rx_layout: RxLayout {
            mergeable: false,
            min_buf: rx::MIN_RX_BUF,
        },
        watch_backend: true,
        rx_buf: NetHandler::buffer(),
        tx_buf: NetHandler::buffer(),
        rx_waiting: true,
    }
}

const BACKEND: u64 = 1 << BACKEND_EVENT;

#[test]
fn the_back_end_is_watched_only_while_frames_can_go_somewhere() {
    let mem = guest_memory();
    let mut rx = Ring::new(RX_RING, QSIZE);
    let (mut h, wire) = handler(&mem, &rx);
    let ctl = Yield::never();
    assert_eq!(h.watching(), BACKEND);
    // A frame and no buffer: it waits in the NIC, and the back end is left alone.
    wire.inject(&frame(OWN, 60, 1));
    wire.inject(&frame(OWN, 60, 2));
    assert!(h.process_queue(BACKEND_EVENT, &ctl));
    assert_eq!(h.watching(), 0);
    // The rx notify: both frames go in, the back end is empty and watched again.
    rx.push(&mem, &[(RX_BUFS, 1526, true)]);
    rx.push(&mem, &[(RX_BUFS + 0x1000, 1526, true)]);
    assert!(h.process_queue(RX_QUEUE, &ctl));
    assert_eq!(rx.used_idx(&mem), 2);
    assert_eq!(h.watching(), BACKEND);
    // Transmit and control work leave it as it is.
    assert!(h.process_queue(TX_QUEUE, &ctl));
    assert_eq!(h.watching(), BACKEND);
    // A broken device receives nothing until reset: not watched.
    h.control.nic().broken = Some("test".into());
    wire.inject(&frame(OWN, 60, 3));
    assert!(h.process_queue(BACKEND_EVENT, &ctl));
    assert_eq!(h.watching(), 0);
}

/// A back end whose `recv` fails (a tap whose interface was deleted).
struct Failing;
impl NetBackend for Failing {
    fn vnet_hdr(&self) -> bool {
        false
    }
    fn send(&mut self, _: &[IoSlice<'_>]) -> std::io::Result<()> {
        Ok(())
    }
    fn recv(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from_raw_os_error(libc::EIO))
    }
    fn rx_fd(&self) -> RawFd {
        -1
    }
    fn info(&self) -> String {
        "failing".into()
    }
}

#[test]
fn a_failing_back_end_is_left_alone_until_the_next_rx_notify() {
    let mem = guest_memory();
    let mut rx = Ring::new(RX_RING, QSIZE);
    let mut h = handler_on(&mem, &rx, Box::new(Failing));
    let ctl = Yield::never();
    rx.push(&mem, &[(RX_BUFS, 1526, true)]);
    assert!(h.process_queue(BACKEND_EVENT, &ctl));
    assert_eq!(h.watching(), 0, "a failing back end is not polled in a loop");
    assert!(h.process_queue(RX_QUEUE, &ctl));
    assert_eq!(h.watching(), 0);
    assert_eq!(rx.used_idx(&mem), 0);
}
