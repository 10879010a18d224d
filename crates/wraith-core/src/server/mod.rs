//! The wraith server: accepts transport connections, runs an SSH session on
//! each, authenticates keys, and connects channels to their targets.
//!
//! Flow: [`Acceptor`] → connection task (limits, login grace) →
//! [`handler`] (auth policy, reserved names) → [`outbound`] connector,
//! remote-forward listener, the hub or the udpgw service. Logs say who connected and how it went; they
//! never say where a tunnel goes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::limits::{LogRate, PerSource, SourceSlot, StartupSlot, Startups};
use crate::transport::{Acceptor, PeerInfo};

pub mod auth;
mod banner;
mod decide;
mod handler;
pub mod hub;
#[cfg(feature = "nats")]
pub mod hub_nats;
mod metrics;
mod outbound;
pub mod policy;
mod remote_forward;
mod udpgw;

pub use crate::proto::udpgw::{
    UDPGW_ALIAS, UDPGW_HOST, UDPGW_PORT, UDPGW_PORT_OPENSSH, is_udpgw_target,
};
pub use auth::{AuthorizedKeys, LineWarning};
pub use banner::SshBanner;
pub use hub::{ControlInfo, ControlStream, EventHub, HubBackend, HubLimits, HubMember};
#[cfg(feature = "nats")]
pub use hub_nats::{NatsHub, NatsHubOptions, NatsHubStats};

use crate::io::Killable;
use handler::SessionHandler;

/// Everything the server needs. Build it from the CLI or in code.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The SSH host key (`--key`).
    pub host_key: PrivateKey,
    /// The keys allowed to log in (`--authorized-keys`).
    pub authorized_keys: AuthorizedKeys,
    /// Failed authentication attempts before a connection is dropped.
    pub max_auth_attempts: usize,
    /// How long a connection may stay unauthenticated.
    pub login_grace_time: Duration,
    /// Let clients bind remote forwards on non-loopback addresses
    /// (OpenSSH's `GatewayPorts clientspecified`). Off by default.
    pub gateway_ports: bool,
    /// Timeout for dialing a channel's target.
    pub connect_timeout: Duration,
    /// Interval between SSH keepalives to an idle client.
    pub keepalive_interval: Duration,
    /// Unanswered keepalives before the client is considered dead.
    pub keepalive_count_max: usize,
    /// Concurrent connections allowed from one source network
    /// (`--max-connections-per-ip`, default 256; 0 = unlimited). Counted
    /// from accept to close, authenticated or not.
    pub max_connections_per_ip: usize,
    /// Connections not yet authenticated, server-wide (`--max-startups`,
    /// OpenSSH's `MaxStartups`; default 64:30:256): from `start` on, new
    /// connections are refused at random, `rate`% at first and all at
    /// `full`.
    pub max_startups: crate::limits::MaxStartups,
    /// Connections not yet authenticated from one source network
    /// (`--per-source-max-startups`, default 16; 0 = no per-source cap).
    pub per_source_max_startups: usize,
    /// What counts as one source network for the per-source limits
    /// (`--per-source-net-block-size`, default 32:64: each IPv4 address,
    /// each IPv6 /64).
    pub net_block: crate::limits::NetBlock,
    /// Open channels allowed in one session; 0 = unlimited.
    pub max_channels_per_session: usize,
    /// On shutdown, how long sessions with open channels may drain before
    /// they are disconnected.
    pub drain_timeout: Duration,
    /// Reach every `direct-tcpip` target through this proxy (`--proxy`).
    pub proxy: Option<crate::transport::ProxyUrl>,
    /// What the server announces after `SSH-2.0-` (`--ssh-banner`);
    /// default `wraith`, without a version number.
    pub ssh_banner: SshBanner,
    // -- access policy (Unix sockets, control hub); see proto::policy --
    /// Unix sockets that keys without any `permitopen` may reach with
    /// `direct-streamlocal` (`--allow-stream-local`). Default: empty, so
    /// only keys whose `permitopen="/path"` names a socket reach one.
    pub allow_stream_local: Vec<policy::SocketRule>,
    /// Let every key that may forward (and whose `permitopen`, if any,
    /// names `wraith-control:0`) open the control channel, not only keys
    /// and CAs with the `hub` option (`--hub-for-all-keys`). Default: false.
    pub hub_for_all_keys: bool,
    /// Share the event hub with other servers through NATS (`--hub`).
    #[cfg(feature = "nats")]
    pub hub_nats: Option<NatsHubOptions>,
    /// Control channels one session may hold open at once; 0 = unlimited
    /// (`--max-control-channels`). Default: 8.
    pub max_control_channels_per_session: usize,
    // -- UDP through the tunnel (udpgw); see server::udpgw --
    /// Serve UDP in udpgw frames on `wraith-udpgw:0` (and its aliases
    /// `wraith-udpgw:1` and `0.0.0.0:0`); off with `--no-udp`. Never
    /// served when `proxy` is set. Default: true.
    pub udpgw: bool,
    /// UDP flows (udpgw connection ids) one udpgw channel may hold at once;
    /// 0 = unlimited (`--max-udp-flows`). Default: 256.
    pub max_udp_flows_per_channel: usize,
    /// UDP flows all udpgw channels of one session may hold at once; 0 =
    /// unlimited (`--max-udp-flows-per-session`). Default: 1024.
    pub max_udp_flows_per_session: usize,
    /// A UDP flow with no datagram either way for this long is closed
    /// (`--udp-idle-timeout`). Default: 60 s.
    pub udp_idle_timeout: Duration,
}

