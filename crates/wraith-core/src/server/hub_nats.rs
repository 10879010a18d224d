//! The event hub shared through NATS (`wraith serve --hub nats://…`).
//!
//! Each server stays an ordinary in-process [`EventHub`]; [`NatsHub`]
//! makes it a member of a NATS subject space. Every event published here
//! also goes to `<prefix>.events` on the broker, and every event another
//! server put there is delivered to the members here subscribed to its
//! type. The connection is made with NATS's no-echo option, so a server
//! never gets its own events back: the hub's "not to the sender" rule
//! holds across the fleet.
//!
//! Delivery across servers is at most once: an event published while the
//! broker is unreachable, or that does not fit the outbound queue, stays
//! on its own server (counted in [`NatsHubStats::dropped`]). Local delivery
//! never waits for NATS. The client reconnects by itself, with backoff; the
//! log gets one line when the broker goes away and one when it is back.
//!
//! The broker is trusted as much as the servers: whoever may publish on
//! the subject can put any `"sender"` on an event. Events from it are held
//! to the hub's limits (size, envelope, no reserved `__` types).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::hub::{EventHub, HubBackend};
use crate::error::{Error, Result};
use crate::limits::LogRate;

/// The subject prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "wraith";

/// Events waiting to go out to the broker before new ones are dropped.
const OUTBOUND_QUEUE: usize = 4096;

/// How to reach the broker and which subjects to use.
#[derive(Clone)]
#[non_exhaustive]
pub struct NatsHubOptions {
    /// Broker addresses (`host:port`, with the `nats://` or `tls://`
    /// scheme), credentials removed.
    servers: Vec<String>,
    /// Whether TLS is required (a `tls://` URL, or a CA was given).
    tls: bool,
    /// `user:password` or a token, from the URL.
    auth: Option<Auth>,
    /// Subjects are `<prefix>.events`; several deployments can share a
    /// broker with different prefixes.
    pub prefix: String,
    /// A NATS `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A CA (PEM) to check the broker's certificate with, instead of the
    /// system's roots.
    pub tls_ca: Option<PathBuf>,
}

#[derive(Clone)]
enum Auth {
    UserPassword(String, String),
    Token(String),
}

impl std::fmt::Debug for NatsHubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("NatsHubOptions")
            .field("servers", &self.servers)
            .field("prefix", &self.prefix)
            .field("credentials_file", &self.credentials_file)
            .field("tls_ca", &self.tls_ca)
            .finish_non_exhaustive()
    }
}

