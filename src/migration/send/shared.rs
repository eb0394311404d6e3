//! What the migration thread shares with the monitors: the figures, the parameters, the
//! cancel request, and the one place where the migration's status changes (which is
//! where QMP's `MIGRATION` events leave).

use super::super::info::{Stats, Status};
use super::super::params::Params;
use super::Stop;
use crate::migration::uri::Aborter;
use devices::bus::lock;
use monitor::engine::{Event, EventBus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Shared {
    pub stats: Mutex<Stats>,
    pub params: Mutex<Params>,
    pub cancel: AtomicBool,
    /// Breaks the connection, for a cancel; none once the migration is committed.
    abort: Mutex<Option<Aborter>>,
    /// END is on its way: from here the destination decides, and a cancel could only make
    /// both sides run the guest, so it is refused.
    committed: AtomicBool,
    /// Why the migration was stopped, when not by `migrate_cancel` (see [`Shared::abort_for`]).
    pub(super) abort_reason: Mutex<Option<String>>,
    /// Where status changes and passes are announced (when the `events` capability is on).
    bus: Arc<EventBus>,
    /// `migrate_start_postcopy` was asked: the pre-copy switches to post-copy at its next
    /// look at the dirty log.
    start_postcopy: AtomicBool,
    /// The destination runs the guest (post-copy began): a cancel is still accepted, and
    /// the guest never runs here again.
    in_postcopy: AtomicBool,
    /// `migrate -r URI` for a paused post-copy.
    resume: Mutex<Option<crate::migration::uri::Uri>>,
    /// The TLS `-object`s, loaded at start-up, that `tls-creds` and `tls-authz` name.
    pub tls: Mutex<Arc<crate::migration::tls::Objects>>,
}

impl Shared {
    /// Announces status changes and passes on `bus`.
    pub fn with_bus(bus: Arc<EventBus>) -> Self {
        Shared { bus, ..Shared::default() }
    }

    /// The one place a migration's status changes.
    pub fn set_status(&self, status: Status) {
        lock(&self.stats).status = status;
        self.announce(Event::migration(status));
    }

    /// Starts a migration's figures afresh, in `status`.
    pub fn reset_stats(&self, stats: Stats) {
        let status = stats.status;
        *lock(&self.stats) = stats;
        self.announce(Event::migration(status));
    }

    /// A new pass over the dirty log (QMP's `MIGRATION_PASS`).
    pub fn pass(&self, n: u64) {
        self.announce(Event::migration_pass(n));
    }

    /// A status change that is not this migration's figures' (the destination's), announced
    /// like the source's.
    pub fn announce_status(&self, status: Status) {
        self.announce(Event::migration(status));
    }

    fn announce(&self, e: Event) {
        if lock(&self.params).events {
            self.bus.emit(e);
        }
    }

    /// Clears what a previous migration left: no cancel asked, nothing committed.
    pub fn begin(&self) {
        let mut slot = lock(&self.abort);
        slot.take();
        self.cancel.store(false, Ordering::SeqCst);
        self.committed.store(false, Ordering::SeqCst);
        self.start_postcopy.store(false, Ordering::SeqCst);
        self.in_postcopy.store(false, Ordering::SeqCst);
        lock(&self.resume).take();
        lock(&self.abort_reason).take();
    }

    /// Readies a new migration over a connection that `abort` breaks. A cancel asked for
    /// before the connection existed breaks it at once.
    pub fn connected(&self, abort: Aborter) {
        let mut slot = lock(&self.abort);
        if self.cancel.load(Ordering::SeqCst) {
            abort();
        }
        *slot = Some(abort);
    }

    /// More connections (multifd channels) that a cancel must break too.
    pub fn also_abort(&self, more: Aborter) {
        let mut slot = lock(&self.abort);
        if self.cancel.load(Ordering::SeqCst) {
            more();
        }
        let first = slot.take();
        *slot = Some(Box::new(move || {
            if let Some(f) = &first {
                f();
            }
            more();
        }));
    }

    /// The connection is closed; nothing is left to break.
    pub fn disconnected(&self) {
        lock(&self.abort).take();
    }

    /// `migrate_cancel`: stops the migration unless END is already on its way; false then.
    pub fn request_cancel(&self) -> bool {
        let slot = lock(&self.abort);
        // Post-copy takes a cancel (as QEMU does): the guest stays paused here.
        if self.committed.load(Ordering::SeqCst) && !self.in_postcopy() {
            return false;
        }
        self.cancel.store(true, Ordering::SeqCst);
        self.set_status(Status::Cancelling);
        if let Some(abort) = slot.as_ref() {
            abort();
        }
        true
    }

    /// Stops the migration like a cancel, for a reason of the machine's own (the guest was
    /// reset): it ends `failed` with that reason rather than `cancelled`. False if too late.
    pub fn abort_for(&self, why: &str) -> bool {
        *lock(&self.abort_reason) = Some(why.to_string());
        self.request_cancel()
    }

    /// Commits to the switch-over (under the same lock as a cancel, so exactly one wins).
    pub(super) fn commit(&self) -> Result<(), Stop> {
        let _slot = lock(&self.abort);
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Stop::Cancelled);
        }
        self.committed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// `migrate_start_postcopy`: the migration switches to post-copy at its next sync.
    pub fn request_postcopy(&self) {
        self.start_postcopy.store(true, Ordering::SeqCst);
    }

    pub fn in_postcopy(&self) -> bool {
        self.in_postcopy.load(Ordering::SeqCst)
    }

    pub(super) fn set_in_postcopy(&self) {
        self.in_postcopy.store(true, Ordering::SeqCst);
    }

    /// `migrate -r URI`: the paused post-copy goes on over a new connection to `u`.
    pub fn resume_to(&self, u: crate::migration::uri::Uri) {
        *lock(&self.resume) = Some(u);
    }

    /// Waits for `migrate -r`; none if the migration is cancelled meanwhile.
    pub(super) fn wait_resume(&self) -> Option<crate::migration::uri::Uri> {
        loop {
            if self.cancelled() {
                return None;
            }
            if let Some(u) = lock(&self.resume).take() {
                return Some(u);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub(super) fn postcopy_requested(&self) -> bool {
        self.start_postcopy.load(Ordering::SeqCst)
    }

    pub(super) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}
