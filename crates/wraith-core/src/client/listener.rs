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

/// A local proxy port: the [`Service`] of its listener, which logs how
/// each client's conversation ended.
#[derive(Clone, Copy)]
pub(crate) enum ProxyKind {
    /// `--socks5`: a SOCKS5 handshake, then a CONNECT or a UDP ASSOCIATE.
    Socks5,
    /// `--http-proxy`: one request (a CONNECT or a plain `http://` one) per
    /// connection.
    Http,
}

impl ProxyKind {
    /// The name log lines use, and the option that sets the address.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            ProxyKind::Socks5 => ("socks5", "--socks5"),
            ProxyKind::Http => ("http proxy", "--http-proxy"),
        }
    }
}

impl Service<(TcpStream, SocketAddr)> for ProxyKind {
    async fn serve(self, (stream, peer): (TcpStream, SocketAddr), opener: ChannelOpener) {
        let ended = match self {
            ProxyKind::Socks5 => super::socks5::serve_client(stream, peer, opener).await,
            ProxyKind::Http => super::http_proxy::serve_client(stream, peer, opener).await,
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "{} client ended", self.names().0);
        }
    }
}

/// A bound TCP listener for a local proxy (`--socks5`, `--http-proxy`),
/// not yet serving: accepted sockets get the usual socket options, and its
/// [`ProxyKind`] serves each one.
pub(crate) struct TcpProxyListener {
    listener: TcpListener,
    local: SocketAddr,
    kind: ProxyKind,
}

impl TcpProxyListener {
    /// Binds `addr`; a failure names the proxy's flag.
    pub(crate) async fn bind(addr: &str, kind: ProxyKind) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(Error::bind_failed(addr, kind.names().1))?;
        let local = listener.local_addr().map_err(Error::no_local_addr)?;
        Ok(TcpProxyListener {
            listener,
            local,
            kind,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Accept for TcpProxyListener {
    type Conn = (TcpStream, SocketAddr);
    fn accept(&mut self) -> crate::io::accept::AcceptFuture<'_, Self::Conn> {
        Box::pin(async {
            let (stream, peer) = self.listener.accept().await?;
            SocketOpts::STANDARD.apply(&stream);
            Ok((stream, peer))
        })
    }
}

impl Listener for TcpProxyListener {
    type Service = ProxyKind;
    fn kind(&self) -> &'static str {
        self.kind.names().0
    }
    fn service(&self) -> ProxyKind {
        self.kind
    }
}

/// A local listener: where connections come from ([`Accept`]) and what
/// carries each one ([`Listener::Service`]).
pub(crate) trait Listener: Accept<Conn: 'static> + 'static {
    /// What serves one connection.
    type Service: Service<Self::Conn>;
    /// The service, cloned into every connection's task.
    fn service(&self) -> Self::Service;
    /// Names the listener in log lines about failed accepts.
    fn kind(&self) -> &'static str;
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
    let kind = listener.kind();
    let stop = std::future::pending();
    crate::io::accept_loop(&mut listener, kind, stop, |conn| {
        let open = activity.connection();
        let served = service.clone().serve(conn, opener.clone());
        tokio::spawn(async move {
            served.await;
            drop(open);
        });
    })
    .await;
}
