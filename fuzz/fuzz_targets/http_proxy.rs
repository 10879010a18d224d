//! Feeds arbitrary bytes to the client's HTTP proxy request parser. See
//! fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::http_proxy(data);
});
