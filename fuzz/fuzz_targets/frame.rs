//! Feeds arbitrary bytes to the control-channel frame decoder.
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::frame(data);
});
