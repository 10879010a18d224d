//! Entry points for cargo-fuzz; not a stable API.
//!
//! Each function feeds arbitrary bytes to a sans-IO parser and panics when an
//! invariant that callers rely on breaks; the fuzz targets in `fuzz/` are
//! one-line wrappers around them. They do no I/O and must never be called by
//! production code. Built for `cargo test` and with the `fuzzing` feature
//! only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::proto::socks5::{
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

fn check_request(request: &socks5::Request) {
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
    use crate::proto::frame::{FrameDecoder, LEN_PREFIX};

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

/// True if `s` holds a character that could end or forge a log line, or
/// steer a terminal: ASCII and Unicode control characters (CR, LF, ESC,
/// C1 controls, U+2028/2029 line separators).
fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// Asserts that an error or log reason is one bounded, printable line.
fn check_reason(what: &str, reason: &str, limit: usize) {
    assert!(!reason.is_empty(), "{what}: empty reason");
    assert!(
        !has_control(reason),
        "{what}: control character in {reason:?}"
    );
    assert!(
        reason.len() <= limit,
        "{what}: {} bytes of reason (limit {limit})",
        reason.len()
    );
}

/// Parses `data` as a `--forward` and a `--remote-forward` spec, and as a
/// `--server` `host[:port]`.
///
/// Panics if a spec that parses does not parse back to itself from a
/// canonical rendering (every part bracketed), if a TCP target port is 0,
/// or if an error message does not quote the spec.
pub fn forward_spec(data: &[u8]) {
    use crate::error::split_host_port;
    use crate::proto::forward_spec::{
        BindAddr, ForwardTarget, LocalForwardSpec, RemoteForwardSpec,
    };
    let Ok(spec) = std::str::from_utf8(data) else {
        return;
    };
    // Brackets make every part literal; a part holding ']' cannot be written.
    let part = |s: &str| (!s.contains(']')).then(|| format!("[{s}]"));
    let target = |t: &ForwardTarget| match t {
        ForwardTarget::Tcp { host, port } | ForwardTarget::Udp { host, port } => {
            assert_ne!(*port, 0, "target port 0 from {spec:?}");
            assert!(!host.is_empty() && !host.contains('/'), "{host:?}");
            part(host).map(|h| format!("{h}:{port}"))
        }
        ForwardTarget::Unix(p) => {
            let p = p.to_str().expect("parsed from a str");
            assert!(p.contains('/'), "{p:?}");
            part(p)
        }
    };
    let quoted = format!("{spec:?}");
    match spec.parse::<LocalForwardSpec>() {
        Ok(local) => {
            let bind = match &local.bind {
                BindAddr::Tcp { host, port } => part(host).map(|h| format!("{h}:{port}")),
                BindAddr::Udp { host, port } => part(host).map(|h| format!("udp:{h}:{port}")),
                BindAddr::Unix(p) => part(p.to_str().expect("parsed from a str")),
            };
            let udp_target = matches!(local.target, ForwardTarget::Udp { .. });
            let udp_bind = matches!(local.bind, BindAddr::Udp { .. });
            assert_eq!(udp_bind, udp_target, "udp on one side only from {spec:?}");
            if let (Some(b), Some(t)) = (bind, target(&local.target)) {
                let again = format!("{b}:{t}");
                let back: LocalForwardSpec = again
                    .parse()
                    .unwrap_or_else(|e| panic!("{again:?} from {spec:?}: {e}"));
                assert_eq!(back, local, "{again:?} from {spec:?}");
            }
        }
        Err(e) => assert!(e.to_string().contains(&quoted), "{e}"),
    }
    match spec.parse::<RemoteForwardSpec>() {
        Ok(remote) => {
            if let (Some(h), Some(t)) = (part(&remote.bind_host), target(&remote.target)) {
                let udp = match remote.target {
                    ForwardTarget::Udp { .. } => "udp:",
                    _ => "",
                };
                let again = format!("{udp}{h}:{}:{t}", remote.bind_port);
                let back: RemoteForwardSpec = again
                    .parse()
                    .unwrap_or_else(|e| panic!("{again:?} from {spec:?}: {e}"));
                assert_eq!(back, remote, "{again:?} from {spec:?}");
            }
        }
        Err(e) => assert!(e.to_string().contains(&quoted), "{e}"),
    }
    if let Ok((host, port)) = split_host_port(spec, 22, "--server")
        && !host.contains(']')
    {
        let again = format!("[{host}]:{port}");
        assert_eq!(
            split_host_port(&again, 1, "--server").ok(),
            Some((host, port)),
            "{again:?} from {spec:?}"
        );
    }
}

/// Addresses a login may come from: both families, IPv4-mapped IPv6, and
/// none at all (a transport without addresses).
const PEERS: &[Option<std::net::IpAddr>] = &[
    None,
    Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1))),
    Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3))),
    Some(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
    Some(std::net::IpAddr::V6(std::net::Ipv6Addr::new(
        0, 0, 0, 0, 0, 0xffff, 0x7f00, 1,
    ))),
    Some(std::net::IpAddr::V6(std::net::Ipv6Addr::new(
        0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
    ))),
];

