//! In-process tunnel tests: a real server and client on loopback, real
//! sockets, real SSH; no mocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wraith_core::client::{Client, LocalForwardSpec, RemoteForwardSpec};
use wraith_core::keys::{self, HostKeyPin};

#[tokio::test]
async fn socks5_connect_by_ipv4_reaches_target() {
    let server = start_server().await;
    let client = start_client(&server).await;
    let echo = echo_server("127.0.0.1:0").await;
    let proxy = client.socks5_addr.unwrap();
    let (code, s) = bounded(
        "socks",
        socks5_connect(proxy, Target::V4([127, 0, 0, 1], echo.port())),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        bounded("echo", round_trip(s, b"hello v4")).await,
        b"hello v4"
    );
}

#[tokio::test]
async fn socks5_connect_by_ipv6_reaches_target() {
    let Ok(l) = TcpListener::bind("[::1]:0").await else {
        assert!(
            std::env::var("CI").is_err(),
            "IPv6 loopback is required in CI"
        );
        eprintln!("skipping: no IPv6 loopback here");
        return;
    };
    drop(l);
    let server = start_server().await;
    let client = start_client(&server).await;
    let echo = echo_server("[::1]:0").await;
    let proxy = client.socks5_addr.unwrap();
    let mut ip = [0u8; 16];
    ip[15] = 1;
    let (code, s) = bounded("socks", socks5_connect(proxy, Target::V6(ip, echo.port()))).await;
    assert_eq!(code, 0);
    assert_eq!(
        bounded("echo", round_trip(s, b"hello v6")).await,
        b"hello v6"
    );
}

