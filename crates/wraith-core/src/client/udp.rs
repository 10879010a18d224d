//! UDP through the tunnel, client side. Datagrams ride a udpgw channel to
//! the server's reserved destination (`wraith-udpgw:0`; the framing is in
//! `proto::udpgw`): each DATA frame names where its datagram goes, and the
//! answers come back on the same flow (`conn_id`). The SOCKS5 listener's
//! UDP ASSOCIATE ([`associate`]) and `--forward udp:…` ([`UdpForward`])
//! both work this way; so does tun2proxy's `--udpgw-server`, which opens
//! the channel itself.
//!
//! A datagram that cannot be carried now (the channel is full or gone, a
//! source is not the one allowed) is dropped, as UDP may be; nothing here
//! queues without bound.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use russh::ChannelStream;
use russh::client::Msg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::listener::{Listener, Service};
use super::opener::{ChannelOpener, OpenError};
use crate::error::{Error, Result};
use crate::limits::LogRate;
use crate::proto::forward_spec::{BindAddr, ForwardTarget, LocalForwardSpec};
use crate::proto::host_port::HostPort;
use crate::proto::socks5::{self, TargetAddr};
use crate::proto::udpgw::{self, Frame};

/// The largest datagram read from a local socket (UDP's own limit).
const RECV_BUF: usize = 65_536;
/// The flow a SOCKS5 association uses: it has one client, so one flow.
const ASSOCIATION_FLOW: u16 = 1;
/// Local sources a UDP forward keeps a flow for at once; the one idle
/// longest makes room for a new one.
const MAX_FORWARD_FLOWS: usize = 256;
/// A forward's source idle this long gives up its flow.
const FLOW_IDLE: Duration = Duration::from_secs(120);

/// `host` and `port` as a udpgw address: an IP literal as such, anything
/// else as a name the server resolves.
pub(crate) fn target_addr(host: &str, port: u16) -> TargetAddr {
    match host.parse::<IpAddr>() {
        Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
        Err(_) => TargetAddr::Domain(host.to_owned(), port),
    }
}

/// Decodes frames from a udpgw channel and hands each to `on_frame` until
/// the channel ends. A frame that does not make sense costs only itself.
async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    mut on_frame: impl FnMut(Frame),
) -> io::Result<()> {
    // A partial frame is at most MAX_FRAME - 1 bytes, so the buffer stays
    // under MAX_FRAME plus one read.
    let mut buf = Vec::with_capacity(2 * 65_536);
    let mut chunk = vec![0u8; 65_536];
    loop {
        let mut at = 0;
        while let Some((frame, used)) = udpgw::decode(&buf[at..]) {
            at += used;
            match frame {
                Ok(f) => on_frame(f),
                Err(e) => tracing::debug!(error = %e, "udp: frame from the server skipped"),
            }
        }
        buf.drain(..at);
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes one frame; a frame that cannot be encoded is dropped.
async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    frame: &Frame,
) -> io::Result<()> {
    out.clear();
    match udpgw::encode(frame, out) {
        Ok(()) => w.write_all(out).await,
        Err(e) => {
            tracing::debug!(error = %e, "udp: datagram dropped");
            Ok(())
        }
    }
}

/// Opens a udpgw channel.
async fn open_channel(
    opener: &ChannelOpener,
    originator: SocketAddr,
) -> std::result::Result<ChannelStream<Msg>, OpenError> {
    opener.open_tcp(udpgw::HOST, udpgw::PORT, originator).await
}

/// The UDP side of a SOCKS5 UDP ASSOCIATE (RFC 1928 §7), once the request
/// is parsed: binds the relay socket beside the control connection, opens
/// the udpgw channel, answers the request, and relays until the control
/// connection closes or the channel ends.
///
/// Datagrams are taken only from the control connection's IP address (and
/// the port the request named, if it named one); the first such source is
/// the association's client, and any other is dropped. Fragments are
/// dropped.
pub(crate) async fn associate(
    mut control: TcpStream,
    peer: SocketAddr,
    requested: &TargetAddr,
    opener: &ChannelOpener,
) -> io::Result<()> {
    let reply = |r, bound| socks5::encode_reply(r, bound);
    let relay = match UdpSocket::bind((control.local_addr()?.ip(), 0)).await {
        Ok(s) => s,
        Err(e) => {
            control
                .write_all(&reply(socks5::Reply::GeneralFailure, None))
                .await?;
            return Err(e);
        }
    };
    let channel = match open_channel(opener, peer).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "socks5 udp associate failed");
            let code = super::socks5::reply_for(&e);
            control.write_all(&reply(code, None)).await?;
            return Ok(());
        }
    };
    control
        .write_all(&reply(socks5::Reply::Succeeded, Some(relay.local_addr()?)))
        .await?;

    let want_port = match requested {
        TargetAddr::Ip(a) => a.port(),
        TargetAddr::Domain(_, p) => *p,
    };
    let client = OnceLock::<SocketAddr>::new();
    let (rd, mut wr) = tokio::io::split(channel);
    let up = async {
        let mut buf = vec![0u8; RECV_BUF];
        let mut out = Vec::new();
        loop {
            let (n, src) = relay.recv_from(&mut buf).await?;
            let allowed = src.ip() == peer.ip() && (want_port == 0 || src.port() == want_port);
            if !allowed || *client.get_or_init(|| src) != src {
                continue;
            }
            let Ok(d) = socks5::parse_udp(&buf[..n]) else {
                continue;
            };
            if d.frag != 0 {
                continue;
            }
            let frame = Frame::Data {
                conn_id: ASSOCIATION_FLOW,
                peer: d.target,
                payload: d.payload.to_vec(),
            };
            write_frame(&mut wr, &mut out, &frame).await?;
        }
    };
    let down = read_frames(rd, |frame| match frame {
        Frame::Data { peer, payload, .. } => {
            if let (Some(to), Ok(d)) = (client.get(), socks5::encode_udp(&peer, &payload)) {
                // Full socket buffers drop the datagram, as UDP does.
                let _ = relay.try_send_to(&d, *to);
            }
        }
        Frame::Error { .. } => tracing::debug!("socks5 udp: the server could not send a datagram"),
        Frame::Keepalive { .. } => {}
    });
    let closed = async {
        // The association lives as long as its control connection; what the
        // client sends on it means nothing and is thrown away.
        let mut sink = [0u8; 512];
        while control.read(&mut sink).await? != 0 {}
        io::Result::Ok(())
    };
    tokio::select! {
        r = up => r,
        r = down => r,
        r = closed => r,
    }
}