/// Parses `data` as an authorized_keys file and asks every usable line
/// what it allows.
///
/// Panics if a line is neither used, skipped with a warning, nor blank or a
/// comment; if parsing a file differs from parsing its lines one by one; if
/// a parsed key is not found again; or if a warning or refusal (they reach
/// the log) is not one bounded, printable line.
pub fn authorized_keys(data: &[u8]) {
    use crate::server::AuthorizedKeys;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (keys, warnings) = AuthorizedKeys::parse(text);
    let mut used = 0;
    let mut warned = 0;
    let mut lines = 0;
    for (i, raw) in text.lines().enumerate() {
        lines = i + 1;
        let (one, w) = AuthorizedKeys::parse(raw);
        used += one.len();
        warned += w.len();
        let blank = raw.trim().is_empty() || raw.trim().starts_with('#');
        assert_eq!(
            one.len() + w.len() + usize::from(blank),
            1,
            "line {raw:?} is neither used, warned about, nor blank"
        );
    }
    assert_eq!((keys.len(), warnings.len()), (used, warned));
    for w in &warnings {
        assert!(
            w.line >= 1 && w.line <= lines,
            "warning for line {}",
            w.line
        );
        // The file is the admin's: long lines may give long reasons (and
        // escaping grows a byte to at most 10: \u{10ffff}).
        check_reason("authorized_keys warning", &w.reason, 256 + 10 * text.len());
    }
    for entry in keys.entries() {
        assert!(entry.line >= 1 && entry.line <= lines);
        if entry.options.cert_authority {
            assert!(keys.find_ca(entry.key.key_data()).is_some());
        } else {
            let found = keys.find(&entry.key).expect("a parsed key is found");
            assert_eq!(found.key.key_data(), entry.key.key_data());
        }
        let o = &entry.options;
        for peer in PEERS {
            for now in [0, u64::from(u32::MAX), u64::MAX] {
                if let Err(reason) = o.admits(*peer, now) {
                    check_reason("admits", &reason, 256);
                }
            }
        }
        let policy = o.policy();
        let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        for (host, port) in [("localhost", 80), ("127.0.0.1", 22), ("", 0), ("*", 1)] {
            let open = policy.may_open(host, port);
            for bind in [loopback, any] {
                let listen = policy.may_listen(host, bind, port);
                if let Err(reason) = listen {
                    check_reason("may_listen", reason, 256);
                }
                if !o.port_forwarding {
                    assert!(
                        !open && listen.is_err(),
                        "forwarding off but {host}:{port} allowed"
                    );
                }
                // permitlisten="localhost:…" never lets a bind reach all
                // interfaces.
                if listen.is_ok()
                    && bind == any
                    && let Some(list) = &o.permit_listen
                {
                    assert!(
                        list.iter().any(|hp| hp.host == "*"
                            || hp
                                .host
                                .parse::<std::net::IpAddr>()
                                .is_ok_and(|ip| ip.to_canonical() == any)),
                        "{list:?} lets {host:?} bind 0.0.0.0"
                    );
                }
            }
            if open {
                assert!(
                    o.permit_open.as_ref().is_none_or(|l| !l.is_empty()),
                    "empty permitopen list allows {host}:{port}"
                );
            }
        }
    }
}

