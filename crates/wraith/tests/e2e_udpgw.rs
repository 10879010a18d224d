//! The udpgw service against the real OpenSSH client: `ssh -W wraith-udpgw:1`
//! (OpenSSH refuses port 0 in `-W`) talking to `wraith serve`, with a UDP
//! echo server on 127.0.0.1 behind it. Frames are built and parsed here by
//! hand, independently of the codec in wraith-core, in tun2proxy's layout:
//! `LEN(2, BE) FLAGS(1) CONN_ID(2, BE) [ATYP ADDR PORT] DATA`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::{OpenSsh, TIMEOUT, WraithServer, keygen, public_key_line, require_tools, temp_dir};

const KEEPALIVE: u8 = 0x01;
const DATA: u8 = 0x02;
const ERR: u8 = 0x20;

/// `LEN` then the body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn keepalive(conn_id: u16) -> Vec<u8> {
    let mut body = vec![KEEPALIVE];
    body.extend_from_slice(&conn_id.to_be_bytes());
    frame(&body)
}

/// A DATA frame to an IPv4 address (ATYP 1).
fn data_to(conn_id: u16, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let IpAddr::V4(ip) = to.ip() else {
        panic!("IPv4 only here")
    };
    let mut body = vec![DATA];
    body.extend_from_slice(&conn_id.to_be_bytes());
    body.push(1);
    body.extend_from_slice(&ip.octets());
    body.extend_from_slice(&to.port().to_be_bytes());
    body.extend_from_slice(payload);
    frame(&body)
}

/// A DATA frame to a name (ATYP 3).
fn data_to_name(conn_id: u16, name: &str, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![DATA];
    body.extend_from_slice(&conn_id.to_be_bytes());
    body.push(3);
    body.push(u8::try_from(name.len()).unwrap());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&port.to_be_bytes());
    body.extend_from_slice(payload);
    frame(&body)
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    flags: u8,
    conn_id: u16,
    /// On DATA frames: where the datagram came from.
    peer: Option<SocketAddr>,
    payload: Vec<u8>,
}

fn parse_reply(body: &[u8]) -> Reply {
    assert!(body.len() >= 3, "frame shorter than its header: {body:?}");
    let flags = body[0];
    let conn_id = u16::from_be_bytes([body[1], body[2]]);
    if flags != DATA {
        return Reply {
            flags,
            conn_id,
            peer: None,
            payload: body[3..].to_vec(),
        };
    }
    let rest = &body[3..];
    let (ip, at) = match rest[0] {
        1 => (
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&rest[1..5]).unwrap())),
            5,
        ),
        4 => (
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&rest[1..17]).unwrap())),
            17,
        ),
        other => panic!("reply with ATYP {other}: the server answers with addresses"),
    };
    let port = u16::from_be_bytes([rest[at], rest[at + 1]]);
    Reply {
        flags,
        conn_id,
        peer: Some(SocketAddr::new(ip, port)),
        payload: rest[at + 2..].to_vec(),
    }
}

/// `ssh -W wraith-udpgw:1`: frames go to its stdin, replies come from its
/// stdout (read in the background).
struct Udpgw {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<Option<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Udpgw {
    fn open(ssh: &OpenSsh) -> Self {
        let mut gw = Self::open_unread(ssh);
        gw.read_in_background();
        gw
    }

