//! The udpgw framing, sans-IO: UDP datagrams carried over one stream, as
//! tun2proxy's `udpgw` module speaks it (tun2proxy 0.7 and later; it is not
//! BadVPN's original format). wraith serves it on the reserved destination
//! `wraith-udpgw:0`, and its own client uses it for SOCKS5 UDP ASSOCIATE
//! and UDP forwards.
//!
//! A frame is `LEN FLAGS CONN_ID [ATYP DST.ADDR DST.PORT] DATA`: `LEN` (two
//! bytes, big-endian) counts the bytes after itself; `CONN_ID` (two bytes)
//! names a flow within the stream; the address, in SOCKS5's form, is there
//! only on data frames. From the client it is where the datagram goes, from
//! the server where it came from.
//!
//! Because every frame says its length, a frame that does not make sense
//! costs only itself: [`decode`] reports it with its length, and the stream
//! goes on with the next one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::socks5::{self, NameTooLong, Parse, Socks5Error, TargetAddr};

/// The reserved host name of the udpgw service (`wraith-udpgw:0`).
pub const UDPGW_HOST: &str = "wraith-udpgw";
/// The port of the udpgw service.
pub const UDPGW_PORT: u16 = 0;
/// The same service for OpenSSH clients, which refuse port 0 in `-W` and
/// `-L` (`ssh -W wraith-udpgw:1`).
pub const UDPGW_PORT_OPENSSH: u16 = 1;
/// The same service as an IP address, for clients that take only `IP:PORT`
/// (tun2proxy's `--udpgw-server`). TCP port 0 can never be dialed, so the
/// alias hides no real destination.
pub const UDPGW_ALIAS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Is `host:port` the udpgw service (`wraith-udpgw:0`, its OpenSSH alias
/// `wraith-udpgw:1`, or [`UDPGW_ALIAS`] as text)?
pub fn is_udpgw_target(host: &str, port: u16) -> bool {
    (host == UDPGW_HOST && (port == UDPGW_PORT || port == UDPGW_PORT_OPENSSH))
        || (port == UDPGW_ALIAS.port() && host == "0.0.0.0")
}

/// A keepalive: no address, no data; the server answers with one.
pub(crate) const FLAG_KEEPALIVE: u8 = 0x01;
/// A datagram: address and data follow.
pub(crate) const FLAG_DATA: u8 = 0x02;
/// The flow failed (its target could not be reached or was refused).
pub(crate) const FLAG_ERR: u8 = 0x20;

/// The length field's own size.
const LEN_BYTES: usize = 2;
/// FLAGS and CONN_ID.
const HEADER_BYTES: usize = 3;
/// The longest frame, length field included.
pub(crate) const MAX_FRAME: usize = LEN_BYTES + u16::MAX as usize;

/// One udpgw frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Keeps an idle stream (and the flow) alive.
    Keepalive {
        /// The flow it names (tun2proxy sends its stream's number).
        conn_id: u16,
    },
    /// The flow failed.
    Error {
        /// The flow that failed.
        conn_id: u16,
    },
    /// A datagram.
    Data {
        /// The flow it belongs to.
        conn_id: u16,
        /// Where it goes (client to server) or came from (server to client).
        peer: TargetAddr,
        /// The datagram.
        payload: Vec<u8>,
    },
}

impl Frame {
    /// The flow this frame belongs to.
    pub(crate) fn conn_id(&self) -> u16 {
        match self {
            Frame::Keepalive { conn_id }
            | Frame::Error { conn_id }
            | Frame::Data { conn_id, .. } => *conn_id,
        }
    }
}

/// Why a frame was not understood. The frame is skipped; the messages never
/// hold an address, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// `LEN` is too small for FLAGS and CONN_ID.
    #[error("udpgw frame of {0} bytes is shorter than its header")]
    Short(usize),
    /// FLAGS has none of the bits we know.
    #[error("udpgw frame has unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// A data frame whose address is cut short or not valid.
    #[error("udpgw data frame has a bad address: {0}")]
    Address(Socks5Error),
}

