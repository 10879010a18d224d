//! What `wraith connect` answers to "is my tunnel up?" (SIGUSR1, and
//! [`Client::status`](super::Client::status) for embedders): the state, how
//! long the client and its current session have been up, how often it
//! reconnected, and how many local connections are open through it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::ClientState;

/// A snapshot of a running client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStatus {
    /// Connected (to which server), reconnecting or stopped.
    pub state: ClientState,
    /// Since [`Client::connect`](super::Client::connect) returned.
    pub uptime: Duration,
    /// Since the session in use now was established (`None` while there is
    /// none).
    pub session_uptime: Option<Duration>,
    /// Sessions re-established after a loss.
    pub reconnects: u64,
    /// Local connections (SOCKS5, HTTP proxy, forwards) open now.
    pub open_connections: usize,
    /// Local connections accepted in all.
    pub total_connections: u64,
}

impl std::fmt::Display for ClientStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.state, self.session_uptime) {
            (ClientState::Connected { server }, up) => {
                write!(f, "connected to {server}")?;
                // Every transport but plain TCP names itself (tls://…).
                if !server.contains("://") && !server.starts_with("iroh:") {
                    write!(f, " over tcp")?;
                }
                if let Some(up) = up {
                    write!(f, " for {}", human(up))?;
                }
            }
            (
                ClientState::Reconnecting {
                    attempt, reason, ..
                },
                _,
            ) => write!(f, "reconnecting (attempt {attempt}; {reason})")?,
            (ClientState::Stopped(why), _) => write!(f, "stopped: {why}")?,
        }
        write!(
            f,
            "; up {}; {} reconnect{}; {} open connection{} ({} in all)",
            human(self.uptime),
            self.reconnects,
            if self.reconnects == 1 { "" } else { "s" },
            self.open_connections,
            if self.open_connections == 1 { "" } else { "s" },
            self.total_connections,
        )
    }
}

/// `3h2m`, `4m10s`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// A handle that reads a client's [`ClientStatus`] while something else
/// holds the [`Client`](super::Client) (say, its `wait()`).
#[derive(Debug, Clone)]
pub struct StatusWatch {
    pub(crate) activity: Arc<Activity>,
    pub(crate) state: tokio::sync::watch::Receiver<ClientState>,
}

impl StatusWatch {
    /// The status now.
    pub fn get(&self) -> ClientStatus {
        self.activity.snapshot(self.state.borrow().clone())
    }

    /// Wait until the state changes (connected, reconnecting, stopped);
    /// never returns once the client is gone.
    pub async fn changed(&mut self) {
        if self.state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The counters behind [`ClientStatus`], shared by the listeners and the
/// supervisor.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    session_since: Mutex<Option<Instant>>,
    reconnects: AtomicU64,
    open: AtomicUsize,
    total: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Activity {
            started: now,
            session_since: Mutex::new(Some(now)),
            reconnects: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            total: AtomicU64::new(0),
        })
    }

    /// A local connection was accepted; it counts as open until the guard
    /// is dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    pub(crate) fn session_lost(&self) {
        if let Ok(mut s) = self.session_since.lock() {
            *s = None;
        }
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.session_since.lock() {
            *s = Some(Instant::now());
        }
    }

    pub(crate) fn snapshot(&self, state: ClientState) -> ClientStatus {
        let since = self.session_since.lock().ok().and_then(|s| *s);
        ClientStatus {
            state,
            uptime: self.started.elapsed(),
            session_uptime: since.map(|s| s.elapsed()),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            open_connections: self.open.load(Ordering::Relaxed),
            total_connections: self.total.load(Ordering::Relaxed),
        }
    }
}

/// One open local connection (see [`Activity::connection`]).
pub(crate) struct ConnectionGuard(Arc<Activity>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_the_status_line() {
        let a = Activity::new();
        let g1 = a.connection();
        let g2 = a.connection();
        drop(g1);
        a.session_lost();
        a.reconnected();
        let s = a.snapshot(ClientState::Connected {
            server: "tls://b:443".into(),
        });
        assert_eq!(
            (s.open_connections, s.total_connections, s.reconnects),
            (1, 2, 1)
        );
        let line = s.to_string();
        assert!(
            line.starts_with(
                "connected to tls://b:443 for 0s; up 0s; 1 reconnect; 1 open connection (2 in all)"
            ),
            "{line}"
        );
        drop(g2);
        a.session_lost();
        let s = a.snapshot(ClientState::Stopped("gone".into()));
        assert_eq!((s.open_connections, s.session_uptime), (0, None));
        assert_eq!(human(Duration::from_secs(3 * 3600 + 125)), "3h2m");
        assert_eq!(human(Duration::from_secs(250)), "4m10s");
    }
}
