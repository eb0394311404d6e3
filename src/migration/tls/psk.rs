//! `tls-creds-psk`: `dir/keys.psk`, one `username:hexkey` a line, read and checked as QEMU
//! checks it when the object is created (a client's username must be in the file).

use super::TlsError;
use crate::config::Endpoint;
use std::path::{Path, PathBuf};

/// Loaded pre-shared keys: a client's own (its username and key), or every key a server
/// knows. Checked as QEMU checks them; used through OpenSSL (`pskconn.rs`).
#[derive(Debug, Clone)]
pub struct Psk {
    pub endpoint: Endpoint,
    pub keys: Vec<(String, Vec<u8>)>,
    /// `dir/keys.psk`, for the words of a failure.
    pub path: PathBuf,
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// The lines that are `username:hexkey`; others are skipped, as QEMU skips them.
fn parse(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .filter_map(|l| {
            let (user, key) = l.trim_end().split_once(':')?;
            Some((user.to_string(), hex(key)?))
        })
        .collect()
}

pub fn load(dir: Option<&Path>, endpoint: Endpoint, username: &str) -> Result<Psk, TlsError> {
    let dir = dir.ok_or(TlsError::NoDir)?;
    let path = dir.join("keys.psk");
    let text = std::fs::read_to_string(&path).map_err(|e| TlsError::Access {
        path: path.clone(),
        why: crate::errtext::io(&e),
    })?;
    let mut keys = parse(&text);
    if endpoint == Endpoint::Client {
        keys.retain(|(u, _)| u == username);
        if keys.is_empty() {
            return Err(TlsError::PskUser {
                user: username.to_string(),
                path,
            });
        }
        keys.truncate(1);
    }
    Ok(Psk { endpoint, keys, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_format() {
        let keys = parse("qemu:0123abcd\nbob:zz\n# comment\nalice:00ff\n");
        assert_eq!(
            keys,
            vec![("qemu".into(), vec![1, 0x23, 0xab, 0xcd]), ("alice".into(), vec![0, 0xff])]
        );
        let dir = std::env::temp_dir().join(format!("godwit-psk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keys.psk"), "garbage\n").unwrap();
        let e = load(Some(&dir), Endpoint::Client, "qemu").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Username qemu not found in PSK file {}/keys.psk", dir.display())
        );
        assert!(load(Some(&dir), Endpoint::Server, "qemu").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
