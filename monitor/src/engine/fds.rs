//! Descriptors a client passed to a monitor (`getfd` with SCM_RIGHTS), kept by name per
//! monitor as QEMU keeps them, until `closefd` or a command that uses one (`migrate` to
//! `fd:NAME` takes it).

use super::EngineError;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

#[derive(Default, Debug)]
pub struct FdStore {
    fds: Mutex<BTreeMap<String, OwnedFd>>,
}

impl FdStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OwnedFd>> {
        self.fds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `getfd`: keeps `fd` as `name`, closing one kept under that name before (as QEMU).
    pub fn add(&self, name: &str, fd: OwnedFd) -> Result<(), EngineError> {
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(EngineError::generic("Parameter 'fdname' expects a name not starting with a digit"));
        }
        self.lock().insert(name.to_string(), fd);
        Ok(())
    }

    /// `closefd`.
    pub fn close(&self, name: &str) -> Result<(), EngineError> {
        self.lock()
            .remove(name)
            .map(drop)
            .ok_or_else(|| EngineError::generic(format!("File descriptor named '{name}' not found")))
    }

    /// Takes the descriptor named `name` for a command that uses it up.
    pub fn take(&self, name: &str) -> Result<OwnedFd, EngineError> {
        self.lock()
            .remove(name)
            .ok_or_else(|| EngineError::generic(format!("File descriptor named '{name}' has not been found")))
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn names() {
        let s = FdStore::default();
        assert_eq!(
            s.add("1x", fd()).unwrap_err().desc,
            "Parameter 'fdname' expects a name not starting with a digit"
        );
        s.add("mig", fd()).unwrap();
        s.add("mig", fd()).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.close("nope").unwrap_err().desc, "File descriptor named 'nope' not found");
        s.take("mig").unwrap();
        assert_eq!(s.take("mig").unwrap_err().desc, "File descriptor named 'mig' has not been found");
    }
}
