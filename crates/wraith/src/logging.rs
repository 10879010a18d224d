//! Logging to stderr. `-q` errors only, default info, `-v` debug, `-vv`
//! trace; `RUST_LOG` overrides. For the server, russh is capped at info
//! whatever is asked: at debug and trace it prints forward addresses and
//! packet contents, and tunnel destinations must never reach the server log.
//!
//! One event is one line, whatever it carries. Peer-chosen text reaches the
//! log in field values and messages — a channel request type in russh's
//! "unknown channel request …", an error from the peer's side — and a line
//! break in it would let a peer write a line of its own that fail2ban
//! believes (an `auth attempt … result=reject` for an address it wants
//! banned). So every field value and message, ours and our dependencies'
//! (`log` records arrive through tracing-log), is written with control
//! characters escaped ([`escape_into`]), and the writer ([`OneLine`])
//! escapes any line break that is not the end of an event.

use std::fmt;
use std::io::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;

/// Dependency targets that may print channel targets when verbose.
const SERVER_CAPPED: &[&str] = &["russh", "russh_cryptovec", "russh_util"];

pub(crate) fn init(verbose: u8, quiet: bool, is_server: bool) {
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let mut filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).unwrap_or_else(|_| EnvFilter::new(level))
        }
        _ => EnvFilter::new(format!(
            "{dep},wraith={level},wraith_core={level}",
            dep = if verbose >= 2 { "debug" } else { "warn" }
        )),
    };
    if is_server {
        for target in SERVER_CAPPED {
            if let Ok(d) = format!("{target}=info").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(EscapedFields)
        .with_writer(OneLine::stderr(ansi))
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

/// True for the characters a log line must not carry raw: C0 and C1
/// controls and DEL (line breaks, terminal escapes), the Unicode line and
/// paragraph separators, and the bidirectional overrides that make a line
/// read differently from what it holds.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Write `s` with every [`must_escape`] character as `\n`, `\r`, `\t` or
/// `\u{…}`, so it can neither end the line nor move the cursor.
fn escape_into(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some((i, c)) = rest.char_indices().find(|&(_, c)| must_escape(c)) {
        out.write_str(&rest[..i])?;
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// A `fmt::Write` that escapes what passes through it.
struct Escaping<'a>(&'a mut dyn fmt::Write);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s)
    }
}

/// Field formatter: tracing-subscriber's default layout (`message` first,
/// then `name=value`, `log.*` metadata left out) with every value escaped.
struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapedVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        EscapedVisitor {
            writer: target,
            empty: true,
            result: Ok(()),
        }
    }
}

struct EscapedVisitor<'a> {
    writer: Writer<'a>,
    empty: bool,
    result: fmt::Result,
}

impl Visit for EscapedVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // tracing-log's metadata fields, already shown as the event's own.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let w: &mut dyn fmt::Write = &mut self.writer;
        self.result = (|| {
            if !std::mem::replace(&mut self.empty, false) {
                w.write_str(" ")?;
            }
            if name != "message" {
                escape_into(w, name.strip_prefix("r#").unwrap_or(name))?;
                w.write_str("=")?;
            }
            fmt::Write::write_fmt(&mut Escaping(w), format_args!("{value:?}"))
        })();
    }
}

impl VisitOutput<fmt::Result> for EscapedVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// The writer: collects one event and writes it with a single `write`,
/// any CR or LF but the final newline escaped, and — without ANSI colours,
/// where no escape sequence is ours — every other control byte too. A
/// second guard behind [`EscapedFields`], so that no future format change
/// can let an event span two lines.
struct OneLine<W> {
    make: W,
    ansi: bool,
}

impl OneLine<fn() -> io::Stderr> {
    fn stderr(ansi: bool) -> Self {
        OneLine {
            make: io::stderr,
            ansi,
        }
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for OneLine<W> {
    type Writer = OneEvent<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneEvent {
            inner: self.make.make_writer(),
            ansi: self.ansi,
            buf: Vec::new(),
        }
    }
}

struct OneEvent<W: Write> {
    inner: W,
    ansi: bool,
    buf: Vec<u8>,
}

impl<W: Write> Write for OneEvent<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for OneEvent<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let body = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let mut line = Vec::with_capacity(body.len() + 1);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                0x1b if self.ansi => line.push(b),
                0..=0x1f | 0x7f => line.extend_from_slice(format!("\\u{{{b:x}}}").as_bytes()),
                _ => line.push(b),
            }
        }
        line.push(b'\n');
        let _ = self.inner.write_all(&line);
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, s).unwrap();
        out
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escaped("plain text = ok"), "plain text = ok");
        assert_eq!(escaped("a\nb\r\nc\td"), "a\\nb\\r\\nc\\td");
        assert_eq!(escaped("\u{1b}[31mred\u{7}"), "\\u{1b}[31mred\\u{7}");
        assert_eq!(escaped("nel\u{85}ls\u{2028}"), "nel\\u{85}ls\\u{2028}");
        assert_eq!(escaped("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(escaped("ünïcode ok"), "ünïcode ok");
        assert_eq!(escaped("\0"), "\\u{0}");
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn capture(ansi: bool, f: impl FnOnce()) -> String {
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_writer(OneLine {
                make: move || out.clone(),
                ansi,
            })
            .with_target(false)
            .with_ansi(ansi)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn an_event_with_peer_text_stays_one_line() {
        let forged = "x\n2026-12-01T00:00:00Z  INFO auth attempt remote_addr=6.6.6.6";
        let text = capture(false, || {
            tracing::warn!("unknown channel request {forged}");
            tracing::info!(user = %forged, name = forged, "auth attempt");
            let e = io::Error::other(forged);
            tracing::info!(error = &e as &(dyn std::error::Error + 'static), "closed");
            tracing::info!(message = forged);
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].ends_with(" WARN unknown channel request x\\n2026-12-01T00:00:00Z  INFO auth attempt remote_addr=6.6.6.6"),
            "{text}"
        );
        assert!(
            lines[1].contains(" INFO auth attempt user=x\\n2026"),
            "{text}"
        );
        assert!(lines[1].contains(" name=\"x\\n2026"), "{text}");
        assert!(lines[2].contains("closed error=x\\n2026"), "{text}");
        assert!(
            lines[3]
                .ends_with("INFO x\\n2026-12-01T00:00:00Z  INFO auth attempt remote_addr=6.6.6.6"),
            "{text}"
        );
    }

    #[test]
    fn the_default_layout_is_kept() {
        let text = capture(false, || {
            tracing::info!(remote_addr = %"203.0.113.7", user = %"root", result = %"reject", "auth attempt");
        });
        assert!(
            text.ends_with("  INFO auth attempt remote_addr=203.0.113.7 user=root result=reject\n"),
            "{text:?}"
        );
    }

    #[test]
    fn the_writer_keeps_only_the_final_newline() {
        for ansi in [false, true] {
            let mut out = Vec::new();
            {
                let mut w = OneEvent {
                    inner: &mut out,
                    ansi,
                    buf: Vec::new(),
                };
                w.write_all(b"a\nb\r").unwrap();
                w.write_all(b"\x1b[0m\x07c\n").unwrap();
            }
            let want: &[u8] = if ansi {
                b"a\\nb\\r\x1b[0m\\u{7}c\n"
            } else {
                b"a\\nb\\r\\u{1b}[0m\\u{7}c\n"
            };
            assert_eq!(out, want, "ansi={ansi}");
        }
    }
}
