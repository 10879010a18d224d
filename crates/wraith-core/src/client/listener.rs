//! What every local listener is: a source of connections and a service that
//! carries one of them through the tunnel. The SOCKS5 proxy, TCP and Unix
//! forwards and `--stdio` (a listener with one connection: stdin and
//! stdout) are each a [`Listener`]; [`serve`] runs any of them on the one
//! channel opener, one task per connection, through the shared accept loop
//! and its backoff.

use std::future::Future;

use super::opener::ChannelOpener;
use crate::io::Accept;

/// A local listener: where connections come from ([`Accept`]) and what
/// carries each one ([`Listener::Service`]).
pub(crate) trait Listener: Accept<Conn: 'static> + 'static {
    /// Names the listener in log lines about failed accepts.
    const KIND: &'static str;
    /// What serves one connection.
    type Service: Service<Self::Conn>;
    /// The service, cloned into every connection's task.
    fn service(&self) -> Self::Service;
}

/// Carries one accepted connection through the tunnel, opening its
/// channel with the opener it is given. It reports its own failures (a
/// log line, a SOCKS reply); nothing waits for it.
pub(crate) trait Service<C>: Clone + Send + 'static {
    /// Serve `conn` to its end.
    fn serve(self, conn: C, opener: ChannelOpener) -> impl Future<Output = ()> + Send + 'static;
}

/// Accept from `listener` until the task is dropped, serving each
/// connection on a task of its own.
pub(crate) async fn serve<L: Listener>(mut listener: L, opener: ChannelOpener) {
    let service = listener.service();
    let stop = std::future::pending();
    crate::io::accept_loop(&mut listener, L::KIND, stop, |conn| {
        tokio::spawn(service.clone().serve(conn, opener.clone()));
    })
    .await;
}
