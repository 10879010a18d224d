//! The UDP figure: datagram round trip and throughput to a UDP echo
//! server, with no tunnel and through `wraith connect`'s SOCKS5 listener
//! two ways: SOCKS5 UDP ASSOCIATE (RFC 1928 §7, what curl and browsers
//! use) and udpgw (a SOCKS5 CONNECT to `wraith-udpgw:0`, then tun2proxy's
//! framing, what tun2proxy's `--udpgw-server` does). OpenSSH carries no
//! UDP, so the comparison is against no tunnel.
//!
//! Round trip: one 64-byte datagram at a time, p50 and p99. Throughput:
//! 1200-byte datagrams (a QUIC packet's size) with a window of them in
//! flight for a fixed time; the rate is what came back, and datagrams that
//! never came back are counted as lost. The SOCKS5 and udpgw encodings
//! here are written from the RFC and from tun2proxy's source, not from
//! wraith's code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout};

use crate::bench::{Bench, Phase};
use crate::process::Launcher;
use crate::report::{Better, Row};
use crate::socks5;
use crate::tunnel::{Kind, Link, Route, TunnelSpec};

/// Payload of a round-trip probe.
const PROBE: usize = 64;
/// Payload of a throughput datagram.
const DATAGRAM: usize = 1200;
/// Throughput datagrams in flight at once.
const WINDOW: usize = 32;
/// Longest wait for one answer before the datagrams in flight count as
/// lost.
const ANSWER: Duration = Duration::from_secs(1);

/// How the bench reaches the echo server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Direct,
    Associate,
    Udpgw,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Associate => "socks5-udp",
            Path::Udpgw => "udpgw",
        }
    }
}

/// An open path to the echo server.
enum Open {
    Direct(UdpSocket),
    /// The relay socket (connected to the relay) and the control
    /// connection that keeps the association alive.
    Associate {
        socket: UdpSocket,
        header: Vec<u8>,
        _control: TcpStream,
    },
    /// The udpgw stream and what has been read of it.
    Udpgw {
        stream: TcpStream,
        echo: SocketAddr,
        buf: Vec<u8>,
    },
}

impl Open {
    async fn new(path: Path, route: &Route, echo: SocketAddr) -> Result<Open> {
        match (path, route) {
            (Path::Direct, _) => {
                let s = UdpSocket::bind("127.0.0.1:0").await?;
                s.connect(echo).await?;
                Ok(Open::Direct(s))
            }
            (Path::Associate, Route::Socks5 { proxy, .. }) => associate(*proxy, echo).await,
            (Path::Udpgw, Route::Socks5 { proxy, .. }) => {
                let stream = connect_udpgw(*proxy).await?;
                Ok(Open::Udpgw {
                    stream,
                    echo,
                    buf: Vec::new(),
                })
            }
            _ => bail!("{} needs a SOCKS5 tunnel", path.name()),
        }
    }

    async fn send(&mut self, payload: &[u8]) -> Result<()> {
        match self {
            Open::Direct(s) => {
                s.send(payload).await?;
            }
            Open::Associate { socket, header, .. } => {
                let mut d = header.clone();
                d.extend_from_slice(payload);
                socket.send(&d).await?;
            }
            Open::Udpgw { stream, echo, .. } => {
                stream.write_all(&udpgw_frame(*echo, payload)?).await?;
            }
        }
        Ok(())
    }

    /// The next answer's payload length.
    async fn recv(&mut self) -> Result<usize> {
        let mut d = [0u8; 65_536];
        match self {
            Open::Direct(s) => Ok(s.recv(&mut d).await?),
            Open::Associate { socket, header, .. } => {
                let n = socket.recv(&mut d).await?;
                n.checked_sub(header.len())
                    .ok_or_else(|| anyhow!("a relay datagram shorter than its header"))
            }
            Open::Udpgw { stream, buf, .. } => loop {
                if let Some((len, payload)) = udpgw_take(buf)? {
                    buf.drain(..len);
                    return Ok(payload);
                }
                let n = stream.read(&mut d).await?;
                if n == 0 {
                    bail!("the udpgw channel closed");
                }
                buf.extend_from_slice(&d[..n]);
            },
        }
    }
}

/// SOCKS5 RSV RSV FRAG ATYP=1 address port, for an IPv4 peer.
fn socks_udp_header(peer: SocketAddr) -> Result<Vec<u8>> {
    let SocketAddr::V4(v4) = peer else {
        bail!("the echo server is not on IPv4");
    };
    let mut h = vec![0, 0, 0, 1];
    h.extend_from_slice(&v4.ip().octets());
    h.extend_from_slice(&v4.port().to_be_bytes());
    Ok(h)
}

