//! The source side: pre-copy of RAM while the guest runs, then a short stop to send the
//! last dirty pages and the machine state.
//!
//! Pass 0 sends every page the guest ever touched (untouched pages are known zero and cost
//! nothing); later passes send what the dirty log reports. Every 100 ms window measures the
//! bandwidth; once the dirty data left fits in `downtime-limit` at that bandwidth, the VM is
//! stopped and the rest goes unlimited. QEMU 7.2's rules, godwit's stream.

use super::dirty::{self, Bitmap, PAGE};
use super::disks::{self, Mode};
use super::info::{Stats, Status};
use super::params::Params;
use super::send_block::BlockState;
use super::stream::{PAGES_PER_RECORD, Writer};
use crate::vm::Vm;
use devices::bus::lock;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

const WINDOW: Duration = Duration::from_millis(100);

/// State shared between the migration thread and the monitor.
#[derive(Default)]
pub struct Shared {
    pub stats: Mutex<Stats>,
    pub params: Mutex<Params>,
    pub cancel: AtomicBool,
    /// Breaks the connection, for a cancel; none once the migration is committed.
    abort: Mutex<Option<super::uri::Aborter>>,
    /// END is on its way: from here the destination decides, and a cancel could only make
    /// both sides run the guest, so it is refused.
    committed: AtomicBool,
    /// Why the migration was stopped, when not by `migrate_cancel` (see [`Shared::abort_for`]).
    abort_reason: Mutex<Option<String>>,
}

impl Shared {
    /// Clears what a previous migration left: no cancel asked, nothing committed.
    pub fn begin(&self) {
        let mut slot = lock(&self.abort);
        slot.take();
        self.cancel.store(false, Ordering::SeqCst);
        self.committed.store(false, Ordering::SeqCst);
        lock(&self.abort_reason).take();
    }

    /// Readies a new migration over a connection that `abort` breaks. A cancel asked for
    /// before the connection existed breaks it at once.
    pub fn connected(&self, abort: super::uri::Aborter) {
        let mut slot = lock(&self.abort);
        if self.cancel.load(Ordering::SeqCst) {
            abort();
        }
        *slot = Some(abort);
    }

    /// The connection is closed; nothing is left to break.
    pub fn disconnected(&self) {
        lock(&self.abort).take();
    }

    /// `migrate_cancel`: stops the migration unless END is already on its way; false then.
    pub fn request_cancel(&self) -> bool {
        let slot = lock(&self.abort);
        if self.committed.load(Ordering::SeqCst) {
            return false;
        }
        self.cancel.store(true, Ordering::SeqCst);
        lock(&self.stats).status = Status::Cancelling;
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
    fn commit(&self) -> Result<(), Stop> {
        let _slot = lock(&self.abort);
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Stop::Cancelled);
        }
        self.committed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Why a migration stopped early.
pub enum Stop {
    Cancelled,
    Failed(String),
    /// Writing the stream failed; callers say where it was going.
    Io(std::io::Error),
    /// Everything was sent but the destination did not say whether it runs the guest: the
    /// guest stays paused and the disks handed over (`cont` takes them back, unless the
    /// destination holds them).
    Undecided(String),
}

/// Counts what goes out, holds the average rate to `max-bandwidth` (a token bucket that
/// carries every byte over, so large records cannot overshoot it), and measures the
/// bandwidth per 100 ms window the way QEMU's `migration_update_counters` does.
pub(super) struct Pacer<'a> {
    shared: &'a Shared,
    window_start: Instant,
    window_bytes: u64,
    window_pages: u64,
    /// Bytes per millisecond, from the last complete window (0 until one is measured).
    bandwidth: f64,
    limited: bool,
    /// The limit the bucket was started with, when it was started, and bytes sent since.
    bucket: Option<(u64, Instant, u64)>,
}

impl Pacer<'_> {
    pub(super) fn account(&mut self, bytes: u64, pages: u64) {
        self.window_bytes += bytes;
        self.window_pages += pages;
        let limit = if self.limited { lock(&self.shared.params).max_bandwidth } else { 0 };
        if limit == 0 {
            self.bucket = None;
        } else {
            // A new or changed limit starts a fresh bucket.
            let (l, start, sent) = match self.bucket {
                Some((l, start, sent)) if l == limit => (l, start, sent + bytes),
                _ => (limit, Instant::now(), bytes),
            };
            self.bucket = Some((l, start, sent));
            let due = Duration::from_secs_f64(sent as f64 / l as f64);
            let elapsed = start.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        let elapsed = self.window_start.elapsed();
        if elapsed >= WINDOW {
            let ms = elapsed.as_secs_f64() * 1000.0;
            self.bandwidth = self.window_bytes as f64 / ms;
            let mut s = lock(&self.shared.stats);
            s.mbps = self.window_bytes as f64 * 8.0 / (ms / 1000.0) / 1e6;
            s.pages_per_second = (self.window_pages as f64 / (ms / 1000.0)) as u64;
            if self.window_bytes > 10_000 && self.bandwidth > 0.0 {
                let disk_left = s.disk.map_or(0, |d| d.1);
                s.expected_downtime_ms = ((s.remaining + disk_left) as f64 / self.bandwidth) as u64;
            }
            drop(s);
            self.window_start = Instant::now();
            self.window_bytes = 0;
            self.window_pages = 0;
        }
    }
}

