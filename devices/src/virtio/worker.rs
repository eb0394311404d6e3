//! A device's I/O thread: woken by queue notifies, parked by pause, ended by stop.
//!
//! vCPU threads only set a bit and (if it was clear) send one message, so a guest hammering
//! the notify register costs one channel message per batch, not per write. Between two
//! descriptor chains the handler polls [`Yield::requested`], so a pause does not wait for a
//! long queue to drain: the request in progress completes, the rest stay in the avail ring
//! (their `next_avail` is not consumed) and are picked up after resume or restore.

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use thiserror::Error;

/// At most this many queues per device (one bit each in the kick mask).
pub const MAX_QUEUES: usize = 64;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("cannot spawn thread '{name}': {source}")]
    Spawn { name: String, source: std::io::Error },
    #[error("{0} queues are more than the {MAX_QUEUES} an I/O thread serves")]
    TooManyQueues(usize),
}

/// Device-specific queue processing, run on the I/O thread.
pub trait QueueHandler: Send + 'static {
    /// Handles what is available on `queue`. Returns false if it stopped early because
    /// `ctl.requested()` became true, so the queue is processed again after the pause.
    fn process_queue(&mut self, queue: usize, ctl: &Yield) -> bool;
}

/// Tells a handler that the VMM wants the thread (pause or stop).
pub struct Yield {
    flag: Arc<AtomicBool>,
}

impl Yield {
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

enum Msg {
    Kick,
    Pause(Sender<()>),
    Resume,
    Stop,
}

/// Kicks a worker's queues from any thread (an ioeventfd listener); harmless once the
/// worker is gone.
#[derive(Clone)]
pub struct Kicker {
    tx: Sender<Msg>,
    kicks: Arc<AtomicU64>,
}

impl Kicker {
    pub fn kick(&self, queue: usize) {
        if queue >= MAX_QUEUES {
            return;
        }
        let bit = 1u64 << queue;
        if self.kicks.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            let _ = self.tx.send(Msg::Kick);
        }
    }
}

/// The handle the device keeps; dropping it stops and joins the thread.
pub struct Worker {
    tx: Sender<Msg>,
    kicks: Arc<AtomicU64>,
    control: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread. It first looks at every queue once (a restored device may have
    /// requests that were notified before the snapshot), unless started `paused`, in which
    /// case that happens on resume.
    pub fn spawn<H: QueueHandler>(name: &str, queues: usize, handler: H, paused: bool) -> Result<Worker, WorkerError> {
        if queues > MAX_QUEUES {
            return Err(WorkerError::TooManyQueues(queues));
        }
        let (tx, rx) = unbounded();
        let kicks = Arc::new(AtomicU64::new(0));
        let control = Arc::new(AtomicBool::new(false));
        let all = if queues == MAX_QUEUES { u64::MAX } else { (1u64 << queues) - 1 };
        let mut run = Run {
            rx,
            kicks: kicks.clone(),
            ctl: Yield { flag: control.clone() },
            pending: all,
            paused,
            handler,
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
            kicks,
            control,
            thread: Some(thread),
        })
    }

    /// Queue `queue` has new buffers (called on a vCPU thread; never blocks).
    pub fn kick(&self, queue: usize) {
        self.kicker().kick(queue);
    }

    /// A handle other threads can kick the queues with (see [`Kicker`]).
    pub fn kicker(&self) -> Kicker {
        Kicker {
            tx: self.tx.clone(),
            kicks: self.kicks.clone(),
        }
    }

    fn control(&self, msg: Msg) {
        // Send first, then raise the flag: the thread clears the flag before draining its
        // channel, so it can never clear the flag and miss the message.
        let _ = self.tx.send(msg);
        self.control.store(true, Ordering::Release);
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

struct Run<H> {
    rx: Receiver<Msg>,
    kicks: Arc<AtomicU64>,
    ctl: Yield,
    /// Queues to (re)visit.
    pending: u64,
    paused: bool,
    handler: H,
}

impl<H: QueueHandler> Run<H> {
    fn main(&mut self) {
        loop {
            let msg = if !self.paused && self.pending != 0 {
                self.ctl.flag.store(false, Ordering::Release);
                self.rx.try_recv().ok()
            } else {
                match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                }
            };
            match msg {
                Some(Msg::Kick) => self.pending |= self.kicks.swap(0, Ordering::AcqRel),
                Some(Msg::Pause(ack)) => {
                    self.paused = true;
                    let _ = ack.send(());
                }
                Some(Msg::Resume) => self.paused = false,
                Some(Msg::Stop) => return,
                None => self.work(),
            }
        }
    }

    fn work(&mut self) {
        let q = self.pending.trailing_zeros() as usize;
        self.pending &= !(1u64 << q);
        if !self.handler.process_queue(q, &self.ctl) {
            self.pending |= 1u64 << q;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Records which queues it saw; "processes" `backlog` items one at a time.
    struct Counting {
        seen: Arc<Mutex<Vec<usize>>>,
        backlog: Arc<AtomicU64>,
    }

    impl QueueHandler for Counting {
        fn process_queue(&mut self, queue: usize, ctl: &Yield) -> bool {
            while self.backlog.load(Ordering::SeqCst) > 0 {
                if ctl.requested() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
                self.backlog.fetch_sub(1, Ordering::SeqCst);
                self.seen.lock().unwrap().push(queue);
            }
            self.seen.lock().unwrap().push(queue);
            true
        }
    }

    fn wait_for(f: impl Fn() -> bool) {
        for _ in 0..2000 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("condition not reached");
    }

    #[test]
    fn kick_pause_resume_stop() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let backlog = Arc::new(AtomicU64::new(0));
        let mut w = Worker::spawn(
            "t",
            2,
            Counting {
                seen: seen.clone(),
                backlog: backlog.clone(),
            },
            true,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(seen.lock().unwrap().is_empty(), "started parked");
        w.resume();
        wait_for(|| seen.lock().unwrap().len() == 2); // the initial scan of both queues
        w.kick(1);
        wait_for(|| seen.lock().unwrap().len() == 3);
        assert_eq!(seen.lock().unwrap()[2], 1);

        // A long backlog is interrupted by pause and finished after resume.
        backlog.store(200, Ordering::SeqCst);
        w.kick(0);
        wait_for(|| backlog.load(Ordering::SeqCst) < 195);
        w.pause();
        let left = backlog.load(Ordering::SeqCst);
        assert!(left > 0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(backlog.load(Ordering::SeqCst), left, "parked means parked");
        w.kick(1); // noted while parked
        w.resume();
        wait_for(|| backlog.load(Ordering::SeqCst) == 0);
        w.stop();
        w.kick(0); // after stop: ignored, no panic
        w.pause();
    }
}