impl ServeOptions {
    /// Options with the defaults the CLI uses.
    pub fn new(host_key: PrivateKey, authorized_keys: AuthorizedKeys) -> Self {
        ServeOptions {
            host_key,
            authorized_keys,
            max_auth_attempts: 10,
            login_grace_time: Duration::from_secs(30),
            gateway_ports: false,
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(15),
            keepalive_count_max: 3,
            max_connections_per_ip: 256,
            max_startups: crate::limits::MaxStartups::default(),
            per_source_max_startups: 16,
            net_block: crate::limits::NetBlock::default(),
            max_channels_per_session: 16_384,
            drain_timeout: Duration::from_secs(2),
            proxy: None,
            ssh_banner: SshBanner::default(),
            allow_stream_local: Vec::new(),
            hub_for_all_keys: false,
            #[cfg(feature = "nats")]
            hub_nats: None,
            max_control_channels_per_session: 8,
            udpgw: true,
            max_udp_flows_per_channel: 256,
            max_udp_flows_per_session: 1024,
            udp_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// State shared by all sessions of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: ServeOptions,
    /// Open connections per source network, for `max_connections_per_ip`.
    per_source: Arc<PerSource>,
    /// Unauthenticated connections per source network.
    per_source_startups: Arc<PerSource>,
    /// Unauthenticated connections in all.
    startups: Arc<Startups>,
    /// Refusals are logged now and then, not once each.
    refusals: LogRate,
    /// Live sessions, for graceful shutdown.
    sessions: std::sync::Mutex<HashMap<u64, LiveSession>>,
    next_id: std::sync::atomic::AtomicU64,
    /// The keys and CAs in force: `options.authorized_keys` at start, then
    /// whatever [`Server::set_authorized_keys`] put there.
    keys: std::sync::RwLock<Arc<AuthorizedKeys>>,
    /// The event hub that `wraith-control:0` channels join.
    pub(crate) hub: EventHub,
    /// What `--metrics` serves.
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// The hub's NATS link while [`Server::run`] runs (for the metrics).
    #[cfg(feature = "nats")]
    nats: std::sync::Mutex<Option<Arc<NatsHub>>>,
    /// Remote-forward ports and the key holding each (no squatting).
    pub(crate) forward_ports: remote_forward::ForwardPorts,
}

/// Forgets the NATS link in [`Shared`] when [`Server::run`] ends.
#[cfg(feature = "nats")]
struct NatsGuard(Arc<Shared>);

#[cfg(feature = "nats")]
impl Drop for NatsGuard {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.0.nats.lock() {
            slot.take();
        }
    }
}

/// What shutdown needs to know about a running session.
struct LiveSession {
    handle: russh::server::Handle,
    channels: Arc<AtomicUsize>,
    kill: CancellationToken,
    disconnect_sent: bool,
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channels = self.channels.load(Ordering::Relaxed);
        write!(f, "LiveSession {{ channels: {channels}, .. }}")
    }
}

