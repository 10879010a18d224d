//! End to end: `wraith serve --proxy` reaches every tunnel target through a
//! real upstream proxy — microsocks (SOCKS5, names sent unresolved) and
//! tinyproxy (HTTP CONNECT) — and the proxies' own logs show the target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn start_microsocks() -> (WraithProcess, u16) {
    let port = free_port();
    let mut cmd = Command::new("microsocks");
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    let process = WraithProcess::spawn_command(cmd);
    process.wait_for_port(("127.0.0.1", port), TIMEOUT);
    (process, port)
}

fn start_tinyproxy(dir: &Path) -> (WraithProcess, u16, PathBuf) {
    let port = free_port();
    let log = dir.join(unique("tinyproxy.log"));
    let conf = dir.join(unique("tinyproxy.conf"));
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\n",
            log.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("tinyproxy");
    cmd.arg("-d").arg("-c").arg(&conf);
    let process = WraithProcess::spawn_command(cmd);
    process.wait_for_port(("127.0.0.1", port), TIMEOUT);
    (process, port, log)
}

/// A server using `proxy_url` and a client; curl fetches the HTTP target by
/// name through the tunnel. Returns the target's port.
fn fetch_through(proxy_url: &str) -> u16 {
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let server = WraithServer::start_with(dir.path(), &[&client_key], &["--proxy", proxy_url], &[]);
    let client = WraithClient::start(server.addr, &client_key, &server.host_pub_arg(), &[]);
    let target = http_target();
    let out = curl_socks5h(
        client.socks5,
        &format!("http://localhost:{}/", target.port()),
    );
    let body = expect_success(&out, "curl through the tunnel and the outbound proxy");
    assert_eq!(body, HTTP_BODY);
    assert!(target.accepted() >= 1);
    target.port()
}

#[test]
fn outbound_socks5_proxy_gets_the_name_unresolved() {
    if !require_tools(&["microsocks", "ssh-keygen", "curl"]) {
        return;
    }
    let (proxy, port) = start_microsocks();
    let target_port = fetch_through(&format!("socks5://127.0.0.1:{port}"));
    // microsocks logs each client with the host it was asked for.
    let text = proxy.raw_output();
    assert!(
        text.contains("localhost") || text.contains(&format!(":{target_port}")),
        "microsocks did not see the target:\n{text}"
    );
}

#[test]
fn outbound_http_connect_proxy_is_used() {
    if !require_tools(&["tinyproxy", "ssh-keygen", "curl"]) {
        return;
    }
    let dir = temp_dir();
    let (_proxy, port, log) = start_tinyproxy(dir.path());
    let target_port = fetch_through(&format!("http://127.0.0.1:{port}"));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("CONNECT") && text.contains(&format!("localhost:{target_port}")),
        "tinyproxy's log does not show the CONNECT:\n{text}"
    );
}

#[test]
fn unreachable_outbound_proxy_fails_the_channel_not_the_session() {
    if !require_tools(&["ssh-keygen", "curl"]) {
        return;
    }
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let dead = format!("socks5://127.0.0.1:{}", free_port());
    let server = WraithServer::start_with(dir.path(), &[&client_key], &["--proxy", &dead], &[]);
    let client = WraithClient::start(server.addr, &client_key, &server.host_pub_arg(), &[]);
    let target = http_target();
    let out = curl_socks5h(
        client.socks5,
        &format!("http://localhost:{}/", target.port()),
    );
    assert!(!out.status.success(), "no proxy, no connection");
    assert_eq!(
        target.accepted(),
        0,
        "the server must not fall back to a direct dial"
    );
    assert!(
        client.process.try_status().is_none(),
        "the session lives on"
    );
}
