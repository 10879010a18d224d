//! The control-channel frame codec (SPEC §7), sans-IO, and the channel's
//! address (`wraith-control:0`).
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of
//! UTF-8 JSON holding an envelope `{"type": string, "id": string,
//! "payload": any}`. [`FrameDecoder`] takes bytes as they arrive and yields
//! whole frames; [`Frame::encode`] does the reverse. No I/O happens here and
//! nothing here logs: payloads are the users' business.
//!
//! The decoder never buffers more than one frame's worth of bytes plus the
//! chunk last pushed: an oversize frame is refused from its length prefix,
//! before its body is collected.

use serde_json::{Map, Value};

/// The host name of the control channel (`wraith-control:0`).
pub const CONTROL_HOST: &str = "wraith-control";
/// The port of the control channel.
pub const CONTROL_PORT: u16 = 0;
/// The same channel for OpenSSH clients, which refuse port 0 in `-W` and
/// `-L` (`ssh -W wraith-control:1`).
pub const CONTROL_PORT_OPENSSH: u16 = 1;

/// Is `host:port` the control channel (`wraith-control:0`, or its OpenSSH
/// alias `wraith-control:1`)?
pub fn is_control_target(host: &str, port: u16) -> bool {
    host == CONTROL_HOST && (port == CONTROL_PORT || port == CONTROL_PORT_OPENSSH)
}

/// Default largest frame body (the JSON, without the 4-byte prefix): 1 MiB.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Bytes in the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Why bytes could not be decoded into a frame, or a frame not encoded.
/// After a decode error the stream is out of sync: close the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversize {
        /// The announced (or encoded) body length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} of {expected} bytes received)")]
    Truncated {
        /// Bytes received of the frame, prefix included.
        buffered: usize,
        /// Bytes the frame needs, prefix included (4 while the prefix is
        /// incomplete).
        expected: usize,
    },
    /// The body is not valid UTF-8.
    #[error("frame is not valid UTF-8")]
    NotUtf8,
    /// The body is not JSON.
    #[error("frame is not valid JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object with `type`, `id` and `payload`.
    #[error("frame is not an envelope: {0}")]
    BadEnvelope(&'static str),
}

/// One envelope: what the control channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The event type (`"type"`); names starting with `__` are control
    /// messages such as `__subscribe`.
    pub kind: String,
    /// A sender-chosen id (`"id"`), passed through untouched.
    pub id: String,
    /// Any JSON value (`"payload"`).
    pub payload: Value,
    /// Who published it (`"sender"`): the `SHA256:` fingerprint of the
    /// publisher's key, set by the server's hub on every event it relays
    /// from a control channel (whatever the publisher wrote there). Absent
    /// on events the server itself publishes, and on control messages.
    pub sender: Option<String>,
}

impl Frame {
    /// A frame from its parts.
    pub fn new(kind: impl Into<String>, id: impl Into<String>, payload: Value) -> Self {
        Frame {
            kind: kind.into(),
            id: id.into(),
            payload,
            sender: None,
        }
    }

    /// The JSON body, without the length prefix.
    pub fn to_json(&self) -> Vec<u8> {
        let mut map = Map::new();
        map.insert("type".into(), Value::String(self.kind.clone()));
        map.insert("id".into(), Value::String(self.id.clone()));
        map.insert("payload".into(), self.payload.clone());
        if let Some(sender) = &self.sender {
            map.insert("sender".into(), Value::String(sender.clone()));
        }
        // Serialising a Value into memory cannot fail (keys are strings).
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }

    /// The frame as wire bytes (prefix + JSON), refusing bodies over
    /// [`MAX_FRAME_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        self.encode_with_max(MAX_FRAME_LEN)
    }

    /// [`Frame::encode`] with another limit.
    pub fn encode_with_max(&self, max: usize) -> Result<Vec<u8>, FrameError> {
        encode_body(&self.to_json(), max)
    }

    /// Parse a frame body (the JSON, without the prefix).
    pub fn from_json(body: &[u8]) -> Result<Frame, FrameError> {
        let text = std::str::from_utf8(body).map_err(|_| FrameError::NotUtf8)?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(FrameError::BadEnvelope("not a JSON object"));
        };
        let kind = match map.remove("type") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(FrameError::BadEnvelope("\"type\" is not a string")),
            None => return Err(FrameError::BadEnvelope("\"type\" is missing")),
        };
        let id = match map.remove("id") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(FrameError::BadEnvelope("\"id\" is not a string")),
            None => return Err(FrameError::BadEnvelope("\"id\" is missing")),
        };
        let Some(payload) = map.remove("payload") else {
            return Err(FrameError::BadEnvelope("\"payload\" is missing"));
        };
        let sender = match map.remove("sender") {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(FrameError::BadEnvelope("\"sender\" is not a string")),
        };
        Ok(Frame {
            kind,
            id,
            payload,
            sender,
        })
    }
}

