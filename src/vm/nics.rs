//! NICs: each one a virtio-net PCI function on a back end the process keeps
//! ([`crate::network::Networks`]).

use super::device_list::DeviceList;
use crate::config::NicConfig;
use crate::memory::GuestRam;
use crate::network::Networks;
use devices::pci::PciRoot;
use devices::virtio::net::{MacAddr, NetConfig, NetControl, VirtioNet};
use kvm_ioctls::VmFd;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Why a NIC could not be attached; each names the option that asked for it.
#[derive(Debug, Error)]
pub enum NicError {
    #[error("{spec}: no network back end")]
    NoBackend { spec: String },
    #[error("{spec}: {err}")]
    Backend { spec: String, err: crate::network::NetworkError },
    #[error("{spec}: {err}")]
    Device { spec: String, err: devices::virtio::net::NetError },
    #[error("{spec}: {err}")]
    Plug { spec: String, err: super::virtio::PlugError },
}

/// A NIC of the VM.
pub struct Nic {
    pub cfg: NicConfig,
    /// Link, announcements and what `info network` shows.
    pub control: Arc<NetControl>,
}

/// Creates and plugs every NIC; BARs are assigned afterwards by the caller.
pub fn attach(
    vm: &Arc<VmFd>,
    ram: &GuestRam,
    pci: &Mutex<PciRoot>,
    list: &mut DeviceList,
    nics: &[NicConfig],
    nets: &Networks,
) -> Result<Vec<Nic>, NicError> {
    let mut out = Vec::new();
    for n in nics {
        let spec = || n.spec.clone();
        let id = n.netdev.as_deref().ok_or_else(|| NicError::NoBackend { spec: spec() })?;
        let backend = nets.attach(id).map_err(|err| NicError::Backend { spec: spec(), err })?;
        let cfg = NetConfig {
            mac: n.mac.unwrap_or(MacAddr::QEMU_DEFAULT),
            ..NetConfig::default()
        };
        let nic = VirtioNet::new(backend, cfg).map_err(|err| NicError::Device { spec: spec(), err })?;
        let control = nic.control();
        // A link set down before a reset stays down in the rebuilt NIC, as in QEMU.
        if nets.get(id).is_some_and(|b| !b.link_up()) {
            control.set_link(false);
        }
        super::virtio::plug(vm, ram, pci, list, Box::new(nic)).map_err(|err| NicError::Plug { spec: spec(), err })?;
        out.push(Nic { cfg: n.clone(), control });
    }
    Ok(out)
}
