//! The source's post-copy: once `migrate_start_postcopy` was asked, the pre-copy ends at
//! its next sync; the guest pauses, the pages dirtied since they were sent are named
//! (`DISCARD`), the machine state and `POSTCOPY` follow, and the destination runs the
//! guest. From then on the source answers the destination's page requests first and
//! pushes every other page still owed in between, in small runs; then `END` and the
//! destination's answer. The guest never runs here again.

use super::{Failure, Out, Outgoing, Round, Sender, Stop, Undecided, answer_outcome, io_err};
use crate::migration::dirty::{self, Bitmap, PAGE};
use crate::migration::disks::reply::ReplyError;
use crate::migration::info::Status;
use crate::migration::postcopy::wire::{self, Msg};
use crate::migration::stream::Writer;
use crate::migration::uri::Uri;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use devices::bus::lock;
use std::io::{Read, Write};
use std::time::Instant;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Pages pushed per run between looks at the requests (256 KiB: a request waits little).
const PUSH_RUN: u64 = 64;

/// RAM regions as (guest-physical base, pages).
fn regions(vm: &crate::vm::Vm) -> Vec<(u64, u64)> {
    vm.ram().iter().map(|r| (r.start_addr().0, r.len() / PAGE)).collect()
}

/// Reads the way back on a thread of its own: requests, then the answer.
fn listen(mut r: Box<dyn Read + Send>) -> Receiver<Msg> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let spawned = std::thread::Builder::new().name("postcopy-requests".into()).spawn(move || {
        loop {
            let m = wire::read(r.as_mut());
            // The way back's read timeout only means the destination had nothing to ask.
            if let Msg::Answer(Err(ReplyError::NoAnswer(e))) = &m
                && matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
            {
                continue;
            }
            let last = matches!(m, Msg::Answer(_));
            if tx.send(m).is_err() || last {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        eprintln!("godwit: cannot start the post-copy request thread: {e}");
    }
    rx
}

impl<'a> Outgoing<'a> {
    /// Post-copy, from the end of the pre-copy (`last`: the pages still owed) to the
    /// destination's answer.
    pub(super) fn postcopy(&mut self, sx: &mut Sender<'a, Out>, last: Round) -> Result<(), Stop> {
        let mut left = self.switch(sx, last)?;
        let owed = left.clone();
        sx.pacer.start_postcopy();
        let mut rx = match self.reply.take() {
            Some(r) => listen(r),
            None => crossbeam_channel::never(),
        };
        let start_bytes = sx.w.bytes();
        let result = loop {
            let pushed = self.push(sx, &mut left, &rx, start_bytes);
            let pushed = pushed.and_then(|()| {
                sx.w.end(sx.pages_sent).map_err(io_err)?;
                sx.w.flush().map_err(io_err)
            });
            let result = pushed.and_then(|()| wait_answer(&rx, self.reply_expected));
            lock(&self.shared.stats).postcopy_bytes = sx.w.bytes() - start_bytes;
            lock(&self.shared.stats).transferred = sx.w.bytes();
            match result {
                Err(e) if self.reply_expected && !self.shared.cancelled() && broken(&e) => match self.paused(sx, &owed, &e) {
                    Some((l, r)) => (left, rx) = (l, r),
                    None => break Err(Stop::Cancelled),
                },
                other => break other,
            }
        };
        result.map_err(|e| match e {
            // A cancel breaks the connection on purpose: the guest stays paused here.
            _ if self.shared.cancelled() => Stop::Cancelled,
            Stop::Failed(f) => Undecided::Postcopy(f.to_string()).into(),
            Stop::Io(e) => Undecided::Postcopy(format!("Unable to write to socket: {}", crate::errtext::io(&e))).into(),
            other => other,
        })
    }

    /// The connection broke: `postcopy-paused`, the guest paused here and running at the
    /// destination, until `migrate -r URI` connects anew (or a cancel ends it). Returns
    /// the pages still owed and the new way back.
    fn paused(&mut self, sx: &mut Sender<'a, Out>, owed: &[Bitmap], why: &Stop) -> Option<(Vec<Bitmap>, Receiver<Msg>)> {
        self.shared.disconnected();
        eprintln!("godwit: post-copy paused: {why}");
        self.shared.set_status(Status::PostcopyPaused);
        loop {
            let target = self.shared.wait_resume()?;
            self.shared.set_status(Status::PostcopyRecover);
            match self.reconnect(sx, &target, owed) {
                Ok(x) => {
                    self.shared.set_status(Status::PostcopyActive);
                    return Some(x);
                }
                Err(e) => {
                    eprintln!("godwit: cannot resume the post-copy: {e}");
                    self.shared.set_status(Status::PostcopyPaused);
                }
            }
        }
    }

    /// A new connection to `target`: the stream goes on there after a new header; the
    /// destination says what it holds (and how many pages it received), and what it
    /// lacks of what was owed at the switch is owed again.
    fn reconnect(&mut self, sx: &mut Sender<'a, Out>, target: &Uri, owed: &[Bitmap]) -> Result<(Vec<Bitmap>, Receiver<Msg>), String> {
        let conn = crate::migration::uri::connect(target)?;
        self.shared.connected(conn.abort);
        let mut reply = conn.reply.ok_or("a post-copy resumes only over a socket")?;
        let out: Box<dyn Write + Send> = conn.writer;
        sx.w = Writer::resumed(std::io::BufWriter::with_capacity(1 << 20, out), sx.w.bytes()).map_err(|e| e.to_string())?;
        sx.w.flush().map_err(|e| e.to_string())?;
        let words: Vec<usize> = regions(self.vm).iter().map(|(_, pages)| pages.div_ceil(64) as usize).collect();
        let (seen, held) = wire::read_resume(reply.as_mut(), &words).map_err(|e| crate::errtext::io(&e))?;
        sx.pages_sent = seen;
        let mut left = owed.to_vec();
        for (l, h) in left.iter_mut().zip(&held) {
            for (a, b) in l.iter_mut().zip(h) {
                *a &= !b;
            }
        }
        lock(&self.shared.stats).remaining = dirty::count(&left) * PAGE;
        Ok((left, listen(reply)))
    }

    /// The switch: pause, name the stale pages, the state, hand the disks over,
    /// `POSTCOPY`. Returns the pages still owed.
    fn switch<W: Write>(&mut self, sx: &mut Sender<'a, W>, last: Round) -> Result<Vec<Bitmap>, Stop> {
        let vm = self.vm;
        self.pause_for_switch();
        sx.flush_xbzrle()?;
        sx.xb = None;
        sx.pacer.limited = false;
        // A block migration's disks are complete before the switch (post-copy is RAM's):
        // what the guest wrote since the last round goes now, in the pause.
        if let Some(t) = &last.taken {
            sx.send_disk_dirty(t)?;
        }
        if let Some(b) = sx.block.as_mut() {
            let (t, _) = b.take();
            sx.send_disk_dirty(&t)?;
        }
        lock(&self.shared.stats).precopy_bytes = sx.w.bytes() - sx.disk_wire();
        let mut left = last.bitmaps;
        let after = self.collect()?;
        if left.is_empty() {
            left = after;
        } else {
            dirty::merge(&mut left, &after);
        }
        let pass = {
            let mut s = lock(&self.shared.stats);
            s.dirty_sync_count += 1;
            s.remaining = dirty::count(&left) * PAGE;
            s.dirty_sync_count
        };
        self.shared.pass(pass);
        for ((base, pages), bm) in regions(vm).into_iter().zip(&left) {
            for (first, count) in dirty::runs(bm, pages, u64::MAX) {
                sx.w.discard(base + first * PAGE, count).map_err(io_err)?;
            }
        }
        let state = vm.save_state().map_err(Failure::State)?;
        sx.w.state(&devices::state::VersionedState::to_bytes(&state)).map_err(io_err)?;
        self.shared.commit()?;
        self.handed_over = true;
        vm.inactivate_disks().map_err(Failure::HandOver)?;
        sx.w.postcopy().map_err(io_err)?;
        sx.w.flush().map_err(io_err)?;
        self.postcopy_started = true;
        self.shared.set_in_postcopy();
        {
            let mut s = lock(&self.shared.stats);
            s.downtime_ms = self.downtime_start.map_or(0, |t| t.elapsed().as_millis() as u64);
            s.downtime_bytes = sx.w.bytes() - sx.disk_wire() - s.precopy_bytes;
            s.disk_bytes = sx.disk_wire();
        }
        self.shared.set_status(Status::PostcopyActive);
        Ok(left)
    }

    /// Pushes every page of `left`, answering requests first.
    fn push<W: Write>(&mut self, sx: &mut Sender<'a, W>, left: &mut [Bitmap], rx: &Receiver<Msg>, start: u64) -> Result<(), Stop> {
        let regions = regions(self.vm);
        let mut cursor = (0usize, 0u64);
        loop {
            let mut served = false;
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Request(gpa) => {
                        self.serve(sx, &regions, left, gpa)?;
                        served = true;
                    }
                    // An answer before END: the destination gave up.
                    Msg::Answer(a) => return Err(early(a)),
                }
            }
            if served {
                sx.w.flush().map_err(io_err)?;
            }
            let Some((r, first, count)) = next_run(left, &regions, &mut cursor) else {
                return Ok(());
            };
            sx.send_run(regions[r].0 + first * PAGE, count)?;
            dirty::clear(&mut left[r], first, count);
            lock(&self.shared.stats).postcopy_bytes = sx.w.bytes() - start;
        }
    }

    /// Sends the page the destination asked for (checked to be a page of guest RAM).
    fn serve<W: Write>(&mut self, sx: &mut Sender<'a, W>, regions: &[(u64, u64)], left: &mut [Bitmap], gpa: u64) -> Result<(), Stop> {
        let found = regions
            .iter()
            .position(|&(base, pages)| gpa % PAGE == 0 && gpa >= base && gpa < base + pages * PAGE);
        let Some(r) = found else {
            return Err(Failure::Reply(ReplyError::NotAReply).into());
        };
        sx.send_run(gpa, 1)?;
        if let Some(bm) = left.get_mut(r) {
            dirty::clear(bm, (gpa - regions[r].0) / PAGE, 1);
        }
        lock(&self.shared.stats).postcopy_requests += 1;
        Ok(())
    }
}

