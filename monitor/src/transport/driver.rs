//! Runs a [`Session`] against the VMM for one client: input backlog,
//! back-pressure on echo, command execution, pending commands, and the
//! read loop shared by the fd-based transports.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::command::Command;
use crate::output::{OutputQueue, Overflow, QUEUE_LIMIT, QueueWriter, Sink};
use crate::session::{Session, SessionStatus};
use crate::vmm::{Outcome, Pending, SharedVmm};

use super::fd::{self, Ready};
use super::telnet::TelnetFilter;

/// Input held while a command runs, at most.
const MAX_BACKLOG: usize = 64 * 1024;
/// Input bytes handed to the session at a time, so that echo output can be
/// throttled (a long line's redraws grow quadratically).
const FEED_CHUNK: usize = 64;
/// Queued output above which no more input is processed until the client
/// has read some.
const HIGH_WATER: usize = 1 << 20;
/// How long a closing connection may take to flush its output.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection waits for its writer thread.
const JOIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long output may take to reach the client before `quit` runs.
const QUIT_FLUSH: Duration = Duration::from_secs(1);
/// The longest wait between checks of the stop flag.
pub(crate) const TICK: Duration = Duration::from_millis(100);

struct Running {
    job: Box<dyn Pending>,
    next: Instant,
}

/// A session wired to the VMM and an output sink.
pub(crate) struct Driver {
    session: Session,
    vmm: SharedVmm,
    out: Arc<dyn Sink>,
    backlog: Vec<u8>,
    running: Option<Running>,
}

impl Driver {
    pub(crate) fn new(version: &str, vmm: SharedVmm, out: Arc<dyn Sink>) -> Self {
        Driver {
            session: Session::new(version),
            vmm,
            out,
            backlog: Vec::new(),
            running: None,
        }
    }

    /// Prints the banner and prompt, once the VMM is ready to answer.
    pub(crate) fn open(&mut self) {
        self.vmm.wait_ready();
        let mut buf = Vec::new();
        self.session.open(&mut buf);
        self.out.send(&buf);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.session.status() != SessionStatus::New
    }

    /// True once the session has ended (`quit`) or the client is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.session.status() == SessionStatus::Closed || self.out.is_dead()
    }

    /// True while a command runs.
    pub(crate) fn is_busy(&self) -> bool {
        self.session.status() == SessionStatus::Busy
    }

    /// Nothing left to do: no held input and no command running.
    pub(crate) fn is_idle(&self) -> bool {
        (self.backlog.is_empty() || self.session.status() != SessionStatus::Ready) && self.running.is_none()
    }

    /// Whether more input may be read now.
    pub(crate) fn wants_input(&self) -> bool {
        self.backlog.len() < MAX_BACKLOG
    }

    /// How long the caller may wait for input before calling [`tick`].
    pub(crate) fn timeout(&self) -> Duration {
        if let Some(running) = &self.running {
            return running.next.saturating_duration_since(Instant::now()).min(TICK);
        }
        if !self.backlog.is_empty() && self.session.status() == SessionStatus::Ready {
            // Waiting for the client to read its echo.
            return Duration::from_millis(10);
        }
        TICK
    }

    /// Takes input from the client.
    pub(crate) fn input(&mut self, bytes: &[u8]) {
        self.backlog.extend_from_slice(bytes);
        self.pump();
    }

    /// Polls a pending command when due, then processes held input.
    pub(crate) fn tick(&mut self) {
        if self.running.as_ref().is_some_and(|r| Instant::now() >= r.next) {
            self.poll_running();
        }
        self.pump();
    }

    /// Writes raw bytes to the client.
    pub(crate) fn send(&self, bytes: &[u8]) {
        self.out.send(bytes);
    }

    /// Forgets the typed line and shows a new prompt (a multiplexed
    /// terminal came back to the monitor).
    pub(crate) fn reprompt(&mut self) {
        if self.session.status() == SessionStatus::Ready {
            let mut buf = Vec::new();
            self.session.reprompt(&mut buf);
            self.out.send(&buf);
        }
    }

    /// True while a command started with `Outcome::Wait` runs.
    pub(crate) fn has_running(&self) -> bool {
        self.running.is_some()
    }

    /// Runs `quit` through the VMM at once, even while a command is
    /// pending (Ctrl-A x), and ends the session if the VMM agrees.
    pub(crate) fn quit(&mut self) {
        if self.session.status() == SessionStatus::Closed {
            return;
        }
        let out = Arc::clone(&self.out);
        out.flush(QUIT_FLUSH);
        let result = {
            let vmm = &self.vmm;
            catch_unwind(AssertUnwindSafe(|| vmm.execute(&Command::Quit, &mut QueueWriter::new(&*out))))
        };
        if matches!(result, Ok(Ok(Outcome::Quit))) {
            self.running = None;
            self.session.quit();
        }
    }

    fn pump(&mut self) {
        while !self.backlog.is_empty() && self.running.is_none() && self.session.status() == SessionStatus::Ready {
            if self.out.pending() > HIGH_WATER {
                return;
            }
            let n = self.backlog.len().min(FEED_CHUNK);
            let mut buf = Vec::new();
            let (used, command) = self.session.feed(&self.backlog[..n], &mut buf);
            self.backlog.drain(..used);
            self.out.send(&buf);
            if let Some(command) = command {
                self.execute(command);
            }
        }
        if self.session.status() == SessionStatus::Closed {
            self.backlog.clear();
        }
    }

    fn execute(&mut self, command: Command) {
        let out = Arc::clone(&self.out);
        if command == Command::Quit {
            // The VMM may exit the process right away: let the echo out first.
            out.flush(QUIT_FLUSH);
        }
        let result = {
            let vmm = &self.vmm;
            catch_unwind(AssertUnwindSafe(|| vmm.execute(&command, &mut QueueWriter::new(&*out))))
        };
        let mut buf = Vec::new();
        match result {
            Ok(Ok(Outcome::Done)) => self.session.finish(&mut buf),
            Ok(Ok(Outcome::Quit)) => self.session.quit(),
            Ok(Ok(Outcome::Wait(job))) => {
                // First poll at once, as QEMU's migrate timer does.
                self.running = Some(Running { job, next: Instant::now() });
                self.poll_running();
            }
            Ok(Err(message)) => self.session.fail(&message, &mut buf),
            Err(_) => self.session.fail("internal error while running the command", &mut buf),
        }
        self.out.send(&buf);
    }

    fn poll_running(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        let out = Arc::clone(&self.out);
        let finished = catch_unwind(AssertUnwindSafe(|| running.job.poll(&mut QueueWriter::new(&*out))));
        match finished {
            Ok(false) => {
                running.next = Instant::now() + running.job.interval();
                self.running = Some(running);
            }
            Ok(true) | Err(_) => {
                let mut buf = Vec::new();
                self.session.finish(&mut buf);
                self.out.send(&buf);
            }
        }
    }
}