    /// `ssh -W wraith-udpgw:1` whose stdout nobody reads until
    /// [`Udpgw::read_in_background`].
    fn open_unread(ssh: &OpenSsh) -> Self {
        let mut child = ssh
            .command(&["-W", "wraith-udpgw:1"], &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh");
        let stdin = child.stdin.take();
        let (_tx, out) = mpsc::channel();
        Udpgw {
            child,
            stdin,
            out,
            buf: Vec::new(),
        }
    }

    fn read_in_background(&mut self) {
        let Some(mut stdout) = self.child.stdout.take() else {
            return;
        };
        let (tx, out) = mpsc::channel();
        self.out = out;
        thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Some(chunk[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stdin
            .as_mut()
            .expect("stdin open")
            .write_all(bytes)
            .expect("write to ssh");
    }

    /// The next frame, or `None` if stdout closed first; panics after
    /// [`TIMEOUT`].
    fn next(&mut self) -> Option<Reply> {
        self.next_within(TIMEOUT)
            .unwrap_or_else(|| panic!("no udpgw frame within {TIMEOUT:?}"))
    }

    /// `None`: nothing within `wait`; `Some(None)`: stdout closed.
    fn next_within(&mut self, wait: Duration) -> Option<Option<Reply>> {
        let deadline = Instant::now() + wait;
        loop {
            if self.buf.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
                if self.buf.len() >= 2 + len {
                    let body: Vec<u8> = self.buf.drain(..2 + len).skip(2).collect();
                    return Some(Some(parse_reply(&body)));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(Some(chunk)) => self.buf.extend(chunk),
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => return Some(None),
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
            }
        }
    }

    /// Send one datagram on `conn_id` and expect it back from `echo`.
    fn round_trip(&mut self, conn_id: u16, echo: SocketAddr, payload: &[u8]) {
        self.send(&data_to(conn_id, echo, payload));
        let reply = self.next().expect("a reply before ssh closed");
        assert_eq!(
            reply,
            Reply {
                flags: DATA,
                conn_id,
                peer: Some(echo),
                payload: payload.to_vec()
            }
        );
    }

    fn expect_error(&mut self, conn_id: u16) {
        let reply = self.next().expect("a reply before ssh closed");
        assert_eq!((reply.flags, reply.conn_id), (ERR, conn_id), "{reply:?}");
    }
}

impl Drop for Udpgw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP echo server on 127.0.0.1 that counts what it gets and remembers
/// who sent it, and answers each datagram `copies` times. Stops with the
/// test (or after a minute).
struct Echo {
    addr: SocketAddr,
    socket: UdpSocket,
    received: Arc<AtomicUsize>,
    sources: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start(copies: usize) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let sources = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, src, st) = (
            socket.try_clone().unwrap(),
            received.clone(),
            sources.clone(),
            stop.clone(),
        );
        thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(60);
            let mut buf = vec![0u8; 65_536];
            while !st.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    r.fetch_add(1, Ordering::Relaxed);
                    src.lock().unwrap().push(from);
                    for _ in 0..copies {
                        let _ = s.send_to(&buf[..n], from);
                    }
                }
            }
        });
        Echo {
            addr,
            socket,
            received,
            sources,
            stop,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    server: WraithServer,
    ssh: OpenSsh,
    echo: Echo,
    /// The client key.
    key: std::path::PathBuf,
}

/// A server whose one key may reach the echo server (by address and as
/// `localhost`) and nothing else, started with `extra` flags (and `-v`, so
/// that debug lines are checked for destinations too).
fn setup(extra: &[&str]) -> Option<Setup> {
    setup_with_echo(extra, 1)
}

/// [`setup`] with an echo server that answers each datagram `copies` times.
fn setup_with_echo(extra: &[&str], copies: usize) -> Option<Setup> {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return None;
    }
    let dir = temp_dir();
    let echo = Echo::start(copies);
    let port = echo.addr.port();
    let key = keygen(dir.path(), "client");
    let line = format!(
        "permitopen=\"127.0.0.1:{port}\",permitopen=\"localhost:{port}\" {}\n",
        public_key_line(&key)
    );
    let server = start_server(dir.path(), &line, extra);
    let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, &key);
    Some(Setup {
        _dir: dir,
        server,
        ssh,
        echo,
        key,
    })
}

fn start_server(dir: &Path, authorized_line: &str, extra: &[&str]) -> WraithServer {
    let authorized_keys = dir.join(common::unique("authorized_keys"));
    std::fs::write(&authorized_keys, authorized_line).unwrap();
    let mut args = vec!["-v"];
    args.extend_from_slice(extra);
    WraithServer::start_with_file(dir, authorized_keys, &args, &[])
}

