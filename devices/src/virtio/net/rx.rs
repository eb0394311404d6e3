//! Putting one received frame into the driver's receive buffers (virtio 1.2 §5.1.6.4).
//!
//! The frame arrives with its 12-byte virtio-net header in front. Without `MRG_RXBUF` it
//! must fit one buffer chain; with it, it is spread over as many chains as it needs and
//! the header's `num_buffers` says how many. The chains are gathered and checked before a
//! byte is written, and all their used entries are published with one used-index update,
//! so the driver never sees the first buffer of a frame without the rest (Linux counts a
//! frame whose buffers are not all there as an error). When the ring runs dry first,
//! nothing is consumed: the chains go back (`next_avail` rewound) and the frame waits.

use crate::net::VNET_HDR_LEN;
use crate::pagelog::PageLog;
use crate::virtio::GuestMem;
use crate::virtio::chain::{self, ChainError};
use std::io::Write;
use std::num::Wrapping;
use std::sync::atomic::{Ordering, fence};
use thiserror::Error;
use virtio_queue::{Queue, QueueOwnedT, QueueT, Writer};
use vm_memory::bitmap::BS;
use vm_memory::{Bytes, GuestAddress};

/// The buffer a driver that does not merge buffers should post (virtio 1.2 §5.1.6.3.1):
/// a full-size Ethernet frame with a VLAN tag and the header...
pub const MIN_RX_BUF: usize = 1526;
/// ... or, when it accepts segmentation offloads, the largest such frame.
pub const MIN_RX_BUF_GSO: usize = 65562;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS: usize = 10;

#[derive(Debug, Error)]
pub enum RxError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the driver published more receive buffers than the ring holds")]
    AvailIndex,
    #[error("receive buffer chain {head} has {bytes} writable bytes, less than the {needed} it must have")]
    TooSmall { head: u16, bytes: usize, needed: usize },
    #[error("receive buffer chain {0} is not writable guest memory")]
    NotWritable(u16),
    #[error("cannot write the receive buffers or used ring: {0}")]
    Memory(String),
}

/// What became of a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In the driver's buffers; `interrupt` if the driver wants to hear of it.
    Delivered { interrupt: bool },
    /// Not enough buffers yet: nothing consumed.
    NoRoom,
    /// Larger than the buffers the driver posts can ever hold: dropped, buffers untouched.
    TooBig,
}

/// How the driver posts its receive buffers.
#[derive(Clone, Copy, Debug)]
pub struct RxLayout {
    pub mergeable: bool,
    /// The smallest single chain the driver may post when it does not merge buffers.
    pub min_buf: usize,
}

/// Delivers `frame` (header first; its `num_buffers` is filled in here).
pub fn deliver(mem: &GuestMem, q: &mut Queue, frame: &mut [u8], layout: RxLayout) -> Result<Delivery, RxError> {
    let max_chains = if layout.mergeable { usize::from(q.size()) } else { 1 };
    // Each round sees more buffers than the last, so this ends after at most a ring's worth.
    loop {
        let start = q.next_avail();
        let chains = gather(mem, q, frame.len(), max_chains, layout)?;
        let room: usize = chains.iter().map(|(_, w)| w.available_bytes()).sum();
        if room >= frame.len() {
            return fill(mem, q, frame, chains);
        }
        q.set_next_avail(start);
        if chains.len() == max_chains {
            return Ok(Delivery::TooBig);
        }
        if !more_after(mem, q, start, chains.len() as u16)? {
            return Ok(Delivery::NoRoom);
        }
    }
}

/// Popped chains with their writers, by head index.
type Chains<'m> = Vec<(u16, Writer<'m, BS<'m, PageLog>>)>;

