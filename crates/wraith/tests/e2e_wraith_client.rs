//! End to end: the real `wraith connect` against the real `wraith serve` and
//! against a stock OpenSSH `sshd`, driven with curl and raw sockets; host-key
//! pinning and auth failures; and the rule that the server never logs a
//! tunnel destination at any verbosity.
//!
//! These tests need `ssh-keygen` and `curl`, and `/usr/sbin/sshd` for the
//! OpenSSH server ones; outside CI they are skipped when a tool is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;

/// A `wraith serve` authorizing one client key, kept with its temp dir.
struct Setup {
    server: WraithServer,
    client_key: PathBuf,
    // Declared last so the server is killed before the dir is removed.
    dir: tempfile::TempDir,
}

/// Starts `wraith serve` (host key from `wraith keygen`) authorizing a
/// client key made by OpenSSH's `ssh-keygen`, so wraith loads a private key
/// it did not write.
fn setup() -> Setup {
    setup_with(&[], &[])
}

fn setup_with(server_args: &[&str], server_env: &[(&str, &str)]) -> Setup {
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let server = WraithServer::start_with(dir.path(), &[&client_key], server_args, server_env);
    Setup {
        server,
        client_key,
        dir,
    }
}

impl Setup {
    /// `wraith connect` to this server, pinned to its host key file.
    fn connect(&self, extra: &[&str]) -> WraithClient {
        WraithClient::start(
            self.server.addr,
            &self.client_key,
            &self.server.host_pub_arg(),
            extra,
        )
    }

    /// `wraith connect` expected to fail: started with the given identity and
    /// host-key argument, waited for, its exit status checked to be 1.
    /// Returns its stderr.
    fn connect_expecting_exit_1(&self, identity: &Path, host_key_args: &[&str]) -> String {
        let server = self.server.addr.to_string();
        let user = current_user();
        let mut args = vec![
            "connect",
            "--server",
            &server,
            "--identity",
            identity.to_str().expect("utf-8 temp path"),
            "--user",
            &user,
            "--socks5",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(host_key_args);
        let client = WraithProcess::spawn(&args);
        let status = client.wait_exit(TIMEOUT);
        let stderr = client.stderr_text();
        assert_eq!(
            status.code(),
            Some(1),
            "{}",
            client.failure("expected exit code 1")
        );
        assert!(
            !client.stdout_text().contains("socks5 listening on"),
            "{}",
            client.failure("it reported a working session before failing")
        );
        assert_clean_error(&stderr);
        stderr
    }
}

/// A CLI failure is one clear message, never a panic or a backtrace.
fn assert_clean_error(stderr: &str) {
    assert!(!stderr.trim().is_empty(), "exited 1 without saying why");
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(bad), "stderr shows a panic:\n{stderr}");
    }
}

fn http_url(host: &str, port: u16) -> String {
    format!("http://{host}:{port}/")
}

// ---------------------------------------------------------------------------
// Against wraith serve

#[test]
fn socks5_fetches_http_body_with_server_side_dns() {
    if !require_tools(&["ssh-keygen", "curl"]) {
        return;
    }
    let setup = setup();
    let client = setup.connect(&[]);
    let http = http_target();

    // socks5h: the name "localhost" travels unresolved to the server.
    let out = curl_socks5h(client.socks5, &http_url("localhost", http.port()));
    assert_eq!(expect_success(&out, "curl --socks5-hostname"), HTTP_BODY);
    // Plain socks5: curl sends an IPv4 address.
    let out = curl_socks5(client.socks5, &http_url("127.0.0.1", http.port()));
    assert_eq!(expect_success(&out, "curl --socks5"), HTTP_BODY);
    assert!(
        http.accepted() >= 2,
        "the http target saw {} connections",
        http.accepted()
    );
}

#[test]
fn local_forward_on_port_zero_round_trips_bytes() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let echo = echo_target();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let client = setup.connect(&["--forward", &spec]);
    let forward = client.forward_addr();
    assert_ne!(
        forward.port(),
        0,
        "the printed forward address must carry the bound port"
    );

    echo_round_trip(forward, 1 << 20);
    // Several connections over one forward, each its own channel.
    for _ in 0..3 {
        echo_round_trip(forward, 1000);
    }
}