/// Why a connection was refused before its SSH session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerSource,
    PerSourceStartups,
    Startups,
}

impl Refusal {
    /// The flag that sets the limit, for the metrics.
    fn flag(self) -> &'static str {
        match self {
            Refusal::PerSource => "--max-connections-per-ip",
            Refusal::PerSourceStartups => "--per-source-max-startups",
            Refusal::Startups => "--max-startups",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::PerSource => {
                "too many connections from this source (--max-connections-per-ip)"
            }
            Refusal::PerSourceStartups => {
                "too many unauthenticated connections from this source (--per-source-max-startups)"
            }
            Refusal::Startups => "too many unauthenticated connections (--max-startups)",
        }
    }
}

/// The slots a new connection holds: one for as long as it is open, two
/// more until it authenticates.
struct Admission {
    _connection: Option<SourceSlot>,
    unauthenticated: Option<(Option<SourceSlot>, StartupSlot)>,
}

impl Shared {
    /// The keys and CAs a new authentication is checked against.
    pub(crate) fn authorized_keys(&self) -> Arc<AuthorizedKeys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Count a new connection from a peer, or say which limit refuses it.
    /// Counting happens at accept time, before the SSH handshake, so
    /// opening many connections at once cannot slip past the limits.
    fn admit(self: &Arc<Self>, peer: &PeerInfo) -> std::result::Result<Admission, Refusal> {
        let key = peer.limit_key(&self.options.net_block);
        let connection = match &key {
            Some(k) => Some(self.per_source.try_take(k).ok_or(Refusal::PerSource)?),
            None => None,
        };
        let source_startup = match &key {
            Some(k) => Some(
                self.per_source_startups
                    .try_take(k)
                    .ok_or(Refusal::PerSourceStartups)?,
            ),
            None => None,
        };
        let startup = self
            .startups
            .try_start(&self.options.max_startups)
            .ok_or(Refusal::Startups)?;
        Ok(Admission {
            _connection: connection,
            unauthenticated: Some((source_startup, startup)),
        })
    }
}

/// Whether a session has authenticated, with a wake-up for the
/// connection task, which stops counting it as unauthenticated then.
#[derive(Debug, Default)]
pub(crate) struct AuthFlag {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

impl AuthFlag {
    /// Set the flag (the handler, on accepting a key).
    pub(crate) fn store(&self, value: bool, order: Ordering) {
        self.done.store(value, order);
        if value {
            // One waiter; a stored permit covers a wait that starts later.
            self.notify.notify_one();
        }
    }

    /// Read the flag.
    pub(crate) fn load(&self, order: Ordering) -> bool {
        self.done.load(order)
    }

