//! End to end: the TLS transport and client `--proxy`, with certificates
//! made by the `openssl` CLI in each test, checked with `openssl s_client`,
//! and real upstream proxies (`microsocks`, `tinyproxy`).
//!
//! Outside CI a test is skipped when one of its tools is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "tls")]

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `sha256/<base64>` of the certificate's SubjectPublicKeyInfo, computed by
/// openssl (independently of wraith).
fn openssl_pin(cert: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl base64 -A",
        cert.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let out = expect_success(&run(cmd, TIMEOUT), "openssl pin pipeline");
    format!("sha256/{}", out.trim())
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A `wraith serve --transport tls` on 127.0.0.1.
pub struct TlsServer {
    pub process: WraithProcess,
    pub addr: SocketAddr,
    pub host_pub: String,
}

pub fn start_tls_server(dir: &Path, client_key: &Path, certs: &Certs, extra: &[&str]) -> TlsServer {
    let host_key = keygen(dir, &unique("host"));
    let authorized = dir.join(unique("authorized_keys"));
    write_authorized_keys(&authorized, &[client_key]);
    let mut args = vec![
        "serve",
        "--key",
        p(&host_key),
        "--authorized-keys",
        p(&authorized),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        p(&certs.cert),
        "--tls-key",
        p(&certs.key),
    ];
    // tls unless `extra` names another transport (wss).
    let scheme = match extra.iter().position(|a| *a == "--transport") {
        Some(i) => extra[i + 1],
        None => {
            args.extend(["--transport", "tls"]);
            "tls"
        }
    };
    args.extend_from_slice(extra);
    let process = WraithProcess::spawn(&args);
    let prefix = format!("listening on {scheme}://");
    let line = process.wait_for_line(&prefix, TIMEOUT);
    let addr = addr_after(&line, &prefix);
    TlsServer {
        process,
        addr,
        host_pub: p(&pub_path(&host_key)).to_owned(),
    }
}

/// Runs `wraith connect --transport tls` expecting exit code 1; returns stderr.
fn connect_fails(server: &TlsServer, key: &Path, server_arg: &str, extra: &[&str]) -> String {
    let user = current_user();
    let mut args = vec![
        "connect",
        "--server",
        server_arg,
        "--transport",
        "tls",
        "--identity",
        p(key),
        "--host-key",
        &server.host_pub,
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let client = WraithProcess::spawn(&args);
    let status = client.wait_exit(TIMEOUT);
    assert_eq!(
        status.code(),
        Some(1),
        "{}",
        client.failure("expected exit 1")
    );
    let stderr = client.stderr_text();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{stderr}");
    errors[0].to_owned()
}

struct Setup {
    certs: Certs,
    client_key: PathBuf,
    server: TlsServer,
    dir: tempfile::TempDir,
}

fn setup(extra: &[&str]) -> Option<Setup> {
    if !require_tools(&["openssl", "ssh-keygen", "curl"]) {
        return None;
    }
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "certs");
    let client_key = ssh_keygen(dir.path(), "client");
    let server = start_tls_server(dir.path(), &client_key, &certs, extra);
    Some(Setup {
        certs,
        client_key,
        server,
        dir,
    })
}

fn assert_socks_works(client: &WraithClient) {
    let target = http_target();
    let out = curl_socks5h(
        client.socks5,
        &format!("http://localhost:{}/", target.port()),
    );
    assert_eq!(
        expect_success(&out, "curl through the TLS tunnel"),
        HTTP_BODY
    );
}

#[test]
fn socks_works_over_tls_with_an_openssl_certificate() {
    let Some(s) = setup(&[]) else { return };
    let client = WraithClient::start(
        s.server.addr,
        &s.client_key,
        &s.server.host_pub,
        &["--transport", "tls", "--tls-ca", p(&s.certs.ca)],
    );
    assert_socks_works(&client);
    s.server
        .process
        .wait_for_stderr(&["connection opened", "transport=tls"], TIMEOUT);
    // The name form: SNI localhost, verified against the same CA.
    let by_name = format!("localhost:{}", s.server.addr.port());
    let user = current_user();
    let process = WraithProcess::spawn(&[
        "connect",
        "--server",
        &by_name,
        "--transport",
        "tls",
        "--tls-ca",
        p(&s.certs.ca),
        "--identity",
        p(&s.client_key),
        "--host-key",
        &s.server.host_pub,
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ]);
    let client = WraithClient::ready(process);
    assert_socks_works(&client);
}

#[test]
fn openssl_s_client_sees_the_certificate() {
    let Some(s) = setup(&[]) else { return };
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &s.server.addr.to_string(),
        "-servername",
        "localhost",
        "-CAfile",
        p(&s.certs.ca),
        "-verify_return_error",
        "-alpn",
        "http/1.1",
    ]);
    let out = run_with_input(cmd, b"", TIMEOUT);
    let text = expect_success(&out, "openssl s_client");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(
        text.contains("CN = localhost") || text.contains("CN=localhost"),
        "{text}"
    );
    assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
    // The certificate it saw is the one we configured.
    let served = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|t| t.split("-----END CERTIFICATE-----").next())
        .expect("s_client printed the certificate");
    let configured = fs::read_to_string(&s.certs.cert).expect("read cert");
    assert!(
        configured.contains(served.trim()),
        "served certificate differs"
    );
}

