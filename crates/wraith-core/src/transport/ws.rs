//! The WebSocket transports: SSH carried in binary WebSocket messages, so a
//! wraith server can sit behind a reverse proxy or a CDN that passes
//! WebSocket upgrades on one path (`ws`: the proxy terminates TLS), or
//! terminate TLS itself (`wss`).
//!
//! Framing and handshakes are tungstenite's; this module adapts a
//! WebSocket to a byte stream ([`WsStream`]), dials ([`WsTransport`]) and,
//! on the server, lets only an upgrade on the configured path through
//! ([`upgrade`]): everything else, a raw `SSH-2.0-` banner included, gets
//! what nginx would answer (see `transport/stealth.rs`), or goes to the
//! stealth fallback web server.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::stealth::{self, StealthOptions};
use super::{BoxFuture, BoxStream, Transport, TransportStream};
use crate::error::{Error, Reason, Result};
use crate::io::Prefixed;
use crate::proto::cidr::Cidr;

/// The largest WebSocket message (and frame) accepted. An SSH packet is at
/// most 256 KiB; what we send is cut at [`MAX_WRITE`]. The cap bounds what
/// an unauthenticated peer can make the server hold.
const MAX_MESSAGE: usize = 1 << 20;
/// What one `write` puts in one binary message at most.
const MAX_WRITE: usize = 64 * 1024;
/// The most a request head may take before it is handed to the decoy (nginx
/// answers 400 or 414 well before this).
const MAX_HEAD: usize = 16 * 1024;
/// Time for the client's WebSocket handshake once the connection is open.
const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        // Each message goes to the socket as it is written.
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_MESSAGE)
}

/// Check a `--ws-path`: an absolute path of URI characters, no query or
/// fragment (it must match the request target exactly).
pub(crate) fn check_path(path: &str) -> std::result::Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with /");
    }
    if path.len() > 1024 {
        return Err("is longer than 1024 bytes");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
    if !path.bytes().all(allowed) {
        return Err(
            "may hold only URI path characters (letters, digits, - . _ ~ / and %XX), no ? or #",
        );
    }
    Ok(())
}

/// A WebSocket as a byte stream: each write is one binary message, reads
/// return the payloads of binary messages in order. Pings are answered by
/// tungstenite; a close frame is the end of the stream; a text message is an
/// error (nothing of ours sends one).
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    unread: Bytes,
    ended: bool,
}

impl<S> std::fmt::Debug for WsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream").finish_non_exhaustive()
    }
}

impl<S> WsStream<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        WsStream {
            ws,
            unread: Bytes::new(),
            ended: false,
        }
    }
}

fn ws_io(e: WsError) -> std::io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.unread.is_empty() {
                let n = self.unread.len().min(buf.remaining());
                buf.put_slice(&self.unread[..n]);
                self.unread.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.unread = data,
                Some(Ok(Message::Close(_))) | None => self.ended = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "a text message on a binary WebSocket tunnel",
                    )));
                }
                // Ping, pong: tungstenite answers pings itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(ws_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_io)?;
        let n = buf.len().min(MAX_WRITE);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(ws_io)?;
        // Push it out now: russh writes its banner without a flush and then
        // waits for the peer's. What a full socket leaves over goes out on
        // the next write or flush (`poll_ready` flushes first).
        if let Poll::Ready(Err(e)) = Pin::new(&mut self.ws).poll_flush(cx) {
            return Poll::Ready(Err(ws_io(e)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(ws_io)
    }
}

/// Dials the server over another transport (tcp or tls), then upgrades to a
/// WebSocket on `path`.
pub struct WsTransport {
    inner: Arc<dyn Transport>,
    url: String,
    host_header: Option<String>,
    describe: String,
}

impl std::fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WsTransport {{ server: {:?}, .. }}", self.describe)
    }
}