    /// Wait until the flag is set.
    async fn wait(&self) {
        while !self.load(Ordering::Acquire) {
            self.notify.notified().await;
        }
    }
}

/// A configured server, ready to run on an acceptor.
pub struct Server {
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
}

impl Server {
    /// Prepare a server from its options.
    pub fn new(options: ServeOptions) -> Self {
        let config = russh::server::Config {
            server_id: russh::SshId::Standard(options.ssh_banner.identification().into()),
            methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_millis(200),
            auth_rejection_time_initial: Some(Duration::from_millis(0)),
            keys: vec![options.host_key.clone()],
            // +1: russh also counts the client's opening "none" request.
            max_auth_attempts: match options.max_auth_attempts {
                0 => 0,
                n => n.saturating_add(1),
            },
            inactivity_timeout: None,
            keepalive_interval: Some(options.keepalive_interval),
            keepalive_max: options.keepalive_count_max,
            preferred: crate::ssh::preferred(),
            window_size: crate::ssh::WINDOW_SIZE,
            window_max: crate::ssh::WINDOW_MAX,
            window_budget: crate::ssh::WINDOW_BUDGET,
            maximum_packet_size: crate::ssh::MAX_PACKET_SIZE,
            nodelay: true,
            ..Default::default()
        };
        Server {
            config: Arc::new(config),
            shared: Arc::new(Shared {
                keys: std::sync::RwLock::new(Arc::new(options.authorized_keys.clone())),
                per_source: PerSource::new(options.max_connections_per_ip),
                per_source_startups: PerSource::new(options.per_source_max_startups),
                options,
                startups: Arc::new(Startups::default()),
                refusals: LogRate::new(Duration::from_secs(1)),
                sessions: std::sync::Mutex::new(HashMap::new()),
                next_id: std::sync::atomic::AtomicU64::new(0),
                hub: EventHub::default(),
                metrics: Arc::default(),
                #[cfg(feature = "nats")]
                nats: std::sync::Mutex::new(None),
                forward_ports: remote_forward::ForwardPorts::default(),
            }),
        }
    }

    /// The event hub behind `wraith-control:0` channels: publish to it or
    /// join it to take part from the server side.
    pub fn hub(&self) -> &EventHub {
        &self.shared.hub
    }

    /// The metrics `--metrics` serves, in Prometheus's text format: counts
    /// only, never a destination, an address, a key or a byte count.
    pub fn metrics_text(&self) -> String {
        let m = &self.shared.metrics;
        m.observe_hub(
            self.shared.hub.member_count(),
            self.shared.hub.overflow_count(),
        );
        #[cfg(feature = "nats")]
        {
            let nats = self.shared.nats.lock().ok().and_then(|n| n.clone());
            let (connected, s) = match &nats {
                Some(n) => (n.is_connected(), n.stats()),
                None => (false, NatsHubStats::default()),
            };
            m.observe_nats(
                connected,
                [
                    ("sent", s.sent),
                    ("received", s.received),
                    ("dropped", s.dropped),
                    ("refused", s.refused),
                ],
            );
        }
        #[cfg(feature = "acme")]
        m.observe_acme_expiry(
            i64::try_from(crate::transport::acme_not_after()).unwrap_or(i64::MAX),
        );
        m.render()
    }

