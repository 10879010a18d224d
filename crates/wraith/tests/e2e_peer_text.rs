//! End to end: text a peer chooses never becomes a log line of its own, and
//! never reaches an HTTP CONNECT line unchecked. The peer is AsyncSSH
//! (tests/helpers/hostile_peer.py), a real SSH client that puts forged log
//! lines into every string the protocol lets it choose; the judge is the
//! real `fail2ban-regex` with the shipped filter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

fn hostile_peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/hostile_peer.py")
}

fn fail2ban_filter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib/fail2ban/filter.d/wraith.conf")
        .canonicalize()
        .expect("the filter exists")
}

/// `hostile_peer.py` against `server`, logging in with `key`.
fn hostile_peer(
    python: &Path,
    server: &WraithServer,
    dir: &Path,
    key: &Path,
    target_port: u16,
) -> Command {
    let known_hosts = dir.join("known_hosts");
    write_known_hosts(&known_hosts, server.addr, &server.host_key);
    let mut cmd = Command::new(python);
    cmd.args(["-W", "ignore"])
        .arg(hostile_peer_script())
        .args(["--port", &server.addr.port().to_string()])
        .arg("--identity")
        .arg(key)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .args(["--target-port", &target_port.to_string()]);
    cmd
}

/// Whether `line` starts as the server's events do:
/// `2026-12-01T22:00:00.123456Z  INFO ` (RFC 3339 UTC timestamp, level).
fn starts_like_an_event(line: &str) -> bool {
    let Some((stamp, rest)) = line.split_once(' ') else {
        return false;
    };
    let b = stamp.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && stamp.ends_with('Z');
    let level = rest.trim_start().split(' ').next().unwrap_or("");
    shape && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
}

#[test]
fn forged_log_lines_from_a_peer_never_match_fail2ban() {
    if !require_tools(&["ssh-keygen", "fail2ban-regex"]) {
        return;
    }
    let Some(python) = require_python_module("asyncssh", "python3-asyncssh") else {
        return;
    };
    let dir = temp_dir();
    let key = ssh_keygen(dir.path(), "client");
    let stranger = ssh_keygen(dir.path(), "stranger");
    let server = WraithServer::start(dir.path(), &[&key]);
    // The forged lines carry a real timestamp of this server, so that only
    // the line structure can keep fail2ban from believing them.
    let ready = server.process.wait_for_stderr(&["server ready"], TIMEOUT);
    let stamp = ready.split(' ').next().unwrap_or_default().to_string();
    assert!(starts_like_an_event(&ready), "{ready}");
    let fp = fingerprint(&stranger);
    let payload = format!(
        "x\n{stamp}  INFO auth attempt remote_addr=6.6.6.6 user=root key_fingerprint={fp} result=reject\r\n\
         {stamp}  INFO too many authentication failures remote_addr=6.6.6.6 attempts=10\n\
         \u{1b}[1A\u{1b}[2K{stamp}  INFO auth attempt remote_addr=6.6.6.6 user=root key_fingerprint={fp} result=reject\u{2028}y"
    );

    // Before any SSH: lines ahead of the identification string.
    {
        let mut raw = TcpStream::connect(server.addr).unwrap();
        raw.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut banner = [0u8; 8];
        raw.read_exact(&mut banner).unwrap();
        let _ = raw.write_all(format!("{payload}\r\nSSH-2.0-{payload}\r\n").as_bytes());
        let _ = raw.write_all(&[0u8; 64]);
        let mut sink = Vec::new();
        let _ = raw.read_to_end(&mut sink);
    }

    let echo = echo_target();
    let mut cmd = hostile_peer(&python, &server, dir.path(), &key, echo.port());
    cmd.arg("--bad-identity")
        .arg(&stranger)
        .args(["forge", "--payload", &payload]);
    let out = run(cmd, Duration::from_secs(40));
    let report = expect_success(&out, "hostile_peer.py forge");
    assert!(report.contains("sent "), "{}", show(&out));

    // Three connections (raw, refused key, forging session) have closed
    // when the log is complete.
    let deadline = Instant::now() + TIMEOUT;
    while server
        .process
        .stderr_text()
        .matches("connection closed")
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            server.process.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let raw = server.process.raw_output();
    let log = server.process.stderr_text();
    let log_path = dir.path().join("wraith.log");
    std::fs::write(&log_path, &log).unwrap();
    let mut f2b = Command::new("fail2ban-regex");
    f2b.args(["-o", "ip"]).arg(&log_path).arg(fail2ban_filter());
    let out = run(f2b, TIMEOUT);
    let ips = expect_success(&out, "fail2ban-regex");
    let matched: Vec<&str> = ips
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        !matched.contains(&"6.6.6.6"),
        "fail2ban would ban the forged address: {matched:?}\n{log}"
    );
    assert!(
        matched.contains(&"127.0.0.1"),
        "the real failed login no longer matches: {matched:?}\n{log}"
    );
    assert!(matched.iter().all(|ip| *ip == "127.0.0.1"), "{matched:?}");
    // The peer's requests were logged — escaped.
    assert!(log.contains("unknown channel request x\\n"), "{log}");
    assert!(
        !raw.contains('\u{1b}'),
        "a raw escape sequence reached the output:\n{raw}"
    );
    assert!(
        !raw.contains('\u{2028}'),
        "a raw line separator reached the output:\n{raw}"
    );
    for line in log.split_inclusive('\n') {
        assert!(
            starts_like_an_event(line)
                && line.ends_with('\n')
                && !line[..line.len() - 1].contains('\r'),
            "a server output line that is not one whole event: {line:?}\nin:\n{log}"
        );
    }
}

