//! `host:port`: the one parser and the one formatter every part of wraith
//! uses (`--server`, `--stdio`, forward specs, proxies, the iroh bridge,
//! log fields). An IPv6 address is written in brackets (`[::1]:22`); a
//! bare IPv6 address without a port is read as a host.

use std::fmt;

/// Longest host name we dial: a DNS name is at most 253 characters (255
/// bytes on the wire), and SOCKS5 carries at most 255.
pub(crate) const MAX_HOST_LEN: usize = 253;

/// `host:port` for display, with IPv6 addresses in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a>(pub &'a str, pub u16);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let HostPort(host, port) = *self;
        if host.contains(':') {
            write!(f, "[{host}]:{port}")
        } else {
            write!(f, "{host}:{port}")
        }
    }
}

/// A value that is not `host[:port]`. The message never repeats the value:
/// callers that may show it (a user's own flag) add it themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected host[:port], e.g. example.com:2222 or [2001:db8::1]:22")]
pub struct HostPortError;

/// Split `host[:port]`, using `default_port` when none is given. The host
/// comes back without brackets.
pub fn parse(value: &str, default_port: u16) -> Result<(String, u16), HostPortError> {
    if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(HostPortError)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| HostPortError)?,
            None if after.is_empty() => default_port,
            None => return Err(HostPortError),
        };
        return Ok((host.to_string(), port));
    }
    match value.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            if h.is_empty() {
                return Err(HostPortError);
            }
            Ok((h.to_string(), p.parse().map_err(|_| HostPortError)?))
        }
        Some(_) => Ok((value.to_string(), default_port)), // bare IPv6
        None if !value.is_empty() => Ok((value.to_string(), default_port)),
        None => Err(HostPortError),
    }
}

/// Whether `host` may be dialed: an IP address (IPv6 without brackets) or a
/// DNS name in ASCII (IDNA A-labels), at most [`MAX_HOST_LEN`] characters
/// of letters, digits, `-`, `.`, `_`, plus `:` and `%` for IPv6 literals
/// and their zone. Anything else — CR, LF, spaces, other control
/// characters, brackets, `/`, `@` — could end or extend an HTTP CONNECT
/// line, or mean something else to a resolver, and is refused before any
/// of it is sent. Host names come from peers (`direct-tcpip`, the iroh
/// bridge), so this is checked for every dial, direct or through a proxy.
pub(crate) fn valid_dial_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'%'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_addresses_and_defaults() {
        assert_eq!(parse("h", 22), Ok(("h".into(), 22)));
        assert_eq!(parse("h:2222", 22), Ok(("h".into(), 2222)));
        assert_eq!(parse("[::1]:2222", 22), Ok(("::1".into(), 2222)));
        assert_eq!(parse("[::1]", 22), Ok(("::1".into(), 22)));
        assert_eq!(parse("::1", 22), Ok(("::1".into(), 22)));
        for bad in [
            "", ":22", "h:", "h:x", "h:70000", "[::1", "[::1]x", "[::1]:",
        ] {
            assert_eq!(parse(bad, 22), Err(HostPortError), "{bad:?}");
        }
    }

    #[test]
    fn formats_what_it_parses() {
        for (host, port) in [("example.com", 443), ("::1", 22), ("10.0.0.1", 1)] {
            let shown = HostPort(host, port).to_string();
            assert_eq!(parse(&shown, 9), Ok((host.to_string(), port)), "{shown}");
        }
        assert_eq!(HostPort("::1", 22).to_string(), "[::1]:22");
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
}
