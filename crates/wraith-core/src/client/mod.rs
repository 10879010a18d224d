//! The wraith client: one SSH session to the server, exposed locally as a
//! SOCKS5 proxy and port forwards.
//!
//! Flow: [`ConnectOptions`] → session (dial transport, handshake, host key,
//! auth) → `opener` (the one channel opener) → listeners, each a
//! `listener::Listener` run by `listener::serve` (SOCKS5, local forwards,
//! and `--stdio`'s one connection) and the remote-forward table, which the
//! session consults through its small `InboundRoutes` trait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::transport::Transport;

mod backoff;
mod channel;
mod forward;
mod host_key;
mod http_proxy;
pub(crate) mod known_hosts;
mod listener;
mod opener;
mod session;
mod socks5;
mod status;
mod stdio;
mod udp;

pub use crate::error::split_host_port;
pub use crate::proto::forward_spec::{
    self, ForwardSpecError, ForwardTarget, LocalForwardSpec, RemoteForwardSpec,
};
pub use channel::{ChannelConnection, open_channel};
pub use forward::BoundAddr;
pub use host_key::{HostKeyPolicy, default_store};
pub use status::{ClientStatus, StatusWatch};
pub use stdio::{StdioInput, StdioOutput, stdio};

use crate::proto::forward_spec::BindAddr;
use backoff::Backoff;
use forward::{LocalForward, RemoteForwardTable};
use listener::{ProxyKind, TcpProxyListener};
use opener::ChannelOpener;
use session::SessionParams;

/// A server a client may use: how to reach it, and the host and port its
/// host key is filed under (known_hosts, messages).
#[derive(Clone)]
pub struct ServerEndpoint {
    /// How to reach the server.
    pub transport: Arc<dyn Transport>,
    /// Host name for known_hosts lookups.
    pub host: String,
    /// Port for known_hosts lookups.
    pub port: u16,
}

impl std::fmt::Debug for ServerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.transport.describe())
    }
}

/// Everything the client needs. Build it from the CLI or in code.
#[non_exhaustive]
pub struct ConnectOptions {
    /// How to reach the server.
    pub transport: Arc<dyn Transport>,
    /// Server host name as used for known_hosts lookups.
    pub server_host: String,
    /// Server port as used for known_hosts lookups.
    pub server_port: u16,
    /// More servers, tried in order after the first when it cannot be
    /// reached or refuses us (a host key that does not match included),
    /// and again on every reconnect, starting after the one that was lost.
    pub fallback_servers: Vec<ServerEndpoint>,
    /// Login name.
    pub user: String,
    /// The private key to authenticate with (`--identity`).
    pub identity: PrivateKey,
    /// An OpenSSH user certificate for `identity`, presented first when set.
    pub certificate: Option<russh::keys::Certificate>,
    /// How to trust the server's host key.
    pub host_key: HostKeyPolicy,
    /// Where to run the SOCKS5 proxy; `None` disables it.
    pub socks5: Option<String>,
    /// Where to run the HTTP proxy (`--http-proxy`); `None`, the default,
    /// runs none.
    pub http_proxy: Option<String>,
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
    /// How long a new SOCKS or forward connection waits for the session
    /// while reconnecting, before it fails.
    pub reconnect_wait: Duration,
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
            fallback_servers: Vec::new(),
            user: user.into(),
            identity,
            certificate: None,
            host_key: HostKeyPolicy::default_tofu(),
            socks5: Some("127.0.0.1:1080".into()),
            http_proxy: None,
            forwards: Vec::new(),
            remote_forwards: Vec::new(),
            connect_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(15),
            keepalive_count_max: 3,
            reconnect_wait: Duration::from_secs(5),
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

/// Where the client stands, for status lines and embedders.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientState {
    /// A session is up.
    Connected {
        /// The server in use, as its transport describes it.
        server: String,
    },
    /// The session was lost; the next attempt starts after `delay`.
    Reconnecting {
        /// 1-based attempt number within this outage.
        attempt: u32,
        /// The wait before this attempt.
        delay: Duration,
        /// Why the last session or attempt ended.
        reason: String,
    },
    /// The client gave up (a fatal error such as a refused key) or was shut down.
    Stopped(String),
}

/// A connected client with its listeners running. Dropping it stops
/// everything.
pub struct Client {
    /// The SOCKS5 listener's address, if enabled.
    pub socks5_addr: Option<SocketAddr>,
    /// The HTTP proxy listener's address, if enabled.
    pub http_proxy_addr: Option<SocketAddr>,
    /// Bound local forwards, in the order given.
    pub forwards: Vec<BoundForward>,
    /// Granted remote forwards, in the order given.
    pub remote_forwards: Vec<BoundRemoteForward>,
    /// The server in use at start, as its transport describes it (see
    /// [`Client::state`] for the one in use now).
    pub server: String,
    state: watch::Receiver<ClientState>,
    activity: Arc<status::Activity>,
    supervisor: Option<tokio::task::JoinHandle<Error>>,
    tasks: JoinSet<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(s) = &self.supervisor {
            s.abort();
        }
    }
}

