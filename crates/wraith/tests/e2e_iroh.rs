//! `--transport iroh` end to end, offline: never n0's relays or DNS.
//!
//! - direct path: both endpoints on 127.0.0.1 with relays disabled;
//! - relay path: a local relay in its own network namespace, the server and
//!   the client in two more, each able to reach the relay but not the other,
//!   so the tunnel can only run through the relay;
//! - the endpoint id survives a restart and an old ticket reconnects;
//! - a wrong endpoint id fails with a clear error in bounded time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

/// The tests here run one at a time: each starts several QUIC endpoints
/// and debug builds of wraith, and a 2-core CI machine running them all
/// at once measures the scheduler rather than the transport.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Generous bound for iroh connection setup (hole punching, relay).
const IROH_TIMEOUT: Duration = Duration::from_secs(40);

/// A host key, a client key, and an authorized_keys file holding the
/// client's key, in `dir`.
fn keys(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let host = keygen(dir, "host");
    let client_key = keygen(dir, "client");
    let ak = dir.join("authorized_keys");
    write_authorized_keys(&ak, &[&client_key]);
    (host, client_key, ak)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A free UDP port on 127.0.0.1 (bind to 0, then release).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind udp")
        .port()
}

/// `wraith serve --transport iroh` with the given host key; returns the
/// process and its printed endpoint id and ticket.
fn start_iroh_server(cmd: Command, expect_relay: bool) -> (WraithProcess, String, String) {
    let process = WraithProcess::spawn_command(cmd);
    let listening = process.wait_for_line("listening on iroh endpoint ", IROH_TIMEOUT);
    let endpoint = process.wait_for_line("endpoint: ", IROH_TIMEOUT);
    let ticket = process.wait_for_line("ticket: ", IROH_TIMEOUT);
    let connect = process.wait_for_line("connect with: ", IROH_TIMEOUT);
    let id = endpoint["endpoint: ".len()..].to_string();
    let ticket = ticket["ticket: ".len()..].to_string();
    assert!(listening.ends_with(&id), "{listening} vs {id}");
    assert!(connect.contains(&format!("--peer {ticket}")), "{connect}");
    if !expect_relay {
        assert!(connect.contains("--iroh-relay disabled"), "{connect}");
    }
    (process, id, ticket)
}

fn serve_command(host_key: &Path, ak: &Path, extra: &[&str]) -> Command {
    let mut args = vec![
        "serve",
        "--key",
        host_key.to_str().unwrap(),
        "--authorized-keys",
        ak.to_str().unwrap(),
        "--transport",
        "iroh",
    ];
    args.extend_from_slice(extra);
    wraith_command(&args)
}

fn connect_args<'a>(
    ticket: &'a str,
    identity: &'a Path,
    host_pub: &'a str,
    user: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "connect",
        "--transport",
        "iroh",
        "--peer",
        ticket,
        "--identity",
        identity.to_str().unwrap(),
        "--host-key",
        host_pub,
        "--user",
        user,
        "--socks5",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    args
}

