//! The destination side: reads a stream into a fresh, paused VM. Nothing read from the
//! stream is trusted: the configuration must match this VM, every page range must lie
//! inside guest RAM, and the machine state is decoded in full before any of it is loaded.
//!
//! The phases of a load, each a method of [`Loader`]: the configuration record, then the
//! stream's RAM, disk and state records, then the end (pages counted, state checked,
//! disks taken over, state loaded).

use super::dirty::{DirtyError, PAGE};
use super::postcopy::dest::Destination;
use super::postcopy::wire::SharedReply;
use super::recv_block::{BlockSink, RecvBlockError};
use super::stream::{Reader, Record, StreamError};
use super::xbzrle::Caps;
use super::xbzrle::record::{Entries, Entry, RecordError};
use crate::memory::MemoryError;
use crate::vm::state::MachineState;
use crate::vm::{Vm, VmError};
use devices::state::{StateError, VersionedState};
use std::io::{Read, Write};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryRegion};

/// Why a stream (a migration, or a snapshot's VM state) could not be loaded.
#[derive(Debug, Error)]
pub enum RecvError {
    /// The stream itself is broken (header, checksum, truncation, a malformed record) or
    /// could not be read.
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("stream does not start with the configuration")]
    NoConfig,
    /// The source's RAM size (bytes) is not this VM's.
    #[error("RAM size mismatch: the source has {} MiB, this VM {} MiB", theirs >> 20, mine >> 20)]
    RamSize { theirs: u64, mine: u64 },
    #[error("vCPU count mismatch: the source has {theirs}, this VM {mine}")]
    VcpuCount { theirs: u32, mine: usize },
    #[error("machine type mismatch: the source runs '{0}'")]
    Machine(String),
    #[error("a second configuration record")]
    SecondConfig,
    /// Disk records in a snapshot's VM state (a snapshot's disks are reverted instead).
    #[error("disk records in a snapshot's state")]
    DisksInSnapshot,
    /// A SYNC record out of order.
    #[error("dirty-log round {round} follows round {last}")]
    RoundOrder { round: u32, last: u32 },
    #[error("unaligned page address {0:#x}")]
    Unaligned(u64),
    /// A PAGES or ZERO record for memory this VM does not have (`len` is `u64::MAX` when
    /// the record's length overflows).
    #[error("{what} at guest address {gpa:#x}+{len:#x} lies outside guest RAM")]
    OutsideRam { what: &'static str, gpa: u64, len: u64 },
    /// Writing guest RAM failed.
    #[error(transparent)]
    Ram(#[from] GuestMemoryError),
    #[error("a second machine state record")]
    SecondState,
    /// The machine state does not decode.
    #[error(transparent)]
    State(#[from] StateError),
    /// The machine state does not fit this VM, or could not be loaded into it.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// END's page count is not what the stream carried.
    #[error("the stream announces {announced} pages but carried {carried}")]
    PageCount { announced: u64, carried: u64 },
    #[error("the stream ended without the machine state")]
    NoState,
    /// A snapshot's load: the pages its stream did not carry could not be found.
    #[error(transparent)]
    Touched(#[from] DirtyError),
    /// A snapshot's load: the pages its stream did not carry could not be zeroed.
    #[error(transparent)]
    Discard(#[from] MemoryError),
    /// A disk record was refused, or the disks could not be written or taken over.
    #[error(transparent)]
    Disks(#[from] RecvBlockError),
    /// Everything loaded, but the source could not be told (so it may run the guest on).
    #[error("cannot confirm the switch-over to the source: {}", crate::errtext::io(.0))]
    Confirm(#[source] std::io::Error),
    /// The source's capabilities are not this side's.
    #[error("capability '{name}' is {} at the source but {} here", on_off(*.at_source), on_off(!*.at_source))]
    CapabilityMismatch { name: &'static str, at_source: bool },
    #[error("the source uses capabilities this godwit does not know (flags {0:#x})")]
    UnknownCaps(u32),
    #[error("a capabilities record that does not follow the configuration")]
    LateCaps,
    #[error("xbzrle pages in a stream without the xbzrle capability")]
    XbzrleOff,
    /// An xbzrle record is malformed; nothing outside its pages was written.
    #[error("bad xbzrle record at guest address {gpa:#x}: {why}")]
    Xbzrle { gpa: u64, why: RecordError },
    #[error("bad xbzrle delta for the page at {gpa:#x}: {why}")]
    Delta { gpa: u64, why: super::xbzrle::codec::CodecError },
    /// A post-copy record where post-copy cannot be (its capability off here, a snapshot,
    /// out of order).
    #[error("unexpected {0} record")]
    Postcopy(&'static str),
    /// Guest RAM could not be set up for post-copy, or a page not placed.
    #[error("post-copy: {0}")]
    Userfault(#[source] std::io::Error),
    /// A multifd channel failed, or its announcement was refused.
    #[error(transparent)]
    Multifd(#[from] super::multifd::recv::ChannelError),
    #[error("{0}")]
    MultifdSetup(String),
    /// A record reached the wrong handler (a bug).
    #[error("internal error: record handled by the load loop")]
    Misrouted,
}

/// Per-region bitmap of the pages this stream has written (only those may need zeroing;
/// the rest of a fresh VM's RAM is already zero).
struct Written {
    regions: Vec<(u64, u64, Vec<u64>)>,
}

impl Written {
    fn new(vm: &Vm) -> Self {
        Written {
            regions: vm
                .ram()
                .iter()
                .map(|r| (r.start_addr().0, r.len(), vec![0u64; (r.len() / PAGE).div_ceil(64) as usize]))
                .collect(),
        }
    }

    /// The region holding [gpa, gpa+len), if the whole range is inside one region.
    fn find(&mut self, gpa: u64, len: u64) -> Option<(u64, &mut Vec<u64>)> {
        let end = gpa.checked_add(len)?;
        self.regions
            .iter_mut()
            .find(|(base, size, _)| gpa >= *base && end <= base + *size)
            .map(|(base, _, bm)| (*base, bm))
    }

    /// Zeroes (gives back to the kernel) every touched page this stream did not write.
    fn zero_the_rest(&self, vm: &Vm) -> Result<(), RecvError> {
        let touched = super::dirty::touched(vm.ram())?;
        for ((base, size, written), touched) in self.regions.iter().zip(touched) {
            let stale: Vec<u64> = touched.iter().zip(written).map(|(t, w)| t & !w).collect();
            for (first, count) in super::dirty::runs(&stale, size / PAGE, u64::MAX) {
                crate::memory::discard_range(vm.ram(), base + first * PAGE, count * PAGE)?;
            }
        }
        Ok(())
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn bad(what: &'static str, gpa: u64, len: u64) -> RecvError {
    RecvError::OutsideRam { what, gpa, len }
}

/// Loads one whole stream into a fresh VM (its RAM all zero); on success the VM holds the
/// source's RAM, disks and state, paused, and owns its images. `reply` is the connection's
/// way back to the source (none for `exec:`). A version 3 source waits there, after END,
/// for the outcome: it resumes its guest unless this VM has everything and may run.
#[cfg(test)]
pub fn run(vm: &Vm, input: Box<dyn Read + Send>, reply: Option<Box<dyn Write + Send>>) -> Result<(), RecvError> {
    run_with(vm, input, reply, Caps::default(), &NO_EVENTS)
}

/// A new connection from the source: the stream, and its way back.
pub type Reconnected = (Box<dyn Read + Send>, Box<dyn Write + Send>);

/// What a post-copy load tells its caller, and asks of it.
pub struct PostcopyEvents<'a> {
    /// The state is loaded: the guest may run (the rest of its pages still coming).
    pub run_now: &'a dyn Fn(),
    /// The stream broke during post-copy: the guest runs on with the pages it has; this
    /// waits for `migrate_recover` and the source's new connection (none: give up).
    pub reconnect: &'a dyn Fn(&RecvError) -> Option<Reconnected>,
    /// The source resumed over the new connection.
    pub resumed: &'a dyn Fn(),
}

/// No post-copy events to hear (a test, a load without post-copy).
pub const NO_EVENTS: PostcopyEvents<'static> = PostcopyEvents {
    run_now: &|| {},
    reconnect: &|_| None,
    resumed: &|| {},
};

/// [`run`] on a destination whose capabilities are `expect`: the source's must be the same.
/// With post-copy, `ev` hears of the switch and of a broken stream.
#[cfg(test)]
pub fn run_with(
    vm: &Vm,
    input: Box<dyn Read + Send>,
    reply: Option<Box<dyn Write + Send>>,
    expect: Caps,
    ev: &PostcopyEvents<'_>,
) -> Result<(), RecvError> {
    run_listening(vm, input, reply, expect, None, ev)
}

/// [`run_with`], with the listener the multifd channels connect to (kept open for them).
pub fn run_listening(
    vm: &Vm,
    input: Box<dyn Read + Send>,
    reply: Option<Box<dyn Write + Send>>,
    expect: Caps,
    listener: Option<&super::multifd::ChannelListener<'_>>,
    ev: &PostcopyEvents<'_>,
) -> Result<(), RecvError> {
    let mut version = 0;
    let shared = reply.map(SharedReply::new);
    let mut reply = shared.clone().map(|s| Box::new(s) as Box<dyn Write + Send>);
    let pc = LoadHooks {
        reply: shared,
        ev,
        channels: listener,
    };
    let result = load(vm, input, Mode::Fresh, reply.as_mut(), &mut version, expect, &pc);
    if result.is_err() {
        // This VM will not run: let go of every image it took at END before the source
        // hears of the failure and takes them back.
        vm.pause();
        for d in vm.disks() {
            if let Err(e) = d.inactivate() {
                eprintln!("godwit: {e}");
            }
        }
    }
    if version >= 3
        && let Some(r) = reply.as_mut()
    {
        // After a refused DISKS this is a second answer nobody reads, which does no harm.
        // A success that cannot be told is a failure: the source, not hearing it, may run
        // the guest on, so this VM must not run it too.
        let told = super::disks::reply::send(r.as_mut(), &result);
        if let (Ok(()), Err(e)) = (&result, told) {
            return Err(RecvError::Confirm(e));
        }
    }
    result
}

/// Loads one whole stream into a VM whose RAM holds other data (loadvm): the pages the
/// stream carries are overwritten, and every other page the guest had touched is zeroed
/// at the end, which is much cheaper than zeroing all of RAM first.
pub fn run_over(vm: &Vm, input: Box<dyn Read + Send>) -> Result<(), RecvError> {
    load(vm, input, Mode::Over, None, &mut 0, Caps::default(), &NO_HOOKS)
}

/// Checks a stream against this VM without changing anything: its configuration, and its
/// machine state (decoded in full and matched to this VM's devices). Reads up to the STATE
/// record only, checking every record on the way; savevm puts STATE first, so this is
/// cheap for snapshots.
pub fn check(vm: &Vm, input: Box<dyn Read + Send>) -> Result<(), RecvError> {
    load(vm, input, Mode::Check, None, &mut 0, Caps::default(), &NO_HOOKS)
}

/// What a load from a live source needs: for post-copy, the way back for the fault
/// thread's requests and who to tell that the guest may run; for multifd, the listener its
/// channels connect to.
struct LoadHooks<'a> {
    reply: Option<SharedReply>,
    ev: &'a PostcopyEvents<'a>,
    channels: Option<&'a super::multifd::ChannelListener<'a>>,
}

const NO_HOOKS: LoadHooks<'static> = LoadHooks {
    reply: None,
    ev: &NO_EVENTS,
    channels: None,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Change nothing; stop once the machine state is checked.
    Check,
    /// Into RAM that is all zero.
    Fresh,
    /// Into RAM that holds other data.
    Over,
}

/// `version` receives the stream's version once its header is read.
fn load(
    vm: &Vm,
    input: Box<dyn Read + Send>,
    mode: Mode,
    reply: Option<&mut Box<dyn Write + Send>>,
    version: &mut u32,
    expect: Caps,
    pc: &LoadHooks<'_>,
) -> Result<(), RecvError> {
    let mut r = Reader::new(input)?;
    *version = r.version();
    let mut l = Loader {
        vm,
        mode,
        disks: BlockSink::new(vm, reply),
        written: Written::new(vm),
        state: None,
        pages_seen: 0,
        last_round: 0,
        zero_page: vec![0u8; PAGE as usize],
        page: vec![0u8; PAGE as usize],
        expect,
        caps: None,
        pc,
        postcopy: None,
        listener: pc.channels,
        mf: None,
    };
    match l.configuration(&mut r).and_then(|()| records(&mut l, &mut r)) {
        Ok(Some(pages)) => l.end(pages),
        Ok(None) => Ok(()),
        // A channel that failed first is the better reason (the main stream then broke).
        Err(e) => Err(l.mf.as_mut().and_then(|m| m.abort()).map_or(e, RecvError::from)),
    }
}

/// The records after CONFIG: the END's page count, or `None` once a check is done.
fn records(l: &mut Loader<'_>, r: &mut Reader<Box<dyn Read + Send>>) -> Result<Option<u64>, RecvError> {
    loop {
        let rec = match r.next() {
            Ok(rec) => rec,
            Err(e) if l.postcopy.is_some() && matches!(e, StreamError::Truncated(_) | StreamError::Io(_)) => {
                *r = l.resume(e.into())?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // A stream without CAPS after its CONFIG (an older source) has none on.
        if !matches!(rec, Record::Caps { .. }) && l.caps.is_none() {
            l.caps(0)?;
        }
        match rec {
            Record::End { pages } => return Ok(Some(pages)),
            Record::State(bytes) => {
                if l.state(bytes)? == Done::Checked {
                    return Ok(None);
                }
            }
            Record::Block { disk, offset, data } => {
                let len = data.len();
                l.no_disks_in_snapshots()?;
                l.disks.check_block(disk, offset, len as u64)?;
                // The payload is `u32` disk, `u64` offset, then the data: it goes to the
                // writer in the reader's own buffer, which takes a spare one instead.
                let buf = r.take_buffer(l.disks.spare());
                l.disks.block(disk, offset, buf, 12..12 + len)?;
            }
            rec => l.record(rec)?,
        }
    }
}

/// A record's handling asked the load to stop early, successfully.
#[derive(PartialEq, Eq)]
enum Done {
    Checked,
    Continue,
}

/// One load in progress, and what the stream has carried so far.
pub(super) struct Loader<'a> {
    pub(super) vm: &'a Vm,
    mode: Mode,
    pub(super) disks: BlockSink<'a>,
    written: Written,
    state: Option<MachineState>,
    /// What the stream itself says it carried, checked against its END and SYNC records.
    pages_seen: u64,
    last_round: u32,
    zero_page: Vec<u8>,
    /// One page, to apply an xbzrle delta to before it is written.
    page: Vec<u8>,
    /// This side's capabilities, and the source's once known.
    expect: Caps,
    pub(super) caps: Option<Caps>,
    pc: &'a LoadHooks<'a>,
    /// From the `POSTCOPY` record on: guest RAM under userfaultfd, the guest running.
    postcopy: Option<Destination>,
    /// Where the multifd channels connect, and their threads once they did.
    pub(super) listener: Option<&'a super::multifd::ChannelListener<'a>>,
    pub(super) mf: Option<super::multifd::recv::MultifdReceiver>,
}

impl Loader<'_> {
    pub(super) fn fresh(&self) -> bool {
        self.mode == Mode::Fresh
    }

    fn applies(&self) -> bool {
        self.mode != Mode::Check
    }

    /// The first record: the source's machine must be this one.
    fn configuration<R: Read>(&mut self, r: &mut Reader<R>) -> Result<(), RecvError> {
        let rec = r.next()?;
        let Record::Config { mem_size, vcpus, machine } = rec else {
            return Err(RecvError::NoConfig);
        };
        let vm = self.vm;
        if mem_size != vm.mem_size() {
            return Err(RecvError::RamSize {
                theirs: mem_size,
                mine: vm.mem_size(),
            });
        }
        if vcpus as usize != vm.vcpu_count() {
            return Err(RecvError::VcpuCount {
                theirs: vcpus,
                mine: vm.vcpu_count(),
            });
        }
        if machine != "pc" {
            return Err(RecvError::Machine(machine));
        }
        Ok(())
    }

    /// Disks migrate only into a fresh VM: a snapshot has its disks reverted instead.
    fn no_disks_in_snapshots(&self) -> Result<(), RecvError> {
        if self.mode == Mode::Fresh {
            Ok(())
        } else {
            Err(RecvError::DisksInSnapshot)
        }
    }

    /// Any record but CONFIG (first only), BLOCK, STATE and END.
    fn record(&mut self, rec: Record<'_>) -> Result<(), RecvError> {
        if matches!(rec, Record::Disks(_) | Record::BlockZero { .. } | Record::Progress { .. }) {
            self.no_disks_in_snapshots()?;
        }
        match rec {
            Record::Config { .. } => Err(RecvError::SecondConfig),
            Record::Caps { flags } if self.caps.is_none() => self.caps(flags),
            Record::Caps { .. } => Err(RecvError::LateCaps),
            Record::Xbzrle { gpa, body } => self.xbzrle(gpa, body),
            Record::Multifd(p) => self.multifd(p),
            Record::Pages { gpa, data } => self.pages(gpa, data),
            Record::Zero { gpa, pages } => self.zero(gpa, pages),
            Record::Sync { round } => {
                if round != self.last_round + 1 {
                    return Err(RecvError::RoundOrder {
                        round,
                        last: self.last_round,
                    });
                }
                self.last_round = round;
                Ok(())
            }
            Record::Disks(p) => Ok(self.disks.disks(p)?),
            Record::BlockZero { disk, offset, len } => Ok(self.disks.zero(disk, offset, len)?),
            Record::Progress { percent } => {
                self.disks.progress(percent);
                Ok(())
            }
            Record::Discard { gpa, pages } => self.discard(gpa, pages),
            Record::Postcopy => self.switch(),
            Record::Block { .. } | Record::State(_) | Record::End { .. } => Err(RecvError::Misrouted),
        }
    }

    fn pages(&mut self, gpa: u64, data: &[u8]) -> Result<(), RecvError> {
        let len = data.len() as u64;
        if gpa % PAGE != 0 {
            return Err(RecvError::Unaligned(gpa));
        }
        let (base, bm) = self.written.find(gpa, len).ok_or_else(|| bad("page data", gpa, len))?;
        for p in (gpa - base) / PAGE..(gpa - base + len) / PAGE {
            bm[(p / 64) as usize] |= 1 << (p % 64);
        }
        if let Some(d) = &self.postcopy {
            d.place(gpa, data).map_err(RecvError::Userfault)?;
        } else if self.applies() {
            self.vm.ram().write_slice(data, GuestAddress(gpa))?;
        }
        self.pages_seen += len / PAGE;
        Ok(())
    }

    /// The source's capabilities (right after CONFIG, or none): they must be this side's.
    fn caps(&mut self, flags: u32) -> Result<(), RecvError> {
        let theirs = Caps::from_flags(flags).ok_or(RecvError::UnknownCaps(flags))?;
        for (name, at_source, here) in [
            ("xbzrle", theirs.xbzrle, self.expect.xbzrle),
            ("multifd", theirs.multifd, self.expect.multifd),
        ] {
            if at_source != here {
                return Err(RecvError::CapabilityMismatch { name, at_source });
            }
        }
        if theirs.postcopy != self.expect.postcopy {
            return Err(RecvError::CapabilityMismatch {
                name: "postcopy-ram",
                at_source: theirs.postcopy,
            });
        }
        self.caps = Some(theirs);
        Ok(())
    }

    /// An xbzrle record: each entry's page is checked to lie in RAM before it is
    /// written, and a delta is applied to a copy of the page, written back only whole.
    fn xbzrle(&mut self, base: u64, body: &[u8]) -> Result<(), RecvError> {
        if !self.caps.is_some_and(|c| c.xbzrle) || self.mode != Mode::Fresh {
            return Err(RecvError::XbzrleOff);
        }
        // A delta needs the page it applies to, which post-copy may not have yet.
        if self.postcopy.is_some() {
            return Err(RecvError::Postcopy("XBZRLE"));
        }
        if base % PAGE != 0 {
            return Err(RecvError::Unaligned(base));
        }
        let mut entries = Entries::new(base, body);
        while let Some((gpa, e)) = entries.next_entry().map_err(|why| RecvError::Xbzrle { gpa: base, why })? {
            match e {
                Entry::Zero => self.zero(gpa, 1)?,
                Entry::Whole(data) => self.pages(gpa, data)?,
                Entry::Delta(d) => self.delta(gpa, d)?,
            }
        }
        Ok(())
    }

    /// Applies delta `d` to the page at `gpa`.
    fn delta(&mut self, gpa: u64, d: &[u8]) -> Result<(), RecvError> {
        let ram = self.vm.ram();
        if self.written.find(gpa, PAGE).is_none() {
            return Err(bad("xbzrle page", gpa, PAGE));
        }
        ram.read_slice(&mut self.page, GuestAddress(gpa))?;
        super::xbzrle::codec::decode(d, &mut self.page).map_err(|why| RecvError::Delta { gpa, why })?;
        let page = std::mem::take(&mut self.page);
        let r = self.pages(gpa, &page);
        self.page = page;
        r
    }

    /// A range of zero pages: only pages this stream wrote earlier need clearing.
    fn zero(&mut self, gpa: u64, pages: u64) -> Result<(), RecvError> {
        let len = pages.checked_mul(PAGE).ok_or_else(|| bad("zero range", gpa, u64::MAX))?;
        if gpa % PAGE != 0 {
            return Err(RecvError::Unaligned(gpa));
        }
        let (base, bm) = self.written.find(gpa, len).ok_or_else(|| bad("zero range", gpa, len))?;
        if let Some(d) = &self.postcopy {
            for p in (gpa - base) / PAGE..(gpa - base + len) / PAGE {
                bm[(p / 64) as usize] |= 1 << (p % 64);
            }
            self.pages_seen += pages;
            return d.zero(gpa, pages).map_err(RecvError::Userfault);
        }
        let mut to_clear = Vec::new();
        for p in (gpa - base) / PAGE..(gpa - base + len) / PAGE {
            if bm[(p / 64) as usize] & (1 << (p % 64)) != 0 {
                bm[(p / 64) as usize] &= !(1 << (p % 64));
                to_clear.push(base + p * PAGE);
            }
        }
        self.pages_seen += pages;
        if self.applies() {
            for a in to_clear {
                self.vm.ram().write_slice(&self.zero_page, GuestAddress(a))?;
            }
        }
        Ok(())
    }

    /// Post-copy records need the capability, a fresh VM, and the order DISCARD*, STATE,
    /// POSTCOPY.
    fn postcopy_allowed(&self, what: &'static str) -> Result<(), RecvError> {
        let ok = self.caps.is_some_and(|c| c.postcopy) && self.mode == Mode::Fresh && self.postcopy.is_none();
        if ok { Ok(()) } else { Err(RecvError::Postcopy(what)) }
    }

    /// DISCARD: pages the source dirtied since it sent them; dropped, so that the guest's
    /// first touch asks for them.
    fn discard(&mut self, gpa: u64, pages: u64) -> Result<(), RecvError> {
        self.postcopy_allowed("DISCARD")?;
        if self.state.is_some() {
            return Err(RecvError::Postcopy("DISCARD"));
        }
        let len = pages.checked_mul(PAGE).ok_or_else(|| bad("discard range", gpa, u64::MAX))?;
        if gpa % PAGE != 0 {
            return Err(RecvError::Unaligned(gpa));
        }
        let (base, bm) = self.written.find(gpa, len).ok_or_else(|| bad("discard range", gpa, len))?;
        // Not held any more: a resumed post-copy must be sent these again.
        for p in (gpa - base) / PAGE..(gpa - base + len) / PAGE {
            bm[(p / 64) as usize] &= !(1 << (p % 64));
        }
        Ok(crate::memory::discard_range(self.vm.ram(), gpa, len)?)
    }

    /// POSTCOPY: the state is loaded, the disks taken over, RAM registered with
    /// userfaultfd and its fault thread started; then the guest may run.
    fn switch(&mut self) -> Result<(), RecvError> {
        self.postcopy_allowed("POSTCOPY")?;
        let st = self.state.take().ok_or(RecvError::NoState)?;
        self.vm.check_state(&st)?;
        self.disks.finish()?;
        self.vm.restore_state(&st)?;
        let d = Destination::start(self.vm.ram(), self.pc.reply.clone()).map_err(RecvError::Userfault)?;
        self.postcopy = Some(d);
        (self.pc.ev.run_now)();
        Ok(())
    }

    /// The stream broke in post-copy (`why`): the guest runs on; once the source is back
    /// on a new connection, tell it what this side holds, ask again for what is still
    /// missing, and read on there.
    fn resume(&mut self, why: RecvError) -> Result<Reader<Box<dyn Read + Send>>, RecvError> {
        loop {
            let Some((input, reply)) = (self.pc.ev.reconnect)(&why) else {
                return Err(why);
            };
            let Some(shared) = &self.pc.reply else {
                return Err(why);
            };
            shared.replace(reply);
            let maps: Vec<&[u64]> = self.written.regions.iter().map(|(_, _, bm)| &bm[..]).collect();
            let told = shared.message(&super::postcopy::wire::resume_message(self.pages_seen, &maps));
            let reader = told.map_err(StreamError::Io).and_then(|()| Reader::new(input));
            match reader {
                Ok(r) => {
                    self.ask_again(shared);
                    (self.pc.ev.resumed)();
                    return Ok(r);
                }
                Err(e) => eprintln!("godwit: cannot resume the post-copy: {e}"),
            }
        }
    }

    /// Asks again for the pages asked for before the break and not received since.
    fn ask_again(&mut self, shared: &SharedReply) {
        let Some(d) = &self.postcopy else { return };
        let written = &mut self.written;
        let missing = d.outstanding(|gpa| {
            written
                .find(gpa, PAGE)
                .is_some_and(|(base, bm)| bm[((gpa - base) / PAGE / 64) as usize] & (1 << ((gpa - base) / PAGE % 64)) != 0)
        });
        for gpa in missing {
            let _ = shared.request(gpa);
        }
    }

    /// The machine state, decoded in full; a check ends here.
    fn state(&mut self, bytes: &[u8]) -> Result<Done, RecvError> {
        if self.state.is_some() {
            return Err(RecvError::SecondState);
        }
        let st = MachineState::from_bytes(bytes)?;
        if !self.applies() {
            self.vm.check_state(&st)?;
            return Ok(Done::Checked);
        }
        self.state = Some(st);
        Ok(Done::Continue)
    }

    /// END: everything announced arrived; the state fits; the disks are taken over; the
    /// state is loaded.
    fn end(mut self, pages: u64) -> Result<(), RecvError> {
        match self.mf.as_mut() {
            Some(mf) => self.pages_seen += mf.finish()?,
            None if self.caps.is_some_and(|c| c.multifd) => {
                return Err(RecvError::MultifdSetup("a multifd stream without its MULTIFD record".into()));
            }
            None => {}
        }
        if pages != self.pages_seen {
            return Err(RecvError::PageCount {
                announced: pages,
                carried: self.pages_seen,
            });
        }
        if let Some(d) = self.postcopy.take() {
            // Every page is in place and the guest runs already.
            d.finish();
            return Ok(());
        }
        let st = self.state.take().ok_or(RecvError::NoState)?;
        if self.mode == Mode::Over {
            self.written.zero_the_rest(self.vm)?;
        }
        if self.mode == Mode::Fresh {
            self.vm.check_state(&st)?;
            self.disks.finish()?;
        }
        Ok(self.vm.restore_state(&st)?)
    }
}
