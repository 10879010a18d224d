//! Shared harness for in-process tests: a server and a client on loopback
//! port 0, target services, and a hand-written SOCKS5 client. Every wait is
//! bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wraith_core::client::{Client, ConnectOptions, HostKeyPolicy};
use wraith_core::keys::{self, HostKeyPin, ssh_key::PrivateKey};
use wraith_core::server::{AuthorizedKeys, ServeOptions, Server};
use wraith_core::transport::{TcpAcceptor, TcpTransport};

/// A hang guard, not a speed limit: generous so a loaded CI machine does not
/// fail a slow but correct test.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Fail the test instead of hanging.
pub async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub host_key: PrivateKey,
    pub user_key: PrivateKey,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_server() -> TestServer {
    start_server_with(|_| {}).await
}

/// A server whose options `tweak` may change before it starts.
pub async fn start_server_with(tweak: impl FnOnce(&mut ServeOptions)) -> TestServer {
    let host_key = keys::generate_ed25519("host").unwrap();
    let user_key = keys::generate_ed25519("user").unwrap();
    let authorized = AuthorizedKeys::from_keys([user_key.public_key().clone()]);
    let acceptor = TcpAcceptor::bind("127.0.0.1:0").await.unwrap();
    let addr = acceptor.local_addr();
    let mut options = ServeOptions::new(host_key.clone(), authorized);
    tweak(&mut options);
    let server = Server::new(options);
    let task = tokio::spawn(async move {
        let _ = server.run(acceptor, std::future::pending()).await;
    });
    TestServer {
        addr,
        host_key,
        user_key,
        task,
    }
}

/// Client options for `server`, pinned to its host key, SOCKS5 on port 0.
pub fn client_options(server: &TestServer) -> ConnectOptions {
    let transport = Arc::new(TcpTransport::new("127.0.0.1", server.addr.port()));
    let mut o = ConnectOptions::new(
        transport,
        "127.0.0.1",
        server.addr.port(),
        "tester",
        server.user_key.clone(),
    );
    o.host_key = HostKeyPolicy::Pin(HostKeyPin::Fingerprint(keys::fingerprint(
        server.host_key.public_key(),
    )));
    o.socks5 = Some("127.0.0.1:0".into());
    o.connect_timeout = Duration::from_secs(10);
    o
}

pub async fn start_client(server: &TestServer) -> Client {
    bounded("client connect", Client::connect(client_options(server)))
        .await
        .unwrap()
}

/// An echo server on `bind`; returns its address.
pub async fn echo_server(bind: &str) -> SocketAddr {
    let l = TcpListener::bind(bind).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A port on 127.0.0.1 that nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// SOCKS5 target forms.
pub enum Target<'a> {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
    Domain(&'a str, u16),
}

/// Run a SOCKS5 CONNECT through `proxy`; returns the reply code and, on
/// success, the connected stream.
pub async fn socks5_connect(proxy: SocketAddr, target: Target<'_>) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0], "method selection");
    let mut req = vec![5, 1, 0];
    match target {
        Target::V4(ip, port) => {
            req.push(1);
            req.extend_from_slice(&ip);
            req.extend_from_slice(&port.to_be_bytes());
        }
        Target::V6(ip, port) => {
            req.push(4);
            req.extend_from_slice(&ip);
            req.extend_from_slice(&port.to_be_bytes());
        }
        Target::Domain(name, port) => {
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(&port.to_be_bytes());
        }
    }
    s.write_all(&req).await.unwrap();
    let code = read_reply(&mut s).await;
    (code, s)
}

/// Read a full SOCKS5 reply and return its REP code.
pub async fn read_reply(s: &mut TcpStream) -> u8 {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 5, "reply version");
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await.unwrap();
            usize::from(l[0]) + 2
        }
        other => panic!("bad ATYP {other} in reply"),
    };
    let mut buf = vec![0u8; rest];
    s.read_exact(&mut buf).await.unwrap();
    head[1]
}

/// Write `msg`, half-close, and read everything back.
pub async fn round_trip(mut s: TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}
