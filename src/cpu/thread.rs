//! The loop each vCPU thread runs: enter the guest, serve its port and MMIO exits, and
//! report machine-level events (reset, shutdown, errors) to the VM.

use super::CpuError;
use super::control::RunControl;
use crate::events::VmEvent;
use crossbeam_channel::Sender;
use devices::bus::Bus;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;

pub struct Vcpu {
    pub id: u8,
    /// Locked by this thread only around `KVM_RUN`, so while the vCPU is parked the VM can
    /// read and write its state.
    pub fd: Arc<Mutex<VcpuFd>>,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub control: Arc<RunControl>,
    pub events: Sender<VmEvent>,
}

/// What the loop does after an exit.
enum Flow {
    Continue,
    /// The machine-level event was reported; this vCPU stops running the guest.
    Leave,
}

pub fn spawn(v: Vcpu) -> Result<JoinHandle<()>, CpuError> {
    std::thread::Builder::new()
        .name(format!("vcpu{}", v.id))
        .spawn(move || run(v))
        .map_err(CpuError::Thread)
}

fn run(v: Vcpu) {
    v.control.register_current_thread(usize::from(v.id));
    let control = v.control.clone();
    let mut slice = super::throttle::Slice::default();
    loop {
        control.throttle_point(&mut slice);
        let (fd, pio, mmio, events, id) = (&v.fd, &v.pio, &v.mmio, &v.events, v.id);
        if !control.checkpoint(&mut || finish_pending_io(&mut devices::bus::lock(fd), pio, mmio, events, id)) {
            break;
        }
        let mut fd = devices::bus::lock(&v.fd);
        let flow = match fd.run() {
            Ok(exit) => handle_exit(exit, &v.pio, &v.mmio, &v.events, v.id),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Flow::Continue,
            Err(e) => {
                let _ = v.events.send(VmEvent::Error(format!("vCPU {}: KVM_RUN failed: {e}", v.id)));
                Flow::Leave
            }
        };
        drop(fd);
        if let Flow::Leave = flow {
            break;
        }
    }
    control.retire();
}

/// Re-enters KVM once with `immediate_exit` set, so an `in` or MMIO read whose data we
/// already supplied is completed and the saved registers are consistent.
fn finish_pending_io(fd: &mut VcpuFd, pio: &Bus, mmio: &Bus, events: &Sender<VmEvent>, id: u8) {
    fd.set_kvm_immediate_exit(1);
    // A string I/O instruction may need several rounds; bound them.
    for _ in 0..64 {
        match fd.run() {
            Ok(exit) => {
                if let Flow::Leave = handle_exit(exit, pio, mmio, events, id) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    fd.set_kvm_immediate_exit(0);
}

fn handle_exit(exit: VcpuExit<'_>, pio: &Bus, mmio: &Bus, events: &Sender<VmEvent>, id: u8) -> Flow {
    let report = |e: VmEvent| {
        let _ = events.send(e);
        Flow::Leave
    };
    match exit {
        VcpuExit::IoOut(port, data) => {
            pio.write(u64::from(port), data);
            Flow::Continue
        }
        VcpuExit::IoIn(port, data) => {
            pio.read(u64::from(port), data);
            Flow::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            mmio.read(addr, data);
            Flow::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            mmio.write(addr, data);
            Flow::Continue
        }
        VcpuExit::Intr => Flow::Continue,
        VcpuExit::Hlt => {
            // Only without an in-kernel LAPIC; avoid spinning.
            std::thread::sleep(std::time::Duration::from_millis(1));
            Flow::Continue
        }
        // A triple fault: a PC resets.
        VcpuExit::Shutdown => report(VmEvent::Reset),
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _) => report(VmEvent::Shutdown),
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _) => report(VmEvent::Reset),
        VcpuExit::FailEntry(reason, _) => report(VmEvent::Error(format!("KVM: entry failed, hardware error {reason:#x} (vCPU {id})"))),
        VcpuExit::InternalError => report(VmEvent::Error(format!("KVM internal error on vCPU {id}"))),
        other => report(VmEvent::Error(format!("vCPU {id}: unexpected KVM exit {other:?}"))),
    }
}