#[test]
fn local_forward_delivers_every_byte_then_eof_from_target() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let data = Arc::new(pseudo_random_bytes(3 * 1024 * 1024 + 5, 99));
    let source = source_target(Arc::clone(&data));
    let spec = format!("127.0.0.1:0:127.0.0.1:{}", source.port());
    let client = setup.connect(&["--forward", &spec]);
    let forward = client.forward_addr();

    assert_same_bytes(
        &read_to_end_from(forward),
        &data,
        "forward from the source target",
    );
}

#[test]
fn remote_forward_on_port_zero_reaches_local_echo_server() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let echo = echo_target();
    let spec = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
    let client = setup.connect(&["--remote-forward", &spec]);
    let port = client.remote_forward_port();
    assert_ne!(port, 0, "the server-chosen port must be printed");

    echo_round_trip(("127.0.0.1", port), 256 * 1024);
}

#[test]
fn refused_target_fails_fast_and_the_session_survives() {
    if !require_tools(&["ssh-keygen", "curl"]) {
        return;
    }
    let setup = setup();
    let client = setup.connect(&[]);
    let dead_port = unused_port_outside_ephemeral_range();

    let out = curl_socks5h(client.socks5, &http_url("127.0.0.1", dead_port));
    assert!(
        !out.status.success(),
        "curl reached a port nobody listens on\n{}",
        show(&out)
    );
    // 28 is curl's timeout: the SOCKS reply must be an error, not silence.
    assert_ne!(
        out.status.code(),
        Some(28),
        "the SOCKS request hung\n{}",
        show(&out)
    );

    let http = http_target();
    let out = curl_socks5h(client.socks5, &http_url("localhost", http.port()));
    assert_eq!(
        expect_success(&out, "curl after a refused target"),
        HTTP_BODY
    );
}

// ---------------------------------------------------------------------------
// Against a stock OpenSSH sshd

/// sshd authorizing a client key made by `wraith keygen` (so OpenSSH reads a
/// public key wraith wrote), and `wraith connect` pinned to sshd's host key
/// file.
fn connect_to_sshd(extra: &[&str]) -> Option<(Sshd, WraithClient, tempfile::TempDir)> {
    if !require_tools(&["ssh-keygen", "curl", SSHD]) {
        return None;
    }
    let dir = temp_dir();
    let client_key = keygen(dir.path(), "client");
    let sshd = Sshd::start(&[&client_key]);
    let client = WraithClient::start(sshd.addr, &client_key, &sshd.host_pub_arg(), extra);
    Some((sshd, client, dir))
}

#[test]
fn socks5_through_openssh_sshd_fetches_http_body() {
    let http = http_target();
    let Some((_sshd, client, _dir)) = connect_to_sshd(&[]) else {
        return;
    };
    let out = curl_socks5h(client.socks5, &http_url("localhost", http.port()));
    assert_eq!(
        expect_success(&out, "curl --socks5-hostname via sshd"),
        HTTP_BODY
    );
    let out = curl_socks5(client.socks5, &http_url("127.0.0.1", http.port()));
    assert_eq!(expect_success(&out, "curl --socks5 via sshd"), HTTP_BODY);
}

#[test]
fn local_forward_through_openssh_sshd_round_trips_bytes() {
    let echo = echo_target();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let Some((_sshd, client, _dir)) = connect_to_sshd(&["--forward", &spec]) else {
        return;
    };
    echo_round_trip(client.forward_addr(), 1 << 20);
}

#[test]
fn remote_forward_through_openssh_sshd_reaches_local_echo_server() {
    let echo = echo_target();
    let spec = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
    let Some((_sshd, client, _dir)) = connect_to_sshd(&["--remote-forward", &spec]) else {
        return;
    };
    let port = client.remote_forward_port();
    assert_ne!(port, 0, "the sshd-chosen port must be printed");
    echo_round_trip(("127.0.0.1", port), 256 * 1024);
}

// ---------------------------------------------------------------------------
// Host keys and auth

#[test]
fn wrong_host_key_exits_1_and_names_the_host_key() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let impostor = keygen(setup.dir.path(), "impostor");
    let pinned = pub_path(&impostor);
    let stderr = setup.connect_expecting_exit_1(
        &setup.client_key,
        &["--host-key", pinned.to_str().expect("utf-8 temp path")],
    );
    assert!(
        stderr.to_lowercase().contains("host key"),
        "the error does not mention the host key:\n{stderr}"
    );
}

