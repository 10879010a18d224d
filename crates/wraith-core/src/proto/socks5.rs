//! SOCKS5 (RFC 1928) server side, sans-IO: parses a client's greeting and
//! request out of a byte buffer and encodes the replies to send back.
//!
//! Only the "no authentication" method is offered; the SOCKS listener is
//! bound to loopback by default, and credentials over plain SOCKS would add
//! nothing on top of that.
//!
//! This module must never touch a socket, resolve a name or decide policy:
//! the caller owns buffering, chooses what to do with BIND and UDP ASSOCIATE,
//! and opens the channel. It never looks at more than
//! [`MAX_HANDSHAKE_BYTES`] of input, never panics on any input, and its error
//! messages never contain the requested destination, so they are safe to log.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const SOCKS5_VERSION: u8 = 0x05;
/// The first byte a SOCKS4/4a client sends.
const SOCKS4_VERSION: u8 = 0x04;

const METHOD_NO_AUTH: u8 = 0x00;
/// RFC 1928 §3: "NO ACCEPTABLE METHODS"; the client must then close.
const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;

const CMD_CONNECT: u8 = 0x01;
const CMD_BIND: u8 = 0x02;
const CMD_UDP_ASSOCIATE: u8 = 0x03;

const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// SOCKS4 reply: VN=0, CD=91 "request rejected or failed", DSTPORT, DSTIP.
const SOCKS4_REJECTED: [u8; 8] = [0x00, 0x5B, 0, 0, 0, 0, 0, 0];

/// VER, NMETHODS and up to 255 METHODS.
const MAX_GREETING_BYTES: usize = 2 + 255;
/// VER, CMD, RSV, ATYP, domain length, a 255-byte domain, and the port.
const MAX_REQUEST_BYTES: usize = 4 + 1 + 255 + 2;

/// Upper bound on the bytes a complete greeting plus request can take, so a
/// caller can cap its read buffer: anything longer that still parses as
/// [`Parse::Incomplete`] cannot happen, and a buffer this size always holds
/// both messages in full.
pub(crate) const MAX_HANDSHAKE_BYTES: usize = MAX_GREETING_BYTES + MAX_REQUEST_BYTES;

/// Method-selection message choosing "no authentication"; send it after
/// [`parse_greeting`] succeeds.
pub(crate) const METHOD_SELECTED_NO_AUTH: [u8; 2] = [SOCKS5_VERSION, METHOD_NO_AUTH];

/// The destination a SOCKS client asked for.
///
/// Domain names are kept as text: resolving them is the SSH server's job, so
/// the client never leaks DNS queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetAddr {
    /// A literal IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// A domain name (validated: non-empty UTF-8 without control characters
    /// or whitespace) and port.
    Domain(String, u16),
}

impl TargetAddr {
    /// The host part: IP address text without brackets, or the domain name.
    pub(crate) fn host(&self) -> String {
        match self {
            TargetAddr::Ip(addr) => addr.ip().to_string(),
            TargetAddr::Domain(name, _) => name.clone(),
        }
    }

    /// The destination port.
    pub(crate) fn port(&self) -> u16 {
        match self {
            TargetAddr::Ip(addr) => addr.port(),
            TargetAddr::Domain(_, port) => *port,
        }
    }
}

impl fmt::Display for TargetAddr {
    /// `1.2.3.4:80`, `[::1]:80` or `example.com:443`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(addr) => addr.fmt(f),
            // A "domain" holding a colon (some clients send IPv6 literals as
            // ATYP 3) is bracketed so that the port stays unambiguous.
            TargetAddr::Domain(name, port) => super::host_port::HostPort(name, *port).fmt(f),
        }
    }
}

/// The CMD field of a SOCKS5 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Open a TCP connection to the target.
    Connect,
    /// Accept one inbound TCP connection (we answer CommandNotSupported).
    Bind,
    /// Relay UDP datagrams (we answer CommandNotSupported).
    UdpAssociate,
}

/// A parsed SOCKS5 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// What the client wants done.
    pub(crate) command: Command,
    /// Where the client wants to go.
    pub(crate) target: TargetAddr,
}

/// The REP field of a SOCKS5 reply (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Reply {
    /// The request succeeded.
    Succeeded = 0x00,
    /// General SOCKS server failure.
    GeneralFailure = 0x01,
    /// Connection not allowed by ruleset.
    NotAllowed = 0x02,
    /// Network unreachable.
    NetworkUnreachable = 0x03,
    /// Host unreachable.
    HostUnreachable = 0x04,
    /// Connection refused. SSH's channel-open failure cannot tell a
    /// refusal from other connect failures, so we never send it yet.
    #[allow(dead_code)]
    ConnectionRefused = 0x05,
    /// TTL expired (used for timeouts).
    TtlExpired = 0x06,
    /// Command not supported.
    CommandNotSupported = 0x07,
    /// Address type not supported.
    AddressTypeNotSupported = 0x08,
}

