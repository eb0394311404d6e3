//! The source side: pre-copy of RAM while the guest runs, then a short stop to send the
//! last dirty pages and the machine state.
//!
//! Pass 0 sends every page the guest ever touched (untouched pages are known zero and cost
//! nothing); later passes send what the dirty log reports. Every 100 ms window measures the
//! bandwidth; once the dirty data left fits in `downtime-limit` at that bandwidth, the VM is
//! stopped and the rest goes unlimited. QEMU 7.2's rules, godwit's stream.
//!
//! The phases, in order, each a method of [`Outgoing`]: set-up (configuration, disks, and
//! for a block migration the bulk copy of the disks), pre-copy, stop-and-copy, switch-over
//! (commit, hand the disks over, END, the destination's answer), and the end, which
//! settles the outcome whatever it is. The status changes only through
//! [`Shared::set_status`].

mod converge;
mod multifd;
mod pacer;
mod pages;
mod postcopy;
mod precopy;
mod shared;
mod stop;
#[cfg(test)]
mod tests;

pub use multifd::Connector;
pub(super) use pacer::Pacer;
use pages::{flush_xbzrle, write_pages_xbzrle};
pub use pages::{is_zero, write_pages};
pub use shared::Shared;
pub use stop::{Failure, Stop, Undecided};

use super::dirty::{self, Bitmap, PAGE};
use super::dirtylog::DirtyLog;
use super::disks::reply::ReplyError;
use super::disks::{self, Mode};
use super::info::{Stats, Status};
use super::send_block::{BlockState, Taken};
use super::stream::{PAGES_PER_RECORD, Writer};
use super::xbzrle::{Caps, XbzrleSender};
use crate::vm::Vm;
use devices::bus::lock;
use std::io::{Read, Write};
use std::sync::MutexGuard;
use std::time::Instant;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// The stream as the sender writes it: buffered, into whatever the URI connected.
type Out = std::io::BufWriter<Box<dyn Write + Send>>;

fn io_err(e: std::io::Error) -> Stop {
    Stop::Io(e)
}

pub(super) struct Sender<'a, W: Write> {
    vm: &'a Vm,
    pub(super) w: Writer<W>,
    pub(super) pacer: Pacer<'a>,
    pub(super) shared: &'a Shared,
    buf: Vec<u8>,
    pages_sent: u64,
    /// The disk copy of a block migration.
    pub(super) block: Option<BlockState>,
    /// Where the pre-copy's scan of dirty pages is, as (region, page): each round goes on
    /// from where the last one stopped, so no part of RAM waits behind a busy one.
    cursor: (usize, u64),
    /// The `xbzrle` capability's cache and the record being filled.
    xb: Option<XbzrleSender>,
    /// The `multifd` capability's channels, and their figures last folded in (zero
    /// pages, data pages, bytes).
    mf: Option<crate::migration::multifd::send::MultifdSender>,
    mf_seen: (u64, u64, u64),
    /// Page bytes handed to the multifd channels (before compression).
    mf_raw: u64,
}