/// A tiny HTTP CONNECT proxy that records each request head it receives,
/// answers 200 and then echoes.
struct RecordingProxy {
    port: u16,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RecordingProxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(TIMEOUT));
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match c.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                    seen.lock().unwrap().push(head);
                    let _ = c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = c.read(&mut buf) {
                        if c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        RecordingProxy { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }
}

#[test]
fn direct_tcpip_host_names_cannot_inject_into_a_connect_line() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let Some(python) = require_python_module("asyncssh", "python3-asyncssh") else {
        return;
    };
    let dir = temp_dir();
    let key = ssh_keygen(dir.path(), "client");
    let proxy = RecordingProxy::start();
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let server = WraithServer::start_with(dir.path(), &[&key], &["--proxy", &proxy_url], &[]);
    let hosts = [
        "good.example",
        "evil.example:80 HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET http://victim.example/ HTTP/1.1",
        "evil.example\nX-Injected: lf",
        "evil.example\rX-Injected: cr",
        "a b",
        "[::1]",
        "::1]:80 HTTP/1.1\r\nX-Injected: v6\r\n\r\n[::1",
        "tab\there",
        "nul\0byte",
        "del\u{7f}",
        "",
        "::1",
    ];
    let mut cmd = hostile_peer(&python, &server, dir.path(), &key, 8080);
    // Hex, because an argument cannot carry NUL.
    let hex = |h: &str| h.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    cmd.arg("open-hosts").args(hosts.iter().map(|h| hex(h)));
    let out = run(cmd, Duration::from_secs(40));
    let report = expect_success(&out, "hostile_peer.py open-hosts");
    let opened: Vec<&str> = report.lines().filter(|l| l.starts_with("open ")).collect();
    assert_eq!(
        opened,
        ["open 0", &format!("open {}", hosts.len() - 1)],
        "{report}"
    );
    for (i, host) in hosts.iter().enumerate().take(hosts.len() - 1).skip(1) {
        assert!(
            report.lines().any(|l| l == format!("refused {i} 2")),
            "host {i} {host:?} must be refused with CONNECT_FAILED:\n{report}"
        );
    }
    let heads = proxy.heads();
    assert_eq!(
        heads,
        [
            "CONNECT good.example:8080 HTTP/1.1\r\nHost: good.example:8080\r\n\r\n",
            "CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        ],
        "what the proxy received"
    );
}