/// The next run (at most [`PUSH_RUN`] pages) still set in `left`, from the cursor on.
fn next_run(left: &[Bitmap], regions: &[(u64, u64)], cursor: &mut (usize, u64)) -> Option<(usize, u64, u64)> {
    while cursor.0 < regions.len().min(left.len()) {
        let (r, from) = *cursor;
        let pages = regions[r].1;
        if let Some((first, count)) = dirty::runs_between(&left[r], from, pages, PUSH_RUN).next() {
            *cursor = (r, first + count);
            return Some((r, first, count));
        }
        *cursor = (r + 1, 0);
    }
    None
}

/// Whether `e` is the connection breaking (which pauses the post-copy), not a refusal.
fn broken(e: &Stop) -> bool {
    matches!(
        e,
        Stop::Io(_)
            | Stop::Failed(Failure::Reply(ReplyError::NoAnswer(_)) | Failure::Socket(_))
            | Stop::Undecided(Undecided::AnswerLost(_))
    )
}

/// The destination answered before END: it failed (or broke the protocol).
fn early(a: Result<(), ReplyError>) -> Stop {
    match a {
        Ok(()) => Failure::Reply(ReplyError::NotAReply).into(),
        Err(e) => Failure::Reply(e).into(),
    }
}

/// After END: the destination's answer; requests still in flight are moot (it unregisters
/// its RAM at END, and the pages they asked for were all sent).
fn wait_answer(rx: &Receiver<Msg>, expected: bool) -> Result<(), Stop> {
    if !expected {
        return Ok(());
    }
    let deadline = Instant::now() + crate::migration::uri::STALL_TIMEOUT;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(Msg::Request(_)) => {}
            Ok(Msg::Answer(a)) => return answer_outcome(a),
            Err(RecvTimeoutError::Timeout) => {
                return Err(Undecided::Silent {
                    secs: crate::migration::uri::STALL_TIMEOUT.as_secs(),
                }
                .into());
            }
            Err(RecvTimeoutError::Disconnected) => return Err(early(Err(ReplyError::NotAReply))),
        }
    }
}
