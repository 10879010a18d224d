//! Interop: the stock OpenSSH client (`ssh -D/-L/-R/-W`) against the real
//! `wraith serve` binary, plus what the server must refuse (passwords,
//! unknown keys, shells) and what it logs about authentication.
//!
//! These tests need `ssh`, `ssh-keygen` and `curl`; outside CI they are
//! skipped when a tool is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use common::*;

/// A `wraith serve` that authorizes one client key, and an `ssh` command
/// builder that trusts the server's host key and uses that client key.
struct Setup {
    server: WraithServer,
    ssh: OpenSsh,
    client_key: PathBuf,
    // Declared last so the processes above are killed before it is removed.
    dir: tempfile::TempDir,
}

/// Starts the server with a client key from OpenSSH's `ssh-keygen`, so the
/// server reads an authorized_keys line it did not write itself.
fn setup() -> Setup {
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    setup_with_key(dir, client_key)
}

fn setup_with_key(dir: tempfile::TempDir, client_key: PathBuf) -> Setup {
    let server = WraithServer::start(dir.path(), &[&client_key]);
    let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, &client_key);
    Setup {
        server,
        ssh,
        client_key,
        dir,
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `ssh -N <forward options>` kept running in the background.
fn ssh_forwarding(setup: &Setup, options: &[&str]) -> WraithProcess {
    let mut all = vec!["-N"];
    all.extend_from_slice(options);
    WraithProcess::spawn_command(setup.ssh.command(&all, &[]))
}

/// The list in `Permission denied (a,b).`, or panics naming the output.
fn denied_methods(stderr: &str) -> String {
    let start = stderr
        .find("Permission denied (")
        .unwrap_or_else(|| panic!("no \"Permission denied (...)\" in ssh stderr:\n{stderr}"))
        + "Permission denied (".len();
    let end = stderr[start..].find(')').expect("closing parenthesis") + start;
    stderr[start..end].to_owned()
}

#[test]
fn ssh_dynamic_forward_lets_curl_fetch_with_server_side_dns() {
    if !require_tools(&["ssh", "ssh-keygen", "curl"]) {
        return;
    }
    let setup = setup();
    let http = http_target();
    let socks = local(free_port());
    let ssh = ssh_forwarding(&setup, &["-D", &socks.to_string()]);
    ssh.wait_for_port(socks, TIMEOUT);

    // socks5h sends the name "localhost" unresolved; the server resolves it.
    let out = curl_socks5h(socks, &format!("http://localhost:{}/", http.port()));
    let body = expect_success(&out, "curl --socks5-hostname through ssh -D");
    assert_eq!(body, HTTP_BODY);
    assert!(http.accepted() >= 1, "the http target saw no connection");
}

#[test]
fn ssh_local_forward_round_trips_bytes_with_a_wraith_generated_key() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    // The client key comes from `wraith keygen`: OpenSSH must be able to
    // load the private key wraith writes.
    let dir = temp_dir();
    let key = keygen(dir.path(), "client");
    let setup = setup_with_key(dir, key);
    let echo = echo_target();
    let forward = local(free_port());
    let ssh = ssh_forwarding(
        &setup,
        &["-L", &format!("{forward}:127.0.0.1:{}", echo.port())],
    );
    ssh.wait_for_port(forward, TIMEOUT);

    echo_round_trip(forward, 1 << 20);
    echo_round_trip(forward, 1);
}

#[test]
fn ssh_remote_forward_on_port_zero_reaches_client_side_echo_server() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let echo = echo_target();
    // The 3-part form: ssh asks the server to bind "localhost".
    let ssh = ssh_forwarding(&setup, &["-R", &format!("0:127.0.0.1:{}", echo.port())]);
    let line = ssh.wait_for_stderr(&["Allocated port "], TIMEOUT);
    let port: u16 = line
        .split_whitespace()
        .nth(2)
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the port in {line:?}"));
    assert_ne!(port, 0);

    let before = echo.accepted();
    echo_round_trip(("localhost", port), 256 * 1024);
    assert!(
        echo.accepted() > before,
        "the client-side echo server saw no connection"
    );
}

