//! Moving bytes between a local socket and an SSH channel, both ways, with
//! half-close carried across (EOF one way does not cut the other).

use tokio::io::{AsyncRead, AsyncWrite};

/// Buffer size per direction. Large enough to fill an SSH packet (32 KiB
/// payload) in one read.
const COPY_BUF: usize = 64 * 1024;

/// Copy both ways until both directions have finished. Errors end the
/// splice; the caller drops both ends, which closes them.
pub(crate) async fn splice<A, B>(a: &mut A, b: &mut B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, COPY_BUF, COPY_BUF).await
}
