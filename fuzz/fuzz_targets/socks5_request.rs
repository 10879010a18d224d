//! Feeds arbitrary bytes to the SOCKS5 greeting and request parsers.
//! Run with `cargo +nightly fuzz run socks5_request` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::socks5(data);
});
