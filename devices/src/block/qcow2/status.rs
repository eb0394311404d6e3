//! Allocation status of a qcow2 image through its backing chain, in the
//! shape of `qemu-img map --output=json`.

use super::{Mapping, Qcow2};
use crate::block::{Extent, Result, push_extent};

impl Qcow2 {
    /// Extents of `[off, off+len)`; depth 0 is this image.
    pub(crate) fn status(&mut self, off: u64, len: u64) -> Result<Vec<Extent>> {
        let cs = self.cluster_size();
        let end = off + len;
        let mut out = Vec::new();
        let mut pos = off;
        while pos < end {
            let (m, n) = self.extent_at(pos, end - pos)?;
            let here = |present, zero, data, offset| Extent {
                start: pos,
                length: n,
                depth: 0,
                present,
                zero,
                data,
                offset,
            };
            let in_cluster = pos & (cs - 1);
            match m {
                Mapping::Data { host } => push_extent(&mut out, here(true, false, true, Some(host + in_cluster))),
                Mapping::Zero { host } => push_extent(&mut out, here(true, true, false, host.map(|h| h + in_cluster))),
                Mapping::Compressed { .. } => push_extent(&mut out, here(true, false, true, None)),
                Mapping::Unallocated => self.backing_status(&mut out, pos, n)?,
            }
            pos += n;
        }
        Ok(out)
    }

    /// Status of bytes this layer does not allocate.
    fn backing_status(&mut self, out: &mut Vec<Extent>, pos: u64, n: u64) -> Result<()> {
        let limit = self.backing.as_ref().map_or(0, |b| b.virtual_size().min(self.size));
        let mut covered = 0;
        if pos < limit
            && let Some(b) = self.backing.as_mut()
        {
            covered = (limit - pos).min(n);
            for mut e in b.block_status(pos, covered)? {
                e.depth += 1;
                push_extent(out, e);
            }
        }
        if covered < n {
            push_extent(
                out,
                Extent {
                    start: pos + covered,
                    length: n - covered,
                    depth: 0,
                    present: false,
                    zero: true,
                    data: false,
                    offset: None,
                },
            );
        }
        Ok(())
    }
}