impl<W: Write> Sender<'_, W> {
    pub(super) fn check_cancel(&self) -> Result<(), Stop> {
        if self.shared.cancelled() { Err(Stop::Cancelled) } else { Ok(()) }
    }

    /// Stream bytes written or waiting in the xbzrle batch.
    fn out_bytes(&self) -> u64 {
        self.w.bytes() + self.xb.as_ref().map_or(0, |x| x.pending() as u64)
    }

    /// Sends `count` pages from `gpa`: zero pages as ranges, the rest as data (with
    /// xbzrle, into its batch, which [`Sender::flush_xbzrle`] writes out).
    fn send_run(&mut self, gpa: u64, count: u64) -> Result<(), Stop> {
        if self.mf.is_some() {
            return self.send_run_multifd(gpa, count);
        }
        let before = self.out_bytes();
        let (zero, normal) = match self.xb.as_mut() {
            Some(xb) => write_pages_xbzrle(&mut self.w, xb, self.vm.ram(), gpa, count, &mut self.buf)?,
            None => write_pages(&mut self.w, self.vm.ram(), gpa, count, &mut self.buf)?,
        };
        let bytes = self.out_bytes() - before;
        {
            let mut s = lock(&self.shared.stats);
            s.duplicate += zero;
            s.normal += normal;
            if let Some(xb) = &self.xb {
                s.xbzrle = Some(xb.counters);
            }
            s.transferred = self.w.bytes();
            s.remaining = s.remaining.saturating_sub(count * PAGE);
        }
        self.pages_sent += count;
        self.pacer.account(bytes, count);
        Ok(())
    }

    /// Sends every page set in `bitmaps` (one per RAM region).
    fn send_bitmaps(&mut self, bitmaps: &[Bitmap]) -> Result<(), Stop> {
        let regions: Vec<(u64, u64)> = self.vm.ram().iter().map(|r| (r.start_addr().0, r.len() / PAGE)).collect();
        for ((base, pages), bm) in regions.into_iter().zip(bitmaps) {
            let runs: Vec<(u64, u64)> = dirty::runs(bm, pages, PAGES_PER_RECORD as u64).collect();
            for (first, count) in runs {
                self.check_cancel()?;
                self.send_run(base + first * PAGE, count)?;
            }
        }
        self.flush_xbzrle()
    }

    /// Writes out the xbzrle batch: before any other record, and before a sync.
    fn flush_xbzrle(&mut self) -> Result<(), Stop> {
        match self.xb.as_mut() {
            Some(xb) => flush_xbzrle(&mut self.w, xb),
            None => Ok(()),
        }
    }

    /// A sync: the xbzrle cache ages, its period's rates are taken, and a new
    /// `xbzrle-cache-size` takes effect.
    fn xbzrle_sync(&mut self, cache_size: u64) {
        let ram = self.vm.mem_size();
        if let Some(xb) = self.xb.as_mut() {
            xb.sync(cache_size, ram);
            lock(&self.shared.stats).xbzrle = Some(xb.counters);
        }
    }

    /// Sends the pages set in `bitmaps` from the cursor on, round the end of RAM and back,
    /// clearing each page's bit as it goes, until `due` (asked before each run, with the
    /// pacer and the number of pages still set) says a sync is due. Returns whether every
    /// page was sent.
    fn send_bitmaps_until(&mut self, bitmaps: &mut [Bitmap], due: &dyn Fn(&Pacer<'_>, u64) -> bool) -> Result<bool, Stop> {
        let regions: Vec<(u64, u64)> = self.vm.ram().iter().map(|r| (r.start_addr().0, r.len() / PAGE)).collect();
        let n = regions.len().min(bitmaps.len());
        let mut left = dirty::count(bitmaps);
        let (r0, p0) = self.cursor;
        let r0 = if r0 < n { r0 } else { 0 };
        for k in 0..=n {
            let r = (r0 + k) % n.max(1);
            let (base, pages) = regions[r];
            // The cursor's region from the cursor on first, its start last.
            let (lo, hi) = match k {
                0 => (p0.min(pages), pages),
                _ if k == n => (0, p0.min(pages)),
                _ => (0, pages),
            };
            let runs: Vec<(u64, u64)> = dirty::runs_between(&bitmaps[r], lo, hi, PAGES_PER_RECORD as u64).collect();
            for (first, count) in runs {
                if due(&self.pacer, left) {
                    self.cursor = (r, first);
                    self.flush_xbzrle()?;
                    return Ok(false);
                }
                self.check_cancel()?;
                self.send_run(base + first * PAGE, count)?;
                dirty::clear(&mut bitmaps[r], first, count);
                left -= count;
                self.cursor = (r, first + count);
            }
        }
        self.flush_xbzrle()?;
        Ok(true)
    }

    /// Sends one round's dirty RAM pages, then its dirty disk granules.
    fn send_round(&mut self, round: &Round) -> Result<(), Stop> {
        self.send_bitmaps(&round.bitmaps)?;
        match &round.taken {
            Some(t) => self.send_disk_dirty(t),
            None => Ok(()),
        }
    }

    /// Stream bytes of disk records so far.
    fn disk_wire(&self) -> u64 {
        self.block.as_ref().map_or(0, |b| b.wire)
    }
}

