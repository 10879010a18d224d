//! End to end: `wraith connect` stays up. The server is killed and
//! restarted, or its network silently disappears; the client notices within
//! the keepalive bound, keeps its listeners, answers SOCKS requests with a
//! failure while the tunnel is down, and reconnects by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A blocking SOCKS5 CONNECT to an IPv4 target; returns the reply code and
/// the stream.
fn socks5_connect(proxy: SocketAddr, ip: [u8; 4], port: u16) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(proxy).expect("connect to the SOCKS port");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    assert_eq!(m, [5, 0]);
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&ip);
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    (reply[1], s)
}

fn echo_through_socks(proxy: SocketAddr, port: u16) -> Result<(), String> {
    let (code, mut s) = socks5_connect(proxy, [127, 0, 0, 1], port);
    if code != 0 {
        return Err(format!("SOCKS reply {code}"));
    }
    s.write_all(b"ping").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    if &buf != b"ping" {
        return Err(format!("echo returned {buf:?}"));
    }
    Ok(())
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Wait until `f` is true, polling; panics with `what` after `timeout`.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn serve_args<'a>(host_key: &'a Path, ak: &'a Path, listen: &'a str) -> Vec<&'a str> {
    vec![
        "serve",
        "--key",
        host_key.to_str().unwrap(),
        "--authorized-keys",
        ak.to_str().unwrap(),
        "--listen",
        listen,
    ]
}

#[test]
fn client_reconnects_after_server_is_killed_and_restarted() {
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let client_key = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&client_key]);
    let listen = format!("127.0.0.1:{}", free_port());
    let server = WraithProcess::spawn(&serve_args(&host, &ak, &listen));
    server.wait_for_line("listening on ", TIMEOUT);

    let echo = echo_target();
    let remote_target = format!("0:127.0.0.1:{}", echo.port());
    let host_pub = pub_path(&host);
    let client = WraithProcess::spawn(&[
        "connect",
        "--server",
        &listen,
        "--identity",
        client_key.to_str().unwrap(),
        "--host-key",
        host_pub.to_str().unwrap(),
        "--socks5",
        "127.0.0.1:0",
        "--remote-forward",
        &remote_target,
        "--reconnect-wait",
        "2",
    ]);
    let proxy = addr_after(
        &client.wait_for_line("socks5 listening on ", TIMEOUT),
        "socks5 listening on ",
    );
    let rf_line = client.wait_for_line("remote forward listening on ", TIMEOUT);
    let rf_port = port_after(&rf_line, "remote forward listening on ");
    echo_through_socks(proxy, echo.port()).expect("tunnel works before the kill");
    echo_round_trip(("127.0.0.1", rf_port), 1000);

    // kill -9: no SSH disconnect, the socket just dies.
    server.kill();
    eventually("the client to notice", TIMEOUT, || {
        count(&client.stderr_text(), "lost:") >= 1
    });

    // While the server is down a SOCKS request fails within the bound,
    // with a failure reply rather than a hang.
    let started = Instant::now();
    let (code, _) = socks5_connect(proxy, [127, 0, 0, 1], echo.port());
    assert_ne!(code, 0, "no success reply while the server is down");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the failure took {:?}",
        started.elapsed()
    );

    let server2 = WraithProcess::spawn(&serve_args(&host, &ak, &listen));
    server2.wait_for_line("listening on ", TIMEOUT);
    eventually("the client to reconnect", Duration::from_secs(40), || {
        count(&client.stderr_text(), "connected to") >= 2
    });
    assert!(client.try_status().is_none(), "the client must not exit");
    eventually("SOCKS through the new session", TIMEOUT, || {
        echo_through_socks(proxy, echo.port()).is_ok()
    });
    // The remote forward is back, on the same port.
    eventually("the remote forward on the same port", TIMEOUT, || {
        TcpStream::connect(("127.0.0.1", rf_port)).is_ok()
    });
    echo_round_trip(("127.0.0.1", rf_port), 1000);
    let err = client.stderr_text();
    assert!(err.contains("reconnecting in"), "{err}");
}