/// Decodes an OpenSSH user certificate from `data` and runs the checks
/// russh leaves to us, under CA options taken from the input.
///
/// Input layout: CA line options, NUL, login name, NUL, certificate in wire
/// format. Panics if a certificate is accepted outside its validity
/// window, with the wrong type, or without a principal the CA line allows;
/// or if a refusal is not one bounded, printable line.
pub fn certificate(data: &[u8]) {
    use russh::keys::Certificate;
    use russh::keys::ssh_encoding::Decode;
    use russh::keys::ssh_key::certificate::CertType;

    use crate::proto::certificate::check_certificate;
    use crate::server::AuthorizedKeys;

    const CA_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ca";
    let mut parts = data.splitn(3, |&b| b == 0);
    let (Some(opts), Some(user), Some(mut wire)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(opts), Ok(user)) = (std::str::from_utf8(opts), std::str::from_utf8(user)) else {
        return;
    };
    if opts.contains(['\n', '\r']) {
        return;
    }
    let line = if opts.is_empty() {
        format!("cert-authority {CA_KEY}")
    } else {
        format!("cert-authority,{opts} {CA_KEY}")
    };
    let (cas, _) = AuthorizedKeys::parse(&line);
    let Some(ca) = cas.entries().first() else {
        return;
    };
    let Ok(cert) = Certificate::decode(&mut wire) else {
        return;
    };
    let after = cert.valid_after();
    let before = cert.valid_before();
    let times = [
        0,
        after,
        after.saturating_sub(1),
        before,
        before.saturating_sub(1),
        u64::MAX,
    ];
    for peer in PEERS {
        for now in times {
            match check_certificate(&cert, &ca.options, user, *peer, now) {
                Ok(_) => {
                    assert_eq!(cert.cert_type(), CertType::User);
                    assert!(after <= now && now < before, "accepted at {now}");
                    let principals = cert.valid_principals();
                    let allowed = match &ca.options.principals {
                        Some(list) => principals.iter().any(|p| list.contains(p)),
                        None => principals.iter().any(|p| p == user),
                    };
                    assert!(allowed, "accepted {principals:?} for {user:?}");
                }
                Err(reason) => check_reason("certificate", &reason, 256),
            }
        }
    }
}

/// Feeds `data` to the stealth decoy (the nginx look-alike), whole and in
/// pieces (piece size from the first byte).
///
/// Panics if the two ways of feeding give different answers, if an answer
/// is not one of nginx's shapes (status line or HTTP/0.9 page, printable
/// ASCII only: nothing of the request is echoed), if the decoy answers
/// without consuming input, or if it keeps talking after saying close.
#[cfg(feature = "tls")]
pub fn decoy(data: &[u8]) {
    use crate::proto::decoy::{Decoy, Step};

    const DATE: &str = "Tue, 01 Dec 2026 00:00:00 GMT";
    let run = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut d = Decoy::default();
        let mut out = Vec::new();
        let mut answers = 0usize;
        for chunk in chunks {
            d.feed(chunk);
            loop {
                match d.step(DATE) {
                    Step::NeedMore => break,
                    Step::Send { bytes, close } => {
                        answers += 1;
                        assert!(answers <= data.len(), "answer without a request");
                        check_decoy_answer(&bytes);
                        out.push(bytes);
                        if close {
                            return (out, true);
                        }
                    }
                }
            }
        }
        (out, false)
    };
    let whole = run(&mut std::iter::once(data));
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let pieces = run(&mut data.chunks(step));
    assert_eq!(whole, pieces, "whole vs pieces of {step}");
    // Byte by byte is quadratic in the decoy's rescans; short inputs only.
    if data.len() <= 512 {
        let bytewise = run(&mut data.chunks(1));
        assert_eq!(whole, bytewise, "whole vs byte by byte");
    }
}

#[cfg(feature = "tls")]
fn check_decoy_answer(bytes: &[u8]) {
    // A gzip-encoded page (nginx's gzip_static answer) is binary after the
    // head; everything else, head included, is printable ASCII.
    let text = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) if bytes[..end].ends_with(b"Content-Encoding: gzip") => &bytes[..end],
        _ => bytes,
    };
    assert!(
        text.iter()
            .all(|&b| b == b'\r' || b == b'\n' || (b' '..=b'~').contains(&b)),
        "non-printable byte in {:?}",
        String::from_utf8_lossy(bytes)
    );
    assert!(
        bytes.starts_with(b"HTTP/1.1 ") || bytes.starts_with(b"<html>"),
        "{:?}",
        String::from_utf8_lossy(bytes)
    );
    assert!(bytes.len() < 4096, "{} bytes of answer", bytes.len());
}

