//! Client `--proxy`: dial the server's TCP connection through an upstream
//! SOCKS5 (RFC 1928, user/password RFC 1929) or HTTP CONNECT proxy, the way
//! out of networks that allow nothing else.
//!
//! The handshakes are sans-IO (request builders and reply parsers over bytes,
//! unit-tested below); [`dial`] only moves bytes. Replies are read with hard
//! size limits and never past their end, so the first byte after the proxy's
//! answer belongs to the transport (TLS or SSH). The server's host name goes
//! to a SOCKS5 proxy unresolved, so DNS happens on the proxy's side.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::SocketOpts;
use crate::error::{Error, Reason, Result};
use crate::proto::host_port::{HostPort, valid_dial_host};
use crate::proto::http_connect;
use crate::proto::socks5::client as socks5;

/// Largest HTTP CONNECT response head we read.
const MAX_HTTP_HEAD: usize = 16 * 1024;

/// How long the proxy handshake may take once TCP is up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The kind of upstream proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5 with the target name sent unresolved.
    Socks5,
    /// HTTP `CONNECT`.
    Http,
}

/// A parsed `--proxy` URL: `socks5://[user:pass@]host:port` or
/// `http://[user:pass@]host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// SOCKS5 or HTTP CONNECT.
    pub kind: ProxyKind,
    /// Proxy host (name or IP; IPv6 without brackets).
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// Optional credentials.
    pub auth: Option<(String, String)>,
}

// Credentials stay out of debug output and logs.
impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Http => "http",
        };
        write!(f, "{scheme}://{}", HostPort(&self.host, self.port))
    }
}

impl std::str::FromStr for ProxyUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::config("--proxy", redact(s), reason);
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected socks5://host:port or http://host:port"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "socks5" | "socks5h" => ProxyKind::Socks5,
            "http" => ProxyKind::Http,
            _ => return Err(bad("the scheme must be socks5:// or http://")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let user = percent_decode(u).ok_or_else(|| bad("bad %-escape in the user name"))?;
                let pass = percent_decode(p).ok_or_else(|| bad("bad %-escape in the password"))?;
                if user.len() > 255 || pass.len() > 255 {
                    return Err(bad("user name and password are limited to 255 bytes"));
                }
                (Some((user, pass)), hp)
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("expected ':' and a port after ']'")),
            };
            (h, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(bad("IPv6 addresses go in brackets: [::1]:1080"));
                }
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty()
            || host.contains(['/', '?', '#', '@', '[', ']'])
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("expected host:port after the scheme"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
            None => match kind {
                ProxyKind::Socks5 => 1080,
                ProxyKind::Http => 8080,
            },
        };
        Ok(ProxyUrl {
            kind,
            host: host.to_string(),
            port,
            auth,
        })
    }
}

/// The URL without its password, for error messages.
fn redact(s: &str) -> String {
    match (s.split_once("://"), s.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, hp))) => format!("{scheme}://***@{hp}"),
        _ => s.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Open a TCP connection to `host:port`, directly or through `proxy`, with
/// our socket options applied. A host that fails [`valid_dial_host`] is
/// refused.
pub(crate) async fn dial(
    proxy: Option<&ProxyUrl>,
    host: &str,
    port: u16,
) -> std::result::Result<TcpStream, Reason> {
    if !valid_dial_host(host) {
        return Err("not a valid host name".into());
    }
    let Some(proxy) = proxy else {
        let s = TcpStream::connect((host, port))
            .await
            .map_err(|e| Reason::with_source(e.to_string(), e))?;
        SocketOpts::STANDARD.apply(&s);
        return Ok(s);
    };
    let mut s = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| {
            Reason::with_source(format!("cannot reach the proxy {proxy} (--proxy): {e}"), e)
        })?;
    SocketOpts::STANDARD.apply(&s);
    let handshake = async {
        match proxy.kind {
            ProxyKind::Socks5 => socks5_connect(&mut s, proxy, host, port).await,
            ProxyKind::Http => http_connect(&mut s, proxy, host, port).await,
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(())) => Ok(s),
        Ok(Err(reason)) => Err(format!("proxy {proxy} (--proxy): {reason}").into()),
        Err(_) => Err(format!(
            "proxy {proxy} (--proxy): no answer within {}s",
            HANDSHAKE_TIMEOUT.as_secs()
        )
        .into()),
    }
}

