//! Output plumbing shared by the transports: `\n` to `\r\n` conversion, and
//! a bounded queue drained by a writer thread so that a slow or vanished
//! client never blocks the VMM.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;

/// Appends `text` to `out`, turning every `\n` into `\r\n` as QEMU's
/// monitor does for everything it prints.
pub fn push_crlf(out: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
}

/// What to do when a client does not read and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Mark the queue dead: the connection is closed (sockets, ptys).
    Disconnect,
    /// Drop the data and carry on (stdio, which cannot be disconnected).
    Drop,
}

/// Errors of an output queue.
#[derive(Debug, Error)]
pub enum OutputError {
    /// The client stopped reading and the queue overflowed, or a write
    /// failed: the connection is dead.
    #[error("monitor client is gone")]
    Gone,
}

#[derive(Default)]
struct QueueState {
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    /// No more data will be queued; the writer exits once it is drained.
    closed: bool,
}

struct QueueInner {
    state: Mutex<QueueState>,
    ready: Condvar,
    dead: AtomicBool,
    limit: usize,
    overflow: Overflow,
}

/// A bounded, non-blocking output queue. Cloning gives another handle to
/// the same queue.
#[derive(Clone)]
pub struct OutputQueue {
    inner: Arc<QueueInner>,
}

/// Default hard limit of queued bytes per client.
pub const QUEUE_LIMIT: usize = 16 << 20;

impl OutputQueue {
    pub fn new(limit: usize, overflow: Overflow) -> Self {
        OutputQueue {
            inner: Arc::new(QueueInner {
                state: Mutex::new(QueueState::default()),
                ready: Condvar::new(),
                dead: AtomicBool::new(false),
                limit,
                overflow,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Nothing in the state can be left inconsistent by a panic.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `data`; never blocks.
    pub fn push(&self, data: &[u8]) {
        if data.is_empty() || self.is_dead() {
            return;
        }
        let mut state = self.lock();
        if state.closed {
            return;
        }
        if state.bytes + data.len() > self.inner.limit {
            match self.inner.overflow {
                Overflow::Drop => return,
                Overflow::Disconnect => {
                    drop(state);
                    self.kill();
                    return;
                }
            }
        }
        state.bytes += data.len();
        state.chunks.push_back(data.to_vec());
        self.inner.ready.notify_all();
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.lock().bytes
    }

    /// True once the client is known to be gone.
    pub fn is_dead(&self) -> bool {
        self.inner.dead.load(Ordering::Acquire)
    }

    /// Declares the client gone: queued data is discarded and the writer
    /// stops.
    pub fn kill(&self) {
        self.inner.dead.store(true, Ordering::Release);
        let mut state = self.lock();
        state.chunks.clear();
        state.bytes = 0;
        state.closed = true;
        self.inner.ready.notify_all();
    }

    /// No more data: the writer exits after writing what is queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.ready.notify_all();
    }

    /// Waits up to `timeout` for data; returns everything queued, or `None`
    /// when the queue is closed and empty (or dead).
    fn take(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut state = self.lock();
        if state.chunks.is_empty() && !state.closed {
            state = self
                .inner
                .ready
                .wait_timeout(state, timeout)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        if self.is_dead() || (state.closed && state.chunks.is_empty()) {
            return None;
        }
        let mut data = Vec::with_capacity(state.bytes);
        for chunk in state.chunks.drain(..) {
            data.extend_from_slice(&chunk);
        }
        Some(data)
    }

    /// Marks `n` bytes as written (they stay counted while the writer is
    /// busy with them, so `pending` reflects what the client has not got).
    fn written(&self, n: usize) {
        let mut state = self.lock();
        state.bytes = state.bytes.saturating_sub(n);
    }

    /// The writer loop: takes queued data and hands it to `write_all`
    /// until the queue is closed and drained, or the client is gone. A
    /// failed write kills the queue.
    pub fn run_writer(&self, mut write_all: impl FnMut(&[u8], &AtomicBool) -> io::Result<()>) {
        while let Some(data) = self.take(Duration::from_millis(100)) {
            if data.is_empty() {
                continue;
            }
            if write_all(&data, &self.inner.dead).is_err() {
                self.kill();
                return;
            }
            self.written(data.len());
        }
    }
}

/// A `Write` into an [`OutputQueue`] that converts `\n` to `\r\n`; what a
/// [`crate::Vmm`] gets as its `out`. It never blocks and never fails: once
/// the client is gone, output is discarded.
pub struct QueueWriter<'a> {
    sink: &'a dyn Sink,
}

/// Where a session's bytes go (already in wire form).
pub trait Sink: Send + Sync {
    fn send(&self, bytes: &[u8]);
    /// Bytes not yet delivered, for back-pressure on echo.
    fn pending(&self) -> usize;
    fn is_dead(&self) -> bool;

    /// Waits (at most `timeout`) until everything sent so far has been
    /// written out, so that nothing is lost if the process exits next.
    fn flush(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.pending() > 0 && !self.is_dead() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Sink for OutputQueue {
    fn send(&self, bytes: &[u8]) {
        self.push(bytes);
    }
    fn pending(&self) -> usize {
        OutputQueue::pending(self)
    }
    fn is_dead(&self) -> bool {
        OutputQueue::is_dead(self)
    }
}

impl<'a> QueueWriter<'a> {
    pub fn new(sink: &'a dyn Sink) -> Self {
        QueueWriter { sink }
    }
}

impl Write for QueueWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut wire = Vec::with_capacity(buf.len() + 8);
        push_crlf(&mut wire, buf);
        self.sink.send(&wire);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion() {
        let mut out = Vec::new();
        push_crlf(&mut out, b"a\nb\r\n");
        assert_eq!(out, b"a\r\nb\r\r\n".to_vec());
    }

    #[test]
    fn overflow_policies() {
        let q = OutputQueue::new(10, Overflow::Drop);
        q.push(b"0123456789");
        q.push(b"x");
        assert_eq!(q.pending(), 10);
        assert!(!q.is_dead());
        let q = OutputQueue::new(10, Overflow::Disconnect);
        q.push(b"0123456789x");
        assert!(q.is_dead());
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn writer_drains_then_exits_on_close() {
        let q = OutputQueue::new(QUEUE_LIMIT, Overflow::Disconnect);
        let mut writer = QueueWriter::new(&q);
        writer.write_all(b"hello\n").unwrap();
        q.close();
        let mut got = Vec::new();
        q.run_writer(|data, _| {
            got.extend_from_slice(data);
            Ok(())
        });
        assert_eq!(got, b"hello\r\n".to_vec());
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn failed_write_kills_the_queue() {
        let q = OutputQueue::new(QUEUE_LIMIT, Overflow::Disconnect);
        q.push(b"data");
        q.run_writer(|_, _| Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(q.is_dead());
        q.push(b"more");
        assert_eq!(q.pending(), 0);
    }
}
