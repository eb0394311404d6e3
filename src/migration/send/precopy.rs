//! Pre-copy: every page the guest touched, then what it dirtied, sync after sync, until
//! what is left fits the downtime limit (or the convergence guarantee says stop now).
//!
//! A sync (a look at the dirty logs) comes at the end of every round, and also in the
//! middle of a long one: every [`PERIOD`], so the throttle follows the guest, and, while
//! `max-bandwidth` holds the pace, as soon as what is left of the round plus what the
//! guest has dirtied since (at its measured rate) looks like it fits. The pages of the
//! round not sent yet join those the sync found, and the scan goes on where it was.

use super::converge::{AutoConverge, Guarantee, PERIOD, Step};
use super::{Failure, Outgoing, Pacer, Round, Sender, Stop, io_err};
use crate::migration::dirty::{self, PAGE};
use crate::migration::dirtylog::DirtyLog;
use crate::migration::disks::Mode;
use devices::bus::lock;
use std::io::Write;
use std::time::{Duration, Instant};

/// The soonest an early sync (one that expects a fit) follows the last one.
const EARLY: Duration = Duration::from_millis(20);

/// A first round sent within this long was ~5 ms of data or less (an idle guest): another
/// sync would cost more than what it leaves to the stop-and-copy, whose own sync catches
/// what the guest wrote meanwhile ([`Outgoing::should_stop`]'s "tiny").
const QUICK_FIRST: Duration = Duration::from_millis(5);

/// What the stop decision remembers from sync to sync.
struct Course {
    auto: AutoConverge,
    guarantee: Option<Guarantee>,
    /// Bytes left after the previous sync.
    prev_left: Option<u64>,
    extra_rounds: u32,
    last_sync: Instant,
    /// The guest's dirty rate at the last sync, bytes per ms.
    dirty_rate: f64,
}

/// Whether a sync is due in the middle of a round, with `left` pages of it unsent.
fn sync_due(pacer: &Pacer<'_>, left: u64, last_sync: Instant, dirty_rate: f64, limit_ms: u64) -> bool {
    let since = last_sync.elapsed();
    if since >= PERIOD {
        return true;
    }
    if !pacer.capped || since < EARLY || pacer.bandwidth <= 0.0 {
        return false;
    }
    let expected = (left * PAGE) as f64 + dirty_rate * since.as_secs_f64() * 1000.0;
    expected <= pacer.bandwidth * limit_ms as f64
}

impl<'a> Outgoing<'a> {
    /// Pre-copy: returns the round to send in the stop-and-copy, unsent.
    pub(super) fn precopy<W: Write>(&mut self, sx: &mut Sender<'a, W>) -> Result<Round, Stop> {
        let mut round = self.first_round(sx)?;
        let now = Instant::now();
        let mut course = Course {
            auto: AutoConverge::new(now, sx.sent_bytes()),
            guarantee: Guarantee::new(self.start, &lock(&self.shared.params)),
            prev_left: None,
            extra_rounds: 0,
            last_sync: now,
            dirty_rate: 0.0,
        };
        // Dirty pages per second, over periods of at least a second (as QEMU measures it).
        let mut rate = (now, 0u64);
        let mut round_no = 0u32;
        loop {
            let limit_ms = lock(&self.shared.params).downtime_limit_ms;
            let (last, dr) = (course.last_sync, course.dirty_rate);
            let sending = Instant::now();
            let shared = self.shared;
            let due = |p: &Pacer<'_>, left| shared.postcopy_requested() || sync_due(p, left, last, dr, limit_ms);
            let done = sx.send_bitmaps_until(&mut round.bitmaps, &due)?;
            if let Some(t) = round.taken.take() {
                sx.send_disk_dirty(&t)?;
            }
            sx.check_cancel()?;
            if round_no == 0 && done && sx.block.is_none() && sending.elapsed() <= QUICK_FIRST {
                // The destination loads the first round while the stop-and-copy syncs.
                sx.w.flush().map_err(io_err)?;
                return Ok(Round::empty());
            }
            let mut next = self.take_round(sx, &mut rate)?;
            let now = Instant::now();
            let found = next.bytes;
            course.dirty_rate = found as f64 / (now.duration_since(course.last_sync).as_secs_f64() * 1000.0).max(1.0);
            course.last_sync = now;
            if !done {
                self.carry_over(&mut next, &round);
            }
            round_no += 1;
            sx.multifd_sync()?;
            sx.w.sync(round_no).map_err(io_err)?;
            let fits = self.steer(sx, &mut course, now, found, &next);
            if self.shared.postcopy_requested() || self.should_stop(sx, &mut course, now, fits, next.bytes) {
                return Ok(next);
            }
            round = next;
        }
    }