fn io_err(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "the proxy closed the connection".into()
    } else {
        e.to_string()
    }
}

async fn socks5_connect(
    s: &mut TcpStream,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> std::result::Result<(), String> {
    s.write_all(&socks5::greeting(proxy.auth.is_some()))
        .await
        .map_err(io_err)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.map_err(io_err)?;
    match socks5::method(choice)? {
        socks5::Method::NoAuth => {}
        socks5::Method::UserPass => {
            let (u, p) = proxy
                .auth
                .as_ref()
                .ok_or("the proxy asked for a password we do not have")?;
            s.write_all(&socks5::user_pass(u, p))
                .await
                .map_err(io_err)?;
            let mut status = [0u8; 2];
            s.read_exact(&mut status).await.map_err(io_err)?;
            socks5::user_pass_status(status)?;
        }
    }
    s.write_all(&socks5::connect_request(host, port)?)
        .await
        .map_err(io_err)?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.map_err(io_err)?;
    let rest = socks5::reply_len(head)?;
    let mut tail = vec![0u8; rest];
    s.read_exact(&mut tail).await.map_err(io_err)?;
    Ok(())
}

async fn http_connect(
    s: &mut TcpStream,
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
) -> std::result::Result<(), String> {
    s.write_all(http_connect::connect_request(host, port, proxy.auth.as_ref()).as_bytes())
        .await
        .map_err(io_err)?;
    // One byte at a time: the bytes after the blank line are the server's,
    // and we must not swallow them.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HTTP_HEAD {
            return Err("the proxy's CONNECT response is too long".into());
        }
        let b = s.read_u8().await.map_err(io_err)?;
        head.push(b);
    }
    http_connect::check_response(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_hosts_are_one_unambiguous_name() {
        // Found by fuzz/fuzz_targets/http_connect_response.rs: a host with
        // ':' and ']' outside brackets was taken, and its display parsed
        // back as another host.
        for bad in [
            "socks5://a\u{6}b::1]:1080",
            "socks5://a::1:1080",
            "http://[::1]x:8080",
            "http://h\u{0}:8080",
            "http://[a]b]:8080",
        ] {
            assert!(bad.parse::<ProxyUrl>().is_err(), "{bad:?}");
        }
        let p: ProxyUrl = "socks5://[::1]".parse().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 1080));
    }

    #[test]
    fn proxy_urls_parse() {
        let p: ProxyUrl = "socks5://127.0.0.1:1080".parse().unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5);
        assert_eq!((p.host.as_str(), p.port, p.auth), ("127.0.0.1", 1080, None));
        let p: ProxyUrl = "http://al%40ice:p%3Ass@[::1]:3128/".parse().unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!((p.host.as_str(), p.port), ("::1", 3128));
        assert_eq!(p.auth, Some(("al@ice".into(), "p:ss".into())));
        assert_eq!(p.to_string(), "http://[::1]:3128");
        assert!(format!("{p:?}").contains("[::1]") && !format!("{p:?}").contains("p:ss"));
        assert_eq!("socks5://h".parse::<ProxyUrl>().unwrap().port, 1080);
        for bad in [
            "h:1080",
            "ftp://h:1",
            "socks5://:1",
            "http://h:x",
            "http://h:99999",
        ] {
            assert!(bad.parse::<ProxyUrl>().is_err(), "{bad}");
        }
        let err = "ftp://u:secret@h:1".parse::<ProxyUrl>().unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("--proxy"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_host_never_reaches_the_proxy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy: ProxyUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
        let e = dial(Some(&proxy), "a\r\nX: y", 80).await.unwrap_err();
        assert!(e.as_str().contains("not a valid host name"), "{e}");
        // Nothing connected to the proxy.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the proxy was contacted");
    }
}
