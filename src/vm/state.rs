//! The whole machine's state apart from RAM: KVM's VM-wide objects, every vCPU and every
//! device, each as a versioned value. Migration and savevm carry exactly this.

use super::device_list::NamedState;
use crate::cpu::state::{VcpuState, kvm_struct};
use devices::state::{StateError, StateReader, StateWriter, VersionedState};
use kvm_bindings::{KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, kvm_clock_data, kvm_irqchip, kvm_pit_state2};
use kvm_ioctls::VmFd;
use zerocopy::IntoBytes;

const IRQCHIPS: [u32; 3] = [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC];

/// PIT, kvmclock, both PICs and the IOAPIC, which live inside KVM.
#[derive(Clone)]
pub struct KvmVmState {
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
    pub irqchips: Vec<kvm_irqchip>,
}

impl KvmVmState {
    pub fn save(vm: &VmFd) -> Result<Self, kvm_ioctls::Error> {
        let pit = vm.get_pit2()?;
        let clock = vm.get_clock()?;
        let mut irqchips = Vec::with_capacity(IRQCHIPS.len());
        for id in IRQCHIPS {
            let mut c = kvm_irqchip {
                chip_id: id,
                ..Default::default()
            };
            vm.get_irqchip(&mut c)?;
            irqchips.push(c);
        }
        Ok(KvmVmState { pit, clock, irqchips })
    }

    /// PIT, then the clock (before any vCPU runs again), then the interrupt controllers.
    pub fn restore(&self, vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
        vm.set_pit2(&self.pit)?;
        // Flags 0: the guest clock continues from the saved value, whatever time passed.
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            flags: 0,
            ..Default::default()
        };
        vm.set_clock(&clock)?;
        for c in &self.irqchips {
            vm.set_irqchip(c)?;
        }
        Ok(())
    }
}

impl VersionedState for KvmVmState {
    const NAME: &'static str = "kvm-vm";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.bytes(self.pit.as_bytes());
        w.bytes(self.clock.as_bytes());
        for c in &self.irqchips {
            w.bytes(c.as_bytes());
        }
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let pit = kvm_struct(r, Self::NAME)?;
        let clock = kvm_struct(r, Self::NAME)?;
        let mut irqchips = Vec::new();
        for id in IRQCHIPS {
            let c: kvm_irqchip = kvm_struct(r, Self::NAME)?;
            if c.chip_id != id {
                return Err(StateError::Invalid {
                    name: Self::NAME,
                    why: format!("irqchip {} where {id} was expected", c.chip_id),
                });
            }
            irqchips.push(c);
        }
        Ok(KvmVmState { pit, clock, irqchips })
    }
}

/// Everything but RAM.
#[derive(Clone)]
pub struct MachineState {
    pub mem_size: u64,
    pub vm: KvmVmState,
    pub vcpus: Vec<VcpuState>,
    pub devices: Vec<NamedState>,
}

/// Upper bounds on counts read from outside, far above anything real.
const MAX_VCPUS: u32 = 1024;
const MAX_DEVICES: u32 = 4096;

impl VersionedState for MachineState {
    const NAME: &'static str = "godwit-machine";
    const VERSION: u16 = 1;
    fn encode(&self, w: &mut StateWriter) {
        w.u64(self.mem_size);
        w.bytes(&self.vm.to_bytes());
        w.u32(self.vcpus.len() as u32);
        for v in &self.vcpus {
            w.bytes(&v.to_bytes());
        }
        w.u32(self.devices.len() as u32);
        for (name, bytes) in &self.devices {
            w.str(name);
            w.bytes(bytes);
        }
    }
    fn decode(r: &mut StateReader<'_>, _version: u16) -> Result<Self, StateError> {
        let mem_size = r.u64()?;
        let vm = KvmVmState::from_bytes(r.bytes()?)?;
        let n = r.u32()?;
        if n == 0 || n > MAX_VCPUS {
            return Err(StateError::Invalid {
                name: Self::NAME,
                why: format!("{n} vCPUs"),
            });
        }
        let mut vcpus = Vec::with_capacity(n as usize);
        for _ in 0..n {
            vcpus.push(VcpuState::from_bytes(r.bytes()?)?);
        }
        let n = r.u32()?;
        if n > MAX_DEVICES {
            return Err(StateError::Invalid {
                name: Self::NAME,
                why: format!("{n} devices"),
            });
        }
        let mut devices = Vec::with_capacity(n as usize);
        for _ in 0..n {
            devices.push((r.string()?, r.bytes()?.to_vec()));
        }
        Ok(MachineState {
            mem_size,
            vm,
            vcpus,
            devices,
        })
    }
}