#[test]
fn tls_pin_accepts_the_right_key_and_rejects_another() {
    let Some(s) = setup(&[]) else { return };
    let pin = openssl_pin(&s.certs.cert);
    // A pin replaces the CA check: no --tls-ca needed.
    let client = WraithClient::start(
        s.server.addr,
        &s.client_key,
        &s.server.host_pub,
        &["--transport", "tls", "--tls-pin", &pin],
    );
    assert_socks_works(&client);

    let other = make_certs(s.dir.path(), "other");
    let wrong = openssl_pin(&other.cert);
    let err = connect_fails(
        &s.server,
        &s.client_key,
        &s.server.addr.to_string(),
        &["--tls-pin", &wrong],
    );
    assert!(err.contains("does not match --tls-pin"), "{err}");
    assert!(
        err.contains(&pin),
        "the message names the server's real pin: {err}"
    );
}

#[test]
fn untrusted_or_misnamed_certificates_fail_with_clear_messages() {
    let Some(s) = setup(&[]) else { return };
    let addr = s.server.addr.to_string();
    let err = connect_fails(&s.server, &s.client_key, &addr, &[]);
    assert!(
        err.contains("certificate not trusted (use --tls-ca or --tls-pin)"),
        "{err}"
    );
    let other = make_certs(s.dir.path(), "other");
    let err = connect_fails(&s.server, &s.client_key, &addr, &["--tls-ca", p(&other.ca)]);
    assert!(err.contains("certificate not trusted"), "{err}");
    let err = connect_fails(
        &s.server,
        &s.client_key,
        &addr,
        &[
            "--tls-ca",
            p(&s.certs.ca),
            "--tls-server-name",
            "www.example.org",
        ],
    );
    assert!(
        err.contains("not valid for www.example.org (use --tls-server-name)"),
        "{err}"
    );
}

#[test]
fn insecure_skips_the_certificate_check_but_not_the_host_key() {
    let Some(s) = setup(&[]) else { return };
    let client = WraithClient::start(
        s.server.addr,
        &s.client_key,
        &s.server.host_pub,
        &["--transport", "tls", "--insecure"],
    );
    client
        .process
        .wait_for_stderr(&["--insecure", "NOT checked"], TIMEOUT);
    assert_socks_works(&client);
    drop(client);

    // The SSH host key is still checked inside TLS.
    let stranger = keygen(s.dir.path(), "stranger");
    let user = current_user();
    let addr = s.server.addr.to_string();
    let process = WraithProcess::spawn(&[
        "connect",
        "--server",
        &addr,
        "--transport",
        "tls",
        "--insecure",
        "--identity",
        p(&s.client_key),
        "--host-key",
        p(&pub_path(&stranger)),
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ]);
    assert_eq!(process.wait_exit(TIMEOUT).code(), Some(1));
    assert!(
        process
            .stderr_text()
            .contains("host key verification failed"),
        "{}",
        process.failure("expected a host key failure")
    );
}

#[test]
fn tls_flags_need_the_tls_transport() {
    let dir = temp_dir();
    let key = keygen(dir.path(), "k");
    for (args, flag) in [
        (
            vec![
                "serve",
                "--key",
                p(&key),
                "--authorized-keys",
                p(&key),
                "--stealth",
            ],
            "--stealth needs --transport tls or wss",
        ),
        (
            vec![
                "connect",
                "--server",
                "127.0.0.1:1",
                "--identity",
                p(&key),
                "--insecure",
            ],
            "--insecure needs --transport tls or wss",
        ),
        (
            vec![
                "serve",
                "--key",
                p(&key),
                "--authorized-keys",
                p(&key),
                "--transport",
                "tls",
            ],
            "--transport tls needs --tls-cert and --tls-key, or --acme-domain / --acme-ip",
        ),
    ] {
        let out = run(wraith_command(&args), TIMEOUT);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim(), format!("error: {flag}"), "{}", show(&out));
    }
}

// ---------------------------------------------------------------------------
// --proxy

fn start_microsocks(auth: Option<(&str, &str)>) -> (WraithProcess, u16) {
    let port = free_port();
    let mut cmd = Command::new("microsocks");
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((u, pw)) = auth {
        cmd.args(["-u", u, "-P", pw]);
    }
    let process = WraithProcess::spawn_command(cmd);
    process.wait_for_port(("127.0.0.1", port), TIMEOUT);
    (process, port)
}

fn start_tinyproxy(dir: &Path, auth: Option<(&str, &str)>) -> (WraithProcess, u16, PathBuf) {
    let port = free_port();
    let log = dir.join(unique("tinyproxy.log"));
    let conf = dir.join(unique("tinyproxy.conf"));
    let mut text = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\n",
        log.display()
    );
    if let Some((u, pw)) = auth {
        text.push_str(&format!("BasicAuth {u} {pw}\n"));
    }
    fs::write(&conf, text).expect("write tinyproxy.conf");
    let mut cmd = Command::new("tinyproxy");
    cmd.arg("-d").arg("-c").arg(&conf);
    let process = WraithProcess::spawn_command(cmd);
    process.wait_for_port(("127.0.0.1", port), TIMEOUT);
    (process, port, log)
}

