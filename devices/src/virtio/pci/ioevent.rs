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
                while wait_fd.read().is_ok() && !wait_stop.load(Ordering::Acquire) {
                    k.kick(q);
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
