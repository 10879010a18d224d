//! Unauthenticated exhaustion: one source opening thousands of idle
//! connections (plain TCP, and TLS to a `--stealth` port: idle after the
//! TCP connect, after the handshake, or inside a request head) must not
//! lock out a real client from another address, nor grow the server's
//! memory without bound; running out of descriptors is one clear, rate-
//! limited error, and the server recovers.
//!
//! The attacker is 127.0.0.2, the real client 127.0.0.1 (all of 127/8 is
//! loopback on Linux).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Idle TCP connections the attacker opens to the plain server.
const TCP_FLOOD: usize = 5000;
/// Idle TLS connections it opens to the stealth server.
const TLS_FLOOD: usize = 500;
/// How long the real client may take to connect and tunnel.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// The most the servers' RSS may grow during the floods. The limits let one
/// source hold 16 unauthenticated SSH connections and 64 TLS handshakes or
/// decoy sessions; each costs well under 100 KiB (a russh session before
/// its key exchange, a rustls server connection with its buffers), so a few
/// MiB at most are expected, plus the real client's session, allocator
/// slack and thread stacks. Without the limits, 5000 SSH sessions held for
/// the login grace time and 500 TLS sessions cost far more than this.
const RSS_GROWTH_BOUND: u64 = 24 << 20;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The test opens about 5 500 sockets of its own: raise its soft
/// open-files limit to the hard one (the servers it starts inherit it,
/// and raise their own anyway).
fn raise_own_nofile(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise RLIMIT_NOFILE");
    }
    assert!(
        hard >= needed,
        "this test needs an open-files hard limit of at least {needed} (it is {hard})"
    );
}

/// A TCP connection from the attacker's address, or `None` if the server
/// (or its backlog) did not take it within a second.
fn attacker_connect(to: SocketAddr) -> Option<TcpStream> {
    connect_from(ATTACKER, to)
}

fn connect_from(from: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())
        .ok()?;
    s.connect_timeout(&to.into(), Duration::from_secs(1)).ok()?;
    Some(s.into())
}

/// Whether the server still holds `s` open (no EOF or reset waiting).
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    let open = match s.peek(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).expect("blocking");
    open
}

/// A self-signed certificate for localhost.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-keyout",
        p(&key),
        "-out",
        p(&cert),
    ]);
    expect_success(&run(cmd, TIMEOUT), "openssl req");
    (cert, key)
}

/// A `wraith serve --transport tls --stealth` with default limits.
struct Stealth {
    process: WraithProcess,
    addr: SocketAddr,
    host_pub: String,
}

fn start_stealth(dir: &Path, client_key: &Path, cert: &Path, key: &Path) -> Stealth {
    let host_key = keygen(dir, "stealth-host");
    let authorized = dir.join("stealth_authorized_keys");
    write_authorized_keys(&authorized, &[client_key]);
    let process = WraithProcess::spawn(&[
        "serve",
        "--key",
        p(&host_key),
        "--authorized-keys",
        p(&authorized),
        "--listen",
        "127.0.0.1:0",
        "--transport",
        "tls",
        "--tls-cert",
        p(cert),
        "--tls-key",
        p(key),
        "--stealth",
    ]);
    let line = process.wait_for_line("listening on tls://", TIMEOUT);
    let addr = addr_after(&line, "listening on tls://");
    Stealth {
        process,
        addr,
        host_pub: p(&pub_path(&host_key)).to_owned(),
    }
}

/// A TLS client that trusts any certificate (the attacker does not care).
fn tls_config() -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// What an idle TLS attacker connection does after the TCP connect.
enum Idle {
    /// Nothing at all.
    AfterConnect,
    /// A full handshake, then nothing.
    AfterHandshake,
    /// A handshake and the start of a request head, then nothing.
    InRequestHead,
}

/// One attacker TLS connection, kept by the caller; `None` when the server
/// refused it (closed it during the handshake), which is what the limits do.
fn idle_tls(
    to: SocketAddr,
    how: &Idle,
    config: &Arc<rustls::ClientConfig>,
) -> Option<Box<dyn std::any::Any>> {
    let tcp = attacker_connect(to)?;
    if matches!(how, Idle::AfterConnect) {
        return Some(Box::new(tcp));
    }
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    tcp.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
    let conn = rustls::ClientConnection::new(config.clone(), name).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).ok()?;
    }
    if matches!(how, Idle::InRequestHead) {
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: x")
            .ok()?;
        tls.flush().ok()?;
    }
    Some(Box::new(tls))
}

