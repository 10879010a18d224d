//! The stealth decoy: answers non-SSH connections the way a stock Debian
//! nginx (1.22, `server_tokens on`, a default server that returns 404)
//! does, byte for byte apart from the Date header: the same status lines,
//! header order, error pages, keep-alive rules, HTTP/0.9 replies and
//! request-parsing quirks (which malformed requests get 400, 414, 501 or
//! 505). The shapes were captured from the real nginx; the e2e test
//! `stealth_answers_like_nginx` compares the two side by side.
//!
//! Sans-IO: [`Decoy`] takes bytes and says what to send and whether to
//! close; `stealth.rs` moves the bytes. It never answers anything but error
//! pages and never echoes request data back.
#![cfg_attr(not(feature = "tls"), allow(dead_code))] // only stealth mode (tls) serves it

/// The version string nginx puts in `Server:` and error pages.
pub(crate) const SERVER: &str = "nginx/1.22.1";

/// What the decoy wants done next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for more bytes (a request is incomplete, or none started).
    NeedMore,
    /// Send `bytes`; then close if `close`, else look for the next request.
    Send { bytes: Vec<u8>, close: bool },
}

/// How a parsed request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// One connection's HTTP/1.x state. Every byte is looked at once (a
/// request head is parsed line by line as lines complete), and at most one
/// request head is held: nginx's header buffers bound it, see
/// [`HeaderBuffers`].
#[derive(Debug)]
pub(crate) struct Decoy {
    /// Bytes received and not yet consumed: the request head in progress,
    /// and whatever followed it in the same reads.
    buf: Vec<u8>,
    /// The body of the last request, still to be skipped.
    discard: Discard,
    /// How far the head in `buf` has been parsed.
    head: Head,
    /// nginx's header buffers as this request uses them.
    buffers: HeaderBuffers,
    /// Requests answered on this connection (`keepalive_requests`).
    answered: u32,
    /// The next answer closes the connection (`keepalive_time` is up).
    last: bool,
    /// A byte arrived since the last answer: nginx's header timer runs.
    started: bool,
}

impl Default for Decoy {
    fn default() -> Self {
        Decoy {
            buf: Vec::new(),
            discard: Discard::Nothing,
            head: Head::default(),
            buffers: HeaderBuffers::new(),
            answered: 0,
            last: false,
            started: false,
        }
    }
}

/// nginx's `client_header_buffer_size 1k`: the buffer a request head is
/// first read into.
const FIRST_BUFFER: usize = 1024;
/// nginx's `large_client_header_buffers 4 8k`: a request line or header
/// line longer than one of these is refused (414 or 494), and so is a head
/// that needs more than four of them after the first buffer.
const LARGE_BUFFER: usize = 8 * 1024;
/// See [`LARGE_BUFFER`].
const LARGE_BUFFERS: usize = 4;
/// nginx's `keepalive_requests 1000`: the 1000th answer on a connection
/// says `Connection: close` and closes it.
pub(crate) const KEEPALIVE_REQUESTS: u32 = 1000;

/// How nginx (`ngx_http_alloc_large_header_buffer`) stores a request head:
/// it reads into a 1 KiB buffer; when a buffer fills in the middle of a
/// line, that partial line is copied into a fresh 8 KiB buffer (refused if
/// it already holds 8 KiB, or if four were used); blank lines before a
/// request just restart the buffer. Modelling this exactly makes the decoy
/// refuse the same heads nginx refuses, and bounds what it holds to about
/// 33 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeaderBuffers {
    /// Free bytes in the current buffer.
    room: usize,
    /// Size of the current buffer.
    cap: usize,
    /// Large buffers taken.
    large: usize,
}

impl HeaderBuffers {
    fn new() -> Self {
        HeaderBuffers {
            room: FIRST_BUFFER,
            cap: FIRST_BUFFER,
            large: 0,
        }
    }

    /// A pipelined request continues in the buffer the last one ended in;
    /// nginx keeps that one large buffer and frees the others.
    fn pipelined(self) -> Self {
        HeaderBuffers {
            large: self.large.min(1),
            ..self
        }
    }

    /// `n` blank-line bytes before a request line.
    fn skip_blank(&mut self, mut n: usize) {
        while n > 0 {
            if self.room == 0 {
                // "the client fills up the buffer with \r\n": start over.
                self.room = self.cap;
            }
            let t = n.min(self.room);
            self.room -= t;
            n -= t;
        }
    }

