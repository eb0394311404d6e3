//! Image locking: godwit and QEMU refuse each other like two QEMUs do.

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::block::open_image;
use crate::block::qcow2::Qcow2;

fn lock_error(path: &Path, read_only: bool) -> Option<String> {
    match open_image(path, None, read_only) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// Starts an interactive qemu-io on `path` and waits until it holds its
/// locks (our probe open starts failing). The probe open itself locks the image for a
/// moment: a qemu-io that starts in that moment fails and exits, so it is started again.
fn hold_with_qemu_io(path: &Path, read_only: bool) -> Child {
    let spawn = || {
        let mut cmd = Command::new("qemu-io");
        if read_only {
            cmd.arg("-r");
        }
        cmd.arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn qemu-io")
    };
    let mut child = spawn();
    let start = Instant::now();
    // A writer blocks every other opener; a reader blocks writers. A qemu-io caught by our
    // probe while starting may hold its locks for a moment and then give up: it counts as
    // holding the image only if it is still there, locks held, a little later.
    loop {
        assert!(start.elapsed() < Duration::from_secs(10), "qemu-io did not lock the image");
        if lock_error(path, false).is_some() {
            std::thread::sleep(Duration::from_millis(100));
            if matches!(child.try_wait(), Ok(None)) && lock_error(path, false).is_some() {
                return child;
            }
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            child = spawn();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn release(mut child: Child) {
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"quit\n");
    }
    let _ = child.wait();
}

#[test]
fn godwit_instances_exclude_each_other() {
    let dir = tmpdir();
    let path = p(&dir, "a.qcow2");
    Qcow2::create(&path, 1 << 20, 16, None).unwrap();
    let writer = open(&path, None, false);
    // A conflict is its own variant, with the lock error as its source.
    assert!(matches!(
        open_image(&path, None, false),
        Err(crate::block::BlockError::Locked {
            err: crate::block::lock::LockError::Conflict { shared: false, .. },
            ..
        })
    ));
    let err = lock_error(&path, false).expect("second writer must fail");
    assert_eq!(
        err,
        format!(
            "Could not open '{0}': Failed to get \"write\" lock\nIs another process using the image [{0}]?",
            path.display()
        )
    );
    let err = lock_error(&path, true).expect("reader must fail while a writer holds it");
    assert!(err.contains("Failed to get shared \"write\" lock"), "{err}");
    drop(writer);
    let r1 = open(&path, None, true);
    let r2 = open(&path, None, true);
    let err = lock_error(&path, false).expect("writer must fail while readers hold it");
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
    drop((r1, r2));
    drop(open(&path, None, false));
}

#[test]
fn godwit_and_qemu_exclude_each_other() {
    require_qemu!();
    let dir = tmpdir();
    let path = p(&dir, "a.qcow2");
    let s = path.to_str().unwrap();
    Qcow2::create(&path, 1 << 20, 16, None).unwrap();

    // godwit writes: qemu-img info and a qemu-io writer are refused.
    let writer = open(&path, None, false);
    let (code, _, err) = run_once("qemu-img", &["info", s]);
    assert_eq!(code, 1);
    assert!(err.contains("Failed to get shared \"write\" lock"), "{err}");
    assert!(err.contains(&format!("Is another process using the image [{s}]?")), "{err}");
    let (code, out, err) = run_once("qemu-io", &["-c", "read 0 512", s]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
    // -U (force share) still works, as with QEMU.
    assert_eq!(qemu_img(&["info", "-U", s]).0, 0);
    drop(writer);

    // godwit reads: readers fine, writers refused.
    let reader = open(&path, None, true);
    assert_eq!(qemu_img(&["info", s]).0, 0);
    let (code, _, err) = run_once("qemu-io", &["-c", "write 0 512", s]);
    assert_ne!(code, 0);
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
    drop(reader);

    // qemu-io writes: godwit refused both ways.
    let child = hold_with_qemu_io(&path, false);
    let err = lock_error(&path, false).unwrap();
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
    assert!(err.contains(&format!("Is another process using the image [{s}]?")), "{err}");
    let err = lock_error(&path, true).unwrap();
    assert!(err.contains("Failed to get shared \"write\" lock"), "{err}");
    release(child);

    // qemu-io reads: godwit may read, not write.
    let child = hold_with_qemu_io(&path, true);
    drop(open(&path, None, true));
    assert!(lock_error(&path, false).is_some());
    release(child);
    drop(open(&path, None, false));
}