#[tokio::test]
async fn socks5_domain_is_resolved_on_server() {
    let server = start_server().await;
    let client = start_client(&server).await;
    let echo = echo_server("127.0.0.1:0").await;
    let proxy = client.socks5_addr.unwrap();
    let (code, s) = bounded(
        "socks",
        socks5_connect(proxy, Target::Domain("localhost", echo.port())),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(bounded("echo", round_trip(s, b"by name")).await, b"by name");
    // A name only the server could resolve would prove it further; the
    // client never resolves: an unresolvable name yields a failure reply
    // from the server side, not a local DNS error.
    let (code, _) = bounded(
        "socks",
        socks5_connect(proxy, Target::Domain("no-such-host.invalid", 80)),
    )
    .await;
    assert_eq!(code, 4, "host unreachable for an unresolvable name");
}

#[tokio::test]
async fn unreachable_target_gets_failure_reply_and_session_keeps_working() {
    let server = start_server().await;
    let client = start_client(&server).await;
    let proxy = client.socks5_addr.unwrap();
    let (code, mut s) = bounded(
        "socks",
        socks5_connect(proxy, Target::V4([127, 0, 0, 1], closed_port())),
    )
    .await;
    assert_ne!(code, 0, "a refused connection must not get a success reply");
    assert_eq!(code, 4);
    let mut rest = Vec::new();
    bounded("close", s.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    // The same session still carries new channels.
    let echo = echo_server("127.0.0.1:0").await;
    let (code, s) = bounded(
        "socks",
        socks5_connect(proxy, Target::V4([127, 0, 0, 1], echo.port())),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        bounded("echo", round_trip(s, b"still alive")).await,
        b"still alive"
    );
}

#[tokio::test]
async fn socks5_bind_is_not_supported_and_udp_associate_is() {
    let server = start_server().await;
    let client = start_client(&server).await;
    let proxy = client.socks5_addr.unwrap();
    // UDP ASSOCIATE succeeds (e2e_udp carries datagrams through it).
    for (cmd, want) in [(2u8, 7u8), (3u8, 0u8)] {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await.unwrap();
        s.write_all(&[5, cmd, 0, 1, 127, 0, 0, 1, 0, 80])
            .await
            .unwrap();
        let code = bounded("reply", read_reply(&mut s)).await;
        assert_eq!(code, want, "command {cmd}");
    }
}

#[tokio::test]
async fn socks5_garbage_is_closed_and_listener_survives() {
    let server = start_server().await;
    let client = start_client(&server).await;
    let proxy = client.socks5_addr.unwrap();
    // An HTTP request where a SOCKS greeting belongs.
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    bounded("close", s.read_to_end(&mut rest)).await.unwrap();
    assert!(
        rest.len() <= 10,
        "no data after a garbage greeting: {rest:?}"
    );
    // A client offering only username/password gets 0xFF.
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[5, 1, 2]).await.unwrap();
    let mut m = [0u8; 2];
    bounded("reply", s.read_exact(&mut m)).await.unwrap();
    assert_eq!(m, [5, 0xff]);
    // Still serving.
    let echo = echo_server("127.0.0.1:0").await;
    let (code, s) = bounded(
        "socks",
        socks5_connect(proxy, Target::V4([127, 0, 0, 1], echo.port())),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(bounded("echo", round_trip(s, b"ok")).await, b"ok");
}

/// A source that sends `len` deterministic pseudo-random bytes, then closes.
async fn source_server(len: usize) -> (SocketAddr, [u8; 32]) {
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let digest: [u8; 32] = Sha256::digest(&data).into();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let _ = s.write_all(&data).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, digest)
}

#[tokio::test]
async fn local_forward_carries_20_mb_with_matching_sha256() {
    let server = start_server().await;
    let (src, digest) = source_server(20 * 1024 * 1024).await;
    let mut opts = client_options(&server);
    opts.socks5 = None;
    opts.forwards = vec![
        format!("0:127.0.0.1:{}", src.port())
            .parse::<LocalForwardSpec>()
            .unwrap(),
    ];
    let client = bounded("connect", Client::connect(opts)).await.unwrap();
    let wraith_core::client::BoundAddr::Tcp(local) = client.forwards[0].local.clone() else {
        panic!("expected a TCP forward");
    };
    let mut s = TcpStream::connect(local).await.unwrap();
    let mut got = Vec::new();
    bounded("20 MB", s.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got.len(), 20 * 1024 * 1024);
    let d: [u8; 32] = Sha256::digest(&got).into();
    assert_eq!(d, digest);

    // And upload: 20 MB to an echo server through the same forward kind.
    let echo = echo_server("127.0.0.1:0").await;
    let mut opts = client_options(&server);
    opts.socks5 = None;
    opts.forwards = vec![format!("0:127.0.0.1:{}", echo.port()).parse().unwrap()];
    let client2 = bounded("connect", Client::connect(opts)).await.unwrap();
    let wraith_core::client::BoundAddr::Tcp(local) = client2.forwards[0].local.clone() else {
        panic!("expected a TCP forward");
    };
    let s = TcpStream::connect(local).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let payload: Vec<u8> = (0..20 * 1024 * 1024)
        .map(|i: usize| (i * 31 % 251) as u8)
        .collect();
    let want: [u8; 32] = Sha256::digest(&payload).into();
    let writer = tokio::spawn(async move {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    bounded("20 MB echo", r.read_to_end(&mut got))
        .await
        .unwrap();
    writer.await.unwrap();
    let d: [u8; 32] = Sha256::digest(&got).into();
    assert_eq!(d, want);
    drop(client);
}

#[tokio::test]
async fn remote_forward_reaches_client_side_service() {
    let server = start_server().await;
    let echo = echo_server("127.0.0.1:0").await;
    let mut opts = client_options(&server);
    opts.socks5 = None;
    opts.remote_forwards = vec![
        format!("0:127.0.0.1:{}", echo.port())
            .parse::<RemoteForwardSpec>()
            .unwrap(),
    ];
    let client = bounded("connect", Client::connect(opts)).await.unwrap();
    let port = client.remote_forwards[0].remote_port;
    assert_ne!(port, 0, "the server must report the port it chose");
    let s = bounded(
        "connect remote port",
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .unwrap();
    assert_eq!(
        bounded("echo", round_trip(s, b"from the server side")).await,
        b"from the server side"
    );
}

#[tokio::test]
async fn remote_forward_listener_closes_with_its_session() {
    let server = start_server().await;
    let echo = echo_server("127.0.0.1:0").await;
    let mut opts = client_options(&server);
    opts.socks5 = None;
    opts.remote_forwards = vec![format!("0:127.0.0.1:{}", echo.port()).parse().unwrap()];
    let client = bounded("connect", Client::connect(opts)).await.unwrap();
    let port = client.remote_forwards[0].remote_port;
    drop(client);
    // Once the session is gone the port is free again: bind it ourselves.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {port} still bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
#[tokio::test]
async fn local_forward_to_unix_socket_on_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let l = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    // Unix sockets are off by default: allow the test's directory.
    let allow = format!("{}/", dir.path().display());
    let server = start_server_with(|o| {
        o.allow_stream_local =
            vec![wraith_core::server::policy::SocketRule::parse(&allow).unwrap()];
    })
    .await;
    let mut opts = client_options(&server);
    opts.socks5 = None;
    opts.forwards = vec![format!("0:{}", path.display()).parse().unwrap()];
    let client = bounded("connect", Client::connect(opts)).await.unwrap();
    let wraith_core::client::BoundAddr::Tcp(local) = client.forwards[0].local.clone() else {
        panic!("expected a TCP listener");
    };
    let s = TcpStream::connect(local).await.unwrap();
    assert_eq!(
        bounded("echo", round_trip(s, b"over streamlocal")).await,
        b"over streamlocal"
    );
}

#[tokio::test]
async fn unauthorized_key_is_rejected() {
    let server = start_server().await;
    let mut opts = client_options(&server);
    opts.identity = keys::generate_ed25519("stranger").unwrap();
    let err = match bounded("connect", Client::connect(opts)).await {
        Ok(_) => panic!("an unknown key must not log in"),
        Err(e) => e,
    };
    assert!(
        matches!(err, wraith_core::Error::AuthRejected { .. }),
        "{err}"
    );
    assert!(err.is_fatal());
    assert!(err.to_string().contains("did not accept the key"), "{err}");
}

#[tokio::test]
async fn wrong_pinned_host_key_fails_the_connection() {
    let server = start_server().await;
    let mut opts = client_options(&server);
    let other = keys::generate_ed25519("impostor").unwrap();
    opts.host_key = wraith_core::client::HostKeyPolicy::Pin(HostKeyPin::Fingerprint(
        keys::fingerprint(other.public_key()),
    ));
    let err = match bounded("connect", Client::connect(opts)).await {
        Ok(_) => panic!("a wrong host key must fail"),
        Err(e) => e,
    };
    assert!(matches!(err, wraith_core::Error::HostKey { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&keys::fingerprint(server.host_key.public_key())),
        "{err}"
    );
}

#[tokio::test]
async fn socks5_port_in_use_is_a_clear_startup_error() {
    let server = start_server().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut opts = client_options(&server);
    opts.socks5 = Some(taken.local_addr().unwrap().to_string());
    let err = match bounded("connect", Client::connect(opts)).await {
        Ok(_) => panic!("binding a taken port must fail"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("--socks5"), "{err}");
}

#[tokio::test]
async fn many_concurrent_channels_share_one_session() {
    let server = start_server().await;
    let client = start_client(&server).await;
    let echo = echo_server("127.0.0.1:0").await;
    let proxy = client.socks5_addr.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        tasks.push(tokio::spawn(async move {
            let (code, s) = socks5_connect(proxy, Target::V4([127, 0, 0, 1], echo.port())).await;
            assert_eq!(code, 0);
            let msg = format!("channel {i}");
            assert_eq!(round_trip(s, msg.as_bytes()).await, msg.as_bytes());
        }));
    }
    for t in tasks {
        bounded("channel", t).await.unwrap();
    }
}

#[tokio::test]
async fn channels_over_the_session_cap_are_refused_until_one_closes() {
    let server = start_server_with(|o| o.max_channels_per_session = 2).await;
    let client = start_client(&server).await;
    let echo = echo_server("127.0.0.1:0").await;
    let proxy = client.socks5_addr.unwrap();
    let target = || Target::V4([127, 0, 0, 1], echo.port());
    let (c1, s1) = bounded("socks", socks5_connect(proxy, target())).await;
    let (c2, s2) = bounded("socks", socks5_connect(proxy, target())).await;
    assert_eq!((c1, c2), (0, 0));
    let (c3, _s3) = bounded("socks", socks5_connect(proxy, target())).await;
    assert_eq!(c3, 1, "the third channel must be refused (general failure)");
    // Closing one frees its slot.
    assert_eq!(bounded("echo", round_trip(s1, b"bye")).await, b"bye");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (code, s) = bounded("socks", socks5_connect(proxy, target())).await;
        if code == 0 {
            assert_eq!(bounded("echo", round_trip(s, b"again")).await, b"again");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(s2);
}
