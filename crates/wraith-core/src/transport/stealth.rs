//! Stealth mode (`--stealth`): after the TLS handshake, look at the client's
//! first bytes without consuming them. `SSH-2.0-` goes to SSH with those
//! bytes replayed; anything else is answered like a stock nginx (see
//! `proto/decoy.rs`) or relayed to a real web server (`--stealth-fallback`).
//!
//! The server never speaks first here: the acceptor hands a stream to SSH
//! only after the client's banner started, so russh's banner always follows
//! the client's. Nothing a prober sends is logged beyond its address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{BoxStream, TransportStream};
use crate::io::Prefixed;
use crate::io::proxy_protocol::ProxyHeaderVersion;
use crate::proto::decoy::{Decoy, Step};
use crate::proto::time::http_date;

const SSH_PREFIX: &[u8] = b"SSH-2.0-";

/// Stealth settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StealthOptions {
    /// Relay non-SSH connections to this web server (`host:port`) instead of
    /// answering 404 ourselves.
    pub fallback: Option<String>,
    /// nginx's `client_header_timeout`: how long a client may take to
    /// complete the TLS handshake and a request (60 s).
    pub header_timeout: Duration,
    /// nginx's `keepalive_timeout`: idle time allowed between requests
    /// (65 s, as in Debian's nginx.conf).
    pub keepalive_timeout: Duration,
    /// nginx's `keepalive_time`: after this long, the next answer closes
    /// the connection (1 h).
    pub keepalive_time: Duration,
    /// The fallback relay (`--stealth-fallback`) closes a connection on
    /// which neither side sent anything for this long (60 s, nginx's
    /// `proxy_read_timeout`).
    pub fallback_idle_timeout: Duration,
    /// Send the fallback web server a PROXY header naming the client
    /// first (`--stealth-fallback-proxy-protocol`).
    pub fallback_proxy_protocol: Option<ProxyHeaderVersion>,
}

/// The two ends of a connection as the fallback's PROXY header names
/// them: the client (the one an ingress PROXY header named, if any) and
/// the server's own address it reached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ends {
    pub(crate) client: SocketAddr,
    /// `None` if the socket could not tell.
    pub(crate) local: Option<SocketAddr>,
}

impl Ends {
    fn header(&self, version: ProxyHeaderVersion) -> Vec<u8> {
        let local = self.local.unwrap_or_else(|| {
            let any = match self.client.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            SocketAddr::new(any, 0)
        });
        version.header(self.client, local)
    }
}

impl Default for StealthOptions {
    fn default() -> Self {
        StealthOptions {
            fallback: None,
            header_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(65),
            keepalive_time: Duration::from_secs(3600),
            fallback_idle_timeout: Duration::from_secs(60),
            fallback_proxy_protocol: None,
        }
    }
}

/// nginx's `lingering_timeout`: after a closing answer, unread input is
/// drained until the client is silent this long...
const LINGERING_TIMEOUT: Duration = Duration::from_secs(5);
/// ...or for at most this long (`lingering_time`).
const LINGERING_TIME: Duration = Duration::from_secs(30);

/// Read the first bytes of `stream`. SSH: return the stream with those bytes
/// replayed. Otherwise serve the decoy (or the fallback relay) to the end
/// and return `None`. `permit` (held until then) bounds how many
/// connections are in here; `ends` are what the fallback's PROXY header says.
pub(crate) async fn sniff<S: TransportStream, P>(
    mut stream: S,
    opts: &StealthOptions,
    permit: P,
    ends: Ends,
) -> Option<BoxStream> {
    let deadline = Instant::now() + opts.header_timeout;
    let mut head = Vec::with_capacity(SSH_PREFIX.len());
    let mut buf = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            // Silence until the timeout: nginx closes without a word (and
            // without close_notify), so do we.
            Err(_) => return None,
            Ok(Err(_)) | Ok(Ok(0)) => return None,
            Ok(Ok(n)) => n,
        };
        head.extend_from_slice(&buf[..n]);
        let k = head.len().min(SSH_PREFIX.len());
        if head[..k] != SSH_PREFIX[..k] {
            break;
        }
        if head.len() >= SSH_PREFIX.len() {
            drop(permit);
            return Some(Box::new(Prefixed::new(head, stream)));
        }
    }
    serve_web(stream, head, opts, deadline, ends).await;
    drop(permit);
    None
}

/// A connection that is not for SSH, whose first bytes were `head`: relay
/// it to the fallback web server, or answer it as nginx would, to the end.
pub(crate) async fn serve_web<S: TransportStream>(
    stream: S,
    head: Vec<u8>,
    opts: &StealthOptions,
    deadline: Instant,
    ends: Ends,
) {
    match &opts.fallback {
        Some(target) => {
            let mut first = opts
                .fallback_proxy_protocol
                .map(|v| ends.header(v))
                .unwrap_or_default();
            first.extend_from_slice(&head);
            relay(stream, first, target, opts.fallback_idle_timeout).await
        }
        None => decoy(stream, head, opts, deadline).await,
    }
}