/// A udpgw DATA frame on flow 1: LEN FLAGS=0x02 CONN_ID ATYP addr port data.
fn udpgw_frame(peer: SocketAddr, payload: &[u8]) -> Result<Vec<u8>> {
    let header = socks_udp_header(peer)?;
    let body = 1 + 2 + (header.len() - 3) + payload.len();
    let len = u16::try_from(body).context("datagram too large for udpgw")?;
    let mut f = len.to_be_bytes().to_vec();
    f.extend_from_slice(&[0x02, 0, 1]);
    f.extend_from_slice(&header[3..]);
    f.extend_from_slice(payload);
    Ok(f)
}

/// Takes one frame from the front of `buf`: its length and, for a DATA
/// frame, the payload's length. Keepalives and errors are refused: the
/// echo answers every datagram, so neither should come.
fn udpgw_take(buf: &[u8]) -> Result<Option<(usize, usize)>> {
    let Some(head) = buf.first_chunk::<2>() else {
        return Ok(None);
    };
    let len = 2 + usize::from(u16::from_be_bytes(*head));
    if buf.len() < len {
        return Ok(None);
    }
    let flags = buf.get(2).copied().unwrap_or(0);
    if flags != 0x02 {
        bail!("udpgw frame with flags {flags:#04x} where data was expected");
    }
    // FLAGS CONN_ID ATYP=1 IPv4 port, then the payload.
    let head = 2 + 3 + 1 + 4 + 2;
    match buf.get(5) {
        Some(1) if len >= head => Ok(Some((len, len - head))),
        _ => bail!("udpgw data frame without an IPv4 peer"),
    }
}

/// Reads a SOCKS5 reply with an IPv4 address and returns that address.
async fn reply_v4(s: &mut TcpStream) -> Result<SocketAddr> {
    match socks5::read_reply(s).await?[..] {
        [1, a, b, c, d, p0, p1] => Ok(SocketAddr::from((
            [a, b, c, d],
            u16::from_be_bytes([p0, p1]),
        ))),
        _ => bail!("SOCKS5 reply without an IPv4 address"),
    }
}

async fn associate(proxy: SocketAddr, echo: SocketAddr) -> Result<Open> {
    let mut control = socks5::handshake(proxy).await?;
    control.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    let relay = reply_v4(&mut control).await.context("UDP ASSOCIATE")?;
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(relay).await?;
    Ok(Open::Associate {
        socket,
        header: socks_udp_header(echo)?,
        _control: control,
    })
}

async fn connect_udpgw(proxy: SocketAddr) -> Result<TcpStream> {
    let mut s = socks5::handshake(proxy).await?;
    let name = b"wraith-udpgw";
    let mut req = vec![5, 1, 0, 3, name.len() as u8];
    req.extend_from_slice(name);
    req.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&req).await?;
    reply_v4(&mut s)
        .await
        .context("CONNECT to wraith-udpgw:0")?;
    Ok(s)
}

/// A UDP echo server on loopback, stopped by dropping the returned task.
async fn echo_server() -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let addr = socket.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    Ok((addr, task))
}

