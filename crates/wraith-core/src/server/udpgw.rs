//! The udpgw service behind `wraith-udpgw:0`: UDP datagrams in tun2proxy's
//! udpgw frames ([`crate::proto::udpgw`]) over one channel, relayed through
//! unconnected UDP sockets on the server, one flow per `conn_id`.
//!
//! Every destination passes the session's `permitopen` rule before a
//! datagram leaves, and replies come back only from addresses the flow has
//! sent to (address-dependent filtering, as a NAT does). Nothing here
//! buffers without bound: each direction of a channel has bounded queues
//! and a byte budget, and a datagram that finds no room is dropped, as UDP
//! may be.
//! A frame that does not parse costs only itself, never the channel.
//!
//! Logs never name a destination or a peer, at any level.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ServeOptions;
use crate::proto::policy::SessionPolicy;
use crate::proto::socks5::TargetAddr;
use crate::proto::udpgw::{self, Frame, MAX_FRAME};

/// Frames queued for the client, from all flows of a channel together.
const OUT_QUEUE: usize = 256;
/// Datagrams queued for one flow's sockets.
const FLOW_QUEUE: usize = 64;
/// Bytes of datagrams one channel may hold queued in each direction, all
/// its flows together: the queues' lengths alone would let 64 KiB
/// datagrams add up to gigabytes.
const QUEUED_BYTES: usize = 2 * 1024 * 1024;
/// Bytes asked of the channel per read.
const READ_CHUNK: usize = 16 * 1024;
/// Frames are written to the channel in batches of about this many bytes.
const WRITE_BATCH: usize = 64 * 1024;
/// Larger than any datagram a frame can carry, so a larger one arrives
/// whole (and is dropped) instead of cut short.
const RECV_BUFFER: usize = 65_536;
/// Peers a flow accepts datagrams from: the last this many it sent to.
pub(crate) const MAX_PEERS: usize = 64;
/// Names a flow keeps resolved.
const MAX_NAMES: usize = 64;
/// How long a keepalive answer or an error frame may wait for room in the
/// queue to the client.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// How long one datagram may wait for room in its socket's send buffer.
/// Not `try_send_to`: a socket just bound has no write readiness yet and
/// would drop the flow's first datagram.
const SEND_WAIT: Duration = Duration::from_secs(1);
/// After the client's EOF, how long queued frames may take to leave.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// The server settings the service works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UdpgwLimits {
    /// Flows one channel may hold; 0 = unlimited.
    pub per_channel: usize,
    /// Flows all channels of a session may hold; 0 = unlimited.
    pub per_session: usize,
    /// A flow without a datagram either way for this long closes.
    pub idle: Duration,
    /// Bound on resolving a name.
    pub resolve_timeout: Duration,
}

impl UdpgwLimits {
    pub(crate) fn from_options(o: &ServeOptions) -> Self {
        UdpgwLimits {
            per_channel: o.max_udp_flows_per_channel,
            per_session: o.max_udp_flows_per_session,
            idle: o.udp_idle_timeout,
            resolve_timeout: o.connect_timeout,
        }
    }
}

/// What one udpgw channel needs from its session.
#[derive(Debug)]
pub(crate) struct UdpgwChannel {
    /// Where datagrams may go.
    pub policy: SessionPolicy,
    pub limits: UdpgwLimits,
    /// Flows open in the whole session, for `limits.per_session`.
    pub session_flows: Arc<AtomicUsize>,
    /// The client, for log lines.
    pub remote_addr: String,
}

/// One flow counted against the session's cap until it is dropped.
#[derive(Debug)]
pub(crate) struct FlowSlot(Arc<AtomicUsize>);

impl FlowSlot {
    /// Count one more flow in `count`, or `None` when `max` (0 = no cap)
    /// are open already.
    pub(crate) fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let n = count.fetch_add(1, Ordering::AcqRel);
        let slot = FlowSlot(count.clone());
        (max == 0 || n < max).then_some(slot)
    }
}