/// Send `data` through `addr` to an echo target and return what came back.
fn try_echo(addr: SocketAddr, data: Arc<Vec<u8>>) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(IROH_TIMEOUT))?;
    stream.set_write_timeout(Some(IROH_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let to_send = Arc::clone(&data);
    let sender = thread::spawn(move || -> std::io::Result<()> {
        for chunk in to_send.chunks(256 * 1024) {
            writer.write_all(chunk)?;
        }
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut back = Vec::with_capacity(data.len());
    let read = (&stream).take(data.len() as u64 + 1).read_to_end(&mut back);
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(std::io::ErrorKind::Other.into()));
    read?;
    sent?;
    Ok(back)
}

fn echo_roundtrip(addr: SocketAddr, data: Arc<Vec<u8>>) -> Vec<u8> {
    try_echo(addr, data).unwrap_or_else(|e| panic!("echo through {addr}: {e}"))
}

/// A server and a client on loopback with relays disabled, the client
/// forwarding a local port to an echo target. Keeps the temp dir alive.
struct DirectPair {
    server: WraithProcess,
    id: String,
    client: WraithClient,
    echo: Target,
    _dir: tempfile::TempDir,
}

fn direct_pair(server_extra: &[&str], envs: &[(&str, &str)]) -> DirectPair {
    let dir = temp_dir();
    let (host, client_key, ak) = keys(dir.path());
    let mut args = vec!["--iroh-relay", "disabled", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(server_extra);
    let mut cmd = serve_command(&host, &ak, &args);
    cmd.envs(envs.iter().copied());
    let (server, id, ticket) = start_iroh_server(cmd, false);
    let echo = echo_target();
    let forward = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
    let host_pub = pub_path(&host).to_str().unwrap().to_string();
    let user = current_user();
    let connect = connect_args(
        &ticket,
        &client_key,
        &host_pub,
        &user,
        &["--iroh-relay", "disabled", "--forward", &forward],
    );
    let client = WraithClient::ready(WraithProcess::spawn(&connect));
    DirectPair {
        server,
        id,
        client,
        echo,
        _dir: dir,
    }
}

#[test]
fn direct_path_socks_and_20mb_forward() {
    let _serial = serial();
    let DirectPair {
        server,
        client,
        echo: _echo,
        _dir,
        ..
    } = direct_pair(&[], &[]);
    let http = http_target();

    // SOCKS5 over iroh.
    let out = curl_socks5h(client.socks5, &format!("http://127.0.0.1:{}/", http.port()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        HTTP_BODY,
        "curl through SOCKS5 over iroh: {}\n{}",
        show(&out),
        client.process.failure("client")
    );

    // 20 MB through the forward and back, checked by SHA-256.
    let data = Arc::new(pseudo_random_bytes(20 * 1024 * 1024, 0x1a0b));
    let started = Instant::now();
    let back = try_echo(client.forward_addr(), Arc::clone(&data)).unwrap_or_else(|e| {
        panic!(
            "20 MB echo over iroh: {e}\n{}\n{}",
            client.process.failure("client"),
            server.failure("server")
        )
    });
    assert_eq!(back.len(), data.len(), "echoed length");
    assert_eq!(sha256(&back), sha256(&data), "SHA-256 of the echoed 20 MB");
    eprintln!(
        "20 MB each way over iroh (direct, loopback) in {:?}",
        started.elapsed()
    );

    // The server logs the peer by endpoint id, with transport=iroh.
    let line = server
        .process_stderr_line(&["connection opened", "transport=iroh"])
        .unwrap_or_default();
    assert!(!line.contains("remote_addr=-"), "{line}");
}

/// `--server 127.0.0.1:<dead> --server iroh:<ticket>`: the tcp port
/// refuses, the client says so and moves on, and the session and the SOCKS5
/// traffic run over iroh, which the status line and log name.
#[test]
fn a_server_list_falls_back_from_a_dead_tcp_port_to_iroh() {
    let _serial = serial();
    if !require_tool("curl") {
        return;
    }
    let dir = temp_dir();
    let (host, client_key, ak) = keys(dir.path());
    let cmd = serve_command(
        &host,
        &ak,
        &["--iroh-relay", "disabled", "--listen", "127.0.0.1:0"],
    );
    let (server, id, ticket) = start_iroh_server(cmd, false);
    let dead = format!("127.0.0.1:{}", free_port());
    let via_iroh = format!("iroh:{ticket}");
    let host_pub = pub_path(&host).to_str().unwrap().to_string();
    let user = current_user();
    let started = Instant::now();
    let client = WraithClient::ready(WraithProcess::spawn(&[
        "connect",
        "--server",
        &dead,
        "--server",
        &via_iroh,
        "--iroh-relay",
        "disabled",
        "--identity",
        client_key.to_str().unwrap(),
        "--host-key",
        &host_pub,
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ]));
    eprintln!("connected over iroh after {:?}", started.elapsed());
    let named = format!("connected to iroh:{}", &id[..10]);
    let stdout = client.process.stdout_text();
    assert!(stdout.contains(&named), "{named:?} in {stdout}");
    client.process.wait_for_stderr(&[&named], TIMEOUT);
    let skipped = client
        .process
        .wait_for_stderr(&[&dead, "trying the next server"], TIMEOUT);
    assert_eq!(skipped.lines().count(), 1, "{skipped}");

    let http = http_target();
    let out = curl_socks5h(client.socks5, &format!("http://127.0.0.1:{}/", http.port()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        HTTP_BODY,
        "curl through SOCKS5 over the iroh server of the list: {}\n{}",
        show(&out),
        client.process.failure("client")
    );
    assert_eq!(http.accepted(), 1, "the target saw the request");
    server.wait_for_stderr(&["connection opened", "transport=iroh"], TIMEOUT);
}

/// Small extension so the tests read naturally.
trait StderrLine {
    fn process_stderr_line(&self, needles: &[&str]) -> Option<String>;
}

impl StderrLine for WraithProcess {
    fn process_stderr_line(&self, needles: &[&str]) -> Option<String> {
        Some(self.wait_for_stderr(needles, TIMEOUT))
    }
}

#[test]
fn endpoint_id_survives_restart_and_old_ticket_reconnects() {
    let _serial = serial();
    let dir = temp_dir();
    let (host, client_key, ak) = keys(dir.path());
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let serve = || {
        serve_command(
            &host,
            &ak,
            &["--iroh-relay", "disabled", "--listen", &listen],
        )
    };
    let (first, id1, ticket) = start_iroh_server(serve(), false);

    let echo = echo_target();
    let forward = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
    let host_pub = pub_path(&host).to_str().unwrap().to_string();
    let user = current_user();
    let args = connect_args(
        &ticket,
        &client_key,
        &host_pub,
        &user,
        &[
            "--iroh-relay",
            "disabled",
            "--forward",
            &forward,
            "--keepalive-interval",
            "1",
            "--keepalive-count-max",
            "2",
        ],
    );
    let client = WraithClient::ready(WraithProcess::spawn(&args));
    let fwd = client.forward_addr();
    let small = Arc::new(b"before the restart".to_vec());
    assert_eq!(echo_roundtrip(fwd, Arc::clone(&small)), *small);

    first.kill();
    drop(first);
    let (second, id2, _ticket2) = start_iroh_server(serve(), false);
    assert_eq!(id1, id2, "the endpoint id must not change across restarts");

    // The client, still holding the old ticket, gets its session back.
    let deadline = Instant::now() + IROH_TIMEOUT;
    let after = Arc::new(b"after the restart".to_vec());
    loop {
        let ok = try_echo(fwd, Arc::clone(&after)).is_ok_and(|b| b == *after);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no echo after the restart\n{}\n{}",
            client.process.failure("client"),
            second.failure("server")
        );
        thread::sleep(Duration::from_millis(200));
    }
    let reconnected = client
        .process
        .stderr_text()
        .matches("connected to iroh:")
        .count();
    assert!(reconnected >= 2, "{}", client.process.stderr_text());
}

#[test]
fn wrong_endpoint_id_fails_clearly_in_bounded_time() {
    let _serial = serial();
    let dir = temp_dir();
    let old_host = keygen(dir.path(), "old_host");
    let new_host = keygen(dir.path(), "new_host");
    let client_key = keygen(dir.path(), "client");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&client_key]);
    let listen = format!("127.0.0.1:{}", free_udp_port());

    // A ticket for an endpoint that is gone, whose address now belongs to
    // a different endpoint (different host key, so a different id).
    let (old, old_id, stale_ticket) = start_iroh_server(
        serve_command(
            &old_host,
            &ak,
            &["--iroh-relay", "disabled", "--listen", &listen],
        ),
        false,
    );
    old.kill();
    drop(old);
    let (_new, new_id, _) = start_iroh_server(
        serve_command(
            &new_host,
            &ak,
            &["--iroh-relay", "disabled", "--listen", &listen],
        ),
        false,
    );
    assert_ne!(old_id, new_id);

    let host_pub = pub_path(&old_host).to_str().unwrap().to_string();
    let user = current_user();
    let args = connect_args(
        &stale_ticket,
        &client_key,
        &host_pub,
        &user,
        &["--iroh-relay", "disabled", "--connect-timeout", "10"],
    );
    let started = Instant::now();
    let client = WraithProcess::spawn(&args);
    let status = client.wait_exit(Duration::from_secs(30));
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Some(1), "{}", client.failure("client"));
    let stderr = client.stderr_text();
    let short = &old_id[..10];
    assert!(
        stderr.contains(&format!("cannot connect to iroh:{short}")),
        "the error must name the endpoint: {stderr}"
    );
    assert!(elapsed < Duration::from_secs(25), "took {elapsed:?}");
    eprintln!(
        "wrong endpoint id: exit 1 after {elapsed:?}: {}",
        stderr.trim()
    );

    // A bare id cannot be found without a relay: a usage error at once.
    let args = connect_args(
        &old_id,
        &client_key,
        &host_pub,
        &user,
        &["--iroh-relay", "disabled"],
    );
    let out = run(wraith_command(&args), TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--peer") && stderr.contains("ticket"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Relay path, in network namespaces

/// Three namespaces: R runs the relay and forwards nothing; A (client) and
/// B (server) each have one veth link to R. A and B can reach R's
/// addresses but not each other.
struct Topology {
    relay_ns: String,
    client_ns: String,
    server_ns: String,
    /// R's address on the A link (reachable from A and from B).
    relay_ip: String,
    /// B's address, which A must not reach.
    server_ip: String,
}

impl Topology {
    /// `tag` (0..=9) keeps the names and addresses of tests running at
    /// the same time apart.
    fn create(tag: u32) -> Option<Topology> {
        if !require_tool("ip") {
            return None;
        }
        let id = (std::process::id() % 1000) * 10 + tag;
        let octet = (std::process::id() % 25) * 10 + tag + 1;
        let t = Topology {
            relay_ns: format!("wri-r{id}"),
            client_ns: format!("wri-a{id}"),
            server_ns: format!("wri-b{id}"),
            relay_ip: format!("10.214.{octet}.1"),
            server_ip: format!("10.214.{octet}.6"),
        };
        // The namespace names exist before any step can fail, so Drop
        // cleans up whatever was made.
        if !ip(&["netns", "add", &t.relay_ns]) {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("cannot create a network namespace; CI must run as root");
            }
            eprintln!("skipping: cannot create network namespaces here (need root)");
            return None;
        }
        assert!(ip(&["netns", "add", &t.client_ns]));
        assert!(ip(&["netns", "add", &t.server_ns]));
        let (ra, ar) = (format!("wria{id}"), format!("wrar{id}"));
        let (rb, br) = (format!("wrib{id}"), format!("wrbr{id}"));
        let a_ip = format!("10.214.{octet}.2");
        let rb_ip = format!("10.214.{octet}.5");
        let relay_net = format!("{}/30", t.relay_ip);
        let rb_net = format!("{rb_ip}/30");
        let a_net = format!("{a_ip}/30");
        let b_net = format!("{}/30", t.server_ip);
        let r = t.relay_ns.as_str();
        let a = t.client_ns.as_str();
        let b = t.server_ns.as_str();
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "link", "add", &ra, "netns", r, "type", "veth", "peer", "name", &ar, "netns", a,
            ],
            vec![
                "link", "add", &rb, "netns", r, "type", "veth", "peer", "name", &br, "netns", b,
            ],
            vec!["-n", r, "addr", "add", &relay_net, "dev", &ra],
            vec!["-n", r, "addr", "add", &rb_net, "dev", &rb],
            vec!["-n", a, "addr", "add", &a_net, "dev", &ar],
            vec!["-n", b, "addr", "add", &b_net, "dev", &br],
            vec!["-n", r, "link", "set", &ra, "up"],
            vec!["-n", r, "link", "set", &rb, "up"],
            vec!["-n", r, "link", "set", "lo", "up"],
            vec!["-n", a, "link", "set", &ar, "up"],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", &br, "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
            vec!["-n", a, "route", "add", "default", "via", &t.relay_ip],
            vec!["-n", b, "route", "add", "default", "via", &rb_ip],
        ];
        for step in steps {
            assert!(ip(&step), "ip {step:?} failed");
        }
        // R must not route between A and B.
        let off = Command::new("ip")
            .args(["netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=0"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !off {
            // Without sysctl, read the flag directly from R's /proc view.
            let v = in_netns(r, || {
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default()
            });
            assert_eq!(
                v.trim(),
                "0",
                "forwarding must be off in the relay namespace"
            );
        }
        Some(t)
    }

    /// `wraith serve --transport iroh <extra>` inside namespace `ns`.
    fn serve(&self, ns: &str, host_key: &Path, ak: &Path, extra: &[&str]) -> Command {
        let plain = serve_command(host_key, ak, extra);
        let mut cmd = self.exec(ns, wraith_bin());
        cmd.env("NO_COLOR", "1").args(plain.get_args());
        cmd
    }

    fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client_ns, &self.server_ns, &self.relay_ns] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Run `f` on a thread that has joined network namespace `ns`: sockets it
/// creates live there (and keep living there when handed back).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("netns thread")
}

/// Start an iroh relay (HTTP, no TLS, no QUIC) inside `ns` on `ip`; it
/// runs until the test process ends. Returns its URL.
fn start_relay(ns: &str, ip: &str) -> String {
    let path = format!("/run/netns/{ns}");
    let bind: SocketAddr = format!("{ip}:0").parse().expect("relay bind address");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("relay runtime");
        rt.block_on(async move {
            let mut config = iroh_relay::server::ServerConfig::default();
            config.relay = Some(iroh_relay::server::RelayConfig::new(bind));
            let server = iroh_relay::server::Server::spawn(config)
                .await
                .expect("start the relay");
            let addr = server.http_addr().expect("relay http address");
            tx.send(addr).expect("report the relay address");
            // Serve until the test process exits.
            std::future::pending::<()>().await;
            drop(server);
        });
    });
    let addr = rx.recv_timeout(TIMEOUT).expect("relay started");
    format!("http://{addr}")
}

