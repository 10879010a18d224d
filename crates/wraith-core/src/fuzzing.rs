//! Entry points for cargo-fuzz; not a stable API.
//!
//! Each function feeds arbitrary bytes to a sans-IO parser and panics when an
//! invariant that callers rely on breaks; the fuzz targets in `fuzz/` are
//! one-line wrappers around them. They do no I/O and must never be called by
//! production code.

use crate::client::socks5_proto::{
    self, MAX_HANDSHAKE_BYTES, Parse, Reply, Socks5Error, TargetAddr, encode_reply, parse_greeting,
    parse_request,
};

/// Runs the SOCKS5 greeting and request parsers over `data`, over every
/// prefix of it, and over the request that follows a complete greeting.
///
/// Panics if a parser consumes more than it was given or nothing at all, if
/// a prefix that already decided (complete or error) decides differently
/// once more bytes arrive, if a complete message is not reported as
/// incomplete for every shorter prefix, or if an error's reply is malformed.
pub fn socks5(data: &[u8]) {
    check_prefixes(data, parse_greeting, |_| {});
    check_prefixes(data, parse_request, check_request);

    // A client may send its greeting and request in one write.
    if let Ok(Parse::Done((), used)) = parse_greeting(data)
        && let Some(rest) = data.get(used..)
    {
        check_prefixes(rest, parse_request, check_request);
    }
}

/// Checks one parser against `data` and each of its prefixes.
fn check_prefixes<T: PartialEq + std::fmt::Debug>(
    data: &[u8],
    parse: fn(&[u8]) -> Result<Parse<T>, Socks5Error>,
    check_done: fn(&T),
) {
    let full = parse(data);
    match &full {
        Ok(Parse::Done(value, used)) => {
            assert!(*used > 0, "consumed nothing: {data:?}");
            assert!(
                *used <= data.len(),
                "consumed {used} of {} bytes",
                data.len()
            );
            check_done(value);
        }
        Ok(Parse::Incomplete) => assert!(
            data.len() < MAX_HANDSHAKE_BYTES,
            "incomplete after {} bytes",
            data.len()
        ),
        Err(e) => check_error(e),
    }
    // Parsers never look past MAX_HANDSHAKE_BYTES, so longer prefixes add
    // time and nothing else.
    for split in 0..data.len().min(MAX_HANDSHAKE_BYTES + 1) {
        let Some(prefix) = data.get(..split) else {
            break;
        };
        let partial = parse(prefix);
        match (&partial, &full) {
            (Ok(Parse::Incomplete), Ok(Parse::Done(_, used))) => {
                assert!(
                    split < *used,
                    "prefix of {split} bytes holds a complete message"
                );
            }
            (Ok(Parse::Incomplete), _) => {}
            _ => assert_eq!(partial, full, "prefix of {split} bytes decided differently"),
        }
    }
}

fn check_request(request: &socks5_proto::Request) {
    let target = &request.target;
    let shown = target.to_string();
    let port = target.port();
    assert!(shown.ends_with(&format!(":{port}")), "{shown:?}");
    assert!(!target.host().is_empty());
    if let TargetAddr::Ip(addr) = target {
        // A reply has the request's layout with REP in place of CMD, so an
        // encoded address must parse back to itself.
        let mut bytes = encode_reply(Reply::Succeeded, Some(*addr));
        if let Some(cmd) = bytes.get_mut(1) {
            *cmd = 0x01;
        }
        let Ok(Parse::Done(back, used)) = parse_request(&bytes) else {
            panic!("encoded reply for {addr} does not parse back");
        };
        assert_eq!(used, bytes.len());
        assert_eq!(&back.target, target);
    }
}

fn check_error(error: &Socks5Error) {
    assert!(!error.to_string().is_empty());
    if let Some(reply) = error.reply() {
        match reply.as_slice() {
            [0x05, 0xFF] | [0x00, 0x5B, 0, 0, 0, 0, 0, 0] => {}
            [0x05, rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0] => {
                assert!(*rep != 0, "error replied success")
            }
            other => panic!("malformed reply {other:?} for {error}"),
        }
    }
}

/// Runs the control-channel frame decoder over `data`, pushed whole and in
/// pieces (piece sizes taken from the data itself), with a small limit so
/// oversize paths are reached.
///
/// Panics if the two ways of feeding disagree, if the decoder holds more
/// than one frame plus the last chunk, if a decoded frame does not survive
/// an encode/decode round trip, or if its wire bytes are not what was fed.
pub fn frame(data: &[u8]) {
    use crate::codec::{FrameDecoder, LEN_PREFIX};

    const MAX: usize = 4096;
    let run = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut d = FrameDecoder::with_max_len(MAX);
        let mut out = Vec::new();
        for chunk in chunks {
            d.push(chunk);
            assert!(
                d.buffered() <= LEN_PREFIX + MAX + chunk.len(),
                "decoder holds {} bytes",
                d.buffered()
            );
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => out.push(Ok(f)),
                    Ok(None) => break,
                    Err(e) => {
                        assert!(!e.to_string().is_empty());
                        out.push(Err(e));
                        break;
                    }
                }
            }
            if matches!(out.last(), Some(Err(_))) {
                break;
            }
        }
        let end = d.finish();
        (out, end.is_ok())
    };
    let (whole, whole_end) = run(&mut std::iter::once(data));
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let (pieces, pieces_end) = run(&mut data.chunks(step));
    // Errors carry serde_json's text, which may differ in position only if
    // inputs differ; they must not.
    assert_eq!(whole, pieces, "whole vs pieces of {step}");
    assert_eq!(whole_end, pieces_end);

    let mut fed = 0usize;
    for f in whole.iter().flatten() {
        assert_eq!(data.get(fed..fed + f.wire.len()), Some(f.wire.as_slice()));
        fed += f.wire.len();
        let again = f.frame.encode_with_max(usize::MAX).expect("re-encode");
        let mut d = FrameDecoder::with_max_len(usize::MAX);
        d.push(&again);
        let back = d.next_frame().expect("re-decode").expect("complete");
        assert_eq!(back.frame, f.frame);
    }
}