/// Outcome of parsing a prefix of the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parse<T> {
    /// The buffer is a valid prefix so far; read more bytes and call again
    /// with the whole buffer.
    Incomplete,
    /// A complete message and the number of bytes it used; any bytes after
    /// them belong to the next message and were not looked at.
    Done(T, usize),
}

/// Why a SOCKS handshake was refused.
///
/// Every parse error is final: send [`Socks5Error::reply`] (if any) and close
/// the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Socks5Error {
    /// The client sent a SOCKS4/4a greeting.
    #[error(
        "client speaks SOCKS4, but only SOCKS5 is supported; configure the application to use SOCKS5 (e.g. socks5h://)"
    )]
    Socks4Client,
    /// The first byte is not a SOCKS version we know.
    #[error("not a SOCKS5 client: version byte is {0:#04x}, expected 0x05{hint}", hint = version_hint(*.0))]
    UnsupportedVersion(u8),
    /// The greeting does not offer "no authentication" (0x00).
    #[error(
        "SOCKS5 client offers no acceptable authentication method (offered {offered:02x?}); only 0x00 \"no authentication\" is supported"
    )]
    NoAcceptableMethod {
        /// The METHODS the client listed (possibly none).
        offered: Vec<u8>,
    },
    /// CMD is not CONNECT, BIND or UDP ASSOCIATE.
    #[error(
        "unknown SOCKS5 command {0:#04x}; expected 0x01 CONNECT, 0x02 BIND or 0x03 UDP ASSOCIATE"
    )]
    UnknownCommand(u8),
    /// RSV is not zero.
    #[error("SOCKS5 request has reserved byte {0:#04x}, which must be 0x00")]
    NonZeroReserved(u8),
    /// ATYP is not IPv4, domain name or IPv6.
    #[error(
        "unknown SOCKS5 address type {0:#04x}; expected 0x01 IPv4, 0x03 domain name or 0x04 IPv6"
    )]
    UnknownAddressType(u8),
    /// A domain name of length zero.
    #[error("SOCKS5 request has an empty domain name")]
    EmptyDomain,
    /// A domain name that is not UTF-8.
    #[error("SOCKS5 request domain name is not valid UTF-8")]
    DomainNotUtf8,
    /// A domain name with a control character (NUL included) or whitespace.
    #[error(
        "SOCKS5 request domain name contains forbidden character {0:?} (control characters and whitespace are not allowed)"
    )]
    DomainForbiddenChar(char),
    /// A UDP datagram shorter than its RSV FRAG ATYP DST.ADDR DST.PORT
    /// header.
    #[error("SOCKS5 UDP datagram is shorter than its header")]
    UdpTruncated,
}

impl Socks5Error {
    /// Bytes to send to the client before closing, when the protocol defines
    /// a reply for this failure.
    pub(crate) fn reply(&self) -> Option<Vec<u8>> {
        match self {
            // A SOCKS4 client understands only a SOCKS4 reply.
            Socks5Error::Socks4Client => Some(SOCKS4_REJECTED.to_vec()),
            // Whoever this is does not speak SOCKS; anything we send would be
            // noise to it.
            Socks5Error::UnsupportedVersion(_) => None,
            Socks5Error::NoAcceptableMethod { .. } => {
                Some(vec![SOCKS5_VERSION, METHOD_NONE_ACCEPTABLE])
            }
            Socks5Error::UnknownCommand(_) => Some(encode_reply(Reply::CommandNotSupported, None)),
            Socks5Error::UnknownAddressType(_) => {
                Some(encode_reply(Reply::AddressTypeNotSupported, None))
            }
            Socks5Error::NonZeroReserved(_)
            | Socks5Error::EmptyDomain
            | Socks5Error::DomainNotUtf8
            | Socks5Error::DomainForbiddenChar(_)
            | Socks5Error::UdpTruncated => Some(encode_reply(Reply::GeneralFailure, None)),
        }
    }
}

/// Extra words for a version byte that hints at a common misconfiguration.
fn version_hint(version: u8) -> &'static str {
    match version {
        b'A'..=b'Z' => {
            " (looks like an HTTP request: configure the application to use a SOCKS5 proxy, not an HTTP proxy)"
        }
        0x16 => " (looks like a TLS handshake: the application must speak SOCKS5 to this port)",
        _ => "",
    }
}