/// The russh client configuration every wraith session uses.
pub(crate) fn ssh_config(opts: &ConnectOptions) -> Arc<russh::client::Config> {
    Arc::new(russh::client::Config {
        client_id: crate::ssh::client_id(),
        preferred: crate::ssh::preferred(),
        window_size: crate::ssh::WINDOW_SIZE,
        window_max: crate::ssh::WINDOW_MAX,
        window_budget: crate::ssh::WINDOW_BUDGET,
        maximum_packet_size: crate::ssh::MAX_PACKET_SIZE,
        keepalive_interval: Some(opts.keepalive_interval),
        keepalive_max: opts.keepalive_count_max,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    })
}

impl Client {
    /// Bind every listener, connect, authenticate and request every remote
    /// forward. Fails on the first problem, with an error naming it. After
    /// that, a lost session is re-established in the background (see
    /// [`Client::state`]) while the listeners stay bound.
    pub async fn connect(opts: ConnectOptions) -> Result<Client> {
        let remote_table = RemoteForwardTable::default();
        let params = SessionParams::new(&opts, Arc::new(remote_table.clone()));

        // Bind local listeners first: a port conflict is a startup error and
        // should not cost a round trip to the server.
        let socks = match &opts.socks5 {
            Some(addr) => Some(TcpProxyListener::bind(addr, ProxyKind::Socks5).await?),
            None => None,
        };
        let http = match &opts.http_proxy {
            Some(addr) => Some(TcpProxyListener::bind(addr, ProxyKind::Http).await?),
            None => None,
        };
        let mut locals = Vec::new();
        let mut udp_locals = Vec::new();
        for spec in &opts.forwards {
            match spec.bind {
                BindAddr::Udp { .. } => udp_locals.push(udp::UdpForward::bind(spec).await?),
                _ => locals.push(LocalForward::bind(spec).await?),
            }
        }

        let (handle, end, in_use) = session::establish(&params, 0).await?;
        let server = params.servers[in_use].transport.describe();
        let mut remote_forwards = Vec::new();
        for spec in &opts.remote_forwards {
            // A UDP forward asks for `udp:<address>`, which wraith's server
            // binds as a UDP socket (and other servers refuse).
            let host = match spec.target {
                ForwardTarget::Udp { .. } => format!("udp:{}", spec.bind_host),
                _ => spec.bind_host.clone(),
            };
            let port = request_remote_forward(&handle, &host, spec.bind_port)
                .await
                .ok_or_else(|| Error::RemoteForwardRefused {
                    spec: format!("{host}:{}", spec.bind_port),
                })?;
            remote_table.insert(&host, u32::from(port), spec.target.clone());
            remote_forwards.push(BoundRemoteForward {
                remote_host: host,
                remote_port: port,
                target: spec.target.clone(),
            });
        }
        tracing::info!("connected to {server}");

        let (session_tx, session_rx) = watch::channel(Some(handle));
        let (state_tx, state_rx) = watch::channel(ClientState::Connected {
            server: server.clone(),
        });
        let opener = ChannelOpener::new(
            session_rx,
            opts.reconnect_wait,
            opts.connect_timeout + Duration::from_secs(5),
        );
        let mut tasks = JoinSet::new();
        let activity = status::Activity::new();
        let socks5_addr = socks.as_ref().map(|s| s.local_addr());
        if let Some(s) = socks {
            tasks.spawn(listener::serve(s, opener.clone(), activity.clone()));
        }
        let http_proxy_addr = http.as_ref().map(|h| h.local_addr());
        if let Some(h) = http {
            tasks.spawn(listener::serve(h, opener.clone(), activity.clone()));
        }
        let mut forwards = Vec::new();
        for l in locals {
            forwards.push(BoundForward {
                local: l.bound().clone(),
                target: l.target_clone(),
            });
            tasks.spawn(listener::serve(l, opener.clone(), activity.clone()));
        }
        for l in udp_locals {
            forwards.push(BoundForward {
                local: BoundAddr::Udp(l.bound()),
                target: l.target().clone(),
            });
            tasks.spawn(listener::serve(l, opener.clone(), activity.clone()));
        }
        let supervisor = tokio::spawn(supervise(
            params,
            (end, in_use),
            session_tx,
            state_tx,
            remote_forwards.clone(),
            activity.clone(),
        ));
        Ok(Client {
            socks5_addr,
            http_proxy_addr,
            forwards,
            remote_forwards,
            server,
            state: state_rx,
            activity,
            supervisor: Some(supervisor),
            tasks,
        })
    }

    /// Follow the client's state (connected, reconnecting, stopped).
    pub fn state(&self) -> watch::Receiver<ClientState> {
        self.state.clone()
    }

    /// The state with uptimes, reconnects and open connections: what
    /// `wraith connect` prints on SIGUSR1.
    pub fn status(&self) -> ClientStatus {
        self.status_watch().get()
    }

    /// [`Client::status`] from a handle that outlives borrows of the client.
    pub fn status_watch(&self) -> StatusWatch {
        StatusWatch {
            activity: self.activity.clone(),
            state: self.state.clone(),
        }
    }

