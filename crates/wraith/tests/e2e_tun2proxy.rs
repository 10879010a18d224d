//! The README's route-everything recipe, run for real: in a network
//! namespace whose default route is tun2proxy's TUN device, `curl`, `dig`
//! and a UDP echo client reach servers that only the far side of the tunnel
//! can reach. tun2proxy talks to `wraith connect`'s SOCKS5 listener, and
//! carries UDP either over udpgw (`--udpgw-server 0.0.0.0:0`, the server's
//! reserved address) or as SOCKS5 UDP ASSOCIATE.
//!
//! Addresses: a veth pair joins this namespace (10.216.N.1) to the test's
//! own one (10.216.N.2); the targets listen on 10.217.N.1, an address only
//! this side has, which the namespace reaches through its default route,
//! the TUN device. Nothing outside the pair is touched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The namespace and the target address beside this side of its pair.
struct Net {
    ns: VethNetns,
    /// The address the targets listen on.
    target_ip: String,
}

impl Net {
    fn create(tag: u32) -> Option<Net> {
        let ns = VethNetns::create("wu", 216, tag)?;
        let target_ip = ns.host_ip.replace("10.216.", "10.217.");
        let cidr = format!("{target_ip}/32");
        assert!(
            ip(&["addr", "add", &cidr, "dev", &ns.host_if]),
            "ip addr add {cidr}"
        );
        Some(Net { ns, target_ip })
    }
}

/// A UDP echo server that stops when dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start(ip: &str) -> Echo {
        let sock = UdpSocket::bind((ip, 0)).expect("bind udp echo");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            let end = Instant::now() + Duration::from_secs(600);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        Echo { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A UDP client run inside the namespace: 50 datagrams of 1–1400 bytes,
/// each answered intact within 5 s (two tries each: tun2proxy's first
/// datagram of a flow may race its channel's setup).
const UDP_CLIENT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for i in range(50):
    p = bytes((i * 7 + k) % 256 for k in range(1 + (i * 97) % 1400))
    for attempt in range(2):
        s.sendto(p, (host, port))
        try:
            d, _ = s.recvfrom(65536)
        except socket.timeout:
            continue
        if d != p:
            sys.exit("datagram %d came back changed" % i)
        break
    else:
        sys.exit("datagram %d did not come back" % i)
print("udp ok")
"#;

fn route_everything(udpgw: bool) {
    if !require_tools(&["tun2proxy-bin", "curl", "dig", "dnsmasq", "python3"]) {
        return;
    }
    let Some(net) = Net::create(u32::from(udpgw)) else {
        return;
    };
    // The far side: an HTTP server, dnsmasq and a UDP echo, on the target
    // address.
    let http = TcpListener::bind((net.target_ip.as_str(), 0)).expect("bind http");
    let http_addr = http.local_addr().unwrap();
    thread::spawn(move || {
        for s in http.incoming().take(20).flatten() {
            answer_http(s);
        }
    });
    let echo = Echo::start(&net.target_ip);
    let dns_port = UdpSocket::bind((net.target_ip.as_str(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dns = Command::new("dnsmasq");
    dns.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        &format!("--port={dns_port}"),
        &format!("--listen-address={}", net.target_ip),
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--user=root",
        "--address=/wraith.test/10.9.8.7",
        "--log-facility=-",
    ]);
    let dnsmasq = WraithProcess::spawn_command(dns);
    dnsmasq.wait_for_stderr(&["started"], TIMEOUT);

    let dir = temp_dir();
    let key = keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&key]);
    let socks = format!("{}:0", net.ns.host_ip);
    let server_addr = server.addr.to_string();
    let user = current_user();
    let client = WraithClient::ready(WraithProcess::spawn(&[
        "connect",
        "--server",
        &server_addr,
        "--identity",
        key.to_str().unwrap(),
        "--host-key",
        &server.host_pub_arg(),
        "--user",
        &user,
        "--socks5",
        &socks,
    ]));

    // tun2proxy in the namespace, its TUN device the default route.
    let proxy = format!("socks5://{}", client.socks5);
    let mut t2p = net.ns.command("tun2proxy-bin");
    t2p.args(["--tun", "tunw0", "--proxy", &proxy, "--dns", "direct"]);
    if udpgw {
        t2p.args(["--udpgw-server", "0.0.0.0:0"]);
    }
    let tun2proxy = WraithProcess::spawn_command(t2p);
    let deadline = Instant::now() + TIMEOUT;
    while !net.ns.ip(&["link", "show", "tunw0"]) {
        assert!(
            Instant::now() < deadline,
            "tun2proxy made no TUN device\n{}",
            tun2proxy.failure("tun2proxy")
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(net.ns.ip(&["addr", "add", "10.218.0.1/24", "dev", "tunw0"]));
    assert!(net.ns.ip(&["link", "set", "tunw0", "up"]));
    assert!(net.ns.ip(&["route", "add", "default", "dev", "tunw0"]));

    let failure = || {
        format!(
            "{}\n{}\n{}",
            tun2proxy.failure("tun2proxy"),
            client.process.failure("wraith connect"),
            server.process.failure("wraith serve")
        )
    };
    // TCP: curl to the HTTP server.
    let mut curl = net.ns.command("curl");
    curl.args([
        "--silent",
        "--show-error",
        "--max-time",
        "15",
        &format!("http://{http_addr}/"),
    ]);
    let out = run(curl, TIMEOUT);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout) == HTTP_BODY,
        "curl through tun2proxy: {}\n{}",
        show(&out),
        failure()
    );
    // DNS: dig to dnsmasq, over UDP.
    let mut dig = net.ns.command("dig");
    dig.args([
        "+short",
        "+time=3",
        "+tries=3",
        &format!("@{}", net.target_ip),
        "-p",
        &dns_port.to_string(),
        "wraith.test",
    ]);
    let out = run(dig, Duration::from_secs(30));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "10.9.8.7",
        "dig through tun2proxy: {}\n{}",
        show(&out),
        failure()
    );
    // UDP echo.
    let mut py = net.ns.command("python3");
    py.args([
        "-c",
        UDP_CLIENT,
        &echo.addr.ip().to_string(),
        &echo.addr.port().to_string(),
    ]);
    let out = run(py, Duration::from_secs(120));
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("udp ok"),
        "udp echo through tun2proxy: {}\n{}",
        show(&out),
        failure()
    );
    // UDP took the way asked for: tun2proxy logs each udpgw stream.
    let t2p_log = tun2proxy.raw_output();
    assert_eq!(
        t2p_log.contains("[UdpGw] Beginning stream"),
        udpgw,
        "udpgw {udpgw}, but tun2proxy says:\n{t2p_log}"
    );
    // The server never names where the tunnels went.
    let log = server.process.stderr_text();
    for secret in [http_addr.to_string(), net.target_ip.clone()] {
        assert!(
            !log.contains(&secret),
            "the server log names {secret}:\n{log}"
        );
    }
    drop(dnsmasq);
}

#[test]
fn tun2proxy_routes_tcp_dns_and_udp_through_udpgw() {
    route_everything(true);
}

#[test]
fn tun2proxy_routes_tcp_dns_and_udp_through_socks5_udp_associate() {
    route_everything(false);
}
