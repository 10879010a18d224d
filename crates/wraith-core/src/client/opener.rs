//! The channel opener: the one place listeners ask for SSH channels. It
//! follows the current session (there may be none while reconnecting) and
//! bounds every wait, so a listener never hangs on a dead tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use russh::client::Msg;
use russh::{ChannelOpenFailure, ChannelStream};
use tokio::sync::watch;

use super::session::SessionHandle;
use crate::proto::forward_spec::ForwardTarget;

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("no ssh session (the tunnel is down)")]
    SessionDown,
    #[error("the server refused the channel: {0:?}")]
    Refused(ChannelOpenFailure),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("{0}")]
    Ssh(String),
}

/// Opens channels on whatever session is current.
#[derive(Clone)]
pub(crate) struct ChannelOpener {
    session: watch::Receiver<Option<SessionHandle>>,
    /// How long a request waits for a session to (re)appear.
    session_wait: Duration,
    /// How long the server may take to answer a channel open.
    open_timeout: Duration,
}

impl ChannelOpener {
    pub(crate) fn new(
        session: watch::Receiver<Option<SessionHandle>>,
        session_wait: Duration,
        open_timeout: Duration,
    ) -> Self {
        ChannelOpener {
            session,
            session_wait,
            open_timeout,
        }
    }

    /// An opener for one session that never changes (a single-channel
    /// connection): no wait for a session, `open_timeout` for the server.
    pub(crate) fn on_session(session: SessionHandle, open_timeout: Duration) -> Self {
        // The sender may go: the receiver keeps the last value.
        let (_tx, rx) = watch::channel(Some(session));
        ChannelOpener::new(rx, Duration::ZERO, open_timeout)
    }

    async fn current(&self) -> Result<SessionHandle, OpenError> {
        let mut rx = self.session.clone();
        let wait = rx.wait_for(|s| s.as_ref().is_some_and(|h| !h.is_closed()));
        match tokio::time::timeout(self.session_wait, wait).await {
            Ok(Ok(guard)) => guard.clone().ok_or(OpenError::SessionDown),
            _ => Err(OpenError::SessionDown),
        }
    }

    /// A `direct-tcpip` channel to `host:port`.
    pub(crate) async fn open_tcp(
        &self,
        host: &str,
        port: u16,
        originator: SocketAddr,
    ) -> Result<ChannelStream<Msg>, OpenError> {
        let session = self.current().await?;
        let open = session.channel_open_direct_tcpip(
            host,
            u32::from(port),
            originator.ip().to_string(),
            u32::from(originator.port()),
        );
        self.finish(open).await
    }

    /// A channel to a forward's target: `direct-tcpip` to a host and port,
    /// `direct-streamlocal` to a Unix socket on the server.
    pub(crate) async fn open(
        &self,
        target: &ForwardTarget,
        originator: SocketAddr,
    ) -> Result<ChannelStream<Msg>, OpenError> {
        match target {
            ForwardTarget::Tcp { host, port } => self.open_tcp(host, *port, originator).await,
            ForwardTarget::Unix(path) => self.open_unix(&path.to_string_lossy()).await,
            // A UDP target's datagrams ride a udpgw channel, which names
            // each datagram's destination itself.
            ForwardTarget::Udp { .. } => {
                use crate::proto::udpgw;
                self.open_tcp(udpgw::UDPGW_HOST, udpgw::UDPGW_PORT, originator)
                    .await
            }
        }
    }

    /// A `direct-streamlocal` channel to a Unix socket on the server.
    pub(crate) async fn open_unix(&self, path: &str) -> Result<ChannelStream<Msg>, OpenError> {
        let session = self.current().await?;
        let open = session.channel_open_direct_streamlocal(path);
        self.finish(open).await
    }

    async fn finish(
        &self,
        open: impl std::future::Future<Output = Result<russh::Channel<Msg>, russh::Error>>,
    ) -> Result<ChannelStream<Msg>, OpenError> {
        match tokio::time::timeout(self.open_timeout, open).await {
            Err(_) => Err(OpenError::Timeout),
            Ok(Ok(ch)) => Ok(ch.into_stream()),
            Ok(Err(russh::Error::ChannelOpenFailure(reason))) => Err(OpenError::Refused(reason)),
            Ok(Err(russh::Error::SendError | russh::Error::Disconnect)) => {
                Err(OpenError::SessionDown)
            }
            Ok(Err(e)) => Err(OpenError::Ssh(e.to_string())),
        }
    }
}
