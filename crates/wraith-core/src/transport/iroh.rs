//! The iroh transport: SSH over a QUIC bidirectional stream between two iroh
//! endpoints, dialed by public key. Reaches servers with no public IP or open
//! port: iroh hole-punches a direct UDP path where it can and falls back to a
//! relay server otherwise.
//!
//! One [`IrohEndpoint`] (one UDP socket, one relay connection) serves every
//! session of a process: the client reuses it across reconnections, the
//! server accepts every session on it. Each SSH session is one QUIC
//! bidirectional stream; its connection closes with the session.
//!
//! The server's endpoint key is derived from its SSH host key
//! ([`derive_secret_key`]), so the endpoint id, and every ticket printed
//! with it, stay valid across restarts without a second key file.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::{Connection, QuicTransportConfig, RecvStream, SendStream, VarInt, presets};
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMode, RelayUrl, SecretKey, Watcher as _};
use iroh_tickets::endpoint::EndpointTicket;
use russh::keys::PrivateKey;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::proxy::{ProxyKind, ProxyUrl};
use super::{Acceptor, BoxFuture, BoxStream, PeerInfo, Transport, TransportKind};
use crate::error::{Error, Reason, Result};

/// The ALPN both sides speak: SSH, unchanged, over one QUIC stream.
pub const IROH_ALPN: &[u8] = b"wraith-ssh";

/// Domain separation for [`derive_secret_key`]: a host key used elsewhere
/// never yields this key, and a future scheme gets a new label.
const KEY_DERIVATION_LABEL: &[u8] = b"wraith iroh endpoint secret key v1\0";

/// How long the server waits for a relay before printing its ticket
/// without one.
const ONLINE_WAIT: Duration = Duration::from_secs(10);

/// QUIC handshakes the server runs at once; more wait (they cost CPU and
/// memory before the peer has proven anything).
const MAX_PENDING_HANDSHAKES: usize = 128;

/// SSH sessions (QUIC bidirectional streams) one connection may have open
/// at once. Each is an SSH session that has not authenticated yet when it
/// opens, so without a bound one handshake buys any number of them. The
/// QUIC transport parameter stops the peer from opening more (it has to
/// wait for credit), and the accept loop holds a slot per open session.
/// `wraith connect` uses one stream per connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 8;

/// How long one QUIC handshake may take on the server.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// QUIC flow-control windows sized for long paths. iroh's defaults (noq's:
/// a stream receive window of 1.25 MB, "12.5 MB/s at 100 ms") let one
/// stream, and so one SSH session, keep only that much in flight, which
/// caps it near window / RTT: about 25 MB/s at 50 ms, 8 MB/s at 150 ms.
/// 4 MiB per stream fills about 80 MB/s at 50 ms and 28 MB/s at 150 ms;
/// the connection window leaves room for a second stream beside a full one.
///
/// noq-proto 1.4 as released closed a connection with "too many gaps in
/// stream buffer" once a stream held about 2 048 full-size frames its
/// reader had not taken (about 3 MB, less than this window), no loss
/// needed; the workspace's patched copy merges them (see
/// `vendor/noq-proto/PATCHES.md` and `a_stalled_reader_keeps_its_iroh_stream`
/// in `tests/iroh.rs`). Its guard against real gaps (at most 1 024 separate
/// spans) still stands.
///
/// These are maxima, not buffers allocated up front (checked in
/// noq-proto 1.4: `connection/streams/recv.rs` only advertises credit,
/// MAX_STREAM_DATA = bytes read + window, and its assembler holds only the
/// bytes that arrived and are not yet read; `streams/state.rs` accepts
/// writes only while unacknowledged data stays under the send window). A
/// session whose reader keeps up holds little. One connection holds at most
/// `RECEIVE_WINDOW` unread plus `SEND_WINDOW` unacknowledged bytes however
/// many streams it opens; noq's default connection receive window is
/// unlimited (100 streams × 1.25 MB). That bound holds on the server for a
/// peer that has not logged in yet too, and only while SSH is not reading.
const STREAM_RECEIVE_WINDOW: u32 = 4 << 20;
/// See [`STREAM_RECEIVE_WINDOW`].
const RECEIVE_WINDOW: u32 = 8 << 20;
/// See [`STREAM_RECEIVE_WINDOW`].
const SEND_WINDOW: u64 = 8 << 20;

