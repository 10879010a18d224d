//! Moving bytes, below SSH and the transports: the stream type every
//! transport yields, the splice between a socket and a channel, streams
//! that can be cut from outside ([`killable`]) or give back bytes already
//! read ([`prefixed`]), PROXY protocol headers ([`proxy_protocol`]), the
//! client's read-ahead, socket options, and the
//! one accept loop with backoff that every listener runs.

use tokio::io::{AsyncRead, AsyncWrite};

pub(crate) mod accept;
pub(crate) mod killable;
pub(crate) mod prefixed;
pub(crate) mod proxy_protocol;
pub(crate) mod read_ahead;
pub(crate) mod socket_opts;
pub(crate) mod splice;
pub(crate) mod udp;

pub(crate) use accept::{Accept, accept_loop};
pub(crate) use killable::Killable;
pub(crate) use prefixed::Prefixed;
pub(crate) use socket_opts::SocketOpts;
pub(crate) use splice::splice;

/// A byte stream a transport produced.
pub trait TransportStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> TransportStream for T {}

/// A boxed transport stream.
pub type BoxStream = Box<dyn TransportStream>;
