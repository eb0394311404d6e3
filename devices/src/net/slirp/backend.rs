//! [`SlirpBackend`]: the [`NetBackend`] a NIC uses for `-netdev user`.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use thiserror::Error;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::hostfwd::{HostFwd, HostFwdError, HostFwdKey};
use super::options::UserNetConfig;
use super::rxqueue::{RX_QUEUE_FRAMES, RxQueue};
use super::stack::state_version;
use super::state::SlirpState;
use super::worker::{self, Control, Inbox, StartError};
use crate::net::NetBackend;

/// Frames from the guest waiting for the slirp thread before new ones are dropped.
pub const TX_QUEUE_FRAMES: usize = 256;

/// Why the user network back end, or a request to it, failed.
#[derive(Debug, Error)]
pub enum SlirpError {
    #[error("Invalid host forwarding rule '{rule}' ({reason})")]
    BadHostFwd { rule: String, reason: HostFwdError },
    #[error("Could not set up host forwarding rule '{0}'")]
    HostFwd(String),
    #[error("invalid format")]
    BadHostFwdKey,
    #[error("libslirp refused the user network configuration")]
    Init,
    #[error("cannot create the user network's eventfds: {0}")]
    EventFd(io::Error),
    #[error("cannot start the user network thread: {0}")]
    Thread(io::Error),
    #[error("the user network thread has stopped")]
    Stopped,
    #[error("slirp state version {found} is newer than this libslirp's {supported}")]
    StateVersion { found: u32, supported: i32 },
    #[error("libslirp could not load the saved state: {0}")]
    LoadState(io::Error),
}

/// QEMU's user-mode network: libslirp on its own thread.
pub struct SlirpBackend {
    rx: Arc<RxQueue>,
    frames: Sender<Vec<u8>>,
    control: Sender<Control>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    info: String,
}

impl SlirpBackend {
    /// Starts the stack with `config`'s network and binds its host forwards; a forward
    /// that cannot be bound fails with QEMU's `Could not set up host forwarding rule '...'`.
    pub fn new(config: &UserNetConfig) -> Result<Self, SlirpError> {
        let rx = Arc::new(RxQueue::new(RX_QUEUE_FRAMES).map_err(SlirpError::EventFd)?);
        let wake = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(SlirpError::EventFd)?);
        let (frames, frames_rx) = crossbeam_channel::bounded(TX_QUEUE_FRAMES);
        let (control, control_rx) = crossbeam_channel::unbounded();
        let inbox = Inbox {
            frames: frames_rx,
            control: control_rx,
            wake: wake.clone(),
        };
        let (thread, started) = worker::start(config.clone(), rx.clone(), inbox).map_err(SlirpError::Thread)?;
        if let Err(e) = started {
            // The thread has returned (its stack freed): reap it.
            let _ = thread.join();
            return Err(match e {
                StartError::Init => SlirpError::Init,
                StartError::HostFwd(rule) => SlirpError::HostFwd(rule),
            });
        }
        Ok(SlirpBackend {
            rx,
            frames,
            control,
            wake,
            thread: Some(thread),
            info: config.info(),
        })
    }

    /// Sends a request to the slirp thread and waits for its answer.
    fn request<T>(&self, make: impl FnOnce(Sender<T>) -> Control) -> Result<T, SlirpError> {
        let (answer, answer_rx) = crossbeam_channel::bounded(1);
        self.control.send(make(answer)).map_err(|_| SlirpError::Stopped)?;
        let _ = self.wake.write(1);
        answer_rx.recv().map_err(|_| SlirpError::Stopped)
    }

    /// `hostfwd_add`: adds a rule in the `hostfwd=` syntax.
    pub fn hostfwd_add(&self, rule: &str) -> Result<(), SlirpError> {
        let parsed = HostFwd::parse(rule).map_err(|reason| SlirpError::BadHostFwd {
            rule: rule.to_string(),
            reason,
        })?;
        match self.request(|answer| Control::AddHostFwd(parsed, answer))? {
            true => Ok(()),
            false => Err(SlirpError::HostFwd(rule.to_string())),
        }
    }

    /// `hostfwd_remove`: removes the rule listening on `[tcp|udp]:[HOSTADDR]:HOSTPORT`;
    /// whether there was one (QEMU prints `host forwarding rule for SPEC removed` or
    /// `... not found`).
    pub fn hostfwd_remove(&self, spec: &str) -> Result<bool, SlirpError> {
        let key = HostFwdKey::parse(spec).map_err(|_| SlirpError::BadHostFwdKey)?;
        self.request(|answer| Control::RemoveHostFwd(key, answer))
    }

    /// libslirp's connection table, the body of `info usernet`.
    pub fn connection_info(&self) -> Result<String, SlirpError> {
        self.request(Control::ConnectionInfo)
    }

    /// Saves libslirp's state (guest connections), as QEMU's "slirp" migration section.
    pub fn save_state(&self) -> Result<SlirpState, SlirpError> {
        let data = self.request(Control::SaveState)?;
        Ok(SlirpState {
            slirp_version: u32::try_from(state_version()).unwrap_or(0),
            data,
        })
    }

    /// Loads a state from [`SlirpBackend::save_state`] into this (freshly created) stack.
    pub fn load_state(&self, state: &SlirpState) -> Result<(), SlirpError> {
        let supported = state_version();
        let version = i32::try_from(state.slirp_version).ok().filter(|&v| v <= supported);
        let version = version.ok_or(SlirpError::StateVersion {
            found: state.slirp_version,
            supported,
        })?;
        let data = state.data.clone();
        self.request(|answer| Control::LoadState { version, data, answer })?
            .map_err(|errno| SlirpError::LoadState(io::Error::from_raw_os_error(-errno)))
    }

    /// Frames for the guest dropped because the NIC did not take them fast enough.
    pub fn rx_dropped(&self) -> u64 {
        self.rx.dropped()
    }
}

impl NetBackend for SlirpBackend {
    fn vnet_hdr(&self) -> bool {
        false
    }

    fn send(&mut self, frame: &[IoSlice<'_>]) -> io::Result<()> {
        let bytes: Vec<u8> = frame.iter().flat_map(|s| s.iter().copied()).collect();
        if bytes.is_empty() {
            return Ok(());
        }
        match self.frames.try_send(bytes) {
            // A full queue drops the frame, as a busy link would.
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return Err(io::Error::new(io::ErrorKind::BrokenPipe, SlirpError::Stopped)),
        }
        let _ = self.wake.write(1);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rx.pop(buf)
    }

    fn rx_fd(&self) -> RawFd {
        self.rx.fd()
    }

    fn info(&self) -> String {
        self.info.clone()
    }
}

impl Drop for SlirpBackend {
    /// Stops the thread, which frees the stack: every socket, host forward listeners
    /// included, is closed when this returns.
    fn drop(&mut self) {
        let _ = self.control.send(Control::Stop);
        let _ = self.wake.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