    /// Store `len` bytes of one line (its LF among them if `complete`);
    /// false when nginx would refuse the head.
    fn place(&mut self, len: usize, complete: bool, request_line: bool) -> bool {
        if len == 0 {
            return true;
        }
        if self.room == 0 {
            // Full at a line boundary: the request line starts the buffer
            // over (it held only blank lines), a header needs a new one.
            if request_line {
                self.room = self.cap;
            } else if !self.grow(0) {
                return false;
            }
        }
        let mut held = 0;
        let mut rest = len;
        // A buffer that fills before the line's LF has to be replaced.
        while rest > self.room || (!complete && rest == self.room) {
            held += self.room;
            rest -= self.room;
            if !self.grow(held) {
                return false;
            }
        }
        self.room -= rest;
        true
    }

    /// Move to a new large buffer holding `partial` bytes of a line.
    fn grow(&mut self, partial: usize) -> bool {
        if partial >= LARGE_BUFFER || self.large >= LARGE_BUFFERS {
            return false;
        }
        self.large += 1;
        self.cap = LARGE_BUFFER;
        self.room = LARGE_BUFFER - partial;
        true
    }
}

/// How far a request head has been parsed (offsets into `Decoy::buf`).
#[derive(Debug, Default)]
struct Head {
    /// Start of the line being received.
    line_start: usize,
    /// Bytes before this were already searched for LF.
    scanned: usize,
    /// Bytes of the request line whose method characters were checked.
    method_checked: usize,
    /// The request line, once complete.
    request: Option<RequestLine>,
    fields: Fields,
}

