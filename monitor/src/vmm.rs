//! The interface between the monitor and the VMM.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::command::{Command, InfoCommand, parse_line};
use crate::help::help_text;

/// What a command asks of the session once [`Vmm::execute`] returns.
pub enum Outcome {
    /// Finished: print the prompt.
    Done,
    /// End this session without a prompt (`quit`: the VMM is exiting).
    /// Socket and pty monitors close the connection; stdio stops reading.
    Quit,
    /// Still running (a synchronous `migrate`): the session prints no
    /// prompt and holds further input until [`Pending::poll`] says it is
    /// finished. The VMM lock is *not* held meanwhile, so other monitors
    /// keep working.
    Wait(Box<dyn Pending>),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Done => f.write_str("Done"),
            Outcome::Quit => f.write_str("Quit"),
            Outcome::Wait(_) => f.write_str("Wait(..)"),
        }
    }
}

/// A command that keeps the monitor suspended until it completes.
pub trait Pending: Send {
    /// Called at once and then every [`Pending::interval`]; may print
    /// progress (`Completed 23 %\r`). Returns true when finished, after
    /// which the prompt comes back. If the client goes away first, the
    /// object is dropped without further polls.
    fn poll(&mut self, out: &mut dyn Write) -> bool;

    /// How often to poll; QEMU's synchronous migrate uses one second.
    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// Implemented by the VMM.
///
/// `out` reaches the client directly and never blocks: text written there
/// shows up at once (write `\n`; the transport sends `\r\n`). An `Err(msg)`
/// is shown as `Error: msg`. `Command::Help` and `info history` are answered
/// by the session and never get here.
pub trait Vmm: Send + Sync {
    fn execute(&self, command: &Command, out: &mut dyn Write) -> Result<Outcome, String>;

    /// Called before a session shows its banner. A VMM that cannot answer yet (still
    /// setting up, as QEMU serves no monitor before its main loop) blocks here, so a
    /// client that has seen the prompt can rely on the machine being there.
    fn wait_ready(&self) {}
}

/// The VMM as the transports share it between monitors. Commands of different monitors
/// may run at the same time: the VMM serialises what must be.
pub type SharedVmm = Arc<dyn Vmm>;

/// Runs one command line outside of a session (for QMP's
/// `human-monitor-command`, for example): parses it, answers `help` from the
/// tables, prints parser and command errors the way the monitor does, and
/// returns what the VMM returned. `info history` prints nothing here.
pub fn execute_line(line: &str, vmm: &dyn Vmm, out: &mut dyn Write) -> io::Result<Outcome> {
    match parse_line(line) {
        Ok(None) => Ok(Outcome::Done),
        Err(e) => {
            out.write_all(e.render().as_bytes())?;
            Ok(Outcome::Done)
        }
        Ok(Some(Command::Help { topic })) => {
            out.write_all(help_text(topic.as_deref()).as_bytes())?;
            Ok(Outcome::Done)
        }
        Ok(Some(Command::Info(InfoCommand::History))) => Ok(Outcome::Done),
        Ok(Some(command)) => match vmm.execute(&command, out) {
            Ok(outcome) => Ok(outcome),
            Err(message) => {
                writeln!(out, "Error: {message}")?;
                Ok(Outcome::Done)
            }
        },
    }
}
