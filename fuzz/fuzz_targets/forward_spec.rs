//! Feeds arbitrary bytes to `--forward` / `--remote-forward` / `--server` spec parsing.
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::forward_spec(data);
});