impl Drop for FlowSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes queued in one direction of a channel, capped.
#[derive(Debug, Clone)]
pub(crate) struct ByteBudget {
    used: Arc<AtomicUsize>,
    max: usize,
}

/// Bytes taken from a [`ByteBudget`], given back when dropped (when the
/// datagram has been sent or written, or was dropped on the way).
#[derive(Debug)]
pub(crate) struct Reserved {
    used: Arc<AtomicUsize>,
    n: usize,
}

impl ByteBudget {
    pub(crate) fn new(max: usize) -> Self {
        ByteBudget {
            used: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Take `n` bytes, or `None` when that would go over the cap.
    pub(crate) fn try_take(&self, n: usize) -> Option<Reserved> {
        let before = self.used.fetch_add(n, Ordering::AcqRel);
        let taken = Reserved {
            used: self.used.clone(),
            n,
        };
        (before.saturating_add(n) <= self.max).then_some(taken)
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// A frame for the client, with the bytes it holds of the budget.
type Outbound = (Frame, Option<Reserved>);

/// The addresses a flow has sent to, newest last; only these may answer.
#[derive(Debug, Default)]
pub(crate) struct PeerSet(VecDeque<SocketAddr>);

impl PeerSet {
    /// Note a destination; the one least recently sent to goes when there
    /// are more than [`MAX_PEERS`].
    pub(crate) fn insert(&mut self, addr: SocketAddr) {
        if let Some(at) = self.0.iter().position(|a| *a == addr) {
            self.0.remove(at);
        }
        if self.0.len() >= MAX_PEERS {
            self.0.pop_front();
        }
        self.0.push_back(addr);
    }

    /// May a datagram from `addr` pass?
    pub(crate) fn contains(&self, addr: SocketAddr) -> bool {
        self.0.contains(&addr)
    }
}

/// The address to send to among those a name resolves to: the first IPv4
/// one if there is one (a dual-stack name's UDP service is more often
/// reachable over IPv4, and nothing tells a UDP sender that an address is
/// dead, unlike a TCP connect that can try the next), else the first.
pub(crate) fn pick_address(found: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let mut first = None;
    for a in found {
        if a.is_ipv4() {
            return Some(a);
        }
        first.get_or_insert(a);
    }
    first
}

/// `::ffff:a.b.c.d` is `a.b.c.d`: policy and sockets see one form.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Serve one udpgw channel until the client closes it (EOF) or it cannot
/// be written to any more; then every flow it holds closes.
pub(crate) async fn serve<S>(stream: S, channel: UdpgwChannel)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let writer = write_frames(wr, out_rx);
    tokio::pin!(writer);
    let mut reader = Reader {
        channel: Arc::new(channel),
        out,
        out_budget: ByteBudget::new(QUEUED_BYTES),
        in_budget: ByteBudget::new(QUEUED_BYTES),
        flows: HashMap::new(),
        limit_logged: false,
    };
    tokio::select! {
        () = reader.run(&mut rd) => {}
        () = &mut writer => return,
    }
    // Closing the flows' inboxes ends them; the writer ends when the last
    // flow has let go of the queue and it is empty.
    drop(reader);
    let _ = tokio::time::timeout(FLUSH_WAIT, writer).await;
}

/// Encode queued frames and write them to the client.
async fn write_frames<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Outbound>) {
    let mut buf = Vec::with_capacity(WRITE_BATCH + MAX_FRAME);
    while let Some((frame, _bytes)) = rx.recv().await {
        buf.clear();
        // Sizes are checked before frames are queued; one that still does
        // not fit is dropped like any datagram.
        let _ = udpgw::encode(&frame, &mut buf);
        while buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok((f, _bytes)) => {
                    let _ = udpgw::encode(&f, &mut buf);
                }
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
}

/// What the reader hands a flow.
#[derive(Debug)]
enum ToFlow {
    /// A datagram to send, with the bytes it holds of the budget.
    Datagram(TargetAddr, Vec<u8>, Reserved),
    /// The client keeps the flow alive.
    Keepalive,
}

/// The channel's reading side: frames in, flows created and fed.
struct Reader {
    channel: Arc<UdpgwChannel>,
    out: mpsc::Sender<Outbound>,
    /// Datagrams queued for the client.
    out_budget: ByteBudget,
    /// Datagrams queued for the flows' sockets.
    in_budget: ByteBudget,
    /// Each flow's inbox; a closed one belongs to a flow that has expired.
    flows: HashMap<u16, mpsc::Sender<ToFlow>>,
    /// "udp flow limit reached" is logged once per channel.
    limit_logged: bool,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(&mut self, rd: &mut R) {
        // Never more than one frame short of whole plus one chunk: decode
        // takes every whole frame before the next read.
        let mut buf: Vec<u8> = Vec::with_capacity(MAX_FRAME + READ_CHUNK);
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while let Some((frame, used)) = udpgw::decode(&buf[at..]) {
                at += used;
                match frame {
                    Ok(frame) => self.on_frame(frame).await,
                    // The messages hold no addresses.
                    Err(e) => tracing::debug!(
                        remote_addr = %self.channel.remote_addr,
                        channel = %"udpgw",
                        reason = %e,
                        "udpgw frame skipped"
                    ),
                }
            }
            buf.drain(..at);
        }
    }

    async fn on_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Keepalive { conn_id } => {
                if let Some(tx) = self.flows.get(&conn_id) {
                    let _ = tx.try_send(ToFlow::Keepalive);
                }
                answer(&self.out, Frame::Keepalive { conn_id }).await;
            }
            Frame::Error { conn_id } => {
                // Dropping the inbox ends the flow once it has sent what
                // was queued before.
                self.flows.remove(&conn_id);
            }
            Frame::Data {
                conn_id,
                peer,
                payload,
            } => {
                let live = self.flows.get(&conn_id).filter(|tx| !tx.is_closed());
                let tx = match live {
                    Some(tx) => tx.clone(),
                    None => match self.open_flow(conn_id) {
                        Some(tx) => tx,
                        None => {
                            answer(&self.out, Frame::Error { conn_id }).await;
                            return;
                        }
                    },
                };
                // Over the budget or the queue full: the flow is behind,
                // and UDP may drop.
                if let Some(bytes) = self.in_budget.try_take(payload.len()) {
                    let _ = tx.try_send(ToFlow::Datagram(peer, payload, bytes));
                }
            }
        }
    }

