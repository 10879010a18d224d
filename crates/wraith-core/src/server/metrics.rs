//! What `wraith serve --metrics` exposes, in Prometheus's text format
//! (with the maintained `prometheus-client` crate): sessions, channels by
//! kind, authentication results, limit refusals, the event hub and the
//! ACME certificate's expiry. By design nothing here says where a tunnel
//! goes, who connected, or how many bytes moved: no label carries a host,
//! a port, an address, a key or a user.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// The server's counters. One lives in every [`Server`](super::Server);
/// [`Server::metrics_text`](super::Server::metrics_text) renders them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) connections_total: Counter,
    pub(crate) sessions: Gauge,
    channels: Family<Labels, Gauge>,
    channels_total: Family<Labels, Counter>,
    auth: Family<Labels, Counter>,
    refusals: Family<Labels, Counter>,
    hub_members: Gauge,
    hub_overflows: Counter<u64, AtomicU64>,
    hub_nats_connected: Gauge,
    hub_nats_events: Family<Labels, Counter<u64, AtomicU64>>,
    acme_expiry: Gauge<i64, AtomicI64>,
}

/// What a channel is for, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// `direct-tcpip` to a TCP target.
    Tcp,
    /// `direct-streamlocal` to a Unix socket.
    Unix,
    /// The control channel (event hub).
    Control,
    /// The udpgw service.
    Udpgw,
}

impl ChannelKind {
    fn label(self) -> &'static str {
        match self {
            ChannelKind::Tcp => "tcp",
            ChannelKind::Unix => "unix",
            ChannelKind::Control => "control",
            ChannelKind::Udpgw => "udpgw",
        }
    }
}