    /// Run until the client stops for good (a fatal error such as a key the
    /// server no longer accepts); returns why.
    pub async fn wait(mut self) -> Error {
        let err = match self.supervisor.take() {
            Some(task) => match task.await {
                Ok(e) => e,
                Err(e) => Error::SessionClosed(format!("supervisor failed: {e}")),
            },
            None => Error::SessionClosed("stopped".into()),
        };
        self.tasks.abort_all();
        err
    }
}

/// Ask the server to listen for us; returns the port it listens on.
async fn request_remote_forward(
    handle: &session::SessionHandle,
    host: &str,
    port: u16,
) -> Option<u16> {
    let granted = handle
        .tcpip_forward(host.to_string(), u32::from(port))
        .await
        .ok()?;
    if port == 0 {
        u16::try_from(granted).ok().filter(|p| *p != 0)
    } else {
        Some(port)
    }
}

/// Keep a session up: when it ends, reconnect with backoff, re-request the
/// remote forwards, and publish the new session to the opener. Returns only
/// on a fatal error.
async fn supervise(
    params: SessionParams,
    (mut end, mut in_use): (session::SessionEnd, usize),
    session_tx: watch::Sender<Option<session::SessionHandle>>,
    state_tx: watch::Sender<ClientState>,
    remote_forwards: Vec<BoundRemoteForward>,
    activity: Arc<status::Activity>,
) -> Error {
    loop {
        let reason = end.wait().await;
        session_tx.send_replace(None);
        activity.session_lost();
        tracing::warn!("lost: {reason}");
        // With several servers, the one just lost is tried last.
        let start = (in_use + 1) % params.servers.len();
        let attempt = || async {
            let (handle, new_end, i) = session::establish(&params, start).await?;
            for r in &remote_forwards {
                // Ask for the port we had, so it stays stable.
                if request_remote_forward(&handle, &r.remote_host, r.remote_port)
                    .await
                    .is_none()
                {
                    tracing::warn!(
                        "the server refused remote forward {}:{} after reconnecting",
                        r.remote_host,
                        r.remote_port
                    );
                }
            }
            Ok((handle, new_end, i))
        };
        match reconnect(attempt, reason, &state_tx).await {
            Ok((handle, new_end, i)) => {
                let server = params.servers[i].transport.describe();
                session_tx.send_replace(Some(handle));
                state_tx.send_replace(ClientState::Connected {
                    server: server.clone(),
                });
                tracing::info!("connected to {server}");
                activity.reconnected();
                end = new_end;
                in_use = i;
            }
            Err(e) => {
                state_tx.send_replace(ClientState::Stopped(e.to_string()));
                return e;
            }
        }
    }
}

/// Retry `attempt` with backoff until it succeeds or fails fatally,
/// publishing each wait as [`ClientState::Reconnecting`].
async fn reconnect<T, F, Fut>(
    mut attempt: F,
    mut reason: String,
    state_tx: &watch::Sender<ClientState>,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new();
    loop {
        let delay = backoff.next_delay();
        state_tx.send_replace(ClientState::Reconnecting {
            attempt: backoff.attempts(),
            delay,
            reason: reason.clone(),
        });
        tracing::info!("reconnecting in {:.0}s", delay.as_secs_f32().round());
        tokio::time::sleep(delay).await;
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                tracing::info!("reconnect failed: {e}");
                reason = e.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn reconnect_backs_off_exponentially_to_the_cap() {
        let (state_tx, state_rx) = watch::channel(ClientState::Stopped(String::new()));
        let start = Instant::now();
        let mut times = Vec::new();
        let result = reconnect(
            || {
                times.push(start.elapsed());
                let n = times.len();
                async move {
                    if n < 9 {
                        Err(Error::Transport {
                            server: "test".into(),
                            reason: "refused".into(),
                        })
                    } else {
                        Ok(n)
                    }
                }
            },
            "lost".into(),
            &state_tx,
        )
        .await;
        assert_eq!(result.unwrap(), 9);
        // Gaps between attempts: 1, 2, 4, 8, 16, 30, 30, 30, 30 s minus jitter.
        let mut prev = Duration::ZERO;
        for (i, t) in times.iter().enumerate() {
            let gap = *t - prev;
            let base = Backoff::base(u32::try_from(i).unwrap());
            assert!(
                gap <= base && gap >= base * 4 / 5,
                "attempt {i}: waited {gap:?}, base {base:?}"
            );
            prev = *t;
        }
        assert!(matches!(
            *state_rx.borrow(),
            ClientState::Reconnecting { attempt: 9, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_stop_reconnecting_at_once() {
        let (state_tx, _rx) = watch::channel(ClientState::Stopped(String::new()));
        let mut calls = 0;
        let result: Result<()> = reconnect(
            || {
                calls += 1;
                async {
                    Err(Error::AuthRejected {
                        user: "u".into(),
                        server: "s".into(),
                        fingerprint: "SHA256:x".into(),
                    })
                }
            },
            "lost".into(),
            &state_tx,
        )
        .await;
        assert!(matches!(result, Err(Error::AuthRejected { .. })));
        assert_eq!(calls, 1);
    }
}