/// The server's log names none of the UDP destinations.
fn assert_log_names_no_destination(server: &WraithServer, ports: &[u16]) {
    let log = server.process.stderr_text();
    for port in ports {
        assert!(
            !common::mentions_port(&log, *port),
            "server log mentions port {port}:\n{log}"
        );
    }
    assert!(
        !log.contains("localhost"),
        "server log names a host:\n{log}"
    );
}

#[test]
fn a_thousand_datagrams_on_two_conn_ids_come_back_intact() {
    let Some(s) = setup(&[]) else { return };
    let mut gw = Udpgw::open(&s.ssh);
    // Outstanding datagrams, by conn_id and payload.
    let mut expected: HashMap<(u16, Vec<u8>), usize> = HashMap::new();
    const TOTAL: usize = 1000;
    const WINDOW: usize = 25;
    let mut sent = 0;
    while sent < TOTAL {
        let mut batch = Vec::new();
        let n = WINDOW.min(TOTAL - sent);
        for i in sent..sent + n {
            let conn_id = 1 + (i % 2) as u16;
            let len = 1 + (i * 7919) % 1400;
            let payload = common::pseudo_random_bytes(len, i as u64);
            batch.extend(data_to(conn_id, s.echo.addr, &payload));
            *expected.entry((conn_id, payload)).or_default() += 1;
        }
        // A whole window in one write: frames back to back.
        gw.send(&batch);
        for _ in 0..n {
            let r = gw.next().expect("a reply before ssh closed");
            assert_eq!((r.flags, r.peer), (DATA, Some(s.echo.addr)), "{r:?}");
            let left = expected
                .get_mut(&(r.conn_id, r.payload.clone()))
                .filter(|n| **n > 0)
                .unwrap_or_else(|| {
                    panic!(
                        "conn_id {} got {} bytes nobody sent on it",
                        r.conn_id,
                        r.payload.len()
                    )
                });
            *left -= 1;
        }
        sent += n;
    }
    assert!(expected.values().all(|n| *n == 0));
    assert_eq!(s.echo.received.load(Ordering::Relaxed), TOTAL);
    // Two flows, one socket each.
    let mut sources = s.echo.sources.lock().unwrap().clone();
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert_log_names_no_destination(&s.server, &[s.echo.addr.port()]);
}

#[test]
fn keepalives_are_answered_and_a_malformed_frame_is_skipped() {
    let Some(s) = setup(&[]) else { return };
    let mut gw = Udpgw::open(&s.ssh);
    // A keepalive for a conn_id with no flow yet, as tun2proxy sends on an
    // idle pooled stream.
    gw.send(&keepalive(7));
    assert_eq!(
        gw.next(),
        Some(Reply {
            flags: KEEPALIVE,
            conn_id: 7,
            peer: None,
            payload: vec![]
        })
    );
    let mut stream = data_to(3, s.echo.addr, b"before");
    stream.extend_from_slice(&[0, 3, 0x40, 0, 3]); // unknown flags
    stream.extend_from_slice(&[0, 5, DATA, 0, 3, 1, 10]); // address cut short
    stream.extend_from_slice(&[0, 2, DATA, 0]); // shorter than the header
    stream.extend_from_slice(&[0, 7, DATA, 0, 3, 9, 1, 2, 3]); // unknown ATYP
    stream.extend(data_to(3, s.echo.addr, b"after"));
    stream.extend(keepalive(3));
    gw.send(&stream);
    let mut got: Vec<Reply> = (0..3).map(|_| gw.next().expect("a reply")).collect();
    got.sort_by_key(|r| (r.flags, r.payload.clone()));
    let data = |p: &[u8]| Reply {
        flags: DATA,
        conn_id: 3,
        peer: Some(s.echo.addr),
        payload: p.to_vec(),
    };
    assert_eq!(
        got,
        [
            Reply {
                flags: KEEPALIVE,
                conn_id: 3,
                peer: None,
                payload: vec![]
            },
            data(b"after"),
            data(b"before"),
        ]
    );
    gw.round_trip(3, s.echo.addr, b"still there");
    s.server
        .process
        .wait_for_stderr(&["udpgw frame skipped", "unknown flags"], TIMEOUT);
    assert_log_names_no_destination(&s.server, &[s.echo.addr.port()]);
}