#[test]
fn host_key_pin_accepts_fingerprint_and_public_key_forms() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let setup = setup();
    // The fingerprint is computed by OpenSSH, independently of wraith.
    for pin in [
        fingerprint(&setup.server.host_key),
        public_key_line(&setup.server.host_key),
    ] {
        let client = WraithClient::start(setup.server.addr, &setup.client_key, &pin, &[]);
        assert!(client.process.try_status().is_none(), "--host-key {pin:?}");
    }
    let wrong = fingerprint(&keygen(setup.dir.path(), "impostor"));
    setup.connect_expecting_exit_1(&setup.client_key, &["--host-key", &wrong]);
}

#[test]
fn known_hosts_file_is_checked() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let server = setup.server.addr.to_string();
    let user = current_user();
    let good = setup.dir.path().join("known_hosts_good");
    write_known_hosts(&good, setup.server.addr, &setup.server.host_key);
    let client = WraithClient::ready(WraithProcess::spawn(&[
        "connect",
        "--server",
        &server,
        "--identity",
        setup.client_key.to_str().expect("utf-8 temp path"),
        "--user",
        &user,
        "--known-hosts",
        good.to_str().expect("utf-8 temp path"),
        "--socks5",
        "127.0.0.1:0",
    ]));
    drop(client);

    let bad = setup.dir.path().join("known_hosts_bad");
    let impostor = keygen(setup.dir.path(), "impostor");
    write_known_hosts(&bad, setup.server.addr, &impostor);
    let stderr = setup.connect_expecting_exit_1(
        &setup.client_key,
        &["--known-hosts", bad.to_str().expect("utf-8 temp path")],
    );
    assert!(
        stderr.to_lowercase().contains("host key"),
        "the error does not mention the host key:\n{stderr}"
    );
}

#[test]
fn unauthorized_identity_exits_1() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let stranger = ssh_keygen(setup.dir.path(), "stranger");
    let pin = setup.server.host_pub_arg();
    setup.connect_expecting_exit_1(&stranger, &["--host-key", &pin]);
    setup.server.process.wait_for_stderr(
        &[
            "auth attempt",
            &format!("key_fingerprint={}", fingerprint(&stranger)),
            "result=reject",
        ],
        TIMEOUT,
    );
}

#[test]
fn connect_reads_its_flags_from_wraith_environment_variables() {
    if !require_tools(&["ssh-keygen", "curl"]) {
        return;
    }
    let setup = setup();
    let http = http_target();
    let server = setup.server.addr.to_string();
    let user = current_user();
    let pin = setup.server.host_pub_arg();
    let process = WraithProcess::spawn_env(
        &["connect"],
        &[
            ("WRAITH_SERVER", &server),
            (
                "WRAITH_IDENTITY",
                setup.client_key.to_str().expect("utf-8 temp path"),
            ),
            ("WRAITH_HOST_KEY", &pin),
            ("WRAITH_USER", &user),
            ("WRAITH_SOCKS5", "127.0.0.1:0"),
        ],
    );
    let client = WraithClient::ready(process);
    let out = curl_socks5h(client.socks5, &http_url("localhost", http.port()));
    assert_eq!(
        expect_success(&out, "curl via env-configured client"),
        HTTP_BODY
    );
}