/// An HTTP target on 127.0.0.1 inside `ns`, answering [`HTTP_BODY`].
fn http_target_in(ns: &str) -> u16 {
    let listener = in_netns(ns, || {
        TcpListener::bind("127.0.0.1:0").expect("bind target")
    });
    let port = listener.local_addr().expect("target address").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(TIMEOUT));
            thread::spawn(move || answer_http(stream));
        }
    });
    port
}

/// `wraith connect --transport iroh` inside the client namespace, with
/// `extra` flags; waits for its session and SOCKS5 port.
fn client_in_ns(
    topo: &Topology,
    ticket: &str,
    host_key: &Path,
    client_key: &Path,
    extra: &[&str],
) -> (WraithProcess, SocketAddr) {
    let host_pub = pub_path(host_key).to_str().unwrap().to_string();
    let user = current_user();
    let mut connect = topo.exec(&topo.client_ns, wraith_bin());
    connect
        .env("NO_COLOR", "1")
        .args(connect_args(ticket, client_key, &host_pub, &user, extra));
    let client = WraithProcess::spawn_command(connect);
    client.wait_for_line("connected to ", IROH_TIMEOUT);
    let line = client.wait_for_line("socks5 listening on ", IROH_TIMEOUT);
    let socks = addr_after(&line, "socks5 listening on ");
    (client, socks)
}

