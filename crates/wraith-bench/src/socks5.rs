//! A minimal SOCKS5 client (RFC 1928, no authentication, CONNECT to an IP
//! address): what curl does against `ssh -D` and `wraith connect`. The byte
//! encoding and decoding are pure functions; [`connect`] only moves bytes.
//! It must never pipeline the request behind the greeting, because the
//! latency figure is meant to include both round trips, as curl pays them.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const CMD_CONNECT: u8 = 1;
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Greeting offering only "no authentication".
pub(crate) const GREETING: [u8; 3] = [VERSION, 1, NO_AUTH];

/// Checks the server's method choice.
pub(crate) fn check_method_reply(reply: [u8; 2]) -> Result<()> {
    match reply {
        [VERSION, NO_AUTH] => Ok(()),
        [VERSION, 0xff] => bail!("SOCKS5 proxy accepts none of our methods (we offer no-auth)"),
        [VERSION, m] => bail!("SOCKS5 proxy chose method {m:#04x}, we offered only no-auth"),
        [v, _] => bail!("not a SOCKS5 proxy: reply version {v}"),
    }
}

/// CONNECT request for an IP address.
pub(crate) fn connect_request(target: SocketAddr) -> Vec<u8> {
    let mut req = vec![VERSION, CMD_CONNECT, 0];
    match target {
        SocketAddr::V4(a) => {
            req.push(ATYP_IPV4);
            req.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            req.push(ATYP_IPV6);
            req.extend_from_slice(&a.ip().octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    req
}

/// How the rest of a reply is to be read after its 4-byte head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReplyTail {
    /// This many more bytes (address and port).
    Fixed(usize),
    /// A domain: one length byte, then that many bytes plus 2 for the port.
    Domain,
}

/// Checks a reply's head (`VER REP RSV ATYP`) and says how much follows.
pub(crate) fn check_reply_head(head: [u8; 4]) -> Result<ReplyTail> {
    let [ver, rep, _, atyp] = head;
    if ver != VERSION {
        bail!("not a SOCKS5 reply: version {ver}");
    }
    if rep != 0 {
        bail!("SOCKS5 CONNECT refused: {} (code {rep})", reply_name(rep));
    }
    match atyp {
        ATYP_IPV4 => Ok(ReplyTail::Fixed(4 + 2)),
        ATYP_IPV6 => Ok(ReplyTail::Fixed(16 + 2)),
        ATYP_DOMAIN => Ok(ReplyTail::Domain),
        other => bail!("SOCKS5 reply with unknown address type {other}"),
    }
}

fn reply_name(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned reply code",
    }
}

/// Opens a connection to `target` through the SOCKS5 proxy at `proxy`.
pub(crate) async fn connect(proxy: SocketAddr, target: SocketAddr) -> Result<TcpStream> {
    let mut s = TcpStream::connect(proxy)
        .await
        .with_context(|| format!("cannot connect to the SOCKS5 proxy at {proxy}"))?;
    s.set_nodelay(true)?;
    s.write_all(&GREETING).await?;
    let mut method = [0u8; 2];
    s.read_exact(&mut method)
        .await
        .context("SOCKS5 proxy closed during the greeting")?;
    check_method_reply(method)?;
    s.write_all(&connect_request(target)).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)
        .await
        .context("SOCKS5 proxy closed before replying to CONNECT")?;
    let tail = match check_reply_head(head)? {
        ReplyTail::Fixed(n) => n,
        ReplyTail::Domain => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
    };
    let mut rest = [0u8; 257];
    s.read_exact(&mut rest[..tail]).await?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_request_is_encoded_per_rfc1928() {
        let req = connect_request("127.0.0.1:8080".parse().unwrap());
        assert_eq!(req, [5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]);
    }

    #[test]
    fn ipv6_request_carries_sixteen_address_bytes() {
        let req = connect_request("[::1]:22".parse().unwrap());
        assert_eq!(req.len(), 4 + 16 + 2);
        assert_eq!(req[3], ATYP_IPV6);
        assert_eq!(req[19], 1);
        assert_eq!(&req[20..], &[0, 22]);
    }

    #[test]
    fn method_reply_other_than_no_auth_is_rejected() {
        assert!(check_method_reply([5, 0]).is_ok());
        assert!(check_method_reply([5, 0xff]).is_err());
        assert!(check_method_reply([5, 2]).is_err());
        assert!(check_method_reply([4, 0]).is_err());
    }

    #[test]
    fn reply_head_gives_tail_length_or_refusal() {
        assert_eq!(check_reply_head([5, 0, 0, 1]).unwrap(), ReplyTail::Fixed(6));
        assert_eq!(
            check_reply_head([5, 0, 0, 4]).unwrap(),
            ReplyTail::Fixed(18)
        );
        assert_eq!(check_reply_head([5, 0, 0, 3]).unwrap(), ReplyTail::Domain);
        let refused = check_reply_head([5, 5, 0, 1]).unwrap_err().to_string();
        assert!(refused.contains("connection refused"), "{refused}");
        assert!(check_reply_head([5, 0, 0, 9]).is_err());
    }
}
