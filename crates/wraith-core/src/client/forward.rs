//! Port forwards. Local forwards (`--forward`, like `ssh -L`) are listeners
//! that hand each accepted connection to the channel opener. Remote forwards
//! (`--remote-forward`, like `ssh -R`) are requested from the server; the
//! table here maps the channels the server opens back to local targets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;

use super::listener::{Listener, Service};
use super::opener::ChannelOpener;
use crate::error::{Error, Result};
use crate::proto::forward_spec::{BindAddr, ForwardTarget, LocalForwardSpec};
use crate::proto::host_port::HostPort;
use crate::transport::{BoxStream, SocketOpts};

/// Where a local forward ended up listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(std::path::PathBuf),
    /// A UDP address.
    Udp(SocketAddr),
}

impl std::fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoundAddr::Tcp(a) => write!(f, "{a}"),
            BoundAddr::Unix(p) => write!(f, "{}", p.display()),
            BoundAddr::Udp(a) => write!(f, "udp:{a}"),
        }
    }
}

enum LocalListener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

/// A bound local forward, not yet serving.
pub(crate) struct LocalForward {
    listener: LocalListener,
    target: ForwardTarget,
    bound: BoundAddr,
}

impl LocalForward {
    pub(crate) async fn bind(spec: &LocalForwardSpec) -> Result<Self> {
        let (listener, bound) = match &spec.bind {
            BindAddr::Tcp { host, port } => {
                let l = TcpListener::bind((host.as_str(), *port))
                    .await
                    .map_err(Error::bind_failed(HostPort(host, *port), "--forward"))?;
                let local = l.local_addr().map_err(Error::no_local_addr)?;
                (LocalListener::Tcp(l), BoundAddr::Tcp(local))
            }
            #[cfg(unix)]
            BindAddr::Unix(path) => {
                let l = tokio::net::UnixListener::bind(path)
                    .map_err(Error::bind_failed(path.display(), "--forward"))?;
                (LocalListener::Unix(l), BoundAddr::Unix(path.clone()))
            }
            // `UdpForward` binds these.
            BindAddr::Udp { .. } => {
                return Err(Error::Usage(format!("{} is a UDP forward", spec.bind)));
            }
            #[cfg(not(unix))]
            BindAddr::Unix(path) => {
                return Err(Error::config(
                    "--forward",
                    path.display(),
                    "unix sockets are not supported on this platform",
                ));
            }
        };
        Ok(LocalForward {
            listener,
            target: spec.target.clone(),
            bound,
        })
    }

    pub(crate) fn target_clone(&self) -> ForwardTarget {
        self.target.clone()
    }

    pub(crate) fn bound(&self) -> &BoundAddr {
        &self.bound
    }
}

impl crate::io::Accept for LocalForward {
    type Conn = (BoxStream, SocketAddr);
    fn accept(&mut self) -> crate::io::accept::AcceptFuture<'_, Self::Conn> {
        self.listener.accept()
    }
}

impl Listener for LocalForward {
    fn kind(&self) -> &'static str {
        "forward"
    }
    type Service = ForwardService;
    fn service(&self) -> ForwardService {
        ForwardService {
            target: self.target.clone(),
        }
    }
}

/// Carries each connection of a local forward to the forward's target.
#[derive(Clone)]
pub(crate) struct ForwardService {
    target: ForwardTarget,
}

impl Service<(BoxStream, SocketAddr)> for ForwardService {
    async fn serve(self, (mut stream, originator): (BoxStream, SocketAddr), opener: ChannelOpener) {
        match opener.open(&self.target, originator).await {
            Ok(mut channel) => {
                let _ = crate::io::splice(&mut stream, &mut channel).await;
            }
            Err(e) => {
                tracing::warn!(target = %self.target, error = %e, "forward: cannot open channel");
            }
        }
    }
}

impl crate::io::Accept for LocalListener {
    type Conn = (BoxStream, SocketAddr);
    fn accept(&mut self) -> crate::io::accept::AcceptFuture<'_, Self::Conn> {
        Box::pin(async move {
            match self {
                LocalListener::Tcp(l) => {
                    let (s, peer) = l.accept().await?;
                    SocketOpts::STANDARD.apply(&s);
                    Ok((Box::new(s) as BoxStream, peer))
                }
                // A Unix client has no address; the channel names loopback.
                #[cfg(unix)]
                LocalListener::Unix(l) => {
                    let (s, _) = l.accept().await?;
                    Ok((
                        Box::new(s) as BoxStream,
                        SocketAddr::from(([127, 0, 0, 1], 0)),
                    ))
                }
            }
        })
    }
}

/// Remote forwards granted by the server: (requested address, bound port) →
/// local target.
#[derive(Clone, Default)]
pub(crate) struct RemoteForwardTable {
    entries: Arc<Mutex<Vec<(String, u32, ForwardTarget)>>>,
}

impl RemoteForwardTable {
    pub(crate) fn insert(&self, address: &str, port: u32, target: ForwardTarget) {
        if let Ok(mut e) = self.entries.lock() {
            e.retain(|(a, p, _)| !(a == address && *p == port));
            e.push((address.to_string(), port, target));
        }
    }

    /// Find the target for a channel the server opened. An exact
    /// address match wins; otherwise the port alone decides (servers differ
    /// in how they echo the bind address).
    pub(crate) fn lookup(&self, address: &str, port: u32) -> Option<ForwardTarget> {
        let e = self.entries.lock().ok()?;
        e.iter()
            .find(|(a, p, _)| a == address && *p == port)
            .or_else(|| e.iter().find(|(_, p, _)| *p == port))
            .map(|(_, _, t)| t.clone())
    }
}

impl super::session::InboundRoutes for RemoteForwardTable {
    fn connect(
        &self,
        address: &str,
        port: u32,
    ) -> Option<crate::transport::BoxFuture<'static, std::result::Result<BoxStream, String>>> {
        let target = self.lookup(address, port)?;
        Some(Box::pin(async move {
            dial_target(&target)
                .await
                .map_err(|e| format!("{target}: {e}"))
        }))
    }
}

/// Connect to a local target of a remote forward.
pub(crate) async fn dial_target(target: &ForwardTarget) -> std::io::Result<BoxStream> {
    let timeout = std::time::Duration::from_secs(10);
    match target {
        ForwardTarget::Tcp { host, port } => {
            let s = tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
            SocketOpts::STANDARD.apply(&s);
            Ok(Box::new(s))
        }
        #[cfg(unix)]
        ForwardTarget::Unix(path) => {
            let s = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            Ok(Box::new(s))
        }
        #[cfg(not(unix))]
        ForwardTarget::Unix(_) => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "unix sockets are not supported here",
        )),
        // The channel carries udpgw frames; this end gives each flow a
        // socket to the target.
        ForwardTarget::Udp { host, port } => Ok(super::udp::remote_target(host.clone(), *port)),
    }
}