/// iroh's transport config (its multipath and hole-punching settings kept)
/// with the windows above.
fn quic_transport_config() -> QuicTransportConfig {
    QuicTransportConfig::builder()
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS_PER_CONNECTION))
        .build()
}

/// Which relay servers an endpoint uses (`--iroh-relay`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IrohRelay {
    /// n0's public relays, and n0's DNS address lookup so a bare endpoint
    /// id can be dialed.
    #[default]
    Default,
    /// No relay: direct addresses only (LAN, tests).
    Disabled,
    /// A self-hosted relay; no n0 service is contacted.
    Custom(RelayUrl),
}

impl FromStr for IrohRelay {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "default" => Ok(IrohRelay::Default),
            "disabled" | "none" => Ok(IrohRelay::Disabled),
            url => {
                let bad = |reason: String| Error::Config {
                    flag: "--iroh-relay",
                    value: s.to_string(),
                    reason,
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad(
                        "expected an http:// or https:// relay URL, \"default\" or \"disabled\""
                            .into(),
                    ));
                }
                url.parse::<RelayUrl>()
                    .map(IrohRelay::Custom)
                    .map_err(|e| bad(e.to_string()))
            }
        }
    }
}

impl fmt::Display for IrohRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrohRelay::Default => f.write_str("default"),
            IrohRelay::Disabled => f.write_str("disabled"),
            IrohRelay::Custom(url) => write!(f, "{url}"),
        }
    }
}

/// How to build an [`IrohEndpoint`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct IrohOptions {
    /// Relay servers (`--iroh-relay`).
    pub relay: IrohRelay,
    /// The local UDP address to bind (`--listen` on the server); any free
    /// port on every interface if `None`.
    pub bind: Option<SocketAddr>,
    /// Reach the relay through this proxy (client `--proxy`). iroh speaks
    /// HTTP CONNECT itself; a SOCKS5 proxy is bridged in-process. Direct
    /// UDP paths do not go through a proxy.
    pub proxy: Option<ProxyUrl>,
    /// The endpoint's secret key; a fresh one if `None` (clients).
    pub secret_key: Option<SecretKey>,
}

impl IrohOptions {
    /// Options with the given relay mode and nothing else set.
    pub fn new(relay: IrohRelay) -> Self {
        IrohOptions {
            relay,
            ..Default::default()
        }
    }
}

/// Derive the server's iroh secret key from its SSH host key (Ed25519):
/// SHA-256 over a fixed label and the key's 32-byte seed. Stable across
/// restarts, and unrelated to any other use of the host key.
pub fn derive_secret_key(host_key: &PrivateKey) -> Result<SecretKey> {
    let Some(pair) = host_key.key_data().ed25519() else {
        return Err(Error::config(
            "--key",
            host_key.algorithm(),
            "--transport iroh needs an Ed25519 host key (wraith keygen writes one)",
        ));
    };
    let mut h = Sha256::new();
    h.update(KEY_DERIVATION_LABEL);
    h.update(pair.private.to_bytes());
    let seed: [u8; 32] = h.finalize().into();
    Ok(SecretKey::from_bytes(&seed))
}

/// One iroh endpoint, shared by every session of the process.
#[derive(Debug, Clone)]
pub struct IrohEndpoint {
    endpoint: Endpoint,
    relay: IrohRelay,
    /// Keeps the SOCKS5 → HTTP CONNECT bridge running while the endpoint lives.
    _bridge: Option<Arc<super::iroh_bridge::ConnectBridge>>,
}

