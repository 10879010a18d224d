//! End to end: `wraith connect` given several servers, each with its own
//! transport (`--server 127.0.0.1:A --server tls://localhost:B`). It uses
//! the first that works; when that one dies it moves to the next with its
//! listeners still bound, and back again, whether the first server dies
//! (its port closed) or its network silently drops every packet (a network
//! namespace whose link is taken down); a server whose host key does not
//! match is skipped, never trusted.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "tls")]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// `wraith serve` on a fixed port with the given host key; `extra` picks
/// the transport.
fn serve(host_key: &Path, authorized: &Path, port: u16, extra: &[&str]) -> WraithProcess {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--key",
        p(host_key),
        "--authorized-keys",
        p(authorized),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let server = WraithProcess::spawn(&args);
    server.wait_for_line("listening on ", TIMEOUT);
    server
}

fn curl_works(socks: SocketAddr, what: &str) {
    let target = http_target();
    curl_url_works(socks, &format!("http://localhost:{}/", target.port()), what);
}

fn curl_url_works(socks: SocketAddr, url: &str, what: &str) {
    let out = curl_socks5h(socks, url);
    assert_eq!(expect_success(&out, what), HTTP_BODY, "{what}");
}

/// Waits until the client's log says `connected to <server>` for the
/// `n`th time.
fn wait_connected(client: &WraithProcess, server: &str, n: usize) {
    wait_connected_within(client, server, n, TIMEOUT * 3);
}

