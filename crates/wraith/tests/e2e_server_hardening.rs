//! End to end: the server under abuse and at shutdown. Connection and
//! authentication limits, the login grace time, the fail2ban filter run by
//! the real `fail2ban-regex` over real server output, graceful shutdown with
//! a transfer in flight, and `ssh-audit` against the algorithm lists.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Env {
    dir: tempfile::TempDir,
    client_key: PathBuf,
    host: PathBuf,
    ak: PathBuf,
}

fn env() -> Env {
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let client_key = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&client_key]);
    Env {
        dir,
        client_key,
        host,
        ak,
    }
}

impl Env {
    fn serve(&self, extra: &[&str]) -> (WraithProcess, SocketAddr) {
        let mut args = vec![
            "serve",
            "--key",
            self.host.to_str().unwrap(),
            "--authorized-keys",
            self.ak.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let p = WraithProcess::spawn(&args);
        let addr = addr_after(&p.wait_for_line("listening on ", TIMEOUT), "listening on ");
        (p, addr)
    }
}

/// Read the server's SSH banner; `None` if the connection was closed first.
fn banner(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[test]
fn connection_over_the_per_ip_limit_is_refused() {
    let e = env();
    let (server, addr) = e.serve(&["--max-connections-per-ip", "2"]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"SSH-2.0-");
        held.push(s);
    }
    // The third, while two are open, is closed without a banner.
    assert_eq!(banner(addr), None, "the (n+1)th connection must be refused");
    server.wait_for_stderr(&["connection refused", "too many connections"], TIMEOUT);
    // Closing one frees a slot.
    drop(held.pop());
    let deadline = Instant::now() + TIMEOUT;
    while banner(addr).is_none() {
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn too_many_failed_attempts_disconnect() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let e = env();
    let (server, addr) = e.serve(&["--max-auth-attempts", "3"]);
    let strangers: Vec<PathBuf> = (0..5)
        .map(|i| ssh_keygen(e.dir.path(), &format!("stranger{i}")))
        .collect();
    let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, &strangers[0]);
    let mut opts: Vec<String> = vec!["-o".into(), "NumberOfPasswordPrompts=0".into()];
    for k in &strangers[1..] {
        opts.push("-i".into());
        opts.push(k.display().to_string());
    }
    let opt_refs: Vec<&str> = opts.iter().map(String::as_str).collect();
    let out = run(ssh.command(&opt_refs, &["-N"]), TIMEOUT);
    assert!(!out.status.success());
    server.wait_for_stderr(&["too many authentication failures", "attempts=3"], TIMEOUT);
    let log = server.stderr_text();
    let rejects = log.matches("result=reject").count();
    assert_eq!(
        rejects, 3,
        "exactly n failures before the disconnect:\n{log}"
    );
}

#[test]
fn silent_connection_is_closed_after_the_grace_time() {
    let e = env();
    let (server, addr) = e.serve(&["--login-grace-time", "2"]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let start = Instant::now();
    let mut sink = Vec::new();
    // Read the banner, send nothing, and wait for the server to hang up.
    let _ = s.read_to_end(&mut sink);
    let waited = start.elapsed();
    assert!(sink.starts_with(b"SSH-2.0-"));
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    server.wait_for_stderr(&["connection closed", "login grace time"], TIMEOUT);
}

#[test]
fn fail2ban_filter_matches_rejections_and_not_acceptances() {
    if !require_tools(&["ssh", "ssh-keygen", "fail2ban-regex"]) {
        return;
    }
    let e = env();
    let (server, addr) = e.serve(&[]);
    // One good login, two bad keys.
    let good = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    let echo = echo_target();
    let out = run_with_input(
        good.command(&["-W", &format!("127.0.0.1:{}", echo.port())], &[]),
        b"x",
        TIMEOUT,
    );
    expect_success(&out, "good login");
    for i in 0..2 {
        let bad_key = ssh_keygen(e.dir.path(), &format!("bad{i}"));
        let bad = OpenSsh::new(e.dir.path(), addr, &e.host, &bad_key);
        let out = run(bad.command(&["-N"], &[]), TIMEOUT);
        assert!(!out.status.success());
    }
    server.wait_for_stderr(&["result=accept"], TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    while server.stderr_text().matches("result=reject").count() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let log_path = e.dir.path().join("wraith.log");
    let text = server.stderr_text();
    std::fs::write(&log_path, &text).unwrap();
    let rejects = text.matches("result=reject").count();

    let filter = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib/fail2ban/filter.d/wraith.conf")
        .canonicalize()
        .expect("the filter exists");
    let mut cmd = Command::new("fail2ban-regex");
    cmd.arg(&log_path).arg(&filter);
    let out = run(cmd, TIMEOUT);
    let report = expect_success(&out, "fail2ban-regex");
    let matched_line = report
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .unwrap_or_else(|| panic!("no summary in:\n{report}"));
    assert!(
        matched_line.contains(&format!(" {rejects} matched")),
        "every reject and nothing else must match ({rejects} rejects): {matched_line}\n{report}"
    );
    // And the accepted line is listed among the misses.
    let missed = report.split("Missed line(s):").nth(1).unwrap_or("");
    assert!(missed.contains("result=accept"), "{report}");
    assert!(!missed.contains("result=reject"), "{report}");
}

/// A target that sends `first` bytes, pauses, then `rest` bytes and closes.
fn slow_source(first: usize, pause: Duration, rest: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let _ = c.write_all(&vec![b'a'; first]);
                std::thread::sleep(pause);
                let _ = c.write_all(&vec![b'b'; rest]);
            });
        }
    });
    addr
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

