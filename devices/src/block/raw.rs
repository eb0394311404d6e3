//! Raw images: the file holds the disk bytes one to one.
//!
//! Zero writes and discards punch holes where the file system allows it,
//! and [`BlockBackend::block_status`] reports holes via SEEK_DATA/SEEK_HOLE,
//! so sparse raw files stay sparse through godwit.

use std::path::{Path, PathBuf};

use crate::block::storage::Storage;
use crate::block::{BlockBackend, BlockError, Extent, Format, Result, check_range, push_extent};

/// A raw image.
pub struct RawImage {
    file: Box<dyn Storage>,
    path: PathBuf,
    size: u64,
    read_only: bool,
}

impl RawImage {
    /// Wraps opened storage; the virtual size is the file length.
    pub fn new(file: Box<dyn Storage>, path: &Path, read_only: bool) -> Result<RawImage> {
        let size = file.len()?;
        Ok(RawImage {
            file,
            path: path.to_path_buf(),
            size,
            read_only,
        })
    }

    fn check_write(&self, offset: u64, len: u64) -> Result<()> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        check_range(offset, len, self.size)
    }
}

impl BlockBackend for RawImage {
    fn format(&self) -> Format {
        Format::Raw
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

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len() as u64, self.size)?;
        Ok(self.file.read_at(buf, offset)?)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_write(offset, buf.len() as u64)?;
        Ok(self.file.write_at(buf, offset)?)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> Result<()> {
        self.check_write(offset, len)?;
        if may_unmap && self.file.punch_hole(offset, len)? {
            return Ok(());
        }
        Ok(self.file.zero_range(offset, len)?)
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        self.check_write(offset, len)?;
        // Discard is advisory: a file system without hole punching keeps
        // the data, which is allowed.
        self.file.punch_hole(offset, len)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        Ok(self.file.sync()?)
    }

    fn start_writeback(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        Ok(self.file.start_writeback()?)
    }

    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        check_range(offset, len, self.size)?;
        let end = offset + len;
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let data = self.file.next_data(pos)?.unwrap_or(end).min(end);
            let (next, is_data) = if data > pos {
                (data, false)
            } else {
                let hole = self.file.next_hole(pos)?.clamp(pos + 1, end);
                (hole, true)
            };
            push_extent(
                &mut out,
                Extent {
                    start: pos,
                    length: next - pos,
                    depth: 0,
                    present: true,
                    zero: !is_data,
                    data: is_data,
                    offset: Some(pos),
                },
            );
            pos = next;
        }
        Ok(out)
    }
}
