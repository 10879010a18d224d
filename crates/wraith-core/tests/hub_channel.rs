//! The control channel end to end in one process: `open_channel` to
//! `wraith-control:0` over a real SSH session, meeting the server's hub and a
//! server-side member joined through `Server::hub()`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wraith_core::client::{ChannelConnection, ConnectOptions, HostKeyPolicy, open_channel};
use wraith_core::keys::{self, HostKeyPin};
use wraith_core::proto::frame::{Frame, FrameDecoder};
use wraith_core::server::{AuthorizedKeys, EventHub, ServeOptions, Server};
use wraith_core::transport::{TcpAcceptor, TcpTransport};

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    hub: EventHub,
    user_fingerprint: String,
    options: Box<dyn Fn() -> ConnectOptions>,
    _task: tokio::task::JoinHandle<()>,
}

async fn setup() -> Setup {
    let host_key = keys::generate_ed25519("host").unwrap();
    let user_key = keys::generate_ed25519("user").unwrap();
    // The hub is opt-in per key.
    let line = format!("hub {}", user_key.public_key().to_openssh().unwrap());
    let (authorized, warnings) = AuthorizedKeys::parse(&line);
    assert!(warnings.is_empty(), "{warnings:?}");
    let acceptor = TcpAcceptor::bind("127.0.0.1:0").await.unwrap();
    let port = acceptor.local_addr().port();
    let server = Server::new(ServeOptions::new(host_key.clone(), authorized));
    let hub = server.hub().clone();
    let task = tokio::spawn(async move {
        let _ = server.run(acceptor, std::future::pending()).await;
    });
    let pin = keys::fingerprint(host_key.public_key());
    let user_fp = keys::fingerprint(user_key.public_key());
    let options = Box::new(move || {
        let transport = Arc::new(TcpTransport::new("127.0.0.1", port));
        let mut o = ConnectOptions::new(transport, "127.0.0.1", port, "tester", user_key.clone());
        o.host_key = HostKeyPolicy::Pin(HostKeyPin::Fingerprint(pin.clone()));
        o.connect_timeout = Duration::from_secs(10);
        o
    });
    Setup {
        hub,
        user_fingerprint: user_fp,
        options,
        _task: task,
    }
}

async fn next(conn: &mut ChannelConnection, dec: &mut FrameDecoder) -> Option<Frame> {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(f) = dec.next_frame().unwrap() {
            return Some(f.frame);
        }
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("a frame in time")
            .unwrap();
        if n == 0 {
            return None;
        }
        dec.push(&buf[..n]);
    }
}

#[tokio::test]
async fn control_channel_on_port_zero_joins_the_servers_hub() {
    let s = setup().await;
    let server_side = s.hub.join("embedder");
    server_side.subscribe("up").unwrap();

    let mut conn = tokio::time::timeout(WAIT, open_channel((s.options)(), "wraith-control", 0))
        .await
        .unwrap()
        .unwrap();
    let mut dec = FrameDecoder::new();
    let sub = Frame::new("__subscribe", "1", json!("down"));
    conn.write_all(&sub.encode().unwrap()).await.unwrap();
    assert_eq!(
        next(&mut conn, &mut dec).await.unwrap(),
        Frame::new("__subscribed", "1", json!("down"))
    );

    let down = Frame::new("down", "d", json!({"x": 1}));
    assert_eq!(s.hub.publish(&down).unwrap(), 1);
    assert_eq!(next(&mut conn, &mut dec).await.unwrap(), down);

    let up = Frame::new("up", "u", json!([true]));
    conn.write_all(&up.encode().unwrap()).await.unwrap();
    let got = tokio::time::timeout(WAIT, server_side.recv())
        .await
        .unwrap();
    // The hub stamps who sent it: the key the channel's session logged in with.
    let mut stamped = up.clone();
    stamped.sender = Some(s.user_fingerprint.clone());
    assert_eq!(got.unwrap(), stamped);

    conn.shutdown().await.unwrap();
    assert_eq!(next(&mut conn, &mut dec).await, None);
}

#[tokio::test]
async fn unknown_reserved_names_are_refused_with_a_clear_error() {
    let s = setup().await;
    for (host, port) in [("wraith-control", 7), ("wraith-nothing", 0)] {
        let err = open_channel((s.options)(), host, port).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("cannot open a channel to {host}:{port}"))
                && msg.contains("refused"),
            "{msg}"
        );
    }
    assert_eq!(s.hub.member_count(), 0);
}
