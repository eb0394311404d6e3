//! Image locking compatible with QEMU's `file` driver.
//!
//! QEMU advertises which block permissions an opener holds, and which ones
//! it refuses to share, with open-file-description (OFD) read locks on
//! single bytes of the image file:
//!
//! * byte `100 + n` is locked while the opener *holds* permission `n`;
//! * byte `200 + n` is locked while the opener *does not share* permission
//!   `n` with others.
//!
//! Permission numbers are QEMU's: 0 consistent read, 1 write, 2 write
//! unchanged, 3 resize. Before committing, an opener tests with
//! `F_OFD_GETLK`/`F_WRLCK` that no one else locks byte `200 + n` for a
//! permission it wants, nor byte `100 + n` for a permission it refuses to
//! share. godwit takes the same bytes as a QEMU guest disk does
//! (observed with `qemu-io` in `/proc/locks`), so godwit and QEMU (or
//! `qemu-img` without `-U`) exclude each other exactly like two QEMUs.
//!
//! OFD locks belong to the open file description: they are released when
//! the last descriptor of the image file is closed.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use thiserror::Error;

use crate::block::errno_text;

/// First byte of the "permission held" range.
pub const PERM_BASE: u64 = 100;
/// First byte of the "permission not shared" range.
pub const SHARED_BASE: u64 = 200;

/// QEMU block permission bits (`BLK_PERM_*`).
pub const PERM_CONSISTENT_READ: u32 = 1 << 0;
pub const PERM_WRITE: u32 = 1 << 1;
pub const PERM_WRITE_UNCHANGED: u32 = 1 << 2;
pub const PERM_RESIZE: u32 = 1 << 3;
const PERM_COUNT: u32 = 4;
const PERM_ALL: u32 = (1 << PERM_COUNT) - 1;

/// QEMU's names for the permissions, used in error messages.
fn perm_name(bit: u32) -> &'static str {
    match bit {
        0 => "consistent read",
        1 => "write",
        2 => "write unchanged",
        _ => "resize",
    }
}

/// How an image is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Read-only, like a QEMU read-only drive or a backing file: holds
    /// consistent read, refuses to share write and resize.
    Read,
    /// Read-write, like a QEMU guest disk: holds consistent read, write and
    /// resize, shares only consistent read and write unchanged.
    Write,
}

impl LockMode {
    fn perms(self) -> (u32, u32) {
        let shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
        match self {
            LockMode::Read => (PERM_CONSISTENT_READ, shared),
            LockMode::Write => (PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE, shared),
        }
    }
}

/// Locking errors, worded like QEMU's.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process holds a conflicting lock.
    #[error(
        "Failed to get {}\"{perm}\" lock\nIs another process using the image [{path}]?",
        if *shared { "shared " } else { "" }
    )]
    Conflict { perm: &'static str, shared: bool, path: String },
    /// The lock system call failed.
    #[error("Failed to lock byte {byte}: {}", errno_text(source))]
    Lock { byte: u64, source: io::Error },
}

fn flock(kind: libc::c_int, byte: u64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero bytes are valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Takes a shared OFD lock on `byte`. `Ok(false)` when the file system
/// does not support OFD locks.
fn lock_byte(file: &File, byte: u64) -> io::Result<bool> {
    let fl = flock(libc::F_RDLCK, byte);
    // SAFETY: F_OFD_SETLK reads the flock struct we pass by pointer; it
    // lives for the duration of the call.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(libc::ENOLCK) => Ok(false),
        _ => Err(err),
    }
}

/// Whether another open file description holds a lock on `byte` that
/// conflicts with an exclusive lock.
fn byte_in_use(file: &File, byte: u64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK, byte);
    // SAFETY: F_OFD_GETLK reads and updates the flock struct we pass by
    // pointer; it lives for the duration of the call.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Takes QEMU's lock bytes on `file` for `mode` and checks that no other
/// process holds conflicting ones. On error the caller closes `file`,
/// which drops any byte locked so far.
pub fn lock_image(file: &File, path: &Path, mode: LockMode) -> Result<(), LockError> {
    let (perm, shared) = lock_image_bytes(file, mode)?;
    // A conflict may be only a child process that has just been forked (here or in another
    // process) and not yet exec'd: it holds a copy of every descriptor its parent had,
    // image ones too, until exec closes them (they are close-on-exec). So a conflict is
    // looked at again a few times over a moment before it is reported.
    let mut tries = 0;
    loop {
        match find_conflict(file, path, perm, shared) {
            Err(LockError::Conflict { .. }) if tries < CONFLICT_RETRIES => {
                tries += 1;
                std::thread::sleep(CONFLICT_PAUSE);
            }
            other => return other,
        }
    }
}

/// How often, and how far apart, a conflicting lock is looked at again (see `lock_image`).
const CONFLICT_RETRIES: u32 = 10;
const CONFLICT_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The first lock another open file description holds against `perm`/`shared`.
fn find_conflict(file: &File, path: &Path, perm: u32, shared: u32) -> Result<(), LockError> {
    let conflict = |bit: u32, shared: bool| LockError::Conflict {
        perm: perm_name(bit),
        shared,
        path: path.display().to_string(),
    };
    let test = |byte: u64| byte_in_use(file, byte).map_err(|source| LockError::Lock { byte, source });
    for bit in 0..PERM_COUNT {
        if perm & (1 << bit) != 0 && test(SHARED_BASE + u64::from(bit))? {
            return Err(conflict(bit, false));
        }
    }
    for bit in 0..PERM_COUNT {
        if shared & (1 << bit) == 0 && test(PERM_BASE + u64::from(bit))? {
            return Err(conflict(bit, true));
        }
    }
    Ok(())
}

/// Locks the bytes for `mode`; returns the (held, shared) permission masks,
/// or empty masks when the file system has no OFD locks.
fn lock_image_bytes(file: &File, mode: LockMode) -> Result<(u32, u32), LockError> {
    let (perm, shared) = mode.perms();
    let unshared = !shared & PERM_ALL;
    for (base, mask) in [(PERM_BASE, perm), (SHARED_BASE, unshared)] {
        for bit in 0..PERM_COUNT {
            if mask & (1 << bit) == 0 {
                continue;
            }
            let byte = base + u64::from(bit);
            match lock_byte(file, byte) {
                Ok(true) => {}
                Ok(false) => return Ok((0, PERM_ALL)),
                Err(source) => return Err(LockError::Lock { byte, source }),
            }
        }
    }
    Ok((perm, shared))
}