impl IrohEndpoint {
    /// Bind a new endpoint speaking [`IROH_ALPN`].
    pub async fn bind(opts: IrohOptions) -> Result<Self> {
        let mut builder = match &opts.relay {
            IrohRelay::Default => Endpoint::builder(presets::N0),
            IrohRelay::Disabled => {
                Endpoint::builder(presets::Minimal).relay_mode(RelayMode::Disabled)
            }
            IrohRelay::Custom(url) => {
                Endpoint::builder(presets::Minimal).relay_mode(RelayMode::custom([url.clone()]))
            }
        }
        .alpns(vec![IROH_ALPN.to_vec()])
        .transport_config(quic_transport_config());
        if let Some(key) = opts.secret_key {
            builder = builder.secret_key(key);
        }
        if let Some(addr) = opts.bind {
            builder = builder
                .clear_ip_transports()
                .bind_addr(addr)
                .map_err(|e| Error::config("--listen", addr, e))?;
        }
        let mut bridge = None;
        if let Some(proxy) = &opts.proxy {
            let url = match proxy.kind {
                ProxyKind::Http => proxy_url(proxy)?,
                ProxyKind::Socks5 => {
                    let b = super::iroh_bridge::ConnectBridge::start(proxy.clone()).await?;
                    let url = b.url();
                    bridge = Some(Arc::new(b));
                    url
                }
            };
            builder = builder.proxy_url(url);
        }
        let endpoint = builder.bind().await.map_err(|e| Error::Transport {
            server: "iroh".into(),
            reason: Reason::with_source(format!("cannot start the iroh endpoint: {e}"), e),
        })?;
        Ok(IrohEndpoint {
            endpoint,
            relay: opts.relay,
            _bridge: bridge,
        })
    }

    /// This endpoint's id (its public key).
    pub fn id(&self) -> EndpointId {
        self.endpoint.id()
    }

    /// The relay mode it was built with.
    pub fn relay(&self) -> &IrohRelay {
        &self.relay
    }

    /// The underlying iroh endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The endpoint's address as a ticket (id, relay URL, direct
    /// addresses), once it is reachable: waits up to 10 s for the home
    /// relay when relays are on, and briefly for local addresses.
    pub async fn ticket(&self) -> String {
        if self.relay != IrohRelay::Disabled {
            if tokio::time::timeout(ONLINE_WAIT, self.endpoint.online())
                .await
                .is_err()
            {
                tracing::warn!(
                    "no iroh relay reachable within {}s; the ticket holds direct addresses only",
                    ONLINE_WAIT.as_secs()
                );
            }
        } else {
            let mut watch = self.endpoint.watch_addr();
            let wait = async {
                while watch.get().ip_addrs().next().is_none() {
                    if watch.updated().await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        }
        EndpointTicket::new(self.endpoint.addr()).to_string()
    }

    /// Close the endpoint: open connections end, the relay is told.
    pub async fn close(&self) {
        self.endpoint.close().await;
    }
}

fn proxy_url(proxy: &ProxyUrl) -> Result<url::Url> {
    let mut u = format!("{proxy}");
    if let Some((user, pass)) = &proxy.auth {
        // Put the credentials back, percent-encoded by `Url`.
        let mut parsed = url::Url::parse(&u).map_err(|e| proxy_err(proxy, e))?;
        let _ = parsed.set_username(user);
        let _ = parsed.set_password(Some(pass));
        u = parsed.into();
    }
    url::Url::parse(&u).map_err(|e| proxy_err(proxy, e))
}

fn proxy_err(proxy: &ProxyUrl, e: url::ParseError) -> Error {
    Error::config("--proxy", proxy, e)
}

/// Who to dial (`--peer`): an endpoint ticket as the server prints it, a
/// bare endpoint id, or `ID@IP:PORT[,IP:PORT...]`: the endpoint at those
/// UDP addresses instead of the ones a ticket carries (a known port, or
/// something in front of it such as a UDP relay or a test delay line).
/// Once connected, iroh may still add paths to addresses the server
/// announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrohPeer {
    addr: EndpointAddr,
    from_ticket: bool,
}

impl IrohPeer {
    /// The endpoint id to dial.
    pub fn id(&self) -> EndpointId {
        self.addr.id
    }

    /// The full address (id plus whatever the ticket carried).
    pub fn addr(&self) -> &EndpointAddr {
        &self.addr
    }
}

impl FromStr for IrohPeer {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Ok(t) = s.parse::<EndpointTicket>() {
            return Ok(IrohPeer {
                addr: t.endpoint_addr().clone(),
                from_ticket: true,
            });
        }
        let bad = |reason: &str| Error::config("--peer", s, reason);
        let (id, addrs) = match s.split_once('@') {
            Some((id, addrs)) => (id, Some(addrs)),
            None => (s, None),
        };
        let Ok(id) = id.parse::<EndpointId>() else {
            return Err(bad(
                "expected the `ticket:` or `endpoint:` value the server printed \
                 (or ENDPOINT_ID@IP:PORT)",
            ));
        };
        let mut addr = EndpointAddr::new(id);
        for a in addrs.into_iter().flat_map(|a| a.split(',')) {
            let Ok(sa) = a.trim().parse::<SocketAddr>() else {
                return Err(bad(
                    "after `@` expected UDP addresses as IP:PORT ([IPv6]:PORT), comma-separated",
                ));
            };
            addr = addr.with_ip_addr(sa);
        }
        Ok(IrohPeer {
            addr,
            from_ticket: false,
        })
    }
}

