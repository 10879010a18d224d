//! UDP through the tunnel, client side against the real server: SOCKS5 UDP
//! ASSOCIATE (RFC 1928 §7) on `wraith connect`'s SOCKS5 listener and
//! `--forward udp:…`, to a UDP echo server and to dnsmasq on 127.0.0.1.
//! The SOCKS5 client here is written from the RFC, not from wraith's code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long one datagram may take to come back.
const REPLY: Duration = Duration::from_secs(5);
/// How long we listen to be sure that nothing comes.
const SILENCE: Duration = Duration::from_millis(700);

/// A UDP echo server on 127.0.0.1 that stops when dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<usize>>,
}

impl Echo {
    fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            let mut echoed = 0;
            // Bounded: at most 10 minutes even if nobody stops it.
            let end = Instant::now() + Duration::from_secs(600);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                    echoed += 1;
                }
            }
            echoed
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// RSV RSV FRAG ATYP=1 DST.ADDR DST.PORT DATA, for an IPv4 destination.
fn socks_udp(frag: u8, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(v4) = to else {
        panic!("IPv4 only here")
    };
    let mut d = vec![0, 0, frag, 1];
    d.extend_from_slice(&v4.ip().octets());
    d.extend_from_slice(&v4.port().to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// RSV RSV FRAG ATYP=3 name DST.PORT DATA.
fn socks_udp_named(name: &str, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0, 0, 0, 3, u8::try_from(name.len()).unwrap()];
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&port.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// A datagram from the relay: the header must name an IPv4 source.
fn parse_reply(d: &[u8]) -> (SocketAddr, &[u8]) {
    assert!(d.len() >= 10, "short reply {d:?}");
    assert_eq!(&d[..4], &[0, 0, 0, 1], "reply header {:?}", &d[..4]);
    let ip = std::net::Ipv4Addr::new(d[4], d[5], d[6], d[7]);
    let port = u16::from_be_bytes([d[8], d[9]]);
    (SocketAddr::from((ip, port)), &d[10..])
}

/// Opens a UDP association: returns the control connection (it must stay
/// open) and the relay address the proxy answered with.
fn associate(socks: SocketAddr) -> (TcpStream, SocketAddr) {
    let mut c = TcpStream::connect(socks).expect("connect to socks5");
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    c.read_exact(&mut m).unwrap();
    assert_eq!(m, [5, 0]);
    c.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    let mut r = [0u8; 10];
    c.read_exact(&mut r).expect("udp associate reply");
    assert_eq!(&r[..4], &[5, 0, 0, 1], "udp associate reply {r:?}");
    let relay = SocketAddr::from((
        std::net::Ipv4Addr::new(r[4], r[5], r[6], r[7]),
        u16::from_be_bytes([r[8], r[9]]),
    ));
    assert_eq!(relay.ip(), socks.ip(), "relay beside the listener");
    (c, relay)
}

fn recv(sock: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 65_536];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// The bytes of datagram `i`: its number, then a pattern, 1–1400 bytes.
fn payload(i: usize) -> Vec<u8> {
    let len = 1 + (i * 7919) % 1400;
    let mut p: Vec<u8> = (0..len).map(|k| (k * 31 + i) as u8).collect();
    let tag = (i as u32).to_be_bytes();
    for (k, b) in tag.iter().enumerate().take(len) {
        p[k] = *b;
    }
    p
}

struct Setup {
    _dir: tempfile::TempDir,
    server: WraithServer,
    client: WraithClient,
}

fn setup(client_extra: &[&str]) -> Setup {
    let dir = temp_dir();
    let key = keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&key]);
    let client = WraithClient::start(server.addr, &key, &server.host_pub_arg(), client_extra);
    Setup {
        _dir: dir,
        server,
        client,
    }
}

#[test]
fn socks5_udp_associate_carries_a_thousand_datagrams_intact() {
    let echo = Echo::start();
    let s = setup(&[]);
    let (_control, relay) = associate(s.client.socks5);
    let app = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..1000 {
        let p = payload(i);
        app.send_to(&socks_udp(0, echo.addr, &p), relay).unwrap();
        let d = recv(&app, REPLY).unwrap_or_else(|| {
            panic!(
                "datagram {i} did not come back\n{}",
                s.client.process.failure("client")
            )
        });
        let (from, data) = parse_reply(&d);
        assert_eq!(from, echo.addr, "datagram {i}'s source");
        assert_eq!(data, &p[..], "datagram {i}");
    }
    // A name is resolved by the server.
    let p = b"by name".to_vec();
    app.send_to(&socks_udp_named("localhost", echo.addr.port(), &p), relay)
        .unwrap();
    let d = recv(&app, REPLY).expect("a datagram sent to a name comes back");
    assert_eq!(parse_reply(&d).1, &p[..]);
    let log = s.server.process.stderr_text();
    assert!(
        !log.contains(&echo.addr.port().to_string()),
        "the server log names the destination:\n{log}"
    );
}

