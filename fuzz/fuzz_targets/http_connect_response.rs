//! Feeds arbitrary bytes to the upstream-proxy reply parsers (HTTP CONNECT, SOCKS5) and `--proxy` URLs.
//! See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::http_connect_response(data);
});