/// The headers the decoy's answer depends on.
#[derive(Debug, Default)]
struct Fields {
    host: Option<Vec<u8>>,
    content_length: Option<u64>,
    transfer_encoding: Option<Vec<u8>>,
    connection: Vec<u8>,
    user_agent: Vec<u8>,
    accept_encoding: Vec<u8>,
    via: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Discard {
    #[default]
    Nothing,
    Bytes(u64),
    Chunked(ChunkState),
}

#[derive(Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

impl Decoy {
    /// Add received bytes. Feed at most one read's worth before calling
    /// [`Decoy::step`] until it says [`Step::NeedMore`]: that keeps what is
    /// held bounded.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.started = true;
        }
        self.buf.extend_from_slice(data);
    }

    /// True when no request is partly received (the next wait is a
    /// keep-alive wait rather than a header wait). Blank lines count as a
    /// started request, as in nginx: they do not restart its timer.
    pub(crate) fn idle(&self) -> bool {
        !self.started && self.discard == Discard::Nothing
    }

    /// Make the next answer the last one (nginx's `keepalive_time`).
    pub(crate) fn close_after_next(&mut self) {
        self.last = true;
    }

    /// Bytes held, for tests of the bound.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.len()
    }

    /// Process what has been fed; `date` is the HTTP date for headers.
    pub(crate) fn step(&mut self, date: &str) -> Step {
        if !self.skip_body() {
            return Step::NeedMore;
        }
        match self.parse() {
            Parsed::Incomplete => Step::NeedMore,
            Parsed::Reject { status, http09 } => {
                // Nothing more is parsed on this connection.
                self.buf = Vec::new();
                Step::Send {
                    bytes: response(status, http09, false, false, false, date),
                    close: true,
                }
            }
            Parsed::Request {
                consumed,
                head,
                keep_alive,
                body,
                padding,
                gzip,
            } => {
                self.buf.drain(..consumed);
                self.head = Head::default();
                self.buffers = if self.buf.is_empty() {
                    HeaderBuffers::new()
                } else {
                    self.buffers.pipelined()
                };
                self.started = !self.buf.is_empty();
                self.answered = self.answered.saturating_add(1);
                let keep_alive = keep_alive && !self.last && self.answered < KEEPALIVE_REQUESTS;
                self.discard = match body {
                    Body::None => Discard::Nothing,
                    Body::Length(n) => Discard::Bytes(n),
                    Body::Chunked => Discard::Chunked(ChunkState::Size),
                };
                let bytes = if gzip {
                    gzip_response(head, keep_alive, padding, date)
                } else {
                    response(404, false, head, keep_alive, padding, date)
                };
                Step::Send {
                    bytes,
                    close: !keep_alive,
                }
            }
        }
    }

    /// Parse the lines of the head that have arrived, each once.
    fn parse(&mut self) -> Parsed {
        loop {
            if self.head.request.is_none() && self.head.line_start == 0 {
                // Empty lines before a request are skipped, and not kept.
                let blank = self
                    .buf
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                if blank > 0 {
                    self.buf.drain(..blank);
                    self.buffers.skip_blank(blank);
                    self.head.scanned = 0;
                    self.head.method_checked = 0;
                }
                if self.buf.is_empty() {
                    return Parsed::Incomplete;
                }
            }
            let start = self.head.line_start;
            let from = self.head.scanned.max(start);
            let request_line = self.head.request.is_none();
            let Some(lf) = self.buf[from..].iter().position(|&b| b == b'\n') else {
                self.head.scanned = self.buf.len();
                return self.incomplete_line();
            };
            let end = from + lf + 1;
            if !self.buffers.place(end - start, true, request_line) {
                // A buffer filled before this line's LF.
                if request_line {
                    let seen = &self.buf[start..end.min(start + LARGE_BUFFER)];
                    return reject(check_line_prefix(seen).unwrap_or(414));
                }
                return reject(494);
            }
            let raw = &self.buf[start..end - 1];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            self.head.line_start = end;
            self.head.scanned = end;
            if request_line {
                match request_line_of(line) {
                    Ok(r) => self.head.request = Some(r),
                    Err(e) => return e,
                }
                continue;
            }
            if line.is_empty() {
                return self.finish(end);
            }
            if let Err(e) = header(&mut self.head.fields, line) {
                return e;
            }
        }
    }

    /// The line in progress has no LF yet: refuse it as soon as nginx
    /// would (a bad method byte, a full buffer), else wait.
    fn incomplete_line(&mut self) -> Parsed {
        let start = self.head.line_start;
        let len = self.buf.len() - start;
        let request_line = self.head.request.is_none();
        if request_line && self.head.method_checked < LARGE_BUFFER {
            // Checked once per byte; nginx sees no more than a buffer.
            let upto = len.min(LARGE_BUFFER);
            let from = self.head.method_checked.min(upto);
            if let Some(status) = check_line_prefix(&self.buf[start + from..start + upto]) {
                return reject(status);
            }
            if self.buf[start + from..start + upto].contains(&b' ') {
                // The method is complete; the rest waits for the LF.
                self.head.method_checked = LARGE_BUFFER;
            } else {
                self.head.method_checked = upto;
            }
        }
        let mut buffers = self.buffers;
        if !buffers.place(len, false, request_line) {
            return reject(if request_line { 414 } else { 494 });
        }
        Parsed::Incomplete
    }

    /// The head ended at `consumed`: judge it as nginx would.
    fn finish(&mut self, consumed: usize) -> Parsed {
        let Some(req) = &self.head.request else {
            return reject(400);
        };
        let f = &mut self.head.fields;
        if req.minor_11 && f.host.is_none() {
            return reject(400);
        }
        let mut body = match f.content_length {
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        };
        if let Some(te) = f.transfer_encoding.take() {
            if !req.minor_11 {
                return reject(400);
            }
            if te != b"chunked" {
                return reject(501);
            }
            if f.content_length.is_some() {
                return reject(400);
            }
            body = Body::Chunked;
        }
        let keep_alive = if contains(&f.connection, b"close") {
            false
        } else if contains(&f.connection, b"keep-alive") {
            true
        } else {
            req.minor_11
        };
        Parsed::Request {
            consumed,
            head: req.head,
            keep_alive,
            body,
            padding: wants_padding(&f.user_agent),
            // Debian's nginx.conf has `gzip on` (gzip_http_version 1.1,
            // gzip_proxied off: nothing for requests with Via).
            gzip: req.minor_11 && !f.via && accepts_gzip(&f.accept_encoding),
        }
    }

    /// Drop body bytes of the previous request; false if more are needed.
    fn skip_body(&mut self) -> bool {
        loop {
            match &mut self.discard {
                Discard::Nothing => return true,
                Discard::Bytes(n) => {
                    let take = usize::try_from(*n)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    self.buf.drain(..take);
                    *n -= take as u64;
                    if *n > 0 {
                        return false;
                    }
                    self.discard = Discard::Nothing;
                }
                Discard::Chunked(state) => {
                    let Some(done) = skip_chunked(state, &mut self.buf) else {
                        // A broken chunked body: nginx gives up on the
                        // connection. Make the next parse fail.
                        self.discard = Discard::Nothing;
                        self.buf.clear();
                        self.buf.extend_from_slice(b"\x00");
                        return true;
                    };
                    if !done {
                        return false;
                    }
                    self.discard = Discard::Nothing;
                }
            }
        }
    }
}

/// Longest chunk-size line (extensions included) held while its LF is
/// awaited.
const CHUNK_LINE: usize = 1024;