/// Prefix an already serialised body with its length.
pub fn encode_body(body: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|_| body.len() <= max)
        .ok_or(FrameError::Oversize {
            len: body.len() as u64,
            max,
        })?;
    let mut out = Vec::with_capacity(LEN_PREFIX + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// A decoded frame together with its exact wire bytes, so a relay can pass
/// the frame on byte for byte without re-serialising it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    /// The parsed envelope.
    pub frame: Frame,
    /// Prefix + body as received.
    pub wire: Vec<u8>,
}

/// Streaming decoder: [`push`](FrameDecoder::push) bytes as they arrive,
/// then call [`next_frame`](FrameDecoder::next_frame) until it returns
/// `Ok(None)`. Once it has returned an error it keeps returning it.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: usize,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with the default limit, [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_len(MAX_FRAME_LEN)
    }

    /// A decoder refusing bodies longer than `max` bytes.
    pub fn with_max_len(max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            max,
            failed: None,
        }
    }

    /// The limit in force.
    pub fn max_len(&self) -> usize {
        self.max
    }

    /// Bytes held for a frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Add received bytes. After an error, bytes are discarded.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        // Refuse an oversize frame as soon as its prefix is in, so its body
        // is never collected.
        if let Err(e) = self.check_prefix() {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: FrameError) {
        self.buf = Vec::new();
        self.failed = Some(e);
    }

    /// The announced body length of the frame at the head of the buffer.
    fn check_prefix(&self) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = self.buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let mut len = [0u8; LEN_PREFIX];
        len.copy_from_slice(prefix);
        let len = u32::from_be_bytes(len);
        match usize::try_from(len) {
            Ok(n) if n <= self.max => Ok(Some(n)),
            _ => Err(FrameError::Oversize {
                len: u64::from(len),
                max: self.max,
            }),
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<DecodedFrame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let len = match self.check_prefix() {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.fail(e.clone());
                return Err(e);
            }
        };
        let total = LEN_PREFIX + len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let wire = std::mem::replace(&mut self.buf, rest);
        let parsed = wire
            .get(LEN_PREFIX..)
            .ok_or(FrameError::BadEnvelope("empty"))
            .and_then(Frame::from_json);
        match parsed {
            Ok(frame) => Ok(Some(DecodedFrame { frame, wire })),
            Err(e) => {
                self.fail(e.clone());
                Err(e)
            }
        }
    }

    /// Call at end of stream: an error if it ended inside a frame (or a
    /// decode error happened earlier).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let expected = match self.check_prefix() {
            Ok(Some(len)) => LEN_PREFIX + len,
            _ => LEN_PREFIX,
        };
        Err(FrameError::Truncated {
            buffered: self.buf.len(),
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(body: &str) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body.as_bytes());
        v
    }

    #[test]
    fn encoded_frame_has_big_endian_length_and_envelope() {
        let f = Frame::new("chat", "1", json!({"text": "hi"}));
        let bytes = f.encode().unwrap();
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        let v: Value = serde_json::from_slice(&bytes[4..]).unwrap();
        assert_eq!(
            v,
            json!({"type": "chat", "id": "1", "payload": {"text": "hi"}})
        );
    }

    #[test]
    fn frames_split_at_every_byte_decode_the_same() {
        let a = Frame::new("a", "1", json!([1, 2, 3]));
        let b = Frame::new("b", "2", json!("ünïcode"));
        let mut bytes = a.encode().unwrap();
        bytes.extend(b.encode().unwrap());
        for split in 0..=bytes.len() {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for chunk in [&bytes[..split], &bytes[split..]] {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f.frame);
                }
            }
            assert_eq!(got, vec![a.clone(), b.clone()], "split at {split}");
            d.finish().unwrap();
        }
    }

    #[test]
    fn wire_bytes_are_passed_through_exactly() {
        // Key order and spacing as the sender wrote them.
        let raw = wire(r#"{ "payload": 1, "id": "x", "type": "t" }"#);
        let mut d = FrameDecoder::new();
        d.push(&raw);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.wire, raw);
        assert_eq!(f.frame, Frame::new("t", "x", json!(1)));
    }

    #[test]
    fn oversize_is_refused_from_the_prefix_alone() {
        let mut d = FrameDecoder::with_max_len(100);
        d.push(&101u32.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::Oversize { len: 101, max: 100 })
        );
        // Nothing more is buffered, and the error sticks.
        d.push(&[b'x'; 1000]);
        assert_eq!(d.buffered(), 0);
        assert!(d.next_frame().is_err());
        assert!(d.finish().is_err());
    }

    #[test]
    fn a_frame_at_exactly_the_limit_is_accepted() {
        let body = format!(r#"{{"type":"t","id":"","payload":"{}"}}"#, "x".repeat(60));
        let mut d = FrameDecoder::with_max_len(body.len());
        d.push(&wire(&body));
        assert!(d.next_frame().unwrap().is_some());
        let mut d = FrameDecoder::with_max_len(body.len() - 1);
        d.push(&wire(&body));
        assert!(matches!(d.next_frame(), Err(FrameError::Oversize { .. })));
    }

    #[test]
    fn encoder_refuses_oversize() {
        let f = Frame::new("t", "", json!("x".repeat(200)));
        assert!(matches!(
            f.encode_with_max(100),
            Err(FrameError::Oversize { max: 100, .. })
        ));
    }

    #[test]
    fn truncated_stream_is_reported_by_finish() {
        let raw = wire(r#"{"type":"t","id":"","payload":null}"#);
        let mut d = FrameDecoder::new();
        d.push(&raw[..10]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                buffered: 10,
                expected: raw.len()
            })
        );
        let mut d = FrameDecoder::new();
        d.push(&raw[..2]);
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                buffered: 2,
                expected: 4
            })
        );
    }

    #[test]
    fn bad_bodies_are_named() {
        let cases: &[(&[u8], FrameError)] = &[
            (b"\xff\xfe", FrameError::NotUtf8),
            (b"", FrameError::NotJson(String::new())),
            (b"not json", FrameError::NotJson(String::new())),
            (b"[1]", FrameError::BadEnvelope("not a JSON object")),
            (
                br#"{"id":"1","payload":1}"#,
                FrameError::BadEnvelope("\"type\" is missing"),
            ),
            (
                br#"{"type":1,"id":"1","payload":1}"#,
                FrameError::BadEnvelope("\"type\" is not a string"),
            ),
            (
                br#"{"type":"t","payload":1}"#,
                FrameError::BadEnvelope("\"id\" is missing"),
            ),
            (
                br#"{"type":"t","id":null,"payload":1}"#,
                FrameError::BadEnvelope("\"id\" is not a string"),
            ),
            (
                br#"{"type":"t","id":"1"}"#,
                FrameError::BadEnvelope("\"payload\" is missing"),
            ),
        ];
        for (body, want) in cases {
            let mut raw = (body.len() as u32).to_be_bytes().to_vec();
            raw.extend_from_slice(body);
            let mut d = FrameDecoder::new();
            d.push(&raw);
            let got = d.next_frame().unwrap_err();
            match (want, &got) {
                (FrameError::NotJson(_), FrameError::NotJson(_)) => {}
                _ => assert_eq!(&got, want, "{body:?}"),
            }
            assert!(!got.to_string().is_empty());
        }
    }

    #[test]
    fn fuzz_entry_point_holds_on_sample_inputs() {
        let good = Frame::new("t", "1", json!({"a": [1, 2.5, "x", null]}))
            .encode()
            .unwrap();
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            good.clone(),
            [good.clone(), good.clone()].concat(),
            [good.clone(), vec![0xff, 0xff, 0xff, 0xff]].concat(),
            good[..good.len() - 1].to_vec(),
            wire("{}"),
        ];
        // xorshift noise, and noise after a valid frame.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in [1usize, 5, 17, 64, 300] {
            let mut v = Vec::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            inputs.push([good.clone(), v.clone()].concat());
            inputs.push(v);
        }
        for input in inputs {
            crate::fuzzing::frame(&input);
        }
    }

    #[test]
    fn null_payload_and_extra_fields_are_accepted() {
        let mut d = FrameDecoder::new();
        d.push(&wire(r#"{"type":"t","id":"","payload":null,"extra":true}"#));
        let f = d.next_frame().unwrap().unwrap().frame;
        assert_eq!(f, Frame::new("t", "", Value::Null));
    }
}
