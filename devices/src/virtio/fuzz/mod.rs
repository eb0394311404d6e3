//! The body of the virtio fuzz target (`tests/fuzz/fuzz_targets/virtio.rs`), also driven
//! by the test suite with a fixed seed: arbitrary bytes are a driver's split ring (queue
//! size, ring addresses, descriptor table, available ring) and the rest of guest memory,
//! handed to the real queue handler of virtio-blk or of one of virtio-net's queues, run
//! without its thread.
//!
//! Guest RAM is two 64 KiB regions with a 64 KiB hole between them (where MMIO would be);
//! descriptors mostly point around them, sometimes anywhere. After the run, every byte of
//! RAM the device changed must lie in the used ring or in a buffer some descriptor marked
//! device-writable; a device that declared itself broken must do nothing more when
//! notified again; the disk must keep its size. Any of these failing is a panic, which the
//! fuzzer reports as a crash.

mod devices;
mod layout;
#[cfg(test)]
mod tests;

pub use devices::Device;
use layout::{Layout, WriteMap};

use crate::virtio::GuestMem;
use vm_memory::{Bytes, GuestAddress};

/// Guest RAM: `[0, REGION)` and `[HOLE_END, SPAN)`.
pub const REGION: u64 = 0x1_0000;
pub const HOLE_END: u64 = 0x2_0000;
pub const SPAN: u64 = 0x3_0000;

/// What one input did, for the in-suite driver's figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// The transport would have refused to start with these rings.
    pub refused: bool,
    pub used: u16,
    pub broken: bool,
}

fn guest_memory() -> GuestMem {
    GuestMem::from_ranges(&[(GuestAddress(0), REGION as usize), (GuestAddress(HOLE_END), REGION as usize)]).expect("two small regions")
}

/// All of RAM, the hole read as zeroes.
fn snapshot(mem: &GuestMem) -> Vec<u8> {
    let mut all = vec![0u8; SPAN as usize];
    for (start, end) in [(0, REGION), (HOLE_END, SPAN)] {
        mem.read_slice(&mut all[start as usize..end as usize], GuestAddress(start))
            .expect("RAM reads");
    }
    all
}

/// Runs one input.
pub fn virtio_input(data: &[u8]) -> Outcome {
    let layout = Layout::decode(data);
    let mem = guest_memory();
    layout.write(&mem);
    let mut dev = Device::new(&layout, &mem);
    if !dev.queue_valid() {
        return Outcome {
            refused: true,
            ..Outcome::default()
        };
    }
    let before = snapshot(&mem);
    dev.notify();
    let after = snapshot(&mem);
    if before != after {
        // Writable before the run or after it (a buffer may lie over the tables).
        let mut map = WriteMap::of(&before, dev.ring());
        map.union(&WriteMap::of(&after, dev.ring()));
        if let Some(at) = map.first_forbidden_change(&before, &after) {
            panic!("{:?} changed guest memory at {at:#x}, in no device-writable buffer", layout.device);
        }
    }
    let broken = dev.broken();
    if broken {
        dev.notify();
        assert!(snapshot(&mem) == after, "{:?} went on after it broke", layout.device);
    }
    dev.check_disk();
    Outcome {
        refused: false,
        used: dev.used_count(),
        broken,
    }
}
