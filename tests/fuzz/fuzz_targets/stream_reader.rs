//! Feeds arbitrary bytes to the migration stream reader: it must return records or an
//! error, never panic, and never allocate more than its record bounds allow.
#![no_main]

// The reader's own sources, compiled here as they are in godwit (`stream` finds `crc`
// as its sibling module, as in src/migration/).
#[allow(dead_code)]
#[path = "../../../src/migration/crc.rs"]
mod crc;
#[allow(dead_code)]
#[path = "../../../src/migration/stream.rs"]
mod stream;

use libfuzzer_sys::fuzz_target;
use stream::{Reader, Record};

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = Reader::new(data) else { return };
    for _ in 0..100_000 {
        match r.next() {
            Ok(Record::End { .. }) | Err(_) => return,
            Ok(_) => {}
        }
    }
});
