//! Feeds arbitrary bytes to the iroh relay bridge's CONNECT request parser.
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::http_connect_request(data);
});
