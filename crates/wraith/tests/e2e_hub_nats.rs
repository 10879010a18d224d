//! End to end: two `wraith serve` processes share their event hub through
//! a real `nats-server` (`--hub`). A control channel on server A, opened by
//! a real OpenSSH client (`ssh -W wraith-control:1`), gets the events
//! published on server B byte for byte, never its own; `__unsubscribe`
//! stops delivery across servers. When the broker dies each server goes on
//! delivering locally and says so once; when it is back, events cross
//! servers again without restarting wraith.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "nats")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::control::{Peer, envelope, relayed};
use common::*;

/// A `nats-server` on a fixed loopback port that needs a user and password.
struct Broker {
    port: u16,
    extra: Vec<String>,
    process: Option<WraithProcess>,
}

const NATS_USER: &str = "wraith";
/// A word that must never reach a log.
const NATS_PASSWORD: &str = "pw-k3v9q";

impl Broker {
    fn start() -> Broker {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Broker {
        let mut b = Broker {
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            process: None,
        };
        b.restart();
        b
    }

    fn restart(&mut self) {
        let mut cmd = Command::new(find_tool("nats-server").expect("nats-server"));
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--user", NATS_USER, "--pass", NATS_PASSWORD])
            .args(&self.extra);
        let p = WraithProcess::spawn_command(cmd);
        p.wait_for_port(("127.0.0.1", self.port), TIMEOUT);
        self.process = Some(p);
    }

    fn kill(&mut self) {
        if let Some(p) = self.process.take() {
            p.kill();
        }
    }

    fn url(&self) -> String {
        format!("nats://{NATS_USER}:{NATS_PASSWORD}@127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server on the broker, its hub under `prefix`; the URL (with its
/// password) is passed in the environment, as the help text advises.
fn serve(dir: &Path, authorized_keys: &Path, broker: &Broker, prefix: &str) -> WraithServer {
    serve_with(
        dir,
        authorized_keys,
        &broker.url(),
        &["--hub-prefix", prefix],
    )
}

fn serve_with(dir: &Path, authorized_keys: &Path, url: &str, extra: &[&str]) -> WraithServer {
    let s = WraithServer::start_with_file(
        dir,
        authorized_keys.to_path_buf(),
        extra,
        &[("WRAITH_HUB", url)],
    );
    s.process
        .wait_for_stderr(&["event hub connected to NATS"], TIMEOUT);
    s
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client key with the `hub` option in an authorized_keys file, and the
/// fingerprint the hub stamps on its events.
struct Keys {
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
    ak: std::path::PathBuf,
    sender: String,
}

/// [`Keys`], or `None` (skip) when ssh, ssh-keygen, nats-server or one of
/// `more` is missing outside CI.
fn hub_keys(more: &[&str]) -> Option<Keys> {
    let tools: Vec<&str> = ["ssh", "ssh-keygen", "nats-server"]
        .iter()
        .chain(more)
        .copied()
        .collect();
    if !require_tools(&tools) {
        return None;
    }
    let dir = temp_dir();
    let key = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    std::fs::write(&ak, format!("hub {}\n", public_key_line(&key))).unwrap();
    let sender = fingerprint(&key);
    Some(Keys {
        dir,
        key,
        ak,
        sender,
    })
}

fn count(server: &WraithServer, needle: &str) -> usize {
    server.process.stderr_text().matches(needle).count()
}

#[test]
fn events_cross_servers_through_nats_and_survive_a_broker_restart() {
    let Some(Keys {
        dir,
        key,
        ak,
        sender,
    }) = hub_keys(&[])
    else {
        return;
    };
    let mut broker = Broker::start();
    let prefix = format!("t{}", std::process::id());
    let a = serve(dir.path(), &ak, &broker, &prefix);
    let b = serve(dir.path(), &ak, &broker, &prefix);
    let ssh_a = OpenSsh::new(dir.path(), a.addr, &a.host_key, &key);
    let ssh_b = OpenSsh::new(dir.path(), b.addr, &b.host_key, &key);

    let mut sub_a = Peer::start(&ssh_a, "wraith-control:1", "subscriber on A");
    let mut pub_b = Peer::start(&ssh_b, "wraith-control:1", "publisher on B");
    sub_a.subscribe("*", "s1");
    pub_b.subscribe("*", "p1");
    // Both servers have their NATS subscription from the start, so the
    // first event already crosses.
    let event = frame_text(
        r#"{"type":"chat","id":"evt-5m2w","payload":{"text":"héllo ✓","n":[1,2]},"sender":"SHA256:forged"}"#,
    );
    pub_b.send(&event);
    assert_eq!(
        sub_a.next_frame().as_deref(),
        Some(
            relayed(
                "chat",
                "evt-5m2w",
                r#"{"n":[1,2],"text":"héllo ✓"}"#,
                &sender
            )
            .as_str()
        ),
        "the subscriber on A got a different frame"
    );

    // A publishes: B's channel gets it; A's own channel must not (an echo
    // through the broker would arrive before B's answer below).
    sub_a.send(&envelope("ping", "from-a", "null"));
    pub_b.expect_frame(&relayed("ping", "from-a", "null", &sender));
    pub_b.send(&envelope("pong", "from-b", "null"));
    sub_a.expect_frame(&relayed("pong", "from-b", "null", &sender));

    // __unsubscribe on A stops delivery from B.
    sub_a.unsubscribe("*", "s2");
    sub_a.subscribe("marker", "s3");
    pub_b.send(&envelope("chat", "after-unsub", "2"));
    pub_b.send(&envelope("marker", "m1", "null"));
    sub_a.expect_frame(&relayed("marker", "m1", "null", &sender));

    // The broker dies: each server says so once and delivers locally.
    broker.kill();
    for (name, s) in [("A", &a), ("B", &b)] {
        eventually(&format!("{name} to notice the broker is gone"), || {
            count(s, "event hub lost NATS") == 1
        });
    }
    let mut pub_a = Peer::start(&ssh_a, "wraith-control:1", "publisher on A");
    pub_a.send(&envelope("marker", "local-a", "null"));
    sub_a.expect_frame(&relayed("marker", "local-a", "null", &sender));
    let mut sub_b = Peer::start(&ssh_b, "wraith-control:1", "subscriber on B");
    sub_b.subscribe("marker", "b1");
    pub_b.send(&envelope("marker", "local-b", "null"));
    sub_b.expect_frame(&relayed("marker", "local-b", "null", &sender));

    // Back: both reconnect by themselves, and events cross again.
    broker.restart();
    for (name, s) in [("A", &a), ("B", &b)] {
        eventually(&format!("{name} to reconnect to the broker"), || {
            count(s, "event hub reconnected to NATS") == 1
        });
    }
    // The client sends its subscriptions again right after it reconnects;
    // give that a moment to reach the broker.
    std::thread::sleep(Duration::from_secs(1));
    pub_b.send(&envelope("marker", "crossed-again", "1"));
    sub_a.expect_frame(&relayed("marker", "crossed-again", "1", &sender));
    // (B's own subscriber gets it too, locally.)
    sub_b.expect_frame(&relayed("marker", "crossed-again", "1", &sender));
    pub_a.send(&envelope("marker", "a-to-b", "null"));
    sub_b.expect_frame(&relayed("marker", "a-to-b", "null", &sender));

    for (name, s) in [("A", &a), ("B", &b)] {
        let log = s.process.stderr_text();
        assert_eq!(count(s, "event hub lost NATS"), 1, "{name}:\n{log}");
        for secret in [NATS_PASSWORD, "héllo", "evt-5m2w", "crossed-again"] {
            assert!(
                !log.contains(secret),
                "{name}'s log mentions {secret:?}:\n{log}"
            );
        }
    }
}

/// `body` with its length prefix.
fn frame_text(body: &str) -> Vec<u8> {
    common::control::frame(body)
}

#[test]
fn a_broker_that_is_down_at_start_does_not_stop_the_server() {
    let Some(Keys {
        dir,
        key,
        ak,
        sender,
    }) = hub_keys(&[])
    else {
        return;
    };
    let mut broker = Broker::start();
    broker.kill();
    let url = broker.url();
    let a =
        WraithServer::start_with_file(dir.path(), ak.clone(), &[], &[("WRAITH_HUB", url.as_str())]);
    a.process
        .wait_for_stderr(&["event hub cannot reach NATS"], TIMEOUT);
    let ssh_a = OpenSsh::new(dir.path(), a.addr, &a.host_key, &key);
    let mut sub = Peer::start(&ssh_a, "wraith-control:1", "subscriber");
    let mut publ = Peer::start(&ssh_a, "wraith-control:1", "publisher");
    sub.subscribe("t", "s");
    publ.send(&envelope("t", "local", "null"));
    sub.expect_frame(&relayed("t", "local", "null", &sender));

    broker.restart();
    a.process
        .wait_for_stderr(&["event hub connected to NATS"], TIMEOUT);
    let b = serve(dir.path(), &ak, &broker, "wraith");
    let ssh_b = OpenSsh::new(dir.path(), b.addr, &b.host_key, &key);
    let mut pub_b = Peer::start(&ssh_b, "wraith-control:1", "publisher on B");
    pub_b.send(&envelope("t", "from-b", "null"));
    sub.expect_frame(&relayed("t", "from-b", "null", &sender));
    assert!(!a.process.stderr_text().contains(NATS_PASSWORD));
}

#[test]
fn the_broker_connection_can_be_tls() {
    let Some(Keys {
        dir,
        key: client,
        ak,
        sender,
    }) = hub_keys(&["openssl"])
    else {
        return;
    };
    let certs = make_certs(dir.path(), "nats");
    let (cert, key, ca) = (
        certs.cert.to_str().unwrap(),
        certs.key.to_str().unwrap(),
        certs.ca.to_str().unwrap(),
    );
    let broker = Broker::start_with(&["--tls", "--tlscert", cert, "--tlskey", key]);
    let url = format!(
        "tls://{NATS_USER}:{NATS_PASSWORD}@localhost:{}",
        broker.port
    );
    let a = serve_with(dir.path(), &ak, &url, &["--hub-ca", ca]);
    let b = serve_with(dir.path(), &ak, &url, &["--hub-ca", ca]);
    let mut sub = Peer::start(
        &OpenSsh::new(dir.path(), a.addr, &a.host_key, &client),
        "wraith-control:1",
        "subscriber on A",
    );
    let mut publ = Peer::start(
        &OpenSsh::new(dir.path(), b.addr, &b.host_key, &client),
        "wraith-control:1",
        "publisher on B",
    );
    sub.subscribe("t", "s");
    publ.send(&envelope("t", "over-tls", "null"));
    sub.expect_frame(&relayed("t", "over-tls", "null", &sender));

    // Without the CA the broker's certificate is not trusted: the server
    // runs, says it cannot reach the broker, and keeps events local.
    let c =
        WraithServer::start_with_file(dir.path(), ak.clone(), &[], &[("WRAITH_HUB", url.as_str())]);
    c.process
        .wait_for_stderr(&["event hub cannot reach NATS"], TIMEOUT);
}

#[test]
fn bad_hub_options_fail_in_one_line_without_the_password() {
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let client = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&client]);
    let (host, ak) = (host.to_str().unwrap(), ak.to_str().unwrap());
    let base = ["serve", "--key", host, "--authorized-keys", ak];
    for (extra, flag, needle) in [
        (
            &["--hub", "http://u:secret@127.0.0.1:1"][..],
            "--hub",
            "nats://",
        ),
        (
            &["--hub", "nats://127.0.0.1:1", "--hub-prefix", "a.*"][..],
            "--hub-prefix",
            "letters",
        ),
        (
            &["--hub", "nats://127.0.0.1:1", "--hub-creds", "/nonexistent"][..],
            "--hub-creds",
            "/nonexistent",
        ),
        (&["--hub-prefix", "p"][..], "--hub", "--hub-prefix"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = run(wraith_command(&args), TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?}: {err}");
        assert!(
            err.contains(flag) && err.contains(needle),
            "{extra:?}: {err}"
        );
        assert!(!err.contains("secret"), "{err}");
        assert!(
            err.lines().filter(|l| l.starts_with("error")).count() == 1,
            "{err}"
        );
    }
}
