//! `--stdio HOST:PORT` (an `ssh -W` for ProxyCommand): a listener whose one
//! connection is the process's input and output, served on a session of
//! its own. Nothing but channel data reaches the output; EOF on the input
//! is sent as channel EOF, and it all ends when the channel does, whether
//! or not the input is still open (ssh keeps a ProxyCommand's stdin open).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::ConnectOptions;
use super::channel::SingleSession;
use super::listener::{Listener, Service};
use super::opener::{ChannelOpener, OpenError};
use crate::error::{Error, Result};

/// The input side of `--stdio`.
pub type StdioInput = Box<dyn AsyncRead + Send + Unpin>;
/// The output side of `--stdio`.
pub type StdioOutput = Box<dyn AsyncWrite + Send + Unpin>;

/// Connect as `opts` says (its listener settings are ignored), open one
/// channel to `host:port` and join it to `input` and `output` until the
/// channel ends. Errors carry the same messages as [`open_channel`](super::open_channel).
pub async fn stdio(
    opts: ConnectOptions,
    host: &str,
    port: u16,
    input: StdioInput,
    output: StdioOutput,
) -> Result<()> {
    let single = SingleSession::establish(&opts).await?;
    let (done_tx, done_rx) = oneshot::channel();
    let listener = StdioListener {
        conn: Some((input, output)),
        service: StdioService {
            host: host.to_string(),
            port,
            done: Arc::new(Mutex::new(Some(done_tx))),
        },
    };
    let serving = tokio::spawn(super::listener::serve(
        listener,
        single.opener.clone(),
        super::status::Activity::new(),
    ));
    let ended = done_rx.await;
    serving.abort();
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Ended::Open(e))) => Err(single.open_failed(host, port, e)),
        Ok(Err(Ended::Io(e))) => Err(Error::io("--stdio", e)),
        Err(_) => Err(Error::SessionClosed(
            "the --stdio connection was dropped".into(),
        )),
    }
}

/// How the one connection ended, when not cleanly.
enum Ended {
    Open(OpenError),
    Io(std::io::Error),
}

type Done = oneshot::Sender<std::result::Result<(), Ended>>;

/// Yields its one connection, then nothing.
struct StdioListener {
    conn: Option<(StdioInput, StdioOutput)>,
    service: StdioService,
}

impl crate::io::Accept for StdioListener {
    type Conn = (StdioInput, StdioOutput);
    fn accept(&mut self) -> crate::io::accept::AcceptFuture<'_, Self::Conn> {
        crate::io::accept::accept_once(&mut self.conn)
    }
}

impl Listener for StdioListener {
    type Service = StdioService;
    fn service(&self) -> StdioService {
        self.service.clone()
    }
    fn kind(&self) -> &'static str {
        "stdio"
    }
}

#[derive(Clone)]
struct StdioService {
    host: String,
    port: u16,
    /// Told how the connection ended (there is only one).
    done: Arc<Mutex<Option<Done>>>,
}

impl Service<(StdioInput, StdioOutput)> for StdioService {
    async fn serve(
        self,
        (mut input, mut output): (StdioInput, StdioOutput),
        opener: ChannelOpener,
    ) {
        let originator = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let ended = match opener.open_tcp(&self.host, self.port, originator).await {
            Err(e) => Err(Ended::Open(e)),
            Ok(channel) => {
                let (mut from_channel, mut to_channel) = tokio::io::split(channel);
                let upstream = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut input, &mut to_channel).await;
                    let _ = to_channel.shutdown().await;
                });
                let copied = tokio::io::copy(&mut from_channel, &mut output).await;
                let flushed = output.flush().await;
                upstream.abort();
                copied.and(flushed).map(|_| ()).map_err(Ended::Io)
            }
        };
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            let _ = done.send(ended);
        }
    }
}
