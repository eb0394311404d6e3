//! Edge interrupts raised by device models.
//!
//! A device holds an [`IrqEvent`]; the VMM registers the event's file descriptor with KVM as
//! an irqfd on the device's GSI, so raising it injects an edge into the in-kernel PIC/IOAPIC
//! without the device knowing anything about KVM.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// An interrupt line backed by an eventfd.
#[derive(Debug)]
pub struct IrqEvent {
    evt: EventFd,
}

impl IrqEvent {
    pub fn new() -> io::Result<Self> {
        Ok(IrqEvent {
            evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(IrqEvent {
            evt: self.evt.try_clone()?,
        })
    }
    /// The eventfd, for registering as an irqfd.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
    /// Raises an edge on the line.
    pub fn raise(&self) -> io::Result<()> {
        self.evt.write(1)
    }
}

impl AsRawFd for IrqEvent {
    fn as_raw_fd(&self) -> RawFd {
        self.evt.as_raw_fd()
    }
}

impl vm_superio::Trigger for IrqEvent {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.raise()
    }
}