/// A bound `--forward udp:…`, not yet serving: one local UDP socket whose
/// every source is a flow to the forward's target.
pub(crate) struct UdpForward {
    socket: Option<UdpSocket>,
    target: ForwardTarget,
    bound: SocketAddr,
}

impl UdpForward {
    pub(crate) async fn bind(spec: &LocalForwardSpec) -> Result<Self> {
        let BindAddr::Udp { host, port } = &spec.bind else {
            return Err(Error::Usage(format!("{} is not a UDP forward", spec.bind)));
        };
        let socket = UdpSocket::bind((host.as_str(), *port))
            .await
            .map_err(|source| Error::Bind {
                addr: format!("udp:{}", HostPort(host, *port)),
                flag: "--forward",
                source,
            })?;
        let bound = socket
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        Ok(UdpForward {
            socket: Some(socket),
            target: spec.target.clone(),
            bound,
        })
    }

    pub(crate) fn bound(&self) -> SocketAddr {
        self.bound
    }

    pub(crate) fn target(&self) -> &ForwardTarget {
        &self.target
    }
}

impl crate::io::Accept for UdpForward {
    type Conn = UdpSocket;
    /// The socket, once; then nothing more, ever.
    fn accept(&mut self) -> crate::io::accept::AcceptFuture<'_, UdpSocket> {
        let socket = self.socket.take();
        Box::pin(async move {
            match socket {
                Some(s) => Ok(s),
                None => std::future::pending().await,
            }
        })
    }
}

impl Listener for UdpForward {
    const KIND: &'static str = "udp forward";
    type Service = UdpForwardService;
    fn service(&self) -> UdpForwardService {
        let to = match &self.target {
            ForwardTarget::Udp { host, port } | ForwardTarget::Tcp { host, port } => {
                target_addr(host, *port)
            }
            // Not a UDP target; the spec parser makes none.
            ForwardTarget::Unix(_) => TargetAddr::Domain(String::new(), 0),
        };
        UdpForwardService { to }
    }
}

/// Carries a UDP forward's datagrams: a udpgw channel while there is
/// traffic, opened again after the tunnel comes back.
#[derive(Clone)]
pub(crate) struct UdpForwardService {
    to: TargetAddr,
}

impl Service<UdpSocket> for UdpForwardService {
    async fn serve(self, socket: UdpSocket, opener: ChannelOpener) {
        let rate = LogRate::new(Duration::from_secs(30));
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            // A forward nobody uses holds no channel: wait for traffic.
            let (n, src) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from an earlier send surface here.
                    tracing::debug!(error = %e, "udp forward: receive failed");
                    continue;
                }
            };
            let channel = match open_channel(&opener, src).await {
                Ok(c) => c,
                Err(e) => {
                    if let Some(skipped) = rate.check() {
                        tracing::warn!(target = %self.to, error = %e, skipped, "udp forward: cannot open channel; datagrams dropped");
                    }
                    continue;
                }
            };
            let first = buf[..n].to_vec();
            match self.relay(&socket, channel, (first, src)).await {
                Ok(()) => tracing::debug!("udp forward: channel closed"),
                Err(e) => tracing::debug!(error = %e, "udp forward: channel ended"),
            }
        }
    }
}