#[test]
fn an_oversize_datagram_costs_only_itself() {
    let Some(s) = setup(&[]) else { return };
    let mut gw = Udpgw::open(&s.ssh);
    gw.round_trip(4, s.echo.addr, b"before");
    // A frame can carry 65 525 bytes to an IPv4 peer; UDP over IPv4 only
    // 65 507. The socket refuses it: an error frame, one log line, and the
    // flow goes on.
    gw.send(&data_to(4, s.echo.addr, &vec![0x42; 65_520]));
    gw.expect_error(4);
    gw.round_trip(4, s.echo.addr, b"after");
    s.server
        .process
        .wait_for_stderr(&["udp datagram not sent", "conn_id=4"], TIMEOUT);
    assert_log_names_no_destination(&s.server, &[s.echo.addr.port()]);
}

#[test]
fn a_name_is_resolved_on_the_server() {
    let Some(s) = setup(&[]) else { return };
    let mut gw = Udpgw::open(&s.ssh);
    let port = s.echo.addr.port();
    gw.send(&data_to_name(9, "localhost", port, b"by name"));
    let r = gw.next().expect("a reply");
    assert_eq!(
        (r.flags, r.conn_id, r.payload.as_slice()),
        (DATA, 9, &b"by name"[..])
    );
    assert_eq!(r.peer.map(|p| p.port()), Some(port));
    assert!(r.peer.unwrap().ip().is_loopback(), "{r:?}");
    // Again, from the flow's cache of the name.
    gw.send(&data_to_name(9, "localhost", port, b"again"));
    assert_eq!(gw.next().expect("a reply").payload, b"again");
    assert_log_names_no_destination(&s.server, &[port]);
}

#[test]
fn a_destination_outside_permitopen_gets_an_error_and_nothing_is_sent() {
    let Some(s) = setup(&[]) else { return };
    let forbidden = UdpSocket::bind("127.0.0.1:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let forbidden_addr = forbidden.local_addr().unwrap();
    let mut gw = Udpgw::open(&s.ssh);
    gw.send(&data_to(4, forbidden_addr, b"no"));
    gw.expect_error(4);
    // The name is permitted only with the echo server's port.
    gw.send(&data_to_name(4, "localhost", forbidden_addr.port(), b"no"));
    gw.expect_error(4);
    // The flow still reaches what it may; by then the refused datagrams
    // would have arrived, had they been sent.
    gw.round_trip(4, s.echo.addr, b"yes");
    let mut buf = [0u8; 64];
    let r = forbidden.recv_from(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the forbidden destination got {r:?}"
    );
    // Only addresses the flow has sent to may answer: a datagram from
    // anyone else to the flow's socket is dropped.
    let flow_socket = *s.echo.sources.lock().unwrap().last().unwrap();
    forbidden.send_to(b"stranger", flow_socket).unwrap();
    gw.round_trip(4, s.echo.addr, b"after the stranger");
    assert_eq!(
        gw.next_within(Duration::from_millis(300)),
        None,
        "a datagram from a stranger was passed on"
    );
    s.server.process.wait_for_stderr(
        &[
            "udp datagram refused",
            "udp destination not permitted for this key",
        ],
        TIMEOUT,
    );
    assert_log_names_no_destination(&s.server, &[s.echo.addr.port(), forbidden_addr.port()]);
}

#[test]
fn the_flow_cap_refuses_the_third_conn_id_and_the_first_two_keep_working() {
    let Some(s) = setup(&["--max-udp-flows", "2"]) else {
        return;
    };
    let mut gw = Udpgw::open(&s.ssh);
    gw.round_trip(1, s.echo.addr, b"one");
    gw.round_trip(2, s.echo.addr, b"two");
    gw.send(&data_to(3, s.echo.addr, b"three"));
    gw.expect_error(3);
    gw.round_trip(1, s.echo.addr, b"one again");
    gw.round_trip(2, s.echo.addr, b"two again");
    assert_eq!(s.echo.received.load(Ordering::Relaxed), 4);
    s.server
        .process
        .wait_for_stderr(&["udp flow refused", "udp flow limit reached"], TIMEOUT);
    assert_log_names_no_destination(&s.server, &[s.echo.addr.port()]);
}

#[test]
fn an_idle_flow_expires_and_gives_its_slot_back() {
    let Some(s) = setup(&["--udp-idle-timeout", "1", "--max-udp-flows", "1"]) else {
        return;
    };
    let mut gw = Udpgw::open(&s.ssh);
    gw.round_trip(1, s.echo.addr, b"one");
    gw.send(&data_to(2, s.echo.addr, b"two"));
    gw.expect_error(2);
    s.server
        .process
        .wait_for_stderr(&["udp flow closed", "reason=idle"], TIMEOUT);
    // A datagram to the expired flow's old port is not delivered.
    let old = *s.echo.sources.lock().unwrap().first().unwrap();
    s.echo.socket.send_to(b"late", old).unwrap();
    // The slot is free again.
    gw.round_trip(2, s.echo.addr, b"two");
    assert_eq!(
        gw.next_within(Duration::from_millis(300)),
        None,
        "a frame arrived after the flow expired"
    );
    assert_log_names_no_destination(&s.server, &[s.echo.addr.port()]);
}

/// The next frame on a udpgw channel reached through `ssh -L`.
fn read_reply(stream: &mut TcpStream) -> Reply {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("a frame length");
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).expect("a frame body");
    parse_reply(&body)
}

