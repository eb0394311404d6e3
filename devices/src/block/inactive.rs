//! An image handed over to someone else: what a disk's backend becomes while another
//! process owns the file (the source after a migration switched over, before `cont`).
//! It remembers what `info block` shows; every I/O fails, so nothing can touch the file.

use std::path::{Path, PathBuf};

use crate::block::{BlockBackend, BlockError, Extent, Format, Result};

#[derive(Debug, Clone)]
pub struct Inactive {
    path: PathBuf,
    format: Format,
    size: u64,
    read_only: bool,
}

impl Inactive {
    /// Stands in for `image` (which the caller then drops, closing its files and locks).
    pub fn replacing(image: &dyn BlockBackend) -> Inactive {
        Inactive {
            path: image.path().to_path_buf(),
            format: image.format(),
            size: image.virtual_size(),
            read_only: image.read_only(),
        }
    }
}

impl BlockBackend for Inactive {
    fn format(&self) -> Format {
        self.format
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn virtual_size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&mut self, _buf: &mut [u8], _offset: u64) -> Result<()> {
        Err(BlockError::Inactive)
    }
    fn write_at(&mut self, _buf: &[u8], _offset: u64) -> Result<()> {
        Err(BlockError::Inactive)
    }
    fn write_zeroes(&mut self, _offset: u64, _len: u64, _may_unmap: bool) -> Result<()> {
        Err(BlockError::Inactive)
    }
    fn discard(&mut self, _offset: u64, _len: u64) -> Result<()> {
        Err(BlockError::Inactive)
    }
    /// Nothing is cached: the image was flushed before it was handed over.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn block_status(&mut self, _offset: u64, _len: u64) -> Result<Vec<Extent>> {
        Err(BlockError::Inactive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_identity_refuses_io() {
        let dir = std::env::temp_dir().join(format!("godwit-inactive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.raw");
        std::fs::write(&p, vec![1u8; 4096]).unwrap();
        let img = crate::block::open_image(&p, None, false).unwrap();
        let mut i = Inactive::replacing(img.as_ref());
        drop(img);
        assert_eq!(
            (i.format(), i.virtual_size(), i.read_only(), i.path()),
            (Format::Raw, 4096, false, p.as_path())
        );
        assert!(matches!(i.read_at(&mut [0u8; 512], 0), Err(BlockError::Inactive)));
        assert!(matches!(i.write_at(&[0u8; 512], 0), Err(BlockError::Inactive)));
        assert!(i.flush().is_ok());
        // The file's locks went with the image: it opens for writing again.
        crate::block::open_image(&p, None, false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
