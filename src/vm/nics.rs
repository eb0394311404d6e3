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
) -> Result<Vec<Nic>, String> {
    let mut out = Vec::new();
    for n in nics {
        let id = n.netdev.as_deref().ok_or_else(|| format!("{}: no network back end", n.spec))?;
        let backend = nets.attach(id).map_err(|e| format!("{}: {e}", n.spec))?;
        let cfg = NetConfig {
            mac: n.mac.unwrap_or(MacAddr::QEMU_DEFAULT),
            ..NetConfig::default()
        };
        let nic = VirtioNet::new(backend, cfg).map_err(|e| format!("{}: {e}", n.spec))?;
        let control = nic.control();
        // A link set down before a reset stays down in the rebuilt NIC, as in QEMU.
        if nets.get(id).is_some_and(|b| !b.link_up()) {
            control.set_link(false);
        }
        super::virtio::plug(vm, ram, pci, list, Box::new(nic)).map_err(|e| format!("{}: {e}", n.spec))?;
        out.push(Nic { cfg: n.clone(), control });
    }
    Ok(out)
}
