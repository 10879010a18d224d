//! Socket options, named once and applied to every TCP socket we create or
//! accept. russh only sets TCP_NODELAY on sockets it opens itself; we hand it
//! streams, so we must: without it, small SSH packets wait on Nagle and
//! delayed ACKs (tens of milliseconds per new channel).

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Options applied to TCP sockets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketOpts {
    pub nodelay: bool,
    pub keepalive: Option<Duration>,
}

impl SocketOpts {
    /// What every socket of ours gets: no Nagle, and a keepalive probe
    /// after a minute of silence.
    pub(crate) const STANDARD: SocketOpts = SocketOpts {
        nodelay: true,
        keepalive: Some(Duration::from_secs(60)),
    };

    /// Apply to a connected stream. Failures are not fatal: the connection
    /// still works, only slower or with later dead-peer detection.
    pub(crate) fn apply(&self, stream: &TcpStream) {
        if self.nodelay
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        if let Some(idle) = self.keepalive {
            let ka = TcpKeepalive::new().with_time(idle);
            if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&ka) {
                tracing::debug!(error = %e, "cannot set SO_KEEPALIVE");
            }
        }
    }
}
