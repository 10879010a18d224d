//! The HTTP proxy listener's requests (RFC 9110 §9.3.6 and §7.1), sans-IO:
//! `CONNECT host:port` for a tunnel, or a request with an absolute
//! `http://` URI to be forwarded as a proxy would, with its head rewritten
//! for the origin server. The head is parsed by `httparse`; this module
//! decides what it means and what to answer.
//!
//! Nothing here resolves a name: the host goes to the SSH server as text,
//! as with socks5h. Error messages never hold the requested destination, so
//! they are safe to log.

use super::host_port::{self, HostPort, valid_dial_host};

/// The longest request head read; a longer one is answered 431.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Headers a request may have.
const MAX_HEADERS: usize = 100;

/// What a client asked of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProxyRequest {
    /// A tunnel to `host:port`; answer 200 and carry bytes both ways.
    Connect {
        /// Host name or address, without brackets.
        host: String,
        /// The port.
        port: u16,
    },
    /// A plain HTTP request for `host:port`; send `head` (rewritten to
    /// origin form, with `Connection: close`) and then carry bytes.
    Forward {
        /// Host name or address, without brackets.
        host: String,
        /// The port (80 unless the URI names one).
        port: u16,
        /// The request head to send to the origin server.
        head: Vec<u8>,
    },
}

/// Why a request was refused, and the status that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Not HTTP/1.x, or a head httparse refuses.
    #[error("not an HTTP/1.x request")]
    Malformed,
    /// The head does not end within [`MAX_HEAD`] bytes, or has too many
    /// headers.
    #[error("request head too large")]
    TooLarge,
    /// A request in origin form (`GET /`): the client did not treat us as
    /// a proxy.
    #[error("not a proxy request (the URI is not absolute)")]
    NotProxyRequest,
    /// An absolute URI whose scheme is not `http` (https goes through
    /// CONNECT).
    #[error("only http:// URIs are forwarded; use CONNECT for others")]
    Scheme,
    /// The authority is not `host[:port]` with a host a dial would take.
    #[error("bad host or port in the request")]
    BadAuthority,
}

impl ProxyError {
    /// The status line's code and reason.
    pub(crate) fn status(self) -> (u16, &'static str) {
        match self {
            ProxyError::TooLarge => (431, "Request Header Fields Too Large"),
            _ => (400, "Bad Request"),
        }
    }
}

/// A short response with no body, closing the connection.
pub(crate) fn response(code: u16, reason: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// The answer to a CONNECT that reached its target.
pub(crate) const CONNECTED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Parses the request head at the start of `buf`: `Ok(None)` while it is
/// incomplete, else the request and the bytes the head took (what follows
/// belongs to the body or the tunnel).
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(ProxyRequest, usize)>, ProxyError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(ProxyError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ProxyError::TooLarge),
        Err(_) => return Err(ProxyError::Malformed),
    };
    if used > MAX_HEAD {
        return Err(ProxyError::TooLarge);
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(ProxyError::Malformed);
    };
    if method == "CONNECT" {
        let (host, port) = authority(target, None)?;
        return Ok(Some((ProxyRequest::Connect { host, port }, used)));
    }
    let Some(rest) = strip_scheme(target)? else {
        return Err(ProxyError::NotProxyRequest);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (auth, path) = rest.split_at(end);
    let (host, port) = authority(auth, Some(80))?;
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let head = origin_head(method, &path, &req, HostPort(&host, port));
    Ok(Some((ProxyRequest::Forward { host, port, head }, used)))
}

/// `http://rest` → `Some(rest)`; origin form → `None`; another scheme is
/// an error. Schemes are case-insensitive.
fn strip_scheme(target: &str) -> Result<Option<&str>, ProxyError> {
    let Some((scheme, rest)) = target.split_once("://") else {
        return Ok(None);
    };
    if target.starts_with('/') {
        return Ok(None);
    }
    if scheme.eq_ignore_ascii_case("http") {
        Ok(Some(rest))
    } else {
        Err(ProxyError::Scheme)
    }
}

