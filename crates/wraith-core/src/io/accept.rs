//! The one accept loop every listener and acceptor runs: the server's
//! transports, its remote-forward listeners, the client's SOCKS5 and
//! forward listeners, the iroh relay bridge. A failed `accept()` is logged
//! now and then (not once per failure) and followed by a pause, so that
//! running out of descriptors is a slow loop that recovers, never a busy
//! one.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::limits::LogRate;

/// A boxed future (an accept loop runs inside spawned, `Send` tasks; a
/// boxed future keeps that provable for every caller).
pub(crate) type AcceptFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = std::io::Result<T>> + Send + 'a>>;

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
