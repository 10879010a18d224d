//! `wraith connect --http-proxy` against real curl: plain `http://`
//! requests forwarded as a proxy would, CONNECT tunnels (`--proxytunnel`),
//! and the statuses for what cannot be carried.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};

use common::*;

fn curl_via(proxy: SocketAddr, extra: &[&str], url: &str) -> Output {
    let mut cmd = Command::new("curl");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.args([
        "-q",
        "--silent",
        "--show-error",
        "--max-time",
        "15",
        "--noproxy",
        "",
    ])
    .args(["--proxy", &format!("http://{proxy}")])
    .args(extra)
    .arg(url);
    run(cmd, TIMEOUT)
}

fn http_proxy_addr(client: &WraithClient) -> SocketAddr {
    let line = client
        .process
        .wait_for_line("http proxy listening on ", TIMEOUT);
    addr_after(&line, "http proxy listening on ")
}

/// Sends `request` to the proxy and returns its status line.
fn status_line(proxy: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn curl_through_the_http_proxy_forwards_and_tunnels() {
    if !require_tool("curl") {
        return;
    }
    let dir = temp_dir();
    let key = keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&key]);
    let client = WraithClient::start(
        server.addr,
        &key,
        &server.host_pub_arg(),
        &["--http-proxy", "127.0.0.1:0"],
    );
    let proxy = http_proxy_addr(&client);
    let target = http_target();
    // A plain request, by name: the name is resolved on the server.
    let url = format!("http://localhost:{}/page", target.port());
    let out = curl_via(proxy, &[], &url);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        HTTP_BODY,
        "{}",
        show(&out)
    );
    // CONNECT, as for https:// (and for any URL with --proxytunnel).
    let out = curl_via(proxy, &["--proxytunnel"], &url);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        HTTP_BODY,
        "{}",
        show(&out)
    );
    // What cannot be carried gets its status, not a hang.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = format!("CONNECT 127.0.0.1:{closed} HTTP/1.1\r\n\r\n");
    assert!(status_line(proxy, refused.as_bytes()).starts_with("HTTP/1.1 502 "));
    assert!(status_line(proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(status_line(proxy, b"GET https://h/ HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
    let huge = format!(
        "GET http://h/ HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert!(status_line(proxy, huge.as_bytes()).starts_with("HTTP/1.1 431 "));
}

#[test]
fn a_key_limited_by_permitopen_gets_403() {
    let dir = temp_dir();
    let key = keygen(dir.path(), "client");
    let ak = dir.path().join("ak");
    std::fs::write(
        &ak,
        format!("permitopen=\"db:5432\" {}\n", public_key_line(&key)),
    )
    .unwrap();
    let server = WraithServer::start_with_file(dir.path(), ak, &[], &[]);
    let client = WraithClient::start(
        server.addr,
        &key,
        &server.host_pub_arg(),
        &["--http-proxy", "127.0.0.1:0"],
    );
    let proxy = http_proxy_addr(&client);
    let line = status_line(proxy, b"CONNECT elsewhere:80 HTTP/1.1\r\n\r\n");
    assert!(line.starts_with("HTTP/1.1 403 "), "{line}");
}

/// `git` with the proxy as its only route, from the variables apt, git and
/// pip honour.
fn git_via(proxy: Option<SocketAddr>, args: &[&str], cwd: &std::path::Path) -> Output {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .current_dir(cwd);
    if let Some(p) = proxy {
        cmd.env("http_proxy", format!("http://{p}"))
            .env("HTTP_PROXY", format!("http://{p}"));
    }
    cmd.args(args);
    run(cmd, TIMEOUT)
}

#[test]
fn git_clones_over_http_through_the_http_proxy() {
    if !require_tools(&["git", "python3"]) {
        return;
    }
    let dir = temp_dir();
    let root = dir.path();
    // A repository with a commit, published as a bare repository for git's
    // plain-HTTP ("dumb") protocol under a static web server.
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let readme = pseudo_random_bytes(200_000, 9)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    std::fs::write(work.join("README"), &readme).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "README"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "-m",
            "first",
        ],
    ] {
        expect_success(&git_via(None, args, &work), "git in the work tree");
    }
    let web = root.join("web");
    std::fs::create_dir_all(&web).unwrap();
    expect_success(
        &git_via(
            None,
            &["clone", "-q", "--bare", "work", "web/repo.git"],
            root,
        ),
        "git clone --bare",
    );
    expect_success(
        &git_via(
            None,
            &["--git-dir", "web/repo.git", "update-server-info"],
            root,
        ),
        "git update-server-info",
    );
    let port = free_port();
    let mut http = Command::new("python3");
    http.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .current_dir(&web);
    let http = WraithProcess::spawn_command(http);
    http.wait_for_port(("127.0.0.1", port), TIMEOUT);

    let key = keygen(root, "client");
    let server = WraithServer::start(root, &[&key]);
    let client = WraithClient::start(
        server.addr,
        &key,
        &server.host_pub_arg(),
        &["--http-proxy", "127.0.0.1:0"],
    );
    let proxy = http_proxy_addr(&client);
    let url = format!("http://127.0.0.1:{port}/repo.git");
    expect_success(
        &git_via(Some(proxy), &["clone", "-q", &url, "cloned"], root),
        "git clone through --http-proxy",
    );
    let got = std::fs::read_to_string(root.join("cloned/README")).unwrap();
    assert!(got == readme, "the clone's README differs");
    // git went through the proxy: with the tunnel gone the same clone fails.
    client.process.kill();
    let out = git_via(Some(proxy), &["clone", "-q", &url, "again"], root);
    assert!(
        !out.status.success(),
        "git did not use the proxy: {}",
        show(&out)
    );
}

#[test]
fn curl_reaches_an_https_site_through_connect() {
    if !require_tools(&["curl", "openssl"]) {
        return;
    }
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "certs");
    // A real HTTPS server: openssl's test server answering GET with a page
    // about the TLS session.
    let port = free_port();
    let mut https = Command::new("openssl");
    https
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&certs.cert)
        .arg("-key")
        .arg(&certs.key);
    let https = WraithProcess::spawn_command(https);
    https.wait_for_port(("127.0.0.1", port), TIMEOUT);

    let key = keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&key]);
    let client = WraithClient::start(
        server.addr,
        &key,
        &server.host_pub_arg(),
        &["--http-proxy", "127.0.0.1:0"],
    );
    let proxy = http_proxy_addr(&client);
    let url = format!("https://localhost:{port}/");
    let cacert = certs.ca.to_str().unwrap().to_string();
    let out = curl_via(proxy, &["--cacert", &cacert, "--fail"], &url);
    let page = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && page.contains("Cipher"),
        "{}",
        show(&out)
    );
}
