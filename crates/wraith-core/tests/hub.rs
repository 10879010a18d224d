//! The event hub as an embedder sees it: control channels served over
//! in-memory streams with `EventHub::serve_stream`, and server-side members
//! joined with `EventHub::join`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use wraith_core::proto::frame::{Frame, FrameDecoder};
use wraith_core::server::EventHub;

const WAIT: Duration = Duration::from_secs(10);

/// A client end of a control channel served by `hub`.
fn channel(hub: &EventHub) -> (DuplexStream, tokio::task::JoinHandle<String>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let hub = hub.clone();
    let task = tokio::spawn(async move {
        match hub.serve_stream(server, "test").await {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    });
    (client, task)
}

async fn read_frame(stream: &mut DuplexStream, decoder: &mut FrameDecoder) -> Option<Frame> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = decoder.next_frame().expect("valid frame from hub") {
            return Some(f.frame);
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("frame within the deadline")
            .expect("read");
        if n == 0 {
            return None;
        }
        decoder.push(&buf[..n]);
    }
}

#[tokio::test]
async fn embedder_and_channel_exchange_events_through_the_hub() {
    let hub = EventHub::default();
    let server_side = hub.join("embedder");
    server_side.subscribe("from-client").unwrap();

    let (mut client, task) = channel(&hub);
    let mut dec = FrameDecoder::new();
    let sub = Frame::new("__subscribe", "1", json!("from-server"));
    client.write_all(&sub.encode().unwrap()).await.unwrap();
    let ack = read_frame(&mut client, &mut dec).await.unwrap();
    assert_eq!(ack, Frame::new("__subscribed", "1", json!("from-server")));

    let down = Frame::new("from-server", "a", json!({"k": [1, 2]}));
    assert_eq!(hub.publish(&down).unwrap(), 1);
    assert_eq!(read_frame(&mut client, &mut dec).await.unwrap(), down);

    let up = Frame::new("from-client", "b", json!("hi"));
    client.write_all(&up.encode().unwrap()).await.unwrap();
    let got = tokio::time::timeout(WAIT, server_side.recv())
        .await
        .unwrap();
    assert_eq!(got.unwrap(), up);

    client.shutdown().await.unwrap();
    assert_eq!(read_frame(&mut client, &mut dec).await, None);
    assert_eq!(task.await.unwrap(), "ok");
    assert_eq!(hub.member_count(), 1, "the channel left the hub");
}

#[tokio::test]
async fn a_malformed_frame_ends_only_its_channel_with_a_reason() {
    let hub = EventHub::default();
    let (mut good, _good_task) = channel(&hub);
    let (mut bad, bad_task) = channel(&hub);
    let mut dec = FrameDecoder::new();
    let sub = Frame::new("__subscribe", "", json!("*"));
    good.write_all(&sub.encode().unwrap()).await.unwrap();
    read_frame(&mut good, &mut dec).await.unwrap();

    // A string payload is required for __subscribe.
    let wrong = Frame::new("__subscribe", "", json!(5));
    bad.write_all(&wrong.encode().unwrap()).await.unwrap();
    let mut bad_dec = FrameDecoder::new();
    let note = read_frame(&mut bad, &mut bad_dec).await.unwrap();
    assert_eq!(note.kind, "__error");
    assert!(note.payload.as_str().unwrap().contains("string payload"));
    assert_eq!(read_frame(&mut bad, &mut bad_dec).await, None);
    assert!(bad_task.await.unwrap().contains("string payload"));

    let ev = Frame::new("t", "", json!(null));
    assert_eq!(hub.publish(&ev).unwrap(), 1);
    assert_eq!(read_frame(&mut good, &mut dec).await.unwrap(), ev);
}
