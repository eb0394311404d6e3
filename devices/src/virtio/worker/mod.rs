//! A device's I/O thread: one thread that waits, in epoll, on everything that gives it work,
//! so an event costs one wake-up and no hand-over between threads:
//! - a wake-up eventfd, written by a kick (a notify that exited to a vCPU thread, a link
//!   change) and by the VMM's pause, resume and stop;
//! - the queues' notifiers: the eventfds KVM signals for notifies that never leave the
//!   kernel (ioeventfds), handed over by the transport ([`Kicker::add_notifier`]);
//! - descriptors the device watches for pseudo queues ([`Watch`]; virtio-net's back end),
//!   level triggered, in the epoll set only while the handler wants them
//!   ([`QueueHandler::watching`]) and the thread is not paused.
//!
//! A kick only sets a bit in a mask and, if it was clear, writes the eventfd: a guest
//! hammering the notify register costs one wake-up per batch. Between two descriptor chains
//! the handler polls [`Yield::requested`], so a pause does not wait for a long queue to
//! drain: the request in progress completes, the rest stay in the avail ring (their
//! `next_avail` is not consumed) and are picked up after resume or restore. While paused the
//! thread still reads its notifiers (noting their queues for later), never guest memory.

mod run;
mod shared;
#[cfg(test)]
mod tests;

use crossbeam_channel::{Sender, bounded, unbounded};
use run::{Msg, Run};
use shared::Shared;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use thiserror::Error;

pub use shared::Kicker;

/// At most this many queues per device, pseudo queues included (one bit each in the masks).
pub const MAX_QUEUES: usize = 64;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("cannot spawn thread '{name}': {source}")]
    Spawn { name: String, source: std::io::Error },
    #[error("{0} queues are more than the {MAX_QUEUES} an I/O thread serves")]
    TooManyQueues(usize),
    #[error("cannot set up the I/O thread's epoll instance: {0}")]
    Epoll(std::io::Error),
    #[error("cannot watch descriptor {fd} for queue {queue}: {source}")]
    Watch { queue: usize, fd: RawFd, source: std::io::Error },
    #[error("queue {0} is not one of the device's")]
    NoQueue(usize),
    #[error("cannot wait on queue {0}'s notifier: {1}")]
    Notifier(usize, std::io::Error),
}

/// Device-specific queue processing, run on the I/O thread.
pub trait QueueHandler: Send + 'static {
    /// Handles what is available on `queue`. Returns false if it stopped early because
    /// `ctl.requested()` became true, so the queue is processed again after the pause.
    fn process_queue(&mut self, queue: usize, ctl: &Yield) -> bool;

    /// The watched descriptors (by their queue's bit) the thread should wait on now; asked
    /// after each round of visits. A watched descriptor is level triggered: while it is
    /// readable and watched, its queue is visited again and again, so a handler that cannot
    /// drain it (no room in the guest) stops watching it until another queue's work lets it.
    fn watching(&self) -> u64 {
        u64::MAX
    }
}

/// A descriptor the thread waits on for the pseudo queue `queue` (one past the device's
/// virtio queues, below the count given to [`Worker::spawn_watching`]): when it is readable
/// the queue is visited. It must stay open until the worker is stopped.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    pub queue: usize,
    pub fd: RawFd,
}

/// Tells a handler that the VMM wants the thread (pause or stop).
pub struct Yield {
    shared: Arc<Shared>,
}

impl Yield {
    pub fn requested(&self) -> bool {
        self.shared.yield_flag.load(Ordering::Acquire)
    }

    /// One that is never raised, to drive a handler without its thread.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn never() -> Yield {
        Yield {
            shared: Arc::new(Shared::new(0).expect("an epoll instance and an eventfd")),
        }
    }
}

/// The handle the device keeps; dropping it stops and joins the thread.
pub struct Worker {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread. It first looks at every queue once (a restored device may have
    /// requests that were notified before the snapshot), unless started `paused`, in which
    /// case that happens on resume.
    pub fn spawn<H: QueueHandler>(name: &str, queues: usize, handler: H, paused: bool) -> Result<Worker, WorkerError> {
        Worker::spawn_watching(name, queues, &[], handler, paused)
    }

    /// [`Worker::spawn`], also waiting on `watches` (watched from the start, as far as the
    /// handler wants them).
    pub fn spawn_watching<H: QueueHandler>(
        name: &str,
        queues: usize,
        watches: &[Watch],
        handler: H,
        paused: bool,
    ) -> Result<Worker, WorkerError> {
        if queues > MAX_QUEUES {
            return Err(WorkerError::TooManyQueues(queues));
        }
        let shared = Arc::new(Shared::new(queues).map_err(WorkerError::Epoll)?);
        let mut watching = 0;
        for w in watches {
            if w.queue >= queues {
                return Err(WorkerError::NoQueue(w.queue));
            }
            // Added now, so a descriptor epoll cannot watch is refused here; the thread
            // takes out what it does not want before it first waits.
            shared::add(&shared.epoll, w.fd, shared::Token::Watch(w.queue)).map_err(|source| WorkerError::Watch {
                queue: w.queue,
                fd: w.fd,
                source,
            })?;
            watching |= shared::bit(w.queue);
        }
        let (tx, rx) = unbounded();
        let all = if queues == MAX_QUEUES { u64::MAX } else { (1u64 << queues) - 1 };
        let mut run = Run {
            shared: shared.clone(),
            rx,
            ctl: Yield { shared: shared.clone() },
            pending: all,
            paused,
            handler,
            watches: watches.to_vec(),
            watching,
        };
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run.main())
            .map_err(|source| WorkerError::Spawn {
                name: name.to_string(),
                source,
            })?;
        Ok(Worker {
            tx,
            shared,
            thread: Some(thread),
        })
    }

    /// Queue `queue` has new buffers (called on a vCPU thread; never blocks).
    pub fn kick(&self, queue: usize) {
        self.shared.kick(queue);
    }

    /// A handle other threads can kick the queues with and hand notifiers to (see
    /// [`Kicker`]).
    pub fn kicker(&self) -> Kicker {
        Kicker {
            shared: self.shared.clone(),
        }
    }

    fn control(&self, msg: Msg) {
        // Send, then raise the flag, then wake: the thread clears the flag before reading
        // its channel, so it can never clear the flag and miss the message.
        let _ = self.tx.send(msg);
        self.shared.yield_flag.store(true, Ordering::Release);
        self.shared.wake();
    }

    /// Returns once the thread has finished the request in progress and parked.
    pub fn pause(&self) {
        let (ack_tx, ack_rx) = bounded(1);
        self.control(Msg::Pause(ack_tx));
        // An error means the thread is gone, which is as quiet as parked.
        let _ = ack_rx.recv();
    }

    pub fn resume(&self) {
        self.control(Msg::Resume);
    }

    /// Stops and joins the thread.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.control(Msg::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}
