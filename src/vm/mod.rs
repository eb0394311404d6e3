//! A virtual machine: KVM objects, guest RAM, devices and vCPU threads, built from a
//! [`Config`] and torn down whole (a reboot builds a fresh one).

pub mod block_info;
pub mod device_list;
pub mod disks;
pub mod kvm;
pub mod nics;
pub mod platform;
pub mod state;
#[cfg(test)]
mod tests;
pub mod virtio;

use crate::boot::{self, BootError, Entry};
use crate::config::Config;
use crate::cpu::control::RunControl;
use crate::cpu::thread::{self, Vcpu};
use crate::cpu::{CpuError, cpuid, setup};
use crate::layout;
use crate::memory::{self, GuestRam, MemoryError};
use crate::network::Networks;
use crossbeam_channel::Sender;
use devices::legacy::serial::SerialOutput;
use devices::state::StateError;
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use thiserror::Error;
use vm_memory::MmapRegion;

pub use crate::events::VmEvent;

/// Why a VM could not be built, started, saved or loaded.
#[derive(Debug, Error)]
pub enum VmError {
    #[error(transparent)]
    Kvm(#[from] kvm::KvmError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error(transparent)]
    Platform(#[from] platform::PlatformError),
    /// The firmware image's mapping below 4 GiB could not be made.
    #[error("cannot map firmware: {0}")]
    FirmwareMap(#[source] vm_memory::mmap::MmapRegionError),
    /// KVM refused the firmware's memory slot.
    #[error("cannot map firmware: {0}")]
    FirmwareSlot(#[source] kvm_ioctls::Error),
    /// A state can be saved or loaded only while the vCPUs are parked.
    #[error("the VM must be paused to {what}")]
    NotPaused { what: &'static str },
    /// KVM's VM-wide objects (PIT, clock, interrupt controllers) could not be read.
    #[error("cannot read KVM VM state: {0}")]
    SaveKvm(#[source] kvm_ioctls::Error),
    /// KVM's VM-wide objects could not be loaded.
    #[error("cannot load KVM VM state: {0}")]
    LoadKvm(#[source] kvm_ioctls::Error),
    /// A saved state's RAM size (bytes) is not this VM's.
    #[error("RAM size mismatch: the state has {} MiB, this VM {} MiB", state >> 20, vm >> 20)]
    RamSize { state: u64, vm: u64 },
    /// A saved state's vCPU count is not this VM's.
    #[error("vCPU count mismatch: the state has {state}, this VM {vm}")]
    VcpuCount { state: usize, vm: usize },
    /// The saved device states do not fit this VM's devices (unknown, missing, undecodable).
    #[error(transparent)]
    Devices(#[from] StateError),
    #[error(transparent)]
    Disk(#[from] disks::DiskError),
    /// The PCI BARs of the disks and NICs could not be placed.
    #[error(transparent)]
    Bars(#[from] devices::pci::mmio::PciMmioError),
    /// A NIC could not be created or plugged (its option, then why).
    #[error("{0}")]
    Nic(#[from] nics::NicError),
}

pub struct Vm {
    fd: Arc<VmFd>,
    ram: GuestRam,
    mem_size: u64,
    /// The MSRs this host lets us save and restore (same for every vCPU).
    msr_list: Vec<u32>,
    /// The firmware image's read-only mapping under 4 GiB, kept alive with the VM.
    _bios: Option<MmapRegion<()>>,
    platform: platform::Platform,
    control: Arc<RunControl>,
    vcpus: Vec<Arc<Mutex<VcpuFd>>>,
    pio: Arc<devices::bus::Bus>,
    mmio: Arc<devices::bus::Bus>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Held by whoever pauses the VM to act on it and then decides whether it runs on: the
    /// monitor's `stop`/`cont`/`savevm`/`loadvm`/`info registers`, and a migration from its
    /// stop-and-copy until its outcome is known. So none of them resumes a VM another one
    /// has paused for its own work (see [`Vm::hold_run_state`]).
    run_state: Mutex<()>,
    events: Sender<VmEvent>,
    /// Every device, for pause, state and teardown.
    devices: device_list::DeviceList,
    disks: Vec<disks::Disk>,
    nics: Vec<nics::Nic>,
    /// The `late-block-activate` capability on an incoming migration: the disks stay
    /// inactive when it completes, until the guest is started.
    pub late_block_activate: std::sync::atomic::AtomicBool,
}

impl Vm {
    /// A VM without network back ends (its configuration must name no NIC).
    #[cfg(test)]
    pub fn build(kvm: &Kvm, cfg: &Config, serial_out: SerialOutput, events: Sender<VmEvent>) -> Result<Vm, VmError> {
        Self::build_with(kvm, cfg, serial_out, events, &Networks::default())
    }

    /// Builds the VM of `cfg`, its NICs on the back ends in `nets`.
    pub fn build_with(kvm: &Kvm, cfg: &Config, serial_out: SerialOutput, events: Sender<VmEvent>, nets: &Networks) -> Result<Vm, VmError> {
        let base_cpuid = cpuid::supported(kvm).map_err(CpuError::SupportedCpuid)?;
        let fd = Arc::new(kvm::create_vm(kvm)?);
        let ram = memory::create(cfg.mem_size, kvm::phys_bits(&base_cpuid))?;
        memory::register(&fd, &ram, false)?;

        let (entry, bios) = match &cfg.bios {
            Some(path) => {
                let img = boot::bios::read(path)?;
                // An incoming VM's RAM comes from the stream, which assumes it starts all
                // zero (a page the guest zeroed goes as a zero record only): no copy here.
                if cfg.incoming.is_none() {
                    boot::bios::copy_legacy(&ram, &img)?;
                }
                let region = map_firmware(kvm, &fd, &img, ram_slots(&ram))?;
                (Entry::ResetVector, Some(region))
            }
            // An incoming VM gets all of its RAM and state from the stream: load nothing.
            None if cfg.incoming.is_some() => (Entry::ResetVector, None),
            None => {
                let kernel = cfg.kernel.as_deref().ok_or(BootError::BadKernel)?;
                boot::paging::write(&ram)?;
                boot::mptable::write(&ram, cfg.vcpus)?;
                let lb = boot::linux::LinuxBoot {
                    kernel,
                    initrd: cfg.initrd.as_deref(),
                    cmdline: &cfg.append,
                    mem_size: cfg.mem_size,
                };
                (boot::linux::load(&ram, &lb)?, None)
            }
        };

        let ranges = layout::ram_ranges(cfg.mem_size);
        let below = ranges[0].1;
        let above = ranges.get(1).map_or(0, |r| r.1);
        let mut list = device_list::DeviceList::default();
        let mut platform = platform::build(&fd, serial_out, events.clone(), below, above, &mut list)?;
        let disks = disks::attach(&fd, &ram, &platform.pci, &mut list, &cfg.drives, cfg.incoming.is_some()).map_err(VmError::Disk)?;
        let nics = nics::attach(&fd, &ram, &platform.pci, &mut list, &cfg.nics, nets)?;
        if !disks.is_empty() || !nics.is_empty() {
            // godwit is the firmware here: it places the BARs before the kernel looks.
            let root = devices::bus::lock(&platform.pci);
            devices::pci::mmio::assign_bars(&root, devices::pci::mmio::PCI_MMIO_START, devices::pci::mmio::PCI_MMIO_END)
                .map_err(VmError::Bars)?;
        }
        let pio = Arc::new(std::mem::take(&mut platform.pio));
        let mmio = Arc::new(std::mem::take(&mut platform.mmio));

        let mut pending = Vec::with_capacity(cfg.vcpus as usize);
        for id in 0..cfg.vcpus {
            let vcpu = fd.create_vcpu(u64::from(id)).map_err(|e| CpuError::Create(id, e))?;
            setup::configure(&vcpu, id, cfg.vcpus, &base_cpuid)?;
            if id == 0 {
                setup::set_entry(&vcpu, entry)?;
            }
            pending.push(Arc::new(Mutex::new(vcpu)));
        }
        let msr_list = crate::cpu::state::saveable_msrs(kvm, &devices::bus::lock(&pending[0]))?;
        // An incoming VM waits, paused, for its state.
        let control = Arc::new(RunControl::new(pending.len(), cfg.start_paused || cfg.incoming.is_some()));
        Ok(Vm {
            fd,
            ram,
            mem_size: cfg.mem_size,
            msr_list,
            _bios: bios,
            platform,
            control,
            vcpus: pending,
            pio,
            mmio,
            threads: Mutex::new(Vec::new()),
            run_state: Mutex::new(()),
            events,
            devices: list,
            disks,
            nics,
            late_block_activate: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The UART, for routing console input to it.
    pub fn serial(&self) -> Arc<std::sync::Mutex<devices::legacy::serial::SerialDevice>> {
        self.platform.serial.clone()
    }

    /// Starts one thread per vCPU (they stay parked if the VM was built paused).
    pub fn start(&self) -> Result<(), VmError> {
        let mut threads = devices::bus::lock(&self.threads);
        if !threads.is_empty() {
            return Ok(());
        }
        for (id, fd) in self.vcpus.iter().enumerate() {
            let v = Vcpu {
                id: id as u8,
                fd: fd.clone(),
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                control: self.control.clone(),
                events: self.events.clone(),
            };
            threads.push(thread::spawn(v)?);
        }
        Ok(())
    }

    /// A VM that is meant to be paused may still have vCPU threads on their way to park
    /// (just started, or just told to stop): wait for them. A running VM is refused.
    fn ensure_parked(&self, what: &'static str) -> Result<(), VmError> {
        if !self.started() {
            return Ok(());
        }
        if self.control.want() == crate::cpu::control::Want::Run {
            return Err(VmError::NotPaused { what });
        }
        self.control.pause();
        Ok(())
    }

    fn started(&self) -> bool {
        !devices::bus::lock(&self.threads).is_empty()
    }

    /// Guest RAM.
    #[allow(dead_code)]
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Stops all vCPUs (they finish any half-done I/O first; returns once all are parked),
    /// then lets each device finish its request in flight and park, so RAM, device state
    /// and images are consistent with each other.
    pub fn pause(&self) {
        if self.started() {
            self.control.pause();
        } else {
            self.control.request_pause();
        }
        self.devices.pause();
    }

    pub fn resume(&self) {
        self.devices.resume();
        self.control.resume();
    }

    /// Throttles every vCPU to run `100 - pct` percent of the time (0 lifts it).
    pub fn set_throttle(&self, pct: u8) {
        self.control.set_throttle(pct);
    }

    /// The vCPU throttle in percent (0: none).
    pub fn throttle(&self) -> u8 {
        self.control.throttle()
    }

    /// The attached disks.
    pub fn disks(&self) -> &[disks::Disk] {
        &self.disks
    }

    /// The NICs.
    pub fn nics(&self) -> &[nics::Nic] {
        &self.nics
    }

    /// Hands every disk's image over (flushed, closed, unlocked). The VM must be paused.
    pub fn inactivate_disks(&self) -> Result<(), disks::DiskError> {
        self.disks.iter().try_for_each(|d| d.inactivate())
    }

    /// Takes every disk's image (back): locks and fresh metadata. The VM must be paused.
    pub fn activate_disks(&self) -> Result<(), disks::DiskError> {
        self.disks.iter().try_for_each(|d| d.activate())
    }

    /// At the end of an incoming migration: the disks are taken now, unless
    /// `late-block-activate` leaves that to the guest's start.
    pub fn activate_disks_after_incoming(&self) -> Result<(), disks::DiskError> {
        if self.late_block_activate.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.activate_disks()
    }

    /// Reads the machine's state: devices first (a device may still raise an interrupt),
    /// then vCPUs, then KVM's VM-wide objects. The VM must be paused.
    pub fn save_state(&self) -> Result<state::MachineState, VmError> {
        self.ensure_parked("save its state")?;
        let devices = self.devices.save();
        let mut vcpus = Vec::with_capacity(self.vcpus.len());
        for (id, fd) in self.vcpus.iter().enumerate() {
            vcpus.push(crate::cpu::state::VcpuState::save(
                &devices::bus::lock(fd),
                id as u8,
                &self.msr_list,
            )?);
        }
        let vm = state::KvmVmState::save(&self.fd).map_err(VmError::SaveKvm)?;
        Ok(state::MachineState {
            mem_size: self.mem_size,
            vm,
            vcpus,
            devices,
        })
    }

    /// Checks a saved state against this machine (RAM size, vCPUs, devices, every device
    /// state decodable) without loading anything.
    pub fn check_state(&self, st: &state::MachineState) -> Result<(), VmError> {
        if st.mem_size != self.mem_size {
            return Err(VmError::RamSize {
                state: st.mem_size,
                vm: self.mem_size,
            });
        }
        if st.vcpus.len() != self.vcpus.len() {
            return Err(VmError::VcpuCount {
                state: st.vcpus.len(),
                vm: self.vcpus.len(),
            });
        }
        Ok(self.devices.check(&st.devices)?)
    }

    /// Loads a saved state into this (paused or not yet started) machine: KVM's VM-wide
    /// objects first, then vCPUs, then devices. Checks the configuration matches first.
    pub fn restore_state(&self, st: &state::MachineState) -> Result<(), VmError> {
        self.check_state(st)?;
        self.ensure_parked("load a state")?;
        st.vm.restore(&self.fd).map_err(VmError::LoadKvm)?;
        for (id, (fd, v)) in self.vcpus.iter().zip(&st.vcpus).enumerate() {
            v.restore(&devices::bus::lock(fd), id as u8)?;
        }
        // A restored device restarts parked, like the vCPUs: requests the guest had queued
        // run only once the whole VM does (`resume`), not while it waits (`-S`, `stop`).
        self.devices.pause();
        Ok(self.devices.restore(&st.devices)?)
    }

    /// Stops every vCPU thread and waits for them.
    pub fn teardown(&self) {
        self.control.stop();
        let threads: Vec<_> = devices::bus::lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        // Devices write back what their back ends cache (a disk's metadata), so an image
        // is clean for whoever opens it next.
        self.devices.shutdown();
    }

    /// Kernel thread ids of the vCPU threads, by vCPU index.
    pub fn thread_ids(&self) -> Vec<(usize, i32)> {
        self.control.thread_ids()
    }

    /// The right to pause this VM and decide whether it runs again; see `run_state`. Not
    /// reentrant: `pause` and `resume` themselves do not take it.
    pub fn hold_run_state(&self) -> std::sync::MutexGuard<'_, ()> {
        devices::bus::lock(&self.run_state)
    }

    /// Reads each vCPU's state, pausing the VM briefly if it runs (for `info registers`).
    pub fn vcpu_states(&self) -> Result<Vec<crate::cpu::state::VcpuState>, VmError> {
        let _hold = self.hold_run_state();
        let was_running = self.started() && !self.is_paused();
        if was_running {
            self.pause();
        }
        let r = self
            .vcpus
            .iter()
            .enumerate()
            .map(|(id, fd)| crate::cpu::state::VcpuState::save(&devices::bus::lock(fd), id as u8, &self.msr_list).map_err(VmError::from))
            .collect();
        if was_running {
            self.resume();
        }
        r
    }

    /// The device models, for `info pci` and `info qtree`.
    pub fn platform(&self) -> &platform::Platform {
        &self.platform
    }

    /// The KVM VM object (for dirty logging).
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    pub fn mem_size(&self) -> u64 {
        self.mem_size
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    pub fn is_paused(&self) -> bool {
        self.control.is_paused() || self.control.want() != crate::cpu::control::Want::Run
    }
}

fn ram_slots(ram: &GuestRam) -> u32 {
    use vm_memory::GuestMemoryBackend;
    ram.num_regions() as u32
}

/// Maps the firmware image just below 4 GiB as its own (read-only where KVM allows) slot.
fn map_firmware(kvm: &Kvm, vm: &VmFd, img: &boot::bios::BiosImage, slot: u32) -> Result<MmapRegion<()>, VmError> {
    let region = MmapRegion::<()>::new(img.data.len()).map_err(VmError::FirmwareMap)?;
    // SAFETY: the region is a fresh private mapping of exactly data.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(img.data.as_ptr(), region.as_ptr(), img.data.len()) };
    let flags = if kvm.check_extension(Cap::ReadonlyMem) {
        kvm_bindings::KVM_MEM_READONLY
    } else {
        0
    };
    let r = kvm_bindings::kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr: img.base,
        memory_size: img.data.len() as u64,
        userspace_addr: region.as_ptr() as u64,
    };
    // SAFETY: the mapping outlives the slot: the Vm keeps `region` until the VM fd is closed.
    unsafe { vm.set_user_memory_region(r) }.map_err(VmError::FirmwareSlot)?;
    Ok(region)
}