#[test]
fn proxy_through_microsocks_with_a_password() {
    if !require_tool("microsocks") {
        return;
    }
    let Some(s) = setup(&[]) else { return };
    let (_proxy, port) = start_microsocks(Some(("alice", "s3cret")));
    // The server is named, not an IP: the proxy resolves it (socks5h).
    let server = format!("localhost:{}", s.server.addr.port());
    let user = current_user();
    let proxy = format!("socks5://alice:s3cret@127.0.0.1:{port}");
    let process = WraithProcess::spawn(&[
        "connect",
        "--server",
        &server,
        "--transport",
        "tls",
        "--tls-ca",
        p(&s.certs.ca),
        "--proxy",
        &proxy,
        "--identity",
        p(&s.client_key),
        "--host-key",
        &s.server.host_pub,
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ]);
    let client = WraithClient::ready(process);
    assert_socks_works(&client);
    drop(client);

    // Without the password the proxy refuses, and the message says so.
    let no_auth = format!("socks5://127.0.0.1:{port}");
    let err = connect_fails(
        &s.server,
        &s.client_key,
        &server,
        &["--tls-ca", p(&s.certs.ca), "--proxy", &no_auth],
    );
    assert!(
        err.contains("--proxy") && err.contains("user:pass@"),
        "{err}"
    );
}

#[test]
fn proxy_through_microsocks_for_the_tcp_transport() {
    if !require_tools(&["microsocks", "ssh-keygen", "curl"]) {
        return;
    }
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&client_key]);
    let (_proxy, port) = start_microsocks(None);
    let proxy = format!("socks5://127.0.0.1:{port}");
    let client = WraithClient::start(
        server.addr,
        &client_key,
        &server.host_pub_arg(),
        &["--proxy", &proxy],
    );
    assert_socks_works(&client);
}

#[test]
fn proxy_through_tinyproxy_http_connect() {
    if !require_tool("tinyproxy") {
        return;
    }
    let Some(s) = setup(&[]) else { return };
    let (_proxy, port, log) = start_tinyproxy(s.dir.path(), Some(("bob", "pw")));
    let server = format!("localhost:{}", s.server.addr.port());
    let user = current_user();
    let proxy = format!("http://bob:pw@127.0.0.1:{port}");
    let process = WraithProcess::spawn(&[
        "connect",
        "--server",
        &server,
        "--transport",
        "tls",
        "--tls-ca",
        p(&s.certs.ca),
        "--proxy",
        &proxy,
        "--identity",
        p(&s.client_key),
        "--host-key",
        &s.server.host_pub,
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ]);
    let client = WraithClient::ready(process);
    assert_socks_works(&client);
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains(&format!("CONNECT localhost:{}", s.server.addr.port())),
        "tinyproxy did not log the CONNECT:\n{logged}"
    );
    drop(client);

    let no_auth = format!("http://127.0.0.1:{port}");
    let err = connect_fails(
        &s.server,
        &s.client_key,
        &server,
        &["--tls-ca", p(&s.certs.ca), "--proxy", &no_auth],
    );
    assert!(err.contains("407"), "{err}");
    assert!(err.contains("add user:pass@ to --proxy"), "{err}");
}

// ---------------------------------------------------------------------------
// Stealth: side by side with a real nginx

/// Seconds both nginx (`client_header_timeout`) and wraith
/// (`--stealth-timeout`) give a client, kept short so silence is testable.
const HEADER_TIMEOUT: &str = "3";

/// A Debian nginx on a loopback port with the test certificate: the
/// packaged `nginx.conf` http settings, TLS without http2 (as the packaged
/// default site's commented `listen 443 ssl` line), and a default server
/// that answers 404 to everything.
struct Nginx {
    _process: WraithProcess,
    addr: SocketAddr,
}

fn start_nginx(dir: &Path, certs: &Certs) -> Nginx {
    let nginx = start_nginx_with(dir, |_, port| {
        format!(
            "sendfile on;\n\
             tcp_nopush on;\n\
             types_hash_max_size 2048;\n\
             include /etc/nginx/mime.types;\n\
             default_type application/octet-stream;\n\
             ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\n\
             ssl_prefer_server_ciphers on;\n\
             access_log off;\n\
             gzip on;\n\
             client_header_timeout {HEADER_TIMEOUT}s;\n\
             server {{\n\
               listen 127.0.0.1:{port} ssl default_server;\n\
               server_name _;\n\
               ssl_certificate {cert};\n\
               ssl_certificate_key {key};\n\
               location / {{ return 404; }}\n\
             }}\n",
            cert = certs.cert.display(),
            key = certs.key.display(),
        )
    });
    Nginx {
        _process: nginx.process,
        addr: nginx.addr,
    }
}

/// A blocking TLS client trusting the test CA, offering ALPN like a browser.
fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
) -> (
    rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    Option<Vec<u8>>,
) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(c.expect("CA pem")).expect("add CA");
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let tcp = connect(addr);
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
    }
    let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
    (tls, alpn)
}

