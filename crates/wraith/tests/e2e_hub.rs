//! The control channel and event hub against real OpenSSH clients:
//! `ssh -W wraith-control:1` (and `ssh -L` to it) talking to `wraith serve`.
//! OpenSSH refuses port 0 in `-W` and `-L` ("Bad stdio forwarding
//! specification"), so it reaches `wraith-control:0` through the server's
//! alias port 1; the Node package and wraith-core use port 0.
//! Frames are built and checked here by hand, independently of the codec in
//! wraith-core. Keys get the hub only with the `hub` option; events arrive
//! re-encoded with the publisher's key fingerprint as `"sender"`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::control::{Peer, envelope, frame, hub_frame, relayed};
use common::{
    OpenSsh, TIMEOUT, WraithServer, keygen, public_key_line, require_tool, require_tools, temp_dir,
};

struct Setup {
    dir: tempfile::TempDir,
    server: WraithServer,
    ssh: OpenSsh,
    /// The client key's fingerprint, as the hub stamps it.
    sender: String,
}

fn setup() -> Option<Setup> {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return None;
    }
    let dir = temp_dir();
    let (key, line) = restricted_key(dir.path(), "client", "hub");
    let server = start_with_lines(dir.path(), &line);
    let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, &key);
    let sender = common::fingerprint(&key);
    Some(Setup {
        dir,
        server,
        ssh,
        sender,
    })
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[test]
fn subscriber_receives_the_exact_frame_and_the_publisher_does_not() {
    let Some(s) = setup() else { return };
    let mut sub = Peer::start(&s.ssh, "wraith-control:1", "subscriber");
    let mut publ = Peer::start(&s.ssh, "wraith-control:1", "publisher");
    sub.subscribe("chat", "s1");
    publ.subscribe("*", "p1");

    // Odd spacing, key order and a forged sender: the hub passes type, id
    // and payload on and says itself who sent the event.
    let event = frame(
        r#"{ "payload": {"n": 1, "text": "héllo ✓"}, "sender": "SHA256:forged", "type": "chat", "id": "evt-q7zx" }"#,
    );
    publ.send(&event);
    let got = sub.next_frame().expect("subscriber got the event");
    assert_eq!(
        got,
        relayed("chat", "evt-q7zx", r#"{"n":1,"text":"héllo ✓"}"#, &s.sender),
        "the subscriber got a different frame"
    );

    // The hub handles one channel's frames in order, so anything echoed to
    // the publisher would arrive before this acknowledgement.
    publ.subscribe("other", "p2");

    // Unsubscribe: a later chat event does not arrive, a marker does.
    sub.unsubscribe("chat", "s2");
    sub.subscribe("marker", "s3");
    publ.send(&envelope("chat", "e2", "2"));
    publ.send(&envelope("marker", "m1", "null"));
    sub.expect_frame(&relayed("marker", "m1", "null", &s.sender));

    // EOF from a peer closes its channel in order; ssh then exits cleanly.
    drop(sub.stdin.take());
    assert_eq!(sub.next_frame(), None);
    assert!(sub.wait_exit().success());
    let log = s.server.process.stderr_text();
    // Only strings that cannot turn up by chance in base64 fingerprints.
    for secret in ["chat", "héllo", "marker", "evt-q7zx"] {
        assert!(
            !log.contains(secret),
            "server log mentions {secret:?}:\n{log}"
        );
    }
}

#[test]
fn oversize_frame_closes_only_that_channel() {
    let Some(s) = setup() else { return };
    // One ssh session, several control channels through a local forward.
    let port = common::free_port();
    let spec = format!("127.0.0.1:{port}:wraith-control:1");
    let forward = common::WraithProcess::spawn_command(s.ssh.command(&["-N", "-L", &spec], &[]));
    forward.wait_for_port(("127.0.0.1", port), TIMEOUT);

    let open = || common::connect(("127.0.0.1", port));
    let mut good = open();
    let mut bad = open();
    let mut third = open();

    good.write_all(&envelope("__subscribe", "g", "\"t\""))
        .unwrap();
    let ack = hub_frame("__subscribed", "g", "\"t\"");
    let mut buf = vec![0u8; 4 + ack.len()];
    good.read_exact(&mut buf).unwrap();
    assert_eq!(buf, frame(&ack));

    // 2 MiB announced: refused from the prefix, before the body is sent.
    bad.write_all(&(2u32 * 1024 * 1024).to_be_bytes()).unwrap();
    let mut reply = Vec::new();
    bad.read_to_end(&mut reply).expect("bad channel closes");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("__error") && text.contains("exceeds the limit"),
        "bad channel got {text:?}"
    );

    // The session and its other channels live on.
    third.write_all(&envelope("t", "x", "[1,2]")).unwrap();
    let expected = frame(&relayed("t", "x", "[1,2]", &s.sender));
    let mut got = vec![0u8; expected.len()];
    good.read_exact(&mut got).unwrap();
    assert_eq!(got, expected);
    assert!(forward.try_status().is_none(), "ssh -L exited");

    // Malformed JSON closes that channel too, with a reason.
    third.write_all(&frame("{not json")).unwrap();
    let mut reply = Vec::new();
    third.read_to_end(&mut reply).expect("third channel closes");
    assert!(String::from_utf8_lossy(&reply).contains("not valid JSON"));
    s.server.process.wait_for_stderr(
        &["control channel closed", "remote_addr=127.0.0.1"],
        TIMEOUT,
    );
    drop(s.dir);
}

