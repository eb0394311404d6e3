//! The crash torture in short (`scripts/torture`, fixed seed): godwit killed with SIGKILL
//! once during each of savevm, delvm, loadvm, a block-migration destination's writes and
//! the guest's disk writes, each kill followed by the checks the script makes (qemu-img
//! check, every older snapshot still loads and verifies, the disk holds every flushed
//! write). The long run, hundreds of kills per operation, is the same script by hand.

mod common;

use common::{godwit_bin, root, vm_lock};
use std::process::Command;

#[test]
fn a_kill_anywhere_loses_nothing() {
    let _l = vm_lock();
    let out = Command::new(root().join("scripts/torture"))
        .args(["--seed", "7", "--iterations", "1", "--godwit", godwit_bin()])
        .output()
        .expect("run scripts/torture");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("kills: savevm 1, delvm 1, loadvm 1, migrate 1, diskwrite 1; failures: 0"),
        "{text}"
    );
}