/// Runs the client's upstream-proxy reply parsers over `data`: the HTTP
/// CONNECT response head (read as `dial` reads it: up to the blank line,
/// at most 16 KiB), the SOCKS5 replies, and `--proxy` URLs.
///
/// Panics if a CONNECT response is accepted without a 2xx status line, if
/// a refusal (shown to the user, logged) is not one bounded printable line,
/// if a SOCKS5 reply asks for more bytes than an address can hold, or if a
/// parsed `--proxy` URL does not parse back to itself from its display.
pub fn http_connect_response(data: &[u8]) {
    use crate::proto::http_connect as http;
    use crate::proto::socks5::client as socks5;
    use crate::transport::ProxyUrl;

    const MAX_HTTP_HEAD: usize = 16 * 1024;
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(data.len());
    let head = data.get(..end.min(MAX_HTTP_HEAD)).unwrap_or(data);
    match http::check_response(head) {
        Ok(()) => {
            let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(line.starts_with(b"HTTP/1."), "{line:?}");
            let code = line.split(|&b| b == b' ').nth(1).unwrap_or(b"");
            assert!(
                code.len() == 3 && code[0] == b'2' && code.iter().all(u8::is_ascii_digit),
                "accepted status {code:?}"
            );
        }
        Err(reason) => check_reason("CONNECT response", &reason, 512),
    }

    if let Some(&[a, b, c, d, e]) = data.get(..5) {
        let _ = socks5::method([a, b]);
        let _ = socks5::user_pass_status([a, b]);
        match socks5::reply_len([a, b, c, d, e]) {
            Ok(n) => assert!((2..=257).contains(&n), "reply of {n} more bytes"),
            Err(reason) => check_reason("SOCKS5 reply", &reason, 256),
        }
    }

    if let Ok(s) = std::str::from_utf8(data) {
        match s.parse::<ProxyUrl>() {
            Ok(url) => {
                let shown = url.to_string();
                let back: ProxyUrl = shown
                    .parse()
                    .unwrap_or_else(|e| panic!("{shown:?} from {s:?}: {e}"));
                assert_eq!(
                    (back.kind, &back.host, back.port),
                    (url.kind, &url.host, url.port),
                    "{shown:?} from {s:?}"
                );
                if let Some((user, pass)) = &url.auth {
                    assert!(!shown.contains('@'), "credentials in {shown:?}");
                    assert!(user.len() <= 255 && pass.len() <= 255);
                }
                if url.kind == crate::transport::ProxyKind::Socks5 {
                    let _ = socks5::connect_request(&url.host, url.port);
                }
            }
            Err(e) => {
                // The error quotes the URL with its user info replaced.
                if let Some((scheme, rest)) = s.split_once("://")
                    && scheme.bytes().all(|b| b.is_ascii_alphanumeric())
                    && let Some((userinfo, _)) = rest.rsplit_once('@')
                    && !userinfo.is_empty()
                    && !userinfo.contains('*')
                {
                    let leak = format!("{userinfo}@");
                    assert!(!e.to_string().contains(&leak), "credentials in {e}");
                }
            }
        }
    }
}

/// Parses `data` as the request head the iroh relay bridge reads from
/// iroh (`CONNECT host:port HTTP/1.1`).
///
/// Panics if a parsed authority does not parse back to itself once
/// written out again, or holds whitespace or control characters.
#[cfg(feature = "iroh")]
pub fn http_connect_request(data: &[u8]) {
    use crate::proto::http_connect::parse_request;

    let Some((host, port)) = parse_request(data) else {
        return;
    };
    assert!(!host.is_empty());
    assert!(
        !host.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{host:?}"
    );
    let again = format!(
        "CONNECT {} HTTP/1.1\r\n\r\n",
        crate::proto::host_port::HostPort(&host, port)
    );
    assert_eq!(
        parse_request(again.as_bytes()),
        Some((host.clone(), port)),
        "{again:?}"
    );
}

