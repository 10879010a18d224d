//! Moving bytes, below SSH and the transports: the stream type every
//! transport yields, the splice between a socket and a channel, streams
//! that can be cut from outside ([`killable`]) or give back bytes already
//! read ([`prefixed`]), PROXY protocol headers ([`proxy_protocol`]), the
//! client's read-ahead, socket options, the one accept loop with backoff
//! that every listener runs and the gate a new TCP connection passes first
//! ([`accept::OpeningGate`]), the UDP relay over channels ([`udp`]), and
//! the macros for streams that hand their I/O to a field.

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

/// Implements `AsyncRead` for a type by handing every call to one of its
/// fields: `forward_async_read!(impl[S: AsyncRead + Unpin] Wrapper<S> => inner);`.
macro_rules! forward_async_read {
    (impl[$($generics:tt)*] $ty:ty => $field:ident) => {
        impl<$($generics)*> tokio::io::AsyncRead for $ty {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut self.$field), cx, buf)
            }
        }
    };
}
pub(crate) use forward_async_read;

/// Implements `AsyncWrite` for a type by handing every call, vectored
/// writes included, to one of its fields (see [`forward_async_read`]).
macro_rules! forward_async_write {
    (impl[$($generics:tt)*] $ty:ty => $field:ident) => {
        impl<$($generics)*> tokio::io::AsyncWrite for $ty {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                tokio::io::AsyncWrite::poll_write(std::pin::Pin::new(&mut self.$field), cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut self.$field), cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_shutdown(std::pin::Pin::new(&mut self.$field), cx)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let field = std::pin::Pin::new(&mut self.$field);
                tokio::io::AsyncWrite::poll_write_vectored(field, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                tokio::io::AsyncWrite::is_write_vectored(&self.$field)
            }
        }
    };
}
pub(crate) use forward_async_write;

/// A byte stream a transport produced.
pub trait TransportStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> TransportStream for T {}

/// A boxed transport stream.
pub type BoxStream = Box<dyn TransportStream>;