/// One snapshot of the dirty logs: RAM pages and disk granules, not yet sent.
struct Round {
    bitmaps: Vec<Bitmap>,
    taken: Option<Taken>,
    /// Dirty bytes the round holds (RAM and disk).
    bytes: u64,
}

impl Round {
    /// Nothing to send.
    fn empty() -> Self {
        Round {
            bitmaps: Vec::new(),
            taken: None,
            bytes: 0,
        }
    }
}

/// Waits for the destination's outcome after END. Its refusal, or the connection closing
/// cleanly without an answer (it is gone, so it runs nothing), fails the migration and
/// the guest runs on here. Anything else (silence past the stall timeout, a reset
/// connection, which may have swallowed a `GWOK` already sent) leaves it undecided.
fn end_answer(r: &mut dyn Read) -> Result<(), Stop> {
    answer_outcome(disks::reply::answer(r))
}

/// What the destination's answer after END (or its absence) makes of the migration.
fn answer_outcome(a: Result<(), ReplyError>) -> Result<(), Stop> {
    use std::io::ErrorKind::{InvalidData, TimedOut, UnexpectedEof, WouldBlock};
    match a {
        Ok(()) => Ok(()),
        Err(ReplyError::Refused(why)) => Err(Failure::NotLoaded(why).into()),
        Err(ReplyError::NoAnswer(e)) if matches!(e.kind(), TimedOut | WouldBlock) => Err(Undecided::Silent {
            secs: super::uri::STALL_TIMEOUT.as_secs(),
        }
        .into()),
        Err(ReplyError::NoAnswer(e)) if !matches!(e.kind(), UnexpectedEof | InvalidData) => Err(Undecided::AnswerLost(e).into()),
        Err(e) => Err(Failure::Reply(e).into()),
    }
}

/// A version 3 destination that gives up on a stream says why on the way back, then
/// closes: when the peer closed the connection, its reason, if it left one.
fn closed_with_reason(e: &std::io::Error, reply: Option<&mut Box<dyn Read + Send>>) -> Option<String> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    if !matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted) {
        return None;
    }
    match disks::reply::answer(reply?.as_mut()) {
        Err(ReplyError::Refused(why)) => Some(why),
        _ => None,
    }
}

/// One outgoing migration, and what its end must undo.
struct Outgoing<'a> {
    vm: &'a Vm,
    shared: &'a Shared,
    mode: Mode,
    start: Instant,
    reply: Option<Box<dyn Read + Send>>,
    /// The right to the VM's run state, from the stop-and-copy until the outcome is known.
    hold: Option<MutexGuard<'a, ()>>,
    /// Whether the guest ran when the stop-and-copy paused it (the user may `stop` or
    /// `cont` during the pre-copy): what a failure after that pause restores.
    was_running: bool,
    paused_here: bool,
    /// The disks were handed over (or about to be): a failure must take them back.
    handed_over: bool,
    downtime_start: Option<Instant>,
    /// Tells the caller the stop-and-copy paused a running guest.
    stopped: &'a dyn Fn(),
    /// KVM's dirty log, from the first round on.
    log: Option<DirtyLog>,
    /// The destination's answer after END is awaited (a connection with a way back).
    reply_expected: bool,
    /// The destination was told to run the guest (post-copy): it never runs here again.
    postcopy_started: bool,
}

/// Runs one outgoing migration to completion. On success the VM is left paused (the
/// caller puts it in `postmigrate`) and its disks handed over; on failure or cancel it
/// runs again, with its disks, if it was running. `reply` is the connection's way back
/// (none for `exec:`); a block migration (`mode` Full or Incremental) waits there for the
/// destination to accept its disks before any data moves, and every migration waits there
/// after END for the destination's outcome: only once it has loaded everything is the
/// migration complete, and if it fails instead the guest runs on here.
///
/// `hooks.stopped` is called when the stop-and-copy pauses a running guest; `hooks.settle`
/// is called with the outcome before `info migrate` shows it, while the VM's run
/// state is still held (from the stop-and-copy on): the caller records there what the
/// machine's run state becomes, so no monitor command sees the outcome without it.
#[cfg(test)]
pub fn run(
    vm: &Vm,
    out: Box<dyn Write + Send>,
    reply: Option<Box<dyn Read + Send>>,
    shared: &Shared,
    mode: Mode,
    settle: &dyn Fn(&Result<(), Stop>),
) -> Result<(), Stop> {
    let hooks = RunStateHooks {
        stopped: &|| {},
        settle,
        channel: None,
    };
    run_with(vm, out, reply, shared, mode, &hooks)
}