/// Client side: dials one peer over a shared [`IrohEndpoint`].
#[derive(Debug, Clone)]
pub struct IrohTransport {
    endpoint: IrohEndpoint,
    peer: EndpointAddr,
}

impl IrohTransport {
    /// A transport to `peer` over `endpoint`. A bare endpoint id needs a
    /// way to find the peer: n0's address lookup (the default relay mode)
    /// or a self-hosted relay, which the peer is then assumed to use; with
    /// relays disabled it needs addresses (`ID@IP:PORT`).
    pub fn new(endpoint: IrohEndpoint, peer: IrohPeer) -> Result<Self> {
        let mut addr = peer.addr;
        if !peer.from_ticket {
            match endpoint.relay() {
                IrohRelay::Default => {}
                IrohRelay::Custom(url) => addr = addr.with_relay_url(url.clone()),
                IrohRelay::Disabled if !addr.is_empty() => {}
                IrohRelay::Disabled => {
                    return Err(Error::config(
                        "--peer",
                        addr.id,
                        "with --iroh-relay disabled a bare endpoint id cannot be found; \
                                 give the `ticket:` line the server printed, or ID@IP:PORT",
                    ));
                }
            }
        }
        Ok(IrohTransport {
            endpoint,
            peer: addr,
        })
    }
}

impl Transport for IrohTransport {
    fn connect(&self) -> BoxFuture<'_, Result<BoxStream>> {
        Box::pin(async move {
            let fail = |reason: Reason| Error::Transport {
                server: self.describe(),
                reason,
            };
            let conn = self
                .endpoint
                .endpoint
                .connect(self.peer.clone(), IROH_ALPN)
                .await
                .map_err(|e| {
                    fail(Reason::with_source(
                        describe_connect_error(&e.to_string()),
                        e,
                    ))
                })?;
            let (send, recv) = conn
                .open_bi()
                .await
                .map_err(|e| fail(Reason::with_source(format!("cannot open a stream: {e}"), e)))?;
            Ok(Box::new(IrohStream::new(
                self.endpoint.endpoint.clone(),
                conn,
                send,
                recv,
                true,
            )) as BoxStream)
        })
    }

    fn describe(&self) -> String {
        format!("iroh:{}", self.peer.id.fmt_short())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.endpoint.close())
    }
}

/// iroh's connect errors are chains of nested causes; say what the user
/// can act on.
fn describe_connect_error(e: &str) -> String {
    if e.contains("no addressing information") || e.contains("NoAddress") {
        format!("{e} (no relay or direct address known for this endpoint; use the ticket)")
    } else if e.contains("invalid peer certificate") {
        format!(
            "the endpoint that answered is not the one asked for: wrong endpoint id, or a stale \
             ticket whose address now belongs to another endpoint ({e})"
        )
    } else {
        e.to_string()
    }
}

/// One SSH session's QUIC stream. Owns its connection, so the connection
/// closes when the session drops the stream.
pub struct IrohStream {
    send: SendStream,
    recv: RecvStream,
    conn: Connection,
    /// The client's connection carries exactly this session: close it with
    /// the stream. The server leaves that to the client, because one
    /// connection may carry several sessions.
    close_on_drop: bool,
    /// The server's slot for this session on its connection.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Keeps the endpoint (its socket and relay link) alive while the
    /// session runs, even if everything else that held it is gone.
    _endpoint: Endpoint,
}

impl IrohStream {
    fn new(
        endpoint: Endpoint,
        conn: Connection,
        send: SendStream,
        recv: RecvStream,
        close_on_drop: bool,
    ) -> Self {
        IrohStream {
            send,
            recv,
            conn,
            close_on_drop,
            _slot: None,
            _endpoint: endpoint,
        }
    }
}

