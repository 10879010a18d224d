//! wraith-core: SSH tunnels over pluggable transports.
//!
//! SSH (russh) always runs *over* a transport stream, never beside it. The
//! client exposes a SOCKS5 proxy and port forwards that ride SSH channels;
//! the server authenticates keys and connects channels to their targets.
//! Options structs ([`client::ConnectOptions`], [`server::ServeOptions`]) are
//! the public API; everything else is an implementation detail.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod limits;
pub mod profile;
pub mod proto;
pub mod server;
pub mod source;
pub mod transport;

pub(crate) mod io;
pub(crate) mod ssh;

pub use error::Error;
pub use source::Source;
