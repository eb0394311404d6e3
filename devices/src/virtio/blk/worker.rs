//! The virtio-blk queue handler run on the device's I/O thread: pop a chain, execute it,
//! put it in the used ring, interrupt the driver if it asked to be. A chain that is not a
//! request, or an available index more than a ring ahead, breaks the device: it sets
//! NEEDS_RESET (with a config interrupt), keeps the reason, and serves nothing more until
//! the driver resets it.

use super::Disk;
use super::request;
use crate::bus::lock;
use crate::virtio::queue::SharedQueue;
use crate::virtio::worker::{QueueHandler, Yield};
use crate::virtio::{GuestMem, VirtioInterrupt};
use std::fmt::Display;
use std::num::Wrapping;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use virtio_queue::{QueueOwnedT, QueueT};

/// Why the device needs a reset, if it does; shared with [`VirtioBlk`](super::VirtioBlk),
/// cleared by a reset.
pub type BrokenReason = Arc<Mutex<Option<String>>>;

pub struct BlkHandler {
    broken: BrokenReason,
    mem: GuestMem,
    queues: Vec<SharedQueue>,
    interrupt: Arc<dyn VirtioInterrupt>,
    disk: Disk,
    /// Bounce buffer between image and guest memory, kept between requests.
    buf: Vec<u8>,
}

impl BlkHandler {
    pub fn new(mem: GuestMem, queues: Vec<SharedQueue>, interrupt: Arc<dyn VirtioInterrupt>, disk: Disk, broken: BrokenReason) -> Self {
        BlkHandler {
            broken,
            mem,
            queues,
            interrupt,
            disk,
            buf: Vec::new(),
        }
    }
}

/// How long the I/O thread keeps watching a busy queue before it sleeps.
const POLL: Duration = Duration::from_micros(50);

impl BlkHandler {
    /// Marks the device broken (once) and tells the driver.
    fn fail(&self, why: impl Display) {
        let mut broken = lock(&self.broken);
        if broken.is_none() {
            *broken = Some(why.to_string());
            drop(broken);
            self.interrupt.set_needs_reset();
        }
    }

    fn is_broken(&self) -> bool {
        lock(&self.broken).is_some()
    }

    /// Spins for up to [`POLL`] until the driver publishes another request (true) or a
    /// pause is asked for (false).
    fn poll_for_more(&self, queue: &SharedQueue, ctl: &Yield) -> bool {
        let until = Instant::now() + POLL;
        while Instant::now() < until && !ctl.requested() {
            {
                let q = lock(queue);
                if q.avail_idx(&self.mem, Ordering::Acquire)
                    .is_ok_and(|idx| idx != Wrapping(q.next_avail()))
                {
                    return true;
                }
            }
            std::hint::spin_loop();
        }
        false
    }
}

impl QueueHandler for BlkHandler {
    fn process_queue(&mut self, q: usize, ctl: &Yield) -> bool {
        let Some(queue) = self.queues.get(q) else {
            return true;
        };
        let mut idle_pass = false;
        loop {
            if self.is_broken() {
                return true;
            }
            {
                let mut qq = lock(queue);
                if !qq.ready() {
                    return true;
                }
                // Only a hint to the driver; failure just means more notifies.
                let _ = qq.disable_notification(&self.mem);
            }
            let mut done = 0usize;
            loop {
                // Checked before taking a chain, so a pause never leaves one half done.
                if ctl.requested() {
                    return false;
                }
                let (chain, size) = {
                    let mut qq = lock(queue);
                    let size = qq.size();
                    match qq.iter(&self.mem) {
                        Ok(mut it) => (it.next(), size),
                        // The driver published more entries than the ring holds.
                        Err(e) => {
                            drop(qq);
                            self.fail(format!("virtio-blk queue {q}: {e}"));
                            return true;
                        }
                    }
                };
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                let used = match request::process(chain, size, &self.mem, &self.disk, &mut self.buf) {
                    Ok(used) => used,
                    Err(why) => {
                        self.fail(why);
                        return true;
                    }
                };
                done += 1;
                let mut qq = lock(queue);
                match qq.add_used(&self.mem, head, used) {
                    Ok(()) => {}
                    // A head index past the ring: nothing to complete, carry on.
                    Err(virtio_queue::Error::InvalidDescriptorIndex) => continue,
                    Err(_) => return true,
                }
                if qq.needs_notification(&self.mem).unwrap_or(true) {
                    drop(qq);
                    self.interrupt.signal_queue(q as u16);
                }
            }
            // A driver that just got a completion often submits the next request at once:
            // watching the ring a little longer, with notifies still off, catches it
            // without the notify's VM exit and this thread's wake-up.
            if done > 0 && self.poll_for_more(queue, ctl) {
                continue;
            }
            // Re-enable notifications, then look again: buffers added in between would
            // otherwise wait for a notify that never comes. Two passes in a row that find
            // nothing although the ring claims more mean it is unreadable: give up.
            let more = matches!(lock(queue).enable_notification(&self.mem), Ok(true));
            if !more || (done == 0 && idle_pass) {
                return true;
            }
            idle_pass = done == 0;
        }
    }
}
