//! The NATS hub backend as an embedder uses it: two in-process
//! [`EventHub`]s joined to one real `nats-server` with [`NatsHub::attach`].
//! Events cross between them with the sender kept, never come back to the
//! hub that sent them, and stop crossing once the `NatsHub` is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "nats")]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use wraith_core::proto::frame::Frame;
use wraith_core::server::{EventHub, NatsHub, NatsHubOptions};

const WAIT: Duration = Duration::from_secs(20);

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `nats-server` on a free loopback port, or `None` (skip) when it is not
/// installed outside CI.
fn broker() -> Option<(Broker, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = match Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: cannot run nats-server ({e}); with CI=true this is a failure");
            return None;
        }
        Err(e) => panic!("nats-server is required under CI: {e}"),
    };
    let b = Broker(child);
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((b, port))
}

async fn connected(n: &NatsHub) {
    tokio::time::timeout(WAIT, async {
        while !n.is_connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("connected to nats-server");
}

#[tokio::test]
async fn two_hubs_share_events_through_a_broker() {
    let Some((_broker, port)) = broker() else {
        return;
    };
    let options = NatsHubOptions::parse(&format!("127.0.0.1:{port}"))
        .unwrap()
        .with_prefix("embed")
        .unwrap();
    let (a, b) = (EventHub::default(), EventHub::default());
    let nats_a = NatsHub::attach(&a, &options).await.unwrap();
    let nats_b = NatsHub::attach(&b, &options).await.unwrap();
    connected(&nats_a).await;
    connected(&nats_b).await;
    assert!(a.has_backend() && b.has_backend());

    let on_a = a.join("rx-a");
    on_a.subscribe("*").unwrap();
    let alice = b.join_as("alice", "SHA256:alice");
    let on_b = b.join("rx-b");
    on_b.subscribe("*").unwrap();

    // The subscriptions reach the broker in the background: publish until
    // the first event crosses (bounded).
    let got = tokio::time::timeout(WAIT, async {
        loop {
            alice
                .publish(&Frame::new("t", "1", json!({"x": 1})))
                .unwrap();
            if let Ok(f) = tokio::time::timeout(Duration::from_millis(200), on_a.recv()).await {
                return f.unwrap();
            }
        }
    })
    .await
    .expect("an event crossed");
    assert_eq!(got.kind, "t");
    assert_eq!(got.sender.as_deref(), Some("SHA256:alice"));
    // A's server-side publish reaches B, and A's own members once (here,
    // not again through the broker).
    a.publish(&Frame::new("from-a", "2", json!(null))).unwrap();
    let seen_b = tokio::time::timeout(WAIT, async {
        loop {
            let f = on_b.recv().await.unwrap();
            if f.kind == "from-a" {
                return f;
            }
        }
    })
    .await
    .expect("A's event reached B");
    assert_eq!(seen_b.sender, None);
    let local = tokio::time::timeout(WAIT, async {
        loop {
            let f = on_a.recv().await.unwrap();
            if f.kind == "from-a" {
                return f;
            }
        }
    })
    .await
    .expect("A's members get A's event locally");
    assert_eq!(local.id, "2");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                let f = on_a.recv().await.unwrap();
                if f.kind == "from-a" {
                    return f;
                }
            }
        })
        .await
        .is_err(),
        "A's own event came back to A through the broker"
    );
    assert!(nats_b.stats().sent >= 1 && nats_a.stats().received >= 1);
    assert_eq!(nats_a.stats().refused, 0);

    // Detached: A goes on locally, nothing crosses any more.
    drop(nats_a);
    assert!(!a.has_backend());
    alice
        .publish(&Frame::new("late", "3", json!(null)))
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                if on_a.recv().await.unwrap().kind == "late" {
                    return;
                }
            }
        })
        .await
        .is_err(),
        "an event crossed after the NatsHub was dropped"
    );
    drop(nats_b);
}
