//! A back end connected to nothing: what a NIC on a `-net` hub without host network (a
//! `-net nic` alone) sends into. Frames it is given are dropped; it never has one to give.

use super::NetBackend;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

pub struct NullBackend {
    /// Never signalled: the NIC's I/O thread watches it for ever.
    never: EventFd,
}

impl NullBackend {
    pub fn new() -> io::Result<Self> {
        Ok(NullBackend {
            never: EventFd::new(EFD_NONBLOCK)?,
        })
    }
}

impl NetBackend for NullBackend {
    fn vnet_hdr(&self) -> bool {
        false
    }

    fn send(&mut self, _frame: &[IoSlice<'_>]) -> io::Result<()> {
        Ok(())
    }

    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn rx_fd(&self) -> RawFd {
        self.never.as_raw_fd()
    }

    fn info(&self) -> String {
        String::new()
    }
}

/// A back end kept by the VMM across NICs: a reset rebuilds the NIC, not the tap (whose
/// scripts ran once, or whose descriptor came from the caller) or the user network.
pub struct Kept(pub std::sync::Arc<std::sync::Mutex<Box<dyn NetBackend>>>);

impl Kept {
    fn with<T>(&self, f: impl FnOnce(&mut Box<dyn NetBackend>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl NetBackend for Kept {
    fn vnet_hdr(&self) -> bool {
        self.with(|b| b.vnet_hdr())
    }

    fn send(&mut self, frame: &[IoSlice<'_>]) -> io::Result<()> {
        self.with(|b| b.send(frame))
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|b| b.recv(buf))
    }

    fn rx_fd(&self) -> RawFd {
        self.with(|b| b.rx_fd())
    }

    fn set_offloads(&mut self, offloads: super::Offloads) -> io::Result<()> {
        self.with(|b| b.set_offloads(offloads))
    }

    fn info(&self) -> String {
        self.with(|b| b.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_drops_and_never_has_a_frame() {
        let mut n = NullBackend::new().unwrap();
        assert!(n.send(&[IoSlice::new(&[0u8; 60])]).is_ok());
        let mut buf = [0u8; 64];
        assert_eq!(n.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let mut k = Kept(std::sync::Arc::new(std::sync::Mutex::new(Box::new(n) as Box<dyn NetBackend>)));
        assert!(!k.vnet_hdr());
        assert_eq!(k.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
