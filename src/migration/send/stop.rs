//! Why an outgoing migration stopped early: cancelled, failed (the guest runs on here),
//! a write to the stream that failed, or undecided (the guest stays paused here), each
//! with its cause.

use crate::migration::dirty::DirtyError;
use crate::migration::disks::DisksError;
use crate::migration::disks::reply::ReplyError;
use crate::vm::VmError;
use crate::vm::disks::DiskError;
use devices::block::BlockError;
use std::io;
use thiserror::Error;
use vm_memory::GuestMemoryError;

/// How an undecided migration leaves the guest.
const STAYS: &str = "the VM stays paused ('cont' resumes it here if the destination does not hold its disks)";

/// Why a migration stopped early.
#[derive(Debug, Error)]
pub enum Stop {
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Failed(#[from] Failure),
    /// Writing the stream failed; callers say where it was going.
    #[error("{}", crate::errtext::io(.0))]
    Io(#[source] io::Error),
    /// Everything was sent but the destination did not say whether it runs the guest: the
    /// guest stays paused and the disks handed over (`cont` takes them back, unless the
    /// destination holds them).
    #[error(transparent)]
    Undecided(#[from] Undecided),
}

/// Why a migration failed (the guest runs on here if it ran).
#[derive(Debug, Error)]
pub enum Failure {
    /// The disks could not be described (a base image could not be read).
    #[error(transparent)]
    Disks(#[from] DisksError),
    /// The destination refused the disks or the stream (its reason), or did not answer.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// The destination could not load what it received; its reason, in its own words.
    #[error("the destination could not load the migration: {0}")]
    NotLoaded(String),
    /// The pages to send could not be found (dirty log, pagemap).
    #[error(transparent)]
    Dirty(#[from] DirtyError),
    /// Guest RAM could not be read.
    #[error(transparent)]
    ReadRam(#[from] GuestMemoryError),
    /// The machine state could not be saved.
    #[error(transparent)]
    State(#[from] VmError),
    /// The disks could not be handed over (flushed and closed).
    #[error(transparent)]
    HandOver(#[from] DiskError),
    /// A copied disk could not be read at byte `at`.
    #[error("cannot read disk data at {at:#x}: {err}")]
    ReadDisk {
        at: u64,
        #[source]
        err: BlockError,
    },
    /// A copied disk's allocation status could not be read.
    #[error("cannot read the disk's allocation: {0}")]
    Allocation(#[source] BlockError),
    /// The connection failed.
    #[error("Unable to write to socket: {}", crate::errtext::io(.0))]
    Socket(#[source] io::Error),
    /// The multifd channels could not be set up, or one of them failed.
    #[error("{0}")]
    Multifd(String),
    /// The machine stopped the migration for a reason of its own (the guest was reset),
    /// in the words it gave.
    #[error("{0}")]
    Aborted(String),
}

/// Why the outcome of a switch-over is unknown; the guest stays paused here.
#[derive(Debug, Error)]
pub enum Undecided {
    /// The destination said nothing within the stall timeout.
    #[error("the destination did not confirm the switch-over within {secs} s; {}", STAYS)]
    Silent { secs: u64 },
    /// The connection failed while the answer was due (it may have swallowed a yes).
    #[error("the destination's answer to the switch-over was lost: {}; {}", crate::errtext::io(.0), STAYS)]
    AnswerLost(#[source] io::Error),
    /// The migration failed after the hand-over began, and the disks cannot be taken back
    /// (the destination may hold them).
    #[error("the migration failed and the disks cannot be taken back: {0}; the VM stays paused")]
    DisksHeld(#[source] DiskError),
    /// Post-copy broke off after the destination started the guest: it runs there, with
    /// the pages it has, so it never runs here again.
    #[error("post-copy broke off after the destination started the guest ({0}); the VM stays paused")]
    Postcopy(String),
}