impl WsTransport {
    /// A WebSocket on `path` over `inner` (a [`super::TcpTransport`] for
    /// `ws`, a [`super::TlsTransport`] for `wss`), to `host:port`.
    /// `host_header` replaces the Host header (`--ws-host`).
    pub fn new(
        inner: Arc<dyn Transport>,
        secure: bool,
        host: &str,
        port: u16,
        path: &str,
        host_header: Option<String>,
    ) -> Result<Self> {
        check_path(path).map_err(|reason| Error::config("--ws-path", path, reason))?;
        let scheme = if secure { "wss" } else { "ws" };
        let authority = crate::proto::host_port::HostPort(host, port).to_string();
        if let Some(h) = &host_header
            && HeaderValue::from_str(h).is_err()
        {
            return Err(Error::config(
                "--ws-host",
                h.clone(),
                "not a valid Host header value",
            ));
        }
        Ok(WsTransport {
            inner,
            url: format!("{scheme}://{authority}{path}"),
            host_header,
            describe: format!("{scheme}://{authority}"),
        })
    }

    async fn handshake(&self, stream: BoxStream) -> std::result::Result<BoxStream, Reason> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| Reason::with_source(format!("bad WebSocket URL: {e}"), e))?;
        if let Some(h) = &self.host_header {
            let value = HeaderValue::from_str(h)
                .map_err(|e| Reason::with_source("bad --ws-host value".to_string(), e))?;
            request.headers_mut().insert(header::HOST, value);
        }
        let shake = tokio_tungstenite::client_async_with_config(request, stream, Some(config()));
        match tokio::time::timeout(CLIENT_HANDSHAKE_TIMEOUT, shake).await {
            Err(_) => Err(format!(
                "no answer to the WebSocket upgrade within {}s",
                CLIENT_HANDSHAKE_TIMEOUT.as_secs()
            )
            .into()),
            Ok(Ok((ws, _response))) => Ok(Box::new(WsStream::new(ws))),
            Ok(Err(WsError::Http(response))) => Err(format!(
                "the server answered {} to the WebSocket upgrade (check --ws-path{})",
                status_line(response.status()),
                if self.host_header.is_some() {
                    " and --ws-host"
                } else {
                    ""
                }
            )
            .into()),
            Ok(Err(e)) => Err(Reason::with_source(
                format!("WebSocket handshake failed: {e}"),
                e,
            )),
        }
    }
}

fn status_line(s: StatusCode) -> String {
    match s.canonical_reason() {
        Some(r) => format!("{} {r}", s.as_u16()),
        None => s.as_u16().to_string(),
    }
}

impl Transport for WsTransport {
    fn connect(&self) -> BoxFuture<'_, Result<BoxStream>> {
        Box::pin(async move {
            let stream = self.inner.connect().await?;
            self.handshake(stream)
                .await
                .map_err(|reason| Error::Transport {
                    server: self.describe(),
                    reason,
                })
        })
    }

    fn describe(&self) -> String {
        // Not the path: it may be the shared secret.
        self.describe.clone()
    }
}

/// The verdict on a request head read so far.
enum Head {
    /// A WebSocket upgrade on the path: hand it to tungstenite. With the
    /// client address a proxy in front named (`X-Forwarded-For`, else
    /// `X-Real-IP`), if any.
    Upgrade(Option<IpAddr>),
    /// Anything else, complete or not, that nginx would answer now.
    Web,
    /// Not enough bytes to tell.
    More,
}

fn judge(head: &[u8], path: &str) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            if is_upgrade(&req, path) {
                Head::Upgrade(forwarded_for(&req))
            } else {
                Head::Web
            }
        }
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD && !stealth::decoy_answers(head) => {
            Head::More
        }
        _ => Head::Web,
    }
}

