//! The PROXY protocol (haproxy's v1 text and v2 binary headers) on both
//! ends: `--proxy-protocol` reads the header a load balancer puts before a
//! client's bytes, so the server sees the client's address instead of the
//! balancer's; `--stealth-fallback-proxy-protocol` writes one before the
//! bytes relayed to the web server behind the stealth port.
//!
//! Parsing and building are `ppp`'s. This module decides who may send a
//! header (checked before a byte is read), reads no more than the header can
//! be (v1 at most 107 bytes; v2 its 16-byte prefix and the length it gives,
//! capped), and gives up after a timeout. Its errors hold no text the peer
//! chose; [`log_refusal`] is the one line an acceptor logs for them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ppp::{v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::Prefixed;
use crate::proto::cidr::Cidr;

/// The longest v1 header, CRLF included (the specification's limit).
const V1_MAX: usize = 107;
/// v2: the signature, version/command, family/protocol and length.
const V2_PREFIX: usize = 16;
/// v2: the most address and TLV bytes taken after the prefix. UNIX
/// addresses take 216; haproxy's TLVs (ALPN, authority, unique id, TLS
/// details) fit easily in the rest.
const V2_MAX_PAYLOAD: usize = 2048;

/// How long a proxy may take to send its header, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--proxy-protocol`: which peers may send a PROXY header, and how long
/// they get.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    /// Peers allowed to send a header (`--proxy-protocol-from`); a
    /// connection from anywhere else is refused unread.
    pub from: Vec<Cidr>,
    /// Time for the whole header (from the accept on).
    pub timeout: Duration,
}

/// Why a connection on a `--proxy-protocol` port was closed. The messages
/// hold nothing the peer chose, so they may go to the log as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyRefused {
    /// The TCP peer is not one of the trusted proxies.
    #[error("the peer is not in --proxy-protocol-from")]
    NotAllowed,
    /// The first bytes are no PROXY header.
    #[error("the connection did not start with a PROXY protocol header")]
    NoHeader,
    /// A header that `ppp` (or the length limits) rejected.
    #[error("malformed PROXY protocol {version} header")]
    Malformed {
        /// `v1` or `v2`.
        version: &'static str,
    },
    /// The header did not arrive in time.
    #[error("no complete PROXY protocol header within {}s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The peer closed before the header ended.
    #[error("the connection closed before the PROXY protocol header ended")]
    Closed,
    /// Reading failed.
    #[error("cannot read the PROXY protocol header: {0}")]
    Io(std::io::Error),
}

impl ProxyProtocol {
    /// Trust `from`, with the default timeout.
    pub fn new(from: Vec<Cidr>) -> Self {
        ProxyProtocol {
            from,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The networks trusted when `--proxy-protocol-from` is not given:
    /// loopback only (127.0.0.0/8 and ::1), a proxy on the same host.
    pub fn loopback() -> Vec<Cidr> {
        vec![
            Cidr::new(IpAddr::from([127, 0, 0, 0]), 8)
                .unwrap_or(Cidr::host(IpAddr::from([127, 0, 0, 1]))),
            Cidr::host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]
    }

    /// Whether `peer` may send a header.
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.from.iter().any(|net| net.contains(peer))
    }

    /// Read a v1 or v2 header from a connection accepted from `peer`. Ok:
    /// the stream with any bytes read past the header replayed first, and
    /// the client's address from the header (for v2 LOCAL, v1 UNKNOWN and
    /// address families without one: `peer` itself). Err: why the
    /// connection must be closed.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        mut stream: S,
        peer: SocketAddr,
    ) -> Result<(Prefixed<S>, SocketAddr), ProxyRefused> {
        if !self.allows(peer.ip()) {
            return Err(ProxyRefused::NotAllowed);
        }
        match tokio::time::timeout(self.timeout, read_header(&mut stream, peer)).await {
            Err(_) => Err(ProxyRefused::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok((rest, client))) => Ok((Prefixed::new(rest, stream), client)),
        }
    }
}

/// Log a refused connection: the reason and the TCP peer's address (the
/// proxy's, never the header's), at most one line per period of `rate`.
pub(crate) fn log_refusal(rate: &crate::limits::LogRate, peer: SocketAddr, e: &ProxyRefused) {
    if let Some(skipped) = rate.check() {
        tracing::info!(remote_addr = %peer.ip(), reason = %e, skipped, "connection refused (--proxy-protocol)");
    }
}

fn read_failed(e: std::io::Error) -> ProxyRefused {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ProxyRefused::Closed
    } else {
        ProxyRefused::Io(e)
    }
}