/// `host:port` (or `host` when `default` is given), IPv6 in brackets;
/// credentials (`user@`) are refused.
fn authority(text: &str, default: Option<u16>) -> Result<(String, u16), ProxyError> {
    if text.contains('@') {
        return Err(ProxyError::BadAuthority);
    }
    let parts = host_port::split(text).map_err(|_| ProxyError::BadAuthority)?;
    let port = match (parts.port, default) {
        (Some(p), _) => p.parse::<u16>().ok().filter(|p| *p != 0),
        (None, d) => d,
    }
    .ok_or(ProxyError::BadAuthority)?;
    if parts.host.is_empty() || !valid_dial_host(parts.host) {
        return Err(ProxyError::BadAuthority);
    }
    Ok((parts.host.to_owned(), port))
}

/// Headers that speak to the proxy (or to this one hop) and are not
/// passed on: RFC 9110 §7.6.1.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The head for the origin server: origin-form target, the client's
/// end-to-end headers, a `Host` if it sent none, and `Connection: close`,
/// since the channel carries this one request.
fn origin_head(
    method: &str,
    path: &str,
    req: &httparse::Request<'_, '_>,
    host: HostPort<'_>,
) -> Vec<u8> {
    let version = if req.version == Some(0) { "1.0" } else { "1.1" };
    let mut head = format!("{method} {path} HTTP/{version}\r\n").into_bytes();
    let mut has_host = false;
    for h in req.headers.iter().filter(|h| !hop_by_hop(h.name)) {
        has_host |= h.name.eq_ignore_ascii_case("host");
        head.extend_from_slice(h.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(h.value);
        head.extend_from_slice(b"\r\n");
    }
    if !has_host {
        head.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> (ProxyRequest, usize) {
        match parse(buf) {
            Ok(Some(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connect_names_a_tunnel() {
        let req = b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\nrest";
        let (r, used) = done(req);
        assert_eq!(
            r,
            ProxyRequest::Connect {
                host: "db.internal".into(),
                port: 5432
            }
        );
        assert_eq!(&req[used..], b"rest");
        let (r, _) = done(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n");
        assert_eq!(
            r,
            ProxyRequest::Connect {
                host: "::1".into(),
                port: 443
            }
        );
        for bad in [
            &b"CONNECT nohost HTTP/1.1\r\n\r\n"[..],
            b"CONNECT h:0 HTTP/1.1\r\n\r\n",
            b"CONNECT h:99999 HTTP/1.1\r\n\r\n",
            b"CONNECT u@h:80 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyError::BadAuthority), "{bad:?}");
        }
    }

    #[test]
    fn absolute_uris_are_rewritten_for_the_origin() {
        let req = b"GET http://example.internal:8080/a/b?c=d HTTP/1.1\r\n\
            Host: example.internal:8080\r\nProxy-Connection: keep-alive\r\n\
            Proxy-Authorization: Basic eA==\r\nAccept: */*\r\n\r\nbody";
        let (r, used) = done(req);
        let ProxyRequest::Forward { host, port, head } = r else {
            panic!()
        };
        assert_eq!((host.as_str(), port), ("example.internal", 8080));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /a/b?c=d HTTP/1.1\r\nHost: example.internal:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(&req[used..], b"body");
        // No path, no port, no Host header: all filled in.
        let (r, _) = done(b"HEAD HTTP://h HTTP/1.0\r\n\r\n");
        let ProxyRequest::Forward { port, head, .. } = r else {
            panic!()
        };
        assert_eq!(port, 80);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HEAD / HTTP/1.0\r\nHost: h:80\r\nConnection: close\r\n\r\n"
        );
        let (r, _) = done(b"GET http://h?q HTTP/1.1\r\n\r\n");
        assert!(matches!(r, ProxyRequest::Forward { head, .. } if head.starts_with(b"GET /?q ")));
    }

    #[test]
    fn what_is_not_a_proxy_request_is_refused_with_its_status() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(ProxyError::NotProxyRequest)
        );
        assert_eq!(
            parse(b"GET https://h/ HTTP/1.1\r\n\r\n"),
            Err(ProxyError::Scheme)
        );
        assert_eq!(parse(b"SSH-2.0-x\r\n\r\n"), Err(ProxyError::Malformed));
        assert_eq!(parse(b"GET http://h/"), Ok(None));
        let long = format!("GET http://h/ HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(long.as_bytes()), Err(ProxyError::TooLarge));
        assert_eq!(ProxyError::TooLarge.status().0, 431);
        assert_eq!(ProxyError::Scheme.status().0, 400);
        assert_eq!(
            response(502, "Bad Gateway"),
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
}