fn tcp_round_trip(stream: &mut TcpStream, conn_id: u16, echo: SocketAddr, payload: &[u8]) {
    stream.write_all(&data_to(conn_id, echo, payload)).unwrap();
    let r = read_reply(stream);
    assert_eq!(
        (r.flags, r.conn_id, r.peer, r.payload.as_slice()),
        (DATA, conn_id, Some(echo), payload)
    );
}

#[test]
fn the_session_cap_counts_every_channel_and_eof_gives_the_flows_back() {
    let Some(s) = setup(&["--max-udp-flows-per-session", "2"]) else {
        return;
    };
    // One ssh session, two udpgw channels through a local forward.
    let port = common::free_port();
    let spec = format!("127.0.0.1:{port}:wraith-udpgw:1");
    let forward = common::WraithProcess::spawn_command(s.ssh.command(&["-N", "-L", &spec], &[]));
    forward.wait_for_port(("127.0.0.1", port), TIMEOUT);
    let mut a = common::connect(("127.0.0.1", port));
    let mut b = common::connect(("127.0.0.1", port));
    tcp_round_trip(&mut a, 1, s.echo.addr, b"a1");
    tcp_round_trip(&mut b, 1, s.echo.addr, b"b1");
    b.write_all(&data_to(2, s.echo.addr, b"b2")).unwrap();
    let r = read_reply(&mut b);
    assert_eq!((r.flags, r.conn_id), (ERR, 2), "{r:?}");
    s.server.process.wait_for_stderr(
        &["udp flow limit reached (--max-udp-flows-per-session)"],
        TIMEOUT,
    );
    // Closing channel a closes its flow, and the session may open another.
    a.shutdown(std::net::Shutdown::Both).unwrap();
    drop(a);
    s.server
        .process
        .wait_for_stderr(&["udp flow closed", "reason=closed"], TIMEOUT);
    tcp_round_trip(&mut b, 2, s.echo.addr, b"b2 again");
    tcp_round_trip(&mut b, 1, s.echo.addr, b"b1 again");
    assert_log_names_no_destination(&s.server, &[s.echo.addr.port()]);
}

#[test]
fn the_ip_alias_is_served_through_socks5_connect_as_tun2proxy_uses_it() {
    let Some(s) = setup(&[]) else { return };
    let client = common::WraithClient::start(s.server.addr, &s.key, &s.server.host_pub_arg(), &[]);
    // tun2proxy's --udpgw-server 0.0.0.0:0: a SOCKS5 CONNECT to that address.
    let alias: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let mut stream = common::socks5_open(client.socks5, alias, TIMEOUT).expect("CONNECT");
    stream.write_all(&keepalive(5)).unwrap();
    let r = read_reply(&mut stream);
    assert_eq!((r.flags, r.conn_id), (KEEPALIVE, 5), "{r:?}");
    tcp_round_trip(&mut stream, 5, s.echo.addr, b"via socks5");
    assert_log_names_no_destination(&s.server, &[s.echo.addr.port()]);
}