    /// Serve [`Server::metrics_text`] on `listener` (`--metrics`): `GET
    /// /metrics` answers it, anything else 404. Runs until dropped. Each
    /// request head is bounded in size and time.
    pub async fn serve_metrics(&self, listener: tokio::net::TcpListener) {
        let mut listener = listener;
        let slots = Arc::new(tokio::sync::Semaphore::new(16));
        crate::io::accept_loop(
            &mut listener,
            "metrics",
            std::future::pending(),
            |(stream, _peer)| {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    return;
                };
                let body = self.metrics_text();
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        metrics::answer(stream, body),
                    )
                    .await;
                });
            },
        )
        .await;
    }

    /// Replace the keys and CAs that logins are checked against (a reload
    /// of `--authorized-keys` and `--cert-authority`, on SIGHUP). Takes
    /// effect for the next authentication; sessions already logged in stay
    /// up with what they were granted.
    pub fn set_authorized_keys(&self, keys: AuthorizedKeys) {
        let keys = Arc::new(keys);
        match self.shared.keys.write() {
            Ok(mut k) => *k = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// Accept connections until `shutdown` completes, then shut down
    /// gracefully: stop accepting, let sessions with open channels drain
    /// for up to [`ServeOptions::drain_timeout`], send every session an SSH
    /// disconnect, and return. A failed connection never stops the loop.
    pub async fn run<A: Acceptor>(
        &self,
        mut acceptor: A,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let stop = CancellationToken::new();
        let _stop_guard = stop.clone().drop_guard();
        #[cfg(feature = "nats")]
        let _nats = match &self.shared.options.hub_nats {
            Some(o) => {
                let n = Arc::new(NatsHub::attach(&self.shared.hub, o).await?);
                if let Ok(mut slot) = self.shared.nats.lock() {
                    *slot = Some(n.clone());
                }
                Some(NatsGuard(self.shared.clone()))
            }
            None => None,
        };
        crate::io::accept_loop(&mut acceptor, "server", shutdown, |(stream, peer)| {
            let admission = match self.shared.admit(&peer) {
                Ok(a) => a,
                Err(refusal) => {
                    self.shared.metrics.refusal(refusal.flag());
                    // One line a second at most: a flood of refusals must
                    // not become a flood of lines.
                    if let Some(skipped) = self.shared.refusals.check() {
                        tracing::info!(
                            remote_addr = %peer.log_addr(),
                            transport = %peer.transport,
                            reason = %refusal.reason(),
                            skipped,
                            "connection refused"
                        );
                    }
                    return;
                }
            };
            let config = self.config.clone();
            let shared = self.shared.clone();
            let stop = stop.child_token();
            tokio::spawn(async move {
                serve_connection(config, shared, stream, peer, stop, admission).await;
            });
        })
        .await;
        self.drain().await;
        acceptor.close().await;
        Ok(())
    }

    /// Disconnect every session: idle ones at once, busy ones when their
    /// channels close or the drain time is up.
    async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + self.shared.options.drain_timeout;
        loop {
            let expired = tokio::time::Instant::now() >= deadline;
            let mut to_notify = Vec::new();
            let remaining = match self.shared.sessions.lock() {
                Ok(mut map) => {
                    for s in map.values_mut() {
                        let idle = s.channels.load(Ordering::Acquire) == 0;
                        if !s.disconnect_sent && (idle || expired) {
                            s.disconnect_sent = true;
                            to_notify.push((s.handle.clone(), s.kill.clone()));
                        }
                    }
                    map.len()
                }
                Err(_) => 0,
            };
            for (handle, kill) in to_notify {
                tokio::spawn(async move {
                    let bye = handle.disconnect(
                        russh::Disconnect::ByApplication,
                        "server shutting down".into(),
                        String::new(),
                    );
                    let _ = tokio::time::timeout(Duration::from_millis(500), bye).await;
                    // Give the message a moment to leave, then cut the stream.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    kill.cancel();
                });
            }
            if remaining == 0 || tokio::time::Instant::now() >= deadline + Duration::from_secs(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn serve_connection(
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    stream: crate::transport::BoxStream,
    peer: PeerInfo,
    stop: CancellationToken,
    mut admission: Admission,
) {
    let started = Instant::now();
    let remote_addr = peer.log_addr();
    tracing::info!(remote_addr = %remote_addr, transport = %peer.transport, "connection opened");
    let metrics = shared.metrics.clone();
    metrics.connections.inc();
    metrics.connections_total.inc();

    let authed = Arc::new(AuthFlag::default());
    let kill = stop.child_token();
    let stream = Killable::new(stream, kill.clone());
    let channels = Arc::new(AtomicUsize::new(0));
    let handler = SessionHandler::new(shared.clone(), peer, authed.clone(), channels.clone());
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let grace = tokio::time::sleep(shared.options.login_grace_time);
    tokio::pin!(grace);

    let outcome: Result<(), String> = async {
        let session = tokio::select! {
            s = russh::server::run_stream(config, stream, handler) => s.map_err(|e| e.to_string())?,
            _ = &mut grace => return Err("login grace time exceeded".into()),
        };
        if let Ok(mut map) = shared.sessions.lock() {
            map.insert(
                id,
                LiveSession {
                    handle: session.handle(),
                    channels: channels.clone(),
                    kill: kill.clone(),
                    disconnect_sent: false,
                },
            );
        }
        tokio::pin!(session);
        let mut grace_checked = false;
        loop {
            tokio::select! {
                r = &mut session => return r.map_err(|e| e.to_string()),
                _ = authed.wait(), if admission.unauthenticated.is_some() => {
                    // Authenticated: no longer counts as a startup.
                    admission.unauthenticated = None;
                }
                _ = &mut grace, if !grace_checked => {
                    grace_checked = true;
                    if !authed.load(Ordering::Acquire) {
                        kill.cancel();
                        return Err("login grace time exceeded".into());
                    }
                }
            }
        }
    }
    .await;

    if let Ok(mut map) = shared.sessions.lock() {
        map.remove(&id);
    }
    metrics.connections.dec();
    if authed.load(Ordering::Acquire) {
        metrics.sessions.dec();
    }
    let duration = started.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => {
            tracing::info!(remote_addr = %remote_addr, duration = %format_args!("{duration:.3}"), "connection closed");
        }
        Err(reason) => {
            tracing::info!(remote_addr = %remote_addr, duration = %format_args!("{duration:.3}"), reason = %reason, "connection closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportKind;

    fn server(per_source: usize, startups: usize) -> Server {
        let key = crate::keys::generate_ed25519("test").unwrap();
        let mut o = ServeOptions::new(key, AuthorizedKeys::default());
        o.max_connections_per_ip = per_source;
        o.per_source_max_startups = startups;
        Server::new(o)
    }

    fn peer(addr: &str) -> PeerInfo {
        PeerInfo::socket(addr.parse().unwrap(), TransportKind::Tcp)
    }

    #[test]
    fn one_ipv6_slash_64_is_one_source() {
        let s = server(3, 0);
        let held: Vec<_> = (1..=3)
            .map(|i| {
                s.shared
                    .admit(&peer(&format!("[2001:db8:0:1::{i}]:22")))
                    .unwrap()
            })
            .collect();
        // Another address of the same /64 is the same source...
        let r = s.shared.admit(&peer("[2001:db8:0:1:ffff::9]:22"));
        assert_eq!(r.err(), Some(Refusal::PerSource));
        // ...another /64 is not.
        assert!(s.shared.admit(&peer("[2001:db8:0:2::1]:22")).is_ok());
        drop(held);
        assert!(s.shared.admit(&peer("[2001:db8:0:1::1]:22")).is_ok());
    }

    #[test]
    fn ipv4_mapped_peers_count_as_their_ipv4_address() {
        let s = server(2, 0);
        let _a = s.shared.admit(&peer("192.0.2.7:1")).unwrap();
        let _b = s.shared.admit(&peer("[::ffff:192.0.2.7]:2")).unwrap();
        assert_eq!(
            s.shared.admit(&peer("192.0.2.7:3")).err(),
            Some(Refusal::PerSource)
        );
    }

    #[test]
    fn authenticating_gives_the_startup_slots_back() {
        let s = server(0, 2);
        let mut a = s.shared.admit(&peer("192.0.2.7:1")).unwrap();
        let _b = s.shared.admit(&peer("192.0.2.7:2")).unwrap();
        assert_eq!(
            s.shared.admit(&peer("192.0.2.7:3")).err(),
            Some(Refusal::PerSourceStartups)
        );
        // What serve_connection does when the handler accepts a key.
        a.unauthenticated = None;
        assert!(s.shared.admit(&peer("192.0.2.7:4")).is_ok());
        assert_eq!(s.shared.startups.open(), 1);
    }

    #[tokio::test]
    async fn the_auth_flag_wakes_a_waiter_set_before_or_after() {
        let f = Arc::new(AuthFlag::default());
        let g = f.clone();
        let waiter = tokio::spawn(async move { g.wait().await });
        tokio::task::yield_now().await;
        f.store(true, Ordering::Release);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        // Already set: returns at once.
        tokio::time::timeout(Duration::from_secs(5), f.wait())
            .await
            .unwrap();
    }
}