#[test]
fn sigterm_drains_a_transfer_in_flight_then_exits_0() {
    let e = env();
    let (server, addr) = e.serve(&[]);
    let target = slow_source(64 * 1024, Duration::from_millis(700), 64 * 1024);
    let fwd = format!("0:127.0.0.1:{}", target.port());
    let client = WraithClient::start(
        addr,
        &e.client_key,
        pub_path(&e.host).to_str().unwrap(),
        &["--forward", &fwd],
    );
    let mut s = TcpStream::connect(client.forward_addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut first = vec![0u8; 64 * 1024];
    s.read_exact(&mut first).unwrap();
    // The rest is still on its way when the server is told to stop.
    signal(server.pid(), "-TERM");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), 64 * 1024, "in-flight data must drain");
    assert!(rest.iter().all(|b| *b == b'b'));
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.stderr_text());
    // New connections are no longer accepted.
    assert!(banner(addr).is_none());
}

#[test]
fn second_signal_exits_at_once() {
    let e = env();
    let (server, addr) = e.serve(&[]);
    // A transfer that would never finish by itself.
    let target = slow_source(1024, Duration::from_secs(600), 1);
    let fwd = format!("0:127.0.0.1:{}", target.port());
    let client = WraithClient::start(
        addr,
        &e.client_key,
        pub_path(&e.host).to_str().unwrap(),
        &["--forward", &fwd],
    );
    let mut s = TcpStream::connect(client.forward_addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut first = vec![0u8; 1024];
    s.read_exact(&mut first).unwrap();
    signal(server.pid(), "-TERM");
    server.wait_for_stderr(&["shutting down"], TIMEOUT);
    let start = Instant::now();
    signal(server.pid(), "-INT");
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(start.elapsed() < Duration::from_millis(1500));
    assert_eq!(status.code(), Some(1));
}

#[test]
fn ssh_audit_finds_no_weak_algorithms() {
    if !require_tool("ssh-audit") {
        return;
    }
    let e = env();
    let (_server, addr) = e.serve(&[]);
    let mut cmd = Command::new("ssh-audit");
    cmd.args([
        "-n",
        "-t",
        "10",
        "-p",
        &addr.port().to_string(),
        "127.0.0.1",
    ]);
    let out = run(cmd, Duration::from_secs(30));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("(kex)"), "no audit report:\n{report}");
    // Algorithms newer than Debian's ssh-audit database are reported as
    // "unknown": that is its age, not a weakness. Anything else flagged
    // fails the test.
    const NEWER_THAN_AUDIT_DB: &[&str] = &["mlkem768x25519-sha256", "kex-strict-s-v00@openssh.com"];
    for line in report.lines() {
        let flagged = line.contains("[fail]") || line.contains("[warn]");
        if !flagged {
            continue;
        }
        let known_new = line.contains("unknown algorithm")
            && NEWER_THAN_AUDIT_DB.iter().any(|a| line.contains(a));
        assert!(known_new, "ssh-audit flagged: {line}\n{report}");
    }
    assert!(report.contains("compression: disabled"), "{report}");
    assert!(!report.contains("-cbc"), "{report}");
    assert!(!report.contains("sha1"), "{report}");
}