/// The address the nearest proxy put in the request: the last entry of
/// `X-Forwarded-For` (the one it added; earlier entries are the client's
/// word), else `X-Real-IP`. Trusted only from `--ws-forwarded-from`.
fn forwarded_for(req: &httparse::Request<'_, '_>) -> Option<IpAddr> {
    let last = |name: &str| {
        req.headers
            .iter()
            .rfind(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let parse = |v: &[u8]| std::str::from_utf8(v).ok()?.trim().parse::<IpAddr>().ok();
    match last("x-forwarded-for") {
        Some(v) => v.rsplit(|&b| b == b',').next().and_then(parse),
        None => last("x-real-ip").and_then(parse),
    }
}

fn is_upgrade(req: &httparse::Request<'_, '_>, path: &str) -> bool {
    let value = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &str, token: &str| {
        value(name).is_some_and(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    req.method == Some("GET")
        && req.path == Some(path)
        && req.version == Some(1)
        && has_token("upgrade", "websocket")
        && has_token("connection", "upgrade")
        && value("sec-websocket-version") == Some(b"13")
        && value("sec-websocket-key").is_some()
        && value("host").is_some()
}

// The callback's type is tungstenite's.
#[allow(clippy::result_large_err)]
fn on_path(
    path: &str,
    req: &Request,
    resp: Response,
) -> std::result::Result<Response, ErrorResponse> {
    if req.uri().path() == path && req.uri().query().is_none() {
        Ok(resp)
    } else {
        let mut refuse = ErrorResponse::new(None);
        *refuse.status_mut() = StatusCode::NOT_FOUND;
        Err(refuse)
    }
}

/// Server side: read the request head of a new connection. A WebSocket
/// upgrade on `path` is accepted and returned as a stream for SSH, with the
/// client address a proxy in front named (see [`forwarded_for`]); anything
/// else gets nginx's answer or the fallback web server (`web`), and `None`.
/// `permit` (held until then) bounds how many connections are in here.
pub(crate) async fn upgrade<S: TransportStream, P>(
    mut stream: S,
    path: &str,
    web: &StealthOptions,
    permit: P,
    ends: stealth::Ends,
) -> Option<(BoxStream, Option<IpAddr>)> {
    let deadline = Instant::now() + web.header_timeout;
    let mut head = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 4096];
    let forwarded = loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            // Silence until the timeout, or gone: close without a word,
            // as nginx does.
            Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return None,
            Ok(Ok(n)) => n,
        };
        head.extend_from_slice(&buf[..n]);
        match judge(&head, path) {
            Head::More => continue,
            Head::Web => {
                stealth::serve_web(stream, head, web, deadline, ends).await;
                drop(permit);
                return None;
            }
            Head::Upgrade(forwarded) => break forwarded,
        }
    };
    // `judge` checked the path; tungstenite checks the rest of the upgrade.
    let path = path.to_string();
    // The callback's type is tungstenite's.
    #[allow(clippy::result_large_err)]
    let check = move |req: &Request, resp: Response| on_path(&path, req, resp);
    let shake = tokio_tungstenite::accept_hdr_async_with_config(
        Prefixed::new(head, stream),
        check,
        Some(config()),
    );
    let ws = match tokio::time::timeout_at(deadline, shake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "WebSocket handshake failed");
            return None;
        }
        Err(_) => return None,
    };
    drop(permit);
    Some((Box::new(WsStream::new(ws)), forwarded))
}

/// `--ws-forwarded-from`: the networks; an entry that is not one is the
/// error.
pub(crate) fn parse_cidrs(list: &[String]) -> Result<Vec<Cidr>> {
    list.iter()
        .map(|c| {
            c.trim().parse::<Cidr>().map_err(|_| {
                Error::config(
                    "--ws-forwarded-from",
                    c.clone(),
                    "expected ADDR or ADDR/BITS",
                )
            })
        })
        .collect()
}

/// Whether `peer` is one of the trusted proxies.
pub(crate) fn trusted(cidrs: &[Cidr], peer: IpAddr) -> bool {
    cidrs.iter().any(|c| c.contains(peer))
}

/// Server-side settings of the plain `ws` transport.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsServerOptions {
    /// Only an upgrade on this path reaches SSH (`--ws-path`, default `/`).
    pub path: String,
    /// Time for a connection's request head (10 s).
    pub header_timeout: Duration,
    /// Connections still in their request head at once
    /// (`--max-tls-handshakes`, default 1024).
    pub max_handshakes: usize,
    /// The same for one source network (default 64; 0 = no cap).
    pub max_handshakes_per_source: usize,
    /// What counts as one source network.
    pub net_block: crate::limits::NetBlock,
    /// Reverse proxies (`ADDR/BITS`) whose `X-Forwarded-For` names the
    /// client (`--ws-forwarded-from`); from anyone else it is ignored.
    pub forwarded_from: Vec<String>,
    /// `--proxy-protocol`: a PROXY header comes first and names the client.
    pub(crate) proxy_protocol: Option<crate::io::proxy_protocol::ProxyProtocol>,
}

