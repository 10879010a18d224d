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
    let parts = split(value)?;
    match parts.port {
        // A colon in an unbracketed host: a bare IPv6 address, no port.
        Some(_) if !parts.bracketed && parts.host.contains(':') => {
            Ok((value.to_string(), default_port))
        }
        _ if !parts.bracketed && parts.host.is_empty() => Err(HostPortError),
        Some(p) => Ok((
            parts.host.to_string(),
            p.parse().map_err(|_| HostPortError)?,
        )),
        None => Ok((parts.host.to_string(), default_port)),
    }
}

/// `host[:port]` cut into its host and the port's text, before either is
/// read: for [`parse`], and for grammars whose ports are not plain numbers
/// (`permitopen="*:*"` in authorized_keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts<'a> {
    /// The host, without brackets; may be empty.
    pub host: &'a str,
    /// The text after the port's colon, if there is one.
    pub port: Option<&'a str>,
    /// The host was written in brackets (`[::1]:22`).
    pub bracketed: bool,
}

/// Cut `value` at its port's colon: after `]` for a bracketed host (which
/// must be followed by `:port` or nothing), else at the last colon.
pub(crate) fn split(value: &str) -> Result<Parts<'_>, HostPortError> {
    if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(HostPortError)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(HostPortError),
        };
        return Ok(Parts {
            host,
            port,
            bracketed: true,
        });
    }
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (value, None),
    };
    Ok(Parts {
        host,
        port,
        bracketed: false,
    })
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
    fn splits_at_the_port_colon() {
        let parts = |host, port, bracketed| Parts {
            host,
            port,
            bracketed,
        };
        assert_eq!(split("h:*"), Ok(parts("h", Some("*"), false)));
        assert_eq!(split("[::1]:*"), Ok(parts("::1", Some("*"), true)));
        assert_eq!(split("[::1]"), Ok(parts("::1", None, true)));
        assert_eq!(split("8080"), Ok(parts("8080", None, false)));
        assert_eq!(split("a:b:1"), Ok(parts("a:b", Some("1"), false)));
        assert_eq!(split("[]:1"), Ok(parts("", Some("1"), true)));
        for bad in ["[::1", "[::1]x", "[a]b]:1"] {
            assert_eq!(split(bad), Err(HostPortError), "{bad:?}");
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
