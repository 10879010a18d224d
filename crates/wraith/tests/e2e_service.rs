//! End to end: wraith run as a service. The systemd units in
//! `contrib/systemd/` pass `systemd-analyze verify` with no complaint; a
//! listening socket handed over the way systemd does it
//! (`systemd-socket-activate`: `LISTEN_FDS`, `LISTEN_PID`) is served and
//! tunnelled through; readiness, reload and stop reach `NOTIFY_SOCKET`
//! (`Type=notify`); SIGHUP reloads `--authorized-keys` while a session stays
//! up: a key added gets in, a key removed no longer does, the live session
//! keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd")
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !require_tool("systemd-analyze") {
        return;
    }
    let dir = temp_dir();
    let bin = std::fs::canonicalize(wraith_bin()).expect("the wraith binary");
    for name in [
        "wraith-serve.socket",
        "wraith-serve.service",
        "wraith-connect@.service",
    ] {
        let text = std::fs::read_to_string(units_dir().join(name)).expect("unit file");
        assert!(
            name.ends_with(".socket") || text.contains("ExecStart=/usr/bin/wraith "),
            "{name}"
        );
        // verify checks that ExecStart's binary exists: point it at ours.
        let text = text.replace("/usr/bin/wraith", p(&bin));
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::os::unix::fs::symlink(
        dir.path().join("wraith-connect@.service"),
        dir.path().join("wraith-connect@demo.service"),
    )
    .unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.current_dir(dir.path()).args([
        "verify",
        // The man page comes with the package, not with this checkout.
        "--man=no",
        "./wraith-serve.socket",
        "./wraith-serve.service",
        "./wraith-connect@demo.service",
    ]);
    let out = run(cmd, TIMEOUT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{text}"
    );
    // A directive systemd does not understand is only a warning: none.
    assert!(
        text.trim().is_empty(),
        "systemd-analyze complained:\n{text}"
    );

    let serve = std::fs::read_to_string(units_dir().join("wraith-serve.service")).unwrap();
    for directive in [
        "Type=notify",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=wraith",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            serve.contains(directive),
            "wraith-serve.service lacks {directive:?}"
        );
    }
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`.
struct Notifications {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notifications {
    fn new(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notifications { socket, path }
    }

    /// Waits for a message with a line starting with `prefix`; returns it.
    fn expect_containing(&self, prefix: &str) -> String {
        self.wait_for(&format!("{prefix}…"), |l| l.starts_with(prefix))
    }

    /// Waits for a message holding `line` (e.g. `READY=1`); returns it.
    fn expect(&self, line: &str) -> String {
        self.wait_for(line, |l| l == line)
    }

    fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.lines().any(&wanted) {
                    return msg;
                }
                seen.push(msg);
            }
        }
        panic!("no {what:?} on NOTIFY_SOCKET within {TIMEOUT:?}; got {seen:?}");
    }
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

fn curl_works(socks: std::net::SocketAddr, what: &str) {
    let target = http_target();
    let out = curl_socks5h(socks, &format!("http://localhost:{}/", target.port()));
    assert_eq!(expect_success(&out, what), HTTP_BODY, "{what}");
}

#[test]
fn a_socket_passed_by_systemd_is_served() {
    if !require_tools(&["systemd-socket-activate", "curl"]) {
        return;
    }
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let client = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&client]);
    let notify = Notifications::new(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &listen])
        .arg(format!("--setenv=NOTIFY_SOCKET={}", p(&notify.path)))
        .args([wraith_bin(), "serve", "--key", p(&host)])
        .args(["--authorized-keys", p(&ak)]);
    // No --listen: with a socket passed, that is the one served.
    let server = WraithProcess::spawn_command(cmd);
    server.wait_for_stderr(&["Listening on"], TIMEOUT);

    // The first connection makes systemd-socket-activate start wraith with
    // the listening socket as fd 3.
    let c = WraithClient::start(listen.parse().unwrap(), &client, p(&pub_path(&host)), &[]);
    let line = server.wait_for_line("listening on ", TIMEOUT);
    assert_eq!(line, format!("listening on tcp://{listen}"), "{line}");
    notify.expect("READY=1");
    curl_works(c.socks5, "curl through the socket-activated server");

    // `--listen systemd` without a socket is a clear one-line error.
    let out = run(
        wraith_command(&[
            "serve",
            "--key",
            p(&host),
            "--authorized-keys",
            p(&ak),
            "--listen",
            "systemd",
        ]),
        TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--listen") && err.contains("systemd passed no socket"),
        "{err}"
    );
}

#[test]
fn sighup_reloads_the_keys_while_a_session_stays_up() {
    if !require_tools(&["curl", "kill"]) {
        return;
    }
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let old = keygen(dir.path(), "old");
    let new = keygen(dir.path(), "new");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&old]);
    let notify = Notifications::new(dir.path());
    let server = WraithProcess::spawn_env(
        &[
            "serve",
            "--key",
            p(&host),
            "--authorized-keys",
            p(&ak),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("NOTIFY_SOCKET", p(&notify.path))],
    );
    let addr = addr_after(
        &server.wait_for_line("listening on ", TIMEOUT),
        "listening on ",
    );
    notify.expect("READY=1");
    let host_pub = pub_path(&host);
    let live = WraithClient::start(addr, &old, p(&host_pub), &[]);
    curl_works(live.socks5, "before the reload");

    // Swap the old key for the new one, then SIGHUP.
    write_authorized_keys(&ak, &[&new]);
    send_signal(server.pid(), "HUP");
    let msg = notify.expect("RELOADING=1");
    assert!(msg.contains("MONOTONIC_USEC="), "{msg}");
    notify.expect("READY=1");
    server.wait_for_stderr(&["reloaded --authorized-keys"], TIMEOUT);

    let added = WraithClient::start(addr, &new, p(&host_pub), &[]);
    curl_works(added.socks5, "the key added by the reload");
    let refused = WraithProcess::spawn(&[
        "connect",
        "--server",
        &addr.to_string(),
        "--identity",
        p(&old),
        "--host-key",
        p(&host_pub),
        "--socks5",
        "127.0.0.1:0",
    ]);
    let status = refused.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(1), "{}", refused.failure("removed key"));
    assert!(
        refused.stderr_text().contains("did not accept the key"),
        "{}",
        refused.failure("removed key")
    );
    // The session that logged in with the removed key stays up.
    curl_works(live.socks5, "the live session after the reload");

    // A reload that cannot read the file keeps the keys in force.
    std::fs::remove_file(&ak).unwrap();
    send_signal(server.pid(), "HUP");
    server.wait_for_stderr(&["reload failed (SIGHUP)"], TIMEOUT);
    let still = WraithClient::start(addr, &new, p(&host_pub), &[]);
    curl_works(still.socks5, "after a failed reload");
    assert!(server.try_status().is_none(), "SIGHUP ended the server");

    send_signal(server.pid(), "TERM");
    notify.expect("STOPPING=1");
    assert!(server.wait_exit(TIMEOUT).success());
}

#[test]
fn sigusr1_prints_the_clients_status() {
    if !require_tools(&["kill"]) {
        return;
    }
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let key = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&key]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = || {
        let s = WraithProcess::spawn(&[
            "serve",
            "--key",
            p(&host),
            "--authorized-keys",
            p(&ak),
            "--listen",
            &listen,
        ]);
        s.wait_for_line("listening on ", TIMEOUT);
        s
    };
    let server = serve();
    let notify = Notifications::new(dir.path());
    let host_pub = pub_path(&host);
    let client = WraithClient::ready(WraithProcess::spawn_env(
        &[
            "connect",
            "--server",
            &listen,
            "--identity",
            p(&key),
            "--host-key",
            p(&host_pub),
            "--socks5",
            "127.0.0.1:0",
            "--reconnect-wait",
            "1",
        ],
        &[("NOTIFY_SOCKET", p(&notify.path))],
    ));
    let ready = notify.expect("READY=1");
    assert!(
        ready.contains(&format!("STATUS=connected to {listen} over tcp for ")),
        "{ready}"
    );
    // One connection held open through the tunnel.
    let target = http_target();
    let mut held = std::net::TcpStream::connect(client.socks5).unwrap();
    std::io::Write::write_all(&mut held, &[5, 1, 0]).unwrap();
    let mut reply = [0u8; 2];
    std::io::Read::read_exact(&mut held, &mut reply).unwrap();
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&target.port().to_be_bytes());
    std::io::Write::write_all(&mut held, &req).unwrap();
    let mut reply = [0u8; 10];
    std::io::Read::read_exact(&mut held, &mut reply).unwrap();
    assert_eq!(reply[1], 0, "SOCKS reply");

    send_signal(client.process.pid(), "USR1");
    let line = client
        .process
        .wait_for_stderr(&["status: connected to"], TIMEOUT);
    assert!(
        line.contains(&format!("connected to {listen} over tcp for "))
            && line.contains("0 reconnects; 1 open connection (1 in all)"),
        "{line}"
    );
    drop(held);

    // A lost session and a new one: the count moves, the state follows.
    server.kill();
    notify.expect_containing("STATUS=reconnecting");
    let _server = serve();
    client.process.wait_for_stderr(&["connected to"], TIMEOUT);
    notify.expect_containing("STATUS=connected to");
    send_signal(client.process.pid(), "USR1");
    eventually_stderr(&client.process, "1 reconnect;");
    assert!(
        client.process.try_status().is_none(),
        "SIGUSR1 ended the client"
    );
}

fn eventually_stderr(process: &WraithProcess, needle: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !process.stderr_text().contains(needle) {
        assert!(Instant::now() < deadline, "{}", process.failure(needle));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scrape(url: &str) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "10", url]);
    expect_success(&run(cmd, TIMEOUT), "curl the metrics")
}

/// The value of the sample `name` (with its labels, as written), or 0.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_are_prometheus_text_that_moves_and_names_no_destination() {
    if !require_tools(&["curl"]) {
        return;
    }
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let key = keygen(dir.path(), "client");
    let stranger = keygen(dir.path(), "stranger");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&key]);
    let server = WraithProcess::spawn(&[
        "serve",
        "--key",
        p(&host),
        "--authorized-keys",
        p(&ak),
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = addr_after(
        &server.wait_for_line("listening on ", TIMEOUT),
        "listening on ",
    );
    let line = server.wait_for_line("metrics on http://", TIMEOUT);
    let url = line.trim_start_matches("metrics on ").to_string();
    let before = scrape(&url);
    for (kind, name) in [
        ("gauge", "wraith_sessions"),
        ("gauge", "wraith_connections"),
        ("counter", "wraith_connections_accepted"),
        ("gauge", "wraith_channels"),
        ("counter", "wraith_channels_opened"),
        ("counter", "wraith_auth_attempts"),
        ("counter", "wraith_limit_refusals"),
        ("gauge", "wraith_hub_members"),
        ("counter", "wraith_hub_overflow_disconnects"),
        ("gauge", "wraith_hub_nats_connected"),
        ("gauge", "wraith_acme_certificate_expiry_timestamp_seconds"),
    ] {
        assert!(
            before.contains(&format!("# TYPE {name} {kind}\n")),
            "no {kind} {name}:\n{before}"
        );
    }
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(sample(&before, "wraith_sessions"), 0.0);

    // A login, a refused key, and a tunnel to a target on a port that
    // must not show up.
    let target = http_target();
    let client = WraithClient::start(addr, &key, p(&pub_path(&host)), &[]);
    let out = curl_socks5h(
        client.socks5,
        &format!("http://localhost:{}/", target.port()),
    );
    assert_eq!(expect_success(&out, "curl through the tunnel"), HTTP_BODY);
    let refused = WraithProcess::spawn(&[
        "connect",
        "--server",
        &addr.to_string(),
        "--identity",
        p(&stranger),
        "--host-key",
        p(&pub_path(&host)),
    ]);
    refused.wait_exit(TIMEOUT);

    let after = scrape(&url);
    assert_eq!(sample(&after, "wraith_sessions"), 1.0, "{after}");
    assert!(
        sample(&after, r#"wraith_auth_attempts_total{result="accept"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, r#"wraith_auth_attempts_total{result="reject"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, r#"wraith_channels_opened_total{kind="tcp"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "wraith_connections_accepted_total") >= 2.0,
        "{after}"
    );
    for secret in [
        target.port().to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        fingerprint(&key),
        current_user(),
    ] {
        assert!(
            !after.contains(&secret),
            "the metrics mention {secret:?}:\n{after}"
        );
    }
    // Anything but GET /metrics: 404.
    let mut cmd = Command::new("curl");
    cmd.args([
        "--silent",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
    ])
    .arg(url.replace("/metrics", "/other"));
    assert_eq!(expect_success(&run(cmd, TIMEOUT), "curl /other"), "404");

    drop(client);
    let deadline = Instant::now() + TIMEOUT;
    while sample(&scrape(&url), "wraith_sessions") != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the session never left the gauge"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
