//! Save a running probe guest's complete state and RAM, load them into a freshly built VM,
//! and check the guest carries on where it was: heartbeats continue from the next number,
//! nothing reboots, and its working set still verifies.

use super::{Vm, VmError, VmEvent};
use crate::config::Config;
use crate::testutil::{Capture, heartbeats, probe};
use std::time::Duration;
use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};

fn config(paused: bool) -> Config {
    Config {
        mem_size: 256 << 20,
        vcpus: 2,
        kernel: Some(probe()),
        append: "probe.ws=8 probe.rate=20".into(),
        start_paused: paused,
        ..Config::default()
    }
}

#[test]
fn state_and_ram_move_to_a_fresh_vm() {
    let kvm = super::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded::<VmEvent>();

    let out1 = Capture::default();
    let src = Vm::build(&kvm, &config(false), Box::new(out1.clone()), tx.clone()).unwrap();
    src.start().unwrap();
    out1.wait_for("VERIFY 2 ok", Duration::from_secs(20));
    src.pause();
    let state = src.save_state().unwrap();
    // Through the versioned encoding, as migration and savevm will carry it.
    let bytes = devices::state::VersionedState::to_bytes(&state);
    let state = <super::state::MachineState as devices::state::VersionedState>::from_bytes(&bytes).unwrap();
    let mut ram = Vec::new();
    for r in src.ram().iter() {
        let mut buf = vec![0u8; r.len() as usize];
        src.ram().read_slice(&mut buf, r.start_addr()).unwrap();
        ram.push((r.start_addr(), buf));
    }
    let before = *heartbeats(&out1.text()).last().expect("no heartbeat");
    src.teardown();

    let out2 = Capture::default();
    let dst = Vm::build(&kvm, &config(true), Box::new(out2.clone()), tx).unwrap();
    for (addr, buf) in &ram {
        dst.ram().write_slice(buf, *addr).unwrap();
    }
    dst.restore_state(&state).unwrap();
    dst.start().unwrap();
    dst.resume();
    out2.wait_for("VERIFY", Duration::from_secs(20));
    let text = out2.wait_for_heartbeats(20, Duration::from_secs(20));
    // The pause may fall mid-line, so judge the source's and destination's output joined:
    // one unbroken run of heartbeats, no restart, no repeat.
    let joined = format!("{}{text}", out1.text());
    let beats = heartbeats(&joined);
    assert!(
        beats.windows(2).all(|w| w[1] == w[0] + 1),
        "heartbeats must continue, not restart: {beats:?}"
    );
    assert!(*beats.last().unwrap() >= before + 20, "{beats:?}");
    assert!(
        !text.contains("PROBE READY") && !text.contains("MISMATCH") && !text.contains("bad="),
        "{text}"
    );
    dst.teardown();
}

#[test]
fn mismatched_state_is_refused_before_changing_anything() {
    let kvm = super::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded::<VmEvent>();
    let a = Vm::build(&kvm, &config(true), Box::new(std::io::sink()), tx.clone()).unwrap();
    let mut st = a.save_state().unwrap();
    let other = Config { vcpus: 1, ..config(true) };
    let b = Vm::build(&kvm, &other, Box::new(std::io::sink()), tx.clone()).unwrap();
    let e = b.restore_state(&st).unwrap_err();
    assert!(matches!(e, VmError::VcpuCount { state: 2, vm: 1 }), "{e:?}");
    assert_eq!(e.to_string(), "vCPU count mismatch: the state has 2, this VM 1");
    st.mem_size = 512 << 20;
    let e = a.restore_state(&st).unwrap_err();
    assert!(matches!(e, VmError::RamSize { .. }), "{e:?}");
    assert_eq!(e.to_string(), "RAM size mismatch: the state has 512 MiB, this VM 256 MiB");
    st.mem_size = 256 << 20;
    st.devices.push(("bogus".into(), vec![]));
    let e = a.restore_state(&st).unwrap_err();
    assert!(matches!(e, VmError::Devices(_)), "{e:?}");
    assert!(e.to_string().contains("unknown device"));
}