/// The header's source address, and what was read past the header.
async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
) -> Result<(Vec<u8>, SocketAddr), ProxyRefused> {
    // Both kinds are told apart by their first 5 bytes, and neither is
    // shorter than 15.
    let mut head = [0u8; V1_MAX];
    stream
        .read_exact(&mut head[..5])
        .await
        .map_err(read_failed)?;
    if head[..5] == *v1::PROTOCOL_PREFIX.as_bytes() {
        read_v1(stream, head, peer).await
    } else if head[..5] == v2::PROTOCOL_PREFIX[..5] {
        read_v2(stream, head, peer).await
    } else {
        Err(ProxyRefused::NoHeader)
    }
}

/// v1: read up to CRLF, 107 bytes at most; what came after it in the
/// same reads is handed back.
async fn read_v1<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut head: [u8; V1_MAX],
    peer: SocketAddr,
) -> Result<(Vec<u8>, SocketAddr), ProxyRefused> {
    let malformed = ProxyRefused::Malformed { version: "v1" };
    let mut len = 5;
    loop {
        if let Some(cr) = head[..len].windows(2).position(|w| w == b"\r\n") {
            let end = cr + 2;
            let header = v1::Header::try_from(&head[..end]).map_err(|_| malformed)?;
            let client = match header.addresses {
                v1::Addresses::Tcp4(a) => SocketAddr::new(a.source_address.into(), a.source_port),
                v1::Addresses::Tcp6(a) => SocketAddr::new(a.source_address.into(), a.source_port),
                v1::Addresses::Unknown => peer,
            };
            return Ok((head[end..len].to_vec(), client));
        }
        if len == V1_MAX {
            return Err(malformed);
        }
        let n = stream.read(&mut head[len..]).await.map_err(read_failed)?;
        if n == 0 {
            return Err(ProxyRefused::Closed);
        }
        len += n;
    }
}

/// v2: the 16-byte prefix, then exactly the length it announces.
async fn read_v2<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut head: [u8; V1_MAX],
    peer: SocketAddr,
) -> Result<(Vec<u8>, SocketAddr), ProxyRefused> {
    let malformed = || ProxyRefused::Malformed { version: "v2" };
    stream
        .read_exact(&mut head[5..V2_PREFIX])
        .await
        .map_err(read_failed)?;
    if head[..v2::PROTOCOL_PREFIX.len()] != *v2::PROTOCOL_PREFIX {
        return Err(malformed());
    }
    let payload = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(malformed());
    }
    let mut all = vec![0u8; V2_PREFIX + payload];
    all[..V2_PREFIX].copy_from_slice(&head[..V2_PREFIX]);
    stream
        .read_exact(&mut all[V2_PREFIX..])
        .await
        .map_err(read_failed)?;
    let header = v2::Header::try_from(all.as_slice()).map_err(|_| malformed())?;
    let client = match (header.command, header.addresses) {
        (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
            SocketAddr::new(a.source_address.into(), a.source_port)
        }
        (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
            SocketAddr::new(a.source_address.into(), a.source_port)
        }
        // LOCAL (the proxy's own health checks), and families with no IP
        // address: the connection's own endpoints, as the specification says.
        _ => peer,
    };
    Ok((Vec::new(), client))
}

/// `--stealth-fallback-proxy-protocol`: which header the fallback relay
/// sends to the web server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeaderVersion {
    /// The text header (`PROXY TCP4 …\r\n`); nginx's `proxy_protocol`.
    V1,
    /// The binary header.
    V2,
}

impl std::str::FromStr for ProxyHeaderVersion {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "v1" | "1" => Ok(ProxyHeaderVersion::V1),
            "v2" | "2" => Ok(ProxyHeaderVersion::V2),
            _ => Err(crate::error::Error::config(
                "--stealth-fallback-proxy-protocol",
                s,
                "expected v1 or v2",
            )),
        }
    }
}

/// One family for both ends: an IPv4 end beside an IPv6 one becomes
/// IPv4-mapped, and mapped addresses beside IPv4 ones become IPv4.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canon(a), canon(b));
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