/// curl in the client namespace through `socks` to `127.0.0.1:port` as
/// the server sees it; asserts the page arrived.
fn curl_through(
    topo: &Topology,
    socks: SocketAddr,
    port: u16,
    what: &str,
    procs: &[&WraithProcess],
) {
    let mut curl = topo.exec(&topo.client_ns, "curl");
    curl.args([
        "-sS",
        "--max-time",
        "20",
        "--socks5-hostname",
        &socks.to_string(),
        &format!("http://127.0.0.1:{port}/"),
    ]);
    let out = run(curl, IROH_TIMEOUT);
    let logs: Vec<String> = procs.iter().map(|p| p.failure(what)).collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        HTTP_BODY,
        "curl {what}: {}\n{}",
        show(&out),
        logs.join("\n")
    );
}

#[test]
fn relay_path_between_namespaces_that_cannot_reach_each_other() {
    let _serial = serial();
    let Some(topo) = Topology::create(0) else {
        return;
    };
    if !require_tool("curl") {
        return;
    }
    let dir = temp_dir();
    let (host, client_key, ak) = keys(dir.path());
    let relay = start_relay(&topo.relay_ns, &topo.relay_ip);

    // Proof of isolation: a TCP listener on B's address is unreachable from A.
    let server_ip = topo.server_ip.clone();
    let probe = in_netns(&topo.server_ns, move || {
        TcpListener::bind(format!("{server_ip}:0")).expect("bind probe in B")
    });
    let probe_addr = probe.local_addr().expect("probe address");
    let reach = in_netns(&topo.client_ns, move || {
        TcpStream::connect_timeout(&probe_addr, Duration::from_secs(2)).is_ok()
    });
    assert!(!reach, "the client namespace can reach the server directly");
    let relay_addr: SocketAddr = relay["http://".len()..].parse().expect("relay address");
    for ns in [&topo.client_ns, &topo.server_ns] {
        let ok = in_netns(ns, move || {
            TcpStream::connect_timeout(&relay_addr, Duration::from_secs(2)).is_ok()
        });
        assert!(ok, "{ns} cannot reach the relay at {relay_addr}");
    }

    let serve = topo.serve(&topo.server_ns, &host, &ak, &["--iroh-relay", &relay]);
    let (server, _id, ticket) = start_iroh_server(serve, true);
    assert!(
        server
            .stdout_text()
            .contains(&format!("--iroh-relay {relay}")),
        "{}",
        server.stdout_text()
    );

    let target_port = http_target_in(&topo.server_ns);
    let (client, socks) = client_in_ns(
        &topo,
        &ticket,
        &host,
        &client_key,
        &["--iroh-relay", &relay],
    );
    // curl runs in the client's namespace; the target is on the server's
    // loopback, reachable only through the tunnel.
    curl_through(
        &topo,
        socks,
        target_port,
        "through the relayed tunnel",
        &[&client, &server],
    );
    server.wait_for_stderr(&["connection opened", "transport=iroh"], TIMEOUT);
}

