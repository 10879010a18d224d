//! What the client and the server share about SSH itself: the algorithm
//! lists both sides offer (modern algorithms only: curve25519 / ML-KEM key
//! exchange, Ed25519 keys, AEAD ciphers; no SHA-1, no CBC, no finite-field
//! Diffie-Hellman), the channel window and packet settings, and the
//! client's identification string. The server's is `--ssh-banner`
//! (`server::SshBanner`).

use std::borrow::Cow;

use russh::keys::Algorithm;
use russh::{Preferred, cipher, compression, kex, mac};

/// Receive window a channel opens with, on both sides: what a channel whose
/// reader stops may hold, and enough for a single stream on short paths.
pub(crate) const WINDOW_SIZE: u32 = 2 * 1024 * 1024;
/// Largest receive window a channel grows to when the path (its round
/// trip), not its reader, limits it: one stream then keeps up to this much
/// in flight, about 200 MB/s at 150 ms. See vendor/russh/PATCHES.md.
pub(crate) const WINDOW_MAX: u32 = 32 * 1024 * 1024;
/// Most bytes all receive windows of one session add up to: what a session
/// can make this process hold, however many channels it opens (beyond it,
/// each new channel still gets 64 KiB).
pub(crate) const WINDOW_BUDGET: u64 = 256 * 1024 * 1024;
/// Largest SSH packet we accept (russh rejects more than 65535).
pub(crate) const MAX_PACKET_SIZE: u32 = 32 * 1024;

const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// AES-GCM first: with AES-NI it is much cheaper per byte than ChaCha20.
const CIPHERS_AES_FIRST: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
];

/// Without AES hardware, ChaCha20-Poly1305 is the faster and safer choice.
const CIPHERS_CHACHA_FIRST: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
];

/// Only consulted if a non-AEAD cipher were ever negotiated; ETM, SHA-2 only.
const MACS: &[mac::Name] = &[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM];

const KEYS: &[Algorithm] = &[Algorithm::Ed25519];

/// No compression: tunnelled traffic is mostly compressed or encrypted
/// already, zlib costs CPU per byte, and compressing before encrypting
/// invites CRIME-style length oracles.
const COMPRESSION: &[compression::Name] = &[compression::NONE];

fn has_aes_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The client's identification string. A client talks only to the server
/// it chose, so naming the version helps that server's operator and tells
/// no stranger anything.
pub(crate) fn client_id() -> russh::SshId {
    russh::SshId::Standard(format!("SSH-2.0-wraith_{}", env!("CARGO_PKG_VERSION")).into())
}

/// The preference lists used by both client and server.
pub(crate) fn preferred() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(KEX),
        key: Cow::Borrowed(KEYS),
        cipher: Cow::Borrowed(if has_aes_hardware() {
            CIPHERS_AES_FIRST
        } else {
            CIPHERS_CHACHA_FIRST
        }),
        mac: Cow::Borrowed(MACS),
        compression: Cow::Borrowed(COMPRESSION),
        ..Preferred::DEFAULT
    }
}
