//! What every local listener is: a source of connections and a service that
//! carries one of them through the tunnel. The SOCKS5 proxy, TCP and Unix
//! forwards and `--stdio` (a listener with one connection: stdin and
//! stdout) are each a [`Listener`]; [`serve`] runs any of them on the one
//! channel opener, one task per connection, through the shared accept loop
//! and its backoff.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::opener::ChannelOpener;
use crate::error::{Error, Result};
use crate::io::Accept;
use crate::transport::SocketOpts;

/// A bound TCP listener for a local proxy (`--socks5`, `--http-proxy`):
/// accepted sockets get the usual socket options.
pub(crate) struct TcpProxyListener {
    listener: TcpListener,
    local: SocketAddr,
}

impl TcpProxyListener {
    /// Binds `addr`; a failure names `flag`.
    pub(crate) async fn bind(addr: &str, flag: &'static str) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.to_string(),
                flag,
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        Ok(TcpProxyListener { listener, local })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub(crate) async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        SocketOpts::default().apply(&stream);
        Ok((stream, peer))
    }
}

/// A local listener: where connections come from ([`Accept`]) and what
/// carries each one ([`Listener::Service`]).
pub(crate) trait Listener: Accept<Conn: 'static> + 'static {
    /// Names the listener in log lines about failed accepts.
    const KIND: &'static str;
    /// What serves one connection.
    type Service: Service<Self::Conn>;
    /// The service, cloned into every connection's task.
    fn service(&self) -> Self::Service;
}

/// Carries one accepted connection through the tunnel, opening its
/// channel with the opener it is given. It reports its own failures (a
/// log line, a SOCKS reply); nothing waits for it.
pub(crate) trait Service<C>: Clone + Send + 'static {
    /// Serve `conn` to its end.
    fn serve(self, conn: C, opener: ChannelOpener) -> impl Future<Output = ()> + Send + 'static;
}

/// Accept from `listener` until the task is dropped, serving each
/// connection on a task of its own.
pub(crate) async fn serve<L: Listener>(
    mut listener: L,
    opener: ChannelOpener,
    activity: Arc<super::status::Activity>,
) {
    let service = listener.service();
    let stop = std::future::pending();
    crate::io::accept_loop(&mut listener, L::KIND, stop, |conn| {
        let open = activity.connection();
        let served = service.clone().serve(conn, opener.clone());
        tokio::spawn(async move {
            served.await;
            drop(open);
        });
    })
    .await;
}
