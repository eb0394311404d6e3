//! The tap's `script=` and `downscript=`, run as QEMU 7.2 runs them: the program itself
//! (no shell, no PATH search: a name without '/' is taken from the current directory), with
//! the interface name as its one argument, waited for; anything but exit status 0 fails.

use super::TapError;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// The default scripts, as QEMU 7.2 installs them on Debian.
pub const DEFAULT_UP: &str = "/etc/qemu-ifup";
pub const DEFAULT_DOWN: &str = "/etc/qemu-ifdown";

/// `script=`/`downscript=` as given (None when absent) to the script to run, if any.
pub fn choose(given: Option<&str>, default: &str) -> Option<String> {
    match given {
        None => Some(default.to_string()),
        Some("") | Some("no") => None,
        Some(s) => Some(s.to_string()),
    }
}

/// Runs `script` for interface `ifname`.
pub fn run(script: &str, ifname: &str) -> Result<(), TapError> {
    let program = if script.contains('/') {
        script.to_string()
    } else {
        format!("./{script}")
    };
    // QEMU's child exits 1 when it cannot exec the script: a wait status of 256.
    let status = Command::new(program).arg(ifname).status().map(|s| s.into_raw()).unwrap_or(1 << 8);
    if status == 0 {
        Ok(())
    } else {
        Err(TapError::Script {
            script: script.to_string(),
            status,
        })
    }
}
