//! Queue notifies through ioeventfds: once the device runs, each queue's notify address in
//! BAR0 is tied to an eventfd inside KVM, so a driver's notify costs no exit to the VMM; a
//! thread per queue waits on its eventfd and kicks the device's I/O thread. The listeners
//! are torn down before the device stops, and whenever BAR0 may have moved.

use super::caps::{NOTIFY_MULTIPLIER, NOTIFY_OFFSET};
use crate::virtio::IoEvents;
use crate::virtio::worker::Kicker;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use vmm_sys_util::eventfd::EventFd;

struct Listener {
    addr: u64,
    fd: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The listeners of one device (none while it does not run).
#[derive(Default)]
pub struct Notifiers {
    listeners: Vec<Listener>,
}

impl Notifiers {
    /// Ties queue `q`'s notify address (BAR0 at `bar0`) to an eventfd for each of the
    /// first `queues` queues. Falls back silently (notifies keep exiting to the VMM) if
    /// anything is refused.
    pub fn arm(&mut self, io: &dyn IoEvents, bar0: u64, queues: usize, kicker: Kicker) {
        self.disarm(io);
        for q in 0..queues {
            let addr = bar0 + NOTIFY_OFFSET + q as u64 * u64::from(NOTIFY_MULTIPLIER);
            let Ok(fd) = EventFd::new(0) else { break };
            if io.register(addr, &fd).is_err() {
                break;
            }
            let fd = Arc::new(fd);
            let stop = Arc::new(AtomicBool::new(false));
            let (wait_fd, wait_stop, k) = (fd.clone(), stop.clone(), kicker.clone());
            let thread = std::thread::Builder::new().name(format!("virtio-notify{q}")).spawn(move || {
                // Kick on every wake-up, the one that says stop included: the count it
                // read may hold a guest notify from just before the disarm, which only
                // this kick passes on (one kick too many is harmless).
                while wait_fd.read().is_ok() {
                    k.kick(q);
                    if wait_stop.load(Ordering::Acquire) {
                        break;
                    }
                }
            });
            let Ok(thread) = thread else {
                let _ = io.unregister(addr, &fd);
                break;
            };
            self.listeners.push(Listener {
                addr,
                fd,
                stop,
                thread: Some(thread),
            });
        }
    }

    /// Unties every notify address and joins the listener threads.
    pub fn disarm(&mut self, io: &dyn IoEvents) {
        for mut l in self.listeners.drain(..) {
            let _ = io.unregister(l.addr, &l.fd);
            l.stop.store(true, Ordering::Release);
            let _ = l.fd.write(1);
            if let Some(t) = l.thread.take() {
                let _ = t.join();
            }
        }
    }

    pub fn armed(&self) -> bool {
        !self.listeners.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::worker::{QueueHandler, Worker, Yield};
    use std::sync::atomic::AtomicUsize;
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
    /// register write while the device runs) still reaches the I/O thread: the listener's
    /// last read returns it together with the stop signal.
    #[test]
    fn a_notify_racing_a_rearm_is_passed_on() {
        let seen = Arc::new(AtomicUsize::new(0));
        let w = Worker::spawn("t", 1, Count(seen.clone()), false).unwrap();
        let mut n = Notifiers::default();
        for round in 0..50 {
            n.arm(&Accepting, 0xc000_0000, 1, w.kicker());
            if round % 2 == 0 {
                // Let the listener block in its read first (either order must work).
                std::thread::sleep(Duration::from_millis(1));
            }
            // Settle what arming did, then note the count.
            std::thread::sleep(Duration::from_millis(2));
            let before = seen.load(Ordering::SeqCst);
            n.listeners[0].fd.write(1).unwrap(); // the guest's notify, as KVM signals it
            n.disarm(&Accepting);
            let end = Instant::now() + Duration::from_secs(5);
            while seen.load(Ordering::SeqCst) == before {
                assert!(Instant::now() < end, "round {round}: the notify was lost");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
