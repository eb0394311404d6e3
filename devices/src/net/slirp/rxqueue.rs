//! Frames libslirp emitted for the guest, waiting for the NIC: a bounded queue (a full queue
//! drops the frame, as a busy link would) whose eventfd is readable exactly while a frame is
//! queued, the level-triggered [`NetBackend::rx_fd`](crate::net::NetBackend::rx_fd).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Frames queued for the guest before new ones are dropped (about 1.5 MB at slirp's MTU).
pub const RX_QUEUE_FRAMES: usize = 1024;

pub struct RxQueue {
    frames: Mutex<VecDeque<Vec<u8>>>,
    /// Counter 1 while `frames` is not empty, 0 otherwise (changed under the `frames` lock).
    ready: EventFd,
    capacity: usize,
    dropped: AtomicU64,
}

impl RxQueue {
    pub fn new(capacity: usize) -> io::Result<Self> {
        Ok(RxQueue {
            frames: Mutex::new(VecDeque::new()),
            ready: EventFd::new(EFD_NONBLOCK)?,
            capacity,
            dropped: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
        // A panic while holding the lock cannot leave the queue half-changed.
        self.frames.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a copy of `frame`; false (and the frame dropped) when the queue is full.
    pub fn push(&self, frame: &[u8]) -> bool {
        let mut frames = self.lock();
        if frames.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        frames.push_back(frame.to_vec());
        if frames.len() == 1 {
            // Cannot fail: the counter goes from 0 to 1.
            let _ = self.ready.write(1);
        }
        true
    }

    /// Takes the oldest frame into `buf` (cut to its length); `WouldBlock` when empty.
    pub fn pop(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut frames = self.lock();
        let frame = frames.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
        if frames.is_empty() {
            // Resets the counter to 0: the descriptor stops being readable.
            let _ = self.ready.read();
        }
        let len = frame.len().min(buf.len());
        buf[..len].copy_from_slice(&frame[..len]);
        Ok(len)
    }

    /// The descriptor readable while a frame is queued.
    pub fn fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// Frames dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(q: &RxQueue) -> bool {
        let mut fd = libc::pollfd {
            fd: q.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call; zero timeout.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        n == 1 && fd.revents & libc::POLLIN != 0
    }

    #[test]
    fn readable_exactly_while_frames_are_queued() {
        let q = RxQueue::new(4).unwrap();
        let mut buf = [0u8; 8];
        assert!(!readable(&q));
        assert_eq!(q.pop(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(q.push(b"one") && q.push(b"two"));
        assert!(readable(&q));
        assert_eq!(q.pop(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert!(readable(&q), "still one frame queued");
        assert_eq!(q.pop(&mut buf).unwrap(), 3);
        assert!(!readable(&q));
    }

    #[test]
    fn full_queue_drops_and_long_frames_are_cut() {
        let q = RxQueue::new(2).unwrap();
        assert!(q.push(b"0123456789") && q.push(b"b"));
        assert!(!q.push(b"c"));
        assert_eq!(q.dropped(), 1);
        let mut small = [0u8; 4];
        assert_eq!(q.pop(&mut small).unwrap(), 4);
        assert_eq!(&small, b"0123");
        assert!(q.push(b"d"));
    }
}