impl UdpForwardService {
    /// Relays until the channel ends, starting with `first`.
    async fn relay(
        &self,
        socket: &UdpSocket,
        channel: ChannelStream<Msg>,
        first: (Vec<u8>, SocketAddr),
    ) -> io::Result<()> {
        let flows = Mutex::new(Flows::default());
        let (rd, mut wr) = tokio::io::split(channel);
        let up = async {
            let mut out = Vec::new();
            let mut send = async |payload: Vec<u8>, src: SocketAddr| {
                let conn_id = match flows.lock() {
                    Ok(mut f) => f.id_for(src, Instant::now()),
                    Err(_) => return Ok(()),
                };
                let frame = Frame::Data {
                    conn_id,
                    peer: self.to.clone(),
                    payload,
                };
                write_frame(&mut wr, &mut out, &frame).await
            };
            send(first.0, first.1).await?;
            let mut buf = vec![0u8; RECV_BUF];
            loop {
                match socket.recv_from(&mut buf).await {
                    Ok((n, src)) => send(buf[..n].to_vec(), src).await?,
                    Err(e) => tracing::debug!(error = %e, "udp forward: receive failed"),
                }
            }
        };
        let down = read_frames(rd, |frame| {
            if let Frame::Data {
                conn_id, payload, ..
            } = frame
            {
                let to = flows.lock().ok().and_then(|f| f.addr_of(conn_id));
                if let Some(to) = to {
                    let _ = socket.try_send_to(&payload, to);
                }
            }
        });
        tokio::select! {
            r = up => r,
            r = down => r,
        }
    }
}

/// A UDP forward's flows: one `conn_id` per local source address, at most
/// [`MAX_FORWARD_FLOWS`], the longest idle making room.
#[derive(Default)]
struct Flows {
    by_addr: HashMap<SocketAddr, (u16, Instant)>,
    by_id: HashMap<u16, SocketAddr>,
    next: u16,
}

impl Flows {
    /// The flow of `src`, made if new.
    fn id_for(&mut self, src: SocketAddr, now: Instant) -> u16 {
        if let Some((id, seen)) = self.by_addr.get_mut(&src) {
            *seen = now;
            return *id;
        }
        self.by_addr.retain(|_, (id, seen)| {
            let keep = now.duration_since(*seen) < FLOW_IDLE;
            if !keep {
                self.by_id.remove(id);
            }
            keep
        });
        if self.by_addr.len() >= MAX_FORWARD_FLOWS {
            let oldest = self
                .by_addr
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(a, (id, _))| (*a, *id));
            if let Some((addr, id)) = oldest {
                self.by_addr.remove(&addr);
                self.by_id.remove(&id);
            }
        }
        // At most MAX_FORWARD_FLOWS ids are taken, so a free one is near.
        let mut id = self.next;
        while self.by_id.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next = id.wrapping_add(1);
        self.by_addr.insert(src, (id, now));
        self.by_id.insert(id, src);
        id
    }

    fn addr_of(&self, id: u16) -> Option<SocketAddr> {
        self.by_id.get(&id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn each_source_keeps_its_flow_and_the_longest_idle_makes_room() {
        let mut f = Flows::default();
        let t0 = Instant::now();
        let a = f.id_for(addr(1), t0);
        let b = f.id_for(addr(2), t0);
        assert_ne!(a, b);
        assert_eq!(f.id_for(addr(1), t0), a);
        assert_eq!(f.addr_of(b), Some(addr(2)));
        for p in 3..=(MAX_FORWARD_FLOWS as u16 + 1) {
            // Source 1 stays busy; source 2 is the one left idle.
            f.id_for(addr(1), t0 + Duration::from_millis(u64::from(p)));
            f.id_for(addr(p), t0 + Duration::from_millis(u64::from(p)));
        }
        assert_eq!(f.by_addr.len(), MAX_FORWARD_FLOWS);
        assert_eq!(f.addr_of(b), None);
        assert_eq!(f.addr_of(a), Some(addr(1)));
        // After FLOW_IDLE every quiet source is gone.
        let later = t0 + FLOW_IDLE + Duration::from_secs(1);
        f.id_for(addr(9999), later);
        assert_eq!(f.by_addr.len(), 1);
    }

    #[test]
    fn names_stay_names_and_literals_become_addresses() {
        assert_eq!(
            target_addr("10.0.0.1", 53),
            TargetAddr::Ip(SocketAddr::from(([10, 0, 0, 1], 53)))
        );
        assert_eq!(
            target_addr("::1", 53),
            TargetAddr::Ip("[::1]:53".parse().unwrap())
        );
        assert_eq!(
            target_addr("dns.internal", 53),
            TargetAddr::Domain("dns.internal".into(), 53)
        );
    }

    #[tokio::test]
    async fn frames_are_read_across_reads_and_bad_ones_skipped() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut wire = Vec::new();
        let big = Frame::Data {
            conn_id: 3,
            peer: target_addr("10.0.0.1", 53),
            payload: vec![7; 1000],
        };
        udpgw::encode(&big, &mut wire).unwrap();
        wire.extend_from_slice(&[0, 3, 0x40, 0, 1]);
        udpgw::encode(&Frame::Error { conn_id: 3 }, &mut wire).unwrap();
        let writer = tokio::spawn(async move {
            a.write_all(&wire).await.unwrap();
        });
        let mut got = Vec::new();
        read_frames(b, |f| got.push(f)).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, [big, Frame::Error { conn_id: 3 }]);
    }
}
