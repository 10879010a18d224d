//! Whole client ↔ server sessions over the in-memory transport, under
//! paused time: keepalives, reconnect backoff and timeouts that take
//! minutes on a real clock run here in milliseconds, and the path can be
//! made to fail in ways loopback cannot (a route that goes silent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use wraith_core::client::{
    ChannelConnection, Client, ClientState, ConnectOptions, HostKeyPolicy, ServerEndpoint,
    open_channel,
};
use wraith_core::keys::{self, HostKeyPin, ssh_key::PrivateKey};
use wraith_core::proto::frame::{Frame, FrameDecoder};
use wraith_core::server::{AuthorizedKeys, ServeOptions, Server};
use wraith_core::transport::memory::MemoryNet;

/// A hang guard in virtual time (paused time runs ahead when idle).
const BOUND: Duration = Duration::from_secs(600);

struct Setup {
    net: MemoryNet,
    host_key: PrivateKey,
    user_key: PrivateKey,
}

impl Setup {
    fn new() -> Self {
        Setup {
            net: MemoryNet::new(),
            host_key: keys::generate_ed25519("host").unwrap(),
            user_key: keys::generate_ed25519("user").unwrap(),
        }
    }

    /// A server listening on the net (replacing any earlier listener); the
    /// task serves until dropped. Every key may use the hub.
    fn serve(&self) -> tokio::task::JoinHandle<()> {
        self.serve_on(&self.net, &self.host_key)
    }

    /// The same on another network, with another host key if need be.
    fn serve_on(&self, net: &MemoryNet, host_key: &PrivateKey) -> tokio::task::JoinHandle<()> {
        let line = format!("hub {}", self.user_key.public_key().to_openssh().unwrap());
        let (authorized, warnings) = AuthorizedKeys::parse(&line);
        assert!(warnings.is_empty(), "{warnings:?}");
        let server = Server::new(ServeOptions::new(host_key.clone(), authorized));
        let acceptor = net.listen();
        tokio::spawn(async move {
            let _ = server.run(acceptor, std::future::pending()).await;
        })
    }

    fn options(&self) -> ConnectOptions {
        let transport = std::sync::Arc::new(self.net.transport());
        let mut o = ConnectOptions::new(transport, "memory", 22, "tester", self.user_key.clone());
        let pin = keys::fingerprint(self.host_key.public_key());
        o.host_key = HostKeyPolicy::Pin(HostKeyPin::Fingerprint(pin));
        o.socks5 = None;
        o.keepalive_interval = Duration::from_secs(15);
        o.keepalive_count_max = 3;
        o
    }
}

async fn wait_state(
    state: &mut watch::Receiver<ClientState>,
    what: &str,
    f: impl Fn(&ClientState) -> bool,
) -> ClientState {
    let seen = tokio::time::timeout(BOUND, state.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("no {what} within {BOUND:?} (virtual)"))
        .unwrap();
    seen.clone()
}

fn is_reconnecting(s: &ClientState) -> bool {
    matches!(s, ClientState::Reconnecting { .. })
}

/// A frame round trip through the server's hub: proof that a session is
/// up and carries channels.
async fn hub_round_trip(setup: &Setup) {
    let mut a = open_channel(setup.options(), "wraith-control", 0)
        .await
        .unwrap();
    let mut b = open_channel(setup.options(), "wraith-control", 0)
        .await
        .unwrap();
    let mut dec = FrameDecoder::new();
    let subscribe = Frame::new("__subscribe", "1", serde_json::json!("t"));
    b.write_all(&subscribe.encode().unwrap()).await.unwrap();
    // The subscription is acknowledged before anything is published.
    assert_eq!(
        next(&mut b, &mut dec).await,
        Frame::new("__subscribed", "1", serde_json::json!("t"))
    );
    let event = Frame::new("t", "e", serde_json::json!({"n": 1}));
    a.write_all(&event.encode().unwrap()).await.unwrap();
    let got = next(&mut b, &mut dec).await;
    assert_eq!((got.kind.as_str(), &got.payload), ("t", &event.payload));
}

async fn next(conn: &mut ChannelConnection, dec: &mut FrameDecoder) -> Frame {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = dec.next_frame().unwrap() {
            return f.frame;
        }
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "control channel closed before a frame");
        dec.push(&buf[..n]);
    }
}

#[tokio::test(start_paused = true)]
async fn control_channels_meet_over_the_memory_transport() {
    let setup = Setup::new();
    let _server = setup.serve();
    tokio::time::timeout(BOUND, hub_round_trip(&setup))
        .await
        .expect("round trip");
}

#[tokio::test(start_paused = true)]
async fn a_silent_route_is_found_by_keepalives_and_the_client_reconnects() {
    let setup = Setup::new();
    let _server = setup.serve();
    let client = Client::connect(setup.options()).await.unwrap();
    let mut state = client.state();
    assert!(matches!(*state.borrow(), ClientState::Connected { .. }));

    // The route dies without a word: no RST, no FIN, just silence.
    setup.net.blackhole();
    let cut = Instant::now();
    wait_state(&mut state, "reconnect", is_reconnecting).await;
    let noticed = cut.elapsed();
    // Three unanswered keepalives 15 s apart: no sooner than 30 s (the
    // third is sent at 45 s at the latest, after the first at up to 15 s)
    // and no later than four intervals.
    assert!(
        noticed >= Duration::from_secs(30) && noticed <= Duration::from_secs(61),
        "dead route noticed after {noticed:?}"
    );

    // New connections are not cut: the client comes back by itself.
    wait_state(&mut state, "reconnected", |s| {
        matches!(s, ClientState::Connected { .. })
    })
    .await;
    let back = cut.elapsed() - noticed;
    assert!(back <= Duration::from_secs(5), "reconnected after {back:?}");
    tokio::time::timeout(BOUND, hub_round_trip(&setup))
        .await
        .expect("round trip after reconnecting");
}