#[test]
fn ssh_remote_forward_on_fixed_port_reaches_client_side_echo_server() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let echo = echo_target();
    let port = free_port();
    let ssh = ssh_forwarding(
        &setup,
        &["-R", &format!("127.0.0.1:{port}:127.0.0.1:{}", echo.port())],
    );
    // The server binds the port only after ssh's request; poll for it.
    ssh.wait_for_port(local(port), TIMEOUT);

    echo_round_trip(local(port), 256 * 1024);
}

#[test]
fn ssh_stdio_forward_round_trips_bytes() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let echo = echo_target();
    let mut child = setup
        .ssh
        .command(&["-W", &format!("127.0.0.1:{}", echo.port())], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ssh -W");
    let stderr = {
        let mut pipe = child.stderr.take().expect("stderr");
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let payload = pseudo_random_bytes(512 * 1024, 11);
    let mut stdin = child.stdin.take().expect("stdin");
    let to_send = payload.clone();
    // Hand stdin back so it stays open until every byte has come back:
    // this test is about the byte stream, not about half-close.
    let writer = thread::spawn(move || stdin.write_all(&to_send).map(|()| stdin));
    let mut stdout = child.stdout.take().expect("stdout");
    let (done, received) = mpsc::channel();
    let len = payload.len();
    thread::spawn(move || {
        let mut buf = vec![0u8; len];
        let result = read_exact_by(&mut stdout, &mut buf, Instant::now() + TIMEOUT);
        let _ = done.send(result.map(|()| buf));
    });
    let got = received.recv_timeout(TIMEOUT);
    let got = match got {
        Ok(Ok(bytes)) => bytes,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ssh -W did not echo {len} bytes ({other:?})\n--- ssh stderr ---\n{}\n--- server ---\n{}",
                stderr.join().unwrap_or_default(),
                setup.server.process.stderr_text()
            );
        }
    };
    assert_same_bytes(&got, &payload, "ssh -W echo");

    // Closing stdin ends the channel; ssh must then exit on its own.
    drop(writer.join().expect("writer thread").expect("write to ssh"));
    let status = wait_child(&mut child, TIMEOUT);
    let stderr = stderr.join().unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("ssh -W kept running after its stdin closed\n{stderr}"));
    assert!(status.success(), "ssh -W exited with {status}\n{stderr}");
}

#[test]
fn ssh_stdio_forward_delivers_every_byte_then_eof_from_target() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let data = Arc::new(pseudo_random_bytes(2 * 1024 * 1024 + 17, 23));
    let source = source_target(Arc::clone(&data));
    // When the target closes, ssh -W must see EOF and exit with every byte.
    let out = run(
        setup
            .ssh
            .command(&["-W", &format!("127.0.0.1:{}", source.port())], &[]),
        TIMEOUT,
    );
    assert!(out.status.success(), "ssh -W failed\n{}", show(&out));
    assert_same_bytes(&out.stdout, &data, "ssh -W from the source target");
}

#[test]
fn password_login_is_refused_and_only_publickey_is_offered() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let source = source_target(Arc::new(b"should never arrive".to_vec()));
    let out = run(
        setup.ssh.command(
            &[
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "PubkeyAuthentication=no",
                "-W",
                &format!("127.0.0.1:{}", source.port()),
            ],
            &[],
        ),
        TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "password-only ssh got in\n{}",
        show(&out)
    );
    assert!(
        out.stdout.is_empty(),
        "bytes flowed without auth\n{}",
        show(&out)
    );
    let methods = denied_methods(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        methods, "publickey",
        "the server offered other auth methods"
    );
    assert_eq!(source.accepted(), 0, "the target was dialed without auth");
}

