//! An in-memory transport: a [`Transport`] and an [`Acceptor`] joined by
//! `tokio::io::duplex` pipes instead of sockets, so that whole client ↔
//! server sessions run inside one test under paused time (keepalives,
//! backoff and timeouts of minutes take no real time), and so that a test
//! can make the path misbehave: [`MemoryNet::blackhole`] turns every open
//! connection into one whose bytes vanish, as a dead route does.
//!
//! A [`MemoryNet`] is the "network": clients dial it through
//! [`MemoryNet::transport`]; the latest [`MemoryNet::listen`] answers. With
//! no listener (or after it is dropped) a dial is refused, as a closed port
//! is.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

use super::{Acceptor, BoxFuture, BoxStream, PeerInfo, Transport, TransportKind};
use crate::error::{Error, Reason, Result};

/// Bytes each direction of a connection buffers before a writer waits
/// (about what a loopback socket pair holds).
const PIPE_BUFFER: usize = 256 * 1024;

/// Connections waiting for the acceptor.
const BACKLOG: usize = 64;

/// The in-memory network: one listening place, any number of dialers.
#[derive(Clone, Default)]
pub struct MemoryNet {
    listener: Arc<Mutex<Option<mpsc::Sender<MemoryStream>>>>,
    /// Set by [`MemoryNet::blackhole`]: the connections open at that moment
    /// stop delivering.
    cut: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl std::fmt::Debug for MemoryNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNet").finish_non_exhaustive()
    }
}

impl MemoryNet {
    /// A network with nobody listening.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start listening; an earlier acceptor stops receiving connections.
    pub fn listen(&self) -> MemoryAcceptor {
        let (tx, rx) = mpsc::channel(BACKLOG);
        if let Ok(mut l) = self.listener.lock() {
            *l = Some(tx);
        }
        MemoryAcceptor { incoming: rx }
    }

    /// Stop listening: new dials are refused; open connections go on.
    pub fn close(&self) {
        if let Ok(mut l) = self.listener.lock() {
            *l = None;
        }
    }

    /// A client transport that dials this network.
    pub fn transport(&self) -> MemoryTransport {
        self.transport_named("memory")
    }

    /// The same, describing itself as `name` (to tell several networks
    /// apart in messages and in the client's connection state).
    pub fn transport_named(&self, name: &str) -> MemoryTransport {
        MemoryTransport {
            net: self.clone(),
            name: name.into(),
        }
    }

    /// Every connection open now goes silent both ways: writes succeed and
    /// are lost, reads never complete, nobody is told. (A dead route, or
    /// a peer whose machine froze.) New connections are not affected.
    pub fn blackhole(&self) {
        if let Ok(mut cut) = self.cut.lock() {
            for c in cut.drain(..) {
                c.store(true, Ordering::Relaxed);
            }
        }
    }

    fn dial(&self) -> std::io::Result<MemoryStream> {
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let listener = self
            .listener
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .ok_or_else(refused)?;
        let (client, server) = tokio::io::duplex(PIPE_BUFFER);
        let cut = Arc::new(AtomicBool::new(false));
        if let Ok(mut all) = self.cut.lock() {
            all.retain(|c| Arc::strong_count(c) > 1);
            all.push(cut.clone());
        }
        let server = MemoryStream {
            pipe: server,
            cut: cut.clone(),
        };
        listener.try_send(server).map_err(|_| refused())?;
        Ok(MemoryStream { pipe: client, cut })
    }
}

/// Dials a [`MemoryNet`].
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    net: MemoryNet,
    name: Arc<str>,
}

impl Transport for MemoryTransport {
    fn connect(&self) -> BoxFuture<'_, Result<BoxStream>> {
        Box::pin(async move {
            let stream = self.net.dial().map_err(|e| Error::Transport {
                server: self.describe(),
                reason: Reason::with_source(e.to_string(), e),
            })?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn describe(&self) -> String {
        self.name.to_string()
    }
}

/// Accepts the connections dialed to a [`MemoryNet`]. Each peer shows as
/// 127.0.0.1 over TCP, so per-source limits and `from=` apply as on
/// loopback.
#[derive(Debug)]
pub struct MemoryAcceptor {
    incoming: mpsc::Receiver<MemoryStream>,
}

impl Acceptor for MemoryAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxStream, PeerInfo)>> {
        Box::pin(async move {
            match self.incoming.recv().await {
                Some(stream) => {
                    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
                    Ok((
                        Box::new(stream) as BoxStream,
                        PeerInfo::socket(peer, TransportKind::Tcp),
                    ))
                }
                // Replaced by a newer listener: accept nothing more.
                None => std::future::pending().await,
            }
        })
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

/// One end of an in-memory connection.
#[derive(Debug)]
pub struct MemoryStream {
    pipe: DuplexStream,
    cut: Arc<AtomicBool>,
}

impl MemoryStream {
    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

impl AsyncRead for MemoryStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.is_cut() {
            // Nothing arrives on a dead route, ever.
            return Poll::Pending;
        }
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemoryStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.is_cut() {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.is_cut() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.is_cut() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}