fn io_err(e: std::io::Error) -> Stop {
    Stop::Io(e)
}

pub(super) fn is_zero(page: &[u8]) -> bool {
    let (pre, words, post) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets.
        unsafe { page.align_to::<u64>() }
    };
    pre.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && post.iter().all(|b| *b == 0)
}

/// Writes `count` guest pages from `gpa` as records: runs of zero pages as ZERO ranges,
/// the rest as PAGES. Returns (zero pages, data pages). The pages are copied into `buf`
/// first, since a running guest may be writing them meanwhile.
pub fn write_pages<W: Write>(
    w: &mut Writer<W>,
    ram: &crate::memory::GuestRam,
    gpa: u64,
    count: u64,
    buf: &mut Vec<u8>,
) -> Result<(u64, u64), Stop> {
    buf.resize((count * PAGE) as usize, 0);
    ram.read_slice(buf, GuestAddress(gpa)).map_err(|e| Stop::Failed(e.to_string()))?;
    write_page_data(w, gpa, buf)
}

/// Encodes whole pages `data` that belong at `gpa` (see [`write_pages`]).
pub fn write_page_data<W: Write>(w: &mut Writer<W>, gpa: u64, data: &[u8]) -> Result<(u64, u64), Stop> {
    let page = PAGE as usize;
    let (mut zero, mut normal) = (0u64, 0u64);
    let n = data.len() / page;
    let mut i = 0usize;
    while i < n {
        let page_zero = is_zero(&data[i * page..(i + 1) * page]);
        let mut j = i + 1;
        while j < n && is_zero(&data[j * page..(j + 1) * page]) == page_zero {
            j += 1;
        }
        let at = gpa + i as u64 * PAGE;
        if page_zero {
            w.zero(at, (j - i) as u64).map_err(io_err)?;
            zero += (j - i) as u64;
        } else {
            w.pages(at, &data[i * page..j * page]).map_err(io_err)?;
            normal += (j - i) as u64;
        }
        i = j;
    }
    Ok((zero, normal))
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
}

impl<W: Write> Sender<'_, W> {
    pub(super) fn check_cancel(&self) -> Result<(), Stop> {
        if self.shared.cancel.load(Ordering::SeqCst) {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sends `count` pages from `gpa`: zero pages as ranges, the rest as data.
    fn send_run(&mut self, gpa: u64, count: u64) -> Result<(), Stop> {
        let before = self.w.bytes();
        let (zero, normal) = write_pages(&mut self.w, self.vm.ram(), gpa, count, &mut self.buf)?;
        let bytes = self.w.bytes() - before;
        {
            let mut s = lock(&self.shared.stats);
            s.duplicate += zero;
            s.normal += normal;
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
        Ok(())
    }
}

/// Sends one round's dirty RAM pages, then its dirty disk granules.
fn send_round<W: Write>(sx: &mut Sender<'_, W>, bitmaps: &[Bitmap], taken: Option<&super::send_block::Taken>) -> Result<(), Stop> {
    sx.send_bitmaps(bitmaps)?;
    match taken {
        Some(t) => sx.send_disk_dirty(t),
        None => Ok(()),
    }
}

/// Waits for the destination's outcome after END. Its refusal, or the connection closing
/// cleanly without an answer (it is gone, so it runs nothing), fails the migration and
/// the guest runs on here. Anything else (silence past the stall timeout, a reset
/// connection, which may have swallowed a `GWOK` already sent) leaves it undecided.
fn end_answer(r: &mut dyn Read) -> Result<(), Stop> {
    use std::io::ErrorKind::{InvalidData, TimedOut, UnexpectedEof, WouldBlock};
    let stays = "the VM stays paused ('cont' resumes it here if the destination does not hold its disks)";
    match disks::reply::answer(r) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Stop::Failed(format!("the destination could not load the migration: {e}"))),
        Err(e) if matches!(e.kind(), UnexpectedEof | InvalidData) => Err(Stop::Failed(disks::reply::no_answer(&e))),
        Err(e) if matches!(e.kind(), TimedOut | WouldBlock) => Err(Stop::Undecided(format!(
            "the destination did not confirm the switch-over within {} s; {stays}",
            super::uri::STALL_TIMEOUT.as_secs()
        ))),
        Err(e) => Err(Stop::Undecided(format!(
            "the destination's answer to the switch-over was lost: {}; {stays}",
            crate::errtext::io(&e)
        ))),
    }
}

