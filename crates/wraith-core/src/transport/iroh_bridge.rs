//! A loopback HTTP CONNECT listener that dials through a SOCKS5 proxy.
//!
//! iroh reaches its relay through HTTP CONNECT proxies only. For
//! `--proxy socks5://…` the client runs this bridge on 127.0.0.1 and hands
//! iroh its address; each CONNECT becomes a SOCKS5 dial (the relay's name
//! unresolved, so DNS happens at the proxy) and then a byte splice.
//!
//! Any local user can connect to a loopback port, and the bridge would
//! carry them out through the user's SOCKS5 proxy with the user's proxy
//! credentials. So each bridge makes a random password at start and hands
//! iroh a proxy URL that carries it (iroh sends it as `Proxy-Authorization:
//! Basic`); a request without it gets `407` and is never dialed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use super::proxy::{self, ProxyUrl};
use crate::error::{Error, Reason, Result};
use crate::proto::http_connect;

/// The user name in the bridge's proxy URL; the password is random.
const USER: &str = "wraith";

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
        let password: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let url = url::Url::parse(&format!("http://{USER}:{password}@{addr}")).map_err(|e| {
            Error::Transport {
                server: "iroh".into(),
                reason: Reason::with_source(
                    format!("cannot start the SOCKS5 bridge for iroh (--proxy): {e}"),
                    e,
                ),
            }
        })?;
        let credentials = std::sync::Arc::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"))
        ));
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let mut listener = listener;
            let stop = token.clone().cancelled_owned();
            crate::io::accept_loop(&mut listener, "iroh relay bridge", stop, |(conn, _)| {
                let socks = socks.clone();
                let token = token.clone();
                let credentials = credentials.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = serve(conn, &socks, &credentials) => {}
                    }
                });
            })
            .await;
        });
        Ok(ConnectBridge { url, stop })
    }

    /// The proxy URL to give iroh, with the bridge's password in it.
    pub(crate) fn url(&self) -> url::Url {
        self.url.clone()
    }
}

impl Drop for ConnectBridge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(mut conn: TcpStream, socks: &ProxyUrl, credentials: &str) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut conn)).await {
        Ok(Some(h)) => h,
        _ => return,
    };
    if !authorized(&head, credentials) {
        let _ = conn
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"wraith\"\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
        return;
    }
    let Some((host, port)) = http_connect::parse_request(&head) else {
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

/// Whether the request head carries `Proxy-Authorization: <credentials>`
/// (compared in constant time).
fn authorized(head: &[u8], credentials: &str) -> bool {
    let Ok(text) = std::str::from_utf8(head) else {
        return false;
    };
    text.split("\r\n").skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("proxy-authorization")
                && bool::from(value.trim().as_bytes().ct_eq(credentials.as_bytes()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(bridge: &url::Url, authorization: Option<&str>) -> String {
        let addr = format!("{}:{}", bridge.host_str().unwrap(), bridge.port().unwrap());
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut req =
            "CONNECT relay.example:443 HTTP/1.1\r\nHost: relay.example:443\r\n".to_string();
        if let Some(a) = authorization {
            req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        c.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn only_the_bridges_own_process_gets_through() {
        // The upstream "SOCKS5 proxy": records that it was reached, then
        // hangs up (so the bridge answers 502).
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socks: ProxyUrl = format!("socks5://{}", upstream.local_addr().unwrap())
            .parse()
            .unwrap();
        let bridge = ConnectBridge::start(socks).await.unwrap();
        let url = bridge.url();
        assert_eq!(url.username(), USER);
        let password = url.password().unwrap().to_string();
        assert_eq!(password.len(), 64);
        let basic = |user: &str, pass: &str| {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            format!("Basic {b}")
        };

        // Another local process: no password, a wrong one, the right user
        // with a guessed password.
        for auth in [None, Some(basic(USER, "guess")), Some(basic(USER, ""))] {
            let answer = ask(&url, auth.as_deref()).await;
            assert!(answer.starts_with("HTTP/1.1 407 "), "{auth:?}: {answer}");
        }
        let reached = tokio::time::timeout(Duration::from_millis(300), upstream.accept()).await;
        assert!(reached.is_err(), "a foreign connection reached the proxy");

        // iroh, with the URL it was given.
        let own = tokio::spawn({
            let url = url.clone();
            let auth = basic(USER, &password);
            async move { ask(&url, Some(&auth)).await }
        });
        let (conn, _) = tokio::time::timeout(Duration::from_secs(5), upstream.accept())
            .await
            .expect("the bridge dials the proxy for its own process")
            .unwrap();
        drop(conn);
        let answer = own.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
    }
}
