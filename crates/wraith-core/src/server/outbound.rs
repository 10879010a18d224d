//! Connectors: how the server reaches a channel's target. Only the direct
//! connector exists so far; an outbound proxy will be another connector.
//!
//! Errors from here go back to the client as a channel-open failure. They
//! must never be logged with the target in them.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::transport::{BoxStream, SocketOpts};

/// Dial `host:port` directly, with a timeout.
pub(crate) async fn connect_direct(
    host: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<BoxStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    SocketOpts::default().apply(&stream);
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