/// Round trips of one probe at a time, in microseconds.
async fn round_trips(open: &mut Open, samples: usize) -> Result<Vec<f64>> {
    let probe = [0x5au8; PROBE];
    let mut out = Vec::with_capacity(samples);
    let mut misses = 0;
    while out.len() < samples {
        let t = Instant::now();
        open.send(&probe).await?;
        match timeout(ANSWER, open.recv()).await {
            Ok(n) => {
                if n? != PROBE {
                    bail!("a probe came back with another length");
                }
                out.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Err(_) => {
                misses += 1;
                if misses > samples / 10 + 3 {
                    bail!("{misses} probes were lost");
                }
            }
        }
    }
    Ok(out)
}

/// Datagrams sent and answered during `time`, with a window in flight.
struct Throughput {
    bytes_per_s: f64,
    sent: u64,
    lost: u64,
}

async fn throughput(open: &mut Open, time: Duration) -> Result<Throughput> {
    let data = [0xa5u8; DATAGRAM];
    let (mut sent, mut got, mut lost) = (0u64, 0u64, 0u64);
    let mut in_flight = 0usize;
    let start = Instant::now();
    while start.elapsed() < time {
        while in_flight < WINDOW {
            open.send(&data).await?;
            sent += 1;
            in_flight += 1;
        }
        match timeout(ANSWER, open.recv()).await {
            Ok(n) => {
                n?;
                got += 1;
                in_flight -= 1;
            }
            Err(_) => {
                lost += in_flight as u64;
                in_flight = 0;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if got == 0 {
        bail!("no datagram came back in {elapsed:.1} s");
    }
    Ok(Throughput {
        bytes_per_s: (got * DATAGRAM as u64) as f64 / elapsed,
        sent,
        lost,
    })
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied()
}

/// The rows of one path through one tunnel.
async fn path_rows(b: &Bench, spec: &TunnelSpec, route: &Route, path: Path) -> Vec<Row> {
    let samples = b.settings.latency_samples;
    let time = b.settings.longpath_time.min(Duration::from_secs(5));
    let row = |fig: &str, title: String, unit, better| {
        Row::new(
            spec,
            None,
            format!("udp_{fig}_{}", path.name()),
            title,
            unit,
            better,
        )
        .detail("path", path.name())
    };
    let rtt = row(
        "rtt_p50",
        format!(
            "udp round trip ({}), {PROBE} B, p50 of {samples}",
            path.name()
        ),
        "us",
        Better::Lower,
    );
    let rtt99 = row(
        "rtt_p99",
        format!("udp round trip ({}), p99", path.name()),
        "us",
        Better::Lower,
    );
    let rate = row(
        "throughput",
        format!(
            "udp throughput ({}), {DATAGRAM} B datagrams, {WINDOW} in flight, {:.0} s",
            path.name(),
            time.as_secs_f64()
        ),
        "MB/s",
        Better::Higher,
    );
    let run = async {
        let (echo, task) = echo_server().await?;
        let _stop = AbortOnDrop(task);
        let mut open = timeout(Duration::from_secs(15), Open::new(path, route, echo))
            .await
            .map_err(|_| anyhow!("opening the {} path took over 15 s", path.name()))??;
        let mut rtts = round_trips(&mut open, samples).await?;
        rtts.sort_by(f64::total_cmp);
        let t = throughput(&mut open, time).await?;
        anyhow::Ok((rtts, t))
    };
    match run.await {
        Ok((rtts, t)) => vec![
            rtt.value(percentile(&rtts, 0.5), rtts.clone()),
            rtt99.value(percentile(&rtts, 0.99), Vec::new()),
            rate.value(Some(t.bytes_per_s / 1e6), Vec::new())
                .detail("datagrams_sent", t.sent)
                .detail("datagrams_lost", t.lost),
        ],
        Err(e) => {
            eprintln!("   udp {} through {}: {e:#}", path.name(), spec.label());
            vec![rtt.error(&e), rtt99.error(&e), rate.error(&e)]
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The figure: no tunnel, then wraith's SOCKS5 tunnel by both paths.
pub(crate) async fn rows(b: &Bench, specs: &[TunnelSpec]) -> Vec<Row> {
    let mut rows = Vec::new();
    for spec in specs {
        let paths: &[Path] = match spec.kind {
            Kind::Direct => &[Path::Direct],
            Kind::WraithSocks5 => &[Path::Associate, Path::Udpgw],
            _ => continue,
        };
        eprintln!("== udp through {}", spec.label());
        let phase = Phase::start(b);
        let here = match b.start(spec, &Launcher::Plain, Link::Loopback).await {
            Ok(t) => {
                let mut here = Vec::new();
                for &path in paths {
                    here.extend(path_rows(b, spec, &t.route, path).await);
                }
                t.stop().await;
                here
            }
            Err(e) => {
                eprintln!("   failed: {e:#}");
                vec![Row::new(spec, None, "udp", "udp", "MB/s", Better::Higher).error(&e)]
            }
        };
        rows.extend(phase.finish(b, &format!("{} udp", spec.label()), here));
    }
    add_vs_direct(&mut rows);
    rows
}

/// Each tunnelled row's value over no tunnel's, as `vs_direct`.
fn add_vs_direct(rows: &mut [Row]) {
    let direct: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.tunnel == Kind::Direct.name())
        .filter_map(|r| Some((r.figure.replace("_direct", ""), r.value?)))
        .collect();
    for r in rows.iter_mut().filter(|r| r.tunnel != Kind::Direct.name()) {
        let base = r
            .figure
            .rsplit_once('_')
            .map(|(f, _)| f.to_string())
            .unwrap_or_default();
        if let (Some((_, d)), Some(v)) = (direct.iter().find(|(f, _)| *f == base), r.value)
            && *d > 0.0
        {
            r.detail.insert("vs_direct".into(), (v / d).into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udpgw_frames_are_built_and_read_as_tun2proxy_does() {
        let peer: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let f = udpgw_frame(peer, b"hi").unwrap();
        assert_eq!(f, [0, 12, 2, 0, 1, 1, 10, 0, 0, 1, 0, 53, b'h', b'i']);
        assert_eq!(udpgw_take(&f).unwrap(), Some((14, 2)));
        assert_eq!(udpgw_take(&f[..13]).unwrap(), None);
        assert!(udpgw_take(&[0, 3, 0x20, 0, 1]).is_err());
        assert_eq!(
            socks_udp_header(peer).unwrap(),
            [0, 0, 0, 1, 10, 0, 0, 1, 0, 53]
        );
    }
}
