//! Feeds arbitrary bytes to user-certificate decoding and the checks russh leaves to us.
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::certificate(data);
});