/// Advance through a chunked body; `Some(true)` at its end, `Some(false)`
/// when more bytes are needed, `None` when it is malformed.
fn skip_chunked(state: &mut ChunkState, buf: &mut Vec<u8>) -> Option<bool> {
    loop {
        match state {
            ChunkState::Size => {
                // A size line as long as the buffer is refused whether or
                // not its LF came in the same read.
                let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
                    return (buf.len() < CHUNK_LINE).then_some(false);
                };
                if lf >= CHUNK_LINE {
                    return None;
                }
                let line = String::from_utf8_lossy(&buf[..lf]).into_owned();
                buf.drain(..=lf);
                let hex = line.trim_end_matches('\r');
                let hex = hex.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(hex, 16).ok()?;
                *state = if size == 0 {
                    ChunkState::Trailer
                } else {
                    ChunkState::Data(size)
                };
            }
            ChunkState::Data(n) => {
                let take = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
                buf.drain(..take);
                *n -= take as u64;
                if *n > 0 {
                    return Some(false);
                }
                *state = ChunkState::DataEnd;
            }
            ChunkState::DataEnd => {
                let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
                    return (buf.len() < 2).then_some(false);
                };
                if !buf[..lf].iter().all(|&b| b == b'\r') || lf > 1 {
                    return None;
                }
                buf.drain(..=lf);
                *state = ChunkState::Size;
            }
            ChunkState::Trailer => {
                let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
                    return (buf.len() < LARGE_BUFFER).then_some(false);
                };
                if lf >= LARGE_BUFFER {
                    return None;
                }
                let empty = buf[..lf].iter().all(|&b| b == b'\r');
                buf.drain(..=lf);
                if empty {
                    return Some(true);
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Incomplete,
    Reject {
        status: u16,
        http09: bool,
    },
    Request {
        consumed: usize,
        head: bool,
        keep_alive: bool,
        body: Body,
        padding: bool,
        gzip: bool,
    },
}

fn reject(status: u16) -> Parsed {
    Parsed::Reject {
        status,
        http09: false,
    }
}

/// One header line, as nginx's `ngx_http_parse_header_line` and the
/// header handlers judge it.
fn header(f: &mut Fields, line: &[u8]) -> Result<(), Parsed> {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(reject(400));
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || name.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(reject(400));
    }
    if value.contains(&0) {
        return Err(reject(400));
    }
    // ignore_invalid_headers: names with other characters are dropped.
    if !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
        return Ok(());
    }
    let value = trim(value);
    match name.to_ascii_lowercase().as_slice() {
        b"host" => {
            if f.host.is_some() {
                return Err(reject(400));
            }
            match valid_host(value) {
                Some(h) => f.host = Some(h),
                None => return Err(reject(400)),
            }
        }
        b"content-length" => {
            if f.content_length.is_some() {
                return Err(reject(400));
            }
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match n {
                Some(n) => f.content_length = Some(n),
                None => return Err(reject(400)),
            }
        }
        b"transfer-encoding" => {
            if f.transfer_encoding.is_some() {
                return Err(reject(400));
            }
            f.transfer_encoding = Some(value.to_ascii_lowercase());
        }
        b"connection" => f.connection = value.to_ascii_lowercase(),
        b"user-agent" => f.user_agent = value.to_vec(),
        b"accept-encoding" => f.accept_encoding = value.to_ascii_lowercase(),
        b"via" => f.via = true,
        _ => {}
    }
    Ok(())
}

/// nginx's `ngx_http_gzip_accept_encoding`: a `gzip` token whose q is not 0
/// (`x-gzip` does not count). `ae` is lowercased.
fn accepts_gzip(ae: &[u8]) -> bool {
    let mut from = 0;
    while let Some(i) = ae[from..].windows(4).position(|w| w == b"gzip") {
        let start = from + i;
        let end = start + 4;
        from = end;
        let before_ok = start == 0 || matches!(ae[start - 1], b',' | b' ');
        let rest = &ae[end..];
        let after_ok = rest.is_empty() || matches!(rest[0], b',' | b';' | b' ');
        if !before_ok || !after_ok {
            continue;
        }
        let mut r = rest.iter().skip_while(|b| **b == b' ');
        if r.next() != Some(&b';') {
            return true;
        }
        let params: Vec<u8> = r.take_while(|b| **b != b',').copied().collect();
        let params = String::from_utf8_lossy(&params);
        let q = params.trim().strip_prefix("q=").map(str::trim);
        return match q {
            Some(q) => q.parse::<f32>().map(|v| v > 0.0).unwrap_or(false),
            None => true,
        };
    }
    false
}

/// The chunked, gzipped bodies nginx 1.22 (zlib 1.2.13, gzip_comp_level 1)
/// sends for its 404 page, without and with the MSIE/Chrome padding:
/// captured from the real server, since deflate output is only
/// reproducible with the same zlib and parameters.
const GZIP_404: &str = "37320d0a1f8b0800000000000403b3c928c9cdb1e3e5b2c9484d4cb1b329c92cc949b533313051f0cb2f5170cb2fcd4bb1d18708dae88395009526e5a75482b424a7e695a416d9d96418a2eb008ad8e843a541660315417979e9997915fa867a46467a86c84af46186ea431d0400978d7fbd990000000d0a300d0a0d0a";
const GZIP_404_PADDED: &str = "62300d0a1f8b0800000000000403ed90c10ac2301044ef82ffb07e401a5b7a5c7211050f7af10b52776d0269223182fd7b136d413c7bf4b8b36f8661d0a4c1a9e5020d6b52986c72acda750bc7906017ee9e50be45942f24a35da0b158ceec134785a6fe766405e5f42ed9199a2edf5bff9075d53455fd89c83954ce8556428086ab26b2be871480ec4d778ee170da6f417b828d896160b844cb9edc081c6388d9d13308510afe237eb9c513e27526802b0200000d0a300d0a0d0a";

