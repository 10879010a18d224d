//! Feeds arbitrary bytes to the control-channel frame decoder.
//! Run with `cargo +nightly fuzz run frame` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::frame(data);
});
