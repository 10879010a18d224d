//! Feeds arbitrary bytes to authorized_keys parsing and the options' decisions.
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::authorized_keys(data);
});