    /// Start a flow for `conn_id`, within the channel's and the session's
    /// caps; `None` (logged once per channel) when over one.
    fn open_flow(&mut self, conn_id: u16) -> Option<mpsc::Sender<ToFlow>> {
        let limits = self.channel.limits;
        self.flows.remove(&conn_id);
        if limits.per_channel != 0 && self.flows.len() >= limits.per_channel {
            self.flows.retain(|_, tx| !tx.is_closed());
        }
        let slot = if limits.per_channel != 0 && self.flows.len() >= limits.per_channel {
            Err("udp flow limit reached (--max-udp-flows)")
        } else {
            FlowSlot::take(&self.channel.session_flows, limits.per_session)
                .ok_or("udp flow limit reached (--max-udp-flows-per-session)")
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(reason) => {
                if !self.limit_logged {
                    self.limit_logged = true;
                    tracing::info!(
                        remote_addr = %self.channel.remote_addr,
                        channel = %"udpgw",
                        reason = %reason,
                        "udp flow refused"
                    );
                }
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(FLOW_QUEUE);
        let flow = Flow {
            conn_id,
            channel: self.channel.clone(),
            out: self.out.clone(),
            out_budget: self.out_budget.clone(),
            v4: None,
            v6: None,
            buf: Vec::new(),
            peers: PeerSet::default(),
            names: HashMap::new(),
            refusal_logged: false,
            send_failure_logged: false,
        };
        tokio::spawn(flow.run(rx, slot));
        self.flows.insert(conn_id, tx.clone());
        Some(tx)
    }
}

/// Queue a frame the client waits for, waiting a little for room.
async fn answer(out: &mpsc::Sender<Outbound>, frame: Frame) {
    let _ = tokio::time::timeout(ANSWER_WAIT, out.send((frame, None))).await;
}

/// One flow: its sockets (one per address family, bound when first
/// needed), the peers it may hear from and the names it has resolved.
struct Flow {
    conn_id: u16,
    channel: Arc<UdpgwChannel>,
    out: mpsc::Sender<Outbound>,
    out_budget: ByteBudget,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    /// Allocated with the first socket.
    buf: Vec<u8>,
    peers: PeerSet,
    names: HashMap<String, IpAddr>,
    /// "udp destination not permitted" is logged once per flow.
    refusal_logged: bool,
    /// So is a datagram the socket would not send (too large, no route).
    send_failure_logged: bool,
}

/// Ready to read, or never when there is no socket.
async fn readable(socket: Option<&UdpSocket>) -> std::io::Result<()> {
    match socket {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

impl Flow {
    async fn run(mut self, mut inbox: mpsc::Receiver<ToFlow>, slot: FlowSlot) {
        let idle = self.channel.limits.idle;
        let mut deadline = Instant::now() + idle;
        let reason = loop {
            tokio::select! {
                msg = inbox.recv() => match msg {
                    None => break "closed",
                    Some(ToFlow::Keepalive) => deadline = Instant::now() + idle,
                    Some(ToFlow::Datagram(peer, payload, _bytes)) => {
                        deadline = Instant::now() + idle;
                        self.send(peer, &payload).await;
                    }
                },
                Ok(()) = readable(self.v4.as_ref()) => {
                    if self.receive(false) {
                        deadline = Instant::now() + idle;
                    }
                }
                Ok(()) = readable(self.v6.as_ref()) => {
                    if self.receive(true) {
                        deadline = Instant::now() + idle;
                    }
                }
                () = tokio::time::sleep_until(deadline) => break "idle",
            }
        };
        // Closed before the line says so: the sockets, the inbox (which
        // the channel's count goes by) and the session's count.
        self.v4 = None;
        self.v6 = None;
        drop(inbox);
        drop(slot);
        tracing::debug!(
            remote_addr = %self.channel.remote_addr,
            channel = %"udpgw",
            conn_id = self.conn_id,
            reason = %reason,
            "udp flow closed"
        );
    }

    /// Send one datagram, if the policy lets it go where it asks to.
    async fn send(&mut self, peer: TargetAddr, payload: &[u8]) {
        let (host, port) = match &peer {
            TargetAddr::Ip(a) => (canonical(*a).ip().to_string(), a.port()),
            TargetAddr::Domain(name, port) => (name.clone(), *port),
        };
        if !self.channel.policy.may_open(&host, port) {
            if !self.refusal_logged {
                self.refusal_logged = true;
                tracing::info!(
                    remote_addr = %self.channel.remote_addr,
                    channel = %"udpgw",
                    reason = %"udp destination not permitted for this key",
                    "udp datagram refused"
                );
            }
            self.error();
            return;
        }
        let addr = match peer {
            TargetAddr::Ip(a) => Some(canonical(a)),
            TargetAddr::Domain(name, port) => self.resolve(name, port).await,
        };
        let Some(addr) = addr else {
            self.error();
            return;
        };
        let Some(socket) = self.socket_for(addr).await else {
            self.error();
            return;
        };
        match tokio::time::timeout(SEND_WAIT, socket.send_to(payload, addr)).await {
            Ok(Ok(_)) => self.peers.insert(addr),
            Ok(Err(e)) => {
                if !self.send_failure_logged {
                    self.send_failure_logged = true;
                    // The io error's text names no address.
                    tracing::info!(
                        remote_addr = %self.channel.remote_addr,
                        channel = %"udpgw",
                        conn_id = self.conn_id,
                        error = %e,
                        "udp datagram not sent"
                    );
                }
                self.error();
            }
            // The socket's buffer stayed full: dropped, as UDP may be.
            Err(_) => {}
        }
    }

    /// Resolve `name` on the server (once per flow), bounded by the
    /// server's connect timeout.
    async fn resolve(&mut self, name: String, port: u16) -> Option<SocketAddr> {
        if let Some(ip) = self.names.get(&name) {
            return Some(SocketAddr::new(*ip, port));
        }
        let lookup = tokio::net::lookup_host((name.as_str(), port));
        let found = tokio::time::timeout(self.channel.limits.resolve_timeout, lookup)
            .await
            .ok()?
            .ok()?;
        let addr = canonical(pick_address(found)?);
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        self.names.insert(name, addr.ip());
        Some(addr)
    }

    /// The socket for `addr`'s family, bound on first use.
    async fn socket_for(&mut self, addr: SocketAddr) -> Option<&UdpSocket> {
        let (slot, any) = if addr.is_ipv4() {
            (&mut self.v4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        } else {
            (&mut self.v6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        };
        if slot.is_none() {
            *slot = Some(UdpSocket::bind(SocketAddr::new(any, 0)).await.ok()?);
            if self.buf.is_empty() {
                self.buf = vec![0; RECV_BUFFER];
            }
        }
        slot.as_ref()
    }

    /// Take one datagram off a socket and pass it on if its sender is a
    /// peer of this flow. True when it was (the flow is in use).
    fn receive(&mut self, v6: bool) -> bool {
        let socket = if v6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        };
        let Some(socket) = socket else {
            return false;
        };
        let Ok((n, from)) = socket.try_recv_from(&mut self.buf) else {
            return false;
        };
        let from = canonical(from);
        if !self.peers.contains(from) {
            return false;
        }
        let peer = TargetAddr::Ip(from);
        if n > udpgw::max_payload(&peer) {
            return true;
        }
        // Over the budget or the queue full: the client is behind, and UDP
        // may drop.
        if let Some(bytes) = self.out_budget.try_take(n) {
            let frame = Frame::Data {
                conn_id: self.conn_id,
                peer,
                payload: self.buf[..n].to_vec(),
            };
            let _ = self.out.try_send((frame, Some(bytes)));
        }
        true
    }

    /// Tell the client this flow's datagram failed.
    fn error(&self) {
        let _ = self.out.try_send((
            Frame::Error {
                conn_id: self.conn_id,
            },
            None,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::authorized_keys::KeyOptions;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peers_are_the_last_64_sent_to() {
        let mut p = PeerSet::default();
        assert!(!p.contains(addr("10.0.0.1:53")));
        for i in 0..MAX_PEERS as u16 {
            p.insert(addr(&format!("10.0.0.1:{}", 1000 + i)));
        }
        // Sending again makes the oldest the newest...
        p.insert(addr("10.0.0.1:1000"));
        p.insert(addr("10.0.0.2:1"));
        assert!(p.contains(addr("10.0.0.1:1000")));
        // ...so the second oldest went.
        assert!(!p.contains(addr("10.0.0.1:1001")));
        assert!(p.contains(addr("10.0.0.1:1002")));
        assert!(p.contains(addr("10.0.0.2:1")));
        assert_eq!(p.0.len(), MAX_PEERS);
        // Same address, other port: another peer.
        assert!(!p.contains(addr("10.0.0.2:2")));
    }

    #[test]
    fn the_byte_budget_caps_what_is_queued_and_gets_it_back() {
        let b = ByteBudget::new(100);
        let a = b.try_take(60).unwrap();
        assert!(b.try_take(41).is_none());
        let c = b.try_take(40).unwrap();
        assert!(b.try_take(1).is_none());
        drop(a);
        assert!(b.try_take(60).is_some());
        drop(c);
        assert_eq!(b.used.load(Ordering::Acquire), 0);
        assert!(b.try_take(101).is_none());
    }

    #[test]
    fn flow_slots_cap_and_give_back() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = FlowSlot::take(&count, 2).unwrap();
        let _b = FlowSlot::take(&count, 2).unwrap();
        assert!(FlowSlot::take(&count, 2).is_none());
        assert_eq!(count.load(Ordering::Acquire), 2);
        drop(a);
        assert!(FlowSlot::take(&count, 2).is_some());
        let many: Vec<_> = (0..10).map(|_| FlowSlot::take(&count, 0)).collect();
        assert!(many.iter().all(Option::is_some));
        drop(many);
        assert_eq!(count.load(Ordering::Acquire), 1);
    }

    #[test]
    fn names_prefer_ipv4_and_addresses_are_canonical() {
        assert_eq!(
            pick_address([addr("[::1]:53"), addr("127.0.0.1:53")]),
            Some(addr("127.0.0.1:53"))
        );
        assert_eq!(pick_address([addr("[::1]:53")]), Some(addr("[::1]:53")));
        assert_eq!(pick_address([]), None);
        assert_eq!(canonical(addr("[::ffff:10.1.2.3]:9")), addr("10.1.2.3:9"));
    }

    /// A UDP echo server on 127.0.0.1, for as long as the test runs.
    async fn echo() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn eof_ends_the_channel_and_gives_every_flow_back() {
        let echo = echo().await;
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let flows = Arc::new(AtomicUsize::new(0));
        let channel = UdpgwChannel {
            policy: KeyOptions::parse(&[]).unwrap().policy(),
            limits: UdpgwLimits {
                per_channel: 0,
                per_session: 0,
                idle: Duration::from_secs(60),
                resolve_timeout: Duration::from_secs(5),
            },
            session_flows: flows.clone(),
            remote_addr: "test".into(),
        };
        let served = tokio::spawn(serve(server, channel));
        let mut wire = Vec::new();
        for conn_id in 1..=3u16 {
            let frame = Frame::Data {
                conn_id,
                peer: TargetAddr::Ip(echo),
                payload: vec![conn_id as u8; 10],
            };
            udpgw::encode(&frame, &mut wire).unwrap();
        }
        // Garbage between frames costs only itself.
        wire.extend_from_slice(&[0, 3, 0x40, 0, 1]);
        udpgw::encode(&Frame::Keepalive { conn_id: 9 }, &mut wire).unwrap();
        client.write_all(&wire).await.unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            while got.len() < 4 {
                let mut chunk = [0u8; 4096];
                let n = client.read(&mut chunk).await.unwrap();
                assert_ne!(n, 0, "the channel closed early");
                buf.extend_from_slice(&chunk[..n]);
                while let Some((frame, used)) = udpgw::decode(&buf) {
                    got.push(frame.unwrap());
                    buf.drain(..used);
                }
            }
        })
        .await
        .expect("four frames back");
        got.sort_by_key(Frame::conn_id);
        assert_eq!(got[3], Frame::Keepalive { conn_id: 9 });
        for (i, frame) in got[..3].iter().enumerate() {
            let id = i as u16 + 1;
            assert_eq!(
                frame,
                &Frame::Data {
                    conn_id: id,
                    peer: TargetAddr::Ip(echo),
                    payload: vec![id as u8; 10]
                }
            );
        }
        assert_eq!(flows.load(Ordering::Acquire), 3);
        client.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the channel ends on EOF")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while flows.load(Ordering::Acquire) != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every flow gave its slot back");
    }
}