/// A version 3 destination that gives up on a stream says why on the way back, then
/// closes: when the peer closed the connection, its reason, if it left one.
fn closed_with_reason(e: &std::io::Error, reply: Option<&mut Box<dyn Read + Send>>) -> Option<String> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    if !matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted) {
        return None;
    }
    disks::reply::answer(reply?.as_mut()).ok()?.err()
}

/// Runs one outgoing migration to completion. On success the VM is left paused (the
/// caller puts it in `postmigrate`) and its disks handed over; on failure or cancel it
/// runs again, with its disks, if it was running. `reply` is the connection's way back
/// (none for `exec:`); a block migration (`mode` Full or Incremental) waits there for the
/// destination to accept its disks before any data moves, and every migration waits there
/// after END for the destination's outcome: only once it has loaded everything is the
/// migration complete, and if it fails instead the guest runs on here.
///
/// `settle` is called with the outcome before `info migrate` shows it, while the VM's run
/// state is still held (from the stop-and-copy on): the caller records there what the
/// machine's run state becomes, so no monitor command sees the outcome without it.
pub fn run(
    vm: &Vm,
    out: Box<dyn Write + Send>,
    mut reply: Option<Box<dyn Read + Send>>,
    shared: &Arc<Shared>,
    mode: Mode,
    settle: &dyn Fn(&Result<(), Stop>),
) -> Result<(), Stop> {
    let start = Instant::now();
    let total_pages = vm.mem_size() / PAGE;
    {
        let mut s = lock(&shared.stats);
        *s = Stats {
            status: Status::Setup,
            total_ram: vm.mem_size(),
            remaining: vm.mem_size(),
            ..Stats::default()
        };
        s.expected_downtime_ms = lock(&shared.params).downtime_limit_ms;
    }
    // Whether the guest ran when the stop-and-copy paused it (the user may `stop` or
    // `cont` during the pre-copy): what a failure after that pause restores.
    let mut was_running = false;
    let mut hold = None;
    let mut paused_here = false;
    let mut handed_over = false;
    let result = (|| -> Result<(), Stop> {
        let w = Writer::new(std::io::BufWriter::with_capacity(1 << 20, out)).map_err(io_err)?;
        let mut sx = Sender {
            vm,
            w,
            pacer: Pacer {
                shared,
                window_start: Instant::now(),
                window_bytes: 0,
                window_pages: 0,
                bandwidth: 0.0,
                limited: true,
                bucket: None,
            },
            shared,
            buf: Vec::new(),
            pages_sent: 0,
            block: None,
        };
        sx.w.config(vm.mem_size(), vm.vcpu_count() as u32, "pc").map_err(io_err)?;
        let announce = disks::describe(vm, mode).map_err(Stop::Failed)?;
        sx.w.disks(&announce.encode()).map_err(io_err)?;
        if mode != Mode::Shared {
            sx.w.flush().map_err(io_err)?;
            if let Some(r) = reply.as_mut() {
                disks::reply::read(r).map_err(Stop::Failed)?;
            }
            sx.block = Some(BlockState::start(vm, &announce));
            {
                let mut s = lock(&shared.stats);
                s.setup_ms = start.elapsed().as_millis() as u64;
                s.status = Status::Active;
            }
            // QEMU's order: the disks first (RAM waits), then RAM pre-copy with both.
            sx.send_disks_bulk()?;
        }
        dirty::start(vm.fd(), vm.ram()).map_err(Stop::Failed)?;
        let log_start = Instant::now();
        let touched = dirty::touched(vm.ram()).map_err(Stop::Failed)?;
        {
            let mut s = lock(&shared.stats);
            if mode == Mode::Shared {
                s.setup_ms = start.elapsed().as_millis() as u64;
            }
            s.status = Status::Active;
            s.dirty_sync_count = 1;
            s.transferred = sx.w.bytes();
            // Untouched pages are zero pages that need no sending.
            let untouched = total_pages - dirty::count(&touched);
            s.duplicate += untouched;
            s.remaining -= untouched * PAGE;
        }
        sx.send_bitmaps(&touched)?;
        // Dirty pages per second, over periods of at least a second (as QEMU measures it).
        let (mut rate_start, mut rate_pages) = (log_start, 0u64);
        let mut round = 0u32;
        let (mut prev_dirty, mut extra_rounds) = (None::<u64>, 0u32);
        loop {
            sx.check_cancel()?;
            let bitmaps = dirty::collect(vm.fd(), vm.ram()).map_err(Stop::Failed)?;
            let dirty_pages = dirty::count(&bitmaps);
            let (taken, disk_bytes) = match sx.block.as_mut() {
                Some(b) => {
                    let (t, n) = b.take();
                    (Some(t), n)
                }
                None => (None, 0),
            };
            round += 1;
            sx.w.sync(round).map_err(io_err)?;
            let limit_ms = lock(&shared.params).downtime_limit_ms;
            let threshold = sx.pacer.bandwidth * limit_ms as f64;
            {
                let mut s = lock(&shared.stats);
                s.dirty_sync_count += 1;
                s.remaining = dirty_pages * PAGE;
                if let Some((done, _, all)) = s.disk {
                    s.disk = Some((done, disk_bytes, all));
                }
                rate_pages += dirty_pages;
                let secs = rate_start.elapsed().as_secs_f64();
                if secs >= 1.0 {
                    s.dirty_pages_rate = (rate_pages as f64 / secs) as u64;
                    rate_start = Instant::now();
                    rate_pages = 0;
                }
            }
            // QEMU stops as soon as the dirty data (RAM and disk) fits the downtime limit.
            // godwit also wants the pause short: while each round still cuts the dirty set
            // by a third or more, one more round (at most 8) beats stopping with it; once
            // it is down to ~5 ms of data, or stops shrinking, stop.
            let dirty_bytes = dirty_pages * PAGE + disk_bytes;
            let bytes = dirty_bytes as f64;
            let fits = dirty_bytes == 0 || bytes <= threshold;
            let shrinking = prev_dirty.is_none_or(|p| dirty_bytes * 3 < p * 2);
            let tiny = bytes <= sx.pacer.bandwidth * 5.0;
            prev_dirty = Some(dirty_bytes);
            if fits && !tiny && shrinking && extra_rounds < 8 {
                extra_rounds += 1;
                send_round(&mut sx, &bitmaps, taken.as_ref())?;
                continue;
            }
            if fits {
                // Stop and copy: pause, last dirty pages and granules at full speed, then
                // the state; the disks are handed over before the stream ends.
                // Write back what the images hold while the guest still runs, so the flush
                // of the hand-over (inside the pause) has little left to do.
                for d in vm.disks() {
                    let _ = lock(&d.backend).flush();
                }
                let downtime_start = Instant::now();
                let held = vm.hold_run_state();
                was_running = !vm.is_paused();
                hold = Some(held);
                vm.pause();
                paused_here = true;
                let disk_wire = |sx: &Sender<'_, _>| sx.block.as_ref().map_or(0, |b| b.wire);
                let precopy = sx.w.bytes() - disk_wire(&sx);
                lock(&shared.stats).precopy_bytes = precopy;
                sx.pacer.limited = false;
                send_round(&mut sx, &bitmaps, taken.as_ref())?;
                let last = dirty::collect(vm.fd(), vm.ram()).map_err(Stop::Failed)?;
                let last_disk = sx.block.as_mut().map(|b| b.take().0);
                send_round(&mut sx, &last, last_disk.as_ref())?;
                let state = vm.save_state().map_err(|e| Stop::Failed(e.to_string()))?;
                sx.w.state(&devices::state::VersionedState::to_bytes(&state)).map_err(io_err)?;
                shared.commit()?;
                handed_over = true;
                vm.inactivate_disks().map_err(Stop::Failed)?;
                let pages = sx.pages_sent;
                sx.w.end(pages).map_err(io_err)?;
                sx.w.flush().map_err(io_err)?;
                if let Some(r) = reply.as_mut() {
                    end_answer(r.as_mut())?;
                }
                let mut s = lock(&shared.stats);
                s.downtime_bytes = sx.w.bytes() - disk_wire(&sx) - precopy;
                s.transferred = sx.w.bytes();
                // Until the destination said it has everything: its guest runs from then.
                s.downtime_ms = downtime_start.elapsed().as_millis() as u64;
                s.dirty_sync_count += 1;
                if let Some(b) = sx.block.as_ref() {
                    s.disk_bytes = b.wire;
                }
                return Ok(());
            }
            send_round(&mut sx, &bitmaps, taken.as_ref())?;
        }
    })();
    dirty::stop(vm.fd(), vm.ram());
    for d in vm.disks() {
        d.dirty.stop();
    }
    // A cancel breaks the connection on purpose; the write error it causes is the cancel.
    let mut result = match result {
        Err(Stop::Failed(_) | Stop::Io(_) | Stop::Cancelled) if shared.cancel.load(Ordering::SeqCst) => {
            match lock(&shared.abort_reason).clone() {
                Some(why) => Err(Stop::Failed(why)),
                None => Err(Stop::Cancelled),
            }
        }
        Err(Stop::Io(e)) => Err(Stop::Failed(match closed_with_reason(&e, reply.as_mut()) {
            Some(why) => format!("the destination refused: {why}"),
            None => format!("Unable to write to socket: {}", crate::errtext::io(&e)),
        })),
        other => other,
    };
    // Failed after the hand-over began: take the images back before the guest runs. If
    // they cannot be (the destination holds them after all), the guest must not run here:
    // it stays paused, as when the destination's answer never came.
    if result.is_err()
        && !matches!(result, Err(Stop::Undecided(_)))
        && handed_over
        && let Err(e) = vm.activate_disks()
    {
        result = Err(Stop::Undecided(format!(
            "the migration failed and the disks cannot be taken back: {e}; the VM stays paused"
        )));
    }
    if let Err(stop) = &result
        && paused_here
        && was_running
        && !matches!(stop, Stop::Undecided(_))
    {
        vm.resume();
    }
    settle(&result);
    let mut s = lock(&shared.stats);
    s.total_time_ms = start.elapsed().as_millis() as u64;
    match &result {
        Ok(()) => {
            s.status = Status::Completed;
            s.remaining = 0;
            let secs = s.total_time_ms.saturating_sub(s.setup_ms).max(1) as f64 / 1000.0;
            s.mbps = s.transferred as f64 * 8.0 / secs / 1e6;
        }
        Err(Stop::Cancelled) => s.status = Status::Cancelled,
        Err(Stop::Failed(e) | Stop::Undecided(e)) => {
            s.status = Status::Failed;
            s.error = Some(e.clone());
        }
        Err(Stop::Io(e)) => {
            s.status = Status::Failed;
            s.error = Some(crate::errtext::io(e));
        }
    }
    drop(s);
    drop(hold);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counting(aborts: &Arc<AtomicUsize>) -> crate::migration::uri::Aborter {
        let a = aborts.clone();
        Box::new(move || {
            a.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[test]
    fn a_cancel_wins_before_the_commit_and_is_refused_after_it() {
        let aborts = Arc::new(AtomicUsize::new(0));
        let s = Shared::default();
        s.begin();
        s.connected(counting(&aborts));
        assert!(s.request_cancel());
        assert_eq!(aborts.load(Ordering::SeqCst), 1, "the connection was broken");
        assert!(matches!(s.commit(), Err(Stop::Cancelled)));

        // The next migration starts clean; once committed, a cancel changes nothing.
        s.begin();
        lock(&s.stats).status = Status::Active;
        s.connected(counting(&aborts));
        assert!(s.commit().is_ok());
        assert!(!s.request_cancel());
        assert_eq!(aborts.load(Ordering::SeqCst), 1);
        assert_eq!(lock(&s.stats).status, Status::Active);

        // A cancel asked before the connection exists breaks it as soon as it does.
        s.begin();
        assert!(s.request_cancel());
        s.connected(counting(&aborts));
        assert_eq!(aborts.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_answer_to_end_decides_the_outcome() {
        let mut ok = Vec::new();
        disks::reply::send(&mut ok, &Ok(())).unwrap();
        assert!(end_answer(&mut &ok[..]).is_ok());
        let mut no = Vec::new();
        disks::reply::send(&mut no, &Err("Failed to get \"write\" lock".into())).unwrap();
        assert!(matches!(end_answer(&mut &no[..]), Err(Stop::Failed(e)) if e.contains("could not load the migration: Failed to get")));
        // Closed without a word: the destination is gone and runs nothing.
        assert!(matches!(end_answer(&mut &b""[..]), Err(Stop::Failed(e)) if e.contains("connection was closed")));
        // A reset connection may have swallowed a GWOK: undecided.
        struct Reset;
        impl Read for Reset {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from_raw_os_error(libc::ECONNRESET))
            }
        }
        assert!(
            matches!(end_answer(&mut Reset), Err(Stop::Undecided(e)) if e.contains("answer to the switch-over was lost: Connection reset by peer"))
        );
        // Silent but there: undecided.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert!(matches!(end_answer(&mut &a), Err(Stop::Undecided(_))));
    }
}
