//! Well-formedness of a descriptor chain, checked before a device (virtio-blk, virtio-net)
//! uses it.
//!
//! virtio-queue's chain iterator simply stops on what it cannot follow (a loop that runs out
//! of hops, a `next` past the table, an unreadable descriptor, a bad indirect table, more
//! than 4 GiB in total), so the device could not tell a broken chain from a short one. A
//! chain is well-formed here when its walk ends on a descriptor without `NEXT` and it has
//! at most as many descriptors as the ring has entries. Addresses are checked later, by
//! virtio-queue's `Reader` and `Writer`, which refuse buffers outside guest memory.

use crate::virtio::GuestMem;
use thiserror::Error;
use virtio_queue::DescriptorChain;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("descriptor chain {0} does not end (loop, bad index, bad indirect table or over 4 GiB)")]
    Unterminated(u16),
    #[error("descriptor chain {head} has more than the queue's {size} descriptors")]
    TooLong { head: u16, size: u16 },
    #[error("descriptor chain {0} has buffers outside guest memory")]
    OutsideMemory(u16),
}

/// Checks that `chain` is well-formed for a ring of `queue_size` entries.
pub fn check(chain: &DescriptorChain<&GuestMem>, queue_size: u16) -> Result<(), ChainError> {
    let head = chain.head_index();
    let mut count = 0u32;
    let mut ended = false;
    for desc in chain.clone() {
        count += 1;
        if count > u32::from(queue_size) {
            return Err(ChainError::TooLong { head, size: queue_size });
        }
        ended = !desc.has_next();
    }
    if ended { Ok(()) } else { Err(ChainError::Unterminated(head)) }
}