#[tokio::test(start_paused = true)]
async fn a_closed_port_is_retried_with_backoff_until_the_server_returns() {
    let setup = Setup::new();
    let server = setup.serve();
    let client = Client::connect(setup.options()).await.unwrap();
    let mut state = client.state();

    // The server goes away for good: its listener closes and its
    // connections go silent.
    setup.net.close();
    setup.net.blackhole();
    server.abort();
    wait_state(&mut state, "reconnect", is_reconnecting).await;
    let down = Instant::now();
    // Refused dials back off 1, 2, 4, 8 s (less up to a fifth each): the
    // fifth attempt is scheduled 12 to 15 s after the first.
    let fifth = wait_state(&mut state, "fifth attempt", |s| {
        matches!(s, ClientState::Reconnecting { attempt: 5, .. })
    })
    .await;
    let ClientState::Reconnecting { delay, reason, .. } = fifth else {
        unreachable!()
    };
    assert!(reason.contains("refused"), "reason: {reason}");
    let waited = down.elapsed();
    assert!(
        waited >= Duration::from_secs(12) && waited <= Duration::from_secs(15),
        "fifth attempt after {waited:?}"
    );
    assert!(
        delay >= Duration::from_millis(12_800) && delay <= Duration::from_secs(16),
        "fifth delay {delay:?}"
    );

    // Back: the next attempt connects, and channels work again.
    let _server = setup.serve();
    wait_state(&mut state, "reconnected", |s| {
        matches!(s, ClientState::Connected { .. })
    })
    .await;
    assert!(down.elapsed() <= waited + delay + Duration::from_secs(1));
    tokio::time::timeout(BOUND, hub_round_trip(&setup))
        .await
        .expect("round trip after the server returned");
}

#[tokio::test(start_paused = true)]
async fn a_refused_dial_keeps_the_os_error_as_its_source() {
    let setup = Setup::new();
    let err = Client::connect(setup.options())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, wraith_core::Error::Transport { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot connect to memory: connection refused"
    );
    // Programs can still tell what happened underneath.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut kinds = Vec::new();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            kinds.push(io.kind());
        }
        cause = c.source();
    }
    assert_eq!(kinds, [std::io::ErrorKind::ConnectionRefused]);
}

fn in_use(s: &ClientState) -> Option<&str> {
    match s {
        ClientState::Connected { server } => Some(server),
        _ => None,
    }
}

/// Server A on the setup's network, B on another, same host key: the client
/// is given A first, then B.
fn two_servers(setup: &Setup) -> (MemoryNet, ConnectOptions) {
    let b = MemoryNet::new();
    let mut opts = setup.options();
    opts.fallback_servers = vec![ServerEndpoint {
        transport: std::sync::Arc::new(b.transport_named("memory-b")),
        host: "memory-b".into(),
        port: 22,
    }];
    (b, opts)
}

#[tokio::test(start_paused = true)]
async fn a_lost_server_fails_over_to_the_next_and_back() {
    let setup = Setup::new();
    let _a = setup.serve();
    let (b, opts) = two_servers(&setup);
    let _b = setup.serve_on(&b, &setup.host_key);
    let client = Client::connect(opts).await.unwrap();
    assert_eq!(client.server, "memory");
    let mut state = client.state();
    // A dies silently (nothing refuses, nothing answers): keepalives find
    // it, and the reconnect goes to B first, not to the dead A.
    setup.net.close();
    setup.net.blackhole();
    let lost = Instant::now();
    wait_state(&mut state, "a session on B", |s| {
        in_use(s) == Some("memory-b")
    })
    .await;
    let took = lost.elapsed();
    // Keepalives: 15 s x 3 (plus one interval to notice), then one backoff
    // step of about a second; no dial to A in between.
    assert!(took <= Duration::from_secs(15 * 4 + 2), "{took:?}");
    // A is back, B dies: the client returns to A.
    let _a2 = setup.serve();
    b.close();
    b.blackhole();
    wait_state(&mut state, "a session on A again", |s| {
        in_use(s) == Some("memory")
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_server_with_another_host_key_is_skipped_never_trusted() {
    let setup = Setup::new();
    let impostor = keys::generate_ed25519("impostor").unwrap();
    let _a = setup.serve_on(&setup.net, &impostor);
    let (b, opts) = two_servers(&setup);
    let _b = setup.serve_on(&b, &setup.host_key);
    let client = Client::connect(opts).await.unwrap();
    assert_eq!(client.server, "memory-b");
    assert_eq!(in_use(&client.state().borrow()), Some("memory-b"));
    // Only the impostor left: no session, and the refusal is fatal.
    let setup2 = Setup::new();
    let _only = setup2.serve_on(&setup2.net, &impostor);
    let (none, mut opts) = two_servers(&setup2);
    drop(none);
    opts.fallback_servers.clear();
    let err = Client::connect(opts).await.err().expect("refused");
    assert!(err.is_fatal(), "{err}");
}
