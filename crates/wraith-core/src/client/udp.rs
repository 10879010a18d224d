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
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use russh::ChannelStream;
use russh::client::Msg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::listener::{Listener, Service};
use super::opener::{ChannelOpener, OpenError};
use crate::error::{Error, Result};
use crate::io::BoxStream;
use crate::io::udp::{
    FLOW_IDLE, MAX_RELAY_FLOWS, PeerField, RECV_BUF, read_frames, relay_on_demand, write_frame,
};
use crate::limits::LogRate;
use crate::proto::forward_spec::{BindAddr, ForwardTarget, LocalForwardSpec};
use crate::proto::host_port::HostPort;
use crate::proto::socks5::{self, TargetAddr};
use crate::proto::udpgw::{self, Frame};

/// How long a remote forward's target name may take to resolve.
const TARGET_LOOKUP: Duration = Duration::from_secs(10);
/// The flow a SOCKS5 association uses: it has one client, so one flow.
const ASSOCIATION_FLOW: u16 = 1;
/// `host` and `port` as a udpgw address: an IP literal as such, anything
/// else as a name the server resolves.
pub(crate) fn target_addr(host: &str, port: u16) -> TargetAddr {
    match host.parse::<IpAddr>() {
        Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
        Err(_) => TargetAddr::Domain(host.to_owned(), port),
    }
}

/// Opens a udpgw channel.
async fn open_channel(
    opener: &ChannelOpener,
    originator: SocketAddr,
) -> std::result::Result<ChannelStream<Msg>, OpenError> {
    opener
        .open_tcp(udpgw::UDPGW_HOST, udpgw::UDPGW_PORT, originator)
        .await
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
            .map_err(Error::bind_failed(
                format!("udp:{}", HostPort(host, *port)),
                "--forward",
            ))?;
        let bound = socket.local_addr().map_err(Error::no_local_addr)?;
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
        crate::io::accept::accept_once(&mut self.socket)
    }
}

impl Listener for UdpForward {
    fn kind(&self) -> &'static str {
        "udp forward"
    }
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
        let peer = PeerField::Fixed(self.to.clone());
        let open = async |src| match open_channel(&opener, src).await {
            Ok(c) => Some(c),
            Err(e) => {
                if let Some(skipped) = rate.check() {
                    tracing::warn!(target = %self.to, error = %e, skipped, "udp forward: cannot open channel; datagrams dropped");
                }
                None
            }
        };
        relay_on_demand(&socket, "udp forward", peer, open).await;
    }
}

/// The client's end of a `--remote-forward udp:…` channel, as a stream for
/// the remote-forward table to splice with the channel: each flow the
/// server names gets a UDP socket of its own, connected to the target, so
/// that answers find their way back to the right source on the server.
pub(crate) fn remote_target(host: String, port: u16) -> BoxStream {
    let (ours, theirs) = tokio::io::duplex(4 * RECV_BUF);
    tokio::spawn(async move {
        if let Err(e) = serve_flows(theirs, &host, port).await {
            tracing::debug!(error = %e, "remote udp forward: channel ended");
        }
    });
    Box::new(ours)
}

/// One flow of a remote UDP forward: its socket, the task reading answers
/// from it, and when it last carried a datagram.
struct TargetFlow {
    /// For sending: a plain non-blocking socket sends at once, where a
    /// freshly registered tokio socket reports "would block" until the
    /// reactor has seen it.
    socket: std::net::UdpSocket,
    _reader: AbortOnDrop,
    seen: Instant,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve_flows(stream: tokio::io::DuplexStream, host: &str, port: u16) -> io::Result<()> {
    let lookup = tokio::net::lookup_host((host, port));
    let target = tokio::time::timeout(TARGET_LOOKUP, lookup)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "name lookup timed out"))??
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"))?;
    let (rd, mut wr) = tokio::io::split(stream);
    // Answers from every flow queue here for the one writer; a full queue
    // drops the datagram.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Frame>(256);
    let mut flows: HashMap<u16, TargetFlow> = HashMap::new();
    let down = read_frames(rd, |frame| {
        let Frame::Data {
            conn_id, payload, ..
        } = frame
        else {
            return;
        };
        let now = Instant::now();
        if !flows.contains_key(&conn_id) {
            flows.retain(|_, f| now.duration_since(f.seen) < FLOW_IDLE);
            if flows.len() >= MAX_RELAY_FLOWS
                && let Some(oldest) = flows.iter().min_by_key(|(_, f)| f.seen).map(|(id, _)| *id)
            {
                flows.remove(&oldest);
            }
            match target_flow(target, conn_id, tx.clone(), now) {
                Ok(f) => {
                    flows.insert(conn_id, f);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "remote udp forward: no socket for a flow");
                    return;
                }
            }
        }
        if let Some(f) = flows.get_mut(&conn_id) {
            f.seen = now;
            let _ = f.socket.send(&payload);
        }
    });
    let up = async {
        let mut out = Vec::new();
        while let Some(frame) = rx.recv().await {
            write_frame(&mut wr, &mut out, &frame).await?;
        }
        io::Result::Ok(())
    };
    tokio::select! {
        r = down => r,
        r = up => r,
    }
}

/// A socket connected to `target` for flow `conn_id`, with a task sending
/// what comes back to `tx`.
fn target_flow(
    target: SocketAddr,
    conn_id: u16,
    tx: tokio::sync::mpsc::Sender<Frame>,
    now: Instant,
) -> io::Result<TargetFlow> {
    let any: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let std_socket = std::net::UdpSocket::bind(any)?;
    std_socket.connect(target)?;
    std_socket.set_nonblocking(true)?;
    let socket = std_socket.try_clone()?;
    let reading = UdpSocket::from_std(std_socket)?;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            match reading.recv(&mut buf).await {
                Ok(n) => {
                    let frame = Frame::Data {
                        conn_id,
                        peer: TargetAddr::Ip(target),
                        payload: buf[..n].to_vec(),
                    };
                    if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                        tx.try_send(frame)
                    {
                        return;
                    }
                }
                // A refused port answers with ICMP; keep listening.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    Ok(TargetFlow {
        socket,
        _reader: AbortOnDrop(task.abort_handle()),
        seen: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
