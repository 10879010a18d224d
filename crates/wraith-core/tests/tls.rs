//! In-process tests of the TLS acceptor and transport: concurrency of
//! handshakes, timeouts, SNI in `PeerInfo`, certificate pins, and the
//! stealth sniffing that hands only SSH to the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "tls")]

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wraith_core::transport::{
    Acceptor, CertSource, StealthOptions, TlsAcceptor, TlsClientOptions, TlsPin, TlsServerOptions,
    TlsTransport, Transport, TransportKind,
};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A self-signed certificate for localhost, written as PEM files; returns
/// its pin.
fn write_cert(dir: &Path) -> (CertSource, TlsPin) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let pin = TlsPin::of_certificate(cert.der()).unwrap();
    (
        CertSource::Pem {
            cert: cert_path.into(),
            key: key_path.into(),
        },
        pin,
    )
}

fn transport(port: u16, pin: TlsPin) -> TlsTransport {
    let opts = TlsClientOptions {
        server_name: Some("localhost".into()),
        pin: Some(pin),
        ..Default::default()
    };
    TlsTransport::new("127.0.0.1", port, opts).unwrap()
}

#[tokio::test]
async fn a_stalled_handshake_does_not_block_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, pin) = write_cert(dir.path());
    let mut acceptor = TlsAcceptor::bind("127.0.0.1:0", TlsServerOptions::new(cert))
        .await
        .unwrap();
    let port = acceptor.local_addr().port();
    // Connected, but never says a word.
    let _stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let t = transport(port, pin);
    // Well inside the 10 s handshake timeout the stalled one is waiting out.
    let (client, accepted) = tokio::time::timeout(Duration::from_secs(3), async {
        tokio::join!(t.connect(), acceptor.accept())
    })
    .await
    .expect("a stalled handshake held up another connection");
    let mut client = client.unwrap();
    let (mut server_side, info) = accepted.unwrap();
    assert_eq!(info.transport, TransportKind::Tls);
    assert_eq!(info.transport.to_string(), "tls");
    assert_eq!(info.sni.as_deref(), Some("localhost"));
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 4];
    bounded("read", server_side.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = write_cert(dir.path());
    let mut opts = TlsServerOptions::new(cert);
    opts.handshake_timeout = Duration::from_millis(300);
    let acceptor = TlsAcceptor::bind("127.0.0.1:0", opts).await.unwrap();
    let mut silent = TcpStream::connect(acceptor.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = bounded("close of a silent connection", silent.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "the server closed without sending anything");
}

#[tokio::test]
async fn a_wrong_pin_is_a_fatal_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, pin) = write_cert(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other_pin) = write_cert(other_dir.path());
    let mut acceptor = TlsAcceptor::bind("127.0.0.1:0", TlsServerOptions::new(cert))
        .await
        .unwrap();
    let port = acceptor.local_addr().port();
    tokio::spawn(async move { while acceptor.accept().await.is_ok() {} });
    let err = match bounded("connect", transport(port, other_pin).connect()).await {
        Ok(_) => panic!("a wrong pin was accepted"),
        Err(e) => e,
    };
    assert!(err.is_fatal(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("does not match --tls-pin"), "{msg}");
    assert!(msg.contains(&pin.to_string()), "{msg}");
}

#[tokio::test]
async fn stealth_hands_only_ssh_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, pin) = write_cert(dir.path());
    let mut opts = TlsServerOptions::new(cert);
    opts.stealth = Some(StealthOptions::default());
    let mut acceptor = TlsAcceptor::bind("127.0.0.1:0", opts).await.unwrap();
    let port = acceptor.local_addr().port();
    let t = transport(port, pin);

    // A web client gets nginx's 404 and never reaches accept().
    let mut web = bounded("connect", t.connect()).await.unwrap();
    web.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    bounded("404", web.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 404 Not Found\r\nServer: nginx/"),
        "{answer}"
    );

    // An SSH client does, with its banner intact.
    let mut ssh = bounded("connect", t.connect()).await.unwrap();
    ssh.write_all(b"SSH-2.0-test\r\n").await.unwrap();
    ssh.flush().await.unwrap();
    let (mut stream, info) = bounded("accept", acceptor.accept()).await.unwrap();
    assert_eq!(info.transport, TransportKind::Tls);
    let mut banner = [0u8; 14];
    bounded("banner", stream.read_exact(&mut banner))
        .await
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-test\r\n");
}