/// Whether nginx would already answer a connection whose first bytes are
/// `head` (a bad request line, a header too long...), rather than wait for
/// more.
#[cfg(feature = "ws")]
pub(crate) fn decoy_answers(head: &[u8]) -> bool {
    let mut d = Decoy::default();
    d.feed(head);
    matches!(d.step(""), Step::Send { .. })
}

/// Serve nginx's answers until the client or a timeout ends it.
async fn decoy<S: TransportStream>(
    mut stream: S,
    first: Vec<u8>,
    opts: &StealthOptions,
    mut deadline: Instant,
) {
    let opened = Instant::now();
    let mut d = Decoy::default();
    d.feed(&first);
    let mut buf = [0u8; 4096];
    loop {
        if opened.elapsed() >= opts.keepalive_time {
            d.close_after_next();
        }
        match d.step(&now_date()) {
            Step::Send { bytes, close } => {
                if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                if close {
                    lingering_close(stream).await;
                    return;
                }
                deadline = Instant::now()
                    + if d.idle() {
                        opts.keepalive_timeout
                    } else {
                        opts.header_timeout
                    };
            }
            Step::NeedMore => {
                let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return,
                };
                let was_idle = d.idle();
                d.feed(&buf[..n]);
                if was_idle {
                    // A new request started: nginx switches from the
                    // keep-alive timer to the header timer.
                    deadline = Instant::now() + opts.header_timeout;
                }
            }
        }
    }
}

/// nginx's lingering close: close_notify and FIN, then read and drop what
/// the client still sends, so that it sees the answer rather than a reset;
/// bounded by `lingering_timeout` and `lingering_time`.
async fn lingering_close<S: TransportStream>(mut stream: S) {
    let _ = tokio::time::timeout(LINGERING_TIMEOUT, stream.shutdown()).await;
    let end = Instant::now() + LINGERING_TIME;
    let mut buf = [0u8; 4096];
    loop {
        let wait = (Instant::now() + LINGERING_TIMEOUT).min(end);
        match tokio::time::timeout_at(wait, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Relay to the fallback web server, `first` (the PROXY header if any,
/// and the peeked bytes) first, until either
/// side closes or neither sent anything for `idle`.
async fn relay<S: TransportStream>(stream: S, first: Vec<u8>, target: &str, idle: Duration) {
    let connect = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(target));
    let mut upstream = match connect.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot reach the web server (--stealth-fallback)");
            return;
        }
        Err(_) => {
            tracing::warn!("the web server did not answer within 10s (--stealth-fallback)");
            return;
        }
    };
    super::SocketOpts::STANDARD.apply(&upstream);
    match tokio::time::timeout(idle, upstream.write_all(&first)).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    copy_until_idle(stream, upstream, idle).await;
}

/// Copy both ways until both directions are closed, or nothing moved
/// either way for `idle` (a write that waits that long counts as idle).
async fn copy_until_idle<A: TransportStream, B: TransportStream>(a: A, b: B, idle: Duration) {
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut from_a = vec![0u8; 16 * 1024];
    let mut from_b = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        tokio::select! {
            r = ar.read(&mut from_a), if a_open => {
                if !pass_on(r, &from_a, &mut bw, &mut a_open, idle).await {
                    return;
                }
            }
            r = br.read(&mut from_b), if b_open => {
                if !pass_on(r, &from_b, &mut aw, &mut b_open, idle).await {
                    return;
                }
            }
            _ = tokio::time::sleep(idle) => return,
        }
    }
}

/// One direction of [`copy_until_idle`]: hands what a read got to the other
/// side, or at its end (or error) closes this direction and half-closes the
/// other side. `false`: a write took longer than `idle`, so the relay is over.
async fn pass_on<W: AsyncWrite + Unpin>(
    read: std::io::Result<usize>,
    buf: &[u8],
    to: &mut W,
    open: &mut bool,
    idle: Duration,
) -> bool {
    match read {
        Ok(n) if n > 0 => matches!(
            tokio::time::timeout(idle, to.write_all(&buf[..n])).await,
            Ok(Ok(()))
        ),
        _ => {
            *open = false;
            let _ = tokio::time::timeout(idle, to.shutdown()).await;
            true
        }
    }
}

