//! What `savevm`, `loadvm`, `delvm` and `info snapshots` refuse, and why: each cause its
//! own variant, in QEMU's words.

use super::*;
use crate::config::{Config, DriveConfig};
use crate::testutil::probe;
use std::path::Path;

fn drive(file: &Path, format: &str, read_only: bool) -> DriveConfig {
    DriveConfig {
        file: file.to_path_buf(),
        format: Some(format.into()),
        read_only,
        snapshot: false,
        ignore_flush: false,
        id: "virtio0".into(),
        spec: format!("file={},format={format}", file.display()),
        blockdev: None,
    }
}

/// A VM that is built but never started. `incoming`: nothing loaded, images not taken.
fn vm(drives: Vec<DriveConfig>, incoming: bool) -> Vm {
    let kvm = crate::vm::kvm::open().expect("/dev/kvm");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let cfg = Config {
        mem_size: 64 << 20,
        vcpus: 1,
        kernel: (!incoming).then(probe),
        incoming: incoming.then(|| "unix:test".into()),
        start_paused: true,
        drives,
        ..Config::default()
    };
    Vm::build(&kvm, &cfg, Box::new(std::io::sink()), tx).unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("godwit-snap-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// No writable disk: `delvm` has nothing to do (as in QEMU), the others say so.
#[test]
fn without_a_writable_disk_delvm_does_nothing() {
    let dir = temp_dir("nodisk");
    let img = dir.join("ro.raw");
    std::fs::File::create(&img).unwrap().set_len(1 << 20).unwrap();
    for drives in [vec![], vec![drive(&img, "raw", true)]] {
        let vm = vm(drives, true);
        assert!(delete(&vm, "x").is_ok());
        let e = save(&vm, "x").unwrap_err();
        assert!(matches!(e, SnapshotError::NoDisk), "{e:?}");
        assert_eq!(e.to_string(), "no block device can store vmstate for snapshot");
        assert!(matches!(list(&vm), Err(SnapshotError::NoDisk)));
        let e = load(&vm, "x").unwrap_err();
        assert!(!e.changed_anything());
        assert!(matches!(e, LoadError::Unchanged(SnapshotError::NoDisk)), "{e:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A writable disk that cannot hold snapshots stops every command, `delvm` too.
#[test]
fn a_writable_raw_disk_is_refused() {
    let dir = temp_dir("raw");
    let img = dir.join("rw.raw");
    std::fs::File::create(&img).unwrap().set_len(1 << 20).unwrap();
    let vm = vm(vec![drive(&img, "raw", false)], true);
    let e = delete(&vm, "x").unwrap_err();
    assert!(matches!(&e, SnapshotError::Unsupported { id } if id == "virtio0"), "{e:?}");
    assert_eq!(e.to_string(), "Device 'virtio0' is writable but does not support snapshots");
    assert!(matches!(save(&vm, "x"), Err(SnapshotError::Unsupported { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A missing snapshot and one without VM state are refused by the check, before any disk
/// is reverted; a saved one is listed, checked and deleted.
#[test]
fn missing_and_disk_only_snapshots_change_nothing() {
    let dir = temp_dir("qcow2");
    let img = dir.join("d.qcow2");
    devices::block::Qcow2::create(&img, 16 << 20, 16, None).unwrap();
    let vm = vm(vec![drive(&img, "qcow2", false)], false);
    save(&vm, "full").unwrap();
    let disk = &vm.disks()[0];
    lock(&disk.backend)
        .as_qcow2()
        .unwrap()
        .snapshot_create("disk-only", 0, 0, None)
        .unwrap();

    let e = check_load(&vm, "nope").unwrap_err();
    assert!(matches!(&e, SnapshotError::NotFound { tag } if tag == "nope"), "{e:?}");
    assert_eq!(e.to_string(), "Snapshot 'nope' does not exist in one or more devices");
    let e = load(&vm, "disk-only").unwrap_err();
    assert!(!e.changed_anything());
    assert!(
        matches!(&e, LoadError::Unchanged(SnapshotError::DiskOnly { tag }) if tag == "disk-only"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "This is a disk-only snapshot. Revert to it  offline using qemu-img");
    assert!(check_load(&vm, "full").unwrap() > 0);

    delete(&vm, "full").unwrap();
    let names: Vec<String> = list(&vm).unwrap()[0].snapshots.iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["disk-only"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
