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
//! - [`frame`]: the control channel's length-prefixed JSON frames.
//! - [`decoy`]: the stealth port's nginx look-alike.
//! - [`time`]: calendar arithmetic and HTTP dates.
//!
//! Each parser here is unit-tested beside its code and fuzzed (`fuzz/`).

pub mod forward_spec;
pub mod frame;
pub mod host_port;

pub(crate) mod decoy;
pub(crate) mod http_connect;
pub(crate) mod socks5;
pub(crate) mod time;