/// [`run`], telling the caller also when the stop-and-copy pauses a running guest.
pub fn run_with(
    vm: &Vm,
    out: Box<dyn Write + Send>,
    reply: Option<Box<dyn Read + Send>>,
    shared: &Shared,
    mode: Mode,
    hooks: &RunStateHooks<'_>,
) -> Result<(), Stop> {
    let mut m = Outgoing {
        vm,
        shared,
        mode,
        start: Instant::now(),
        reply_expected: reply.is_some(),
        postcopy_started: false,
        reply,
        hold: None,
        was_running: false,
        paused_here: false,
        handed_over: false,
        downtime_start: None,
        stopped: hooks.stopped,
        log: None,
    };
    m.begin_figures();
    let result = (|| {
        let mut sx = m.setup(out, hooks.channel)?;
        let last = m.precopy(&mut sx)?;
        if shared.postcopy_requested() {
            return m.postcopy(&mut sx, last);
        }
        m.stop_and_copy(&mut sx, &last)?;
        m.switch_over(&mut sx)
    })();
    m.end(result, hooks.settle)
}

/// How the caller's run state follows the migration (see [`run`]).
pub struct RunStateHooks<'a> {
    pub stopped: &'a dyn Fn(),
    pub settle: &'a dyn Fn(&Result<(), Stop>),
    /// Opens a multifd channel (`tcp:` and `unix:` only; none where it cannot be done).
    pub channel: Option<Connector<'a>>,
}

impl<'a> Outgoing<'a> {
    /// Fresh figures for this migration (the caller announced `setup` already).
    fn begin_figures(&self) {
        let mut s = lock(&self.shared.stats);
        *s = Stats {
            status: Status::Setup,
            started: Some(self.start),
            total_ram: self.vm.mem_size(),
            remaining: self.vm.mem_size(),
            ..Stats::default()
        };
        let p = lock(&self.shared.params);
        s.expected_downtime_ms = p.downtime_limit_ms;
        s.xbzrle = p.xbzrle.then(|| super::xbzrle::Counters {
            cache_size: p.xbzrle_cache_size,
            ..Default::default()
        });
    }

    /// The pages written since the last look (the dirty log started with the first round).
    fn collect(&mut self) -> Result<Vec<Bitmap>, Stop> {
        let vm = self.vm;
        match self.log.as_mut() {
            Some(log) => log.collect(vm.fd(), vm.ram()).map_err(|e| Failure::Dirty(e).into()),
            None => Ok(Vec::new()),
        }
    }

    fn setup_done(&self) {
        lock(&self.shared.stats).setup_ms = self.start.elapsed().as_millis() as u64;
        self.shared.set_status(Status::Active);
    }