fn unhex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// nginx's gzipped 404: chunked, no Content-Length, Content-Encoding last.
fn gzip_response(head: bool, keep_alive: bool, padding: bool, date: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 404 Not Found\r\nServer: {SERVER}\r\nDate: {date}\r\nContent-Type: text/html\r\n{}Connection: {}\r\nContent-Encoding: gzip\r\n\r\n",
        if head { "" } else { "Transfer-Encoding: chunked\r\n" },
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes();
    if !head {
        r.extend(unhex(if padding { GZIP_404_PADDED } else { GZIP_404 }));
    }
    r
}

/// nginx pads error pages for MSIE and Chrome (`msie_padding on`), which
/// would otherwise show their own "friendly" error page.
fn wants_padding(ua: &[u8]) -> bool {
    if contains(ua, b"MSIE ") && !contains(ua, b"Opera") {
        return true;
    }
    !contains(ua, b"Gecko/") && contains(ua, b"Chrome/")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &v[s..e]
}

/// nginx's `ngx_http_validate_host`, simplified: no empty host, no `..`, no
/// path separators or NULs; a trailing dot is dropped.
fn valid_host(h: &[u8]) -> Option<Vec<u8>> {
    let h = h.strip_suffix(b".").unwrap_or(h);
    if h.is_empty()
        || h.starts_with(b".")
        || contains(h, b"..")
        || h.iter().any(|&b| b == b'/' || b == b'\\' || b == 0)
    {
        return None;
    }
    Some(h.to_ascii_lowercase())
}

#[derive(Debug)]
struct RequestLine {
    head: bool,
    /// HTTP/1.1 or later (keep-alive by default, Host required).
    minor_11: bool,
}

/// Early rejection of a request line not yet complete: a bad method byte
/// is enough for nginx to answer 400 without waiting for the line end.
fn check_line_prefix(line: &[u8]) -> Option<u16> {
    for &b in line {
        if b == b' ' {
            return None;
        }
        if !(b.is_ascii_uppercase() || b == b'_' || b == b'-') {
            return Some(400);
        }
    }
    None
}

fn request_line_of(line: &[u8]) -> Result<RequestLine, Parsed> {
    let bad = || reject(400);
    let sp = line.iter().position(|&b| b == b' ').ok_or_else(bad)?;
    let method = &line[..sp];
    if method.is_empty()
        || !method
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'_' || *b == b'-')
    {
        return Err(bad());
    }
    let mut i = sp;
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    let uri_start = i;
    while i < line.len() && line[i] != b' ' {
        i += 1;
    }
    let uri = &line[uri_start..i];
    let http09 = i == line.len() || line[i..].iter().all(|&b| b == b' ');
    let uri_ok = match uri.first() {
        Some(b'/') => path_ok(uri),
        Some(c) if c.is_ascii_alphabetic() => absolute_ok(uri),
        _ => false,
    };
    if !uri_ok {
        return Err(bad());
    }
    if http09 {
        // HTTP/0.9: a bare "GET /path" gets the page with no headers.
        if method != b"GET" {
            return Err(Parsed::Reject {
                status: 400,
                http09: true,
            });
        }
        return Err(Parsed::Reject {
            status: 404,
            http09: true,
        });
    }
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    let version = trim_spaces_end(&line[i..]);
    let v = version.strip_prefix(b"HTTP/").ok_or_else(bad)?;
    let dot = v.iter().position(|&b| b == b'.').ok_or_else(bad)?;
    let (major, minor) = (&v[..dot], &v[dot + 1..]);
    let num = |d: &[u8]| -> Option<u32> {
        if d.is_empty() || d.len() > 3 || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    let (Some(major_n), Some(minor_n)) = (num(major), num(minor)) else {
        return Err(bad());
    };
    if major.first() == Some(&b'0') {
        return Err(bad());
    }
    if major_n > 1 {
        return Err(reject(505));
    }
    Ok(RequestLine {
        head: method == b"HEAD",
        minor_11: minor_n >= 1,
    })
}

fn trim_spaces_end(v: &[u8]) -> &[u8] {
    let e = v.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &v[..e]
}

