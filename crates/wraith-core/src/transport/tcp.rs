//! The TCP transport: a plain `TcpStream` each way, with our socket options.
//! Behind a load balancer (`--proxy-protocol`) the server reads a PROXY
//! header first, off the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::proxy::{self, ProxyUrl};
use super::{Acceptor, BoxFuture, BoxStream, PeerInfo, SocketOpts, Transport, TransportKind};
use crate::error::{Error, Result};
use crate::io::accept::OpeningGate;
use crate::io::proxy_protocol::{ProxyProtocol, log_refusal};
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

    /// The TCP connection under any transport to this server (directly or
    /// through the proxy); `server` names that transport in the error.
    pub(crate) async fn dial(&self, server: &str) -> Result<TcpStream> {
        proxy::dial(self.proxy.as_ref(), &self.host, self.port)
            .await
            .map_err(|reason| Error::Transport {
                server: server.to_string(),
                reason,
            })
    }
}

impl Transport for TcpTransport {
    fn connect(&self) -> BoxFuture<'_, Result<BoxStream>> {
        Box::pin(async move {
            let stream = self.dial(&self.describe()).await?;
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
    let listener = if addr == LISTEN_SYSTEMD {
        take_systemd_socket()?
    } else {
        TcpListener::bind(addr)
            .await
            .map_err(Error::bind_failed(addr, "--listen"))?
    };
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the listening address", e))?;
    Ok((listener, local))
}

/// The `--listen` value that takes the listening socket systemd passed
/// (socket activation: `LISTEN_FDS`, `LISTEN_PID`) instead of binding one.
pub const LISTEN_SYSTEMD: &str = "systemd";

/// Sockets handed over by systemd, taken from the environment once by
/// [`inherit_systemd_sockets`].
static INHERITED: std::sync::Mutex<Option<listenfd::ListenFd>> = std::sync::Mutex::new(None);

/// Take the sockets systemd passed (`LISTEN_FDS` from fd 3, for this
/// process's `LISTEN_PID`) and remove those variables from the
/// environment, so no child inherits them. Call it at the start of `main`,
/// before any thread starts (it changes the environment). Returns how
/// many there are; [`LISTEN_SYSTEMD`] then binds to the first.
pub fn inherit_systemd_sockets() -> usize {
    let fds = listenfd::ListenFd::from_env();
    let n = fds.len();
    if let Ok(mut slot) = INHERITED.lock() {
        *slot = Some(fds);
    }
    n
}

/// How many sockets [`inherit_systemd_sockets`] took and are not used yet.
pub fn systemd_sockets() -> usize {
    INHERITED
        .lock()
        .ok()
        .and_then(|s| s.as_ref().map(listenfd::ListenFd::len))
        .unwrap_or(0)
}

fn take_systemd_socket() -> Result<TcpListener> {
    let none = |reason: String| Error::Config {
        flag: "--listen",
        value: LISTEN_SYSTEMD.into(),
        reason,
    };
    let mut slot = INHERITED
        .lock()
        .map_err(|_| none("the inherited sockets are unavailable".into()))?;
    let fds = slot
        .as_mut()
        .ok_or_else(|| none("systemd passed no socket (no LISTEN_FDS for this process)".into()))?;
    let std = fds
        .take_tcp_listener(0)
        .map_err(|e| none(format!("the first socket systemd passed is not a TCP listener: {e}")))?
        .ok_or_else(|| {
            none("systemd passed no socket (no LISTEN_FDS for this process), or it is in use already".into())
        })?;
    std.set_nonblocking(true)
        .map_err(|e| Error::io("cannot set the inherited socket non-blocking", e))?;
    TcpListener::from_std(std).map_err(|e| Error::io("cannot use the inherited socket", e))
}

/// PROXY headers being read at once on a `--proxy-protocol` TCP port;
/// past this, new connections are closed at once.
const MAX_PENDING_HEADERS: usize = 1024;

/// Accepts TCP connections on a bound listener.
#[derive(Debug)]
pub struct TcpAcceptor {
    local: SocketAddr,
    incoming: Incoming,
}

#[derive(Debug)]
enum Incoming {
    /// Streams come straight from `accept()`.
    Listener(TcpListener),
    /// `--proxy-protocol`: a task accepts and reads each header in a task
    /// of its own (a slow peer never holds up the others); streams with
    /// their real client address arrive here.
    Headers {
        rx: mpsc::Receiver<(BoxStream, PeerInfo)>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Drop for TcpAcceptor {
    fn drop(&mut self) {
        if let Incoming::Headers { task, .. } = &self.incoming {
            task.abort();
        }
    }
}

impl TcpAcceptor {
    /// Bind `addr` (port 0 picks a free port).
    pub async fn bind(addr: &str) -> Result<Self> {
        let (listener, local) = bind_listener(addr).await?;
        Ok(TcpAcceptor {
            local,
            incoming: Incoming::Listener(listener),
        })
    }

    /// Bind `addr`; every connection must start with a PROXY header from a
    /// peer `pp` trusts (`--proxy-protocol`).
    pub(crate) async fn bind_behind_proxy(addr: &str, pp: ProxyProtocol) -> Result<Self> {
        let (listener, local) = bind_listener(addr).await?;
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(header_loop(listener, Arc::new(pp), tx));
        Ok(TcpAcceptor {
            local,
            incoming: Incoming::Headers { rx, task },
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

async fn header_loop(
    mut listener: TcpListener,
    pp: Arc<ProxyProtocol>,
    tx: mpsc::Sender<(BoxStream, PeerInfo)>,
) {
    let admission = Arc::new(OpeningGate::new(
        Some(pp.clone()),
        MAX_PENDING_HEADERS,
        TransportKind::Tcp.name(),
        "too many PROXY protocol headers being read; connections dropped",
    ));
    let on_conn = |(tcp, peer): (TcpStream, SocketAddr)| {
        let Some(permit) = admission.admit(peer) else {
            return;
        };
        SocketOpts::STANDARD.apply(&tcp);
        let (admission, pp, tx) = (admission.clone(), pp.clone(), tx.clone());
        tokio::spawn(async move {
            let accepted = pp.accept(tcp, peer).await;
            drop(permit);
            match accepted {
                Ok((stream, client)) => {
                    let info = PeerInfo::socket(client, TransportKind::Tcp);
                    // The receiver is gone only when the server stopped.
                    let _ = tx.send((Box::new(stream) as BoxStream, info)).await;
                }
                Err(e) => log_refusal(admission.refusals(), peer, &e),
            }
        });
    };
    crate::io::accept_loop(&mut listener, "tcp", std::future::pending(), on_conn).await;
}

impl Acceptor for TcpAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxStream, PeerInfo)>> {
        Box::pin(async move {
            match &mut self.incoming {
                Incoming::Listener(listener) => {
                    let (stream, peer) = listener.accept().await?;
                    SocketOpts::STANDARD.apply(&stream);
                    let info = PeerInfo::socket(peer, TransportKind::Tcp);
                    Ok((Box::new(stream) as BoxStream, info))
                }
                Incoming::Headers { rx, .. } => rx.recv().await.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "TCP accept loop ended")
                }),
            }
        })
    }

    fn describe(&self) -> String {
        format!("tcp://{}", self.local)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn behind_a_proxy_a_slow_header_does_not_hold_up_the_next_one() {
        let pp = ProxyProtocol::new(ProxyProtocol::loopback());
        let mut acceptor = TcpAcceptor::bind_behind_proxy("127.0.0.1:0", pp)
            .await
            .unwrap();
        let addr = acceptor.local_addr();
        // Half a header, then nothing (until the 10 s timeout).
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"PROXY TCP4 198.51.").await.unwrap();
        let mut fast = TcpStream::connect(addr).await.unwrap();
        fast.write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 22\r\nhello")
            .await
            .unwrap();
        let (mut stream, info) = tokio::time::timeout(WAIT, acceptor.accept())
            .await
            .expect("the complete header is not stuck behind the slow one")
            .unwrap();
        assert_eq!(info.remote_addr, Some("192.0.2.9:5555".parse().unwrap()));
        assert_eq!(info.transport, TransportKind::Tcp);
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        // No header: closed, and nothing reaches accept().
        let mut bare = TcpStream::connect(addr).await.unwrap();
        bare.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(WAIT, bare.read(&mut buf))
            .await
            .expect("a headerless connection is closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), acceptor.accept())
                .await
                .is_err()
        );
        drop(slow);
    }
}