    /// Set-up: the configuration and the disks; for a block migration, the destination's
    /// consent to take the disks, then their bulk copy while the guest runs.
    fn setup(&mut self, out: Box<dyn Write + Send>, channel: Option<Connector<'_>>) -> Result<Sender<'a, Out>, Stop> {
        let w = Writer::new(std::io::BufWriter::with_capacity(1 << 20, out)).map_err(io_err)?;
        let mut sx = Sender {
            vm: self.vm,
            w,
            pacer: Pacer::new(self.shared),
            shared: self.shared,
            buf: Vec::new(),
            pages_sent: 0,
            block: None,
            cursor: (0, 0),
            xb: None,
            mf: None,
            mf_seen: (0, 0, 0),
            mf_raw: 0,
        };
        sx.w.config(self.vm.mem_size(), self.vm.vcpu_count() as u32, "pc").map_err(io_err)?;
        let (xbzrle, cache_size, postcopy, multifd) = {
            let p = lock(&self.shared.params);
            (
                p.xbzrle,
                p.xbzrle_cache_size,
                p.postcopy_ram,
                p.multifd.then(|| p.multifd_settings()),
            )
        };
        let caps = Caps {
            xbzrle,
            postcopy,
            multifd: multifd.is_some(),
        };
        sx.w.caps(caps.to_flags()).map_err(io_err)?;
        let ram_end = self.vm.ram().iter().map(|r| r.start_addr().0 + r.len()).max().unwrap_or(0);
        // As in QEMU 7.2, with multifd the pages go to the channels and xbzrle is unused.
        match multifd {
            Some(s) => sx.open_multifd(&s, channel, self.reply.as_mut())?,
            None => sx.xb = xbzrle.then(|| XbzrleSender::new(cache_size, self.vm.mem_size(), ram_end)),
        }
        let announce = disks::describe(self.vm, self.mode).map_err(Failure::Disks)?;
        sx.w.disks(&announce.encode()).map_err(io_err)?;
        if self.mode != Mode::Shared {
            sx.w.flush().map_err(io_err)?;
            if let Some(r) = self.reply.as_mut() {
                disks::reply::answer(r).map_err(Failure::Reply)?;
            }
            sx.block = Some(BlockState::start(self.vm, &announce));
            self.setup_done();
            // QEMU's order: the disks first (RAM waits), then RAM pre-copy with both.
            sx.send_disks_bulk()?;
        }
        Ok(sx)
    }

    /// Pauses the guest for the switch (stop-and-copy or post-copy): the downtime starts.
    fn pause_for_switch(&mut self) {
        let vm = self.vm;
        // Write back what the images hold while the guest still runs, so the flush of the
        // hand-over (inside the pause) has little left to do.
        for d in vm.disks() {
            let _ = lock(&d.backend).flush();
        }
        self.downtime_start = Some(Instant::now());
        let held = vm.hold_run_state();
        self.was_running = !vm.is_paused();
        self.hold = Some(held);
        vm.pause();
        self.paused_here = true;
        if self.was_running {
            (self.stopped)();
        }
    }

    /// Stop-and-copy: pause the guest, send the round that fit and what was dirtied
    /// since, at full speed, then the machine state.
    fn stop_and_copy<W: Write>(&mut self, sx: &mut Sender<'a, W>, last: &Round) -> Result<(), Stop> {
        let vm = self.vm;
        self.pause_for_switch();
        lock(&self.shared.stats).precopy_bytes = sx.w.bytes() - sx.disk_wire();
        sx.pacer.limited = false;
        sx.send_round(last)?;
        let after = Round {
            bitmaps: self.collect()?,
            taken: sx.block.as_mut().map(|b| b.take().0),
            bytes: 0,
        };
        let pass = {
            let mut s = lock(&self.shared.stats);
            s.dirty_sync_count += 1;
            s.dirty_sync_count
        };
        self.shared.pass(pass);
        sx.multifd_sync()?;
        sx.send_round(&after)?;
        sx.multifd_finish()?;
        if let Some(xb) = sx.xb.as_mut() {
            xb.close_period();
            lock(&self.shared.stats).xbzrle = Some(xb.counters);
        }
        let state = vm.save_state().map_err(Failure::State)?;
        sx.w.state(&devices::state::VersionedState::to_bytes(&state)).map_err(io_err)
    }

    /// Switch-over: commit (no cancel from here), hand the disks over, END, and the
    /// destination's answer; then the figures of the pause.
    fn switch_over<W: Write>(&mut self, sx: &mut Sender<'a, W>) -> Result<(), Stop> {
        self.shared.commit()?;
        self.handed_over = true;
        self.vm.inactivate_disks().map_err(Failure::HandOver)?;
        let pages = sx.pages_sent;
        sx.w.end(pages).map_err(io_err)?;
        sx.w.flush().map_err(io_err)?;
        if let Some(r) = self.reply.as_mut() {
            end_answer(r.as_mut())?;
        }
        let mut s = lock(&self.shared.stats);
        s.downtime_bytes = sx.w.bytes() - sx.disk_wire() - s.precopy_bytes;
        s.transferred = sx.wire_bytes();
        // Until the destination said it has everything: its guest runs from then.
        s.downtime_ms = self.downtime_start.map_or(0, |t| t.elapsed().as_millis() as u64);
        s.disk_bytes = sx.disk_wire();
        Ok(())
    }

    /// The end, whatever happened: logging off, the outcome classified, the disks and the
    /// guest given back after a failure, the caller's run state settled, the last status.
    /// After a failure logging goes off first, before the guest runs on here; after a
    /// success the guest stays paused, and logging goes off after the last figures (as in
    /// QEMU, its cost is no part of the migration's time: at 64 GiB KVM walks every page).
    fn end(mut self, result: Result<(), Stop>, settle: &dyn Fn(&Result<(), Stop>)) -> Result<(), Stop> {
        let vm = self.vm;
        if result.is_err() {
            self.stop_log();
        }
        // Whatever the outcome, the guest (here, or the destination's) runs at full speed.
        vm.set_throttle(0);
        lock(&self.shared.stats).throttle_pct = 0;
        for d in vm.disks() {
            d.dirty.stop();
        }
        let mut result = self.classify(result);
        if self.postcopy_started
            && let Err(e) = &result
            && !matches!(e, Stop::Undecided(_) | Stop::Cancelled)
        {
            result = Err(Undecided::Postcopy(e.to_string()).into());
        }
        // Failed after the hand-over began: take the images back before the guest runs. If
        // they cannot be (the destination holds them after all), the guest must not run
        // here: it stays paused, as when the destination's answer never came.
        if result.is_err()
            && !matches!(result, Err(Stop::Undecided(_)))
            && !self.postcopy_started
            && self.handed_over
            && let Err(e) = vm.activate_disks()
        {
            result = Err(Undecided::DisksHeld(e).into());
        }
        if let Err(stop) = &result
            && self.paused_here
            && self.was_running
            && !self.postcopy_started
            && !matches!(stop, Stop::Undecided(_))
        {
            vm.resume();
        }
        settle(&result);
        self.final_figures(&result);
        self.stop_log();
        drop(self.hold.take());
        result
    }

    fn stop_log(&mut self) {
        if let Some(log) = self.log.take() {
            log.stop(self.vm.fd(), self.vm.ram());
        }
    }

    /// A cancel breaks the connection on purpose: the write error it causes is the
    /// cancel (or the machine's own reason). A peer that closed may have said why.
    fn classify(&mut self, result: Result<(), Stop>) -> Result<(), Stop> {
        match result {
            Err(Stop::Failed(_) | Stop::Io(_) | Stop::Cancelled) if self.shared.cancelled() => {
                match lock(&self.shared.abort_reason).clone() {
                    Some(why) => Err(Failure::Aborted(why).into()),
                    None => Err(Stop::Cancelled),
                }
            }
            Err(Stop::Io(e)) => Err(Stop::Failed(match closed_with_reason(&e, self.reply.as_mut()) {
                Some(why) => Failure::Reply(ReplyError::Refused(why)),
                None => Failure::Socket(e),
            })),
            other => other,
        }
    }

    fn final_figures(&self, result: &Result<(), Stop>) {
        let status = {
            let mut s = lock(&self.shared.stats);
            s.total_time_ms = self.start.elapsed().as_millis() as u64;
            s.started = None;
            match result {
                Ok(()) => {
                    s.remaining = 0;
                    let secs = s.total_time_ms.saturating_sub(s.setup_ms).max(1) as f64 / 1000.0;
                    s.mbps = s.transferred as f64 * 8.0 / secs / 1e6;
                    Status::Completed
                }
                Err(Stop::Cancelled) => Status::Cancelled,
                Err(e) => {
                    s.error = Some(e.to_string());
                    Status::Failed
                }
            }
        };
        self.shared.set_status(status);
    }
}