#[test]
fn unauthorized_key_is_refused() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let stranger = ssh_keygen(setup.dir.path(), "stranger");
    let ssh = OpenSsh::new(
        setup.dir.path(),
        setup.server.addr,
        &setup.server.host_key,
        &stranger,
    );
    let source = source_target(Arc::new(b"should never arrive".to_vec()));
    // -W makes a wrongly accepted login finish at once instead of hanging.
    let out = run(
        ssh.command(&["-W", &format!("127.0.0.1:{}", source.port())], &[]),
        TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "unauthorized key got in\n{}",
        show(&out)
    );
    assert!(
        out.stdout.is_empty(),
        "bytes flowed without auth\n{}",
        show(&out)
    );
    denied_methods(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(source.accepted(), 0, "the target was dialed without auth");
}

#[test]
fn shell_and_exec_requests_are_refused() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let marker = setup.dir.path().join("exec-ran");
    let exec = format!("touch {}", marker.display());
    for remote_command in [&["true"][..], &[exec.as_str()][..], &[][..]] {
        // -T: no pty. With no command this asks for a shell.
        let out = run(setup.ssh.command(&["-T"], remote_command), TIMEOUT);
        assert!(
            !out.status.success(),
            "session request {remote_command:?} succeeded\n{}",
            show(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "the refusal must be of the session, not of the key\n{}",
            show(&out)
        );
    }
    assert!(!marker.exists(), "a remote command was executed");
}

#[test]
fn auth_attempts_are_logged_with_user_fingerprint_and_result() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let stranger = ssh_keygen(setup.dir.path(), "stranger");
    let source = source_target(Arc::new(b"hello".to_vec()));
    let target = format!("127.0.0.1:{}", source.port());

    let good = run(setup.ssh.command(&["-W", &target], &[]), TIMEOUT);
    assert_eq!(
        expect_success(&good, "ssh -W with the authorized key"),
        "hello"
    );
    let bad_ssh = OpenSsh::new(
        setup.dir.path(),
        setup.server.addr,
        &setup.server.host_key,
        &stranger,
    );
    let bad = run(bad_ssh.command(&["-W", &target], &[]), TIMEOUT);
    assert!(!bad.status.success(), "{}", show(&bad));

    let server = &setup.server.process;
    let user = format!("user={}", current_user());
    let good_fp = format!("key_fingerprint={}", fingerprint(&setup.client_key));
    let bad_fp = format!("key_fingerprint={}", fingerprint(&stranger));
    let accept = server.wait_for_stderr(&["auth attempt", &good_fp, "result=accept"], TIMEOUT);
    assert!(accept.contains("remote_addr=127.0.0.1"), "{accept}");
    assert!(accept.contains(&user), "{accept}");
    server.wait_for_stderr(&["auth attempt", &bad_fp, "result=reject"], TIMEOUT);
    server.wait_for_stderr(
        &[
            "connection opened",
            "remote_addr=127.0.0.1",
            "transport=tcp",
        ],
        TIMEOUT,
    );
    server.wait_for_stderr(
        &["connection closed", "remote_addr=127.0.0.1", "duration="],
        TIMEOUT,
    );

    let log = server.stderr_text();
    assert!(
        find_line(&log, &[&bad_fp, "result=accept"]).is_none(),
        "the unauthorized key was logged as accepted:\n{log}"
    );
}

#[test]
fn refused_target_closes_only_its_channel() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let setup = setup();
    let echo = echo_target();
    let dead_port = free_port(); // nothing listens there
    let to_dead = local(free_port());
    let to_echo = local(free_port());
    let ssh = ssh_forwarding(
        &setup,
        &[
            "-L",
            &format!("{to_dead}:127.0.0.1:{dead_port}"),
            "-L",
            &format!("{to_echo}:127.0.0.1:{}", echo.port()),
        ],
    );
    ssh.wait_for_port(to_echo, TIMEOUT);
    ssh.wait_for_port(to_dead, TIMEOUT);

    // The failed channel closes the local connection promptly (read timeout
    // is TIMEOUT: a hang fails the test) ...
    let mut stream = connect(to_dead);
    let mut buf = [0u8; 16];
    let closed = match stream.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    assert!(closed, "a connection to a refused target was left open");
    // ... and the session and its other forwards live on.
    echo_round_trip(to_echo, 64 * 1024);
    assert!(ssh.try_status().is_none(), "{}", ssh.failure("ssh exited"));
}