impl NatsHubOptions {
    /// Parse `--hub`: one URL or several comma-separated (a NATS cluster),
    /// `nats://[user:password@|token@]host[:port]` or `tls://…`; a bare
    /// `host[:port]` means `nats://`. The port defaults to 4222.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut servers = Vec::new();
        let mut auth = None;
        let mut tls = false;
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |reason: String| Error::Config {
                flag: "--hub",
                value: redact(entry),
                reason,
            };
            let full = if entry.contains("://") {
                entry.to_string()
            } else {
                format!("nats://{entry}")
            };
            let url = url::Url::parse(&full).map_err(|e| bad(e.to_string()))?;
            match url.scheme() {
                "nats" => {}
                "tls" => tls = true,
                other => {
                    return Err(bad(format!(
                        "the scheme must be nats:// or tls://, not {other}://"
                    )));
                }
            }
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("no host".into()))?;
            if !matches!(url.path(), "" | "/") || url.query().is_some() {
                return Err(bad("a NATS URL has no path or query".into()));
            }
            let user = percent_decode(url.username());
            let password = url.password().map(percent_decode);
            match (user.is_empty(), password) {
                (true, None) => {}
                (false, Some(p)) => auth = Some(Auth::UserPassword(user, p)),
                (false, None) => auth = Some(Auth::Token(user)),
                (true, Some(p)) => auth = Some(Auth::Token(p)),
            }
            let port = url.port().unwrap_or(4222);
            servers.push(format!("{}://{host}:{port}", url.scheme()));
        }
        if servers.is_empty() {
            return Err(Error::config("--hub", "", "no NATS server given"));
        }
        Ok(NatsHubOptions {
            servers,
            tls,
            auth,
            prefix: DEFAULT_PREFIX.into(),
            credentials_file: None,
            tls_ca: None,
        })
    }

    /// Use `prefix` for the subjects (`--hub-prefix`): NATS subject tokens
    /// (letters, digits, `-`, `_`) joined by dots.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        let ok = !prefix.is_empty()
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !ok {
            return Err(Error::config(
                "--hub-prefix",
                prefix,
                "use letters, digits, '-' and '_', in tokens joined by dots",
            ));
        }
        self.prefix = prefix.into();
        Ok(self)
    }

    /// Everything `--hub`, `--hub-prefix`, `--hub-creds` and `--hub-ca`
    /// say (the addon's `hub` options alike), parsed and checked: what the
    /// CLI and the addon both build.
    pub fn configure(
        url: &str,
        prefix: Option<&str>,
        credentials_file: Option<PathBuf>,
        tls_ca: Option<PathBuf>,
    ) -> Result<Self> {
        let mut hub = Self::parse(url)?.with_prefix(prefix.unwrap_or(DEFAULT_PREFIX))?;
        hub.credentials_file = credentials_file;
        hub.tls_ca = tls_ca;
        hub.check()?;
        Ok(hub)
    }

    /// Check what can be checked before connecting: the credentials file
    /// and the CA are readable files. [`NatsHub::attach`] checks again.
    pub fn check(&self) -> Result<()> {
        for (flag, path) in [
            ("--hub-creds", &self.credentials_file),
            ("--hub-ca", &self.tls_ca),
        ] {
            if let Some(p) = path
                && let Err(e) = std::fs::File::open(p).and_then(|f| {
                    if f.metadata()?.is_file() {
                        Ok(())
                    } else {
                        Err(std::io::Error::other("not a file"))
                    }
                })
            {
                return Err(Error::Config {
                    flag,
                    value: p.display().to_string(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The subject events travel on.
    pub fn subject(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The brokers, for logs (no credentials).
    pub fn describe(&self) -> String {
        self.servers.join(",")
    }
}

/// A URL entry with its password (or token) replaced, for messages.
fn redact(entry: &str) -> String {
    match entry.rsplit_once('@') {
        Some((before, after)) => {
            let scheme = before.split_once("://").map(|(s, _)| s);
            match scheme {
                Some(s) => format!("{s}://***@{after}"),
                None => format!("***@{after}"),
            }
        }
        None => entry.into(),
    }
}

/// A URL's user or password as the text it encodes (`%40` is `@`).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Counts since the hub was attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsHubStats {
    /// Events handed to the broker.
    pub sent: u64,
    /// Events from other servers delivered here.
    pub received: u64,
    /// Events that stayed on this server: broker unreachable, outbound
    /// queue full, or larger than the broker accepts.
    pub dropped: u64,
    /// Messages from the broker that were not valid events.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct Status {
    connected: AtomicBool,
    ever_connected: AtomicBool,
    /// An outage has been logged and not yet its end.
    down_logged: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
}

impl Status {
    fn on_event(&self, event: async_nats::Event, brokers: &str, errors: &LogRate) {
        match event {
            async_nats::Event::Connected => {
                self.connected.store(true, Ordering::Release);
                let again = self.ever_connected.swap(true, Ordering::AcqRel);
                self.down_logged.store(false, Ordering::Release);
                if again {
                    tracing::info!(
                        hub = %brokers,
                        "event hub reconnected to NATS; events cross servers again"
                    );
                } else {
                    tracing::info!(hub = %brokers, "event hub connected to NATS");
                }
            }
            async_nats::Event::Disconnected => {
                self.connected.store(false, Ordering::Release);
                if !self.down_logged.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        hub = %brokers,
                        "event hub lost NATS; events stay on this server until it is back"
                    );
                }
            }
            async_nats::Event::ClientError(e) => {
                if !self.connected.load(Ordering::Acquire)
                    && !self.down_logged.swap(true, Ordering::AcqRel)
                {
                    tracing::warn!(
                        hub = %brokers,
                        reason = ?e.to_string(),
                        "event hub cannot reach NATS; events stay on this server, retrying"
                    );
                } else {
                    tracing::debug!(hub = %brokers, reason = ?e.to_string(), "NATS client error");
                }
            }
            // The broker's words: quoted, never a line of their own.
            async_nats::Event::ServerError(e) if errors.check().is_some() => {
                tracing::warn!(hub = %brokers, reason = ?e.to_string(), "NATS reported an error");
            }
            async_nats::Event::SlowConsumer(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// The outbound half, installed as the hub's [`HubBackend`].
#[derive(Debug)]
struct Outbound {
    tx: mpsc::Sender<Bytes>,
    status: Arc<Status>,
}

impl HubBackend for Outbound {
    fn publish(&self, _kind: &str, body: &[u8]) {
        if !self.status.connected.load(Ordering::Acquire)
            || self.tx.try_send(Bytes::copy_from_slice(body)).is_err()
        {
            self.status.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An [`EventHub`] joined to a NATS subject space. Dropping it detaches
/// the hub (it goes on locally) and closes the connection.
#[derive(Debug)]
pub struct NatsHub {
    hub: EventHub,
    status: Arc<Status>,
    tasks: Vec<JoinHandle<()>>,
}

impl NatsHub {
    /// Join `hub` to the broker in `options`. Returns once the client is
    /// set up — not once the broker answers: when it cannot be reached the
    /// hub works locally and the client keeps trying. Errors are for bad
    /// options (an unreadable credentials file, say).
    pub async fn attach(hub: &EventHub, options: &NatsHubOptions) -> Result<NatsHub> {
        options.check()?;
        let status = Arc::new(Status::default());
        let brokers = options.describe();
        let errors = Arc::new(LogRate::new(Duration::from_secs(10)));
        let mut connect = async_nats::ConnectOptions::new()
            .name("wraith")
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            // A broker that vanishes without a FIN is noticed in ~20 s.
            .ping_interval(Duration::from_secs(10))
            .reconnect_delay_callback(backoff)
            .subscription_capacity(OUTBOUND_QUEUE)
            .event_callback({
                let status = status.clone();
                let brokers = brokers.clone();
                move |event| {
                    status.on_event(event, &brokers, &errors);
                    std::future::ready(())
                }
            });
        match &options.auth {
            Some(Auth::UserPassword(u, p)) => {
                connect = connect.user_and_password(u.clone(), p.clone());
            }
            Some(Auth::Token(t)) => connect = connect.token(t.clone()),
            None => {}
        }
        if let Some(path) = &options.credentials_file {
            connect = connect
                .credentials_file(path)
                .await
                .map_err(|e| Error::config("--hub-creds", path.display(), e))?;
        }
        // Our own rustls set-up (aws-lc-rs, as everywhere in wraith): the
        // client's default asks for a process-wide provider, which a binary
        // that links two cannot pick.
        let ca = options.tls_ca.clone().map(crate::Source::File);
        let tls = crate::transport::service_client_config(ca.as_ref(), "--hub-ca")?;
        connect = connect.tls_client_config(tls);
        if options.tls || options.tls_ca.is_some() {
            connect = connect.require_tls(true);
        }
        let client = connect
            .connect(options.servers.clone())
            .await
            .map_err(|e| Error::config("--hub", brokers.clone(), e))?;
        let subject = options.subject();
        let mut subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| Error::config("--hub-prefix", options.prefix.clone(), e))?;

        let (tx, mut rx) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);
        let publisher = tokio::spawn({
            let status = status.clone();
            let client = client.clone();
            let subject = async_nats::Subject::from(subject);
            async move {
                while let Some(body) = rx.recv().await {
                    match client.publish(subject.clone(), body).await {
                        Ok(()) => status.sent.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::debug!(reason = %e, "event not handed to NATS");
                            status.dropped.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
        });
        let receiver = tokio::spawn({
            let status = status.clone();
            let hub = hub.clone();
            let refusals = LogRate::new(Duration::from_secs(10));
            async move {
                use futures_core::Stream;
                use std::pin::Pin;
                while let Some(msg) =
                    std::future::poll_fn(|cx| Pin::new(&mut subscriber).poll_next(cx)).await
                {
                    match hub.deliver_remote(&msg.payload) {
                        Ok(_) => status.received.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if let Some(skipped) = refusals.check() {
                                tracing::warn!(reason = %e, skipped, "event from NATS refused");
                            }
                            status.refused.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
        });
        tracing::info!(
            hub = %brokers,
            subject = %options.subject(),
            "event hub shared through NATS (at most once across servers)"
        );
        hub.set_backend(Some(Arc::new(Outbound {
            tx,
            status: status.clone(),
        })));
        Ok(NatsHub {
            hub: hub.clone(),
            status,
            tasks: vec![publisher, receiver],
        })
    }

    /// Whether the broker is connected now.
    pub fn is_connected(&self) -> bool {
        self.status.connected.load(Ordering::Acquire)
    }

    /// Counts since [`NatsHub::attach`].
    pub fn stats(&self) -> NatsHubStats {
        let s = &self.status;
        NatsHubStats {
            sent: s.sent.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
        }
    }
}

impl Drop for NatsHub {
    fn drop(&mut self) {
        self.hub.set_backend(None);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Reconnect delay: 100 ms doubling to 5 s.
fn backoff(attempt: usize) -> Duration {
    let shift = attempt.min(6) as u32;
    Duration::from_millis(100u64 << shift).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_credentials_kept_out_of_sight() {
        let o = NatsHubOptions::parse("nats://alice:s%40cret@127.0.0.1:4333").unwrap();
        assert_eq!(o.describe(), "nats://127.0.0.1:4333");
        assert!(matches!(&o.auth, Some(Auth::UserPassword(u, p)) if u == "alice" && p == "s@cret"));
        assert!(!format!("{o:?}").contains("cret"));
        assert_eq!(o.subject(), "wraith.events");

        let o = NatsHubOptions::parse("tls://tok@a.example, b.example:5222").unwrap();
        assert!(o.tls);
        assert!(matches!(&o.auth, Some(Auth::Token(t)) if t == "tok"));
        assert_eq!(o.describe(), "tls://a.example:4222,nats://b.example:5222");

        let e = NatsHubOptions::parse("http://u:pw@x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--hub") && e.contains("nats://"), "{e}");
        assert!(!e.contains("pw"), "{e}");
        assert!(NatsHubOptions::parse("").is_err());
        assert!(NatsHubOptions::parse("nats://h/path").is_err());
    }

    #[test]
    fn prefixes_are_subject_tokens() {
        let o = NatsHubOptions::parse("h").unwrap();
        assert_eq!(
            o.clone().with_prefix("prod.eu-1").unwrap().subject(),
            "prod.eu-1.events"
        );
        for bad in ["", "a..b", "a b", "a.*", ">", "a.", "ü"] {
            assert!(o.clone().with_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_grows_to_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(100), Duration::from_secs(5));
    }
}
