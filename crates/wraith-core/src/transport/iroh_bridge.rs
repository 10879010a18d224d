//! A loopback HTTP CONNECT listener that dials through a SOCKS5 proxy.
//!
//! iroh reaches its relay through HTTP CONNECT proxies only. For
//! `--proxy socks5://…` the client runs this bridge on 127.0.0.1 and hands
//! iroh its address; each CONNECT becomes a SOCKS5 dial (the relay's name
//! unresolved, so DNS happens at the proxy) and then a byte splice.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::proxy::{self, ProxyUrl};
use crate::error::{Error, Result};

/// Largest request head accepted from iroh.
const MAX_HEAD: usize = 8 * 1024;

/// How long iroh may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The running bridge; stops when dropped.
#[derive(Debug)]
pub(crate) struct ConnectBridge {
    url: url::Url,
    stop: CancellationToken,
}

impl ConnectBridge {
    /// Listen on a free loopback port and serve until dropped.
    pub(crate) async fn start(socks: ProxyUrl) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("cannot start the SOCKS5 bridge for iroh (--proxy)", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("cannot start the SOCKS5 bridge for iroh (--proxy)", e))?;
        let url = url::Url::parse(&format!("http://{addr}")).map_err(|e| Error::Transport {
            server: "iroh".into(),
            reason: format!("cannot start the SOCKS5 bridge for iroh (--proxy): {e}"),
        })?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((conn, _)) = accepted else {
                    continue;
                };
                let socks = socks.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = serve(conn, &socks) => {}
                    }
                });
            }
        });
        Ok(ConnectBridge { url, stop })
    }

    /// The proxy URL to give iroh.
    pub(crate) fn url(&self) -> url::Url {
        self.url.clone()
    }
}

impl Drop for ConnectBridge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(mut conn: TcpStream, socks: &ProxyUrl) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut conn)).await {
        Ok(Some(h)) => h,
        _ => return,
    };
    let Some((host, port)) = parse_connect(&head) else {
        let _ = conn
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let mut upstream = match proxy::dial(Some(socks), &host, port).await {
        Ok(s) => s,
        Err(reason) => {
            tracing::debug!(%reason, "iroh relay connection through the SOCKS5 proxy failed");
            let _ = conn
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                .await;
            return;
        }
    };
    if conn
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
}

/// Read up to the blank line that ends the request head, never past it
/// (iroh sends nothing more before our reply).
async fn read_head(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while head.len() < MAX_HEAD {
        if conn.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
        if head.ends_with(b"\r\n\r\n") {
            return Some(head);
        }
    }
    None
}

/// `CONNECT host:port HTTP/1.x` → (host, port); IPv6 hosts in brackets.
pub(crate) fn parse_connect(head: &[u8]) -> Option<(String, u16)> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split_ascii_whitespace();
    if parts.next()? != "CONNECT" {
        return None;
    }
    let authority = parts.next()?;
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let (host, port) = authority.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // A name or address only: no control characters, no stray brackets.
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_control() || matches!(c, '[' | ']'))
    {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines_parse() {
        assert_eq!(
            parse_connect(b"CONNECT relay.example:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("relay.example".into(), 443))
        );
        assert_eq!(
            parse_connect(b"CONNECT [::1]:3340 HTTP/1.1\r\n\r\n"),
            Some(("::1".into(), 3340))
        );
        assert_eq!(parse_connect(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_connect(b"CONNECT nohost HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_connect(b"CONNECT :80 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_connect(b"CONNECT a:99999 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_connect(b"\xff\xfe"), None);
        // Found by fuzz/fuzz_targets/http_connect_request.rs.
        assert_eq!(
            parse_connect(b"CONNECT a\x0e\x00b:80 HTTP/1.1\r\n\r\n"),
            None
        );
        assert_eq!(parse_connect(b"CONNECT [[::1]]:80 HTTP/1.1\r\n\r\n"), None);
    }
}
