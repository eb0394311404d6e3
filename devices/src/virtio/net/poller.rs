//! Waits for the back end to have a frame and tells the I/O thread.
//!
//! A small thread polls the back end's `rx_fd` and kicks the I/O thread's back-end
//! pseudo-queue. The descriptor is level triggered, so after one kick the poller stops
//! watching it until the I/O thread has drained the back end (`recv` said `WouldBlock`)
//! and re-arms it. While the guest has no receive buffers the I/O thread does not re-arm,
//! and frames wait in the back end without waking anyone; the guest's rx notify resumes
//! the I/O thread instead. The poller never touches guest memory, so it keeps running
//! while the device is paused (a kick then waits in the worker for the resume).

use super::BACKEND_EVENT;
use crate::virtio::worker::Kicker;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use thiserror::Error;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

#[derive(Debug, Error)]
pub enum PollerError {
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot spawn the receive poller thread: {0}")]
    Spawn(std::io::Error),
}

/// Re-arms the poller (held by the I/O thread).
#[derive(Clone)]
pub struct Arm(Arc<EventFd>);

impl Arm {
    pub fn new() -> Result<Arm, PollerError> {
        Ok(Arm(Arc::new(EventFd::new(EFD_NONBLOCK).map_err(PollerError::EventFd)?)))
    }

    /// Watch the back end again.
    pub fn arm(&self) {
        let _ = self.0.write(1);
    }
}

/// The poller thread; dropping it stops and joins the thread.
pub struct RxPoller {
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl RxPoller {
    /// Starts watching `rx_fd` (armed), kicking `kicker` when it is readable. `rx_fd` must
    /// stay open until the poller is dropped.
    pub fn spawn(rx_fd: RawFd, arm: Arm, kicker: Kicker) -> Result<RxPoller, PollerError> {
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(PollerError::EventFd)?);
        let stop_fd = stop.clone();
        let thread = std::thread::Builder::new()
            .name("virtio-net-rx".into())
            .spawn(move || run(rx_fd, &stop_fd, &arm.0, &kicker))
            .map_err(PollerError::Spawn)?;
        Ok(RxPoller {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for RxPoller {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx_fd: RawFd, stop: &EventFd, arm: &EventFd, kicker: &Kicker) {
    let mut armed = true;
    loop {
        let mut fds = [pollfd(stop.as_raw_fd()), pollfd(arm.as_raw_fd()), pollfd(rx_fd)];
        let watched = if armed { 3 } else { 2 };
        // SAFETY: `fds` is a valid array of `watched` pollfd entries that outlives the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), watched as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            return;
        }
        if fds[1].revents != 0 {
            let _ = arm.read();
            armed = true;
        }
        // POLLERR or POLLHUP count too: the I/O thread's recv then finds out what is wrong.
        if armed && watched == 3 && fds[2].revents != 0 {
            armed = false;
            kicker.kick(BACKEND_EVENT);
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
