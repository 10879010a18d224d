//! One SSH session carrying one channel, as a byte stream: what the Node
//! package's `connect()` returns, and a building block for embedders that
//! want a single authenticated duplex stream (often to `wraith-control:0`)
//! rather than listeners. No reconnection: when the session ends, the
//! stream ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use russh::ChannelStream;
use russh::client::Msg;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ConnectOptions;
use super::forward::RemoteForwardTable;
use super::session::{self, SessionHandle, SessionParams};
use crate::error::{Error, Result};

/// A `direct-tcpip` channel on its own session. Reading and writing move
/// channel data; shutting down the write side sends EOF. Drop it inside a
/// tokio runtime (russh spawns its close message from `Drop`).
pub struct ChannelConnection {
    stream: ChannelStream<Msg>,
    _session: SessionHandle,
}

impl std::fmt::Debug for ChannelConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConnection").finish_non_exhaustive()
    }
}

/// Connect and authenticate as `opts` says (its listener settings are
/// ignored), then open one channel to `host:port` as seen from the server.
/// Errors carry the same messages as `wraith connect`.
pub async fn open_channel(
    opts: ConnectOptions,
    host: &str,
    port: u16,
) -> Result<ChannelConnection> {
    let params = SessionParams::new(&opts, RemoteForwardTable::default());
    let server = params.transport.describe();
    let (handle, _end) = session::establish(&params).await?;
    let open = handle.channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0);
    let refused = |reason: String| Error::Ssh {
        server: server.clone(),
        reason: format!("cannot open a channel to {host}:{port}: {reason}"),
    };
    let channel = match tokio::time::timeout(opts.connect_timeout, open).await {
        Err(_) => return Err(refused("the server did not answer in time".into())),
        Ok(Err(russh::Error::ChannelOpenFailure(why))) => {
            return Err(refused(format!("the server refused it ({why:?})")));
        }
        Ok(Err(e)) => return Err(refused(e.to_string())),
        Ok(Ok(ch)) => ch,
    };
    Ok(ChannelConnection {
        stream: channel.into_stream(),
        _session: handle,
    })
}

impl AsyncRead for ChannelConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ChannelConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
