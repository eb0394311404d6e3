//! Queue helpers shared by the transport and the devices: saving a virtio-queue
//! [`QueueState`] and rebuilding a validated [`Queue`] from an untrusted one.

use crate::state::{StateError, StateReader, StateWriter};
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueState, QueueT};

/// Queues shared between the transport (guest register access, save) and the I/O thread.
pub type SharedQueue = Arc<Mutex<Queue>>;

/// Appends one queue state to a device state.
pub fn encode_queue(w: &mut StateWriter, q: &QueueState) {
    w.u16(q.max_size);
    w.u16(q.next_avail);
    w.u16(q.next_used);
    w.bool(q.event_idx_enabled);
    w.u16(q.size);
    w.bool(q.ready);
    w.u64(q.desc_table);
    w.u64(q.avail_ring);
    w.u64(q.used_ring);
}

pub fn decode_queue(r: &mut StateReader<'_>) -> Result<QueueState, StateError> {
    Ok(QueueState {
        max_size: r.u16()?,
        next_avail: r.u16()?,
        next_used: r.u16()?,
        event_idx_enabled: r.bool()?,
        size: r.u16()?,
        ready: r.bool()?,
        desc_table: r.u64()?,
        avail_ring: r.u64()?,
        used_ring: r.u64()?,
    })
}

/// Builds a queue from a saved state, refusing one that does not fit a queue of `max_size`
/// (a state from a differently configured device, or a corrupt one).
pub fn queue_from_state(name: &'static str, s: QueueState, max_size: u16) -> Result<Queue, StateError> {
    if s.max_size != max_size {
        return Err(StateError::Invalid {
            name,
            why: format!("queue size {} where this device has {max_size}", s.max_size),
        });
    }
    Queue::try_from(s).map_err(|e| StateError::Invalid {
        name,
        why: format!("bad queue state: {e}"),
    })
}

/// A fresh queue of `max_size` entries (a power of two no larger than 32768).
pub fn new_queue(max_size: u16) -> Result<Queue, virtio_queue::Error> {
    Queue::new(max_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let mut q = new_queue(64).unwrap();
        q.set_size(32);
        q.set_desc_table_address(Some(0x1000), Some(1));
        q.set_avail_ring_address(Some(0x2000), None);
        q.set_used_ring_address(Some(0x3000), None);
        q.set_ready(true);
        q.set_next_avail(7);
        q.set_next_used(5);
        let s = q.state();
        let mut w = StateWriter::default();
        encode_queue(&mut w, &s);
        let bytes = w.into_bytes();
        let back = decode_queue(&mut StateReader::new(&bytes)).unwrap();
        assert_eq!(back, s);
        assert_eq!(queue_from_state("t", back, 64).unwrap().state(), s);
        assert!(queue_from_state("t", back, 128).is_err());
        let bad = QueueState { size: 3, ..s };
        assert!(queue_from_state("t", bad, 64).is_err());
        let misaligned = QueueState { used_ring: 0x3001, ..s };
        assert!(queue_from_state("t", misaligned, 64).is_err());
    }
}
