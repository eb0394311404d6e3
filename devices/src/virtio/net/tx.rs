//! One transmitted frame: the driver's chain, checked, copied out of guest memory.
//!
//! A transmit chain is the 12-byte virtio-net header followed by the frame, all
//! device-readable (virtio 1.2 §5.1.6.2); device-writable descriptors in it are ignored.

use crate::net::{MAX_FRAME, VNET_HDR_LEN};
use crate::virtio::GuestMem;
use crate::virtio::chain::{self, ChainError};
use std::io::Read;
use thiserror::Error;
use virtio_queue::DescriptorChain;

#[derive(Debug, Error)]
pub enum TxError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("transmit chain {0} is not readable guest memory")]
    NotReadable(u16),
    #[error("transmit chain {head} has {len} bytes, less than a virtio-net header")]
    Short { head: u16, len: usize },
    #[error("transmit chain {head} has {len} bytes, more than the {MAX_FRAME} of the largest frame")]
    TooBig { head: u16, len: usize },
}

/// Copies the header and frame of `chain` into `buf` (at least [`MAX_FRAME`] bytes long);
/// returns their length.
pub fn read_frame(mem: &GuestMem, chain: DescriptorChain<&GuestMem>, queue_size: u16, buf: &mut [u8]) -> Result<usize, TxError> {
    chain::check(&chain, queue_size)?;
    let head = chain.head_index();
    let mut reader = chain.reader(mem).map_err(|_| TxError::NotReadable(head))?;
    let len = reader.available_bytes();
    if len < VNET_HDR_LEN {
        return Err(TxError::Short { head, len });
    }
    if len > MAX_FRAME || len > buf.len() {
        return Err(TxError::TooBig { head, len });
    }
    reader.read_exact(&mut buf[..len]).map_err(|_| TxError::NotReadable(head))?;
    Ok(len)
}
