//! Connectors: how the server reaches a channel's target — directly, or
//! through the outbound `--proxy` (SOCKS5 with the name unresolved, or HTTP
//! CONNECT).
//!
//! Errors from here go back to the client as a channel-open failure. They
//! must never be logged with the target in them.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::transport::{BoxStream, ProxyUrl, SocketOpts};

/// Dial `host:port` directly or through `proxy`, with a timeout. The host
/// comes from the peer: one that is not a plain name or address
/// (`valid_dial_host`) is refused before anything is resolved or sent.
pub(crate) async fn connect_tcp(
    proxy: Option<&ProxyUrl>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<BoxStream> {
    if !crate::proto::host_port::valid_dial_host(host) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a valid host name",
        ));
    }
    let dial = async {
        match proxy {
            None => {
                let s = TcpStream::connect((host, port)).await?;
                SocketOpts::STANDARD.apply(&s);
                Ok(s)
            }
            Some(p) => crate::transport::proxy::dial(Some(p), host, port)
                .await
                .map_err(io::Error::other),
        }
    };
    let stream = tokio::time::timeout(timeout, dial)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    Ok(Box::new(stream))
}

/// Connect to a Unix socket, with a timeout.
#[cfg(unix)]
pub(crate) async fn connect_unix(path: &str, timeout: Duration) -> io::Result<BoxStream> {
    let stream = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    Ok(Box::new(stream))
}

#[cfg(not(unix))]
pub(crate) async fn connect_unix(_path: &str, _timeout: Duration) -> io::Result<BoxStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "unix sockets are not supported here",
    ))
}
