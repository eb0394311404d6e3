//! The probe is a QEMU-compatible image, not a godwit-specific one: QEMU 7.2 boots the same
//! file with the same options (through SeaBIOS and the probe's real-mode entry).

mod common;

use common::{Guest, field, qemu_available, vm_lock};
use std::time::Duration;

#[test]
fn qemu_boots_the_same_probe() {
    // CI installs qemu-system-x86 (scripts/setup.sh); a bare machine says why it skipped.
    if !qemu_available() {
        eprintln!("SKIPPED: qemu-system-x86_64 is not installed (scripts/setup.sh installs it)");
        return;
    }
    let _l = vm_lock();
    let p = common::probe();
    let mut g = Guest::spawn(
        "qemu-system-x86_64",
        &[
            "-enable-kvm",
            "-m",
            "512",
            "-smp",
            "2",
            "-nographic",
            "-no-reboot",
            "-kernel",
            p.to_str().unwrap(),
            "-append",
            // SeaBIOS under PVM sometimes lists only the BSP in its MP table; say how
            // many CPUs to wait for (docs/probe.md).
            "probe.exit=20 probe.cpus=2",
        ],
    );
    // SeaBIOS alone takes several seconds when guest ring 0 is emulated. The probe waits
    // for the AP's UP line before READY, so READY counts both CPUs and comes after it.
    let ready = g.wait_for("PROBE READY", Duration::from_secs(120));
    assert_eq!(field(&ready.text, "cpus"), Some("2"), "{}", ready.text);
    assert!(g.seen.iter().any(|l| l.text.contains("PROBE CPU 1 UP")), "{:#?}", g.seen);
    g.wait_for("HB 20", Duration::from_secs(30));
    g.wait_for("PROBE EXIT", Duration::from_secs(10));
    assert_eq!(g.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