#[test]
fn socks5_udp_drops_fragments_and_strangers_and_ends_with_its_connection() {
    let echo = Echo::start();
    let s = setup(&[]);
    let (control, relay) = associate(s.client.socks5);
    let app = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The first datagram makes `app` the association's client.
    app.send_to(&socks_udp(0, echo.addr, b"first"), relay)
        .unwrap();
    let d = recv(&app, REPLY).expect("first datagram");
    assert_eq!(parse_reply(&d).1, b"first");
    // A fragment is dropped; the whole datagram after it is carried.
    app.send_to(&socks_udp(1, echo.addr, b"fragment"), relay)
        .unwrap();
    app.send_to(&socks_udp(0, echo.addr, b"whole"), relay)
        .unwrap();
    let d = recv(&app, REPLY).expect("the whole datagram");
    assert_eq!(parse_reply(&d).1, b"whole", "the fragment was carried");
    // Another socket is not the association's client.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger
        .send_to(&socks_udp(0, echo.addr, b"stranger"), relay)
        .unwrap();
    assert_eq!(recv(&stranger, SILENCE), None, "a stranger got an answer");
    assert_eq!(
        recv(&app, SILENCE),
        None,
        "the stranger's datagram was carried"
    );
    // Closing the control connection ends the association.
    drop(control);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let _ = app.send_to(&socks_udp(0, echo.addr, b"after"), relay);
        if recv(&app, SILENCE).is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the association outlived its control connection"
        );
    }
}

#[test]
fn socks5_udp_carries_a_dns_query_to_dnsmasq() {
    if !require_tool("dnsmasq") {
        return;
    }
    let port = free_udp_port();
    let mut cmd = std::process::Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        &format!("--port={port}"),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--address=/wraith.test/10.9.8.7",
        "--log-facility=-",
    ]);
    if current_user() == "root" {
        cmd.arg("--user=root");
    }
    let dns = WraithProcess::spawn_command(cmd);
    dns.wait_for_stderr(&["started"], TIMEOUT);
    let s = setup(&[]);
    let (_control, relay) = associate(s.client.socks5);
    let app = UdpSocket::bind("127.0.0.1:0").unwrap();
    let query = dns_query(0x5a17, "wraith.test");
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + TIMEOUT;
    let answer = loop {
        app.send_to(&socks_udp(0, to, &query), relay).unwrap();
        if let Some(d) = recv(&app, Duration::from_secs(2)) {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "no DNS answer\n{}",
            dns.failure("dnsmasq")
        );
    };
    let (from, msg) = parse_reply(&answer);
    assert_eq!(from, to);
    assert_eq!(&msg[..2], &[0x5a, 0x17], "the answer's id");
    assert_eq!(msg[3] & 0x0f, 0, "rcode");
    assert!(
        u16::from_be_bytes([msg[6], msg[7]]) >= 1,
        "no answer record"
    );
    assert_eq!(&msg[msg.len() - 4..], &[10, 9, 8, 7], "the A record");
}

#[test]
fn udp_forward_carries_datagrams_from_several_sources() {
    let echo = Echo::start();
    let spec = format!("udp:127.0.0.1:0:127.0.0.1:{}", echo.addr.port());
    let s = setup(&["--forward", &spec]);
    let line = s
        .client
        .process
        .wait_for_line("forward listening on udp:", TIMEOUT);
    let local = addr_after(&line, "forward listening on udp:");
    assert!(line.ends_with(&format!("-> udp:{}", echo.addr)), "{line}");
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200 {
        let (pa, pb) = (payload(i), payload(i + 5000));
        a.send_to(&pa, local).unwrap();
        b.send_to(&pb, local).unwrap();
        assert_eq!(recv(&a, REPLY).as_deref(), Some(&pa[..]), "a: datagram {i}");
        assert_eq!(recv(&b, REPLY).as_deref(), Some(&pb[..]), "b: datagram {i}");
    }
}

#[test]
fn remote_udp_forward_carries_datagrams_from_several_sources() {
    let echo = Echo::start();
    let spec = format!("udp:127.0.0.1:0:127.0.0.1:{}", echo.addr.port());
    let s = setup(&["--remote-forward", &spec]);
    let line = s
        .client
        .process
        .wait_for_line("remote forward listening on udp:", TIMEOUT);
    assert!(line.ends_with(&format!("-> udp:{}", echo.addr)), "{line}");
    let on_server = addr_after(&line, "remote forward listening on udp:");
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200 {
        let (pa, pb) = (payload(i), payload(i + 7000));
        a.send_to(&pa, on_server).unwrap();
        b.send_to(&pb, on_server).unwrap();
        let fail = || s.client.process.failure("client");
        assert_eq!(
            recv(&a, REPLY).as_deref(),
            Some(&pa[..]),
            "a: datagram {i}\n{}",
            fail()
        );
        assert_eq!(
            recv(&b, REPLY).as_deref(),
            Some(&pb[..]),
            "b: datagram {i}\n{}",
            fail()
        );
    }
    // The TCP port of the same number is still free for a TCP forward.
    assert!(std::net::TcpListener::bind(on_server).is_ok());
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A DNS query for `name`'s A record (RFC 1035 §4.1).
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}
