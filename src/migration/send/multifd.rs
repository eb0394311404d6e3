//! The sender's side of multifd: the channels are opened in the set-up, page runs go to
//! their threads instead of the main stream, a sync point follows each look at the dirty
//! log, and the channels end before the machine state is sent.

use super::{Failure, Sender, Stop, io_err};
use crate::migration::dirty::PAGE;
use crate::migration::multifd::send::{Channel, MultifdSender, SendError};
use crate::migration::multifd::{self, Settings, wire};
use crate::migration::uri;
use devices::bus::lock;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;

/// Opens one more connection to the destination (the main stream's URI), for a channel.
pub type Connector<'a> = &'a (dyn Fn() -> Result<uri::Outgoing, String> + Sync);

impl From<SendError> for Stop {
    fn from(e: SendError) -> Stop {
        match e {
            SendError::Io(e) => Stop::Io(e),
            other => Failure::Multifd(other.to_string()).into(),
        }
    }
}

impl<W: Write> Sender<'_, W> {
    /// Announces the channels (MULTIFD), opens them, and waits for the destination to
    /// say it has them all; a destination without the capability refuses here instead.
    pub(super) fn open_multifd(
        &mut self,
        s: &Settings,
        connect: Option<Connector<'_>>,
        reply: Option<&mut Box<dyn std::io::Read + Send>>,
    ) -> Result<(), Stop> {
        let connect = connect.ok_or_else(|| Failure::Multifd("multifd is not supported by current protocol".into()))?;
        let session = multifd::session_id();
        self.w.multifd(&multifd::encode_record(s, session)).map_err(io_err)?;
        self.w.flush().map_err(io_err)?;
        let mut channels = Vec::new();
        let mut opened = Ok(());
        for id in 0..u32::from(s.channels) {
            match connect().and_then(|mut c| match wire::write_handshake(&mut c.writer, id, session) {
                Ok(()) => Ok(c),
                Err(e) => Err(crate::errtext::io(&e)),
            }) {
                Ok(c) => channels.push(c),
                Err(e) => {
                    opened = Err(e);
                    break;
                }
            }
        }
        // The destination's answer: its refusal (a capability off there) is the reason
        // even when the channels could not connect because of it.
        let answer = match reply {
            Some(r) => crate::migration::disks::reply::answer(r.as_mut()).map_err(Failure::Reply),
            None => Ok(()),
        };
        match (answer, opened) {
            (Err(e @ Failure::Reply(crate::migration::disks::reply::ReplyError::Refused(_))), _) => return Err(e.into()),
            (_, Err(e)) => return Err(Failure::Multifd(format!("cannot open the multifd channels: {e}")).into()),
            (Err(e), Ok(())) => return Err(e.into()),
            (Ok(()), Ok(())) => {}
        }
        let mut aborts = Vec::new();
        let channels: Vec<Channel> = channels
            .into_iter()
            .map(|c| {
                let k = std::sync::Arc::new(c.abort);
                aborts.push(k.clone());
                Channel {
                    writer: c.writer,
                    abort: Box::new(move || k()),
                }
            })
            .collect();
        self.shared.also_abort(Box::new(move || aborts.iter().for_each(|a| a())));
        self.mf = Some(MultifdSender::start(channels, self.vm.ram(), s)?);
        Ok(())
    }

    /// `count` pages from `gpa` to a channel; the figures follow what the channels did.
    /// `max-bandwidth` and the bandwidth count the pages' bytes (as QEMU 7.2 does), so
    /// the stop decision compares like with like whatever the compression.
    pub(super) fn send_run_multifd(&mut self, gpa: u64, count: u64) -> Result<(), Stop> {
        if let Some(mf) = self.mf.as_mut() {
            mf.send(gpa, count)?;
        }
        self.fold_multifd(count * PAGE);
        self.mf_raw += count * PAGE;
        self.pages_sent += count;
        self.pacer.account(count * PAGE, count);
        Ok(())
    }

    /// Adds what the channels did since the last look to the figures.
    pub(super) fn fold_multifd(&mut self, remaining_sent: u64) {
        let Some(mf) = self.mf.as_ref() else { return };
        let c = &mf.counters;
        let now = (c.zero.load(Relaxed), c.normal.load(Relaxed), c.bytes.load(Relaxed));
        let (z0, n0, _) = self.mf_seen;
        self.mf_seen = now;
        let mut s = lock(&self.shared.stats);
        s.duplicate += now.0 - z0;
        s.normal += now.1 - n0;
        s.multifd_bytes = now.2;
        s.transferred = self.w.bytes() + now.2;
        s.remaining = s.remaining.saturating_sub(remaining_sent);
    }

    /// Bytes sent, the channels' pages counted before compression (as QEMU 7.2 counts
    /// them): what auto-converge compares the guest's dirtying with.
    pub(super) fn sent_bytes(&self) -> u64 {
        self.w.bytes() + self.mf_raw
    }

    /// Bytes of the main stream and the channels.
    pub(in crate::migration) fn wire_bytes(&self) -> u64 {
        self.w.bytes() + self.mf_seen.2
    }

    /// After a look at the dirty log: every channel gets a sync point.
    pub(super) fn multifd_sync(&mut self) -> Result<(), Stop> {
        match self.mf.as_mut() {
            Some(mf) => Ok(mf.sync()?),
            None => Ok(()),
        }
    }

    /// Before the machine state: every channel ends and its pages are all written.
    pub(super) fn multifd_finish(&mut self) -> Result<(), Stop> {
        if let Some(mf) = self.mf.as_mut() {
            mf.finish()?;
        }
        self.fold_multifd(0);
        Ok(())
    }
}