#[test]
fn a_client_that_stops_reading_costs_the_server_bounded_memory() {
    // Each datagram comes back 64 times: far more than the server may hold.
    const COPIES: usize = 64;
    let Some(s) = setup_with_echo(&[], COPIES) else {
        return;
    };
    let mut gw = Udpgw::open_unread(&s.ssh);
    // Opened and answering before the load starts.
    gw.send(&keepalive(1));
    let pid = s.server.process.pid();
    let mut rss = common::RssPeak::new(pid);
    // Hundreds of MB echoed back into a channel whose reader has stopped:
    // the server drops what it cannot queue instead of holding it.
    const DATAGRAMS: usize = 20_000;
    let payload = vec![0x5a; 1400];
    let mut batch = Vec::new();
    for i in 0..DATAGRAMS {
        batch.extend(data_to(1 + (i % 4) as u16, s.echo.addr, &payload));
        if batch.len() > 256 * 1024 {
            gw.send(&batch);
            batch.clear();
            rss.sample();
        }
    }
    gw.send(&batch);
    // Until the echo server has seen the load (bounded by the test's time).
    let deadline = Instant::now() + TIMEOUT;
    let mut last = 0;
    loop {
        rss.sample();
        let now = s.echo.received.load(Ordering::Relaxed);
        if now == last && now > 0 || Instant::now() > deadline {
            break;
        }
        last = now;
        thread::sleep(Duration::from_millis(200));
    }
    rss.sample();
    assert!(
        rss.growth() < 24 * 1024 * 1024,
        "the server grew by {} while its client did not read",
        common::mib(rss.growth())
    );
    // Reading again: the queued frames, then the channel works as before.
    gw.read_in_background();
    let mut drained = 0;
    while let Some(Some(_)) = gw.next_within(Duration::from_millis(500)) {
        drained += 1;
        assert!(
            drained <= DATAGRAMS * COPIES + 1,
            "more frames than were sent"
        );
    }
    assert!(drained > 0, "nothing was queued for the client");
    // What was held for the client: the server's own queues (2 MiB of
    // datagrams and a few frames), the channel's window (2 MiB from
    // OpenSSH) and the pipe; unbounded queues would hold over 20 MB here.
    assert!(
        drained * payload.len() < 8 * 1024 * 1024,
        "{drained} datagrams were held for a client that did not read"
    );
    gw.round_trip(2, s.echo.addr, b"still working");
}

#[test]
fn no_udp_refuses_the_channel() {
    let Some(s) = setup(&["--no-udp"]) else {
        return;
    };
    let cmd = s.ssh.command(&["-W", "wraith-udpgw:1"], &[]);
    let out = common::run_with_input(cmd, &keepalive(1), TIMEOUT);
    assert!(!out.status.success(), "{}", common::show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("administratively prohibited"),
        "{}",
        common::show(&out)
    );
    assert!(out.stdout.is_empty(), "{}", common::show(&out));
    s.server.process.wait_for_stderr(
        &["channel refused", "udp relay is off on this server"],
        TIMEOUT,
    );
}

#[test]
fn an_outbound_proxy_refuses_the_channel() {
    // Never dialed: the channel is refused before any target is.
    let Some(s) = setup(&["--proxy", "socks5://127.0.0.1:9"]) else {
        return;
    };
    let cmd = s.ssh.command(&["-W", "wraith-udpgw:1"], &[]);
    let out = common::run_with_input(cmd, &keepalive(1), TIMEOUT);
    assert!(!out.status.success(), "{}", common::show(&out));
    assert!(out.stdout.is_empty(), "{}", common::show(&out));
    s.server.process.wait_for_stderr(
        &[
            "channel refused",
            "udp relay is not available through an outbound proxy",
        ],
        TIMEOUT,
    );
}