/// `ssh -W` through the plain server to an echo target, from 127.0.0.1:
/// the bytes come back, all within `deadline` of the start.
fn ssh_echo(ssh: &OpenSsh, deadline: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let echo = echo_target();
    let mut child = ssh
        .command(&["-W", &format!("127.0.0.1:{}", echo.port())], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start ssh: {e}"))?;
    let payload = pseudo_random_bytes(64 * 1024, 3);
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let to_send = payload.clone();
    let writer = thread::spawn(move || stdin.write_all(&to_send).map(|()| stdin));
    let (done, result) = mpsc::channel();
    let len = payload.len();
    thread::spawn(move || {
        let mut buf = vec![0u8; len];
        let r = read_exact_by(&mut stdout, &mut buf, Instant::now() + deadline);
        let _ = done.send(r.map(|()| buf));
    });
    let got = result.recv_timeout(deadline + Duration::from_secs(1));
    let _ = child.kill();
    let _ = child.wait();
    let _ = writer.join();
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    match got {
        Ok(Ok(bytes)) if bytes == payload => Ok(started.elapsed()),
        other => Err(format!("ssh -W did not echo ({other:?}); ssh said: {err}")),
    }
}

/// `wraith connect --transport tls` to the stealth server and curl through
/// its SOCKS5 port, from 127.0.0.1, within `deadline`.
fn wraith_tls_fetch(
    server: SocketAddr,
    key: &Path,
    host_pub: &str,
    deadline: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let target = http_target();
    let server_arg = server.to_string();
    let user = current_user();
    let client = WraithProcess::spawn(&[
        "connect",
        "--server",
        &server_arg,
        "--transport",
        "tls",
        "--insecure",
        "--identity",
        p(key),
        "--host-key",
        host_pub,
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ]);
    let line = client.wait_for_line("socks5 listening on ", deadline);
    let socks = addr_after(&line, "socks5 listening on ");
    client.wait_for_line("connected to ", deadline.saturating_sub(started.elapsed()));
    let out = curl_socks5h(socks, &format!("http://localhost:{}/", target.port()));
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || body != HTTP_BODY {
        return Err(format!("curl through wraith failed: {}", show(&out)));
    }
    let took = started.elapsed();
    if took > deadline {
        return Err(format!("the TLS client took {took:?}"));
    }
    Ok(took)
}

#[test]
fn idle_floods_from_one_source_leave_room_for_a_real_client() {
    if !require_tools(&["ssh", "ssh-keygen", "openssl", "curl"]) {
        return;
    }
    let test_started = Instant::now();
    raise_own_nofile((TCP_FLOOD + TLS_FLOOD) as u64 + 1000);
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let plain = WraithServer::start(dir.path(), &[&client_key]);
    let (cert, key) = self_signed(dir.path());
    let stealth = start_stealth(dir.path(), &client_key, &cert, &key);
    let ssh = OpenSsh::new(dir.path(), plain.addr, &plain.host_key, &client_key);
    // The real client works before the floods, and that warms up both
    // servers' allocators, so growth below is the floods' own.
    ssh_echo(&ssh, TIMEOUT).unwrap_or_else(|e| panic!("before the flood: {e}"));
    wraith_tls_fetch(stealth.addr, &client_key, &stealth.host_pub, TIMEOUT)
        .unwrap_or_else(|e| panic!("before the flood: {e}"));
    let mut plain_rss = RssPeak::new(plain.process.pid());
    let mut stealth_rss = RssPeak::new(stealth.process.pid());

    // The floods, bounded in count and time.
    let flood_deadline = Instant::now() + Duration::from_secs(30);
    let mut tcp_flood = Vec::with_capacity(TCP_FLOOD);
    for i in 0..TCP_FLOOD {
        if Instant::now() > flood_deadline {
            break;
        }
        if let Some(s) = attacker_connect(plain.addr) {
            tcp_flood.push(s);
        }
        if i % 500 == 0 {
            plain_rss.sample();
        }
    }
    let config = tls_config();
    let kinds = [
        Idle::AfterConnect,
        Idle::AfterHandshake,
        Idle::InRequestHead,
    ];
    let mut tls_flood = Vec::with_capacity(TLS_FLOOD);
    for i in 0..TLS_FLOOD {
        if Instant::now() > flood_deadline {
            break;
        }
        if let Some(c) = idle_tls(stealth.addr, &kinds[i % 3], &config) {
            tls_flood.push(c);
        }
        if i % 50 == 0 {
            stealth_rss.sample();
        }
    }
    eprintln!(
        "flood: {} TCP and {} TLS connections opened from {ATTACKER} in {:?}",
        tcp_flood.len(),
        tls_flood.len(),
        test_started.elapsed()
    );
    assert!(
        tcp_flood.len() >= TCP_FLOOD / 2,
        "the attacker could not even connect ({} of {TCP_FLOOD})",
        tcp_flood.len()
    );

    // While the attacker holds everything it got, the real client gets in.
    let took = ssh_echo(&ssh, CLIENT_DEADLINE).unwrap_or_else(|e| {
        panic!(
            "ssh from 127.0.0.1 during the flood: {e}\n{}",
            tail(&plain.process.stderr_text(), 20)
        )
    });
    eprintln!("ssh -W during the flood: {took:?}");
    let took = wraith_tls_fetch(
        stealth.addr,
        &client_key,
        &stealth.host_pub,
        CLIENT_DEADLINE,
    )
    .unwrap_or_else(|e| {
        panic!(
            "wraith over --stealth TLS from 127.0.0.1 during the flood: {e}\n{}",
            tail(&stealth.process.stderr_text(), 20)
        )
    });
    eprintln!("wraith connect + curl over TLS during the flood: {took:?}");

    plain_rss.sample();
    stealth_rss.sample();
    for (name, rss) in [("plain", &plain_rss), ("stealth", &stealth_rss)] {
        eprintln!(
            "{name} server RSS: {} before, {} peak",
            mib(rss.baseline),
            mib(rss.peak)
        );
        assert!(
            rss.growth() <= RSS_GROWTH_BOUND,
            "the {name} server grew by {} under the flood (bound {})",
            mib(rss.growth()),
            mib(RSS_GROWTH_BOUND)
        );
    }
    // The attacker holds no more than the per-source limits allow: 16
    // unauthenticated SSH connections, 64 TLS slots.
    let held_tcp = tcp_flood.iter().filter(|s| still_open(s)).count();
    assert!(
        held_tcp <= 16,
        "the server keeps {held_tcp} idle connections from one source open"
    );
    // Refusals were logged, but not once per connection.
    let refused = plain
        .process
        .stderr_text()
        .lines()
        .filter(|l| l.contains("connection refused"))
        .count();
    assert!(
        (1..=60).contains(&refused),
        "{refused} 'connection refused' lines for {} refusals",
        tcp_flood.len()
    );
    drop(tcp_flood);
    drop(tls_flood);
    assert!(
        test_started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        test_started.elapsed()
    );
}

#[test]
fn running_out_of_descriptors_is_one_clear_error_and_the_server_recovers() {
    if !require_tools(&["ssh", "ssh-keygen", "prlimit"]) {
        return;
    }
    raise_own_nofile(2000);
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let host_key = keygen(dir.path(), "host");
    let authorized = dir.path().join("authorized_keys");
    write_authorized_keys(&authorized, &[&client_key]);
    // A hard limit of 64 descriptors, and idle connections from 20
    // addresses (more than the per-source limits let one hold).
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=64:64", "--", wraith_bin()]).args([
        "serve",
        "--key",
        p(&host_key),
        "--authorized-keys",
        p(&authorized),
        "--listen",
        "127.0.0.1:0",
    ]);
    let server = WraithProcess::spawn_command(cmd);
    let line = server.wait_for_line("listening on ", TIMEOUT);
    let addr = addr_after(&line, "listening on ");
    let mut flood = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0u8;
    while flood.len() < 200 && Instant::now() < deadline {
        i = i.wrapping_add(1);
        if let Some(s) = connect_from(Ipv4Addr::new(127, 0, 1, 1 + i % 20), addr) {
            flood.push(s);
        }
    }
    // Let the accept loop run into EMFILE for a few seconds.
    let cpu_before = cpu_ticks(server.pid());
    let watch = Instant::now();
    server.wait_for_stderr(&["out of file descriptors"], TIMEOUT);
    thread::sleep(Duration::from_secs(3).saturating_sub(watch.elapsed()));
    let cpu = cpu_ticks(server.pid()).saturating_sub(cpu_before);
    let text = server.stderr_text();
    let errors = text
        .lines()
        .filter(|l| l.contains("out of file descriptors"))
        .count();
    assert!(
        errors <= 2,
        "{errors} descriptor errors in 3 s (must be rate-limited):\n{}",
        tail(&text, 10)
    );
    // 100 ticks a second: a busy accept loop would burn all of them.
    assert!(
        cpu < 100,
        "the server used {cpu} CPU ticks in 3 s at EMFILE"
    );
    assert!(
        flood.len() >= 100,
        "only {} connections were taken",
        flood.len()
    );
    // When the attacker lets go, a real client gets in again.
    drop(flood);
    let ssh = OpenSsh::new(dir.path(), addr, &host_key, &client_key);
    ssh_echo(&ssh, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("after the flood: {e}\n{}", tail(&server.stderr_text(), 20)));
}

/// User plus system CPU time of `pid` in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    field(11) + field(12)
}
