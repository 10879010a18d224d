//! The one accept loop every listener and acceptor runs: the server's
//! transports, its remote-forward listeners, the client's SOCKS5 and
//! forward listeners, the iroh relay bridge. A failed `accept()` is logged
//! now and then (not once per failure) and followed by a pause, so that
//! running out of descriptors is a slow loop that recovers, never a busy
//! one.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::proxy_protocol::{ProxyProtocol, ProxyRefused, log_refusal};
use crate::limits::LogRate;

/// The first gate for a new TCP connection, before a byte of it is read:
/// behind `--proxy-protocol` only a trusted proxy may connect, and at most
/// `limit` connections may be in their opening stage (PROXY header, TLS
/// handshake) at once. Closing at once costs the peer a connection and us
/// nothing; refusals are logged now and then with a count, not once each.
pub(crate) struct OpeningGate {
    proxy: Option<Arc<ProxyProtocol>>,
    opening: Arc<Semaphore>,
    refusals: Arc<LogRate>,
    transport: &'static str,
    /// The line logged when `limit` connections are opening already.
    full: &'static str,
}

impl OpeningGate {
    pub(crate) fn new(
        proxy: Option<Arc<ProxyProtocol>>,
        limit: usize,
        transport: &'static str,
        full: &'static str,
    ) -> Self {
        OpeningGate {
            proxy,
            opening: Arc::new(Semaphore::new(limit.max(1))),
            refusals: Arc::new(LogRate::new(Duration::from_secs(10))),
            transport,
            full,
        }
    }

    /// Whether the connection from `peer` may go on: `Some` holds its
    /// place among the opening connections until it is dropped.
    pub(crate) fn admit(&self, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        if let Some(pp) = &self.proxy
            && !pp.allows(peer.ip())
        {
            log_refusal(&self.refusals, peer, &ProxyRefused::NotAllowed);
            return None;
        }
        let permit = self.opening.clone().try_acquire_owned().ok();
        if permit.is_none()
            && let Some(skipped) = self.refusals.check()
        {
            tracing::warn!(skipped, transport = self.transport, "{}", self.full);
        }
        permit
    }

    /// The PROXY protocol the connections start with, if any.
    #[cfg(feature = "tls")]
    pub(crate) fn proxy(&self) -> Option<&Arc<ProxyProtocol>> {
        self.proxy.as_ref()
    }

    /// Where refusals after admission are counted, so that all of them
    /// share one rate.
    pub(crate) fn refusals(&self) -> &LogRate {
        &self.refusals
    }
}

/// A boxed future (an accept loop runs inside spawned, `Send` tasks; a
/// boxed future keeps that provable for every caller).
pub(crate) type AcceptFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = std::io::Result<T>> + Send + 'a>>;

/// What [`Accept::accept`] returns for a source of one connection, held
/// in `slot`: the first call yields it, every later call waits forever.
pub(crate) fn accept_once<T: Send + 'static>(slot: &mut Option<T>) -> AcceptFuture<'_, T> {
    let next = slot.take();
    Box::pin(async move {
        match next {
            Some(conn) => Ok(conn),
            None => std::future::pending().await,
        }
    })
}

/// Something connections can be accepted from.
pub(crate) trait Accept: Send {
    /// What one accepted connection is.
    type Conn: Send;
    /// Wait for the next connection.
    fn accept(&mut self) -> AcceptFuture<'_, Self::Conn>;
}

impl Accept for TcpListener {
    type Conn = (TcpStream, SocketAddr);
    fn accept(&mut self) -> AcceptFuture<'_, Self::Conn> {
        Box::pin(TcpListener::accept(self))
    }
}

/// True for the accept errors that mean "out of file descriptors".
pub(crate) fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE (24): the process limit; ENFILE (23): the system's.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// Log a failed `accept()` (at most one line per period for `rate`) and
/// say how long to pause before the next one.
fn accept_failed(e: &std::io::Error, listener: &'static str, rate: &LogRate) -> Duration {
    if let Some(skipped) = rate.check() {
        if is_fd_exhaustion(e) {
            tracing::error!(
                listener,
                error = %e,
                skipped,
                "out of file descriptors: new connections wait until some close \
                 (raise the open-files limit, ulimit -n / LimitNOFILE, or lower the connection limits)"
            );
        } else {
            tracing::warn!(listener, error = %e, skipped, "accept failed");
        }
    }
    Duration::from_millis(if is_fd_exhaustion(e) { 250 } else { 50 })
}

/// Accept from `from` until `stop` completes, handing each connection to
/// `on_conn` (which must not wait: spawn the work). `listener` names the
/// listener in log lines about failed accepts.
///
/// `from` is a trait object so that the loop's future does not depend on
/// the listener's type: rustc cannot always prove such a future `Send`
/// for a `Box<dyn Acceptor>` (its lifetime is erased inside the future).
pub(crate) async fn accept_loop<C: Send>(
    from: &mut (dyn Accept<Conn = C> + '_),
    listener: &'static str,
    stop: impl Future<Output = ()>,
    mut on_conn: impl FnMut(C),
) {
    let errors = LogRate::new(Duration::from_secs(10));
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = from.accept() => a,
        };
        match accepted {
            Ok(conn) => on_conn(conn),
            Err(e) => tokio::time::sleep(accept_failed(&e, listener, &errors)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Fails with the queued errors, then yields numbered connections.
    struct Script {
        errors: VecDeque<std::io::Error>,
        next: u32,
    }

    impl Accept for Script {
        type Conn = u32;
        fn accept(&mut self) -> AcceptFuture<'_, u32> {
            let next = match self.errors.pop_front() {
                Some(e) => Err(e),
                None => {
                    self.next += 1;
                    Ok(self.next)
                }
            };
            Box::pin(async move { next })
        }
    }

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        assert!(is_fd_exhaustion(&std::io::Error::from_raw_os_error(24)));
        assert!(is_fd_exhaustion(&std::io::Error::from_raw_os_error(23)));
        assert!(!is_fd_exhaustion(&std::io::Error::from_raw_os_error(104)));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_pause_and_the_loop_goes_on() {
        let mut script = Script {
            errors: (0..4)
                .map(|_| std::io::Error::from_raw_os_error(24))
                .collect(),
            next: 0,
        };
        let started = tokio::time::Instant::now();
        let mut got = Vec::new();
        let (done, stop) = tokio::sync::oneshot::channel::<()>();
        let mut done = Some(done);
        accept_loop(
            &mut script,
            "test",
            async {
                let _ = stop.await;
            },
            |n| {
                got.push(n);
                if n == 3
                    && let Some(d) = done.take()
                {
                    let _ = d.send(());
                }
            },
        )
        .await;
        // Four EMFILEs cost four pauses of 250 ms before the first
        // connection; the loop then ends on `stop`.
        assert!(started.elapsed() >= Duration::from_millis(1000));
        assert_eq!(&got[..3], &[1, 2, 3]);
    }
}
