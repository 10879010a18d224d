//! `wraith serve --proxy-protocol` behind Debian's haproxy (TCP mode,
//! `send-proxy-v2` and `send-proxy`): the client's real address, not
//! haproxy's, is what the logs, `from=` and `--max-connections-per-ip`
//! see; a connection without a header, or from a peer not trusted to send
//! one, is closed with a logged reason. And `--stealth-fallback-proxy-protocol`
//! tells a real nginx behind the stealth port who its client is.
//!
//! haproxy connects to wraith from 127.0.0.1; the OpenSSH client is bound
//! to 127.0.0.2 or 127.0.0.3 (all of 127/8 is loopback on Linux), so an
//! address in a log line says which of the two wraith believed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const HAPROXY: &str = "/usr/sbin/haproxy";

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// haproxy in TCP mode on a free 127.0.0.1 port, passing every connection
/// to `backend` with the PROXY header `send` (`send-proxy-v2` or
/// `send-proxy`) and the server options in `extra`.
struct Haproxy {
    _process: WraithProcess,
    addr: SocketAddr,
}

/// The configuration the README shows under "Behind haproxy", with the
/// ports filled in.
fn haproxy_config(listen: SocketAddr, backend: SocketAddr, send: &str, extra: &str) -> String {
    format!(
        "defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 1h\n\
         \x20   timeout server 1h\n\
         \n\
         frontend ssh\n\
         \x20   bind {listen}\n\
         \x20   default_backend wraith\n\
         \n\
         backend wraith\n\
         \x20   server s {backend} {send}{extra}\n"
    )
}

fn start_haproxy(dir: &Path, backend: SocketAddr, send: &str, extra: &str) -> Haproxy {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = dir.join(unique("haproxy.cfg"));
    fs::write(&cfg, haproxy_config(listen, backend, send, extra)).expect("write haproxy.cfg");
    let mut cmd = Command::new(HAPROXY);
    cmd.arg("-f").arg(&cfg).arg("-db");
    let process = WraithProcess::spawn_command(cmd);
    process.wait_for_port(listen, TIMEOUT);
    Haproxy {
        _process: process,
        addr: listen,
    }
}

/// A `wraith serve --transport tcp --proxy-protocol --proxy-protocol-from
/// 127.0.0.1/32` reading the authorized_keys lines given.
fn serve_behind_haproxy(dir: &Path, authorized_keys: &str, extra: &[&str]) -> WraithServer {
    let ak = dir.join(unique("authorized_keys"));
    fs::write(&ak, authorized_keys).expect("write authorized_keys");
    let mut args = vec![
        "--transport",
        "tcp",
        "--proxy-protocol",
        "--proxy-protocol-from",
        "127.0.0.1/32",
    ];
    args.extend_from_slice(extra);
    WraithServer::start_with_file(dir, ak, &args, &[])
}

/// `ssh -b <from> -W 127.0.0.1:<echo>` through `to`, sending `x`; whether
/// it came back.
fn ssh_echo(ssh: &OpenSsh, from: &str, echo: &Target) -> Result<(), String> {
    let out = run_with_input(
        ssh.command(
            &["-b", from, "-W", &format!("127.0.0.1:{}", echo.port())],
            &[],
        ),
        b"x",
        TIMEOUT,
    );
    if out.status.success() && out.stdout == b"x" {
        Ok(())
    } else {
        Err(show(&out))
    }
}

fn tools() -> bool {
    require_tools(&[HAPROXY, "ssh", "ssh-keygen"])
}

