//! End to end: the server under abuse and at shutdown. Connection and
//! authentication limits, the login grace time, the fail2ban filter run by
//! the real `fail2ban-regex` over real server output, graceful shutdown with
//! a transfer in flight, and `ssh-audit` against the algorithm lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

// ---------------------------------------------------------------------------
// Access policy: Unix sockets, remote-forward ports, from= and permitlisten
// as the server really applies them, expiry-time in local time.

/// A Unix-socket echo service at `path`, served from a background thread.
fn unix_echo(path: &Path) {
    let listener = std::os::unix::net::UnixListener::bind(path).expect("bind unix socket");
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// `ssh -L 127.0.0.1:<port>:<socket>` (direct-streamlocal), then one
/// round trip through it: true if the bytes came back.
fn socket_round_trip(ssh: &OpenSsh, socket: &Path) -> bool {
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:{}", socket.display());
    let forward = WraithProcess::spawn_command(ssh.command(&["-N", "-L", &spec], &[]));
    forward.wait_for_port(("127.0.0.1", port), TIMEOUT);
    let mut s = connect(("127.0.0.1", port));
    if s.write_all(b"ping").is_err() {
        return false;
    }
    let mut got = [0u8; 4];
    s.read_exact(&mut got).is_ok() && &got == b"ping"
}

/// Sockets for the stream-local tests: `run/app.sock` and `run/other.sock`
/// (echo), `outside.sock` (echo) and `run/link.sock` → `outside.sock`.
struct Sockets {
    run: PathBuf,
    app: PathBuf,
    other: PathBuf,
    outside: PathBuf,
    link: PathBuf,
}

fn sockets(dir: &Path) -> Sockets {
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    let s = Sockets {
        app: run.join("app.sock"),
        other: run.join("other.sock"),
        outside: dir.join("outside.sock"),
        link: run.join("link.sock"),
        run,
    };
    unix_echo(&s.app);
    unix_echo(&s.other);
    unix_echo(&s.outside);
    std::os::unix::fs::symlink(&s.outside, &s.link).unwrap();
    s
}

#[test]
fn unix_sockets_are_refused_by_default_and_limited_to_the_allowlist() {
    if !require_tool("ssh") {
        return;
    }
    let e = env();
    let s = sockets(e.dir.path());
    // A key with no options reaches no socket unless the server says so.
    let (server, addr) = e.serve(&[]);
    let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    assert!(
        !socket_round_trip(&ssh, &s.app),
        "a plain key reached a Unix socket with no --allow-stream-local"
    );
    server.wait_for_stderr(
        &["channel refused", "direct-streamlocal", "not permitted"],
        TIMEOUT,
    );
    drop(server);

    let allow = format!("{}/", s.run.display());
    let (server, addr) = e.serve(&["--allow-stream-local", &allow]);
    let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    assert!(
        socket_round_trip(&ssh, &s.app),
        "allowed socket unreachable"
    );
    assert!(
        !socket_round_trip(&ssh, &s.outside),
        "socket outside the allowlist"
    );
    assert!(
        !socket_round_trip(&ssh, &s.link),
        "a symlink in the allowed directory led outside it"
    );
    let dotdot = s.run.join("..").join("outside.sock");
    assert!(
        !socket_round_trip(&ssh, &dotdot),
        ".. escaped the allowlist"
    );
    server.wait_for_stderr(&["socket path not permitted"], TIMEOUT);
    let log = server.stderr_text();
    assert!(!log.contains("outside.sock"), "log names a socket:\n{log}");

    // The flag refuses relative paths and .. at startup.
    for bad in ["run/app.sock", "/tmp/../etc/x.sock"] {
        let out = run(
            wraith_command(&[
                "serve",
                "--key",
                e.host.to_str().unwrap(),
                "--authorized-keys",
                e.ak.to_str().unwrap(),
                "--allow-stream-local",
                bad,
            ]),
            TIMEOUT,
        );
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--allow-stream-local"),
            "{}",
            show(&out)
        );
    }
}