/// Decodes the frame at the start of `buf`. `None`: the frame is not all
/// there yet, read more and call again with the whole buffer. Otherwise the
/// frame (or why it was not understood) and the bytes it took, which the
/// caller drops from the buffer either way.
pub(crate) fn decode(buf: &[u8]) -> Option<(Result<Frame, FrameError>, usize)> {
    let len = usize::from(u16::from_be_bytes(*buf.first_chunk::<LEN_BYTES>()?));
    let body = buf.get(LEN_BYTES..LEN_BYTES + len)?;
    Some((decode_body(body), LEN_BYTES + len))
}

fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let Some(&[flags, id_hi, id_lo]) = body.first_chunk::<HEADER_BYTES>() else {
        return Err(FrameError::Short(body.len()));
    };
    let conn_id = u16::from_be_bytes([id_hi, id_lo]);
    // The order tun2proxy reads them in: an error bit wins, then keepalive.
    if flags & FLAG_ERR != 0 {
        return Ok(Frame::Error { conn_id });
    }
    if flags & FLAG_KEEPALIVE != 0 {
        return Ok(Frame::Keepalive { conn_id });
    }
    if flags & FLAG_DATA == 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    let rest = &body[HEADER_BYTES..];
    match socks5::parse_address(rest).map_err(FrameError::Address)? {
        Parse::Incomplete => Err(FrameError::Address(Socks5Error::UdpTruncated)),
        Parse::Done(peer, used) => Ok(Frame::Data {
            conn_id,
            peer,
            payload: rest[used..].to_vec(),
        }),
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncodeError {
    /// The frame would be longer than `LEN` can say.
    #[error("the datagram is too large for a udpgw frame")]
    TooLarge,
    /// A host name longer than 255 bytes.
    #[error(transparent)]
    Name(#[from] NameTooLong),
}

/// Appends `frame` to `out`. On error `out` is left as it was.
pub(crate) fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    let result = encode_body(frame, out).and_then(|()| {
        u16::try_from(out.len() - start - LEN_BYTES).map_err(|_| EncodeError::TooLarge)
    });
    match result {
        Ok(len) => {
            out[start..start + LEN_BYTES].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn encode_body(frame: &Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let flags = match frame {
        Frame::Keepalive { .. } => FLAG_KEEPALIVE,
        Frame::Error { .. } => FLAG_ERR,
        Frame::Data { .. } => FLAG_DATA,
    };
    out.push(flags);
    out.extend_from_slice(&frame.conn_id().to_be_bytes());
    if let Frame::Data { peer, payload, .. } = frame {
        // Checked first so that a huge payload is not copied for nothing.
        if payload.len() > MAX_FRAME {
            return Err(EncodeError::TooLarge);
        }
        socks5::encode_address(out, peer)?;
        out.extend_from_slice(payload);
    }
    Ok(())
}

/// The largest payload a data frame to or from `peer` can carry.
pub(crate) fn max_payload(peer: &TargetAddr) -> usize {
    let address = match peer {
        TargetAddr::Ip(a) if a.is_ipv4() => 1 + 4 + 2,
        TargetAddr::Ip(_) => 1 + 16 + 2,
        TargetAddr::Domain(name, _) => 1 + 1 + name.len() + 2,
    };
    (u16::MAX as usize).saturating_sub(HEADER_BYTES + address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(frame, &mut out).unwrap();
        out
    }

    fn data(conn_id: u16, peer: &str, payload: &[u8]) -> Frame {
        Frame::Data {
            conn_id,
            peer: TargetAddr::Ip(peer.parse().unwrap()),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn frames_have_tun2proxys_layout() {
        // LEN=3, FLAGS=KEEPALIVE, CONN_ID=0x0102: what tun2proxy's
        // `Packet::build_keepalive_packet(0x0102)` writes.
        assert_eq!(
            wire(&Frame::Keepalive { conn_id: 0x0102 }),
            [0, 3, 0x01, 1, 2]
        );
        assert_eq!(wire(&Frame::Error { conn_id: 7 }), [0, 3, 0x20, 0, 7]);
        assert_eq!(
            wire(&data(5, "10.0.0.1:53", b"hi")),
            [0, 12, 0x02, 0, 5, 1, 10, 0, 0, 1, 0, 53, b'h', b'i']
        );
        let named = Frame::Data {
            conn_id: 1,
            peer: TargetAddr::Domain("ns".into(), 53),
            payload: vec![],
        };
        assert_eq!(wire(&named), [0, 9, 0x02, 0, 1, 3, 2, b'n', b's', 0, 53]);
    }

    #[test]
    fn frames_round_trip_one_after_another() {
        let frames = [
            data(1, "127.0.0.1:9", &[0xAA; 1400]),
            Frame::Keepalive { conn_id: 1 },
            data(2, "[::1]:9", b""),
            Frame::Error { conn_id: 2 },
            Frame::Data {
                conn_id: u16::MAX,
                peer: TargetAddr::Domain("dns.internal".into(), 53),
                payload: b"query".to_vec(),
            },
        ];
        let mut stream = Vec::new();
        for f in &frames {
            encode(f, &mut stream).unwrap();
        }
        let mut at = 0;
        for f in &frames {
            // Every proper prefix of the rest is incomplete.
            let (first, used) = decode(&stream[at..]).unwrap();
            for cut in 0..used {
                assert_eq!(decode(&stream[at..at + cut]), None);
            }
            assert_eq!(first.as_ref(), Ok(f));
            at += used;
        }
        assert_eq!(at, stream.len());
    }

    #[test]
    fn a_bad_frame_costs_only_itself() {
        let mut stream = vec![0, 2, 0x02, 0]; // LEN=2: no room for CONN_ID
        stream.extend_from_slice(&[0, 3, 0x40, 0, 1]); // unknown flags
        stream.extend_from_slice(&[0, 5, 0x02, 0, 1, 1, 10]); // address cut short
        stream.extend_from_slice(&[0, 6, 0x02, 0, 1, 3, 0, 0]); // empty name
        stream.extend_from_slice(&[0, 5, 0x02, 0, 1, 9, 9]); // unknown ATYP
        let good = data(3, "10.0.0.2:7", b"ok");
        encode(&good, &mut stream).unwrap();
        let mut results = Vec::new();
        let mut at = 0;
        while let Some((r, used)) = decode(&stream[at..]) {
            results.push(r);
            at += used;
        }
        assert_eq!(
            results,
            [
                Err(FrameError::Short(2)),
                Err(FrameError::UnknownFlags(0x40)),
                Err(FrameError::Address(Socks5Error::UdpTruncated)),
                Err(FrameError::Address(Socks5Error::EmptyDomain)),
                Err(FrameError::Address(Socks5Error::UnknownAddressType(9))),
                Ok(good),
            ]
        );
        // A keepalive with stray bytes after it is still a keepalive, as
        // tun2proxy reads it.
        assert_eq!(
            decode(&[0, 4, 0x01, 0, 9, 0xFF]),
            Some((Ok(Frame::Keepalive { conn_id: 9 }), 6))
        );
    }

    #[test]
    fn frames_too_large_for_len_are_refused_and_leave_the_buffer_alone() {
        let peer = TargetAddr::Ip("10.0.0.1:53".parse().unwrap());
        let most = max_payload(&peer);
        let mut out = vec![9];
        let fits = Frame::Data {
            conn_id: 1,
            peer: peer.clone(),
            payload: vec![0; most],
        };
        encode(&fits, &mut out).unwrap();
        assert_eq!(out.len(), 1 + MAX_FRAME);
        assert_eq!(decode(&out[1..]).unwrap().0, Ok(fits));
        let mut out = vec![9];
        let over = Frame::Data {
            conn_id: 1,
            peer,
            payload: vec![0; most + 1],
        };
        assert_eq!(encode(&over, &mut out), Err(EncodeError::TooLarge));
        assert_eq!(out, [9]);
        let long = Frame::Data {
            conn_id: 1,
            peer: TargetAddr::Domain("a".repeat(256), 1),
            payload: vec![],
        };
        assert_eq!(encode(&long, &mut out), Err(EncodeError::Name(NameTooLong)));
        assert_eq!(out, [9]);
    }
}