/// One key with `from="127.0.0.2"`, one with `from="127.0.0.3"`; the
/// server behind haproxy sending `send`.
fn from_restrictions_follow_the_header(send: &str) {
    let dir = temp_dir();
    let at_2 = ssh_keygen(dir.path(), "at-2");
    let at_3 = ssh_keygen(dir.path(), "at-3");
    let lines = format!(
        "from=\"127.0.0.2\" {}\nfrom=\"127.0.0.3\" {}\n",
        public_key_line(&at_2),
        public_key_line(&at_3)
    );
    let server = serve_behind_haproxy(dir.path(), &lines, &[]);
    let haproxy = start_haproxy(dir.path(), server.addr, send, "");
    let echo = echo_target();

    let ssh = OpenSsh::new(dir.path(), haproxy.addr, &server.host_key, &at_2);
    ssh_echo(&ssh, "127.0.0.2", &echo)
        .unwrap_or_else(|e| panic!("from=\"127.0.0.2\" refused through haproxy ({send}): {e}"));
    // (haproxy's readiness probe from 127.0.0.1 went through it too, so
    // lines naming 127.0.0.1 may be there beside these.)
    server
        .process
        .wait_for_stderr(&["connection opened", "remote_addr=127.0.0.2"], TIMEOUT);
    server.process.wait_for_stderr(
        &["auth attempt", "result=accept", "remote_addr=127.0.0.2"],
        TIMEOUT,
    );

    let ssh = OpenSsh::new(dir.path(), haproxy.addr, &server.host_key, &at_3);
    assert!(
        ssh_echo(&ssh, "127.0.0.2", &echo).is_err(),
        "from=\"127.0.0.3\" let 127.0.0.2 in"
    );
    server.process.wait_for_stderr(
        &[
            "auth attempt",
            "result=reject",
            "from=",
            "remote_addr=127.0.0.2",
        ],
        TIMEOUT,
    );
}

#[test]
fn from_and_logs_see_the_client_behind_haproxy_send_proxy_v2() {
    if !tools() {
        return;
    }
    from_restrictions_follow_the_header("send-proxy-v2");
}

#[test]
fn from_and_logs_see_the_client_behind_haproxy_send_proxy_v1() {
    if !tools() {
        return;
    }
    from_restrictions_follow_the_header("send-proxy");
}

#[test]
fn max_connections_per_ip_counts_the_client_behind_haproxy() {
    if !tools() {
        return;
    }
    let dir = temp_dir();
    let key = ssh_keygen(dir.path(), "client");
    let server = serve_behind_haproxy(
        dir.path(),
        &public_key_line(&key),
        &["--max-connections-per-ip", "1"],
    );
    let haproxy = start_haproxy(dir.path(), server.addr, "send-proxy-v2", "");
    let ssh = OpenSsh::new(dir.path(), haproxy.addr, &server.host_key, &key);
    let echo = echo_target();

    // One session from 127.0.0.2 held open.
    let held = WraithProcess::spawn_command(ssh.command(&["-b", "127.0.0.2", "-N"], &[]));
    server.process.wait_for_stderr(
        &["auth attempt", "result=accept", "remote_addr=127.0.0.2"],
        TIMEOUT,
    );

    let second = ssh_echo(&ssh, "127.0.0.2", &echo);
    assert!(second.is_err(), "a second connection from 127.0.0.2 got in");
    let refused = server
        .process
        .wait_for_stderr(&["connection refused", "too many connections"], TIMEOUT);
    assert!(refused.contains("remote_addr=127.0.0.2"), "{refused}");

    ssh_echo(&ssh, "127.0.0.3", &echo)
        .unwrap_or_else(|e| panic!("127.0.0.3 was counted with 127.0.0.2: {e}"));
    assert!(
        held.try_status().is_none(),
        "{}",
        held.failure("the held session ended")
    );
}

#[test]
fn a_direct_connection_without_a_header_is_refused_with_the_reason_logged() {
    if !tools() {
        return;
    }
    let dir = temp_dir();
    let key = ssh_keygen(dir.path(), "client");
    let server = serve_behind_haproxy(dir.path(), &public_key_line(&key), &[]);
    let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, &key);
    let echo = echo_target();
    assert!(
        ssh_echo(&ssh, "127.0.0.1", &echo).is_err(),
        "ssh got in without a PROXY header"
    );
    let line = server.process.wait_for_stderr(
        &[
            "connection refused (--proxy-protocol)",
            "remote_addr=127.0.0.1",
            "did not start with a PROXY protocol header",
        ],
        TIMEOUT,
    );
    assert!(
        !server.process.stderr_text().contains("connection opened"),
        "the refused connection reached SSH: {line}"
    );
}

fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())
        .expect("bind a loopback source");
    s.connect_timeout(&to.into(), TIMEOUT).expect("connect");
    s.into()
}

#[test]
fn a_header_from_an_untrusted_peer_is_refused_unread() {
    if !tools() {
        return;
    }
    let dir = temp_dir();
    let key = ssh_keygen(dir.path(), "client");
    let server = serve_behind_haproxy(dir.path(), &public_key_line(&key), &[]);
    // 127.0.0.2 is loopback but not in --proxy-protocol-from 127.0.0.1/32.
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = s.write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 22\r\nSSH-2.0-x\r\n");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server answered an untrusted peer");
    let line = server.process.wait_for_stderr(
        &[
            "connection refused (--proxy-protocol)",
            "remote_addr=127.0.0.2",
            "not in --proxy-protocol-from",
        ],
        TIMEOUT,
    );
    assert!(!line.contains("192.0.2.1"), "{line}");
}

// ---------------------------------------------------------------------------
// TLS: haproxy in front of `--transport tls`, and the stealth fallback

/// A `wraith serve --transport tls` on 127.0.0.1 with `certs`.
struct TlsServer {
    process: WraithProcess,
    addr: SocketAddr,
    host_pub: String,
}

fn serve_tls(dir: &Path, client_key: &Path, certs: &Certs, extra: &[&str]) -> TlsServer {
    let host_key = keygen(dir, &unique("host"));
    let ak = dir.join(unique("authorized_keys"));
    write_authorized_keys(&ak, &[client_key]);
    let mut args = vec![
        "serve",
        "--key",
        p(&host_key),
        "--authorized-keys",
        p(&ak),
        "--listen",
        "127.0.0.1:0",
        "--transport",
        "tls",
        "--tls-cert",
        p(&certs.cert),
        "--tls-key",
        p(&certs.key),
    ];
    args.extend_from_slice(extra);
    let process = WraithProcess::spawn(&args);
    let line = process.wait_for_line("listening on tls://", TIMEOUT);
    TlsServer {
        addr: addr_after(&line, "listening on tls://"),
        host_pub: p(&pub_path(&host_key)).to_owned(),
        process,
    }
}

#[test]
fn tls_behind_haproxy_send_proxy_v2_tunnels_and_sees_the_client() {
    if !require_tools(&[HAPROXY, "openssl", "curl"]) {
        return;
    }
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "certs");
    let key = keygen(dir.path(), "client");
    // haproxy reaches wraith from 127.0.0.4 (`source`), the trusted proxy;
    // wraith connect comes from 127.0.0.1, which is what the logs must say.
    let server = serve_tls(
        dir.path(),
        &key,
        &certs,
        &["--proxy-protocol", "--proxy-protocol-from", "127.0.0.4"],
    );
    let haproxy = start_haproxy(
        dir.path(),
        server.addr,
        "send-proxy-v2",
        " source 127.0.0.4",
    );
    let server_arg = format!("localhost:{}", haproxy.addr.port());
    let user = current_user();
    let client = WraithClient::ready(WraithProcess::spawn(&[
        "connect",
        "--server",
        &server_arg,
        "--transport",
        "tls",
        "--tls-ca",
        p(&certs.ca),
        "--identity",
        p(&key),
        "--host-key",
        &server.host_pub,
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ]));
    let target = http_target();
    let out = curl_socks5h(
        client.socks5,
        &format!("http://localhost:{}/", target.port()),
    );
    assert_eq!(
        expect_success(&out, "curl through haproxy and TLS"),
        HTTP_BODY
    );
    let opened = server
        .process
        .wait_for_stderr(&["connection opened", "transport=tls"], TIMEOUT);
    assert!(opened.contains("remote_addr=127.0.0.1"), "{opened}");
    let log = server.process.stderr_text();
    assert!(
        !log.contains("127.0.0.4"),
        "haproxy's address reached the log:\n{log}"
    );
}