impl fmt::Debug for IrohStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IrohStream")
            .field("remote", &self.conn.remote_id().fmt_short().to_string())
            .finish_non_exhaustive()
    }
}

impl Drop for IrohStream {
    fn drop(&mut self) {
        if self.close_on_drop {
            // The session is over: close at once instead of idling out.
            self.conn.close(0u32.into(), b"session closed");
        }
    }
}

crate::io::forward_async_read!(impl[] IrohStream => recv);

crate::io::forward_async_write!(impl[] IrohStream => send);

/// Server side: every bidirectional stream on every accepted connection is
/// one SSH session.
pub struct IrohAcceptor {
    endpoint: IrohEndpoint,
    ticket: String,
    rx: mpsc::Receiver<(BoxStream, PeerInfo)>,
    stop: CancellationToken,
}

impl fmt::Debug for IrohAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IrohAcceptor")
            .field("id", &self.endpoint.id().to_string())
            .finish_non_exhaustive()
    }
}

impl IrohAcceptor {
    /// Accept sessions on `endpoint` (built with the server's derived key);
    /// `ticket` is what [`IrohEndpoint::ticket`] returned, for
    /// [`Acceptor::ticket`].
    pub fn new(endpoint: IrohEndpoint, ticket: String) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(endpoint.endpoint.clone(), tx, stop.clone()));
        IrohAcceptor {
            endpoint,
            ticket,
            rx,
            stop,
        }
    }

    /// The endpoint sessions arrive on.
    pub fn endpoint(&self) -> &IrohEndpoint {
        &self.endpoint
    }
}

impl Drop for IrohAcceptor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    endpoint: Endpoint,
    tx: mpsc::Sender<(BoxStream, PeerInfo)>,
    stop: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let incoming = tokio::select! {
            _ = stop.cancelled() => return,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else {
            return;
        };
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let tx = tx.clone();
        let stop = stop.clone();
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    tracing::debug!(transport = "iroh", error = %e, "iroh handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(transport = "iroh", "iroh handshake timed out");
                    return;
                }
            };
            drop(permit);
            let remote = conn.remote_id().to_string();
            let sessions = Arc::new(Semaphore::new(MAX_STREAMS_PER_CONNECTION as usize));
            loop {
                // A peer that ignores the stream limit waits here too.
                let slot = tokio::select! {
                    _ = stop.cancelled() => return,
                    s = sessions.clone().acquire_owned() => s,
                };
                let Ok(slot) = slot else {
                    return;
                };
                let streams = tokio::select! {
                    _ = stop.cancelled() => return,
                    s = conn.accept_bi() => s,
                };
                let Ok((send, recv)) = streams else {
                    return;
                };
                let peer = PeerInfo {
                    remote_addr: None,
                    transport: TransportKind::Iroh,
                    sni: None,
                    endpoint_id: Some(remote.clone()),
                };
                let mut stream = IrohStream::new(endpoint.clone(), conn.clone(), send, recv, false);
                stream._slot = Some(slot);
                let stream = Box::new(stream) as BoxStream;
                if tx.send((stream, peer)).await.is_err() {
                    return;
                }
            }
        });
    }
}

