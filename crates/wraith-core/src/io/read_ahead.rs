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
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf, WriteHalf};
use tokio::sync::{Semaphore, mpsc};

use super::BoxStream;

/// Most bytes read ahead of the session: all the server may send under the
/// windows a session grants, and some room for its own messages.
const READ_AHEAD: usize = crate::ssh::WINDOW_BUDGET as usize + (16 << 20);

/// Size of the buffers reads land in. Memory is taken as bytes arrive and
/// given back as the session takes them: a buffer is freed once every read
/// in it has been consumed, so a burst does not leave a large buffer behind
/// (a `DuplexStream` keeps its largest capacity for good).
const CHUNK: usize = 256 << 10;

/// A new buffer is started when less room than this is left in the last.
const MIN_READ: usize = 16 << 10;

/// `stream` with its reading done by a task that never waits for the
/// session.
pub(crate) fn read_ahead(stream: BoxStream) -> BoxStream {
    let (mut from_server, to_server) = tokio::io::split(stream);
    let (chunks, ahead) = mpsc::unbounded_channel::<Bytes>();
    // One permit per byte held.
    let room = Arc::new(Semaphore::new(READ_AHEAD));
    let task_room = room.clone();
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        loop {
            if buf.capacity() < MIN_READ {
                buf = BytesMut::with_capacity(CHUNK);
            }
            // Ends when the server closes or errs; the session sees EOF.
            let n = match from_server.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Ok(permit) = task_room.acquire_many(n as u32).await else {
                break;
            };
            permit.forget();
            // Ends when the session dropped its end.
            if chunks.send(buf.split().freeze()).is_err() {
                break;
            }
        }
    });
    Box::new(ReadAhead {
        ahead,
        current: Bytes::new(),
        room,
        to_server,
    })
}

struct ReadAhead {
    ahead: mpsc::UnboundedReceiver<Bytes>,
    /// What is left of the chunk being read.
    current: Bytes,
    room: Arc<Semaphore>,
    to_server: WriteHalf<BoxStream>,
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.current.is_empty() {
            match this.ahead.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => this.current = chunk,
                // The reading task ended: EOF.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current[..n]);
        this.current.advance(n);
        this.room.add_permits(n);
        Poll::Ready(Ok(()))
    }
}

super::forward_async_write!(impl[] ReadAhead => to_server);
