//! HTTP CONNECT (RFC 9110 §9.3.6), sans-IO: the request wraith sends to an
//! upstream HTTP proxy (`--proxy http://`) and the check of its answer, and
//! the request line the iroh relay bridge reads.

use base64::Engine as _;

use super::host_port::{HostPort, valid_dial_host};

/// The client side: a CONNECT request for `host:port`, with Basic
/// credentials when the proxy URL carries them.
pub(crate) fn connect_request(host: &str, port: u16, auth: Option<&(String, String)>) -> String {
    let authority = HostPort(host, port);
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

/// The server side, for the iroh relay bridge: `CONNECT host:port
/// HTTP/1.x` → (host, port); IPv6 hosts in brackets. A host that no dial
/// would take is refused here.
#[cfg_attr(not(feature = "iroh"), allow(dead_code))]
pub(crate) fn parse_request(head: &[u8]) -> Option<(String, u16)> {
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
    // A name or address only, held to the rule every dial follows: no
    // control characters, no Unicode spaces, no stray brackets.
    if !valid_dial_host(host) {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_refusal_text_is_printable_and_bounded() {
        // Found by fuzz/fuzz_targets/http_connect_response.rs: the proxy's
        // reason phrase reached the error (terminal, log) verbatim.
        let head = format!(
            "HTTP/1.1 407 Proxy \u{1b}[2J\u{0}{}\r\n\r\n",
            "x".repeat(10_000)
        );
        let err = check_response(head.as_bytes()).unwrap_err();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.len() < 300, "{} bytes", err.len());
        assert!(err.contains("407"), "{err}");
        // A status that is not three digits is no status.
        assert!(check_response(b"HTTP/1.1 2xx OK\r\n\r\n").is_err());
    }

    #[test]
    fn http_connect_messages() {
        assert_eq!(
            connect_request("h", 443, None),
            "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"
        );
        let r = connect_request("::1", 22, Some(&("u".into(), "p".into())));
        assert!(r.starts_with("CONNECT [::1]:22 HTTP/1.1\r\n"));
        assert!(r.contains("Proxy-Authorization: Basic dTpw\r\n"));
        assert!(check_response(b"HTTP/1.1 200 Connection established\r\n\r\n").is_ok());
        assert!(check_response(b"HTTP/1.0 200 OK\r\n\r\n").is_ok());
        let e = check_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").unwrap_err();
        assert!(e.contains("407") && e.contains("user:pass@"), "{e}");
        assert!(check_response(b"SSH-2.0-x\r\n\r\n").is_err());
    }

    #[test]
    fn connect_lines_parse() {
        assert_eq!(
            parse_request(b"CONNECT relay.example:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("relay.example".into(), 443))
        );
        assert_eq!(
            parse_request(b"CONNECT [::1]:3340 HTTP/1.1\r\n\r\n"),
            Some(("::1".into(), 3340))
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request(b"CONNECT nohost HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request(b"CONNECT :80 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request(b"CONNECT a:99999 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request(b"\xff\xfe"), None);
        // Found by fuzz/fuzz_targets/http_connect_request.rs.
        assert_eq!(
            parse_request(b"CONNECT a\x0e\x00b:80 HTTP/1.1\r\n\r\n"),
            None
        );
        assert_eq!(parse_request(b"CONNECT [[::1]]:80 HTTP/1.1\r\n\r\n"), None);
        // Found by fuzzing: a Unicode space (U+00A0) inside the host.
        assert_eq!(
            parse_request("CONNECT a0\u{a0}:99 HTTP/1.1\r\n\r\n".as_bytes()),
            None
        );
    }
}