#[test]
fn unknown_flag_is_a_usage_error_with_exit_code_2() {
    let out = run(wraith_command(&["connect", "--no-such-flag"]), TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_clean_error(&String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------
// No destination in server logs (SPEC 2.4, 5)

/// Tunnels to distinctive destinations through a server started with
/// `server_args`/`server_env` and asserts the server's whole stdout and
/// stderr never names them.
fn assert_server_hides_destinations(server_args: &[&str], server_env: &[(&str, &str)]) {
    if !require_tools(&["ssh-keygen", "curl"]) {
        return;
    }
    let setup = setup_with(server_args, server_env);
    let http = http_target();
    let echo = echo_target();
    let dead_port = unused_port_outside_ephemeral_range();
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let client = setup.connect(&["--forward", &spec]);

    let out = curl_socks5h(client.socks5, &http_url("localhost", http.port()));
    assert_eq!(expect_success(&out, "curl --socks5-hostname"), HTTP_BODY);
    let out = curl_socks5(client.socks5, &http_url("127.0.0.1", http.port()));
    assert_eq!(expect_success(&out, "curl --socks5"), HTTP_BODY);
    echo_round_trip(client.forward_addr(), 64 * 1024);
    // Failures are where destinations tend to slip into error messages.
    let out = curl_socks5h(client.socks5, &http_url("localhost", dead_port));
    assert!(!out.status.success(), "{}", show(&out));
    let out = curl_socks5(client.socks5, &http_url("127.0.0.1", dead_port));
    assert!(!out.status.success(), "{}", show(&out));

    // Ending the session makes the server log its close; after that line
    // everything about the tunnels has been logged.
    client.process.kill();
    let server = &setup.server.process;
    server.wait_for_stderr(&["connection closed"], TIMEOUT);
    server.kill();

    let raw = server.raw_output();
    let clean = strip_ansi(&raw);
    // The check must be able to fail: the server does print its own port.
    assert!(
        mentions_port(&clean, setup.server.addr.port()),
        "the captured output lacks even the listen port; nothing was captured?\n{clean}"
    );
    assert!(
        clean.contains("auth attempt"),
        "no auth log captured:\n{clean}"
    );
    let mut leaks = Vec::new();
    for text in [&raw, &clean] {
        for (what, port) in [
            ("http target port", http.port()),
            ("echo target port", echo.port()),
            ("refused target port", dead_port),
        ] {
            if mentions_port(text, port) {
                leaks.push(format!("{what} {port}"));
            }
        }
        if text.contains("localhost") {
            leaks.push("host name \"localhost\"".to_owned());
        }
    }
    leaks.sort();
    leaks.dedup();
    if !leaks.is_empty() {
        panic!(
            "server output names tunnel destinations: {leaks:?}\n--- server output ---\n{clean}"
        );
    }
}

#[test]
fn server_logs_hide_destinations_at_default_level() {
    assert_server_hides_destinations(&[], &[]);
}

#[test]
fn server_logs_hide_destinations_at_trace_level() {
    assert_server_hides_destinations(&["-vv"], &[]);
}

#[test]
fn server_logs_hide_destinations_with_rust_log_trace() {
    assert_server_hides_destinations(&[], &[("RUST_LOG", "trace")]);
}

#[test]
fn port_mention_check_finds_ports_only_as_whole_numbers() {
    assert!(mentions_port("dial 127.0.0.1:4711 failed", 4711));
    assert!(mentions_port("port=4711", 4711));
    assert!(mentions_port("to \"4711\"", 4711));
    assert!(mentions_port("port 4711", 4711));
    assert!(!mentions_port("port 47110", 4711));
    assert!(!mentions_port("SHA256:ab4711cd", 4711));
    assert!(!mentions_port("duration=0.4711", 4711));
}

// ---------------------------------------------------------------------------
// --stdio (one channel on stdin/stdout, like ssh -W)

#[test]
fn stdio_joins_one_channel_to_stdin_and_stdout() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let echo = echo_target();
    let server = setup.server.addr.to_string();
    let target = format!("127.0.0.1:{}", echo.port());
    let user = current_user();
    let host_pub = setup.server.host_pub_arg();
    let base = [
        "connect",
        "--server",
        &server,
        "--identity",
        setup.client_key.to_str().unwrap(),
        "--host-key",
        &host_pub,
        "--user",
        &user,
    ];
    let mut args = base.to_vec();
    args.extend(["--stdio", &target]);
    // 1 MiB in, the same 1 MiB out: stdout carries channel data only.
    let data = pseudo_random_bytes(1024 * 1024, 42);
    let out = run_with_input(wraith_command(&args), &data, TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(out.stdout.len(), data.len(), "{}", show(&out));
    assert!(out.stdout == data, "the echoed bytes differ");

    // A refused target: exit 1, one line naming what failed.
    let dead = format!("127.0.0.1:{}", unused_port_outside_ephemeral_range());
    let mut args = base.to_vec();
    args.extend(["--stdio", &dead]);
    let out = run_with_input(wraith_command(&args), b"", TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open a channel to"), "{stderr}");
    assert!(out.stdout.is_empty());

    // --stdio and forwards do not mix.
    let mut args = base.to_vec();
    args.extend(["--stdio", &target, "--forward", "0:127.0.0.1:1"]);
    let out = run(wraith_command(&args), TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