#[test]
fn permitopen_path_grants_one_socket_to_one_key() {
    if !require_tool("ssh") {
        return;
    }
    let e = env();
    let s = sockets(e.dir.path());
    let line = format!(
        "permitopen=\"{}\" {}\n",
        s.app.display(),
        public_key_line(&e.client_key)
    );
    std::fs::write(&e.ak, line).unwrap();
    let (server, addr) = e.serve(&[]);
    let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    assert!(socket_round_trip(&ssh, &s.app), "the named socket");
    assert!(
        !socket_round_trip(&ssh, &s.other),
        "a socket it was not given"
    );
    // permitopen limits both kinds: this key reaches no host:port.
    let echo = echo_target();
    let out = run_with_input(
        ssh.command(&["-W", &format!("127.0.0.1:{}", echo.port())], &[]),
        b"x",
        TIMEOUT,
    );
    assert!(!out.status.success(), "{}", show(&out));
    server.wait_for_stderr(&["socket path not permitted"], TIMEOUT);
}

/// A free port below 1024 on 127.0.0.1; `None` when this user may not
/// bind one (not root), so the half of a test that needs it is skipped.
fn free_privileged_port() -> Option<u16> {
    (900..1024).find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// `ssh -N -R <spec>`: `Ok(process)` once `probe` accepts connections,
/// `Err(stderr)` if ssh gave up (ExitOnForwardFailure).
fn remote_forward(ssh: &OpenSsh, spec: &str, probe: SocketAddr) -> Result<WraithProcess, String> {
    let p = WraithProcess::spawn_command(ssh.command(&["-N", "-R", spec], &[]));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if TcpStream::connect(probe).is_ok() {
            return Ok(p);
        }
        if p.try_status().is_some() {
            p.kill();
            return Err(p.stderr_text());
        }
        assert!(Instant::now() < deadline, "ssh -R {spec}: no outcome");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn remote_forward_to_a_privileged_port_needs_permitlisten_naming_it() {
    if !require_tool("ssh") {
        return;
    }
    let e = env();
    let echo = echo_target();
    let port = free_privileged_port().unwrap_or(1000);
    let (server, addr) = e.serve(&[]);
    let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    let spec = format!("127.0.0.1:{port}:127.0.0.1:{}", echo.port());
    let probe = SocketAddr::from(([127, 0, 0, 1], port));
    let err = remote_forward(&ssh, &spec, probe)
        .err()
        .expect("port bound");
    assert!(err.contains("remote port forwarding failed"), "{err}");
    server.wait_for_stderr(&["channel refused", "privileged port"], TIMEOUT);
    drop(server);

    // An explicit grant in authorized_keys is the only override.
    if free_privileged_port().is_none() {
        eprintln!("not root: skipping the permitted half");
        return;
    }
    let line = format!(
        "permitlisten=\"localhost:{port}\" {}\n",
        public_key_line(&e.client_key)
    );
    std::fs::write(&e.ak, line).unwrap();
    let (_server, addr) = e.serve(&[]);
    let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    let fwd = remote_forward(&ssh, &spec, probe).expect("named privileged port");
    echo_round_trip(probe, 1000);
    drop(fwd);
}

#[test]
fn a_remote_forward_port_belongs_to_the_first_key_until_released() {
    if !require_tool("ssh") {
        return;
    }
    let e = env();
    let other_key = keygen(e.dir.path(), "other");
    write_authorized_keys(&e.ak, &[&e.client_key, &other_key]);
    let echo = echo_target();
    let (server, addr) = e.serve(&[]);
    let first = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    let second = OpenSsh::new(e.dir.path(), addr, &e.host, &other_key);
    let port = free_port();
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let target = format!("127.0.0.1:{}", echo.port());

    let held = remote_forward(&first, &format!("127.0.0.1:{port}:{target}"), v4)
        .expect("first key binds the port");
    // ::1 is another address, free as far as the kernel cares: clients of
    // "localhost:<port>" would reach the second key.
    let err = remote_forward(&second, &format!("[::1]:{port}:{target}"), v6)
        .err()
        .expect("the second key must not bind a port the first key holds");
    assert!(err.contains("remote port forwarding failed"), "{err}");
    server.wait_for_stderr(
        &["remote forward refused", "port held by another key"],
        TIMEOUT,
    );

    // Once the first key lets go, the port is the second key's.
    held.kill();
    let deadline = Instant::now() + TIMEOUT;
    let taken = loop {
        match remote_forward(&second, &format!("[::1]:{port}:{target}"), v6) {
            Ok(p) => break p,
            Err(err) => assert!(
                Instant::now() < deadline,
                "port never released by the first key: {err}"
            ),
        }
    };
    echo_round_trip(v6, 1000);
    drop(taken);
}

#[test]
fn from_negation_holds_for_ipv4_clients_of_a_dual_stack_listener() {
    if !require_tool("ssh") {
        return;
    }
    let e = env();
    let line = format!("from=\"!127.0.0.1,*\" {}\n", public_key_line(&e.client_key));
    std::fs::write(&e.ak, line).unwrap();
    let server = WraithProcess::spawn(&[
        "serve",
        "--key",
        e.host.to_str().unwrap(),
        "--authorized-keys",
        e.ak.to_str().unwrap(),
        "--listen",
        "[::]:0",
    ]);
    let bound = addr_after(
        &server.wait_for_line("listening on ", TIMEOUT),
        "listening on ",
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], bound.port()));
    let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    let echo = echo_target();
    let out = run_with_input(
        ssh.command(&["-W", &format!("127.0.0.1:{}", echo.port())], &[]),
        b"x",
        TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "127.0.0.1 logged in despite from=\"!127.0.0.1,*\": {}",
        show(&out)
    );
    server.wait_for_stderr(&["result=reject", "from="], TIMEOUT);
}