/// A Debian nginx serving `index.html` from a directory on
/// `listen 127.0.0.1:PORT proxy_protocol`, logging `$proxy_protocol_addr`.
struct Nginx {
    _process: WraithProcess,
    addr: SocketAddr,
    access_log: PathBuf,
}

const SITE: &str = "the site behind the stealth port\n";

fn start_nginx(dir: &Path) -> Nginx {
    let nginx = start_nginx_with(dir, |root, port| {
        let site = root.join("site");
        fs::create_dir_all(&site).expect("nginx site dir");
        fs::write(site.join("index.html"), SITE).expect("index.html");
        format!(
            "log_format pp '$proxy_protocol_addr $remote_addr \"$request\" $status';\n\
             access_log {root}/access.log pp;\n\
             server {{\n\
               listen 127.0.0.1:{port} proxy_protocol;\n\
               root {site};\n\
             }}\n",
            root = root.display(),
            site = site.display(),
        )
    });
    Nginx {
        addr: nginx.addr,
        access_log: nginx.root.join("access.log"),
        _process: nginx.process,
    }
}

#[test]
fn stealth_fallback_sends_nginx_a_proxy_header_with_the_client() {
    if !require_tools(&["nginx", "openssl", "curl"]) {
        return;
    }
    let dir = temp_dir();
    let certs = make_certs(dir.path(), "certs");
    let key = keygen(dir.path(), "client");
    let nginx = start_nginx(dir.path());
    let fallback = nginx.addr.to_string();
    let server = serve_tls(
        dir.path(),
        &key,
        &certs,
        &[
            "--stealth",
            "--stealth-fallback",
            &fallback,
            "--stealth-fallback-proxy-protocol",
            "v1",
        ],
    );
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
        "-k",
        "--interface",
        "127.0.0.2",
        &format!("https://127.0.0.1:{}/", server.addr.port()),
    ]);
    let out = run(cmd, TIMEOUT);
    assert_eq!(expect_success(&out, "curl to the stealth port"), SITE);
    // nginx writes the line once the request is done; give it a moment.
    let deadline = Instant::now() + TIMEOUT;
    let log = loop {
        let log = fs::read_to_string(&nginx.access_log).unwrap_or_default();
        if log.contains("GET / ") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let line = log
        .lines()
        .find(|l| l.contains("\"GET / HTTP/1.1\" 200"))
        .unwrap_or_else(|| panic!("no GET / in nginx's access log:\n{log}"));
    assert!(
        line.starts_with("127.0.0.2 127.0.0.1 "),
        "nginx did not see the client's address: {line}"
    );
}

#[test]
fn ws_behind_haproxy_send_proxy_v2_tunnels_and_sees_the_client() {
    if !require_tools(&[HAPROXY, "curl"]) {
        return;
    }
    let dir = temp_dir();
    let key = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&key]);
    // As for tls: haproxy comes from 127.0.0.4, the client from 127.0.0.1.
    let server = WraithServer::start_with_file(
        dir.path(),
        ak,
        &[
            "--transport",
            "ws",
            "--ws-path",
            "/behind-haproxy",
            "--proxy-protocol",
            "--proxy-protocol-from",
            "127.0.0.4",
        ],
        &[],
    );
    let haproxy = start_haproxy(
        dir.path(),
        server.addr,
        "send-proxy-v2",
        " source 127.0.0.4",
    );
    let client = WraithClient::start(
        haproxy.addr,
        &key,
        &server.host_pub_arg(),
        &["--transport", "ws", "--ws-path", "/behind-haproxy"],
    );
    let target = http_target();
    let out = curl_socks5h(
        client.socks5,
        &format!("http://localhost:{}/", target.port()),
    );
    assert_eq!(
        expect_success(&out, "curl through haproxy and ws"),
        HTTP_BODY
    );
    let opened = server
        .process
        .wait_for_stderr(&["connection opened", "transport=ws"], TIMEOUT);
    assert!(opened.contains("remote_addr=127.0.0.1"), "{opened}");
    let log = server.process.stderr_text();
    assert!(
        !log.contains("127.0.0.4"),
        "haproxy's address reached the log:\n{log}"
    );
}
