//! Feeds arbitrary bytes to the udpgw frame decoder and the SOCKS5 UDP
//! datagram parser. See fuzz/README.md for how to run it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wraith_core::fuzzing::udpgw(data);
});