/// [`wait_connected`] with its own bound.
fn wait_connected_within(client: &WraithProcess, server: &str, n: usize, bound: Duration) {
    let needle = format!("connected to {server}");
    let deadline = Instant::now() + bound;
    while client.stderr_text().matches(&needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "{}",
            client.failure(&format!("no {n} x {needle:?} within {bound:?}"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn socks_fails_over_from_tcp_to_tls_and_back() {
    if !require_tools(&["openssl", "curl"]) {
        return;
    }
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "certs");
    let host_key = keygen(dir.path(), "host");
    let client_key = keygen(dir.path(), "client");
    let authorized = dir.path().join("authorized_keys");
    write_authorized_keys(&authorized, &[&client_key]);
    let (pa, pb) = (free_port(), free_port());
    let tls = [
        "--transport",
        "tls",
        "--tls-cert",
        p(&certs.cert),
        "--tls-key",
        p(&certs.key),
    ];
    let a = serve(&host_key, &authorized, pa, &[]);
    let b = serve(&host_key, &authorized, pb, &tls);

    let (server_a, server_b) = (format!("127.0.0.1:{pa}"), format!("tls://localhost:{pb}"));
    let user = current_user();
    let host_pub = pub_path(&host_key);
    let client = WraithClient::ready(WraithProcess::spawn(&[
        "connect",
        "--server",
        &server_a,
        "--server",
        &server_b,
        "--tls-ca",
        p(&certs.ca),
        "--identity",
        p(&client_key),
        "--host-key",
        p(&host_pub),
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
        "--keepalive-interval",
        "2",
    ]));
    curl_works(client.socks5, "through A");
    a.wait_for_stderr(&["connection opened", "transport=tcp"], TIMEOUT);

    // A dies: the same SOCKS5 port now goes through B, over TLS, within
    // the keepalive bound (2 s x (3 + 1)) plus the first backoff step (1 s),
    // with slack for a loaded 2-core machine running debug builds. (A
    // closed port is noticed at once; the silent case is the test below.)
    let bound = Duration::from_secs(2 * 4 + 1 + 4);
    a.kill();
    wait_connected_within(&client.process, &format!("tls://localhost:{pb}"), 1, bound);
    curl_works(client.socks5, "through B after A died");
    b.wait_for_stderr(&["connection opened", "transport=tls"], TIMEOUT);

    // A is back and B dies: the client returns to A.
    let a2 = serve(&host_key, &authorized, pa, &[]);
    b.kill();
    wait_connected_within(&client.process, &server_a, 2, bound);
    curl_works(client.socks5, "through A again after B died");
    a2.wait_for_stderr(&["connection opened", "transport=tcp"], TIMEOUT);
}

#[test]
fn a_server_with_another_host_key_is_skipped_with_a_clear_message() {
    if !require_tool("curl") {
        return;
    }
    let dir = temp_dir();
    let host_key = keygen(dir.path(), "host");
    let impostor_key = keygen(dir.path(), "impostor");
    let client_key = keygen(dir.path(), "client");
    let authorized = dir.path().join("authorized_keys");
    write_authorized_keys(&authorized, &[&client_key]);
    let (pi, pa) = (free_port(), free_port());
    let impostor = serve(&impostor_key, &authorized, pi, &[]);
    let _a = serve(&host_key, &authorized, pa, &[]);
    let user = current_user();
    let host_pub = pub_path(&host_key);
    let list = format!("127.0.0.1:{pi},tcp://127.0.0.1:{pa}");
    let client = WraithClient::ready(WraithProcess::spawn_env(
        &[
            "connect",
            "--identity",
            p(&client_key),
            "--host-key",
            p(&host_pub),
            "--user",
            &user,
            "--socks5",
            "127.0.0.1:0",
        ],
        &[("WRAITH_SERVER", &list)],
    ));
    curl_works(client.socks5, "through the server with the right key");
    let line = client
        .process
        .wait_for_stderr(&["host key", "trying the next server"], TIMEOUT);
    assert!(line.contains(&format!("127.0.0.1:{pi}")), "{line}");
    let stdout = client.process.stdout_text();
    assert!(
        stdout.contains(&format!("connected to 127.0.0.1:{pa}")),
        "{stdout}"
    );
    // The impostor saw the key exchange but never a login.
    assert!(
        !impostor.stderr_text().contains("result=accept"),
        "{}",
        impostor.stderr_text()
    );
}

/// Makes server A's side of the veth pair go away silently (no RST, no
/// FIN: its packets are simply dropped), or come back.
fn set_link(ns: &VethNetns, up: bool) {
    let state = if up { "up" } else { "down" };
    assert!(
        ns.ip(&["link", "set", &ns.ns_if, state]),
        "ip link set {state}"
    );
}

#[test]
fn a_silently_dropping_first_server_fails_over_to_the_second_and_back() {
    if !require_tools(&["openssl", "curl"]) {
        return;
    }
    // 10.219.0.0/16 is private and exists only on this veth pair.
    let Some(ns) = VethNetns::create("wf", 219, 0) else {
        return;
    };
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "certs");
    let host_key = keygen(dir.path(), "host");
    let client_key = keygen(dir.path(), "client");
    let authorized = dir.path().join("authorized_keys");
    write_authorized_keys(&authorized, &[&client_key]);

    // The HTTP target listens on this side's veth address: A reaches it
    // across the veth, B (on this side) locally, also while the link is
    // down.
    let target = TcpListener::bind((ns.host_ip.as_str(), 0)).expect("bind the target");
    let url = format!("http://{}/", target.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in target.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(TIMEOUT));
            std::thread::spawn(move || answer_http(stream));
        }
    });

    // A: tcp, inside the namespace, reached at its veth address.
    let port_a: u16 = 2222;
    let listen_a = format!("0.0.0.0:{port_a}");
    let mut cmd = ns.command(wraith_bin());
    cmd.args([
        "serve",
        "--key",
        p(&host_key),
        "--authorized-keys",
        p(&authorized),
        "--listen",
        &listen_a,
    ]);
    let a = WraithProcess::spawn_command(cmd);
    a.wait_for_line("listening on ", TIMEOUT);
    // B: tls, on loopback.
    let pb = free_port();
    let tls = [
        "--transport",
        "tls",
        "--tls-cert",
        p(&certs.cert),
        "--tls-key",
        p(&certs.key),
    ];
    let b = serve(&host_key, &authorized, pb, &tls);

    let (server_a, server_b) = (
        format!("{}:{port_a}", ns.ns_ip),
        format!("tls://localhost:{pb}"),
    );
    let user = current_user();
    let host_pub = pub_path(&host_key);
    let (interval, count_max) = (1u64, 2u64);
    let (interval_arg, count_max_arg) = (interval.to_string(), count_max.to_string());
    let client = WraithClient::ready(WraithProcess::spawn(&[
        "connect",
        "--server",
        &server_a,
        "--server",
        &server_b,
        "--tls-ca",
        p(&certs.ca),
        "--identity",
        p(&client_key),
        "--host-key",
        p(&host_pub),
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
        "--keepalive-interval",
        &interval_arg,
        "--keepalive-count-max",
        &count_max_arg,
        "--connect-timeout",
        "3",
    ]));
    wait_connected(&client.process, &server_a, 1);
    curl_url_works(client.socks5, &url, "through A");
    a.wait_for_stderr(&["connection opened", "transport=tcp"], TIMEOUT);

    // A's link goes down: nothing tells the client. The keepalives notice
    // (interval x (count-max + 1)), the first backoff step is 1 s, then B
    // answers at once on loopback; the rest is slack for a loaded 2-core
    // machine running debug builds.
    let keepalive_bound = Duration::from_secs(interval * (count_max + 1));
    let bound = keepalive_bound + Duration::from_secs(1) + Duration::from_secs(4);
    set_link(&ns, false);
    let cut = Instant::now();
    wait_connected_within(&client.process, &server_b, 1, bound);
    curl_url_works(client.socks5, &url, "through B after A's link went down");
    let moved = cut.elapsed();
    eprintln!("traffic through B {moved:?} after A's link went down (bound {bound:?})");
    assert!(
        moved < bound,
        "traffic reached B only after {moved:?} (bound {bound:?})"
    );
    b.wait_for_stderr(&["connection opened", "transport=tls"], TIMEOUT);
    let log = client.process.stderr_text();
    assert!(log.contains("lost:"), "{log}");

    // A's link is back and B dies: the client returns to A.
    set_link(&ns, true);
    b.kill();
    wait_connected(&client.process, &server_a, 2);
    curl_url_works(client.socks5, &url, "through A again after B died");
    assert!(
        a.stderr_text().matches("connection opened").count() >= 2,
        "{}",
        a.failure("A saw no second connection")
    );

    // One SOCKS5 listener, bound once, on the same port all along.
    assert!(
        client.process.try_status().is_none(),
        "the client must keep running"
    );
    let stdout = client.process.stdout_text();
    assert_eq!(
        stdout.matches("socks5 listening on ").count(),
        1,
        "{stdout}"
    );
}