fn now_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    http_date(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::{OwnedSemaphorePermit, Semaphore};

    fn ends() -> Ends {
        Ends {
            client: "127.0.0.2:40001".parse().unwrap(),
            local: Some("127.0.0.1:443".parse().unwrap()),
        }
    }

    fn permit() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    #[tokio::test]
    async fn ssh_banner_is_replayed_and_server_stays_silent() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"SSH-2.").await.unwrap();
        let opts = StealthOptions::default();
        let task = tokio::spawn(async move { sniff(server, &opts, permit(), ends()).await });
        client.write_all(b"0-wraith\r\nmore").await.unwrap();
        let mut s = task.await.unwrap().expect("SSH is recognised");
        let mut got = vec![0u8; 20];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"SSH-2.0-wraith\r\nmore");
    }

    #[tokio::test]
    async fn http_gets_the_decoy() {
        let (mut client, server) = tokio::io::duplex(4096);
        let opts = StealthOptions::default();
        let task = tokio::spawn(async move { sniff(server, &opts, permit(), ends()).await });
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert!(task.await.unwrap().is_none());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nServer: nginx/"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silent_clients_are_closed_after_the_header_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let opts = StealthOptions::default();
        let start = Instant::now();
        let r = sniff(server, &opts, permit(), ends()).await;
        assert!(r.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn the_fallback_relay_closes_when_both_sides_are_idle() {
        // A web server that accepts and then says nothing.
        let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = web.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let (s, _) = web.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let (mut client, server) = tokio::io::duplex(4096);
        let opts = StealthOptions {
            fallback: Some(target),
            fallback_idle_timeout: Duration::from_millis(300),
            ..StealthOptions::default()
        };
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            sniff(server, &opts, permit(), ends()),
        )
        .await
        .expect("the relay ends on its own");
        assert!(r.is_none());
        assert!(started.elapsed() >= Duration::from_millis(300));
        held.abort();
    }

    #[tokio::test]
    async fn the_fallback_relay_carries_both_ways() {
        let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = web.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = web.accept().await.unwrap();
            let mut got = vec![0u8; 5];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(b"pong:").await.unwrap();
            s.write_all(&got).await.unwrap();
        });
        let (mut client, server) = tokio::io::duplex(4096);
        let opts = StealthOptions {
            fallback: Some(target),
            fallback_idle_timeout: Duration::from_secs(5),
            ..StealthOptions::default()
        };
        let task = tokio::spawn(async move { sniff(server, &opts, permit(), ends()).await });
        client.write_all(b"HELLO").await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut out))
            .await
            .expect("the web server's close reaches the client")
            .unwrap();
        assert_eq!(out, b"pong:HELLO");
        assert!(task.await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_blank_line_flood_is_closed_at_the_header_timeout() {
        // nginx reads blank lines until client_header_timeout, counted
        // from the start, and then closes without a word.
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let opts = StealthOptions::default();
        let start = Instant::now();
        let task = tokio::spawn(async move { sniff(server, &opts, permit(), ends()).await });
        let chunk = b"\r\n".repeat(2048);
        let mut sent = 0usize;
        while !task.is_finished() && sent < (64 << 20) {
            if client.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(task.await.unwrap().is_none());
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(60) && took < Duration::from_secs(61),
            "{took:?}"
        );
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn the_fallback_gets_a_proxy_header_naming_the_client() {
        for (version, want) in [
            (
                ProxyHeaderVersion::V1,
                b"PROXY TCP4 127.0.0.2 127.0.0.1 40001 443\r\n".to_vec(),
            ),
            (
                ProxyHeaderVersion::V2,
                [
                    &b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c"[..],
                    &[127, 0, 0, 2, 127, 0, 0, 1],
                    &40001u16.to_be_bytes(),
                    &443u16.to_be_bytes(),
                ]
                .concat(),
            ),
        ] {
            let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let target = web.local_addr().unwrap().to_string();
            let want_len = want.len() + 5;
            let got = tokio::spawn(async move {
                let (mut s, _) = web.accept().await.unwrap();
                let mut got = vec![0u8; want_len];
                s.read_exact(&mut got).await.unwrap();
                got
            });
            let (mut client, server) = tokio::io::duplex(4096);
            let opts = StealthOptions {
                fallback: Some(target),
                fallback_idle_timeout: Duration::from_secs(5),
                fallback_proxy_protocol: Some(version),
                ..StealthOptions::default()
            };
            let task = tokio::spawn(async move { sniff(server, &opts, permit(), ends()).await });
            client.write_all(b"HELLO").await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), got)
                .await
                .expect("the web server got the header")
                .unwrap();
            let mut expected = want.clone();
            expected.extend_from_slice(b"HELLO");
            assert_eq!(got, expected, "{version:?}");
            drop(client);
            assert!(
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .unwrap()
                    .unwrap()
                    .is_none()
            );
        }
    }
}