/// Pops chains until they hold `len` bytes, `max_chains` are taken or the ring is empty.
fn gather<'m>(mem: &'m GuestMem, q: &mut Queue, len: usize, max_chains: usize, layout: RxLayout) -> Result<Chains<'m>, RxError> {
    let size = q.size();
    let needed = if layout.mergeable { VNET_HDR_LEN } else { layout.min_buf.min(len) };
    let mut chains = Vec::new();
    let mut room = 0usize;
    let mut avail = q.iter(mem).map_err(|_| RxError::AvailIndex)?;
    while room < len && chains.len() < max_chains {
        let Some(chain) = avail.next() else { break };
        chain::check(&chain, size)?;
        let head = chain.head_index();
        let writer = chain.writer(mem).map_err(|_| RxError::NotWritable(head))?;
        let bytes = writer.available_bytes();
        if bytes < needed {
            return Err(RxError::TooSmall { head, bytes, needed });
        }
        room += bytes;
        chains.push((head, writer));
    }
    Ok(chains)
}

/// Copies the frame into `chains` (which hold enough room) and publishes them.
fn fill(mem: &GuestMem, q: &mut Queue, frame: &mut [u8], chains: Chains<'_>) -> Result<Delivery, RxError> {
    let count = u16::try_from(chains.len()).expect("no more chains than ring entries");
    frame[NUM_BUFFERS..VNET_HDR_LEN].copy_from_slice(&count.to_le_bytes());
    let mut used = Vec::with_capacity(chains.len());
    let mut done = 0usize;
    for (head, mut writer) in chains {
        if done == frame.len() {
            break;
        }
        let n = writer.available_bytes().min(frame.len() - done);
        writer
            .write_all(&frame[done..done + n])
            .map_err(|e| RxError::Memory(e.to_string()))?;
        used.push((head, n as u32));
        done += n;
    }
    let old = q.next_used();
    publish_used(mem, q, &used)?;
    Ok(Delivery::Delivered {
        interrupt: wants_interrupt(mem, q, old),
    })
}

/// After finding too few buffers: asks the driver to notify when it adds some beyond the
/// `looked` ones seen from `start`, and says whether it already has (then look again).
fn more_after(mem: &GuestMem, q: &mut Queue, start: u16, looked: u16) -> Result<bool, RxError> {
    // enable_notification compares the avail index with next_avail (and, with EVENT_IDX,
    // asks to be notified past it): point it past the buffers already seen.
    q.set_next_avail(start.wrapping_add(looked));
    let more = q.enable_notification(mem);
    q.set_next_avail(start);
    more.map_err(|_| RxError::AvailIndex)
}

/// Writes the used entries of one frame, then moves the used index once.
fn publish_used(mem: &GuestMem, q: &mut Queue, used: &[(u16, u32)]) -> Result<(), RxError> {
    let size = q.size();
    let ring = q.used_ring();
    let mut idx = q.next_used();
    let err = |e: vm_memory::GuestMemoryError| RxError::Memory(e.to_string());
    for &(head, len) in used {
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        let at = ring + 4 + 8 * u64::from(idx % size);
        mem.write_slice(&elem, GuestAddress(at)).map_err(err)?;
        idx = idx.wrapping_add(1);
    }
    q.set_next_used(idx);
    mem.store(idx.to_le(), GuestAddress(ring + 2), Ordering::Release).map_err(err)
}

/// Whether the driver asked for an interrupt for entries from `old` to the used index now
/// (with EVENT_IDX: its `used_event` lies in that range; without, always, as virtio-queue
/// decides for the other queues).
fn wants_interrupt(mem: &GuestMem, q: &Queue, old: u16) -> bool {
    if !q.event_idx_enabled() {
        return true;
    }
    // The used entries must be visible before the driver's wish is read.
    fence(Ordering::SeqCst);
    let at = q.avail_ring() + 4 + 2 * u64::from(q.size());
    let Ok(used_event) = mem.read_obj::<u16>(GuestAddress(at)) else {
        return true;
    };
    let (new, old, event) = (Wrapping(q.next_used()), Wrapping(old), Wrapping(u16::from_le(used_event)));
    new - event - Wrapping(1) < new - old
}