/// Parses `data` as a `--peer` value (endpoint ticket, endpoint id, or
/// `ID@IP:PORT,...`) and as an `--iroh-relay` value.
///
/// Panics if a parsed peer does not survive being written out again as a
/// ticket, or if an error message is not printable.
#[cfg(feature = "iroh")]
pub fn iroh_ticket(data: &[u8]) {
    use iroh_tickets::endpoint::EndpointTicket;

    use crate::transport::{IrohPeer, IrohRelay};

    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match s.parse::<IrohPeer>() {
        Ok(peer) => {
            let ticket = EndpointTicket::new(peer.addr().clone()).to_string();
            let back: IrohPeer = ticket
                .parse()
                .unwrap_or_else(|e| panic!("{ticket:?} from {s:?}: {e}"));
            assert_eq!(back.addr(), peer.addr(), "{ticket:?} from {s:?}");
            assert_eq!(back.id(), peer.id());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(relay) = s.parse::<IrohRelay>() {
        let _ = format!("{relay:?}");
    }
}

/// Parses `data` as a known_hosts file and asks what it says about two
/// Ed25519 keys for a handful of hosts.
///
/// Panics if a verdict names a line the file does not have, if an error is
/// not one bounded printable line, or if the verdict does not follow the
/// rules when a line is appended: learning an unknown host (plainly or
/// hashed) makes its key known, a line with another key never unlists a
/// known key, and `@revoked` for the presented key always refuses it.
pub fn known_hosts(data: &[u8]) {
    use crate::client::known_hosts::{Verdict, hash_host, host_name, is_plain_host, lookup};
    use russh::keys::PublicKey;

    const KEYS: [&str; 2] = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ",
    ];
    const HOSTS: &[(&str, u16)] = &[
        ("h", 22),
        ("h", 2222),
        ("x.example.com", 22),
        ("::1", 2222),
        ("10.0.0.1", 22),
    ];
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    let keys: Vec<PublicKey> = KEYS
        .iter()
        .filter_map(|k| PublicKey::from_openssh(k).ok())
        .collect();
    let append = |extra: &str| {
        let mut t = text.to_string();
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(extra);
        t.push('\n');
        t
    };
    for &(host, port) in HOSTS {
        let name = host_name(host, port);
        for (i, key) in keys.iter().enumerate() {
            let other = keys.get(1 - i).expect("two keys");
            let line = |k: &PublicKey, prefix: &str| {
                format!("{prefix}{}", k.to_openssh().unwrap_or_default())
            };
            let verdict = match lookup(text, host, port, key) {
                Ok(v) => v,
                Err(e) => {
                    check_reason("known_hosts", &e.to_string(), 512);
                    continue;
                }
            };
            match verdict {
                Verdict::Known { line } | Verdict::Changed { line } | Verdict::Revoked { line } => {
                    assert!(line >= 1 && line <= lines, "line {line} of {lines}")
                }
                Verdict::Unknown => {
                    assert!(is_plain_host(host));
                    let learned = append(&line(key, &format!("{name} ")));
                    assert_eq!(
                        lookup(&learned, host, port, key),
                        Ok(Verdict::Known { line: lines + 1 }),
                        "learned {name}"
                    );
                    let hashed = append(&line(key, &format!("{} ", hash_host(&name, data))));
                    if !data.is_empty() {
                        assert_eq!(
                            lookup(&hashed, host, port, key),
                            Ok(Verdict::Known { line: lines + 1 }),
                            "learned {name} hashed"
                        );
                    }
                    let moved = append(&line(other, &format!("{name} ")));
                    assert_eq!(
                        lookup(&moved, host, port, key),
                        Ok(Verdict::Changed { line: lines + 1 }),
                        "another key for {name}"
                    );
                }
            }
            if let Verdict::Known { line: known } = verdict {
                let more = append(&line(other, &format!("{name} ")));
                assert_eq!(
                    lookup(&more, host, port, key),
                    Ok(Verdict::Known { line: known })
                );
            }
            let revoked = append(&line(key, &format!("@revoked {name} ")));
            assert!(
                matches!(
                    lookup(&revoked, host, port, key),
                    Ok(Verdict::Revoked { .. })
                ),
                "@revoked ignored for {name}"
            );
        }
    }
}

/// Runs the udpgw frame decoder over `data` as a stream of frames, and the
/// SOCKS5 UDP datagram parser over all of it.
///
/// Panics if the decoder takes more than it was given or nothing, if a
/// decoded frame does not encode back to the bytes it came from (for the
/// canonical flags), if any prefix of a frame decodes, or if a parsed
/// datagram does not encode back to the same address and payload.
pub fn udpgw(data: &[u8]) {
    use crate::proto::udpgw::{self, FLAG_DATA, FLAG_ERR, FLAG_KEEPALIVE, Frame};
    let mut at = 0;
    while let Some((frame, used)) = udpgw::decode(&data[at..]) {
        assert!(used >= 2 && at + used <= data.len(), "used {used} at {at}");
        let bytes = &data[at..at + used];
        for cut in 0..used {
            assert_eq!(
                udpgw::decode(&bytes[..cut]),
                None,
                "a prefix of a frame decoded"
            );
        }
        if let Ok(frame) = frame {
            let mut again = Vec::new();
            udpgw::encode(&frame, &mut again).unwrap();
            let canonical = match (&frame, bytes[2]) {
                (Frame::Data { .. }, FLAG_DATA) => true,
                (Frame::Keepalive { .. }, FLAG_KEEPALIVE) | (Frame::Error { .. }, FLAG_ERR) => {
                    used == 5
                }
                _ => false,
            };
            if canonical {
                assert_eq!(again, bytes, "{frame:?}");
            }
            assert_eq!(udpgw::decode(&again).map(|(f, _)| f), Some(Ok(frame)));
        }
        at += used;
    }
    if let Ok(d) = socks5::parse_udp(data) {
        let again = socks5::encode_udp(&d.target, d.payload).unwrap();
        let back = socks5::parse_udp(&again).unwrap();
        assert_eq!((back.target, back.payload), (d.target.clone(), d.payload));
    }
}

/// Parses `data` as a request to the client's HTTP proxy listener.
///
/// Panics if a parsed request claims more bytes than it was given, names
/// a host with whitespace or control characters, or if a forwarded head
/// is not one complete origin-form request (a header injected through the
/// URI would show here) that closes the connection; a CONNECT must parse
/// back to itself once written out again.
pub fn http_proxy(data: &[u8]) {
    use crate::proto::http_proxy::{MAX_HEAD, ProxyRequest, parse};

    let Ok(Some((req, used))) = parse(data) else {
        return;
    };
    assert!(used <= data.len() && used <= MAX_HEAD, "used {used}");
    let (host, port) = match &req {
        ProxyRequest::Connect { host, port } | ProxyRequest::Forward { host, port, .. } => {
            (host.clone(), *port)
        }
    };
    assert!(!host.is_empty());
    assert!(
        !host.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{host:?}"
    );
    match req {
        ProxyRequest::Connect { .. } => {
            let again = format!(
                "CONNECT {} HTTP/1.1\r\n\r\n",
                crate::proto::host_port::HostPort(&host, port)
            );
            let back = parse(again.as_bytes()).unwrap();
            assert_eq!(
                back,
                Some((ProxyRequest::Connect { host, port }, again.len())),
                "{again:?}"
            );
        }
        ProxyRequest::Forward { head, .. } => {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut origin = httparse::Request::new(&mut headers);
            let status = origin.parse(&head).unwrap();
            assert_eq!(status, httparse::Status::Complete(head.len()), "{head:?}");
            assert!(origin.path.is_some_and(|p| p.starts_with('/')), "{head:?}");
            let closes = origin.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
            });
            assert!(closes, "{head:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every checked-in seed (and every crash input added after a fix)
    /// replays through its entry point in the ordinary test run too.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count > 0, "no seeds in {}", dir.display());
    }

    #[test]
    fn fuzz_corpora_replay_cleanly() {
        replay("socks5_request", super::socks5);
        replay("frame", super::frame);
        replay("udpgw", super::udpgw);
        replay("http_proxy", super::http_proxy);
        replay("forward_spec", super::forward_spec);
        replay("authorized_keys", super::authorized_keys);
        replay("certificate", super::certificate);
        replay("http_connect_response", super::http_connect_response);
        replay("known_hosts", super::known_hosts);
        #[cfg(feature = "tls")]
        replay("decoy", super::decoy);
        #[cfg(feature = "iroh")]
        {
            replay("http_connect_request", super::http_connect_request);
            replay("iroh_ticket", super::iroh_ticket);
        }
    }
}