/// Parses the client's method-selection message: VER NMETHODS METHODS.
///
/// Succeeds only if the client offers "no authentication"; the caller then
/// sends [`METHOD_SELECTED_NO_AUTH`]. Errors are detected as early as the
/// bytes allow, so a non-SOCKS client is refused after its first byte.
pub(crate) fn parse_greeting(buf: &[u8]) -> Result<Parse<()>, Socks5Error> {
    let Some(&version) = buf.first() else {
        return Ok(Parse::Incomplete);
    };
    match version {
        SOCKS5_VERSION => {}
        SOCKS4_VERSION => return Err(Socks5Error::Socks4Client),
        other => return Err(Socks5Error::UnsupportedVersion(other)),
    }
    let Some(&nmethods) = buf.get(1) else {
        return Ok(Parse::Incomplete);
    };
    if nmethods == 0 {
        return Err(Socks5Error::NoAcceptableMethod {
            offered: Vec::new(),
        });
    }
    let end = 2 + usize::from(nmethods);
    let Some(methods) = buf.get(2..end) else {
        return Ok(Parse::Incomplete);
    };
    if methods.contains(&METHOD_NO_AUTH) {
        Ok(Parse::Done((), end))
    } else {
        Err(Socks5Error::NoAcceptableMethod {
            offered: methods.to_vec(),
        })
    }
}

/// Parses a request: VER CMD RSV ATYP DST.ADDR DST.PORT.
///
/// BIND and UDP ASSOCIATE parse like CONNECT; refusing them is the caller's
/// decision. Errors are detected as early as the bytes allow.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Parse<Request>, Socks5Error> {
    let Some(&version) = buf.first() else {
        return Ok(Parse::Incomplete);
    };
    if version != SOCKS5_VERSION {
        // Past the greeting the client has already agreed to SOCKS5, so a
        // SOCKS4 byte here is just a broken client: no special reply.
        return Err(Socks5Error::UnsupportedVersion(version));
    }
    let Some(&cmd) = buf.get(1) else {
        return Ok(Parse::Incomplete);
    };
    let command = match cmd {
        CMD_CONNECT => Command::Connect,
        CMD_BIND => Command::Bind,
        CMD_UDP_ASSOCIATE => Command::UdpAssociate,
        other => return Err(Socks5Error::UnknownCommand(other)),
    };
    let Some(&reserved) = buf.get(2) else {
        return Ok(Parse::Incomplete);
    };
    if reserved != 0 {
        return Err(Socks5Error::NonZeroReserved(reserved));
    }
    // `buf` holds at least VER CMD RSV here.
    Ok(match parse_address(&buf[3..])? {
        Parse::Incomplete => Parse::Incomplete,
        Parse::Done(target, used) => Parse::Done(Request { command, target }, 3 + used),
    })
}

/// Parses ATYP DST.ADDR DST.PORT, the address form SOCKS5 requests, SOCKS5
/// UDP datagrams and udpgw frames share.
pub(crate) fn parse_address(buf: &[u8]) -> Result<Parse<TargetAddr>, Socks5Error> {
    let Some(&atyp) = buf.first() else {
        return Ok(Parse::Incomplete);
    };
    Ok(match atyp {
        ATYP_IPV4 => {
            let (Some(ip), Some(port)) = (array_at::<4>(buf, 1), port_at(buf, 5)) else {
                return Ok(Parse::Incomplete);
            };
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
            Parse::Done(TargetAddr::Ip(addr), 7)
        }
        ATYP_IPV6 => {
            let (Some(ip), Some(port)) = (array_at::<16>(buf, 1), port_at(buf, 17)) else {
                return Ok(Parse::Incomplete);
            };
            let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port);
            Parse::Done(TargetAddr::Ip(addr), 19)
        }
        ATYP_DOMAIN => {
            let Some(&len) = buf.get(1) else {
                return Ok(Parse::Incomplete);
            };
            if len == 0 {
                return Err(Socks5Error::EmptyDomain);
            }
            let name_end = 2 + usize::from(len);
            let Some(raw) = buf.get(2..name_end) else {
                return Ok(Parse::Incomplete);
            };
            // Checked before the port arrives: a bad name is final anyway.
            let name = parse_domain(raw)?;
            let Some(port) = port_at(buf, name_end) else {
                return Ok(Parse::Incomplete);
            };
            Parse::Done(TargetAddr::Domain(name, port), name_end + 2)
        }
        other => return Err(Socks5Error::UnknownAddressType(other)),
    })
}

/// Appends ATYP DST.ADDR DST.PORT for `target`. A name longer than 255
/// bytes cannot be written; SOCKS5 gives its length one byte.
pub(crate) fn encode_address(out: &mut Vec<u8>, target: &TargetAddr) -> Result<(), NameTooLong> {
    match target {
        TargetAddr::Ip(addr) => {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    out.push(ATYP_IPV4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(ATYP_IPV6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&addr.port().to_be_bytes());
        }
        TargetAddr::Domain(name, port) => {
            let len = u8::try_from(name.len()).map_err(|_| NameTooLong)?;
            out.push(ATYP_DOMAIN);
            out.push(len);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
    Ok(())
}

/// A host name too long for a one-byte length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host name is longer than 255 bytes")]
pub(crate) struct NameTooLong;

/// Validates DST.ADDR of an ATYP 3 request. The name goes to the SSH server
/// as-is, so anything that could be misread there or in a log line (NUL,
/// newlines, spaces) is refused here.
fn parse_domain(raw: &[u8]) -> Result<String, Socks5Error> {
    let name = std::str::from_utf8(raw).map_err(|_| Socks5Error::DomainNotUtf8)?;
    if let Some(bad) = name.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(Socks5Error::DomainForbiddenChar(bad));
    }
    Ok(name.to_owned())
}

/// `N` bytes starting at `at`, or `None` if the buffer is shorter.
fn array_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..)?.first_chunk::<N>().copied()
}

