//! One SSH session carrying one channel, as a byte stream: what the Node
//! package's `connect()` returns, and a building block for embedders that
//! want a single authenticated duplex stream (often to `wraith-control:0`)
//! rather than listeners. No reconnection: when the session ends, the
//! stream ends.

use russh::ChannelStream;
use russh::client::Msg;

use super::ConnectOptions;
use super::opener::{ChannelOpener, OpenError};
use super::session::{self, NoInboundRoutes, SessionHandle, SessionParams};
use crate::error::{Error, Result};
use crate::proto::host_port::HostPort;

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
    let single = SingleSession::establish(&opts).await?;
    let originator = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let opened = single.opener.open_tcp(host, port, originator).await;
    let stream = opened.map_err(|e| single.open_failed(host, port, e))?;
    Ok(ChannelConnection {
        stream,
        _session: single.handle,
    })
}

/// A session of its own, with no reconnection and no remote forwards, and
/// the one channel opener on it.
pub(super) struct SingleSession {
    pub(super) handle: SessionHandle,
    pub(super) opener: ChannelOpener,
    server: String,
}

impl SingleSession {
    pub(super) async fn establish(opts: &ConnectOptions) -> Result<Self> {
        let params = SessionParams::new(opts, std::sync::Arc::new(NoInboundRoutes));
        let (handle, _end, i) = session::establish(&params, 0).await?;
        let server = params.servers[i].transport.describe();
        let opener = ChannelOpener::on_session(handle.clone(), opts.connect_timeout);
        Ok(SingleSession {
            handle,
            opener,
            server,
        })
    }

    /// The error for a channel to `host:port` that could not be opened.
    pub(super) fn open_failed(&self, host: &str, port: u16, e: OpenError) -> Error {
        Error::Ssh {
            server: self.server.clone(),
            reason: format!(
                "cannot open a channel to {}: {}",
                HostPort(host, port),
                match e {
                    OpenError::Refused(why) => format!("the server refused it ({why:?})"),
                    other => other.to_string(),
                }
            )
            .into(),
        }
    }
}

crate::io::forward_async_read!(impl[] ChannelConnection => stream);

crate::io::forward_async_write!(impl[] ChannelConnection => stream);
