//! The protocols wraith speaks, sans-IO: each module turns bytes or text
//! into values and back, and nothing here touches a socket, a file, a
//! clock or a logger. Client, server and transports build on these; this
//! layer imports nothing from them (std and dependencies only).
//!
//! - [`host_port`]: `host:port`, the one parser and formatter.
//! - [`forward_spec`]: `--forward` / `--remote-forward` specs.
//! - [`socks5`]: SOCKS5, the server side (the local proxy) and the client
//!   side (`--proxy socks5://`).
//! - [`http_connect`]: HTTP CONNECT, both sides.
//! - [`http_proxy`]: the requests the HTTP proxy listener takes.
//! - [`udpgw`]: UDP datagrams over a stream, tun2proxy's udpgw framing.
//! - [`frame`]: the control channel's length-prefixed JSON frames.
//! - [`decoy`]: the stealth port's nginx look-alike.
//! - [`authorized_keys`]: the `authorized_keys` format, its options and
//!   the constant-time key lookup.
//! - [`policy`]: what a session may do (`permitopen` / `permitlisten`
//!   patterns, socket rules, `from=` address patterns).
//! - [`cidr`]: IP networks (`addr/bits`), parsed once and matched.
//! - [`certificate`]: the checks on an OpenSSH user certificate.
//! - [`time`]: calendar arithmetic and HTTP dates; the local time zone is
//!   passed in.
//!
//! Each parser here is unit-tested beside its code and fuzzed (`fuzz/`).

pub mod cidr;
pub mod forward_spec;
pub mod frame;
pub mod host_port;
pub mod socks5;

pub(crate) mod authorized_keys;
pub(crate) mod certificate;
pub(crate) mod decoy;
pub(crate) mod http_connect;
pub(crate) mod http_proxy;
pub(crate) mod policy;
pub(crate) mod time;
pub(crate) mod udpgw;