/// A big-endian port at `at`, or `None` if the buffer is shorter.
fn port_at(buf: &[u8], at: usize) -> Option<u16> {
    array_at::<2>(buf, at).map(u16::from_be_bytes)
}

/// Encodes a reply: VER REP RSV ATYP BND.ADDR BND.PORT.
///
/// `None` encodes `0.0.0.0:0`, which is what failure replies carry and what
/// a tunnelled CONNECT reports (the real bound address is on the server).
pub(crate) fn encode_reply(reply: Reply, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(&[SOCKS5_VERSION, reply as u8, 0x00]);
    // An IP address always fits.
    let _ = encode_address(&mut out, &TargetAddr::Ip(bound));
    out
}

/// A datagram on a UDP ASSOCIATE relay (RFC 1928 §7): RSV RSV FRAG ATYP
/// DST.ADDR DST.PORT DATA, where the address is where it goes (from the
/// client) or where it came from (to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UdpDatagram<'a> {
    /// The fragment number; 0 is a whole datagram, anything else is a
    /// fragment, which relays may drop (and wraith does).
    pub(crate) frag: u8,
    /// The peer address.
    pub(crate) target: TargetAddr,
    /// The datagram's payload.
    pub(crate) payload: &'a [u8],
}

/// Parses one whole relay datagram.
pub(crate) fn parse_udp(buf: &[u8]) -> Result<UdpDatagram<'_>, Socks5Error> {
    let (Some(rsv), Some(&frag)) = (array_at::<2>(buf, 0), buf.get(2)) else {
        return Err(Socks5Error::UdpTruncated);
    };
    if rsv != [0, 0] {
        return Err(Socks5Error::NonZeroReserved(rsv[0] | rsv[1]));
    }
    match parse_address(&buf[3..])? {
        Parse::Incomplete => Err(Socks5Error::UdpTruncated),
        Parse::Done(target, used) => Ok(UdpDatagram {
            frag,
            target,
            payload: &buf[3 + used..],
        }),
    }
}

/// Encodes a whole (unfragmented) relay datagram from `peer`.
pub(crate) fn encode_udp(peer: &TargetAddr, payload: &[u8]) -> Result<Vec<u8>, NameTooLong> {
    let mut out = Vec::with_capacity(3 + 19 + payload.len());
    out.extend_from_slice(&[0, 0, 0]);
    encode_address(&mut out, peer)?;
    out.extend_from_slice(payload);
    Ok(out)
}

/// The client side (RFC 1928, RFC 1929), for `--proxy socks5://`: the
/// messages wraith sends to an upstream SOCKS5 proxy and the checks of its
/// replies.
pub mod client {
    use std::net::IpAddr;

