//! The HTTP proxy listener (`--http-proxy`), beside SOCKS5 for tools that
//! honour only `HTTP_PROXY` / `HTTPS_PROXY` (apt, git, pip, npm, Docker):
//! `CONNECT host:port` opens a tunnel, and a plain `http://` request is
//! forwarded as a proxy would, one request per connection. Both go through
//! the channel opener, so names are resolved on the server. Parsing lives
//! in `proto::http_proxy`, without I/O.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::opener::{ChannelOpener, OpenError};
use crate::proto::http_proxy::{self as proto, CONNECTED, MAX_HEAD, ProxyRequest};

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The status for a channel that could not be opened.
fn status_for(e: &OpenError) -> (u16, &'static str) {
    match e {
        OpenError::Refused(russh::ChannelOpenFailure::AdministrativelyProhibited) => {
            (403, "Forbidden")
        }
        OpenError::Timeout => (504, "Gateway Timeout"),
        OpenError::SessionDown => (503, "Service Unavailable"),
        _ => (502, "Bad Gateway"),
    }
}

/// Reads until the head is complete (at most [`MAX_HEAD`] bytes).
async fn read_head(
    stream: &mut TcpStream,
) -> std::io::Result<std::result::Result<(ProxyRequest, Vec<u8>), proto::ProxyError>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match proto::parse(&buf) {
            Ok(Some((req, used))) => return Ok(Ok((req, buf.split_off(used)))),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        let room = (MAX_HEAD + 1 - buf.len().min(MAX_HEAD)).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read one client's request and carry it through a channel.
pub(super) async fn serve_client(
    mut stream: TcpStream,
    peer: SocketAddr,
    opener: ChannelOpener,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await;
    let (request, leftover) = match head {
        Err(_) => {
            let _ = stream
                .write_all(&proto::response(408, "Request Timeout"))
                .await;
            return Ok(());
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err(e))) => {
            let (code, reason) = e.status();
            tracing::debug!(error = %e, "http proxy request refused");
            stream.write_all(&proto::response(code, reason)).await?;
            return Ok(());
        }
        Ok(Ok(Ok(r))) => r,
    };
    let (host, port, first) = match request {
        ProxyRequest::Connect { host, port } => (host, port, None),
        ProxyRequest::Forward { host, port, head } => (host, port, Some(head)),
    };
    let mut channel = match opener.open_tcp(&host, port, peer).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "http proxy: cannot open channel");
            let (code, reason) = status_for(&e);
            stream.write_all(&proto::response(code, reason)).await?;
            return Ok(());
        }
    };
    match first {
        None => stream.write_all(CONNECTED).await?,
        Some(head) => channel.write_all(&head).await?,
    }
    if !leftover.is_empty() {
        // A body, or bytes the client sent right behind its CONNECT.
        channel.write_all(&leftover).await?;
    }
    crate::io::splice(&mut stream, &mut channel).await?;
    Ok(())
}
