//! The queue handlers the fuzz target drives: virtio-blk's over a raw disk in memory, and
//! virtio-net's receive, transmit and control queues over a back end in memory. Each gets
//! its real handler, called on the test's thread instead of the device's I/O thread.

use super::layout::{Layout, MAX_QUEUE, Ring, Target};
use crate::block::BlockBackend;
use crate::block::dirty::DirtyMap;
use crate::block::fuzz::MemStorage;
use crate::block::raw::RawImage;
use crate::bus::lock;
use crate::net::{MAX_FRAME, NetBackend};
use crate::virtio::blk::worker::BlkHandler;
use crate::virtio::blk::{Disk, ID_BYTES};
use crate::virtio::net::features::Negotiated;
use crate::virtio::net::handler::NetHandler;
use crate::virtio::net::rx::{MIN_RX_BUF, RxLayout};
use crate::virtio::net::{CTRL_QUEUE, MacAddr, NetControl, RX_QUEUE, TX_QUEUE};
use crate::virtio::queue::SharedQueue;
use crate::virtio::worker::{QueueHandler, Yield};
use crate::virtio::{GuestMem, VirtioInterrupt};
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueT};

const DISK_BYTES: usize = 64 << 10;

/// Remembers whether the device asked for a reset.
#[derive(Default)]
struct Irq {
    needs_reset: AtomicBool,
}

impl VirtioInterrupt for Irq {
    fn signal_queue(&self, _queue: u16) {}
    fn signal_config(&self) {}
    fn set_needs_reset(&self) {
        self.needs_reset.store(true, Ordering::Release);
    }
}

/// A back end holding a few frames to receive; what is sent goes nowhere.
struct MemNet(Vec<Vec<u8>>);

impl NetBackend for MemNet {
    fn vnet_hdr(&self) -> bool {
        false
    }
    fn send(&mut self, frame: &[IoSlice<'_>]) -> io::Result<()> {
        let len: usize = frame.iter().map(|s| s.len()).sum();
        assert!(len <= MAX_FRAME, "sent a frame of {len} bytes");
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let frame = self.0.pop().ok_or(io::ErrorKind::WouldBlock)?;
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(n)
    }
    fn rx_fd(&self) -> RawFd {
        -1
    }
    fn info(&self) -> String {
        "fuzz".into()
    }
}

/// One device with one of its queues set up as the input says.
pub struct Device {
    pub target: Target,
    mem: GuestMem,
    queue: usize,
    queues: Vec<SharedQueue>,
    handler: Box<dyn QueueHandler>,
    irq: Arc<Irq>,
    disk: Option<MemStorage>,
    ctl: Yield,
}

fn queue(l: &Layout) -> Queue {
    let mut q = Queue::new(MAX_QUEUE).expect("a valid maximum size");
    q.set_size(l.size);
    q.set_desc_table_address(Some(l.desc as u32), Some((l.desc >> 32) as u32));
    q.set_avail_ring_address(Some(l.avail as u32), Some((l.avail >> 32) as u32));
    q.set_used_ring_address(Some(l.used as u32), Some((l.used >> 32) as u32));
    q.set_event_idx(l.event_idx);
    q.set_ready(true);
    q
}

fn blk(mem: &GuestMem, queues: Vec<SharedQueue>, irq: Arc<Irq>) -> (Box<dyn QueueHandler>, MemStorage) {
    let file = MemStorage(Arc::new(Mutex::new(vec![0x5a; DISK_BYTES])));
    let raw = RawImage::new(Box::new(file.clone()), Path::new("fuzz.raw"), false).expect("a raw image in memory");
    let backend: Box<dyn BlockBackend> = Box::new(raw);
    let disk = Disk {
        backend: Arc::new(Mutex::new(backend)),
        dirty: Arc::new(DirtyMap::new(DISK_BYTES as u64)),
        capacity: DISK_BYTES as u64 / 512,
        read_only: false,
        discard: true,
        write_zeroes: true,
        serial: [b's'; ID_BYTES],
        stats: Arc::default(),
    };
    let broken = Arc::default();
    (Box::new(BlkHandler::new(mem.clone(), queues, irq, disk, broken)), file)
}

fn net(l: &Layout, mem: &GuestMem, queues: Vec<SharedQueue>, irq: Arc<Irq>) -> Box<dyn QueueHandler> {
    let frames = l.frames.iter().map(|&n| l.filler_bytes(n)).collect();
    let backend: Arc<Mutex<Box<dyn NetBackend>>> = Arc::new(Mutex::new(Box::new(MemNet(frames))));
    let control = Arc::new(NetControl::new(backend.clone(), MacAddr([2, 0, 0, 0, 0, 1])));
    let negotiated = Negotiated {
        mrg_rxbuf: l.event_idx,
        guest_gso: false,
        ctrl_rx: true,
        ctrl_rx_extra: true,
        ctrl_mac_addr: true,
        guest_announce: true,
    };
    Box::new(NetHandler {
        mem: mem.clone(),
        queues,
        interrupt: irq,
        control,
        backend,
        vnet_hdr: false,
        negotiated,
        rx_layout: RxLayout {
            mergeable: negotiated.mrg_rxbuf,
            min_buf: MIN_RX_BUF,
        },
        watch_backend: true,
        rx_buf: NetHandler::buffer(),
        tx_buf: NetHandler::buffer(),
        rx_waiting: true,
    })
}

impl Device {
    pub fn new(l: &Layout, mem: &GuestMem) -> Device {
        let irq = Arc::new(Irq::default());
        let (queue_index, count) = match l.device {
            Target::Blk => (0, 1),
            Target::NetRx => (RX_QUEUE, 3),
            Target::NetTx => (TX_QUEUE, 3),
            Target::NetCtrl => (CTRL_QUEUE, 3),
        };
        let queues: Vec<SharedQueue> = (0..count)
            .map(|i| {
                let q = if i == queue_index {
                    queue(l)
                } else {
                    Queue::new(MAX_QUEUE).expect("a valid maximum size")
                };
                Arc::new(Mutex::new(q))
            })
            .collect();
        let (handler, disk) = match l.device {
            Target::Blk => {
                let (h, d) = blk(mem, queues.clone(), irq.clone());
                (h, Some(d))
            }
            _ => (net(l, mem, queues.clone(), irq.clone()), None),
        };
        Device {
            target: l.device,
            mem: mem.clone(),
            queue: queue_index,
            queues,
            handler,
            irq,
            disk,
            ctl: Yield::never(),
        }
    }

    /// What the transport checks before it starts a device (its rings lie in RAM).
    pub fn queue_valid(&self) -> bool {
        lock(&self.queues[self.queue]).is_valid(&self.mem)
    }

    /// The ring as the device took it.
    pub fn ring(&self) -> Ring {
        let q = lock(&self.queues[self.queue]);
        Ring {
            desc: q.desc_table(),
            used: q.used_ring(),
            size: q.size(),
        }
    }

    /// The driver notifies the queue.
    pub fn notify(&mut self) {
        self.handler.process_queue(self.queue, &self.ctl);
    }

    pub fn broken(&self) -> bool {
        self.irq.needs_reset.load(Ordering::Acquire)
    }

    /// How many buffers the device put in the used ring.
    pub fn used_count(&self) -> u16 {
        lock(&self.queues[self.queue]).next_used()
    }

    pub fn check_disk(&self) {
        if let Some(d) = &self.disk {
            assert_eq!(lock(&d.0).len(), DISK_BYTES, "the disk changed size");
        }
    }
}
