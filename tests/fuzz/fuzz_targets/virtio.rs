//! Arbitrary bytes as a driver's split ring and guest memory, handed to the queue handler
//! of virtio-blk or of virtio-net's receive, transmit or control queue
//! (`devices::virtio::fuzz`). A panic, a write outside the device-writable buffers, or a
//! device that goes on after it declared itself broken is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    devices::virtio::fuzz::virtio_input(data);
});