#[test]
fn flooded_subscriber_that_never_reads_is_disconnected_with_bounded_memory() {
    let Some(s) = setup() else { return };
    let pid = s.server.process.pid();
    let mut slow = Peer::start_unread(&s.ssh, "wraith-control:1", "slow subscriber");
    // Read only the acknowledgement, by hand; then never read again.
    slow.send(&envelope("__subscribe", "s", "\"*\""));
    let ack = frame(&hub_frame("__subscribed", "s", "\"*\""));
    let mut stdout = slow.child.stdout.take().unwrap();
    let mut got = vec![0u8; ack.len()];
    stdout.read_exact(&mut got).unwrap();
    assert_eq!(got, ack);

    let mut watcher = Peer::start(&s.ssh, "wraith-control:1", "watcher");
    watcher.subscribe("other", "w");
    let baseline = rss_kib(pid);

    // 120 MB of events, far beyond any queue, window and pipe buffer.
    let mut publ = Peer::start(&s.ssh, "wraith-control:1", "publisher");
    let body = format!(
        r#"{{"type":"flood","id":"f","payload":"{}"}}"#,
        "y".repeat(100_000)
    );
    let one = frame(&body);
    let mut stdin = publ.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        for _ in 0..1200 {
            stdin.write_all(&one)?;
        }
        Ok::<_, std::io::Error>(stdin)
    });
    s.server.process.wait_for_stderr(
        &[
            "control channel subscriber disconnected",
            "remote_addr=127.0.0.1",
            "queue overflow",
        ],
        Duration::from_secs(60),
    );
    let stdin = writer
        .join()
        .unwrap()
        .expect("the publisher is never stopped");
    publ.stdin = Some(stdin);
    let peak = rss_kib(pid);
    assert!(
        peak < baseline + 64 * 1024,
        "server RSS grew from {baseline} KiB to {peak} KiB"
    );

    // The slow subscriber's channel was closed: what it still gets is
    // bounded by windows and buffers, then EOF.
    slow.child.stdout = Some(stdout);
    slow.read_in_background();
    let leftover = slow.read_to_close();
    assert!(
        leftover < 16 * 1024 * 1024,
        "{leftover} bytes after overflow"
    );
    slow.wait_exit();

    // Everyone else is fine: the publisher and the watcher still work.
    publ.subscribe("more", "p");
    publ.send(&envelope("other", "o", "true"));
    watcher.expect_frame(&relayed("other", "o", "true", &s.sender));
    let log = s.server.process.stderr_text();
    assert!(!log.contains("flood"), "server log mentions the event type");
}

fn run_ssh(ssh: &OpenSsh, target: &str, input: &[u8]) -> std::process::Output {
    common::run_with_input(ssh.command(&["-W", target], &[]), input, TIMEOUT)
}

#[test]
fn other_reserved_names_are_refused() {
    let Some(s) = setup() else { return };
    for target in ["wraith-control:2", "wraith-other:1", "wraith-:80"] {
        let out = run_ssh(&s.ssh, target, b"");
        assert!(!out.status.success(), "{target} was opened");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("administratively prohibited"),
            "{target}: {err}"
        );
    }
    s.server
        .process
        .wait_for_stderr(&["channel refused", "unknown reserved name"], TIMEOUT);
}

fn restricted_key(dir: &Path, name: &str, options: &str) -> (PathBuf, String) {
    let key = keygen(dir, name);
    let line = format!("{options} {}\n", public_key_line(&key));
    (key, line.trim_start().to_string())
}