impl Acceptor for IrohAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, PeerInfo)>> {
        Box::pin(async move {
            self.rx.recv().await.ok_or_else(|| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the iroh endpoint closed")
            })
        })
    }

    fn describe(&self) -> String {
        format!("iroh endpoint {}", self.endpoint.id())
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        self.stop.cancel();
        Box::pin(self.endpoint.close())
    }

    fn endpoint_id(&self) -> Option<String> {
        Some(self.endpoint.id().to_string())
    }

    fn ticket(&self) -> Option<String> {
        Some(self.ticket.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_values_parse() {
        assert_eq!("default".parse::<IrohRelay>().unwrap(), IrohRelay::Default);
        assert_eq!(
            "disabled".parse::<IrohRelay>().unwrap(),
            IrohRelay::Disabled
        );
        let custom = "http://10.0.0.1:3340".parse::<IrohRelay>().unwrap();
        assert!(matches!(custom, IrohRelay::Custom(_)));
        let err = "relay.example"
            .parse::<IrohRelay>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--iroh-relay"), "{err}");
    }

    #[test]
    fn derived_key_is_stable_and_key_specific() {
        let a = crate::keys::generate_ed25519("a").unwrap();
        let b = crate::keys::generate_ed25519("b").unwrap();
        let ka1 = derive_secret_key(&a).unwrap();
        let ka2 = derive_secret_key(&a).unwrap();
        let kb = derive_secret_key(&b).unwrap();
        assert_eq!(ka1.public(), ka2.public());
        assert_ne!(ka1.public(), kb.public());
        // Not the host key itself: the label separates the two uses.
        let seed = a.key_data().ed25519().unwrap().private.to_bytes();
        assert_ne!(ka1.to_bytes(), seed);
    }

    #[test]
    fn peer_parses_ticket_and_id_and_rejects_junk() {
        let key = SecretKey::from_bytes(&[7; 32]);
        let addr = EndpointAddr::new(key.public()).with_ip_addr("127.0.0.1:4000".parse().unwrap());
        let ticket = EndpointTicket::new(addr.clone()).to_string();
        let p: IrohPeer = ticket.parse().unwrap();
        assert_eq!(p.addr(), &addr);
        let p: IrohPeer = key.public().to_string().parse().unwrap();
        assert_eq!(p.id(), key.public());
        assert!(p.addr().is_empty());
        let err = "nonsense".parse::<IrohPeer>().unwrap_err().to_string();
        assert!(err.contains("--peer"), "{err}");
    }

    #[test]
    fn peer_with_addresses_dials_only_those() {
        let id = SecretKey::from_bytes(&[9; 32]).public();
        let p: IrohPeer = format!("{id}@127.0.0.1:4000,[::1]:4001").parse().unwrap();
        assert_eq!(p.id(), id);
        let addrs: Vec<SocketAddr> = p.addr().ip_addrs().copied().collect();
        assert_eq!(
            addrs,
            [
                "127.0.0.1:4000".parse::<SocketAddr>().unwrap(),
                "[::1]:4001".parse().unwrap()
            ]
        );
        assert_eq!(p.addr().relay_urls().count(), 0);
        for bad in [
            format!("{id}@"),
            format!("{id}@host:1"),
            format!("{id}@1.2.3.4"),
        ] {
            let err = bad.parse::<IrohPeer>().unwrap_err().to_string();
            assert!(err.contains("IP:PORT"), "{bad}: {err}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_connection_gets_at_most_the_session_limit_at_once() {
        let local = |opts: &mut IrohOptions| opts.bind = Some("127.0.0.1:0".parse().unwrap());
        let mut so = IrohOptions::new(IrohRelay::Disabled);
        local(&mut so);
        let server = IrohEndpoint::bind(so).await.unwrap();
        let ticket = server.ticket().await;
        let addr = server.endpoint().addr();
        let addr2 = addr.clone();
        let mut acceptor = IrohAcceptor::new(server, ticket);
        let mut co = IrohOptions::new(IrohRelay::Disabled);
        local(&mut co);
        let client = IrohEndpoint::bind(co).await.unwrap();
        let conn = client.endpoint().connect(addr, IROH_ALPN).await.unwrap();
        // Twice the limit, each stream starting the way an SSH client does.
        let opened = MAX_STREAMS_PER_CONNECTION as usize * 2;
        for _ in 0..opened {
            let conn = conn.clone();
            tokio::spawn(async move {
                if let Ok((mut send, mut recv)) = conn.open_bi().await {
                    let _ = send.write_all(b"SSH-2.0-probe\r\n").await;
                    // Like an SSH client: the session ends when the
                    // server ends it.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), recv.read_to_end(1024)).await;
                    let _ = send.finish();
                }
            });
        }
        let mut sessions = Vec::new();
        while let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(3), acceptor.accept()).await
        {
            sessions.push(s);
        }
        assert_eq!(sessions.len(), MAX_STREAMS_PER_CONNECTION as usize);
        // The limit is per connection: another one gets its own.
        let other = client.endpoint().connect(addr2, IROH_ALPN).await.unwrap();
        let (mut send, _recv) = other.open_bi().await.unwrap();
        send.write_all(b"SSH-2.0-probe\r\n").await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(10), acceptor.accept()).await;
        assert!(
            matches!(next, Ok(Ok(_))),
            "a second connection got no session"
        );
        drop(sessions);
        conn.close(0u32.into(), b"done");
    }
}
