//! The tunnel destinations, served inside the bench process on 127.0.0.1
//! port 0: a *source* that sends what it is asked for, a *sink* that counts
//! what it receives and acknowledges it, and an *echo*. Each connection is
//! one task; the targets never time anything themselves, the client side of
//! the bench does.
//!
//! Wire format of source and sink: the client first sends the byte count as
//! a big-endian u64. The source then sends that many bytes and closes; the
//! sink reads that many bytes and answers with the count it received (same
//! encoding), so an upload is timed until delivery, not until the bytes sit
//! in a socket buffer.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Size of every read and write buffer of the bench (targets and load).
pub(crate) const CHUNK: usize = 256 * 1024;

/// What the source sends; contents do not matter (no compression anywhere).
pub(crate) static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// The three running targets; their tasks stop when this is dropped.
pub(crate) struct Targets {
    pub(crate) source: SocketAddr,
    pub(crate) sink: SocketAddr,
    pub(crate) echo: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// Which target a tunnelled connection goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Source,
    Sink,
    Echo,
}

impl Targets {
    pub(crate) async fn start() -> Result<Self> {
        let (source, t1) = serve("source", |s| Box::pin(source(s))).await?;
        let (sink, t2) = serve("sink", |s| Box::pin(sink(s))).await?;
        let (echo, t3) = serve("echo", |s| Box::pin(echo(s))).await?;
        Ok(Self {
            source,
            sink,
            echo,
            tasks: vec![t1, t2, t3],
        })
    }

    pub(crate) fn addr(&self, target: Target) -> SocketAddr {
        match target {
            Target::Source => self.source,
            Target::Sink => self.sink,
            Target::Echo => self.echo,
        }
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type ConnFuture = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

async fn serve(
    name: &'static str,
    handler: fn(TcpStream) -> ConnFuture,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .with_context(|| format!("cannot bind the {name} target on 127.0.0.1"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    // A failed connection is the client's to report.
                    tokio::spawn(async move {
                        let _ = handler(stream).await;
                    });
                }
                // Out of file descriptors: the idle figure reports how many
                // connections it reached; back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    });
    Ok((addr, task))
}

async fn read_len(s: &mut TcpStream) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b).await?;
    Ok(u64::from_be_bytes(b))
}

async fn source(mut s: TcpStream) -> std::io::Result<()> {
    let mut left = read_len(&mut s).await?;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        s.write_all(&ZEROS[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await
}

async fn sink(mut s: TcpStream) -> std::io::Result<()> {
    let want = read_len(&mut s).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < want {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    s.write_all(&got.to_be_bytes()).await?;
    // Wait for the client to close so the ack is not cut off by a reset.
    while s.read(&mut buf).await? > 0 {}
    Ok(())
}

async fn echo(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}