#[test]
fn permitlisten_localhost_stays_on_loopback_with_gateway_ports() {
    if !require_tool("ssh") {
        return;
    }
    let e = env();
    let port = free_port();
    let line = format!(
        "permitlisten=\"localhost:{port}\" {}\n",
        public_key_line(&e.client_key)
    );
    std::fs::write(&e.ak, line).unwrap();
    let echo = echo_target();
    let (server, addr) = e.serve(&["--gateway-ports"]);
    let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, &e.client_key);
    let target = format!("127.0.0.1:{}", echo.port());
    // "*" asks for every interface (ssh sends an empty address).
    let all = SocketAddr::from(([127, 0, 0, 2], port));
    if let Ok(p) = remote_forward(&ssh, &format!("*:{port}:{target}"), all) {
        p.kill();
        panic!("permitlisten=\"localhost:{port}\" let the key listen on every interface");
    }
    server.wait_for_stderr(&["listen address not permitted"], TIMEOUT);
    // localhost binds loopback only: 127.0.0.2 does not reach it.
    let lo = SocketAddr::from(([127, 0, 0, 1], port));
    let fwd = remote_forward(&ssh, &format!("localhost:{port}:{target}"), lo).expect("localhost");
    echo_round_trip(lo, 1000);
    assert!(
        TcpStream::connect(all).is_err(),
        "a localhost forward answers on 127.0.0.2"
    );
    drop(fwd);
}

/// `date -u` of unix time `t` as expiry-time digits (YYYYMMDDHHMM).
fn utc_digits(t: u64) -> String {
    let mut cmd = Command::new("date");
    cmd.args(["-u", "-d", &format!("@{t}"), "+%Y%m%d%H%M"]);
    let out = run(cmd, TIMEOUT);
    expect_success(&out, "date").trim().to_owned()
}

#[test]
fn expiry_time_without_z_is_the_servers_local_time() {
    if !require_tools(&["ssh", "date"]) {
        return;
    }
    let e = env();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The server runs at UTC+3. Wall-clock digits two hours ahead of UTC
    // are one hour in the past there.
    let digits = utc_digits(now + 2 * 3600);
    let local_key = keygen(e.dir.path(), "local");
    let utc_key = keygen(e.dir.path(), "utc");
    let lines = format!(
        "expiry-time=\"{digits}\" {}\nexpiry-time=\"{digits}Z\" {}\n",
        public_key_line(&local_key),
        public_key_line(&utc_key)
    );
    std::fs::write(&e.ak, lines).unwrap();
    let server = WraithProcess::spawn_env(
        &[
            "serve",
            "--key",
            e.host.to_str().unwrap(),
            "--authorized-keys",
            e.ak.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("TZ", "Etc/GMT-3")],
    );
    let addr = addr_after(
        &server.wait_for_line("listening on ", TIMEOUT),
        "listening on ",
    );
    let echo = echo_target();
    let attempt = |key: &Path| {
        let ssh = OpenSsh::new(e.dir.path(), addr, &e.host, key);
        let cmd = ssh.command(&["-W", &format!("127.0.0.1:{}", echo.port())], &[]);
        run_with_input(cmd, b"ping", TIMEOUT)
    };
    let out = attempt(&local_key);
    assert!(
        !out.status.success(),
        "expiry-time {digits} at UTC+3 is an hour ago, yet the key logged in"
    );
    server.wait_for_stderr(&["result=reject", "expiry-time"], TIMEOUT);
    let out = attempt(&utc_key);
    assert!(out.status.success(), "{digits}Z is ahead: {}", show(&out));
}
