//! Arbitrary bytes as a qcow2 image (the last bytes are operations): open, read, write,
//! zero, discard, flush, check, snapshot create/revert/delete. Errors are fine; a panic,
//! an error on more than one line or an image grown past 64 MiB is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    devices::block::fuzz::qcow2_input(data);
});