/// A path nginx accepts: no control bytes, valid %-escapes, and `..` never
/// climbing above the root (checked on the decoded path, before any `?`).
fn path_ok(uri: &[u8]) -> bool {
    if uri.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return false;
    }
    let path = match uri.iter().position(|&b| b == b'?') {
        Some(q) => &uri[..q],
        None => uri,
    };
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let hex = path.get(i + 1..i + 3);
            let Some(v) = hex
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            else {
                return false;
            };
            if v == 0 {
                return false;
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(path[i]);
            i += 1;
        }
    }
    let mut depth: i64 = 0;
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        match seg {
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            b"." | b"" => {}
            _ => depth += 1,
        }
    }
    true
}

/// `scheme://host[/path]`.
fn absolute_ok(uri: &[u8]) -> bool {
    let Some(p) = uri.windows(3).position(|w| w == b"://") else {
        return false;
    };
    let scheme = &uri[..p];
    if !scheme
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return false;
    }
    let rest = &uri[p + 3..];
    let (host, path) = match rest.iter().position(|&b| b == b'/') {
        Some(s) => (&rest[..s], &rest[s..]),
        None => (rest, &b"/"[..]),
    };
    !host.is_empty()
        && host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
        && path_ok(path)
}

fn reason(status: u16) -> &'static str {
    match status {
        400 | 494 => "Bad Request",
        404 => "Not Found",
        414 => "Request-URI Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Internal Server Error",
    }
}

const PADDING: &str = "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n";

/// nginx's built-in error page for `status`.
fn page(status: u16, padding: bool) -> String {
    let mut body = if status == 494 {
        format!(
            "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n<hr><center>{SERVER}</center>\r\n</body>\r\n</html>\r\n"
        )
    } else {
        let title = format!("{status} {}", reason(status));
        format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{SERVER}</center>\r\n</body>\r\n</html>\r\n"
        )
    };
    if padding {
        for _ in 0..6 {
            body.push_str(PADDING);
        }
    }
    body
}

