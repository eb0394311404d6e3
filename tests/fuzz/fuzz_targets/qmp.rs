//! Arbitrary bytes from a client to a QMP session over an engine with no machine behind
//! it (`monitor::fuzz`), in chunks whose size the first byte picks. A panic, a held line
//! or value past its limit, or a reply that is not one JSON object with `return` or `error` is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    monitor::fuzz::qmp_input(data);
});
