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
use crate::error::{Error, Result};

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
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for ProxyUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Config {
            flag: "--proxy",
            value: redact(s),
            reason: reason.into(),
        };
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

/// Longest host name we dial: a DNS name is at most 253 characters (255
/// bytes on the wire), and SOCKS5 carries at most 255.
const MAX_HOST_LEN: usize = 253;

/// Whether `host` may be dialed: an IP address (IPv6 without brackets) or a
/// DNS name in ASCII (IDNA A-labels), at most [`MAX_HOST_LEN`] characters
/// of letters, digits, `-`, `.`, `_`, plus `:` and `%` for IPv6 literals
/// and their zone. Anything else — CR, LF, spaces, other control
/// characters, brackets, `/`, `@` — could end or extend an HTTP CONNECT
/// line, or mean something else to a resolver, and is refused before any
/// of it is sent. Host names come from peers (`direct-tcpip`), so this is
/// checked for every dial, direct or through a proxy.
pub(crate) fn valid_dial_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'%'))
}

/// Open a TCP connection to `host:port`, directly or through `proxy`, with
/// our socket options applied. A host that fails [`valid_dial_host`] is
/// refused.
pub(crate) async fn dial(
    proxy: Option<&ProxyUrl>,
    host: &str,
    port: u16,
) -> std::result::Result<TcpStream, String> {
    if !valid_dial_host(host) {
        return Err("not a valid host name".into());
    }
    let Some(proxy) = proxy else {
        let s = TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        SocketOpts::default().apply(&s);
        return Ok(s);
    };
    let mut s = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| format!("cannot reach the proxy {proxy} (--proxy): {e}"))?;
    SocketOpts::default().apply(&s);
    let handshake = async {
        match proxy.kind {
            ProxyKind::Socks5 => socks5_connect(&mut s, proxy, host, port).await,
            ProxyKind::Http => http_connect(&mut s, proxy, host, port).await,
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(())) => Ok(s),
        Ok(Err(reason)) => Err(format!("proxy {proxy} (--proxy): {reason}")),
        Err(_) => Err(format!(
            "proxy {proxy} (--proxy): no answer within {}s",
            HANDSHAKE_TIMEOUT.as_secs()
        )),
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
    s.write_all(http::connect_request(host, port, proxy.auth.as_ref()).as_bytes())
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
    http::check_response(&head)
}

/// SOCKS5 messages (RFC 1928, RFC 1929).
pub(crate) mod socks5 {
    use std::net::IpAddr;

    /// The authentication method the proxy picked.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Method {
        NoAuth,
        UserPass,
    }

    pub(crate) fn greeting(with_auth: bool) -> Vec<u8> {
        if with_auth {
            vec![5, 2, 0, 2]
        } else {
            vec![5, 1, 0]
        }
    }

    pub(crate) fn method(reply: [u8; 2]) -> Result<Method, String> {
        match reply {
            [5, 0] => Ok(Method::NoAuth),
            [5, 2] => Ok(Method::UserPass),
            [5, 0xff] => Err("the proxy accepts none of our authentication methods (does it need user:pass@ in --proxy?)".into()),
            [5, m] => Err(format!("the proxy chose an authentication method we did not offer ({m})")),
            _ => Err("not a SOCKS5 proxy (bad version in its reply)".into()),
        }
    }

    pub(crate) fn user_pass(user: &str, pass: &str) -> Vec<u8> {
        let (u, p) = (user.as_bytes(), pass.as_bytes());
        let mut m = vec![1, u.len().min(255) as u8];
        m.extend_from_slice(&u[..u.len().min(255)]);
        m.push(p.len().min(255) as u8);
        m.extend_from_slice(&p[..p.len().min(255)]);
        m
    }

    pub(crate) fn user_pass_status(reply: [u8; 2]) -> Result<(), String> {
        match reply {
            [1, 0] => Ok(()),
            [1, _] => Err("the proxy rejected the user name or password".into()),
            _ => Err("bad reply to user/password authentication".into()),
        }
    }

    /// CONNECT to `host:port`; a name is sent unresolved (ATYP 3).
    pub(crate) fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, String> {
        let mut m = vec![5, 1, 0];
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => {
                m.push(1);
                m.extend_from_slice(&a.octets());
            }
            Ok(IpAddr::V6(a)) => {
                m.push(4);
                m.extend_from_slice(&a.octets());
            }
            Err(_) => {
                let len = u8::try_from(host.len())
                    .map_err(|_| "the server name is too long for SOCKS5".to_string())?;
                m.push(3);
                m.push(len);
                m.extend_from_slice(host.as_bytes());
            }
        }
        m.extend_from_slice(&port.to_be_bytes());
        Ok(m)
    }

    /// Checks the first 5 bytes of the CONNECT reply and returns how many
    /// bytes of it are left to read.
    pub(crate) fn reply_len(head: [u8; 5]) -> Result<usize, String> {
        if head[0] != 5 {
            return Err("not a SOCKS5 proxy (bad version in its reply)".into());
        }
        if head[1] != 0 {
            let what = match head[1] {
                1 => "general failure",
                2 => "connection not allowed by ruleset",
                3 => "network unreachable",
                4 => "host unreachable",
                5 => "connection refused",
                6 => "TTL expired",
                7 => "command not supported",
                8 => "address type not supported",
                _ => "unknown error",
            };
            return Err(format!(
                "the proxy could not connect to the server: {what} (SOCKS5 reply {})",
                head[1]
            ));
        }
        // 4 header bytes are read, plus the first address byte.
        match head[3] {
            1 => Ok(4 - 1 + 2),
            4 => Ok(16 - 1 + 2),
            3 => Ok(usize::from(head[4]) + 2),
            t => Err(format!("bad address type {t} in the proxy's reply")),
        }
    }
}