impl ProxyHeaderVersion {
    /// The header saying a connection from `client` reached `local`.
    pub fn header(self, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
        let (client, local) = same_family(client, local);
        match self {
            ProxyHeaderVersion::V1 => v1::Addresses::from((client, local))
                .to_string()
                .into_bytes(),
            ProxyHeaderVersion::V2 => {
                let built = v2::Builder::with_addresses(
                    v2::Version::Two | v2::Command::Proxy,
                    v2::Protocol::Stream,
                    (client, local),
                )
                .build();
                // Only a payload over 64 KiB fails, and two addresses are
                // 36 bytes at most; LOCAL is the honest answer if it ever did.
                built.unwrap_or_else(|_| {
                    let mut local = v2::PROTOCOL_PREFIX.to_vec();
                    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
                    local
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn trusting_loopback() -> ProxyProtocol {
        ProxyProtocol::new(ProxyProtocol::loopback())
    }

    const HAPROXY: &str = "127.0.0.1:40000";

    /// Feed `input` (then close) and run `accept` from `peer`; returns its
    /// result with the bytes that followed the header.
    async fn run(
        pp: &ProxyProtocol,
        input: &[u8],
        peer: &str,
    ) -> Result<(SocketAddr, Vec<u8>), ProxyRefused> {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let (mut stream, from) = pp.accept(server, addr(peer)).await?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        Ok((from, rest))
    }

    fn v2_header(command: v2::Command, src: &str, dst: &str) -> Vec<u8> {
        v2::Builder::with_addresses(
            v2::Version::Two | command,
            v2::Protocol::Stream,
            (addr(src), addr(dst)),
        )
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn v1_tcp4_gives_the_source_and_keeps_what_follows() {
        let pp = trusting_loopback();
        let input = b"PROXY TCP4 192.0.2.7 127.0.0.1 51234 22\r\nSSH-2.0-x\r\n";
        let (from, rest) = run(&pp, input, HAPROXY).await.unwrap();
        assert_eq!(from, addr("192.0.2.7:51234"));
        assert_eq!(rest, b"SSH-2.0-x\r\n");
    }

    #[tokio::test]
    async fn v1_tcp6_and_unknown() {
        let pp = trusting_loopback();
        let (from, rest) = run(&pp, b"PROXY TCP6 2001:db8::5 ::1 4000 443\r\nhi", "[::1]:9")
            .await
            .unwrap();
        assert_eq!(from, addr("[2001:db8::5]:4000"));
        assert_eq!(rest, b"hi");
        let (from, rest) = run(&pp, b"PROXY UNKNOWN\r\n", HAPROXY).await.unwrap();
        assert_eq!(from, addr(HAPROXY), "UNKNOWN: the connection's own peer");
        assert!(rest.is_empty());
        let long_unknown = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nz";
        let (from, rest) = run(&pp, long_unknown, HAPROXY).await.unwrap();
        assert_eq!((from, rest), (addr(HAPROXY), b"z".to_vec()));
    }

    #[tokio::test]
    async fn v2_proxy_ipv4_and_ipv6_and_local() {
        let pp = trusting_loopback();
        let mut input = v2_header(v2::Command::Proxy, "198.51.100.3:6000", "127.0.0.1:22");
        input.extend_from_slice(b"SSH-2.0-y");
        let (from, rest) = run(&pp, &input, HAPROXY).await.unwrap();
        assert_eq!(from, addr("198.51.100.3:6000"));
        assert_eq!(rest, b"SSH-2.0-y");

        let input = v2_header(v2::Command::Proxy, "[2001:db8::9]:7000", "[::1]:22");
        let (from, _) = run(&pp, &input, HAPROXY).await.unwrap();
        assert_eq!(from, addr("[2001:db8::9]:7000"));

        let input = v2_header(v2::Command::Local, "198.51.100.3:6000", "127.0.0.1:22");
        let (from, _) = run(&pp, &input, HAPROXY).await.unwrap();
        assert_eq!(from, addr(HAPROXY), "LOCAL: the connection's own peer");
    }

    #[tokio::test]
    async fn v2_tlvs_are_read_past() {
        let pp = trusting_loopback();
        let mut input = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (addr("203.0.113.1:1"), addr("127.0.0.1:22")),
        )
        .write_tlv(v2::Type::Authority, b"example.com")
        .unwrap()
        .build()
        .unwrap();
        input.extend_from_slice(b"after");
        let (from, rest) = run(&pp, &input, HAPROXY).await.unwrap();
        assert_eq!(from, addr("203.0.113.1:1"));
        assert_eq!(rest, b"after");
    }

    #[tokio::test]
    async fn garbage_and_truncated_headers_are_refused() {
        let pp = trusting_loopback();
        let cases: &[(&[u8], &str)] = &[
            (b"SSH-2.0-OpenSSH_9.2\r\n", "did not start with a PROXY"),
            (b"GET / HTTP/1.1\r\n\r\n", "did not start with a PROXY"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                "malformed PROXY protocol v1",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 80 99999\r\n",
                "malformed PROXY protocol v1",
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 22", "closed before"),
            (b"PRO", "closed before"),
            (b"\r\n\r\n\0\r\nQUI", "closed before"),
            (
                b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c",
                "malformed PROXY protocol v2",
            ),
        ];
        for (input, want) in cases {
            let e = run(&pp, input, HAPROXY).await.unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
        }
        // No CRLF in 107 bytes.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(200, b'1');
        let e = run(&pp, &long, HAPROXY).await.unwrap_err().to_string();
        assert!(e.contains("malformed PROXY protocol v1"), "{e}");
        // A v2 header cut short in its addresses, and one announcing too much.
        let full = v2_header(v2::Command::Proxy, "198.51.100.3:6000", "127.0.0.1:22");
        let e = run(&pp, &full[..20], HAPROXY)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("closed before"), "{e}");
        let mut huge = full[..16].to_vec();
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let e = run(&pp, &huge, HAPROXY).await.unwrap_err().to_string();
        assert!(e.contains("malformed PROXY protocol v2"), "{e}");
        // IPv4 family with fewer address bytes than it needs.
        let mut short = full[..16].to_vec();
        short[14..16].copy_from_slice(&4u16.to_be_bytes());
        short.extend_from_slice(&[1, 2, 3, 4]);
        let e = run(&pp, &short, HAPROXY).await.unwrap_err().to_string();
        assert!(e.contains("malformed PROXY protocol v2"), "{e}");
    }

    #[tokio::test]
    async fn errors_hold_no_peer_text() {
        let pp = trusting_loopback();
        let e = run(&pp, b"PROXY TCP4 EVIL<script> 1.2.3.4 1 2\r\n", HAPROXY)
            .await
            .unwrap_err()
            .to_string();
        assert!(!e.contains("EVIL"), "{e}");
    }

    #[tokio::test]
    async fn a_peer_not_in_from_is_refused_before_anything_is_read() {
        let pp = ProxyProtocol::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
        let mut server = server;
        let e = pp
            .accept(&mut server, addr("192.0.2.1:5"))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, ProxyRefused::NotAllowed), "{e}");
        assert_eq!(e.to_string(), "the peer is not in --proxy-protocol-from");
        // The header is still there, unread.
        let mut got = [0u8; 15];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"PROXY UNKNOWN\r\n");
        assert!(pp.allows("10.9.9.9".parse().unwrap()));
        assert!(trusting_loopback().allows("::1".parse().unwrap()));
        assert!(trusting_loopback().allows("127.0.0.2".parse().unwrap()));
        assert!(!trusting_loopback().allows("::2".parse().unwrap()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_peer_times_out() {
        let pp = trusting_loopback();
        let (mut client, server) = tokio::io::duplex(64);
        // Half a header, then silence.
        client.write_all(b"PROXY TCP4 1.2.").await.unwrap();
        let start = tokio::time::Instant::now();
        let e = pp
            .accept(server, addr(HAPROXY))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(e, ProxyRefused::Timeout(_)), "{e}");
        assert_eq!(start.elapsed(), DEFAULT_TIMEOUT);
        assert_eq!(
            e.to_string(),
            "no complete PROXY protocol header within 10s"
        );
        drop(client);
    }

    #[tokio::test]
    async fn headers_we_send_parse_back() {
        let pp = trusting_loopback();
        for version in [ProxyHeaderVersion::V1, ProxyHeaderVersion::V2] {
            for (client, local, want) in [
                ("127.0.0.2:5000", "127.0.0.1:443", "127.0.0.2:5000"),
                ("[2001:db8::1]:5000", "[::1]:443", "[2001:db8::1]:5000"),
                ("127.0.0.2:5000", "[::]:443", "[::ffff:127.0.0.2]:5000"),
                ("[::ffff:127.0.0.2]:5000", "127.0.0.1:443", "127.0.0.2:5000"),
            ] {
                let h = version.header(addr(client), addr(local));
                let (from, rest) = run(&pp, &h, HAPROXY).await.unwrap();
                assert_eq!(from, addr(want), "{version:?} {client} {local}");
                assert!(rest.is_empty());
            }
        }
        assert_eq!(
            ProxyHeaderVersion::V1.header(addr("127.0.0.2:5000"), addr("127.0.0.1:443")),
            b"PROXY TCP4 127.0.0.2 127.0.0.1 5000 443\r\n"
        );
        assert_eq!(
            "v2".parse::<ProxyHeaderVersion>().unwrap(),
            ProxyHeaderVersion::V2
        );
        let e = "v3".parse::<ProxyHeaderVersion>().unwrap_err().to_string();
        assert!(e.contains("--stealth-fallback-proxy-protocol"), "{e}");
    }
}