/// The client reaches the relay only through `--proxy`: the relay and the
/// server listen on the relay namespace's loopback, and the client's
/// namespace reaches nothing there but the proxy.
fn relay_through_client_proxy(tag: u32, proxy: &str) {
    let Some(topo) = Topology::create(tag) else {
        return;
    };
    if !require_tools(&[proxy, "curl"]) {
        return;
    }
    let dir = temp_dir();
    let (host, client_key, ak) = keys(dir.path());
    let relay = start_relay(&topo.relay_ns, "127.0.0.1");
    let relay_port = relay.rsplit(':').next().unwrap().to_string();

    let proxy_port = 18_000 + tag as u16 * 7 + (std::process::id() % 500) as u16;
    let (proxy_process, proxy_url, log) = match proxy {
        "microsocks" => {
            let mut cmd = topo.exec(&topo.relay_ns, "microsocks");
            cmd.args(["-i", &topo.relay_ip, "-p", &proxy_port.to_string()]);
            let p = WraithProcess::spawn_command(cmd);
            (p, format!("socks5://{}:{proxy_port}", topo.relay_ip), None)
        }
        _ => {
            let log = dir.path().join("tinyproxy.log");
            let conf = dir.path().join("tinyproxy.conf");
            std::fs::write(
                &conf,
                format!(
                    "Port {proxy_port}\nListen {}\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow 10.214.0.0/16\n",
                    topo.relay_ip,
                    log.display()
                ),
            )
            .unwrap();
            let mut cmd = topo.exec(&topo.relay_ns, "tinyproxy");
            cmd.arg("-d").arg("-c").arg(&conf);
            let p = WraithProcess::spawn_command(cmd);
            (
                p,
                format!("http://{}:{proxy_port}", topo.relay_ip),
                Some(log),
            )
        }
    };
    let proxy_addr: SocketAddr = format!("{}:{proxy_port}", topo.relay_ip).parse().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while !in_netns(&topo.client_ns, move || {
        TcpStream::connect_timeout(&proxy_addr, Duration::from_secs(1)).is_ok()
    }) {
        assert!(
            Instant::now() < deadline,
            "{}",
            proxy_process.failure(proxy)
        );
        thread::sleep(Duration::from_millis(50));
    }

    let serve = topo.serve(
        &topo.relay_ns,
        &host,
        &ak,
        &["--iroh-relay", &relay, "--listen", "127.0.0.1:0"],
    );
    let (server, _id, ticket) = start_iroh_server(serve, true);
    let target_port = http_target_in(&topo.relay_ns);
    let (client, socks) = client_in_ns(
        &topo,
        &ticket,
        &host,
        &client_key,
        &["--iroh-relay", &relay, "--proxy", &proxy_url],
    );
    curl_through(
        &topo,
        socks,
        target_port,
        &format!("through iroh via {proxy}"),
        &[&client, &server],
    );
    // The proxy's own log shows the relay connection.
    let text = match log {
        Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
        None => proxy_process.raw_output(),
    };
    assert!(
        text.contains(&format!(":{relay_port}"))
            || text.contains(&format!("127.0.0.1:{relay_port}")),
        "{proxy} did not carry the relay connection (port {relay_port}):\n{text}"
    );
}