/// The limits that refuse things, by the flag that sets each.
const LIMITS: [&str; 6] = [
    "--max-connections-per-ip",
    "--per-source-max-startups",
    "--max-startups",
    "--max-auth-attempts",
    "--max-channels-per-session",
    "--max-control-channels",
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wraith");
        let m = Metrics {
            registry: Registry::default(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            sessions: Gauge::default(),
            channels: Family::default(),
            channels_total: Family::default(),
            auth: Family::default(),
            refusals: Family::default(),
            hub_members: Gauge::default(),
            hub_overflows: Counter::default(),
            hub_nats_connected: Gauge::default(),
            hub_nats_events: Family::default(),
            acme_expiry: Gauge::default(),
        };
        registry.register(
            "connections",
            "Transport connections open now (authenticated or not)",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Transport connections accepted",
            m.connections_total.clone(),
        );
        registry.register(
            "sessions",
            "Authenticated SSH sessions open now",
            m.sessions.clone(),
        );
        registry.register(
            "channels",
            "Channels open now, by kind (tcp, unix, control, udpgw)",
            m.channels.clone(),
        );
        registry.register(
            "channels_opened",
            "Channels opened, by kind",
            m.channels_total.clone(),
        );
        registry.register(
            "auth_attempts",
            "Public-key authentication attempts, by result (accept, reject)",
            m.auth.clone(),
        );
        registry.register(
            "limit_refusals",
            "Connections, channels and attempts refused by a limit, by the flag that sets it",
            m.refusals.clone(),
        );
        registry.register(
            "hub_members",
            "Event-hub members now (control channels and server-side members)",
            m.hub_members.clone(),
        );
        registry.register(
            "hub_overflow_disconnects",
            "Hub subscribers disconnected for falling behind",
            m.hub_overflows.clone(),
        );
        registry.register(
            "hub_nats_connected",
            "1 while the hub's NATS broker is connected (0 without --hub or while it is down)",
            m.hub_nats_connected.clone(),
        );
        registry.register(
            "hub_nats_events",
            "Events through NATS, by outcome (sent, received, dropped, refused)",
            m.hub_nats_events.clone(),
        );
        registry.register(
            "acme_certificate_expiry_timestamp_seconds",
            "When the ACME certificate in use expires (Unix time; 0 without ACME or before the first)",
            m.acme_expiry.clone(),
        );
        // Every label value from the start, at 0: a family with no sample
        // is not written at all, and a rate needs the zero.
        for kind in [
            ChannelKind::Tcp,
            ChannelKind::Unix,
            ChannelKind::Control,
            ChannelKind::Udpgw,
        ] {
            let labels = vec![("kind", kind.label())];
            let _ = m.channels.get_or_create(&labels);
            let _ = m.channels_total.get_or_create(&labels);
        }
        for result in ["accept", "reject"] {
            let _ = m.auth.get_or_create(&vec![("result", result)]);
        }
        for flag in LIMITS {
            let _ = m.refusals.get_or_create(&vec![("limit", flag)]);
        }
        for outcome in ["sent", "received", "dropped", "refused"] {
            let _ = m.hub_nats_events.get_or_create(&vec![("outcome", outcome)]);
        }
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// An authentication attempt ended with `result` (`accept`, `reject`).
    pub(crate) fn auth(&self, result: &'static str) {
        self.auth.get_or_create(&vec![("result", result)]).inc();
    }

    /// A limit refused something; `flag` names the limit.
    pub(crate) fn refusal(&self, flag: &'static str) {
        self.refusals.get_or_create(&vec![("limit", flag)]).inc();
    }

    /// A channel of `kind` opened; it counts as open until the guard drops.
    pub(crate) fn channel(&self, kind: ChannelKind) -> OpenChannel {
        let labels = vec![("kind", kind.label())];
        self.channels_total.get_or_create(&labels).inc();
        let open = self.channels.get_or_create(&labels).clone();
        open.inc();
        OpenChannel { open }
    }

    /// Values read when scraped rather than counted as they happen.
    pub(crate) fn observe_hub(&self, members: usize, overflows: u64) {
        self.hub_members
            .set(i64::try_from(members).unwrap_or(i64::MAX));
        let seen = self.hub_overflows.get();
        self.hub_overflows.inc_by(overflows.saturating_sub(seen));
    }

    /// The NATS side of the hub, when there is one.
    #[cfg(feature = "nats")]
    pub(crate) fn observe_nats(&self, connected: bool, counts: [(&'static str, u64); 4]) {
        self.hub_nats_connected.set(i64::from(connected));
        for (outcome, value) in counts {
            let c = self
                .hub_nats_events
                .get_or_create(&vec![("outcome", outcome)]);
            c.inc_by(value.saturating_sub(c.get()));
        }
    }

    /// The ACME certificate's `not_after`, as Unix seconds.
    #[cfg(feature = "acme")]
    pub(crate) fn observe_acme_expiry(&self, unix: i64) {
        self.acme_expiry.set(unix);
    }

    /// Everything, in the Prometheus text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Answer one scrape on `stream`: `GET /metrics` gets `body`, anything
/// else a 404. The request head may be at most 8 KiB.
pub(crate) async fn answer<S>(mut stream: S, body: String) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let path = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let ok = req.method == Some("GET");
                break ok.then(|| req.path.unwrap_or_default().to_string());
            }
            Ok(httparse::Status::Partial) if head.len() <= 8192 => continue,
            _ => break None,
        }
    };
    let (status, kind, body) = match path.as_deref() {
        Some("/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "wraith serves GET /metrics here\n".to_string(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// One open channel (see [`Metrics::channel`]).
#[derive(Debug)]
pub(crate) struct OpenChannel {
    /// The family's gauge for this kind (a handle onto the same value), so
    /// a close needs no label lookup.
    open: Gauge,
}

impl Drop for OpenChannel {
    fn drop(&mut self) {
        self.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_and_moving_values() {
        let m = Metrics::default();
        m.auth("accept");
        m.auth("reject");
        m.auth("reject");
        m.refusal("--max-startups");
        let open = m.channel(ChannelKind::Tcp);
        let text = m.render();
        assert!(
            text.contains("# TYPE wraith_auth_attempts counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"wraith_auth_attempts_total{result="reject"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"wraith_limit_refusals_total{limit="--max-startups"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"wraith_channels{kind="tcp"} 1"#), "{text}");
        assert!(text.contains("# TYPE wraith_sessions gauge"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        drop(open);
        m.observe_hub(3, 2);
        m.observe_hub(2, 5);
        let text = m.render();
        assert!(text.contains(r#"wraith_channels{kind="tcp"} 0"#), "{text}");
        assert!(
            text.contains(r#"wraith_channels_opened_total{kind="tcp"} 1"#),
            "{text}"
        );
        assert!(text.contains("wraith_hub_members 2"), "{text}");
        assert!(
            text.contains("wraith_hub_overflow_disconnects_total 5"),
            "{text}"
        );
    }
}
