//! End to end: `wraith connect` given several servers, each with its own
//! transport (`--server 127.0.0.1:A --server tls://localhost:B`). It uses
//! the first that works; when that one dies it moves to the next with its
//! listeners still bound, and back again; a server whose host key does not
//! match is skipped, never trusted.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "tls")]

mod common;

use std::net::SocketAddr;
use std::path::Path;

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
    let out = curl_socks5h(socks, &format!("http://localhost:{}/", target.port()));
    assert_eq!(expect_success(&out, what), HTTP_BODY, "{what}");
}

/// Waits until the client's log says `connected to <server>` for the
/// `n`th time.
fn wait_connected(client: &WraithProcess, server: &str, n: usize) {
    let needle = format!("connected to {server}");
    let deadline = std::time::Instant::now() + TIMEOUT * 3;
    while client.stderr_text().matches(&needle).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            client.failure(&format!("no {n} x {needle:?}"))
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
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

    // A dies: the same SOCKS5 port now goes through B, over TLS.
    a.kill();
    wait_connected(&client.process, &format!("tls://localhost:{pb}"), 1);
    curl_works(client.socks5, "through B after A died");
    b.wait_for_stderr(&["connection opened", "transport=tls"], TIMEOUT);

    // A is back and B dies: the client returns to A.
    let a2 = serve(&host_key, &authorized, pa, &[]);
    b.kill();
    wait_connected(&client.process, &server_a, 2);
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