/// HTTP CONNECT messages.
pub(crate) mod http {
    use base64::Engine as _;

    pub(crate) fn connect_request(
        host: &str,
        port: u16,
        auth: Option<&(String, String)>,
    ) -> String {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut r = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((u, p)) = auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            r.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        r.push_str("\r\n");
        r
    }

    /// Accepts any 2xx status; anything else is an error naming the status.
    pub(crate) fn check_response(head: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(head);
        let line = text.lines().next().unwrap_or("");
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.")
            || code.len() != 3
            || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("not an HTTP proxy (bad response to CONNECT)".into());
        }
        if code.starts_with('2') {
            return Ok(());
        }
        // The proxy's words reach the user's terminal and logs: printable
        // characters only, and not too many of them.
        let reason: String = parts
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .take(128)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let hint = if code == "407" {
            " (add user:pass@ to --proxy)"
        } else {
            ""
        };
        Err(format!("CONNECT refused: {code} {reason}{hint}"))
    }
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
    fn connect_refusal_text_is_printable_and_bounded() {
        // Found by fuzz/fuzz_targets/http_connect_response.rs: the proxy's
        // reason phrase reached the error (terminal, log) verbatim.
        let head = format!(
            "HTTP/1.1 407 Proxy \u{1b}[2J\u{0}{}\r\n\r\n",
            "x".repeat(10_000)
        );
        let err = http::check_response(head.as_bytes()).unwrap_err();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.len() < 300, "{} bytes", err.len());
        assert!(err.contains("407"), "{err}");
        // A status that is not three digits is no status.
        assert!(http::check_response(b"HTTP/1.1 2xx OK\r\n\r\n").is_err());
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

    #[test]
    fn socks5_messages() {
        assert_eq!(socks5::greeting(false), [5, 1, 0]);
        assert_eq!(socks5::greeting(true), [5, 2, 0, 2]);
        assert_eq!(socks5::method([5, 2]).unwrap(), socks5::Method::UserPass);
        assert!(
            socks5::method([5, 0xff])
                .unwrap_err()
                .contains("user:pass@")
        );
        assert!(socks5::method([4, 0]).is_err());
        assert_eq!(socks5::user_pass("u", "pw"), [1, 1, b'u', 2, b'p', b'w']);
        assert!(socks5::user_pass_status([1, 1]).is_err());
        assert_eq!(
            socks5::connect_request("example.com", 443).unwrap(),
            [&[5, 1, 0, 3, 11][..], b"example.com", &[1, 187]].concat()
        );
        assert_eq!(
            socks5::connect_request("10.0.0.1", 22).unwrap(),
            [5, 1, 0, 1, 10, 0, 0, 1, 0, 22]
        );
        assert_eq!(
            socks5::connect_request("::1", 22).unwrap().len(),
            4 + 16 + 2
        );
        assert!(socks5::connect_request(&"a".repeat(256), 1).is_err());
        assert_eq!(socks5::reply_len([5, 0, 0, 1, 127]).unwrap(), 5);
        assert_eq!(socks5::reply_len([5, 0, 0, 4, 0]).unwrap(), 17);
        assert_eq!(socks5::reply_len([5, 0, 0, 3, 7]).unwrap(), 9);
        assert!(
            socks5::reply_len([5, 5, 0, 1, 0])
                .unwrap_err()
                .contains("refused")
        );
        assert!(socks5::reply_len([5, 0, 0, 9, 0]).is_err());
    }

    #[test]
    fn only_plain_host_names_are_dialed() {
        for good in [
            "example.com",
            "xn--bcher-kva.example",
            "_srv.example",
            "10.0.0.1",
            "::1",
            "fe80::1%eth0",
            "localhost",
        ] {
            assert!(valid_dial_host(good), "{good}");
        }
        for bad in [
            "",
            "evil.example:80 HTTP/1.1\r\nX-Injected: yes\r\n\r\n",
            "a\nb",
            "a\rb",
            "a b",
            "a\tb",
            "a\0b",
            "a\u{7f}",
            "[::1]",
            "h]",
            "user@host",
            "host/path",
            "bücher.example",
            &"a".repeat(254),
        ] {
            assert!(!valid_dial_host(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_bad_host_never_reaches_the_proxy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy: ProxyUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
        let e = dial(Some(&proxy), "a\r\nX: y", 80).await.unwrap_err();
        assert!(e.contains("not a valid host name"), "{e}");
        // Nothing connected to the proxy.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the proxy was contacted");
    }

    #[test]
    fn http_connect_messages() {
        assert_eq!(
            http::connect_request("h", 443, None),
            "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"
        );
        let r = http::connect_request("::1", 22, Some(&("u".into(), "p".into())));
        assert!(r.starts_with("CONNECT [::1]:22 HTTP/1.1\r\n"));
        assert!(r.contains("Proxy-Authorization: Basic dTpw\r\n"));
        assert!(http::check_response(b"HTTP/1.1 200 Connection established\r\n\r\n").is_ok());
        assert!(http::check_response(b"HTTP/1.0 200 OK\r\n\r\n").is_ok());
        let e = http::check_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            .unwrap_err();
        assert!(e.contains("407") && e.contains("user:pass@"), "{e}");
        assert!(http::check_response(b"SSH-2.0-x\r\n\r\n").is_err());
    }
}
