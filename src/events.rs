//! The events that end or change a machine's run: from vCPUs, devices, monitor commands,
//! the incoming migration and signal handling, all read by the main loop (`main.rs`).

/// Machine-level events, from vCPUs, devices, the console and signal handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The guest asked for a reset (i8042, triple fault, KVM reset event).
    Reset,
    /// The guest powered off.
    Shutdown,
    /// The monitor's `quit` (also what Ctrl-A x runs).
    QuitCommand,
    /// The monitor's `system_reset`.
    ResetCommand,
    /// A termination signal arrived.
    Signal { signo: i32, pid: i32 },
    /// An incoming migration finished loading (or failed, with the reason).
    Incoming(Result<(), String>),
    /// An incoming migration switched to post-copy: the state is loaded and the guest may
    /// run while the rest of its pages arrive.
    PostcopyRun,
    /// Something fatal happened to the VM.
    Error(String),
}