    /// Turns dirty logging on, finds the touched pages (the first round), and counts the
    /// untouched ones as sent zero pages.
    fn first_round<W: Write>(&mut self, sx: &mut Sender<'a, W>) -> Result<Round, Stop> {
        let vm = self.vm;
        let log = self.log.insert(DirtyLog::start(vm.fd(), vm.ram()).map_err(Failure::Dirty)?);
        let touched = log.first(vm.fd(), vm.ram()).map_err(Failure::Dirty)?;
        let pages = dirty::count(&touched);
        {
            let mut s = lock(&self.shared.stats);
            s.dirty_sync_count = 1;
            s.transferred = sx.w.bytes();
            // Untouched pages are zero pages that need no sending.
            let untouched = vm.mem_size() / PAGE - pages;
            s.duplicate += untouched;
            s.remaining -= untouched * PAGE;
        }
        // As in QEMU, the first pass over the dirty log belongs to the set-up.
        self.shared.pass(1);
        if self.mode == Mode::Shared {
            self.setup_done();
        }
        Ok(Round {
            bitmaps: touched,
            taken: None,
            bytes: pages * PAGE,
        })
    }

    /// The pages of `old` that were not sent join `next` (each goes once, as it is now).
    fn carry_over(&self, next: &mut Round, old: &Round) {
        let before = dirty::count(&next.bitmaps);
        dirty::merge(&mut next.bitmaps, &old.bitmaps);
        let after = dirty::count(&next.bitmaps);
        next.bytes += (after - before) * PAGE;
        lock(&self.shared.stats).remaining = after * PAGE;
    }

    /// Sets the throttle auto-converge and the guarantee ask for after a sync that found
    /// `found` dirty bytes; returns whether `next` fits the downtime limit.
    fn steer<W: Write>(&self, sx: &Sender<'a, W>, c: &mut Course, now: Instant, found: u64, next: &Round) -> bool {
        let p = lock(&self.shared.params).clone();
        let fits = next.bytes == 0 || next.bytes as f64 <= sx.pacer.rate() * p.downtime_limit_ms as f64;
        let mut pct = 0;
        if p.auto_converge {
            c.auto.sync(now, found, sx.sent_bytes(), &p.throttle);
            pct = c.auto.pct;
        }
        if let Some(g) = c.guarantee.as_mut().filter(|_| !fits) {
            pct = pct.max(g.escalation(now, &p.throttle));
            if g.step.is_some() {
                lock(&self.shared.stats).converge_step = g.step.map(Step::name);
            }
            if g.step == Some(Step::Postcopy) {
                self.shared.request_postcopy();
            }
        }
        // The throttle only goes up during a migration; its end lifts it.
        if pct > self.vm.throttle() {
            self.vm.set_throttle(pct);
            lock(&self.shared.stats).throttle_pct = pct;
        }
        fits
    }

    /// The stop decision after a sync, with `left` bytes dirty. QEMU stops as soon as they
    /// fit the downtime limit. godwit also wants the pause short: while each sync still
    /// cuts the dirty set by a third or more, one more round (at most 8) beats stopping
    /// with it, unless it is down to ~5 ms of data, or the rate limit sets the pace (then a
    /// round costs far more time than the unlimited stop-and-copy saves). The guarantee
    /// stops when the deadline is near, fit or not.
    fn should_stop<W: Write>(&self, sx: &Sender<'a, W>, c: &mut Course, now: Instant, fits: bool, left: u64) -> bool {
        let bw = sx.pacer.rate();
        let shrinking = c.prev_left.is_none_or(|p| left * 3 < p * 2);
        let tiny = left as f64 <= bw * 5.0;
        c.prev_left = Some(left);
        if fits {
            if tiny || !shrinking || c.extra_rounds >= 8 || sx.pacer.capped {
                return true;
            }
            c.extra_rounds += 1;
        }
        match c.guarantee.as_mut() {
            Some(g) if !fits && g.must_stop(now, left, bw) => {
                g.step = Some(Step::StopAndCopy);
                lock(&self.shared.stats).converge_step = g.step.map(Step::name);
                true
            }
            _ => false,
        }
    }

    /// Reads (and clears) the dirty logs of RAM and disks, and updates the figures.
    fn take_round<W: Write>(&mut self, sx: &mut Sender<'a, W>, rate: &mut (Instant, u64)) -> Result<Round, Stop> {
        let bitmaps = self.collect()?;
        let dirty_pages = dirty::count(&bitmaps);
        let cache_size = lock(&self.shared.params).xbzrle_cache_size;
        sx.xbzrle_sync(cache_size);
        let (taken, disk_bytes) = match sx.block.as_mut() {
            Some(b) => {
                let (t, n) = b.take();
                (Some(t), n)
            }
            None => (None, 0),
        };
        let pass = {
            let mut s = lock(&self.shared.stats);
            s.dirty_sync_count += 1;
            s.remaining = dirty_pages * PAGE;
            if let Some((done, _, all)) = s.disk {
                s.disk = Some((done, disk_bytes, all));
            }
            rate.1 += dirty_pages;
            let secs = rate.0.elapsed().as_secs_f64();
            if secs >= 1.0 {
                s.dirty_pages_rate = (rate.1 as f64 / secs) as u64;
                *rate = (Instant::now(), 0);
            }
            s.dirty_sync_count
        };
        self.shared.pass(pass);
        Ok(Round {
            bitmaps,
            taken,
            bytes: dirty_pages * PAGE + disk_bytes,
        })
    }
}
