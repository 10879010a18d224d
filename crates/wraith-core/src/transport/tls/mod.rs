//! The TLS transport: SSH inside TLS (tokio-rustls, aws-lc-rs provider, the
//! one russh already links), so the server can sit on 443 and look like a
//! web server.
//!
//! Client: SNI, certificate verification against the webpki roots or a CA
//! file, an optional HPKP-style pin of the leaf's public key, or none at all
//! (`--insecure`). The SSH host-key check still runs inside TLS whatever the
//! choice here. Server: handshakes run in their own tasks with a timeout, so
//! a slow or silent client never holds up the accept loop; finished streams
//! reach [`crate::transport::Acceptor::accept`] through a bounded channel. In stealth mode a
//! connection reaches SSH only once its first bytes say `SSH-2.0-`.
//!
//! The rustls provider is always passed explicitly (never the process-wide
//! default), so no "no crypto provider installed" panic can happen.
//!
//! `pin` is `--tls-pin`; `verify` holds the pin and `--insecure` verifiers;
//! `client` the transport, trust roots and handshake errors; `server` the
//! certificate sources, server config and accept loop.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

mod client;
mod pin;
mod server;
mod verify;

#[cfg(feature = "nats")]
pub(crate) use client::service_client_config;
pub use client::{TlsClientOptions, TlsTransport};
pub use pin::TlsPin;
pub use server::{CertSource, TlsAcceptor, TlsServerOptions};
#[cfg(feature = "ws")]
pub(crate) use server::{Gate, LoopOptions};

/// ALPN a plain TLS server offers: what a web server with HTTP/2 offers.
pub(super) const ALPN_WEB: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN in stealth mode: the decoy answers HTTP/1.1 only (like nginx without
/// `http2`), so offering h2 would be a tell.
pub(super) const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// rustls found no protocol version the provider supports (a build
/// problem, not the user's): both sides say so the same way.
pub(super) fn no_protocol_versions(e: rustls::Error) -> crate::error::Error {
    crate::error::Error::config("--transport", "tls", e)
}

pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn pins_parse_and_print() {
        let s = format!(
            "sha256/{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let pin: TlsPin = s.parse().unwrap();
        assert_eq!(pin.to_string(), s);
        for bad in ["sha1/AAAA", "sha256/!!", "sha256/AAAA", ""] {
            let e = bad.parse::<TlsPin>().unwrap_err();
            assert!(e.to_string().contains("--tls-pin"), "{e}");
        }
    }
}
