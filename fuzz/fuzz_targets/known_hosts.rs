//! Feeds arbitrary bytes to known_hosts lines and the client's host-key decision.
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::known_hosts(data);
});
