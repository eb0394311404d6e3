//! What every virtio device needs from KVM, in one place: MSI-X messages delivered with
//! KVM_SIGNAL_MSI, and queue notifies tied to eventfds inside KVM (KVM_IOEVENTFD) so they
//! skip the exit to godwit. [`plug`] wraps any virtio device model as a PCI function with
//! both and puts it on the bus and in the device list.

use super::device_list::DeviceList;
use crate::memory::GuestRam;
use devices::pci::PciRoot;
use devices::virtio::pci::{VirtioPciDevice, VirtioPciError};
use devices::virtio::{IoEvents, MsiSink, VirtioDevice};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use vmm_sys_util::eventfd::EventFd;

#[derive(Debug, Error)]
pub enum PlugError {
    #[error("{0}")]
    Transport(#[from] VirtioPciError),
    #[error("{0}")]
    Pci(#[from] devices::pci::root::PciError),
}

/// Delivers a virtio device's MSI-X messages with KVM_SIGNAL_MSI.
pub struct KvmMsi(pub Arc<VmFd>);

impl MsiSink for KvmMsi {
    fn signal(&self, addr: u64, data: u32) {
        let m = kvm_bindings::kvm_msi {
            address_lo: addr as u32,
            address_hi: (addr >> 32) as u32,
            data,
            ..Default::default()
        };
        // A refused message can only mean the guest programmed a bogus MSI-X entry.
        let _ = self.0.signal_msi(m);
    }
}

/// Ties MMIO addresses to eventfds in KVM (KVM_IOEVENTFD, any write length).
pub struct KvmIoEvents(pub Arc<VmFd>);

impl IoEvents for KvmIoEvents {
    fn register(&self, addr: u64, fd: &EventFd) -> std::io::Result<()> {
        self.0
            .register_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }

    fn unregister(&self, addr: u64, fd: &EventFd) -> std::io::Result<()> {
        self.0
            .unregister_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

/// Wraps `device` as a virtio-pci function delivering interrupts through KVM and taking
/// queue notifies through ioeventfds where KVM offers any-length ones, plugs it into the
/// first free slot of bus 0 and lists it. BARs are assigned later, for all functions.
pub fn plug(
    vm: &Arc<VmFd>,
    ram: &GuestRam,
    pci: &Mutex<PciRoot>,
    list: &mut DeviceList,
    device: Box<dyn VirtioDevice>,
) -> Result<Arc<Mutex<VirtioPciDevice>>, PlugError> {
    let mut dev = VirtioPciDevice::new(device, ram.clone(), Arc::new(KvmMsi(vm.clone())))?;
    if vm.check_extension_raw(u64::from(kvm_bindings::KVM_CAP_IOEVENTFD_ANY_LENGTH)) > 0 {
        dev.set_ioevents(Arc::new(KvmIoEvents(vm.clone())));
    }
    let dev = Arc::new(Mutex::new(dev));
    list.add_pci(pci, dev.clone())?;
    Ok(dev)
}