fn response(
    status: u16,
    http09: bool,
    head: bool,
    keep_alive: bool,
    padding: bool,
    date: &str,
) -> Vec<u8> {
    let body = page(status, padding);
    if http09 {
        return body.into_bytes();
    }
    let code = if status == 494 { 400 } else { status };
    let mut r = format!(
        "HTTP/1.1 {code} {}\r\nServer: {SERVER}\r\nDate: {date}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if !head {
        r.push_str(&body);
    }
    r.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "Tue, 24 Nov 2026 02:37:15 GMT";

    fn answer(req: &[u8]) -> (String, bool) {
        let mut d = Decoy::default();
        d.feed(req);
        match d.step(D) {
            Step::Send { bytes, close } => (String::from_utf8_lossy(&bytes).into_owned(), close),
            Step::NeedMore => (String::new(), false),
        }
    }

    fn status(req: &[u8]) -> String {
        answer(req).0.lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn get_is_404_with_nginx_headers() {
        let (r, close) = answer(b"GET /nope HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(
            r,
            format!(
                "HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\nDate: {D}\r\nContent-Type: text/html\r\nContent-Length: 153\r\nConnection: keep-alive\r\n\r\n<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
            )
        );
        assert!(!close);
    }

    #[test]
    fn probe_statuses_match_nginx() {
        let cases: &[(&[u8], &str)] = &[
            (b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"HELLO\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"HELLO WORLD\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported"),
            (b"GET / HTTP/1.5\r\nHost: a\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET / HTTP/01.1\r\nHost: a\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /../x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /?a=../.. HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET http://x/y HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 501 Not Implemented"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"\x16\x03\x01\x00\x05hello", "HTTP/1.1 400 Bad Request"),
            (b"SSH-1.99-x\r\n", "HTTP/1.1 400 Bad Request"),
        ];
        for (req, want) in cases {
            assert_eq!(status(req), *want, "{:?}", String::from_utf8_lossy(req));
            // Every error closes the connection, and says so.
            let (text, close) = answer(req);
            if !want.contains(" 404 ") {
                assert!(
                    close && text.contains("\r\nConnection: close\r\n"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn http09_gets_a_bare_page() {
        let (r, close) = answer(b"GET /\r\n");
        assert!(r.starts_with("<html>\r\n<head><title>404 Not Found"), "{r}");
        assert!(close);
        assert!(
            answer(b"HEAD /\r\n")
                .0
                .starts_with("<html>\r\n<head><title>400")
        );
    }

    #[test]
    fn long_lines_get_414_and_494() {
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(status(&req), "HTTP/1.1 414 Request-URI Too Large");
        req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status(&req), "HTTP/1.1 414 Request-URI Too Large");
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 9000));
        let (r, close) = answer(&req);
        assert!(r.contains("Content-Length: 233\r\n"), "{r}");
        assert!(r.contains("<center>Request Header Or Cookie Too Large</center>"));
        assert!(close);
    }

    /// A request as the nginx experiments sent it: a request line of
    /// `line` bytes (CRLF included), Host, Connection: close, then `n`
    /// headers of `len` bytes each.
    fn sized_request(line: usize, len: usize, n: usize) -> Vec<u8> {
        let mut r = b"GET /".to_vec();
        r.extend(std::iter::repeat_n(b'a', line - 16));
        r.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n");
        for i in 0..n {
            let name = format!("X-{i}: ");
            r.extend_from_slice(name.as_bytes());
            r.extend(std::iter::repeat_n(b'b', len - name.len() - 2));
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r
    }

    #[test]
    fn header_buffers_refuse_what_nginx_refuses() {
        // Each boundary was found against nginx 1.22 (the e2e test
        // `stealth_answers_like_nginx` keeps some of them checked).
        let cases = [
            (8192, 100, 1, "404"),
            (8193, 100, 1, "414"),
            (100, 8192, 3, "404"),
            (100, 8192, 4, "400"),
            (100, 8191, 3, "404"),
            (100, 8191, 4, "400"),
            (100, 8193, 1, "400"),
            (100, 100, 332, "404"),
            (100, 100, 333, "400"),
            (1000, 100, 324, "404"),
            (1000, 100, 325, "400"),
            (100, 4000, 8, "404"),
            (100, 4000, 9, "400"),
        ];
        for (line, len, n, want) in cases {
            let req = sized_request(line, len, n);
            let (text, close) = answer(&req);
            let got = text.split(' ').nth(1).unwrap_or("");
            assert_eq!(got, want, "line {line}, {n} headers of {len}");
            assert!(close);
            if want == "400" {
                assert!(
                    text.contains("Request Header Or Cookie Too Large"),
                    "{text}"
                );
            }
            // Byte by byte, the answer is the same.
            let mut d = Decoy::default();
            let mut dripped = None;
            for b in &req {
                d.feed(std::slice::from_ref(b));
                if let Step::Send { bytes, .. } = d.step(D) {
                    dripped = Some(bytes);
                    break;
                }
                assert!(d.held() <= FIRST_BUFFER + LARGE_BUFFERS * LARGE_BUFFER);
            }
            let dripped = String::from_utf8(dripped.expect("an answer")).unwrap();
            assert_eq!(
                dripped.split(' ').nth(1),
                Some(want),
                "dripped: line {line}, {n} headers of {len}"
            );
        }
        // Blank lines before the request move where nginx's first buffer
        // ends (each case checked against nginx too).
        for (blank, line, len, n, want) in [
            (1000, 1000, 100, 325, "400"),
            (1022, 100, 8192, 3, "400"),
            (1024, 1000, 100, 324, "404"),
            (5000, 8192, 100, 1, "404"),
        ] {
            let mut req = b"\r\n".repeat(blank / 2);
            req.extend(sized_request(line, len, n));
            assert_eq!(
                status(&req).split(' ').nth(1),
                Some(want),
                "{blank} blank bytes"
            );
        }
    }

    #[test]
    fn a_flood_of_blank_lines_is_read_and_dropped() {
        // nginx keeps reading blank lines (and closes at its header
        // timeout, which stealth.rs keeps); none of them is kept here, and
        // each byte is looked at once: 20 MiB take well under a second.
        let mut d = Decoy::default();
        let chunk = b"\r\n".repeat(2048);
        let started = std::time::Instant::now();
        for _ in 0..(20 << 20) / chunk.len() {
            d.feed(&chunk);
            assert_eq!(d.step(D), Step::NeedMore);
            assert_eq!(d.held(), 0);
            assert!(!d.idle(), "blank lines do not restart the header timer");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        d.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(matches!(d.step(D), Step::Send { close: false, .. }));
        assert!(d.idle());
    }

    #[test]
    fn a_long_header_sent_byte_by_byte_is_held_within_the_buffers() {
        let mut d = Decoy::default();
        d.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: ");
        assert_eq!(d.step(D), Step::NeedMore);
        for _ in 0..LARGE_BUFFER {
            d.feed(b"a");
            if let Step::Send { bytes, close } = d.step(D) {
                assert!(close);
                assert!(bytes.starts_with(b"HTTP/1.1 400 Bad Request"));
                return;
            }
            assert!(d.held() <= LARGE_BUFFER + FIRST_BUFFER);
        }
        panic!("an 8 KiB header line was not refused");
    }

    #[test]
    fn the_thousandth_request_closes_like_keepalive_requests() {
        let mut d = Decoy::default();
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for i in 1..=KEEPALIVE_REQUESTS {
            d.feed(req);
            match d.step(D) {
                Step::Send { bytes, close } => {
                    let last = i == KEEPALIVE_REQUESTS;
                    assert_eq!(close, last, "request {i}");
                    let want: &[u8] = if last {
                        b"Connection: close"
                    } else {
                        b"Connection: keep-alive"
                    };
                    assert!(bytes.windows(want.len()).any(|w| w == want), "request {i}");
                }
                s => panic!("request {i}: {s:?}"),
            }
        }
        let mut d = Decoy::default();
        d.close_after_next();
        d.feed(req);
        assert!(matches!(d.step(D), Step::Send { close: true, .. }));
    }

    #[test]
    fn keep_alive_and_bodies_are_followed() {
        let mut d = Decoy::default();
        d.feed(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel");
        assert!(matches!(d.step(D), Step::Send { close: false, .. }));
        assert_eq!(d.step(D), Step::NeedMore);
        d.feed(b"loGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert!(matches!(d.step(D), Step::Send { close: true, .. }));

        let mut d = Decoy::default();
        d.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHEAD / HTTP/1.0\r\n\r\n");
        assert!(matches!(d.step(D), Step::Send { close: false, .. }));
        match d.step(D) {
            Step::Send { bytes, close } => {
                assert!(close);
                assert!(bytes.ends_with(b"Connection: close\r\n\r\n"));
            }
            s => panic!("{s:?}"),
        }
        assert!(matches!(
            answer(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            (_, false)
        ));
    }

    #[test]
    fn chrome_and_msie_get_padding() {
        let chrome = b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (X11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\r\n";
        assert!(answer(chrome).0.contains("Content-Length: 555\r\n"));
        let firefox = b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0 (X11; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\r\n";
        assert!(answer(firefox).0.contains("Content-Length: 153\r\n"));
    }

    #[test]
    fn gzip_is_used_like_nginx() {
        let gz = |ae: &str| -> bool {
            let req = format!("GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: {ae}\r\n\r\n");
            answer(req.as_bytes()).0.contains("Content-Encoding: gzip")
        };
        assert!(gz("gzip"));
        assert!(gz("GZIP"));
        assert!(gz("gzip, deflate, br"));
        assert!(gz("deflate,gzip;q=0.5"));
        assert!(!gz("gzip;q=0"));
        assert!(!gz("x-gzip"));
        assert!(!gz("deflate"));
        let via = b"GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 p\r\nAccept-Encoding: gzip\r\n\r\n";
        assert!(!answer(via).0.contains("gzip"));
        let old = b"GET / HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n";
        assert!(!answer(old).0.contains("gzip"));
        // The captured body is a valid gzip member of the 404 page's length.
        let body = unhex(GZIP_404);
        assert!(body.starts_with(b"72\r\n\x1f\x8b\x08"));
        let isize = &body[4 + 0x72 - 4..4 + 0x72];
        assert_eq!(isize, 153u32.to_le_bytes());
        let padded = unhex(GZIP_404_PADDED);
        let isize = &padded[4 + 0xb0 - 4..4 + 0xb0];
        assert_eq!(isize, 555u32.to_le_bytes());
    }

    #[test]
    fn long_chunk_size_line_is_refused_however_it_arrives() {
        // Found by fuzzing: a chunk-size line over the limit was refused
        // when it came in pieces but accepted when it came whole.
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (body, what) in [
            (
                format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(1100)),
                "size line",
            ),
            (format!("0\r\nX-T: {}\r\n\r\n", "y".repeat(9000)), "trailer"),
        ] {
            let mut input = head.to_vec();
            input.extend_from_slice(body.as_bytes());
            input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            let run = |piece: usize| {
                let mut d = Decoy::default();
                let mut answers = Vec::new();
                'feed: for chunk in input.chunks(piece) {
                    d.feed(chunk);
                    loop {
                        match d.step("Tue, 01 Dec 2026 00:00:00 GMT") {
                            Step::NeedMore => break,
                            Step::Send { bytes, close } => {
                                answers.push(String::from_utf8_lossy(&bytes).into_owned());
                                if close {
                                    break 'feed;
                                }
                            }
                        }
                    }
                }
                answers
            };
            let whole = run(input.len());
            assert_eq!(whole, run(80), "{what}");
            assert_eq!(whole.len(), 2, "{what}: {whole:?}");
            assert!(whole[1].starts_with("HTTP/1.1 400"), "{what}: {whole:?}");
        }
    }

    #[test]
    fn incomplete_requests_wait() {
        for req in [&b""[..], b"GET", b"GET / HTTP/1.1\r\nHost: a\r\n", b"\r\n"] {
            assert_eq!(answer(req).0, "", "{:?}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut d = Decoy::default();
            let len = (seed % 300) as usize;
            let mut data = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(b"GET / HTTP/1.1\r\n:%.aZ \x00\x16"[(seed % 22) as usize]);
            }
            d.feed(&data);
            for _ in 0..4 {
                if let Step::Send { close: true, .. } | Step::NeedMore = d.step(D) {
                    break;
                }
            }
        }
    }
}
