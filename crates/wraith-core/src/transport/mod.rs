//! Pluggable transports. A client-side [`Transport`] dials and yields one
//! byte stream; a server-side [`Acceptor`] yields accepted streams with
//! [`PeerInfo`]. SSH runs over these streams and never opens sockets itself,
//! so adding a transport never touches SSH code.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::error::Result;

#[cfg(feature = "acme")]
mod acme;
#[cfg(feature = "iroh")]
mod iroh;
#[cfg(feature = "iroh")]
pub(crate) mod iroh_bridge;
pub mod memory;
mod options;
pub mod proxy;
#[cfg(feature = "tls")]
mod stealth;
mod tcp;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "ws")]
mod ws;

pub(crate) use crate::io::SocketOpts;
#[cfg(feature = "acme")]
pub use acme::{AcmeOptions, LETS_ENCRYPT_PRODUCTION};

/// When the ACME certificate in use expires, as Unix seconds (0 before
/// there is one).
#[cfg(feature = "acme")]
pub fn acme_not_after() -> u64 {
    acme::CERTIFICATE_NOT_AFTER.load(std::sync::atomic::Ordering::Relaxed)
}
#[cfg(feature = "iroh")]
pub use iroh::{
    IROH_ALPN, IrohAcceptor, IrohEndpoint, IrohOptions, IrohPeer, IrohRelay, IrohStream,
    IrohTransport, derive_secret_key,
};
pub use options::{ClientTransportOptions, ServerTransportOptions};
pub use proxy::{ProxyKind, ProxyUrl};
#[cfg(feature = "tls")]
pub use stealth::StealthOptions;
pub use tcp::{
    LISTEN_SYSTEMD, TcpAcceptor, TcpTransport, inherit_systemd_sockets, systemd_sockets,
};
#[cfg(feature = "nats")]
pub(crate) use tls::service_client_config;
#[cfg(feature = "tls")]
pub use tls::{CertSource, TlsAcceptor, TlsClientOptions, TlsPin, TlsServerOptions, TlsTransport};
#[cfg(feature = "ws")]
pub use ws::{WsAcceptor, WsServerOptions, WsStream, WsTransport};

pub use crate::io::proxy_protocol::ProxyHeaderVersion;
pub use crate::io::{BoxStream, TransportStream};

/// A boxed future, as trait objects need.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The kind of transport a connection arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TransportKind {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS over TCP.
    Tls,
    /// A QUIC stream between iroh endpoints.
    Iroh,
    /// A WebSocket over plain TCP, for a reverse proxy that terminates TLS.
    Ws,
    /// A WebSocket over TLS.
    Wss,
}

impl TransportKind {
    /// Every transport.
    pub const ALL: [TransportKind; 5] = [
        TransportKind::Tcp,
        TransportKind::Tls,
        TransportKind::Iroh,
        TransportKind::Ws,
        TransportKind::Wss,
    ];

    /// The transport [`name`](Self::name) names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// `tcp`, `tls`, `iroh`, `ws`, `wss`: the `--transport` value, and the
    /// URL scheme of a `--server` entry.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Iroh => "iroh",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server knows about the peer of an accepted connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The remote socket address, when the transport has one.
    pub remote_addr: Option<SocketAddr>,
    /// The transport the connection arrived over.
    pub transport: TransportKind,
    /// The TLS server name (SNI) the client asked for, if any.
    pub sni: Option<String>,
    /// The peer's iroh endpoint id (iroh only): it stands in for the
    /// address in logs and per-peer limits.
    pub endpoint_id: Option<String>,
}

impl PeerInfo {
    /// A peer over a socket transport (tcp, tls).
    pub fn socket(remote_addr: SocketAddr, transport: TransportKind) -> Self {
        PeerInfo {
            remote_addr: Some(remote_addr),
            transport,
            sni: None,
            endpoint_id: None,
        }
    }

    /// The peer as logged: its IP address, its iroh endpoint id, or `-`
    /// when there is neither.
    pub fn log_addr(&self) -> String {
        match (self.remote_addr, &self.endpoint_id) {
            (Some(a), _) => a.ip().to_string(),
            (None, Some(id)) => id.clone(),
            (None, None) => "-".into(),
        }
    }

    /// What per-source limits count by: the source network of the IP
    /// address (see [`crate::limits::NetBlock`]), or the endpoint id.
    pub(crate) fn limit_key(
        &self,
        block: &crate::limits::NetBlock,
    ) -> Option<crate::limits::SourceKey> {
        match (self.remote_addr, &self.endpoint_id) {
            (Some(a), _) => Some(crate::limits::SourceKey::Net(block.source_of(a.ip()))),
            (None, Some(id)) => Some(crate::limits::SourceKey::Endpoint(id.clone())),
            (None, None) => None,
        }
    }
}

/// Client side: dials the server and returns a stream for SSH to run over.
pub trait Transport: Send + Sync + 'static {
    /// Open a new connection to the server.
    fn connect(&self) -> BoxFuture<'_, Result<BoxStream>>;
    /// A short description for messages (e.g. `tcp://example.com:22`).
    fn describe(&self) -> String;
    /// Release what the transport holds beyond single connections (iroh's
    /// endpoint). Call once, when no more connections will be made.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Server side: accepts incoming connections.
pub trait Acceptor: Send + 'static {
    /// Wait for the next connection. An error concerns only that connection
    /// attempt; the acceptor keeps working.
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxStream, PeerInfo)>>;
    /// The address the acceptor listens on, for the "listening on" line.
    fn describe(&self) -> String;
    /// Shut down after the sessions have drained (iroh closes its endpoint,
    /// which would cut live sessions if done earlier).
    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// The bound socket address, for transports that listen on one.
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
    /// iroh: this server's endpoint id.
    fn endpoint_id(&self) -> Option<String> {
        None
    }
    /// iroh: the ticket clients pass as `--peer` (id, relay, addresses).
    fn ticket(&self) -> Option<String> {
        None
    }
}

/// Every acceptor runs in the one accept loop ([`crate::io::accept_loop`]).
impl<A: Acceptor + ?Sized> crate::io::Accept for A {
    type Conn = (BoxStream, PeerInfo);
    fn accept(&mut self) -> crate::io::accept::AcceptFuture<'_, Self::Conn> {
        Acceptor::accept(self)
    }
}

impl Acceptor for Box<dyn Acceptor> {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxStream, PeerInfo)>> {
        (**self).accept()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        (**self).close()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        (**self).local_addr()
    }

    fn endpoint_id(&self) -> Option<String> {
        (**self).endpoint_id()
    }

    fn ticket(&self) -> Option<String> {
        (**self).ticket()
    }
}