#[test]
fn relay_reached_through_client_socks5_proxy() {
    let _serial = serial();
    relay_through_client_proxy(1, "microsocks");
}

#[test]
fn relay_reached_through_client_http_proxy() {
    let _serial = serial();
    relay_through_client_proxy(2, "tinyproxy");
}

#[test]
fn iroh_flag_mistakes_are_usage_errors() {
    let _serial = serial();
    let dir = temp_dir();
    let key = keygen(dir.path(), "id");
    let id = key.to_str().unwrap();
    for (args, expect) in [
        (
            vec![
                "connect",
                "--transport",
                "iroh",
                "--server",
                "h:22",
                "--peer",
                "x",
                "-i",
                id,
            ],
            "--server is not used with --transport iroh",
        ),
        (
            vec!["connect", "--server", "h:22", "--peer", "x", "-i", id],
            "--peer needs --transport iroh",
        ),
        (
            vec![
                "connect",
                "--server",
                "h:22",
                "--iroh-relay",
                "disabled",
                "-i",
                id,
            ],
            "--iroh-relay needs --transport iroh",
        ),
        (
            vec![
                "connect",
                "--server",
                "h:22",
                "--server",
                "tls://h",
                "--iroh-relay",
                "disabled",
                "-i",
                id,
            ],
            "--iroh-relay is used by no server in --server",
        ),
    ] {
        let out = run(wraith_command(&args), TIMEOUT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    // An iroh: server that is no ticket names --server and the value
    // (exit 1, like every invalid value).
    let out = run(
        wraith_command(&[
            "connect",
            "--server",
            "h:22",
            "--server",
            "iroh:nonsense",
            "-i",
            id,
        ]),
        TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr.contains("invalid --server value \"iroh:nonsense\": expected the `ticket:`"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    // A relay value that is no URL names the flag.
    let host = keygen(dir.path(), "host");
    let ak = dir.path().join("ak");
    write_authorized_keys(&ak, &[&key]);
    let out = run(
        serve_command(&host, &ak, &["--iroh-relay", "relay.example"]),
        TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr.contains("invalid --iroh-relay value"), "{stderr}");
}

/// Over iroh the server logs peers by endpoint id; tunnel destinations
/// must stay out of its output at every level, iroh's own logs included.
fn assert_iroh_server_hides_destinations(server_args: &[&str], envs: &[(&str, &str)]) {
    if !require_tool("curl") {
        return;
    }
    let DirectPair {
        server,
        id,
        client,
        echo,
        _dir,
    } = direct_pair(server_args, envs);
    let http = http_target();
    let dead_port = unused_port_outside_ephemeral_range();
    let out = curl_socks5h(client.socks5, &format!("http://localhost:{}/", http.port()));
    assert_eq!(
        expect_success(&out, "curl --socks5-hostname over iroh"),
        HTTP_BODY
    );
    let data = Arc::new(pseudo_random_bytes(64 * 1024, 7));
    assert_eq!(
        echo_roundtrip(client.forward_addr(), Arc::clone(&data)),
        *data
    );
    let out = curl_socks5h(client.socks5, &format!("http://localhost:{dead_port}/"));
    assert!(!out.status.success(), "{}", show(&out));

    // SIGTERM: the client closes its endpoint, so the server sees the
    // session end at once (a killed peer is noticed only by idle timeout).
    let term = Command::new("kill")
        .args(["-TERM", &client.process.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    client.process.wait_exit(TIMEOUT);
    server.wait_for_stderr(&["connection closed"], IROH_TIMEOUT);
    server.kill();
    let clean = strip_ansi(&server.raw_output());
    // The check must be able to fail: the output names the peer by id.
    assert!(
        clean.contains(&id),
        "server output lacks its endpoint id:\n{clean}"
    );
    assert!(clean.contains("transport=iroh"), "{clean}");
    let mut leaks = Vec::new();
    for (what, port) in [
        ("http target port", http.port()),
        ("echo target port", echo.port()),
        ("refused target port", dead_port),
    ] {
        if mentions_port(&clean, port) {
            leaks.push(format!("{what} {port}"));
        }
    }
    if clean.contains("localhost") {
        leaks.push("host name \"localhost\"".to_owned());
    }
    assert!(
        leaks.is_empty(),
        "server output names tunnel destinations: {leaks:?}\n--- server output ---\n{clean}"
    );
}

#[test]
fn iroh_server_logs_hide_destinations_at_default_level() {
    let _serial = serial();
    assert_iroh_server_hides_destinations(&[], &[]);
}

#[test]
fn iroh_server_logs_hide_destinations_at_trace_level() {
    let _serial = serial();
    assert_iroh_server_hides_destinations(&["-vv"], &[]);
}

#[test]
fn iroh_server_logs_hide_destinations_with_rust_log_trace() {
    let _serial = serial();
    assert_iroh_server_hides_destinations(&[], &[("RUST_LOG", "trace")]);
}

/// The point of iroh: OpenSSH reaches an sshd on a machine with no public
/// address, with `wraith connect --transport iroh --stdio` as ProxyCommand.
#[test]
fn openssh_reaches_sshd_through_iroh_with_stdio_proxy_command() {
    let _serial = serial();
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let sshd = Sshd::start(&[&client_key]);
    let host = keygen(dir.path(), "host");
    let ak = dir.path().join("authorized_keys");
    write_authorized_keys(&ak, &[&client_key]);
    let (server, _id, ticket) = start_iroh_server(
        serve_command(
            &host,
            &ak,
            &["--iroh-relay", "disabled", "--listen", "127.0.0.1:0"],
        ),
        false,
    );
    let proxy_command = format!(
        "{} -q connect --transport iroh --iroh-relay disabled --peer {ticket} --identity {} --host-key {} --user {} --stdio %h:%p",
        wraith_bin(),
        client_key.display(),
        pub_path(&host).display(),
        current_user()
    );
    let ssh = OpenSsh::new(dir.path(), sshd.addr, &sshd.host_key, &client_key);
    let option = format!("ProxyCommand={proxy_command}");
    let out = run(
        ssh.command(&["-o", &option], &["echo", "hello-through-iroh"]),
        IROH_TIMEOUT,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello-through-iroh",
        "{}\n{}",
        show(&out),
        server.failure("wraith serve")
    );
    assert!(out.status.success(), "{}", show(&out));
}