impl WsServerOptions {
    /// Defaults for `path`.
    pub fn new(path: impl Into<String>) -> Self {
        WsServerOptions {
            path: path.into(),
            header_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            max_handshakes_per_source: 64,
            net_block: crate::limits::NetBlock::default(),
            forwarded_from: Vec::new(),
            proxy_protocol: None,
        }
    }
}

/// Accepts WebSocket connections over plain TCP (`ws`), for a reverse
/// proxy in front that terminates TLS. Dropping it stops the accept loop.
#[derive(Debug)]
pub struct WsAcceptor(super::TlsAcceptor);

impl WsAcceptor {
    /// Bind `addr` and start accepting.
    pub async fn bind(addr: &str, opts: WsServerOptions) -> Result<Self> {
        check_path(&opts.path)
            .map_err(|reason| Error::config("--ws-path", opts.path.clone(), reason))?;
        let forwarded_from = parse_cidrs(&opts.forwarded_from)?;
        let (listener, local) = super::tcp::bind_listener(addr).await?;
        let lo = super::tls::LoopOptions {
            kind: super::TransportKind::Ws,
            handshake_timeout: opts.header_timeout,
            max_handshakes: opts.max_handshakes,
            max_handshakes_per_source: opts.max_handshakes_per_source,
            net_block: opts.net_block,
            gate: super::tls::Gate::WebSocket {
                path: opts.path.as_str().into(),
                web: Arc::new(StealthOptions {
                    header_timeout: opts.header_timeout,
                    ..StealthOptions::default()
                }),
                forwarded_from: forwarded_from.into(),
            },
            proxy_protocol: opts.proxy_protocol,
        };
        Ok(WsAcceptor(super::TlsAcceptor::plain(
            listener, local, lo, "ws",
        )))
    }
}

