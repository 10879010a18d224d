//! SIGINT and SIGTERM: the first asks for a graceful shutdown, a second
//! one exits at once. SIGHUP asks `wraith serve` to reload its keys, SIGUSR1 asks `wraith
//! connect` how it is doing.

/// SIGINT and SIGTERM, registered once so that no signal is missed between
/// two waits (the second signal must always be seen).
pub(crate) struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    Signals::new().recv().await;
}

/// A signal that asks for something and may come again: SIGHUP (reload)
/// or SIGUSR1 (status). Never resolves where there are none.
pub(crate) struct Repeated {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Repeated {
    /// SIGHUP. Registered now, so from here on it never has its default
    /// action (which would end the process).
    pub(crate) fn hangup() -> Self {
        #[cfg(unix)]
        {
            Self::unix(tokio::signal::unix::SignalKind::hangup())
        }
        #[cfg(not(unix))]
        {
            Repeated {}
        }
    }

    /// SIGUSR1, likewise.
    pub(crate) fn user1() -> Self {
        #[cfg(unix)]
        {
            Self::unix(tokio::signal::unix::SignalKind::user_defined1())
        }
        #[cfg(not(unix))]
        {
            Repeated {}
        }
    }

    #[cfg(unix)]
    fn unix(kind: tokio::signal::unix::SignalKind) -> Self {
        Repeated {
            signal: tokio::signal::unix::signal(kind).ok(),
        }
    }

    /// The next one.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}
