//! The client reads its transport ahead of its SSH session.
//!
//! russh writes a whole flush before it reads again. When both peers of a
//! session flush more than the transport can buffer (a bulk transfer in
//! both directions fills the 2 MiB channel windows each way), each waits
//! for the other to read, and the session stalls for good. Loopback TCP
//! under load and QUIC's 1.25 MB stream window both do it. If one side
//! always reads, the other's flush always completes, so the client keeps
//! reading into memory while its session flushes. What it holds is what
//! the server may send under SSH flow control (the windows the client
//! granted), capped at [`READ_AHEAD`] (the session's window budget); the server, which must stay
//! bounded whatever a client does, reads directly.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf, WriteHalf};

use crate::transport::BoxStream;

/// Most bytes read ahead of the session: all the server may send under the
/// windows a session grants, and some room for its own messages. Memory is
/// taken as bytes wait, not up front.
const READ_AHEAD: usize = crate::algorithms::WINDOW_BUDGET as usize + (16 << 20);

/// Bytes moved per read from the transport.
const CHUNK: usize = 256 << 10;

/// `stream` with its reading done by a task that never waits for the
/// session.
pub(crate) fn read_ahead(stream: BoxStream) -> BoxStream {
    let (from_server, to_server) = tokio::io::split(stream);
    let (mut ahead, buffered) = tokio::io::duplex(READ_AHEAD);
    tokio::spawn(async move {
        // Large reads: `copy`'s 8 KiB buffer costs a wake-up per 8 KiB.
        let mut from_server = tokio::io::BufReader::with_capacity(CHUNK, from_server);
        // Ends when the server closes or the session drops `buffered`.
        let _ = tokio::io::copy_buf(&mut from_server, &mut ahead).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut ahead).await;
    });
    Box::new(ReadAhead {
        buffered,
        to_server,
    })
}

struct ReadAhead {
    buffered: DuplexStream,
    to_server: WriteHalf<BoxStream>,
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.buffered).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadAhead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.to_server).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.to_server).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.to_server).poll_shutdown(cx)
    }
}
