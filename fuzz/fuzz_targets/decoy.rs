//! Feeds arbitrary bytes to the stealth decoy's HTTP/1.x request parser (nginx look-alike).
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::decoy(data);
});