/// What a server did with one probe: everything it sent until it closed,
/// Date headers blanked. A keep-alive answer is followed by a second
/// request with `Connection: close`, so every transcript ends in a close.
fn probe(addr: SocketAddr, ca: &Path, request: &[u8]) -> (String, Option<Vec<u8>>) {
    use std::io::{Read, Write};
    let (mut tls, alpn) = tls_connect(addr, ca);
    if !request.is_empty() {
        tls.write_all(request).expect("send probe");
        tls.flush().expect("flush probe");
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut followed_up = false;
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // An EOF without close_notify (nginx after a timeout) is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the answer from {addr}: {e} after {got:?}"),
        }
        if !followed_up && complete_keep_alive(&got, request) {
            followed_up = true;
            tls.write_all(b"GET /again HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .expect("send follow-up");
            tls.flush().expect("flush follow-up");
        }
    }
    (blank_dates(&got).escape_ascii().to_string(), alpn)
}

/// True when `got` holds complete responses to every request of `sent` and
/// the last one keeps the connection open.
fn complete_keep_alive(got: &[u8], sent: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let expected = String::from_utf8_lossy(sent)
        .matches(" HTTP/1.")
        .count()
        .max(1);
    let mut rest: &str = &text;
    let mut last_keep_alive = false;
    for _ in 0..expected {
        let Some(end) = rest.find("\r\n\r\n") else {
            return false;
        };
        let head = &rest[..end];
        if head.contains("Transfer-Encoding: chunked") {
            // Only nginx's one-chunk gzip bodies occur here.
            let Some(stop) = rest[end..].find("\r\n0\r\n\r\n") else {
                return false;
            };
            last_keep_alive = head.contains("Connection: keep-alive");
            rest = &rest[end + stop + 7..];
            continue;
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let body = if sent.starts_with(b"HEAD ") { 0 } else { len };
        if rest.len() < end + 4 + body {
            return false;
        }
        last_keep_alive = head.contains("Connection: keep-alive");
        rest = &rest[end + 4 + body..];
    }
    last_keep_alive && rest.is_empty()
}

fn blank_dates(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(i) = rest.windows(8).position(|w| w == b"\r\nDate: ") {
        out.extend_from_slice(&rest[..i + 8]);
        out.push(b'-');
        rest = &rest[i + 8..];
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    out
}

/// What scanners and curious people send.
fn probes() -> Vec<(&'static str, Vec<u8>)> {
    let mut long_uri = b"GET /".to_vec();
    long_uri.extend(std::iter::repeat_n(b'a', 9000));
    long_uri.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let random: Vec<u8> = pseudo_random_bytes(64, 7);
    // Heads at and past nginx's header buffers (1k, then 4 x 8k).
    let sized = |line: usize, len: usize, n: usize| -> Vec<u8> {
        let mut r = b"GET /".to_vec();
        r.extend(std::iter::repeat_n(b'a', line - 16));
        r.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n");
        for i in 0..n {
            let name = format!("X-{i}: ");
            r.extend_from_slice(name.as_bytes());
            r.extend(std::iter::repeat_n(b'b', len - name.len() - 2));
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r
    };
    let mut blank_then_get = b"\r\n".repeat(2500);
    blank_then_get.extend_from_slice(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut long_header = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: ".to_vec();
    long_header.extend(std::iter::repeat_n(b'a', 9000));
    long_header.extend_from_slice(b"\r\n\r\n");
    vec![
        ("blank-line flood", b"\r\n".repeat(512 * 1024)),
        ("blank lines, then a request", blank_then_get),
        ("request line of 8192 bytes", sized(8192, 100, 1)),
        ("request line of 8193 bytes", sized(8193, 100, 1)),
        ("over-long header line", long_header),
        ("three 8191-byte headers", sized(100, 8191, 3)),
        ("four 8191-byte headers", sized(100, 8191, 4)),
        ("333 headers of 100 bytes", sized(100, 100, 333)),
        ("too many headers", sized(100, 100, 2000)),
        ("GET missing page", b"GET /wp-login.php HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n".to_vec()),
        ("GET /", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("HEAD", b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("POST with body", b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nuser=a&pw=b".to_vec()),
        ("POST chunked", b"POST /api HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("HTTP/0.9", b"GET /\r\n".to_vec()),
        ("bad request line", b"HELLO WORLD\r\n\r\n".to_vec()),
        ("lowercase method", b"get / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n".to_vec()),
        ("path traversal", b"GET /../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("unknown transfer encoding", b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec()),
        ("long URI", long_uri),
        ("Chrome user agent", b"GET /favicon.ico HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\r\n".to_vec()),
        ("pipelined", b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("SSH-1 banner", b"SSH-1.5-probe\r\n".to_vec()),
        ("gzip", b"GET /x HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n".to_vec()),
        ("browser", b"GET /robots.txt HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\nAccept: text/html\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n".to_vec()),
        ("Firefox", b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\r\n".to_vec()),
        ("HEAD gzip", b"HEAD / HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n".to_vec()),
        ("gzip q=0", b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip;q=0, identity\r\n\r\n".to_vec()),
        ("gzip through a proxy", b"GET / HTTP/1.1\r\nHost: localhost\r\nVia: 1.1 squid\r\nAccept-Encoding: gzip\r\n\r\n".to_vec()),
        ("random bytes", random),
        ("partial request, then silence", b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec()),
        ("silence", Vec::new()),
    ]
}

fn stealth_setup(extra: &[&str]) -> Option<Setup> {
    let mut args = vec!["--stealth", "--stealth-timeout", HEADER_TIMEOUT];
    args.extend_from_slice(extra);
    setup(&args)
}

#[test]
fn stealth_answers_like_nginx() {
    if !require_tool("nginx") {
        return;
    }
    let Some(s) = stealth_setup(&[]) else { return };
    let nginx = start_nginx(s.dir.path(), &s.certs);
    let ca = s.certs.ca.clone();
    let wraith = s.server.addr;
    // Probes run in parallel: the silent ones each wait out the timeout.
    let handles: Vec<_> = probes()
        .into_iter()
        .map(|(name, req)| {
            let ca = ca.clone();
            let nginx = nginx.addr;
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let expected = probe(nginx, &ca, &req);
                let nginx_took = started.elapsed();
                let started = std::time::Instant::now();
                let got = probe(wraith, &ca, &req);
                (name, expected, nginx_took, got, started.elapsed())
            })
        })
        .collect();
    for h in handles {
        let (name, (expected, nginx_alpn), nginx_took, (got, alpn), took) =
            h.join().expect("probe thread");
        assert_eq!(alpn, nginx_alpn, "{name}: negotiated ALPN differs");
        assert_eq!(
            got, expected,
            "{name}: wraith --stealth answered unlike nginx"
        );
        // Closing on silence happens after the same timeout, not at once.
        if expected.is_empty() {
            assert!(
                nginx_took.as_secs_f64() > 2.5 && took.as_secs_f64() > 2.5,
                "{name}: nginx closed after {nginx_took:?}, wraith after {took:?}"
            );
        }
    }
    assert!(
        !s.server.process.stderr_text().contains("connection opened"),
        "a probe reached SSH:\n{}",
        s.server.process.stderr_text()
    );
}

#[test]
fn stealth_keeps_ssh_working_and_the_server_speaks_second() {
    let Some(s) = stealth_setup(&[]) else { return };
    let client = WraithClient::start(
        s.server.addr,
        &s.client_key,
        &s.server.host_pub,
        &["--transport", "tls", "--tls-ca", p(&s.certs.ca)],
    );
    assert_socks_works(&client);

    use std::io::{Read, Write};
    let (mut tls, alpn) = tls_connect(s.server.addr, &s.certs.ca);
    assert_eq!(
        alpn.as_deref(),
        Some(&b"http/1.1"[..]),
        "stealth offers http/1.1 only"
    );
    // The server says nothing before the client's banner...
    tls.sock
        .set_read_timeout(Some(std::time::Duration::from_millis(700)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    match tls.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the stealth server spoke first: {other:?}"),
    }
    // ...and answers with its own once the client has sent one.
    tls.sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    tls.write_all(b"SSH-2.0-probe_1.0\r\n")
        .expect("send banner");
    tls.flush().expect("flush");
    let n = tls.read(&mut buf).expect("read banner");
    let banner = String::from_utf8_lossy(&buf[..n]);
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");
}

#[test]
fn nmap_does_not_see_ssh_behind_stealth() {
    if !require_tool("nmap") {
        return;
    }
    let Some(s) = stealth_setup(&[]) else { return };
    let port = s.server.addr.port().to_string();
    let mut cmd = Command::new("nmap");
    cmd.args([
        "-sV",
        "-Pn",
        "-n",
        "--version-intensity",
        "5",
        "--host-timeout",
        "90s",
        "-p",
        &port,
        "-oG",
        "-",
        "127.0.0.1",
    ]);
    let out = run(cmd, std::time::Duration::from_secs(120));
    let text = expect_success(&out, "nmap -sV");
    let ports = text
        .lines()
        .find(|l| l.contains("Ports:"))
        .unwrap_or_else(|| panic!("no port line in nmap output:\n{text}"));
    assert!(ports.contains(&format!("{port}/open")), "{ports}");
    assert!(
        !ports.to_lowercase().contains("ssh"),
        "nmap saw ssh: {ports}"
    );
    assert!(
        ports.contains("http"),
        "nmap should see a web server: {ports}"
    );
}

#[test]
fn stealth_fallback_relays_to_a_real_web_server() {
    let target = http_target();
    let fallback = target.addr.to_string();
    let Some(s) = stealth_setup(&["--stealth-fallback", &fallback]) else {
        return;
    };
    let url = format!("https://localhost:{}/index.html", s.server.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", s.server.addr.port());
    let mut cmd = Command::new("curl");
    cmd.args([
        "-q",
        "--silent",
        "--show-error",
        "--fail",
        "--max-time",
        "15",
        "--noproxy",
        "*",
        "--cacert",
        p(&s.certs.ca),
        "--resolve",
        &resolve,
        &url,
    ]);
    let out = run(cmd, TIMEOUT);
    assert_eq!(expect_success(&out, "curl via the fallback"), HTTP_BODY);
    assert_eq!(target.accepted(), 1);
    // SSH still works on the same port.
    let client = WraithClient::start(
        s.server.addr,
        &s.client_key,
        &s.server.host_pub,
        &["--transport", "tls", "--tls-ca", p(&s.certs.ca)],
    );
    assert_socks_works(&client);
}

// ---------------------------------------------------------------------------
// ACME against Debian's pebble

/// pebble on loopback, validating TLS-ALPN-01 against `tls_port`, with its
/// HTTPS certificate from `certs`.
#[cfg(feature = "acme")]
struct Pebble {
    process: WraithProcess,
    directory: String,
    management: SocketAddr,
}

#[cfg(feature = "acme")]
fn start_pebble(dir: &Path, certs: &Certs, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
    let (api, management, http) = (free_port(), free_port(), free_port());
    let conf = dir.join("pebble.json");
    fs::write(
        &conf,
        format!(
            r#"{{"pebble": {{"listenAddress": "127.0.0.1:{api}", "managementListenAddress": "127.0.0.1:{management}",
 "certificate": "{}", "privateKey": "{}", "httpPort": {http}, "tlsPort": {tls_port},
 "ocspResponderURL": "", "externalAccountBindingRequired": false{}}}}}"#,
            certs.cert.display(),
            certs.key.display(),
            validity_secs
                .map(|v| format!(r#", "certificateValidityPeriod": {v}"#))
                .unwrap_or_default()
        ),
    )
    .expect("write pebble.json");
    let mut cmd = Command::new("pebble");
    cmd.arg("-config")
        .arg(&conf)
        // No artificial validation delays, no deliberately rejected nonces.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0");
    let process = WraithProcess::spawn_command(cmd);
    process.wait_for_port(("127.0.0.1", api), TIMEOUT);
    process.wait_for_port(("127.0.0.1", management), TIMEOUT);
    Pebble {
        process,
        directory: format!("https://127.0.0.1:{api}/dir"),
        management: SocketAddr::from(([127, 0, 0, 1], management)),
    }
}

#[cfg(feature = "acme")]
impl Pebble {
    fn issued(&self) -> usize {
        let text = format!(
            "{}{}",
            self.process.stdout_text(),
            self.process.stderr_text()
        );
        text.matches("Issued certificate serial").count()
    }
}

fn curl_https(ca: &Path, port: u16, host: &str) -> String {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}/");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-q",
        "--silent",
        "--show-error",
        "--max-time",
        "15",
        "--noproxy",
        "*",
        "--cacert",
        p(ca),
        "--resolve",
        &resolve,
        &url,
    ]);
    expect_success(&run(cmd, TIMEOUT), &format!("curl {url}"))
}

#[cfg(feature = "acme")]
#[test]
fn acme_certificates_from_pebble_for_a_domain_and_an_ip_survive_a_restart() {
    if !require_tools(&["pebble", "openssl", "curl", "ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "pebble-https");
    let port = free_port();
    let pebble = start_pebble(dir.path(), &certs, port, None);
    let client_key = ssh_keygen(dir.path(), "client");
    let host_key = keygen(dir.path(), "host");
    let authorized = dir.path().join("authorized_keys");
    write_authorized_keys(&authorized, &[&client_key]);
    let cache = dir.path().join("acme-cache");
    let listen = format!("127.0.0.1:{port}");
    let serve = || {
        WraithProcess::spawn(&[
            "serve",
            "--key",
            p(&host_key),
            "--authorized-keys",
            p(&authorized),
            "--listen",
            &listen,
            "--transport",
            "tls",
            "--stealth",
            "--acme-domain",
            "localhost",
            "--acme-ip",
            "127.0.0.1",
            "--acme-directory",
            &pebble.directory,
            "--acme-ca-root",
            p(&certs.ca),
            "--acme-cache",
            p(&cache),
        ])
    };
    let server = serve();
    server.wait_for_line("listening on tls://", TIMEOUT);
    server.wait_for_stderr(&["ACME certificate obtained"], TIMEOUT * 3);
    assert_eq!(pebble.issued(), 1);

    // pebble's root, fetched from its management interface.
    let mut cmd = Command::new("curl");
    let roots = format!("https://{}/roots/0", pebble.management);
    cmd.args([
        "-q",
        "--silent",
        "--show-error",
        "--fail",
        "--noproxy",
        "*",
        "--cacert",
    ])
    .arg(&certs.ca)
    .arg(&roots);
    let root_pem = expect_success(&run(cmd, TIMEOUT), "fetch pebble's root");
    let root = dir.path().join("pebble-root.pem");
    fs::write(&root, &root_pem).expect("write root");

    // curl trusts the served certificate for the name and for the address.
    assert!(curl_https(&root, port, "localhost").contains("404 Not Found"));
    assert!(curl_https(&root, port, "127.0.0.1").contains("404 Not Found"));
    // And SSH rides it.
    let host_pub = p(&pub_path(&host_key)).to_owned();
    let client = WraithClient::start(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &client_key,
        &host_pub,
        &[
            "--transport",
            "tls",
            "--tls-ca",
            p(&root),
            "--tls-server-name",
            "localhost",
        ],
    );
    assert_socks_works(&client);
    drop(client);

    // A restart serves the cached certificate without a new order.
    server.kill();
    let server = serve();
    server.wait_for_line("listening on tls://", TIMEOUT);
    server.wait_for_stderr(&["ACME certificate loaded from the cache"], TIMEOUT);
    assert!(curl_https(&root, port, "localhost").contains("404 Not Found"));
    assert_eq!(pebble.issued(), 1, "the restart ordered a new certificate");
    assert!(
        !server.stderr_text().contains("ACME certificate obtained"),
        "{}",
        server.failure("the restart ordered a new certificate")
    );
}

/// SHA-256 fingerprint of the certificate served on `port`, as openssl sees it.
#[cfg(feature = "acme")]
fn served_fingerprint(port: u16) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    expect_success(&run(cmd, TIMEOUT), "openssl s_client | openssl x509")
        .trim()
        .to_owned()
}

#[cfg(feature = "acme")]
#[test]
fn acme_renews_and_swaps_the_certificate_without_a_restart() {
    if !require_tools(&["pebble", "openssl", "curl", "ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "pebble-https");
    let port = free_port();
    // Certificates valid for 12 s: renewal is due after 8 s.
    let pebble = start_pebble(dir.path(), &certs, port, Some(12));
    let host_key = keygen(dir.path(), "host");
    let listen = format!("127.0.0.1:{port}");
    let cache = dir.path().join("acme-cache");
    let server = WraithProcess::spawn(&[
        "serve",
        "--key",
        p(&host_key),
        "--authorized-keys",
        p(&pub_path(&host_key)),
        "--listen",
        &listen,
        "--transport",
        "tls",
        "--acme-ip",
        "127.0.0.1",
        "--acme-directory",
        &pebble.directory,
        "--acme-ca-root",
        p(&certs.ca),
        "--acme-cache",
        p(&cache),
    ]);
    server.wait_for_line("listening on tls://", TIMEOUT);
    server.wait_for_stderr(&["ACME certificate obtained"], TIMEOUT * 3);
    let first = served_fingerprint(port);
    assert!(first.contains("Fingerprint="), "{first}");
    let deadline = std::time::Instant::now() + TIMEOUT * 3;
    while server
        .stderr_text()
        .matches("ACME certificate obtained")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.failure("no renewal")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(pebble.issued() >= 2);
    assert_ne!(
        served_fingerprint(port),
        first,
        "the renewed certificate is not served"
    );
    assert!(server.try_status().is_none(), "the server restarted");
}

// ---------------------------------------------------------------------------
// WebSocket: behind a real nginx, and on its own with a secret path

/// A path hard to guess, as the README tells users to pick one.
fn secret_path() -> String {
    let bytes = pseudo_random_bytes(16, std::process::id() as u64);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("/{hex}")
}

/// Sends `len` pseudo-random bytes through `addr` to an echo target and
/// compares the SHA-256 of what came back with what went.
fn sha256_echo(addr: SocketAddr, len: usize) {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let payload = pseudo_random_bytes(len, 0x20);
    let sent = Sha256::digest(&payload);
    let mut stream = connect(addr);
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        writer.write_all(&payload).expect("send");
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    });
    let mut back = Vec::with_capacity(len);
    stream.read_to_end(&mut back).expect("read the echo");
    sender.join().expect("sender");
    assert_eq!(back.len(), len, "echo length");
    assert_eq!(Sha256::digest(&back), sent, "SHA-256 of the echo");
}

/// The nginx of a site that also passes WebSocket upgrades on `path` to a
/// `wraith serve --transport ws` on `backend`: the configuration the README
/// shows. Every other path serves `site/`.
struct NginxFront {
    _process: WraithProcess,
    addr: SocketAddr,
    root: PathBuf,
}

fn start_nginx_front(dir: &Path, certs: &Certs, path: &str, backend: SocketAddr) -> NginxFront {
    let nginx = start_nginx_with(dir, |root, port| {
        fs::create_dir_all(root.join("site")).expect("site dir");
        fs::write(root.join("site/index.html"), "the static site\n").expect("index.html");
        format!(
            "include /etc/nginx/mime.types;\n\
             access_log {root}/access.log;\n\
             server {{\n\
               listen 127.0.0.1:{port} ssl;\n\
               server_name localhost;\n\
               ssl_certificate {cert};\n\
               ssl_certificate_key {key};\n\
               root {root}/site;\n\
               location {path} {{\n\
                 proxy_pass http://{backend};\n\
                 proxy_http_version 1.1;\n\
                 proxy_set_header Upgrade $http_upgrade;\n\
                 proxy_set_header Connection \"upgrade\";\n\
                 proxy_set_header Host $host;\n\
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                 proxy_read_timeout 1h;\n\
                 proxy_send_timeout 1h;\n\
               }}\n\
               location / {{ try_files $uri $uri/ =404; }}\n\
             }}\n",
            root = root.display(),
            cert = certs.cert.display(),
            key = certs.key.display(),
        )
    });
    NginxFront {
        _process: nginx.process,
        addr: nginx.addr,
        root: nginx.root,
    }
}

#[test]
fn ws_behind_nginx_tunnels_while_nginx_serves_the_site() {
    if !require_tools(&["openssl", "ssh-keygen", "curl", "nginx"]) {
        return;
    }
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "certs");
    let client_key = ssh_keygen(dir.path(), "client");
    let host_key = keygen(dir.path(), "host");
    let authorized = dir.path().join("authorized_keys");
    write_authorized_keys(&authorized, &[&client_key]);
    let path = secret_path();
    let server = WraithProcess::spawn(&[
        "serve",
        "--key",
        p(&host_key),
        "--authorized-keys",
        p(&authorized),
        "--listen",
        "127.0.0.1:0",
        "--transport",
        "ws",
        "--ws-path",
        &path,
        "--ws-forwarded-from",
        "127.0.0.1",
    ]);
    let line = server.wait_for_line("listening on ws://", TIMEOUT);
    let backend = addr_after(&line, "listening on ws://");
    let nginx = start_nginx_front(dir.path(), &certs, &path, backend);

    let echo = echo_target();
    let forward = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
    let host_pub = pub_path(&host_key);
    let client = WraithClient::start(
        SocketAddr::from(([127, 0, 0, 1], nginx.addr.port())),
        &client_key,
        p(&host_pub),
        &[
            "--transport",
            "wss",
            "--ws-path",
            &path,
            "--tls-ca",
            p(&certs.ca),
            "--forward",
            &forward,
        ],
    );
    assert_socks_works(&client);
    sha256_echo(client.forward_addr(), 20 << 20);
    server.wait_for_stderr(&["connection opened", "transport=ws"], TIMEOUT);

    // The site is still the site, on / and on its files.
    let url = format!("https://localhost:{}/", nginx.addr.port());
    let body = curl_https(&certs.ca, nginx.addr.port(), "localhost");
    assert_eq!(body, "the static site\n", "{url}");
    // nginx logs the upgrade (101) on the path once the tunnel closes.
    client.process.kill();
    let upgraded = format!("GET {path} HTTP/1.1\" 101");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let log = loop {
        let log = fs::read_to_string(nginx.root.join("access.log")).unwrap_or_default();
        if log.contains(&upgraded) || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(log.contains(&upgraded), "{log}");

    // A client with the wrong path is told so, in one line.
    let user = current_user();
    let wrong = WraithProcess::spawn(&[
        "connect",
        "--server",
        &nginx.addr.to_string(),
        "--transport",
        "wss",
        "--ws-path",
        "/wrong",
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
    ]);
    assert_eq!(
        wrong.wait_exit(TIMEOUT).code(),
        Some(1),
        "{}",
        wrong.failure("exit 1")
    );
    let err = wrong.stderr_text();
    assert!(
        err.contains("answered 404 Not Found to the WebSocket upgrade (check --ws-path)"),
        "{err}"
    );
}

/// What a prober might send to find the tunnel on a wss port.
fn ws_probes(path: &str) -> Vec<(&'static str, Vec<u8>)> {
    let upgrade = |p: &str| {
        format!(
            "GET {p} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .into_bytes()
    };
    vec![
        ("WebSocket upgrade on a wrong path", upgrade("/ws")),
        (
            "WebSocket upgrade on the path plus a query",
            upgrade(&format!("{path}?x=1")),
        ),
        (
            "plain GET /",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        (
            "plain GET on the path",
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes(),
        ),
        (
            "raw SSH banner",
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec(),
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        ("silence", Vec::new()),
    ]
}

#[test]
fn wss_stealth_answers_like_nginx_except_on_the_secret_path() {
    if !require_tool("nginx") {
        return;
    }
    let path = secret_path();
    let Some(s) = setup(&[
        "--transport",
        "wss",
        "--stealth",
        "--stealth-timeout",
        HEADER_TIMEOUT,
        "--ws-path",
        &path,
    ]) else {
        return;
    };
    let nginx = start_nginx(s.dir.path(), &s.certs);
    let handles: Vec<_> = ws_probes(&path)
        .into_iter()
        .chain(probes().into_iter().take(3))
        .map(|(name, req)| {
            let ca = s.certs.ca.clone();
            let (nginx, wraith) = (nginx.addr, s.server.addr);
            std::thread::spawn(move || (name, probe(nginx, &ca, &req), probe(wraith, &ca, &req)))
        })
        .collect();
    for h in handles {
        let (name, expected, got) = h.join().expect("probe thread");
        assert_eq!(
            got, expected,
            "{name}: wraith wss --stealth answered unlike nginx"
        );
    }
    assert!(
        !s.server.process.stderr_text().contains("connection opened"),
        "a probe reached SSH:\n{}",
        s.server.process.stderr_text()
    );
    // The right path tunnels.
    let client = WraithClient::start(
        s.server.addr,
        &s.client_key,
        &s.server.host_pub,
        &[
            "--transport",
            "wss",
            "--ws-path",
            &path,
            "--tls-ca",
            p(&s.certs.ca),
        ],
    );
    assert_socks_works(&client);
    s.server
        .process
        .wait_for_stderr(&["connection opened", "transport=wss"], TIMEOUT);
}
