//! The I/O thread's loop: wait in epoll for a wake-up, a notifier or a watched descriptor;
//! take the VMM's requests; visit the queues that have work; wait again.

use super::shared::{Shared, Token, add, bit, delete};
use super::{QueueHandler, Watch, Yield};
use crossbeam_channel::{Receiver, Sender};
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vmm_sys_util::epoll::EpollEvent;

/// Events taken per `epoll_wait` (more stay ready for the next one: level triggered).
const EVENTS: usize = 16;

pub(super) enum Msg {
    Pause(Sender<()>),
    Resume,
    Stop,
}

pub(super) struct Run<H> {
    pub shared: Arc<Shared>,
    pub rx: Receiver<Msg>,
    pub ctl: Yield,
    /// Queues to (re)visit.
    pub pending: u64,
    pub paused: bool,
    pub handler: H,
    pub watches: Vec<Watch>,
    /// The watched descriptors now in the epoll set, by queue bit.
    pub watching: u64,
}

impl<H: QueueHandler> Run<H> {
    pub fn main(&mut self) {
        let mut events = [EpollEvent::default(); EVENTS];
        loop {
            let timeout = if self.paused || self.pending == 0 { -1 } else { 0 };
            self.wait(timeout, &mut events);
            // Cleared before the channel is read: a request sent after this raises it again,
            // and one sent before is read now.
            self.shared.yield_flag.store(false, Ordering::Release);
            if !self.control() {
                self.unwatch_all();
                return;
            }
            self.pending |= self.shared.take_kicks();
            if !self.paused {
                self.work();
            }
            self.sync_watches();
        }
    }

    fn wait(&mut self, timeout: i32, events: &mut [EpollEvent]) {
        let n = match self.shared.epoll.wait(timeout, events) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => 0,
            // Only a bad epoll descriptor or buffer fails this way: do not spin on it.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                0
            }
        };
        for e in &events[..n] {
            match Token::decode(e.data()) {
                Some(Token::Wake) => self.shared.woken(),
                Some(Token::Notify(q)) => {
                    // Read even while paused (it touches no guest memory), so a level-
                    // triggered notifier does not keep waking the thread.
                    self.shared.take_notify(q);
                    self.pending |= bit(q);
                }
                Some(Token::Watch(q)) => self.pending |= bit(q),
                None => {}
            }
        }
    }

    /// Takes the VMM's requests; false on stop.
    fn control(&mut self) -> bool {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Pause(ack) => {
                    // Between two queue visits: the request in progress is finished.
                    self.paused = true;
                    let _ = ack.send(());
                }
                Msg::Resume => self.paused = false,
                Msg::Stop => return false,
            }
        }
        true
    }

    /// Visits each queue with work once, in index order, unless the VMM wants the thread.
    fn work(&mut self) {
        let mut todo = self.pending;
        while todo != 0 {
            if self.ctl.requested() {
                return;
            }
            let q = todo.trailing_zeros() as usize;
            todo &= !bit(q);
            self.pending &= !bit(q);
            if !self.handler.process_queue(q, &self.ctl) {
                self.pending |= bit(q);
            }
        }
    }

    /// Puts the watched descriptors the handler wants (none while paused) in the epoll set
    /// and takes the others out.
    fn sync_watches(&mut self) {
        let want = if self.paused { 0 } else { self.handler.watching() };
        for w in &self.watches {
            let b = bit(w.queue);
            if (want ^ self.watching) & b == 0 {
                continue;
            }
            let done = if want & b != 0 {
                add(&self.shared.epoll, w.fd, Token::Watch(w.queue))
            } else {
                delete(&self.shared.epoll, w.fd)
            };
            // A refused add leaves the descriptor unwatched (it was accepted at spawn, so
            // this takes a descriptor the owner closed); the next sync tries again.
            if done.is_ok() {
                self.watching ^= b;
            }
        }
    }

    /// Leaves no watched descriptor in the epoll set: their owners may close them once the
    /// thread is gone, and the epoll instance lives on in kickers.
    fn unwatch_all(&mut self) {
        for w in &self.watches {
            if self.watching & bit(w.queue) != 0 {
                let _ = delete(&self.shared.epoll, w.fd);
            }
        }
        self.watching = 0;
    }
}
