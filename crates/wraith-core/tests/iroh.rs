//! In-process tests of the iroh transport through the library API, on
//! loopback with relays disabled: sessions over a shared client endpoint,
//! `PeerInfo` for iroh peers, and per-peer limits counted by endpoint id.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "iroh")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wraith_core::client::{Client, ConnectOptions, HostKeyPolicy};
use wraith_core::keys::{self, HostKeyPin, ssh_key::PrivateKey};
use wraith_core::server::{AuthorizedKeys, ServeOptions, Server};
use wraith_core::transport::{
    Acceptor, IrohAcceptor, IrohEndpoint, IrohOptions, IrohPeer, IrohRelay, IrohTransport,
    TransportKind, derive_secret_key,
};

fn loopback_options() -> IrohOptions {
    let mut o = IrohOptions::new(IrohRelay::Disabled);
    o.bind = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    o
}

struct IrohServer {
    ticket: String,
    host_key: PrivateKey,
    user_key: PrivateKey,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for IrohServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_iroh_server(tweak: impl FnOnce(&mut ServeOptions)) -> IrohServer {
    let host_key = keys::generate_ed25519("host").unwrap();
    let user_key = keys::generate_ed25519("user").unwrap();
    let mut o = loopback_options();
    o.secret_key = Some(derive_secret_key(&host_key).unwrap());
    let endpoint = IrohEndpoint::bind(o).await.unwrap();
    assert_eq!(
        endpoint.id(),
        derive_secret_key(&host_key).unwrap().public(),
        "the endpoint id comes from the host key"
    );
    let ticket = bounded("ticket", endpoint.ticket()).await;
    let acceptor = IrohAcceptor::new(endpoint, ticket.clone());
    assert!(acceptor.describe().starts_with("iroh endpoint "));
    let authorized = AuthorizedKeys::from_keys([user_key.public_key().clone()]);
    let mut options = ServeOptions::new(host_key.clone(), authorized);
    tweak(&mut options);
    let server = Server::new(options);
    let task = tokio::spawn(async move {
        let _ = server.run(acceptor, std::future::pending()).await;
    });
    IrohServer {
        ticket,
        host_key,
        user_key,
        task,
    }
}

fn client_options(server: &IrohServer, endpoint: &IrohEndpoint) -> ConnectOptions {
    let peer: IrohPeer = server.ticket.parse().unwrap();
    let host = peer.id().to_string();
    let transport = Arc::new(IrohTransport::new(endpoint.clone(), peer).unwrap());
    let mut o = ConnectOptions::new(transport, host, 22, "tester", server.user_key.clone());
    o.host_key = HostKeyPolicy::Pin(HostKeyPin::Fingerprint(keys::fingerprint(
        server.host_key.public_key(),
    )));
    o.socks5 = Some("127.0.0.1:0".into());
    o.connect_timeout = Duration::from_secs(10);
    o
}

#[tokio::test]
async fn socks_over_iroh_and_limits_per_endpoint_id() {
    let server = start_iroh_server(|o| o.max_connections_per_ip = 1).await;
    let echo = echo_server("127.0.0.1:0").await;

    // Two sessions over one shared client endpoint: the same endpoint id.
    let shared = IrohEndpoint::bind(loopback_options()).await.unwrap();
    let first = bounded(
        "first session",
        Client::connect(client_options(&server, &shared)),
    )
    .await
    .expect("first session");
    let socks = first.socks5_addr.unwrap();
    let (rep, s) = socks5_connect(socks, Target::V4([127, 0, 0, 1], echo.port())).await;
    assert_eq!(rep, 0, "SOCKS5 reply over iroh");
    assert_eq!(round_trip(s, b"over iroh").await, b"over iroh");

    let second = bounded(
        "second session, same endpoint",
        Client::connect(client_options(&server, &shared)),
    )
    .await;
    assert!(
        second.is_err(),
        "a second session from the same endpoint id must be refused at the limit"
    );

    // A different endpoint id has its own count.
    let other = IrohEndpoint::bind(loopback_options()).await.unwrap();
    let third = bounded(
        "other endpoint",
        Client::connect(client_options(&server, &other)),
    )
    .await
    .expect("a different endpoint id is admitted");
    let (rep, s) = socks5_connect(
        third.socks5_addr.unwrap(),
        Target::V4([127, 0, 0, 1], echo.port()),
    )
    .await;
    assert_eq!(rep, 0);
    assert_eq!(round_trip(s, b"other").await, b"other");
    drop(first);
    drop(third);
    shared.close().await;
    other.close().await;
}

/// A server endpoint's acceptor (no SSH server behind it), its ticket, and
/// a client endpoint with a transport that dials it.
async fn raw_pair() -> (IrohAcceptor, String, IrohEndpoint, IrohTransport) {
    let host_key = keys::generate_ed25519("host").unwrap();
    let mut o = loopback_options();
    o.secret_key = Some(derive_secret_key(&host_key).unwrap());
    let endpoint = IrohEndpoint::bind(o).await.unwrap();
    let ticket = bounded("ticket", endpoint.ticket()).await;
    let acceptor = IrohAcceptor::new(endpoint, ticket.clone());
    let client_ep = IrohEndpoint::bind(loopback_options()).await.unwrap();
    let transport = IrohTransport::new(client_ep.clone(), ticket.parse().unwrap()).unwrap();
    (acceptor, ticket, client_ep, transport)
}

#[tokio::test]
async fn acceptor_reports_iroh_peers_by_endpoint_id() {
    let (mut acceptor, ticket, client_ep, transport) = raw_pair().await;
    assert_eq!(acceptor.ticket(), Some(ticket));
    let dial = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut s = wraith_core::transport::Transport::connect(&transport)
            .await
            .unwrap();
        // The peer sees the stream once the opener writes.
        s.write_all(b"SSH-2.0-probe\r\n").await.unwrap();
        s.flush().await.unwrap();
        s
    });
    let (mut stream, peer) = bounded("accept", acceptor.accept()).await.unwrap();
    let _client_stream = bounded("dial", dial).await.unwrap();
    assert_eq!(peer.transport, TransportKind::Iroh);
    assert_eq!(peer.remote_addr, None);
    assert_eq!(peer.endpoint_id, Some(client_ep.id().to_string()));
    assert_eq!(peer.log_addr(), client_ep.id().to_string());
    let mut banner = [0u8; 15];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut banner)
        .await
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-probe\r\n");
    acceptor.close().await;
    client_ep.close().await;
}

