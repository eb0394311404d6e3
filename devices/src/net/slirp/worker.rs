//! The slirp thread: creates the stack, binds the start-up host forwards, then loops feeding
//! guest frames and requests to slirp and polling its sockets and timers, until told to stop
//! (or its back end is gone). The stack never leaves this thread.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use vmm_sys_util::eventfd::EventFd;

use super::callbacks::Ctx;
use super::hostfwd::{HostFwd, HostFwdKey};
use super::options::UserNetConfig;
use super::rxqueue::RxQueue;
use super::stack::Stack;

/// A request to the slirp thread; the sender waits on the answer channel.
pub enum Control {
    AddHostFwd(HostFwd, Sender<bool>),
    RemoveHostFwd(HostFwdKey, Sender<bool>),
    ConnectionInfo(Sender<String>),
    SaveState(Sender<Vec<u8>>),
    LoadState {
        version: i32,
        data: Vec<u8>,
        answer: Sender<Result<(), i32>>,
    },
    Stop,
}

/// How the stack failed to come up.
pub enum StartError {
    /// libslirp refused the configuration.
    Init,
    /// A start-up host forward could not be bound (the rule as written).
    HostFwd(String),
}

/// What the thread reads from.
pub struct Inbox {
    pub frames: Receiver<Vec<u8>>,
    pub control: Receiver<Control>,
    /// Written after each frame or request; also slirp's `notify`.
    pub wake: Arc<EventFd>,
}

/// Starts the thread and waits until the stack is up with its host forwards bound.
pub fn start(config: UserNetConfig, rx: Arc<RxQueue>, inbox: Inbox) -> std::io::Result<(JoinHandle<()>, Result<(), StartError>)> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let name = config.id.as_ref().map_or_else(|| "slirp".to_string(), |id| format!("slirp-{id}"));
    let handle = thread::Builder::new().name(name).spawn(move || {
        let ctx = Ctx::new(rx, inbox.wake.clone());
        match bring_up(&config, ctx) {
            Ok(stack) => {
                let _ = ready_tx.send(Ok(()));
                run(&stack, &inbox);
            }
            Err(e) => drop(ready_tx.send(Err(e))),
        }
    })?;
    let started = ready_rx.recv().unwrap_or(Err(StartError::Init));
    Ok((handle, started))
}

/// Creates the stack and binds the rules, last to first as QEMU does (so a clash names the
/// same rule QEMU's message names). On failure the stack is dropped: nothing stays bound.
fn bring_up(config: &UserNetConfig, ctx: Ctx) -> Result<Stack, StartError> {
    let stack = Stack::new(config, ctx).ok_or(StartError::Init)?;
    for rule in config.hostfwd.iter().rev() {
        if !stack.add_hostfwd(rule) {
            return Err(StartError::HostFwd(rule.rule.clone()));
        }
    }
    Ok(stack)
}

/// The poll loop.
fn run(stack: &Stack, inbox: &Inbox) {
    loop {
        let mut fed = 0;
        for frame in inbox.frames.try_iter().take(super::TX_QUEUE_FRAMES) {
            stack.input(&frame);
            fed += 1;
        }
        if fed == super::TX_QUEUE_FRAMES {
            // More may be waiting: do not sleep in this round's poll.
            let _ = inbox.wake.write(1);
        }
        loop {
            match inbox.control.try_recv() {
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => return,
                Ok(request) => serve(stack, request),
                Err(TryRecvError::Empty) => break,
            }
        }
        if stack.poll_round(inbox.wake.as_raw_fd()) {
            // Reset the counter; whatever was sent before this is drained next round.
            let _ = inbox.wake.read();
        }
    }
}

/// Answers one request (an answer nobody waits for any more is dropped).
fn serve(stack: &Stack, request: Control) {
    match request {
        Control::AddHostFwd(rule, answer) => drop(answer.send(stack.add_hostfwd(&rule))),
        Control::RemoveHostFwd(key, answer) => drop(answer.send(stack.remove_hostfwd(key))),
        Control::ConnectionInfo(answer) => drop(answer.send(stack.connection_info())),
        Control::SaveState(answer) => drop(answer.send(stack.save_state())),
        Control::LoadState { version, data, answer } => drop(answer.send(stack.load_state(version, &data))),
        Control::Stop => {}
    }
}