impl super::Acceptor for WsAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxStream, super::PeerInfo)>> {
        super::Acceptor::accept(&mut self.0)
    }

    fn describe(&self) -> String {
        super::Acceptor::describe(&self.0)
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        super::Acceptor::local_addr(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn permit() -> tokio::sync::OwnedSemaphorePermit {
        Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap()
    }

    fn ends() -> stealth::Ends {
        stealth::Ends {
            client: "127.0.0.1:1".parse().unwrap(),
            local: None,
        }
    }

    const UPGRADE: &str = "GET /s3cret HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[test]
    fn paths_are_checked() {
        assert!(check_path("/").is_ok());
        assert!(check_path("/a-b_c~9/%20").is_ok());
        for bad in ["", "x", "/a?b", "/a#b", "/a b", "/ä"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_full_upgrade_on_the_path_passes() {
        assert!(matches!(
            judge(UPGRADE.as_bytes(), "/s3cret"),
            Head::Upgrade(None)
        ));
        let via = UPGRADE.replace(
            "Host: x\r\n",
            "Host: x\r\nX-Forwarded-For: 127.0.0.7, 127.0.0.9\r\nX-Real-IP: 127.0.0.8\r\n",
        );
        let nine: IpAddr = "127.0.0.9".parse().unwrap();
        assert!(matches!(judge(via.as_bytes(), "/s3cret"), Head::Upgrade(Some(ip)) if ip == nine));
        let real = UPGRADE.replace("Host: x\r\n", "Host: x\r\nX-Real-IP: ::1\r\n");
        let one: IpAddr = "::1".parse().unwrap();
        assert!(matches!(judge(real.as_bytes(), "/s3cret"), Head::Upgrade(Some(ip)) if ip == one));
        let parsed = parse_cidrs(&["127.0.0.1".into(), "::1/128".into(), " 10.0.0.0/8".into()]);
        let shown: Vec<String> = parsed.unwrap().iter().map(|c| c.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]);
        assert_eq!(
            parse_cidrs(&["10.0.0.0/8".into(), "10.0.0.0/33".into()])
                .unwrap_err()
                .to_string(),
            "invalid --ws-forwarded-from value \"10.0.0.0/33\": expected ADDR or ADDR/BITS"
        );
        assert!(matches!(judge(UPGRADE.as_bytes(), "/other"), Head::Web));
        let query = UPGRADE.replace("/s3cret", "/s3cret?x");
        assert!(matches!(judge(query.as_bytes(), "/s3cret"), Head::Web));
        let no_key = UPGRADE.replace("Sec-WebSocket-Key", "X-Key");
        assert!(matches!(judge(no_key.as_bytes(), "/s3cret"), Head::Web));
        let post = UPGRADE.replace("GET", "POST");
        assert!(matches!(judge(post.as_bytes(), "/s3cret"), Head::Web));
        let half = &UPGRADE.as_bytes()[..40];
        assert!(matches!(judge(half, "/s3cret"), Head::More));
        // nginx answers a bad first line at once; so must we.
        assert!(matches!(judge(b"SSH-2.0-x\r\n", "/s3cret"), Head::Web));
    }

    #[tokio::test]
    async fn an_upgrade_carries_bytes_both_ways() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let web = StealthOptions::default();
            let (mut s, _) = upgrade(server_io, "/s3cret", &web, permit(), ends())
                .await
                .expect("the upgrade is accepted");
            let mut got = vec![0u8; 200_000];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(&got).await.unwrap();
            s.flush().await.unwrap();
            s.shutdown().await.unwrap();
        });
        let (ws, resp) =
            tokio_tungstenite::client_async_with_config("ws://x/s3cret", client_io, Some(config()))
                .await
                .unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        let mut c = WsStream::new(ws);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        c.write_all(&data).await.unwrap();
        c.flush().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, data);
        server.await.unwrap();
    }

    /// What the acceptor reports as the peer of an upgrade that says
    /// `X-Forwarded-For: 127.0.0.9`, trusting `forwarded_from`.
    async fn peer_seen(forwarded_from: &[&str]) -> std::net::IpAddr {
        use super::super::Acceptor as _;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut opts = WsServerOptions::new("/p");
        opts.forwarded_from = forwarded_from.iter().map(|s| s.to_string()).collect();
        let mut acceptor = WsAcceptor::bind("127.0.0.1:0", opts).await.unwrap();
        let addr = acceptor.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut req = format!("ws://{addr}/p").into_client_request().unwrap();
            req.headers_mut()
                .insert("x-forwarded-for", "127.0.0.5, 127.0.0.9".parse().unwrap());
            let (ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(ws);
        });
        let (_, info) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.transport, super::super::TransportKind::Ws);
        client.await.unwrap();
        info.remote_addr.unwrap().ip()
    }

    #[tokio::test]
    async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
        let nine: std::net::IpAddr = "127.0.0.9".parse().unwrap();
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(peer_seen(&["127.0.0.1/32"]).await, nine);
        assert_eq!(peer_seen(&["10.0.0.0/8"]).await, local);
        assert_eq!(peer_seen(&[]).await, local);
        let bad = WsServerOptions {
            forwarded_from: vec!["nonsense".into()],
            ..WsServerOptions::new("/p")
        };
        let e = WsAcceptor::bind("127.0.0.1:0", bad).await.unwrap_err();
        assert!(e.to_string().contains("--ws-forwarded-from"), "{e}");
    }

    #[tokio::test]
    async fn a_wrong_path_gets_the_decoy_404() {
        let (mut client, server_io) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            upgrade(
                server_io,
                "/s3cret",
                &StealthOptions::default(),
                permit(),
                ends(),
            )
            .await
        });
        let req = UPGRADE
            .replace("/s3cret", "/guess")
            .replace("Connection: keep-alive, Upgrade", "Connection: close");
        client.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nServer: nginx/"),
            "{text}"
        );
        assert!(server.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_oversized_message_ends_the_stream_with_an_error() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let (mut s, _) = upgrade(server_io, "/", &StealthOptions::default(), permit(), ends())
                .await
                .unwrap();
            let mut buf = vec![0u8; 1024];
            s.read(&mut buf).await
        });
        let big = WebSocketConfig::default();
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config("ws://x/", client_io, Some(big))
                .await
                .unwrap();
        use futures_sink::Sink as _;
        let msg = Message::Binary(Bytes::from(vec![0u8; MAX_MESSAGE + 1]));
        let _ = std::future::poll_fn(|cx| Pin::new(&mut ws).poll_ready(cx)).await;
        let _ = Pin::new(&mut ws).start_send(msg);
        let _ = std::future::poll_fn(|cx| Pin::new(&mut ws).poll_flush(cx)).await;
        let got = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert!(got.is_err(), "{got:?}");
    }
}
