//! Feeds arbitrary bytes to `--peer` (iroh tickets, endpoint ids) and `--iroh-relay` parsing.
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::iroh_ticket(data);
});