/// A reader that stops for a while must not lose the connection: the
/// sender fills the whole stream window (thousands of full-size QUIC
/// frames waiting, in order, to be read) and the bytes all arrive once the
/// reader goes on. noq-proto 1.4 counted such frames as gaps and closed the
/// connection ("too many gaps in stream buffer"); vendor/noq-proto/PATCHES.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_keeps_its_iroh_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TOTAL: usize = 24 << 20;
    let (mut acceptor, _, client_ep, transport) = raw_pair().await;
    let send = tokio::spawn(async move {
        let mut s = wraith_core::transport::Transport::connect(&transport)
            .await
            .unwrap();
        let block: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..TOTAL / block.len() {
            s.write_all(&block).await?;
        }
        s.flush().await?;
        // Keep the stream open until the reader has everything.
        let mut done = [0u8; 1];
        s.read_exact(&mut done).await?;
        std::io::Result::Ok(())
    });
    let (mut stream, _) = bounded("accept", acceptor.accept()).await.unwrap();
    let mut first = vec![0u8; 64 * 1024];
    bounded("first block", stream.read_exact(&mut first))
        .await
        .unwrap();
    // The reader stops; the sender fills the stream window meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = first.len();
    let mut buf = vec![0u8; 256 * 1024];
    let read_rest = async {
        while got < TOTAL {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other(format!("closed after {got} bytes")));
            }
            assert!(
                buf[..n]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == ((got + i) % (64 * 1024) % 251) as u8),
                "bytes out of order near {got}"
            );
            got += n;
        }
        stream.write_all(b"k").await?;
        stream.flush().await
    };
    bounded("the rest after the stall", read_rest)
        .await
        .expect("the stream survives a stalled reader");
    bounded("sender", send).await.unwrap().unwrap();
    acceptor.close().await;
    client_ep.close().await;
}
