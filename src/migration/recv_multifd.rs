//! The destination's side of the MULTIFD record: the channels it announces are accepted
//! on the listener the main stream came through, their threads started, and the source
//! told (on the way back) that they are in place.

use super::multifd::{self, recv::MultifdReceiver};
use super::recv::{Loader, RecvError};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

impl Loader<'_> {
    /// MULTIFD: only after CAPS with multifd on, once, into a fresh VM over a listener.
    pub(super) fn multifd(&mut self, payload: &[u8]) -> Result<(), RecvError> {
        let setup = RecvError::MultifdSetup;
        if !self.caps.is_some_and(|c| c.multifd) || !self.fresh() {
            return Err(setup("multifd channels announced without the multifd capability".into()));
        }
        if self.mf.is_some() {
            return Err(setup("a second MULTIFD record".into()));
        }
        let (n, compression, session) = multifd::decode_record(payload).map_err(setup)?;
        let listener = self
            .listener
            .ok_or_else(|| setup("multifd needs a tcp: or unix: listener".into()))?;
        let channels = multifd::accept_channels(listener, n, session).map_err(setup)?;
        let ram = self.vm.ram();
        let regions = ram.iter().map(|r| (r.start_addr().0, r.len())).collect();
        self.mf = Some(MultifdReceiver::start(channels, ram, regions, compression)?);
        if let Some(r) = self.disks.reply() {
            super::disks::reply::send(r.as_mut(), &Ok::<(), String>(())).map_err(RecvError::Confirm)?;
        }
        Ok(())
    }
}
