//! A minimal SOCKS5 client (no authentication, CONNECT to an IP address):
//! what curl does against `ssh -D` and `wraith connect`. The messages and
//! the checks of the replies are wraith-core's pure client side
//! (`proto::socks5::client`); this module only moves bytes. It must never
//! pipeline the request behind the greeting, because the latency figure is
//! meant to include both round trips, as curl pays them.

use std::net::SocketAddr;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wraith_core::proto::socks5::client::{self, Method};

/// Connects to the proxy and settles on "no authentication".
pub(crate) async fn handshake(proxy: SocketAddr) -> Result<TcpStream> {
    let mut s = TcpStream::connect(proxy)
        .await
        .with_context(|| format!("cannot connect to the SOCKS5 proxy at {proxy}"))?;
    s.set_nodelay(true)?;
    s.write_all(&client::greeting(false)).await?;
    let mut method = [0u8; 2];
    s.read_exact(&mut method)
        .await
        .context("SOCKS5 proxy closed during the greeting")?;
    match client::method(method).map_err(|e| anyhow!(e))? {
        Method::NoAuth => Ok(s),
        Method::UserPass => bail!("the SOCKS5 proxy wants a password; the bench offers none"),
    }
}

/// Reads a reply to CONNECT or UDP ASSOCIATE and returns the address it
/// names: the address type byte, the address and the port, as sent.
pub(crate) async fn read_reply(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)
        .await
        .context("SOCKS5 proxy closed before replying")?;
    let rest = client::reply_len(head).map_err(|e| anyhow!(e))?;
    let mut bound = head[3..].to_vec();
    bound.resize(2 + rest, 0);
    s.read_exact(&mut bound[2..]).await?;
    Ok(bound)
}

/// Opens a connection to `target` through the SOCKS5 proxy at `proxy`.
pub(crate) async fn connect(proxy: SocketAddr, target: SocketAddr) -> Result<TcpStream> {
    let mut s = handshake(proxy).await?;
    let request =
        client::connect_request(&target.ip().to_string(), target.port()).map_err(|e| anyhow!(e))?;
    s.write_all(&request).await?;
    read_reply(&mut s).await?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A proxy that reads a 3-byte greeting, answers with the first two
    /// bytes of `replies`, reads one request and answers with the rest;
    /// it returns what it read.
    async fn proxy(replies: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut greeting = [0u8; 3];
            s.read_exact(&mut greeting).await.unwrap();
            s.write_all(&replies[..2]).await.unwrap();
            let mut request = vec![0u8; 4 + 16 + 2];
            let n = s.read(&mut request).await.unwrap();
            request.truncate(n);
            s.write_all(&replies[2..]).await.unwrap();
            let mut all = greeting.to_vec();
            all.extend(request);
            all
        });
        (addr, task)
    }

    #[tokio::test]
    async fn connect_sends_greeting_then_an_ip_request_and_reads_the_whole_reply() {
        let (addr, task) = proxy(vec![
            5, 0, 5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 7,
        ])
        .await;
        let mut s = connect(addr, "[::1]:22".parse().unwrap()).await.unwrap();
        let sent = task.await.unwrap();
        assert_eq!(&sent[..3], &[5, 1, 0]);
        assert_eq!(&sent[3..7], &[5, 1, 0, 4]);
        assert_eq!(&sent[sent.len() - 2..], &[0, 22]);
        // Every reply byte was consumed: the stream is at its end.
        assert_eq!(s.read(&mut [0u8; 1]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_refusal_and_a_password_demand_are_errors() {
        let (addr, _task) = proxy(vec![5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        let err = connect(addr, "127.0.0.1:80".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("connection refused"), "{err}");
        let (addr, _task) = proxy(vec![5, 2]).await;
        let err = handshake(addr).await.unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
    }
}