    /// The authentication method the proxy picked.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Method {
        /// No authentication (method 0).
        NoAuth,
        /// User name and password (method 2, RFC 1929).
        UserPass,
    }

    /// The greeting: no-auth, and user/password too when `with_auth`.
    pub fn greeting(with_auth: bool) -> Vec<u8> {
        if with_auth {
            vec![5, 2, 0, 2]
        } else {
            vec![5, 1, 0]
        }
    }

    /// The method the proxy chose, or why it cannot be used.
    pub fn method(reply: [u8; 2]) -> Result<Method, String> {
        match reply {
            [5, 0] => Ok(Method::NoAuth),
            [5, 2] => Ok(Method::UserPass),
            [5, 0xff] => Err("the proxy accepts none of our authentication methods (does it need user:pass@ in --proxy?)".into()),
            [5, m] => Err(format!("the proxy chose an authentication method we did not offer ({m})")),
            _ => Err("not a SOCKS5 proxy (bad version in its reply)".into()),
        }
    }

    /// The RFC 1929 user/password message (each field cut at 255 bytes).
    pub fn user_pass(user: &str, pass: &str) -> Vec<u8> {
        let (u, p) = (user.as_bytes(), pass.as_bytes());
        let mut m = vec![1, u.len().min(255) as u8];
        m.extend_from_slice(&u[..u.len().min(255)]);
        m.push(p.len().min(255) as u8);
        m.extend_from_slice(&p[..p.len().min(255)]);
        m
    }

    /// Checks the reply to [`user_pass`].
    pub fn user_pass_status(reply: [u8; 2]) -> Result<(), String> {
        match reply {
            [1, 0] => Ok(()),
            [1, _] => Err("the proxy rejected the user name or password".into()),
            _ => Err("bad reply to user/password authentication".into()),
        }
    }

    /// CONNECT to `host:port`; a name is sent unresolved (ATYP 3).
    pub fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, String> {
        let target = match host.parse::<IpAddr>() {
            Ok(ip) => super::TargetAddr::Ip(std::net::SocketAddr::new(ip, port)),
            Err(_) => super::TargetAddr::Domain(host.to_owned(), port),
        };
        let mut m = vec![5, 1, 0];
        super::encode_address(&mut m, &target)
            .map_err(|_| "the server name is too long for SOCKS5".to_string())?;
        Ok(m)
    }

    /// Checks the first 5 bytes of the CONNECT reply and returns how many
    /// bytes of it are left to read.
    pub fn reply_len(head: [u8; 5]) -> Result<usize, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_datagrams_round_trip_and_bad_headers_are_refused() {
        let peer = TargetAddr::Ip("10.0.0.7:53".parse().unwrap());
        let wire = encode_udp(&peer, b"query").unwrap();
        assert_eq!(&wire[..4], &[0, 0, 0, 1]);
        let d = parse_udp(&wire).unwrap();
        assert_eq!((d.frag, &d.target, d.payload), (0, &peer, &b"query"[..]));
        let named = TargetAddr::Domain("dns.internal".into(), 53);
        let wire = encode_udp(&named, b"").unwrap();
        assert_eq!(parse_udp(&wire).unwrap().target, named);
        let v6 = TargetAddr::Ip("[::1]:9".parse().unwrap());
        assert_eq!(
            parse_udp(&encode_udp(&v6, b"x").unwrap()).unwrap().payload,
            b"x"
        );
        let mut fragment = encode_udp(&peer, b"x").unwrap();
        fragment[2] = 1;
        assert_eq!(parse_udp(&fragment).unwrap().frag, 1);
        assert_eq!(
            parse_udp(&[0, 0, 0, 1, 10, 0]),
            Err(Socks5Error::UdpTruncated)
        );
        assert_eq!(parse_udp(&[0, 0]), Err(Socks5Error::UdpTruncated));
        assert_eq!(
            parse_udp(&[0, 1, 0, 1, 10, 0, 0, 7, 0, 53]),
            Err(Socks5Error::NonZeroReserved(1))
        );
        assert_eq!(
            parse_udp(&[0, 0, 0, 9, 1]),
            Err(Socks5Error::UnknownAddressType(9))
        );
        let long = TargetAddr::Domain("a".repeat(256), 1);
        assert_eq!(encode_udp(&long, b""), Err(NameTooLong));
    }

    fn connect_ipv4() -> Vec<u8> {
        vec![5, 1, 0, 1, 10, 0, 0, 7, 0x1F, 0x90]
    }

    fn connect_ipv6() -> Vec<u8> {
        let mut req = vec![5, 1, 0, 4];
        req.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        req.extend_from_slice(&443u16.to_be_bytes());
        req
    }

    fn connect_domain(name: &[u8], port: u16) -> Vec<u8> {
        let mut req = vec![5, 1, 0, 3, u8::try_from(name.len()).unwrap()];
        req.extend_from_slice(name);
        req.extend_from_slice(&port.to_be_bytes());
        req
    }

    fn request(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf) {
            Ok(Parse::Done(req, used)) => (req, used),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn request_error(buf: &[u8]) -> Socks5Error {
        match parse_request(buf) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn greeting_error(buf: &[u8]) -> Socks5Error {
        match parse_greeting(buf) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    // --- greeting ---

    #[test]
    fn greeting_offering_no_auth_is_accepted() {
        assert_eq!(parse_greeting(&[5, 1, 0]), Ok(Parse::Done((), 3)));
        assert_eq!(parse_greeting(&[5, 3, 2, 1, 0]), Ok(Parse::Done((), 5)));
    }

    #[test]
    fn greeting_leaves_pipelined_request_unconsumed() {
        let mut buf = vec![5, 2, 2, 0];
        buf.extend_from_slice(&connect_ipv4());
        let Ok(Parse::Done((), used)) = parse_greeting(&buf) else {
            panic!("greeting should parse");
        };
        assert_eq!(used, 4);
        let (req, req_used) = request(&buf[used..]);
        assert_eq!(req_used, 10);
        assert_eq!(req.target.to_string(), "10.0.0.7:8080");
    }

    #[test]
    fn greeting_every_truncation_is_incomplete() {
        let mut full = vec![5, 255];
        full.extend(1..=255u8);
        *full.last_mut().unwrap() = 0; // no-auth offered last
        assert_eq!(parse_greeting(&full), Ok(Parse::Done((), full.len())));
        assert_eq!(full.len(), MAX_GREETING_BYTES);
        for end in 0..full.len() {
            assert_eq!(
                parse_greeting(&full[..end]),
                Ok(Parse::Incomplete),
                "prefix {end}"
            );
        }
    }

    #[test]
    fn greeting_without_no_auth_is_refused_with_ff() {
        let err = greeting_error(&[5, 2, 1, 2]);
        assert_eq!(
            err,
            Socks5Error::NoAcceptableMethod {
                offered: vec![1, 2]
            }
        );
        assert_eq!(err.reply(), Some(vec![0x05, 0xFF]));
        assert!(err.to_string().contains("[01, 02]"), "{err}");
    }

    #[test]
    fn greeting_with_zero_methods_is_refused_with_ff() {
        let err = greeting_error(&[5, 0]);
        assert_eq!(err, Socks5Error::NoAcceptableMethod { offered: vec![] });
        assert_eq!(err.reply(), Some(vec![0x05, 0xFF]));
    }

    #[test]
    fn socks4_client_gets_socks4_rejection() {
        // SOCKS4 CONNECT to 1.2.3.4:80, user "u"
        let err = greeting_error(&[4, 1, 0, 80, 1, 2, 3, 4, b'u', 0]);
        assert_eq!(err, Socks5Error::Socks4Client);
        assert_eq!(err.reply(), Some(vec![0x00, 0x5B, 0, 0, 0, 0, 0, 0]));
        // Refused on the first byte: no need to wait for more.
        assert_eq!(greeting_error(&[4]), Socks5Error::Socks4Client);
    }

    #[test]
    fn greeting_with_other_version_has_no_reply() {
        for version in [0u8, 1, 3, 6, 0x16, b'G', 0xFF] {
            let err = greeting_error(&[version, 1, 0]);
            assert_eq!(err, Socks5Error::UnsupportedVersion(version));
            assert_eq!(err.reply(), None);
        }
        assert!(
            greeting_error(b"GET / HTTP/1.1")
                .to_string()
                .contains("HTTP")
        );
    }

    // --- request ---

    #[test]
    fn request_with_ipv4_target() {
        let (req, used) = request(&connect_ipv4());
        assert_eq!(used, 10);
        assert_eq!(req.command, Command::Connect);
        assert_eq!(req.target, TargetAddr::Ip("10.0.0.7:8080".parse().unwrap()));
        assert_eq!(req.target.to_string(), "10.0.0.7:8080");
        assert_eq!(req.target.host(), "10.0.0.7");
        assert_eq!(req.target.port(), 8080);
    }

    #[test]
    fn request_with_ipv6_target() {
        let (req, used) = request(&connect_ipv6());
        assert_eq!(used, 22);
        assert_eq!(req.target, TargetAddr::Ip("[::1]:443".parse().unwrap()));
        assert_eq!(req.target.to_string(), "[::1]:443");
        assert_eq!(req.target.host(), "::1");
        assert_eq!(req.target.port(), 443);
    }

    #[test]
    fn request_with_domain_target() {
        let (req, used) = request(&connect_domain(b"example.com", 443));
        assert_eq!(used, 5 + 11 + 2);
        assert_eq!(req.target, TargetAddr::Domain("example.com".into(), 443));
        assert_eq!(req.target.to_string(), "example.com:443");
        assert_eq!(req.target.host(), "example.com");
        assert_eq!(req.target.port(), 443);
    }

    #[test]
    fn domain_holding_a_colon_is_displayed_in_brackets() {
        let (req, _) = request(&connect_domain(b"::1", 80));
        assert_eq!(req.target.to_string(), "[::1]:80");
        assert_eq!(req.target.host(), "::1");
    }

    #[test]
    fn request_with_255_byte_domain() {
        let name = vec![b'a'; 255];
        let buf = connect_domain(&name, 1);
        assert_eq!(buf.len(), MAX_REQUEST_BYTES);
        let (req, used) = request(&buf);
        assert_eq!(used, MAX_REQUEST_BYTES);
        assert_eq!(req.target, TargetAddr::Domain("a".repeat(255), 1));
    }

    #[test]
    fn request_every_truncation_is_incomplete() {
        let cases = [
            connect_ipv4(),
            connect_ipv6(),
            connect_domain(b"example.com", 443),
            connect_domain(&[b'z'; 255], 65535),
        ];
        for full in cases {
            assert!(matches!(parse_request(&full), Ok(Parse::Done(_, n)) if n == full.len()));
            for end in 0..full.len() {
                assert_eq!(
                    parse_request(&full[..end]),
                    Ok(Parse::Incomplete),
                    "{full:?} prefix {end}"
                );
            }
        }
    }

    #[test]
    fn request_leaves_trailing_bytes_unconsumed() {
        for (full, len) in [
            (connect_ipv4(), 10),
            (connect_ipv6(), 22),
            (connect_domain(b"example.com", 443), 18),
        ] {
            let mut buf = full.clone();
            buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let (req, used) = request(&buf);
            assert_eq!(used, len);
            assert_eq!(Ok(Parse::Done(req, used)), parse_request(&full));
        }
    }

    #[test]
    fn request_with_wrong_version_is_refused_without_reply() {
        let mut buf = connect_ipv4();
        buf[0] = 4;
        let err = request_error(&buf);
        assert_eq!(err, Socks5Error::UnsupportedVersion(4));
        assert_eq!(err.reply(), None);
        assert_eq!(
            request_error(&[0x16]),
            Socks5Error::UnsupportedVersion(0x16)
        );
    }

    #[test]
    fn zero_length_domain_is_refused_with_general_failure() {
        let err = request_error(&[5, 1, 0, 3, 0, 0, 80]);
        assert_eq!(err, Socks5Error::EmptyDomain);
        assert_eq!(err.reply(), Some(encode_reply(Reply::GeneralFailure, None)));
        // Known as soon as the length byte arrives.
        assert_eq!(request_error(&[5, 1, 0, 3, 0]), Socks5Error::EmptyDomain);
    }

    #[test]
    fn non_utf8_domain_is_refused_with_general_failure() {
        let err = request_error(&connect_domain(&[b'a', 0xC3, 0x28, b'b'], 80));
        assert_eq!(err, Socks5Error::DomainNotUtf8);
        assert_eq!(err.reply(), Some(encode_reply(Reply::GeneralFailure, None)));
    }

    #[test]
    fn domain_with_control_or_whitespace_is_refused() {
        for (name, bad) in [
            (&b"exa\0mple.com"[..], '\0'),
            (b"example.com\r\nX-Injected: 1", '\r'),
            (b"exa mple.com", ' '),
            (b"tab\there", '\t'),
            (b"del\x7f", '\x7f'),
            ("nbsp\u{a0}x".as_bytes(), '\u{a0}'),
        ] {
            let err = request_error(&connect_domain(name, 80));
            assert_eq!(err, Socks5Error::DomainForbiddenChar(bad), "{name:?}");
            assert_eq!(err.reply(), Some(encode_reply(Reply::GeneralFailure, None)));
        }
    }

    #[test]
    fn unicode_domain_is_accepted() {
        let (req, _) = request(&connect_domain("bücher.example".as_bytes(), 80));
        assert_eq!(req.target, TargetAddr::Domain("bücher.example".into(), 80));
    }

    #[test]
    fn nonzero_reserved_byte_is_refused_with_general_failure() {
        let mut buf = connect_ipv4();
        buf[2] = 1;
        let err = request_error(&buf);
        assert_eq!(err, Socks5Error::NonZeroReserved(1));
        assert_eq!(err.reply(), Some(encode_reply(Reply::GeneralFailure, None)));
    }

    #[test]
    fn unknown_address_type_is_refused_with_address_type_not_supported() {
        for atyp in [0u8, 2, 5, 0xFF] {
            let err = request_error(&[5, 1, 0, atyp, 1, 2, 3, 4, 0, 80]);
            assert_eq!(err, Socks5Error::UnknownAddressType(atyp));
            let reply = err.reply().unwrap();
            assert_eq!(reply[1], Reply::AddressTypeNotSupported as u8);
            assert_eq!(reply, encode_reply(Reply::AddressTypeNotSupported, None));
        }
    }

    #[test]
    fn unknown_command_is_refused_with_command_not_supported() {
        for cmd in [0u8, 4, 0x80, 0xFF] {
            let mut buf = connect_ipv4();
            buf[1] = cmd;
            let err = request_error(&buf);
            assert_eq!(err, Socks5Error::UnknownCommand(cmd));
            assert_eq!(
                err.reply(),
                Some(encode_reply(Reply::CommandNotSupported, None))
            );
        }
    }

    #[test]
    fn bind_and_udp_associate_parse_as_requests() {
        for (cmd, command) in [(2u8, Command::Bind), (3, Command::UdpAssociate)] {
            let mut buf = connect_ipv4();
            buf[1] = cmd;
            let (req, used) = request(&buf);
            assert_eq!(used, 10);
            assert_eq!(req.command, command);
        }
    }

    // --- replies ---

    #[test]
    fn reply_with_ipv4_bound_address() {
        let bound = "192.168.1.2:1080".parse().unwrap();
        assert_eq!(
            encode_reply(Reply::Succeeded, Some(bound)),
            [5, 0, 0, 1, 192, 168, 1, 2, 0x04, 0x38]
        );
    }

    #[test]
    fn reply_with_ipv6_bound_address() {
        let bound = "[2001:db8::1]:443".parse().unwrap();
        let mut expected = vec![5, 5, 0, 4];
        expected.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        expected.extend_from_slice(&[0x01, 0xBB]);
        assert_eq!(
            encode_reply(Reply::ConnectionRefused, Some(bound)),
            expected
        );
    }

    #[test]
    fn reply_without_bound_address_is_ipv4_unspecified() {
        assert_eq!(
            encode_reply(Reply::HostUnreachable, None),
            [5, 4, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn reply_codes_match_rfc_1928() {
        let codes = [
            Reply::Succeeded,
            Reply::GeneralFailure,
            Reply::NotAllowed,
            Reply::NetworkUnreachable,
            Reply::HostUnreachable,
            Reply::ConnectionRefused,
            Reply::TtlExpired,
            Reply::CommandNotSupported,
            Reply::AddressTypeNotSupported,
        ];
        for (code, reply) in codes.into_iter().enumerate() {
            assert_eq!(usize::from(reply as u8), code);
            assert_eq!(usize::from(encode_reply(reply, None)[1]), code);
        }
    }

    #[test]
    fn max_handshake_bytes_fits_largest_greeting_and_request() {
        let mut buf = vec![5, 255];
        buf.extend(std::iter::repeat_n(0u8, 255));
        let greeting_len = buf.len();
        buf.extend(connect_domain(&[b'x'; 255], 80));
        assert_eq!(buf.len(), MAX_HANDSHAKE_BYTES);
        assert_eq!(MAX_HANDSHAKE_BYTES, 519);
        assert_eq!(parse_greeting(&buf), Ok(Parse::Done((), greeting_len)));
        let (_, used) = request(&buf[greeting_len..]);
        assert_eq!(greeting_len + used, MAX_HANDSHAKE_BYTES);
    }

    // --- robustness ---

    /// xorshift64*: good enough to spray bytes, no dependency needed.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn byte(&mut self) -> u8 {
            self.next().to_le_bytes()[0]
        }
    }

    /// Checks the invariants callers rely on: never consume more than given,
    /// and once a prefix decides (Done or Err) more bytes change nothing.
    fn check_prefix_stability<T: PartialEq + fmt::Debug>(
        buf: &[u8],
        parse: fn(&[u8]) -> Result<Parse<T>, Socks5Error>,
    ) {
        let full = parse(buf);
        if let Ok(Parse::Done(_, used)) = &full {
            assert!(*used > 0 && *used <= buf.len(), "{buf:?}");
        }
        for end in 0..buf.len() {
            match parse(&buf[..end]) {
                Ok(Parse::Incomplete) => {}
                decided => assert_eq!(decided, full, "{buf:?} prefix {end}"),
            }
        }
    }

    #[test]
    fn parsers_never_panic_on_random_input() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..10_000 {
            let len = usize::try_from(rng.next() % 64).unwrap();
            let mut buf: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            // Half the inputs start like a real request so the fuzzing also
            // reaches the address parsing, not just the version check.
            if round % 2 == 0 && buf.len() >= 5 {
                buf[0] = 5;
                buf[1] = 1 + rng.byte() % 3;
                buf[2] = 0;
                buf[3] = [1, 3, 4][usize::from(rng.byte() % 3)];
                buf[4] %= 40;
            }
            check_prefix_stability(&buf, parse_greeting);
            check_prefix_stability(&buf, parse_request);
            if let Err(e) = parse_request(&buf) {
                let _ = (e.to_string(), e.reply());
            }
            if let Ok(Parse::Done(req, _)) = parse_request(&buf) {
                let _ = (req.target.to_string(), req.target.host(), req.target.port());
            }
        }
    }

    #[test]
    fn client_messages() {
        assert_eq!(client::greeting(false), [5, 1, 0]);
        assert_eq!(client::greeting(true), [5, 2, 0, 2]);
        assert_eq!(client::method([5, 2]).unwrap(), client::Method::UserPass);
        assert!(
            client::method([5, 0xff])
                .unwrap_err()
                .contains("user:pass@")
        );
        assert!(client::method([4, 0]).is_err());
        assert_eq!(client::user_pass("u", "pw"), [1, 1, b'u', 2, b'p', b'w']);
        assert!(client::user_pass_status([1, 1]).is_err());
        assert_eq!(
            client::connect_request("example.com", 443).unwrap(),
            [&[5, 1, 0, 3, 11][..], b"example.com", &[1, 187]].concat()
        );
        assert_eq!(
            client::connect_request("10.0.0.1", 22).unwrap(),
            [5, 1, 0, 1, 10, 0, 0, 1, 0, 22]
        );
        assert_eq!(
            client::connect_request("::1", 22).unwrap().len(),
            4 + 16 + 2
        );
        assert!(client::connect_request(&"a".repeat(256), 1).is_err());
        assert_eq!(client::reply_len([5, 0, 0, 1, 127]).unwrap(), 5);
        assert_eq!(client::reply_len([5, 0, 0, 4, 0]).unwrap(), 17);
        assert_eq!(client::reply_len([5, 0, 0, 3, 7]).unwrap(), 9);
        assert!(
            client::reply_len([5, 5, 0, 1, 0])
                .unwrap_err()
                .contains("refused")
        );
        assert!(client::reply_len([5, 0, 0, 9, 0]).is_err());
    }
}
