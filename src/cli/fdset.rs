//! `-add-fd set=N,fd=M[,opaque=TEXT]`: descriptors the caller passed, grouped in sets that
//! `/dev/fdset/N` paths name (libvirt opens the serial log itself and hands it over so).

use super::CliError;
use super::drive::split_options;
use crate::config::Config;

/// `-add-fd`.
pub fn add_fd(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let fail = |m: &str| CliError(format!("-add-fd {value}: {m}"));
    let (mut set, mut fd, mut opaque) = (None, None, String::new());
    for part in split_options(value) {
        let (k, v) = part.split_once('=').unwrap_or((part.as_str(), ""));
        match k {
            "set" => set = Some(v.parse::<u64>().map_err(|_| fail("Parameter 'set' expects a number"))?),
            "fd" => fd = Some(v.parse::<i32>().map_err(|_| fail("Parameter 'fd' expects a number"))?),
            "opaque" => opaque = v.to_string(),
            _ => return Err(fail(&format!("Invalid parameter '{k}'"))),
        }
    }
    let Some(fd) = fd else {
        return Err(fail("fd option is required and must be non-negative"));
    };
    let Some(set) = set else {
        return Err(fail("set option is required and must be non-negative"));
    };
    if fd <= libc::STDERR_FILENO || !is_open(fd) {
        return Err(fail("fd is not valid or already in use"));
    }
    if cfg.fdsets.iter().any(|(_, f, _)| *f == fd) {
        return Err(fail("fd is not valid or already in use"));
    }
    cfg.fdsets.push((set, fd, opaque));
    Ok(())
}

fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// For a `/dev/fdset/N` path: the first descriptor of set N (`Ok(None)` for other paths).
pub fn resolve(cfg: &Config, path: &str) -> Result<Option<i32>, String> {
    let Some(n) = path.strip_prefix("/dev/fdset/") else {
        return Ok(None);
    };
    let set: u64 = n.parse().map_err(|_| format!("Could not open '{path}': Invalid argument"))?;
    cfg.fdsets
        .iter()
        .find(|(s, _, _)| *s == set)
        .map(|(_, fd, _)| Some(*fd))
        .ok_or_else(|| format!("Could not open '{path}': No such file or directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_paths() {
        let mut cfg = Config::default();
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        add_fd(&format!("set=3,fd={fd},opaque=serial0-source"), &mut cfg).unwrap();
        assert_eq!(resolve(&cfg, "/dev/fdset/3"), Ok(Some(fd)));
        assert_eq!(resolve(&cfg, "/tmp/x"), Ok(None));
        assert_eq!(
            resolve(&cfg, "/dev/fdset/4").unwrap_err(),
            "Could not open '/dev/fdset/4': No such file or directory"
        );
        assert_eq!(
            add_fd(&format!("set=3,fd={fd}"), &mut cfg).unwrap_err().0,
            format!("-add-fd set=3,fd={fd}: fd is not valid or already in use")
        );
        assert_eq!(
            add_fd("set=1,fd=100000", &mut cfg).unwrap_err().0,
            "-add-fd set=1,fd=100000: fd is not valid or already in use"
        );
        assert_eq!(
            add_fd("fd=9", &mut cfg).unwrap_err().0,
            "-add-fd fd=9: set option is required and must be non-negative"
        );
        assert!(add_fd("set=1,fd=x", &mut cfg).is_err());
    }
}
