//! The TCP transport: a plain `TcpStream` each way, with our socket options.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::proxy::{self, ProxyUrl};
use super::{Acceptor, BoxFuture, BoxStream, PeerInfo, SocketOpts, Transport, TransportKind};
use crate::error::{Error, Result};
use crate::proto::host_port::HostPort;

/// Dials `host:port` over TCP.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    host: String,
    port: u16,
    proxy: Option<ProxyUrl>,
}

impl TcpTransport {
    /// A transport to `host:port` (host may be a name or an IP).
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        TcpTransport {
            host: host.into(),
            port,
            proxy: None,
        }
    }

    /// Dial through an upstream proxy (`--proxy`).
    pub fn with_proxy(mut self, proxy: Option<ProxyUrl>) -> Self {
        self.proxy = proxy;
        self
    }
}

impl Transport for TcpTransport {
    fn connect(&self) -> BoxFuture<'_, Result<BoxStream>> {
        Box::pin(async move {
            let stream = proxy::dial(self.proxy.as_ref(), &self.host, self.port)
                .await
                .map_err(|reason| Error::Transport {
                    server: self.describe(),
                    reason,
                })?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn describe(&self) -> String {
        HostPort(&self.host, self.port).to_string()
    }
}

/// Bind the server's listening socket (`--listen`), for every transport
/// that runs over TCP.
pub(crate) async fn bind_listener(addr: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            addr: addr.to_string(),
            flag: "--listen",
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the listening address", e))?;
    Ok((listener, local))
}

/// Accepts TCP connections on a bound listener.
#[derive(Debug)]
pub struct TcpAcceptor {
    listener: TcpListener,
    local: SocketAddr,
}

impl TcpAcceptor {
    /// Bind `addr` (port 0 picks a free port).
    pub async fn bind(addr: &str) -> Result<Self> {
        let (listener, local) = bind_listener(addr).await?;
        Ok(TcpAcceptor { listener, local })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Acceptor for TcpAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxStream, PeerInfo)>> {
        Box::pin(async move {
            let (stream, peer) = self.listener.accept().await?;
            SocketOpts::default().apply(&stream);
            let info = PeerInfo::socket(peer, TransportKind::Tcp);
            Ok((Box::new(stream) as BoxStream, info))
        })
    }

    fn describe(&self) -> String {
        format!("tcp://{}", self.local)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.local)
    }
}
