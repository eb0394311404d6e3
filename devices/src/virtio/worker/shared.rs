//! What the I/O thread shares with the threads that give it work: the epoll instance it
//! waits in, the eventfd that wakes it, the kick mask, the yield flag and the table of
//! queue notifiers (KVM ioeventfds) it waits on itself.
//!
//! Other threads change the epoll set directly (`epoll_ctl` is safe while the thread waits),
//! so arming a notifier never waits for the I/O thread to finish what it is doing.

use super::{MAX_QUEUES, WorkerError};
use crate::bus::lock;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// What an epoll event stands for (its `data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Token {
    /// The wake eventfd: a kick or a request from the VMM.
    Wake,
    /// Queue `n`'s notifier was signalled.
    Notify(usize),
    /// The descriptor watched for queue `n` is readable.
    Watch(usize),
}

const WAKE: u64 = u64::MAX;
const WATCH: u64 = 1 << 32;

impl Token {
    pub fn encode(self) -> u64 {
        match self {
            Token::Wake => WAKE,
            Token::Notify(q) => q as u64,
            Token::Watch(q) => WATCH | q as u64,
        }
    }

    pub fn decode(data: u64) -> Option<Token> {
        match data {
            WAKE => Some(Token::Wake),
            d if d < MAX_QUEUES as u64 => Some(Token::Notify(d as usize)),
            d if d & WATCH != 0 && d & !WATCH < MAX_QUEUES as u64 => Some(Token::Watch((d & !WATCH) as usize)),
            _ => None,
        }
    }
}

pub(super) fn bit(queue: usize) -> u64 {
    1u64 << queue
}

pub(super) struct Shared {
    pub epoll: Epoll,
    wake: EventFd,
    /// Queues kicked since the thread last looked.
    kicks: AtomicU64,
    /// Raised when the VMM wants the thread (pause or stop).
    pub yield_flag: AtomicBool,
    /// The device's queues (notifiers beyond them are refused).
    queues: usize,
    /// Each queue's notifier, while one is armed.
    notifiers: Mutex<Vec<Option<Arc<EventFd>>>>,
}

impl Shared {
    pub fn new(queues: usize) -> io::Result<Shared> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new(EFD_NONBLOCK)?;
        add(&epoll, wake.as_raw_fd(), Token::Wake)?;
        Ok(Shared {
            epoll,
            wake,
            kicks: AtomicU64::new(0),
            yield_flag: AtomicBool::new(false),
            queues,
            notifiers: Mutex::new(vec![None; queues]),
        })
    }

    pub fn wake(&self) {
        // Only fails when the counter is about to overflow, which still leaves it readable.
        let _ = self.wake.write(1);
    }

    /// Resets the wake eventfd once epoll said it was signalled.
    pub fn woken(&self) {
        let _ = self.wake.read();
    }

    pub fn kick(&self, queue: usize) {
        if queue >= MAX_QUEUES {
            return;
        }
        // Only the kick that sets the bit wakes the thread: a guest hammering the notify
        // register costs one wake-up per batch.
        if self.kicks.fetch_or(bit(queue), Ordering::AcqRel) & bit(queue) == 0 {
            self.wake();
        }
    }

    pub fn take_kicks(&self) -> u64 {
        self.kicks.swap(0, Ordering::AcqRel)
    }

    /// Consumes queue `queue`'s notifier count once epoll said it was signalled (the queue
    /// is visited whether or not the count is still there).
    pub fn take_notify(&self, queue: usize) {
        let fd = lock(&self.notifiers).get(queue).cloned().flatten();
        if let Some(fd) = fd {
            // Non-blocking: a racing `remove_notifier` may have taken the count already.
            let _ = fd.read();
        }
    }

    fn add_notifier(&self, queue: usize, fd: Arc<EventFd>) -> Result<(), WorkerError> {
        if queue >= self.queues {
            return Err(WorkerError::NoQueue(queue));
        }
        set_nonblocking(fd.as_raw_fd()).map_err(|e| WorkerError::Notifier(queue, e))?;
        self.remove_notifier(queue);
        let mut table = lock(&self.notifiers);
        add(&self.epoll, fd.as_raw_fd(), Token::Notify(queue)).map_err(|e| WorkerError::Notifier(queue, e))?;
        table[queue] = Some(fd);
        Ok(())
    }

    fn remove_notifier(&self, queue: usize) {
        let Some(fd) = lock(&self.notifiers).get_mut(queue).and_then(Option::take) else {
            return;
        };
        let _ = self.epoll.ctl(ControlOperation::Delete, fd.as_raw_fd(), EpollEvent::default());
        // A guest notify that reached the eventfd before it was untied from its address
        // (and that the thread has not read) is passed on here.
        if fd.read().is_ok_and(|n| n > 0) {
            self.kick(queue);
        }
    }
}

/// Adds `fd` to `epoll`, level triggered, readable.
pub(super) fn add(epoll: &Epoll, fd: RawFd, token: Token) -> io::Result<()> {
    epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, token.encode()))
}

pub(super) fn delete(epoll: &Epoll, fd: RawFd) -> io::Result<()> {
    epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default())
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and touches no memory; `fd` is open (the caller
    // holds the EventFd).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: F_SETFL takes an int argument and touches no memory; `fd` is open.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Kicks a worker's queues from any thread, and hands it the queues' notifiers; harmless
/// once the worker is gone.
#[derive(Clone)]
pub struct Kicker {
    pub(super) shared: Arc<Shared>,
}

impl Kicker {
    /// Queue `queue` has new buffers (never blocks).
    pub fn kick(&self, queue: usize) {
        self.shared.kick(queue);
    }

    /// Has the I/O thread wait on `fd` itself as queue `queue`'s notifier (a KVM
    /// ioeventfd): each signal is a kick of that queue, with no other thread in between.
    /// Replaces the queue's previous notifier (see [`Kicker::remove_notifier`]). `fd` is
    /// made non-blocking.
    pub fn add_notifier(&self, queue: usize, fd: Arc<EventFd>) -> Result<(), WorkerError> {
        self.shared.add_notifier(queue, fd)
    }

    /// Stops waiting on queue `queue`'s notifier. Call it after untying the eventfd from
    /// its address: a signal the eventfd still holds (a guest notify from just before) is
    /// passed on as a kick, so no notify is lost when a BAR moves.
    pub fn remove_notifier(&self, queue: usize) {
        self.shared.remove_notifier(queue);
    }
}