#[test]
fn only_keys_with_the_hub_option_reach_the_hub() {
    if !require_tool("ssh") {
        return;
    }
    let dir = temp_dir();
    let (plain, l1) = restricted_key(dir.path(), "plain", "");
    let (listed, l2) = restricted_key(dir.path(), "listed", r#"permitopen="wraith-control:0""#);
    let (hub_only, l3) = restricted_key(dir.path(), "hub-only", "restrict,hub");
    let server = start_with_lines(dir.path(), &format!("{l1}{l2}{l3}"));
    let subscribe = envelope("__subscribe", "a", "\"*\"");
    let acked = frame(&hub_frame("__subscribed", "a", "\"*\""));
    for key in [&plain, &listed] {
        let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, key);
        let out = run_ssh(&ssh, "wraith-control:1", &subscribe);
        assert!(!out.status.success(), "{key:?} subscribed to every event");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("administratively prohibited"),
            "{}",
            common::show(&out)
        );
    }
    server
        .process
        .wait_for_stderr(&["control channel not permitted for this key"], TIMEOUT);
    // `hub` grants it, even next to `restrict`.
    let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, &hub_only);
    let out = run_ssh(&ssh, "wraith-control:1", &subscribe);
    assert!(out.status.success(), "{}", common::show(&out));
    assert_eq!(out.stdout, acked);
    drop(server);

    // --hub-for-all-keys: every key that may forward (and whose permitopen,
    // if any, names the control channel).
    let (elsewhere, l4) = restricted_key(dir.path(), "elsewhere", r#"permitopen="127.0.0.1:9""#);
    let ak = dir.path().join("authorized_keys_all");
    std::fs::write(&ak, format!("{l1}{l2}{l4}")).unwrap();
    let server = start_with_args(dir.path(), &ak, &["--hub-for-all-keys"]);
    for key in [&plain, &listed] {
        let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, key);
        let out = run_ssh(&ssh, "wraith-control:1", &subscribe);
        assert!(out.status.success(), "{}", common::show(&out));
        assert_eq!(out.stdout, acked);
    }
    let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, &elsewhere);
    let out = run_ssh(&ssh, "wraith-control:1", &subscribe);
    assert!(
        !out.status.success(),
        "permitopen without the control channel"
    );
}

#[test]
fn control_channels_per_session_are_capped() {
    let Some(s) = setup() else { return };
    let port = common::free_port();
    let spec = format!("127.0.0.1:{port}:wraith-control:1");
    let forward = common::WraithProcess::spawn_command(s.ssh.command(&["-N", "-L", &spec], &[]));
    forward.wait_for_port(("127.0.0.1", port), TIMEOUT);
    // wait_for_port's own probe may still hold a slot: count from acks.
    let subscribe = envelope("__subscribe", "c", "\"x\"");
    let ack = frame(&hub_frame("__subscribed", "c", "\"x\""));
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        let mut c = common::connect(("127.0.0.1", port));
        c.write_all(&subscribe).unwrap();
        let mut got = vec![0u8; ack.len()];
        match c.read_exact(&mut got) {
            Ok(()) => {
                assert_eq!(got, ack);
                open.push(c);
            }
            Err(_) => refused += 1,
        }
    }
    assert_eq!(open.len(), 8, "the default cap is 8 per session");
    assert_eq!(refused, 4);
    s.server
        .process
        .wait_for_stderr(&["too many control channels in this session"], TIMEOUT);
    // Closing one frees a slot.
    drop(open.pop());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = common::connect(("127.0.0.1", port));
        c.write_all(&subscribe).unwrap();
        let mut got = vec![0u8; ack.len()];
        if c.read_exact(&mut got).is_ok() {
            assert_eq!(got, ack);
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A server whose authorized_keys file holds exactly `lines`.
fn start_with_lines(dir: &Path, lines: &str) -> WraithServer {
    let authorized_keys = dir.join(common::unique("authorized_keys"));
    std::fs::write(&authorized_keys, lines).unwrap();
    start_with_args(dir, &authorized_keys, &[])
}

/// A server with `authorized_keys` and extra flags.
fn start_with_args(dir: &Path, authorized_keys: &Path, extra: &[&str]) -> WraithServer {
    WraithServer::start_with_file(dir, authorized_keys.to_path_buf(), extra, &[])
}

#[test]
fn events_name_the_publishers_key_and_it_cannot_be_forged() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let (alice, l1) = restricted_key(dir.path(), "alice", "hub");
    let (mallory, l2) = restricted_key(dir.path(), "mallory", "hub");
    let server = start_with_lines(dir.path(), &format!("{l1}{l2}"));
    let ssh_alice = OpenSsh::new(dir.path(), server.addr, &server.host_key, &alice);
    let ssh_mallory = OpenSsh::new(dir.path(), server.addr, &server.host_key, &mallory);
    let mut sub = Peer::start(&ssh_alice, "wraith-control:1", "alice");
    let mut publ = Peer::start(&ssh_mallory, "wraith-control:1", "mallory");
    sub.subscribe("order", "s");
    let alice_fp = common::fingerprint(&alice);
    // Mallory claims to be Alice.
    publ.send(&frame(&format!(
        r#"{{"type":"order","id":"o1","payload":"pay","sender":"{alice_fp}"}}"#
    )));
    sub.expect_frame(&relayed(
        "order",
        "o1",
        "\"pay\"",
        &common::fingerprint(&mallory),
    ));
}