/// The writer thread of one client.
pub(crate) struct Writer {
    pub(crate) queue: OutputQueue,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Spawns a thread writing the queue to `target`.
    pub(crate) fn spawn(target: WriteTarget, overflow: Overflow) -> std::io::Result<Writer> {
        let queue = OutputQueue::new(QUEUE_LIMIT, overflow);
        let q = queue.clone();
        let thread = thread::Builder::new().name("monitor-writer".into()).spawn(move || {
            let (raw, socket) = target.raw();
            q.run_writer(|data, abort| fd::write_all(raw, socket, data, abort));
            drop(target);
        })?;
        Ok(Writer {
            queue,
            thread: Some(thread),
        })
    }

    /// Flushes what is queued (for at most a few seconds, unless `flush` is
    /// false), then stops the thread.
    pub(crate) fn finish(mut self, flush: bool) {
        self.queue.close();
        if flush {
            let deadline = Instant::now() + FLUSH_TIMEOUT;
            while self.queue.pending() > 0 && !self.queue.is_dead() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        self.queue.kill();
        if let Some(thread) = self.thread.take() {
            // A write into a blocking descriptor (stdout held by a stopped
            // terminal) cannot be interrupted: give up waiting after a while
            // and leave the thread to finish on its own.
            let deadline = Instant::now() + JOIN_TIMEOUT;
            while !thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.kill();
    }
}

/// A descriptor the writer thread writes to.
pub(crate) enum WriteTarget {
    /// A socket (written with `MSG_NOSIGNAL`), owned by the thread.
    Socket(OwnedFd),
    /// Any other descriptor (pty master, pipe), owned by the thread.
    Owned(OwnedFd),
    /// A descriptor owned elsewhere that stays open (stdout).
    Borrowed(RawFd),
}

impl WriteTarget {
    fn raw(&self) -> (RawFd, bool) {
        match self {
            WriteTarget::Socket(fd) => (fd.as_raw_fd(), true),
            WriteTarget::Owned(fd) => (fd.as_raw_fd(), false),
            WriteTarget::Borrowed(fd) => (*fd, false),
        }
    }
}

/// Reads `fd` into the driver until the client goes away, the session ends
/// or `stop` is set. Input already received when the client half-closes is
/// still processed, but a pending command (a synchronous migrate) is
/// abandoned: nobody is left to see its progress, and the next client must
/// not wait for it.
pub(crate) fn serve_fd(fd: RawFd, driver: &mut Driver, stop: &AtomicBool, mut telnet: Option<&mut TelnetFilter>) {
    let mut buf = vec![0u8; 4096];
    let mut eof = false;
    let mut filtered = Vec::new();
    loop {
        if stop.load(Ordering::Acquire) || driver.is_closed() || (eof && (driver.is_idle() || driver.has_running())) {
            return;
        }
        let timeout = driver.timeout();
        if eof || !driver.wants_input() {
            thread::sleep(timeout);
        } else {
            match fd::wait(fd, true, timeout) {
                Ok(Ready::Readable) => match fd::read(fd, &mut buf) {
                    Ok(Some(0)) | Err(_) => eof = true,
                    Ok(Some(n)) => match telnet.as_deref_mut() {
                        Some(filter) => {
                            filtered.clear();
                            filter.filter(&buf[..n], &mut filtered);
                            driver.input(&filtered);
                        }
                        None => driver.input(&buf[..n]),
                    },
                    Ok(None) => {}
                },
                Ok(Ready::Hangup) | Err(_) => eof = true,
                Ok(Ready::Timeout) => {}
            }
        }
        driver.tick();
    }
}
