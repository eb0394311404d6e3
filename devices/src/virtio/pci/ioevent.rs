//! Queue notifies through ioeventfds: once the device runs, each queue's notify address in
//! BAR0 is tied to an eventfd inside KVM, so a driver's notify costs no exit to the VMM. The
//! eventfds go to the device's I/O thread, which waits on them itself along with everything
//! else ([`Kicker::add_notifier`]). They are untied and taken back before the device stops,
//! and whenever BAR0 may have moved; a notify that reached an eventfd just before is passed
//! on as a kick.

use super::caps::{NOTIFY_MULTIPLIER, NOTIFY_OFFSET};
use crate::virtio::IoEvents;
use crate::virtio::worker::Kicker;
use std::sync::Arc;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

struct Armed {
    queue: usize,
    addr: u64,
    fd: Arc<EventFd>,
}

/// The notifiers of one device (none while it does not run).
#[derive(Default)]
pub struct Notifiers {
    armed: Vec<Armed>,
    /// The I/O thread they were handed to.
    kicker: Option<Kicker>,
}

impl Notifiers {
    /// Ties queue `q`'s notify address (BAR0 at `bar0`) to an eventfd the I/O thread waits
    /// on, for each of the first `queues` queues. Falls back silently (notifies keep exiting
    /// to the VMM) if anything is refused.
    pub fn arm(&mut self, io: &dyn IoEvents, bar0: u64, queues: usize, kicker: Kicker) {
        self.disarm(io);
        for queue in 0..queues {
            let addr = bar0 + NOTIFY_OFFSET + queue as u64 * u64::from(NOTIFY_MULTIPLIER);
            let Ok(fd) = EventFd::new(EFD_NONBLOCK) else { break };
            let fd = Arc::new(fd);
            // The thread waits on it before KVM may signal it.
            if kicker.add_notifier(queue, fd.clone()).is_err() {
                break;
            }
            if io.register(addr, &fd).is_err() {
                kicker.remove_notifier(queue);
                break;
            }
            self.armed.push(Armed { queue, addr, fd });
        }
        self.kicker = Some(kicker);
    }

    /// Unties every notify address and takes the eventfds back from the I/O thread.
    pub fn disarm(&mut self, io: &dyn IoEvents) {
        let kicker = self.kicker.take();
        for a in self.armed.drain(..) {
            let _ = io.unregister(a.addr, &a.fd);
            // After the unregister: a notify KVM put in the eventfd before it becomes a kick.
            if let Some(k) = &kicker {
                k.remove_notifier(a.queue);
            }
        }
    }

    pub fn armed(&self) -> bool {
        !self.armed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::worker::{QueueHandler, Worker, Yield};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    struct Accepting;
    impl IoEvents for Accepting {
        fn register(&self, _: u64, _: &EventFd) -> std::io::Result<()> {
            Ok(())
        }
        fn unregister(&self, _: u64, _: &EventFd) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Count(Arc<AtomicUsize>);
    impl QueueHandler for Count {
        fn process_queue(&mut self, _: usize, _: &Yield) -> bool {
            self.0.fetch_add(1, Ordering::SeqCst);
            true
        }
    }

    /// A guest notify that lands in the eventfd just before a re-arm (a BAR0 or command
    /// register write while the device runs) still reaches the I/O thread: either the
    /// thread reads it, or the disarm finds it in the eventfd and kicks.
    #[test]
    fn a_notify_racing_a_rearm_is_passed_on() {
        let seen = Arc::new(AtomicUsize::new(0));
        let w = Worker::spawn("t", 1, Count(seen.clone()), false).unwrap();
        let mut n = Notifiers::default();
        for round in 0..50 {
            n.arm(&Accepting, 0xc000_0000, 1, w.kicker());
            if round % 2 == 0 {
                // Let the thread block in its wait first (either order must work).
                std::thread::sleep(Duration::from_millis(1));
            }
            // Settle what arming did, then note the count.
            std::thread::sleep(Duration::from_millis(2));
            let before = seen.load(Ordering::SeqCst);
            n.armed[0].fd.write(1).unwrap(); // the guest's notify, as KVM signals it
            n.disarm(&Accepting);
            let end = Instant::now() + Duration::from_secs(5);
            while seen.load(Ordering::SeqCst) == before {
                assert!(Instant::now() < end, "round {round}: the notify was lost");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
