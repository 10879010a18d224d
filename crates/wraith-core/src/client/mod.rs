//! The wraith client: one SSH session to the server, exposed locally as a
//! SOCKS5 proxy and port forwards.
//!
//! Flow: [`ConnectOptions`] → session (dial transport, handshake, host key,
//! auth) → [`opener`] (the one channel opener) → listeners (SOCKS5, local
//! forwards) and the remote-forward table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::transport::Transport;

mod forward;
pub mod forward_spec;
mod host_key;
mod opener;
mod session;
mod socks5;
pub(crate) mod socks5_proto;

pub use forward::BoundAddr;
pub use forward_spec::{ForwardSpecError, ForwardTarget, LocalForwardSpec, RemoteForwardSpec};
pub use host_key::{HostKeyPolicy, default_store};

use forward::{LocalForward, RemoteForwardTable};
use opener::ChannelOpener;
use session::SessionParams;
use socks5::Socks5Listener;

/// SSH channel window. Large enough that a single stream is not
/// window-limited on fast links.
pub(crate) const WINDOW_SIZE: u32 = 2 * 1024 * 1024;
/// Largest SSH packet we accept (russh rejects more than 65535).
pub(crate) const MAX_PACKET_SIZE: u32 = 32 * 1024;

/// Everything the client needs. Build it from the CLI or in code.
#[non_exhaustive]
pub struct ConnectOptions {
    /// How to reach the server.
    pub transport: Arc<dyn Transport>,
    /// Server host name as used for known_hosts lookups.
    pub server_host: String,
    /// Server port as used for known_hosts lookups.
    pub server_port: u16,
    /// Login name.
    pub user: String,
    /// The private key to authenticate with (`--identity`).
    pub identity: PrivateKey,
    /// How to trust the server's host key.
    pub host_key: HostKeyPolicy,
    /// Where to run the SOCKS5 proxy; `None` disables it.
    pub socks5: Option<String>,
    /// Local forwards (`--forward`).
    pub forwards: Vec<LocalForwardSpec>,
    /// Remote forwards (`--remote-forward`).
    pub remote_forwards: Vec<RemoteForwardSpec>,
    /// Timeout for dialing, the SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Interval between SSH keepalives.
    pub keepalive_interval: Duration,
    /// Unanswered keepalives before the server is considered dead.
    pub keepalive_count_max: usize,
}

impl ConnectOptions {
    /// Options with CLI defaults: SOCKS5 on 127.0.0.1:1080, trust on first use.
    pub fn new(
        transport: Arc<dyn Transport>,
        server_host: impl Into<String>,
        server_port: u16,
        user: impl Into<String>,
        identity: PrivateKey,
    ) -> Self {
        ConnectOptions {
            transport,
            server_host: server_host.into(),
            server_port,
            user: user.into(),
            identity,
            host_key: HostKeyPolicy::default_tofu(),
            socks5: Some("127.0.0.1:1080".into()),
            forwards: Vec::new(),
            remote_forwards: Vec::new(),
            connect_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(15),
            keepalive_count_max: 3,
        }
    }
}

/// A local forward that is listening.
#[derive(Debug, Clone)]
pub struct BoundForward {
    /// Where it listens.
    pub local: BoundAddr,
    /// Where its connections go (as seen from the server).
    pub target: ForwardTarget,
}

/// A remote forward the server granted.
#[derive(Debug, Clone)]
pub struct BoundRemoteForward {
    /// The bind address asked of the server ("" = server's default).
    pub remote_host: String,
    /// The port the server listens on (the chosen one if 0 was asked).
    pub remote_port: u16,
    /// The local target its connections reach.
    pub target: ForwardTarget,
}

/// A connected client with its listeners running.
pub struct Client {
    /// The SOCKS5 listener's address, if enabled.
    pub socks5_addr: Option<SocketAddr>,
    /// Bound local forwards, in the order given.
    pub forwards: Vec<BoundForward>,
    /// Granted remote forwards, in the order given.
    pub remote_forwards: Vec<BoundRemoteForward>,
    /// The server as the transport describes it.
    pub server: String,
    end: session::SessionEnd,
    session_tx: watch::Sender<Option<session::SessionHandle>>,
    tasks: JoinSet<()>,
}

impl Client {
    /// Connect, authenticate, bind every listener and request every remote
    /// forward. Fails on the first problem, with an error naming it.
    pub async fn connect(opts: ConnectOptions) -> Result<Client> {
        let config = Arc::new(russh::client::Config {
            client_id: russh::SshId::Standard(
                format!("SSH-2.0-wraith_{}", env!("CARGO_PKG_VERSION")).into(),
            ),
            preferred: crate::algorithms::preferred(),
            window_size: WINDOW_SIZE,
            maximum_packet_size: MAX_PACKET_SIZE,
            keepalive_interval: Some(opts.keepalive_interval),
            keepalive_max: opts.keepalive_count_max,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let remote_table = RemoteForwardTable::default();
        let params = SessionParams {
            transport: opts.transport.clone(),
            host: opts.server_host.clone(),
            port: opts.server_port,
            user: opts.user.clone(),
            identity: Arc::new(opts.identity),
            host_key: opts.host_key,
            config,
            connect_timeout: opts.connect_timeout,
            remote_forwards: remote_table.clone(),
        };
        let server = params.transport.describe();

        // Bind local listeners first: a port conflict is a startup error and
        // should not cost a round trip to the server.
        let socks = match &opts.socks5 {
            Some(addr) => Some(Socks5Listener::bind(addr).await?),
            None => None,
        };
        let mut locals = Vec::new();
        for spec in &opts.forwards {
            locals.push(LocalForward::bind(spec).await?);
        }

        let (handle, end) = session::establish(&params).await?;

        let mut remote_forwards = Vec::new();
        for spec in &opts.remote_forwards {
            let asked = u32::from(spec.bind_port);
            let granted = handle
                .tcpip_forward(spec.bind_host.clone(), asked)
                .await
                .map_err(|_| Error::RemoteForwardRefused {
                    spec: format!("{}:{}", spec.bind_host, spec.bind_port),
                })?;
            let port = if asked == 0 { granted } else { asked };
            remote_table.insert(&spec.bind_host, port, spec.target.clone());
            remote_forwards.push(BoundRemoteForward {
                remote_host: spec.bind_host.clone(),
                remote_port: u16::try_from(port).unwrap_or(0),
                target: spec.target.clone(),
            });
        }

        let (session_tx, session_rx) = watch::channel(Some(handle));
        let opener = ChannelOpener::new(
            session_rx,
            Duration::from_secs(5),
            opts.connect_timeout + Duration::from_secs(5),
        );
        let mut tasks = JoinSet::new();
        let socks5_addr = socks.as_ref().map(|s| s.local_addr());
        if let Some(s) = socks {
            tasks.spawn(s.run(opener.clone()));
        }
        let mut forwards = Vec::new();
        for l in locals {
            forwards.push(BoundForward {
                local: l.bound().clone(),
                target: l.target_clone(),
            });
            tasks.spawn(l.run(opener.clone()));
        }
        Ok(Client {
            socks5_addr,
            forwards,
            remote_forwards,
            server,
            end,
            session_tx,
            tasks,
        })
    }

    /// Wait until the session ends; returns why.
    pub async fn wait(self) -> Error {
        let Client {
            end,
            session_tx,
            mut tasks,
            ..
        } = self;
        let reason = end.wait().await;
        session_tx.send_replace(None);
        tasks.abort_all();
        Error::SessionClosed(reason)
    }
}
