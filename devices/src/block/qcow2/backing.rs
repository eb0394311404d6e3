//! Backing files: resolving the name an image stores and opening it, read-only.
//!
//! The name comes from the image, so it is treated as hostile: a name with a protocol
//! prefix (`nbd:`, `json:`, `http:` ...), which QEMU would hand to a network or JSON driver,
//! is refused; loops and chains deeper than [`MAX_CHAIN_DEPTH`](crate::block::probe::MAX_CHAIN_DEPTH)
//! are refused by `open_layer`. Relative names (`..` included) resolve against the directory
//! of the image that names them, as in QEMU, never against the current directory.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Qcow2Error;
use crate::block::probe::{Chain, ImageOptions, open_layer};
use crate::block::{BlockBackend, BlockError, Format, Result};

/// Opens the backing file `name` of the image at `path`; `chain` holds the files above.
pub(super) fn open(path: &Path, name: &Path, format: Option<&str>, opts: &ImageOptions, chain: &Chain) -> Result<Box<dyn BlockBackend>> {
    if let Some(proto) = protocol(name) {
        return Err(Qcow2Error::BackingProtocol(proto).into());
    }
    let full = resolve_backing(path, name);
    let format = match format {
        None | Some("") => None,
        Some(f) => Some(
            f.parse::<Format>()
                .map_err(|_| BlockError::from(Qcow2Error::BackingFormat(f.to_string())))?,
        ),
    };
    let opts = ImageOptions {
        format,
        read_only: true,
        ..opts.clone()
    };
    open_layer(&full, &opts, chain).map_err(|e| match e {
        // A loop or a chain too deep is reported once, by the top image.
        BlockError::Chain(_) => e,
        e => BlockError::Backing(Box::new(e)),
    })
}

/// The protocol prefix of `name` as QEMU sees one (`PROTO:` before any `/`), if any.
fn protocol(name: &Path) -> Option<String> {
    let b = name.as_os_str().as_bytes();
    let end = b.iter().position(|&c| c == b':' || c == b'/')?;
    (b[end] == b':').then(|| String::from_utf8_lossy(&b[..end]).into_owned())
}

/// Resolves a backing file name like QEMU: relative names are relative to
/// the directory of the image that names them.
pub fn resolve_backing(image: &Path, name: &Path) -> PathBuf {
    if name.is_absolute() {
        return name.to_path_buf();
    }
    match image.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => name.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_prefixes_as_qemu_sees_them() {
        let p = |s: &str| protocol(Path::new(s));
        assert_eq!(p("nbd://host/x"), Some("nbd".into()));
        assert_eq!(p("json:{\"driver\":\"raw\"}"), Some("json".into()));
        assert_eq!(p("file:base.img"), Some("file".into()));
        assert_eq!(p("base.img"), None);
        assert_eq!(p("./a:b.img"), None);
        assert_eq!(p("/abs/a:b.img"), None);
        assert_eq!(p("../base.img"), None);
    }
}
