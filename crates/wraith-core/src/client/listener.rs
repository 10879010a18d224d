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

/// What serves the connections of a local proxy port (SOCKS5, the HTTP
/// proxy): a [`Service`] with the names its listener goes by.
pub(crate) trait ProxyService: Service<(TcpStream, SocketAddr)> + Default + Sync {
    /// Names the listener in log lines about failed accepts.
    const KIND: &'static str;
    /// The option that sets its address, named when binding fails.
    const FLAG: &'static str;
}

/// A bound TCP listener for a local proxy (`--socks5`, `--http-proxy`),
/// not yet serving: accepted sockets get the usual socket options, and `S`
/// serves each one.
pub(crate) struct TcpProxyListener<S> {
    listener: TcpListener,
    local: SocketAddr,
    service: S,
}

impl<S: ProxyService> TcpProxyListener<S> {
    /// Binds `addr`; a failure names the service's flag.
    pub(crate) async fn bind(addr: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.to_string(),
                flag: S::FLAG,
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        Ok(TcpProxyListener {
            listener,
            local,
            service: S::default(),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl<S: ProxyService> Accept for TcpProxyListener<S> {
    type Conn = (TcpStream, SocketAddr);
    fn accept(&mut self) -> crate::io::accept::AcceptFuture<'_, Self::Conn> {
        Box::pin(async {
            let (stream, peer) = self.listener.accept().await?;
            SocketOpts::default().apply(&stream);
            Ok((stream, peer))
        })
    }
}

impl<S: ProxyService> Listener for TcpProxyListener<S> {
    const KIND: &'static str = S::KIND;
    type Service = S;
    fn service(&self) -> S {
        self.service.clone()
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