#[test]
fn wrong_key_exits_1_after_the_first_attempt() {
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let client_key = keygen(dir.path(), "client");
    let stranger = keygen(dir.path(), "stranger");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&client_key]);
    let server = WraithProcess::spawn(&serve_args(&host, &ak, "127.0.0.1:0"));
    let addr = addr_after(
        &server.wait_for_line("listening on ", TIMEOUT),
        "listening on ",
    );
    let addr = addr.to_string();
    let host_pub = pub_path(&host);
    let client = WraithProcess::spawn(&[
        "connect",
        "--server",
        &addr,
        "--identity",
        stranger.to_str().unwrap(),
        "--host-key",
        host_pub.to_str().unwrap(),
        "--socks5",
        "127.0.0.1:0",
    ]);
    let status = client.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(1));
    let err = client.stderr_text();
    assert!(err.contains("did not accept the key"), "{err}");
    assert!(!err.contains("reconnecting"), "no retry loop: {err}");
    // Exactly one attempt reached the server.
    let log = server.stderr_text();
    assert_eq!(count(&log, "connection opened"), 1, "{log}");
}

/// Makes the server's side of the link go away silently (no RST, no
/// FIN), or come back.
fn set_link(ns: &VethNetns, up: bool) {
    let state = if up { "up" } else { "down" };
    assert!(ns.ip(&["link", "set", &ns.ns_if, state]));
}

#[test]
fn silent_network_failure_is_detected_and_healed() {
    // 10.213.0.0/16 is private and exists only on this veth pair.
    let Some(ns) = VethNetns::create("wr", 213, 0) else {
        return;
    };
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let client_key = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&client_key]);

    // The server runs inside the namespace. The tunnel's target is the
    // server's own SSH port there (127.0.0.1 inside the namespace), so we
    // know the bytes crossed the veth: its banner starts with "SSH-2.0-".
    let port: u16 = 2222;
    let mut cmd = ns.command(wraith_bin());
    let listen = format!("0.0.0.0:{port}");
    cmd.args(serve_args(&host, &ak, &listen)).args([
        "--keepalive-interval",
        "1",
        "--keepalive-count-max",
        "2",
    ]);
    let server = WraithProcess::spawn_command(cmd);
    server.wait_for_line("listening on ", TIMEOUT);

    let server_addr = format!("{}:{port}", ns.ns_ip);
    let host_pub = pub_path(&host);
    let client = WraithProcess::spawn(&[
        "connect",
        "--server",
        &server_addr,
        "--identity",
        client_key.to_str().unwrap(),
        "--host-key",
        host_pub.to_str().unwrap(),
        "--socks5",
        "127.0.0.1:0",
        "--keepalive-interval",
        "1",
        "--keepalive-count-max",
        "2",
        "--connect-timeout",
        "3",
        "--reconnect-wait",
        "2",
    ]);
    let proxy = addr_after(
        &client.wait_for_line("socks5 listening on ", TIMEOUT),
        "socks5 listening on ",
    );
    let banner = || -> bool {
        let (code, mut s) = socks5_connect(proxy, [127, 0, 0, 1], port);
        let mut buf = [0u8; 8];
        code == 0 && s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0-"
    };
    assert!(banner(), "the tunnel must work before the failure");

    set_link(&ns, false);
    let cut = Instant::now();
    // Keepalive bound: interval 1 s × (2 missed + 1) plus slack.
    eventually(
        "the client to notice the dead path",
        Duration::from_secs(10),
        || client.stderr_text().contains("lost:"),
    );
    eprintln!("dead path noticed after {:?}", cut.elapsed());

    set_link(&ns, true);
    eventually("the client to reconnect", Duration::from_secs(45), || {
        count(&client.stderr_text(), "connected to") >= 2
    });
    eventually("traffic through the healed tunnel", TIMEOUT, banner);
    assert!(
        client.try_status().is_none(),
        "the client must keep running"
    );
}
