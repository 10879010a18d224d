//! User-space delay lines, because the kernel here has no `netem`: a TCP
//! relay and a UDP relay on 127.0.0.1:0 that forward to one target and hold
//! each direction's bytes for a fixed one-way delay (RTT/2) before passing
//! them on. Put between a tunnel's client and server, they turn loopback
//! into a long path.
//!
//! They must never be what limits throughput: reads are large (one
//! timestamp and one queue entry per read or datagram, no per-byte work)
//! and each direction may hold [`MAX_HELD`] bytes, several times RTT/2 at a
//! few hundred MB/s. They must also stop by themselves: held bytes are
//! bounded (TCP stops reading, which pushes back on the sender; UDP drops,
//! as a router would), so are connections and UDP flows, an idle UDP flow
//! expires, and dropping a [`DelayLine`] ends every task it started.
//!
//! The TCP relay terminates TCP on each side, so the end points' TCP
//! windows and congestion control never see the delay; what is delayed is
//! everything above TCP (SSH windows, TLS, SOCKS replies). The UDP relay
//! forwards datagrams, so QUIC's own flow and congestion control run over
//! the delayed path end to end.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until, timeout};

/// Most bytes one direction of one connection or flow holds at a time:
/// 150 ms at 800 MB/s with room to spare.
pub(crate) const MAX_HELD: usize = 128 << 20;

/// Size of each read from a TCP socket.
const READ_CHUNK: usize = 256 * 1024;

/// Connections (TCP) or client flows (UDP) one delay line serves at once;
/// more are refused (TCP: closed at once; UDP: their datagrams dropped).
const MAX_CONNECTIONS: usize = 256;

/// A UDP flow that has not heard from its client for this long is dropped.
const FLOW_IDLE: Duration = Duration::from_secs(30);

/// Bound for connecting to the target.
const CONNECT: Duration = Duration::from_secs(15);

/// Kernel socket buffers asked for on the UDP relay's sockets, so a burst
/// released at once is not dropped before it is read (the kernel caps this
/// at `net.core.rmem_max` / `wmem_max`).
const UDP_SOCKET_BUFFER: usize = 8 << 20;

/// A running delay line; its tasks stop when it is dropped.
pub(crate) struct DelayLine {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DelayLine {
    /// A TCP relay to `target` that holds each direction for `one_way`.
    pub(crate) async fn tcp(target: SocketAddr, one_way: Duration) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a TCP delay line on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(tcp_accept_loop(listener, target, one_way));
        Ok(Self { addr, task })
    }

    /// A UDP relay on `listen` to `target` that holds each datagram for
    /// `one_way` in each direction. Each client address gets its own
    /// upstream socket, so the target sees one peer per client, as behind
    /// a NAT.
    pub(crate) async fn udp(
        listen: SocketAddr,
        target: SocketAddr,
        one_way: Duration,
    ) -> Result<Self> {
        let socket = udp_socket(listen)
            .with_context(|| format!("cannot bind a UDP delay line on {listen}"))?;
        let addr = socket.local_addr()?;
        let task = tokio::spawn(udp_loop(Arc::new(socket), target, one_way));
        Ok(Self { addr, task })
    }

    /// Where to connect (or send) instead of the target.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        // The accept (or receive) loop owns every connection's task in a
        // JoinSet, which aborts them as it is dropped.
        self.task.abort();
    }
}

async fn tcp_accept_loop(listener: TcpListener, target: SocketAddr, one_way: Duration) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, _)) => {
                    if conns.len() >= MAX_CONNECTIONS {
                        drop(inbound);
                        continue;
                    }
                    conns.spawn(async move {
                        // A failed connection is the client's to notice.
                        let _ = relay_tcp(inbound, target, one_way).await;
                    });
                }
                // Out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn relay_tcp(inbound: TcpStream, target: SocketAddr, one_way: Duration) -> io::Result<()> {
    let outbound = timeout(CONNECT, TcpStream::connect(target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting to the target"))??;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // The first error ends both directions (and drops both sockets).
    tokio::try_join!(
        tcp_direction(in_read, out_write, one_way),
        tcp_direction(out_read, in_write, one_way),
    )?;
    Ok(())
}

/// What one read produced, due to be written at `due`. Empty `data` is the
/// end of the stream (the reader saw EOF): the writer then half-closes.
struct Chunk {
    due: Instant,
    data: Vec<u8>,
    /// Returns the chunk's bytes to the direction's budget when written.
    _held: tokio::sync::OwnedSemaphorePermit,
}

/// Copies `from` to `to`, each read held for `one_way`, EOF carried as a
/// half-close once its own delay has passed.
async fn tcp_direction(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    one_way: Duration,
) -> io::Result<()> {
    let budget = Arc::new(Semaphore::new(MAX_HELD));
    let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
    let read = async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = from.read(&mut buf).await?;
            let due = Instant::now() + one_way;
            // Waits while the direction holds MAX_HELD bytes, so the
            // sender is pushed back by TCP instead of filling memory.
            let held = budget
                .clone()
                .acquire_many_owned(u32::try_from(n.max(1)).unwrap_or(u32::MAX))
                .await
                .map_err(|_| io::Error::other("delay line budget closed"))?;
            let data = buf[..n].to_vec();
            if tx
                .send(Chunk {
                    due,
                    data,
                    _held: held,
                })
                .is_err()
                || n == 0
            {
                return Ok::<(), io::Error>(());
            }
        }
    };
    let write = async move {
        while let Some(chunk) = rx.recv().await {
            if chunk.due > Instant::now() {
                sleep_until(chunk.due).await;
            }
            if chunk.data.is_empty() {
                return to.shutdown().await;
            }
            to.write_all(&chunk.data).await?;
        }
        Ok(())
    };
    tokio::try_join!(read, write)?;
    Ok(())
}

/// A UDP socket with large kernel buffers, for tokio.
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these, and a smaller buffer only means
    // a burst may be dropped, which QUIC recovers from.
    let _ = s.set_recv_buffer_size(UDP_SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(UDP_SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// One datagram on its way, due at `due`.
struct Datagram {
    due: Instant,
    data: Vec<u8>,
}

/// One direction's queue with a byte budget: a datagram that would take it
/// over [`MAX_HELD`] is dropped.
#[derive(Clone)]
struct DatagramQueue {
    tx: mpsc::UnboundedSender<Datagram>,
    held: Arc<AtomicUsize>,
}

impl DatagramQueue {
    fn new() -> (Self, mpsc::UnboundedReceiver<Datagram>, Arc<AtomicUsize>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        (
            Self {
                tx,
                held: held.clone(),
            },
            rx,
            held,
        )
    }

    /// Queues `data` to leave after `one_way`; false if the receiving task
    /// is gone.
    fn push(&self, data: &[u8], one_way: Duration) -> bool {
        let due = Instant::now() + one_way;
        if self.held.fetch_add(data.len(), Ordering::Relaxed) + data.len() > MAX_HELD {
            self.held.fetch_sub(data.len(), Ordering::Relaxed);
            return true;
        }
        self.tx
            .send(Datagram {
                due,
                data: data.to_vec(),
            })
            .is_ok()
    }
}

/// Sends each queued datagram once it is due, through `send`.
async fn release_datagrams<F, Fut>(
    mut rx: mpsc::UnboundedReceiver<Datagram>,
    held: Arc<AtomicUsize>,
    send: F,
) where
    F: Fn(Vec<u8>) -> Fut,
    Fut: Future<Output = io::Result<usize>>,
{
    while let Some(d) = rx.recv().await {
        if d.due > Instant::now() {
            sleep_until(d.due).await;
        }
        let len = d.data.len();
        // A refused or failed send is a lost datagram, as on a network.
        let _ = send(d.data).await;
        held.fetch_sub(len, Ordering::Relaxed);
    }
}

/// A client flow of the UDP relay: its queue towards the target and the
/// task that runs both directions.
struct Flow {
    to_target: DatagramQueue,
    last_heard: Instant,
    task: AbortHandle,
}

async fn udp_loop(socket: Arc<UdpSocket>, target: SocketAddr, one_way: Duration) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(FLOW_IDLE / 4);
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((n, client)) = received else {
                    // ICMP errors from earlier sends surface here; the
                    // socket itself is fine.
                    continue;
                };
                if !flows.contains_key(&client) {
                    if flows.len() >= MAX_CONNECTIONS {
                        continue;
                    }
                    match start_flow(&mut tasks, socket.clone(), client, target, one_way) {
                        Ok(flow) => {
                            flows.insert(client, flow);
                        }
                        Err(_) => continue,
                    }
                }
                if let Some(flow) = flows.get_mut(&client) {
                    flow.last_heard = Instant::now();
                    if !flow.to_target.push(&buf[..n], one_way) {
                        flow.task.abort();
                        flows.remove(&client);
                    }
                }
            }
            _ = sweep.tick() => {
                flows.retain(|_, f| {
                    let keep = f.last_heard.elapsed() < FLOW_IDLE && !f.task.is_finished();
                    if !keep {
                        f.task.abort();
                    }
                    keep
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

fn start_flow(
    tasks: &mut JoinSet<()>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    target: SocketAddr,
    one_way: Duration,
) -> io::Result<Flow> {
    let local = if target.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    let upstream = Arc::new(udp_socket(local)?);
    let (to_target, to_target_rx, to_target_held) = DatagramQueue::new();
    let (to_client, to_client_rx, to_client_held) = DatagramQueue::new();
    let task = tasks.spawn(async move {
        let up = upstream.clone();
        let forward = release_datagrams(to_target_rx, to_target_held, move |d| {
            let up = up.clone();
            async move { up.send_to(&d, target).await }
        });
        let back = release_datagrams(to_client_rx, to_client_held, move |d| {
            let socket = socket.clone();
            async move { socket.send_to(&d, client).await }
        });
        let receive = async {
            let mut buf = vec![0u8; 65_536];
            loop {
                match upstream.recv_from(&mut buf).await {
                    // Only the target's datagrams go back to the client.
                    Ok((n, from)) if from == target => {
                        if !to_client.push(&buf[..n], one_way) {
                            return;
                        }
                    }
                    Ok(_) | Err(_) => {}
                }
            }
        };
        tokio::join!(forward, back, receive);
    });
    Ok(Flow {
        to_target,
        last_heard: Instant::now(),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bound for every wait in these tests.
    const WAIT: Duration = Duration::from_secs(10);

    const ONE_WAY: Duration = Duration::from_millis(40);

    const LOCAL: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

    async fn within<T>(f: impl Future<Output = T>) -> T {
        timeout(WAIT, f).await.expect("timed out")
    }

    /// A TCP server that accepts one connection and hands it over.
    async fn one_connection() -> (SocketAddr, tokio::sync::oneshot::Receiver<TcpStream>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let _ = tx.send(s);
        });
        (addr, rx)
    }

    /// A pattern that shows reordering, loss and duplication.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
            .collect()
    }

    #[tokio::test]
    async fn tcp_delay_line_holds_each_direction_for_the_one_way_delay() {
        let (target, server) = one_connection().await;
        let dl = DelayLine::tcp(target, ONE_WAY).await.unwrap();
        let mut client = within(TcpStream::connect(dl.addr())).await.unwrap();
        let mut server = within(server).await.unwrap();

        let start = Instant::now();
        within(client.write_all(b"x")).await.unwrap();
        let mut b = [0u8; 1];
        within(server.read_exact(&mut b)).await.unwrap();
        let there = start.elapsed();
        within(server.write_all(b"y")).await.unwrap();
        within(client.read_exact(&mut b)).await.unwrap();
        let round_trip = start.elapsed();
        assert_eq!(&b, b"y");
        assert!(there >= ONE_WAY, "one way took {there:?}");
        assert!(round_trip >= 2 * ONE_WAY, "round trip took {round_trip:?}");
        assert!(
            round_trip < 2 * ONE_WAY + Duration::from_secs(2),
            "{round_trip:?}"
        );
    }

    #[tokio::test]
    async fn tcp_delay_line_carries_bytes_intact_in_order_and_half_close_both_ways() {
        let (target, server) = one_connection().await;
        let dl = DelayLine::tcp(target, ONE_WAY).await.unwrap();
        let client = within(TcpStream::connect(dl.addr())).await.unwrap();
        let server = within(server).await.unwrap();
        let up = pattern(5 << 20, 1);
        let down = pattern(3 << 20, 7);

        // Each side sends everything, half-closes, and reads until EOF,
        // both directions at once.
        async fn send_then_read_to_eof(s: TcpStream, out: Vec<u8>) -> Vec<u8> {
            let (mut r, mut w) = s.into_split();
            let send = async move {
                w.write_all(&out).await.unwrap();
                w.shutdown().await.unwrap();
                w
            };
            let read = async move {
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                got
            };
            let (_w, got) = tokio::join!(send, read);
            got
        }
        let (at_server, at_client) = within(async {
            tokio::join!(
                send_then_read_to_eof(server, down.clone()),
                send_then_read_to_eof(client, up.clone()),
            )
        })
        .await;
        assert!(
            at_server == up,
            "upload arrived altered ({} bytes)",
            at_server.len()
        );
        assert!(
            at_client == down,
            "download arrived altered ({} bytes)",
            at_client.len()
        );
    }

    #[tokio::test]
    async fn tcp_half_close_is_delayed_too_and_the_other_direction_goes_on() {
        let (target, server) = one_connection().await;
        let dl = DelayLine::tcp(target, ONE_WAY).await.unwrap();
        let mut client = within(TcpStream::connect(dl.addr())).await.unwrap();
        let mut server = within(server).await.unwrap();
        let start = Instant::now();
        within(client.shutdown()).await.unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            within(server.read(&mut b)).await.unwrap(),
            0,
            "EOF expected"
        );
        assert!(start.elapsed() >= ONE_WAY, "EOF overtook the delay");
        // The server may still answer after the client's half-close.
        within(server.write_all(b"late")).await.unwrap();
        let mut got = [0u8; 4];
        within(client.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"late");
    }

    #[tokio::test]
    async fn udp_delay_line_holds_datagrams_and_returns_replies_to_their_client() {
        let target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dl = DelayLine::udp(LOCAL, target.local_addr().unwrap(), ONE_WAY)
            .await
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let start = Instant::now();
        let sent: Vec<Vec<u8>> = (0..50u8).map(|i| pattern(1200, i)).collect();
        for d in &sent {
            within(client.send_to(d, dl.addr())).await.unwrap();
        }
        let mut buf = vec![0u8; 2000];
        let mut relay_side = None;
        for d in &sent {
            let (n, from) = within(target.recv_from(&mut buf)).await.unwrap();
            assert_eq!(&buf[..n], &d[..], "datagram altered or out of order");
            relay_side = Some(from);
        }
        assert!(start.elapsed() >= ONE_WAY, "datagrams overtook the delay");
        let relay_side = relay_side.unwrap();
        assert_ne!(
            relay_side,
            dl.addr(),
            "the target sees the flow's own socket"
        );

        let back = Instant::now();
        within(target.send_to(b"reply", relay_side)).await.unwrap();
        let (n, from) = within(client.recv_from(&mut buf)).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"reply"[..], dl.addr()));
        assert!(back.elapsed() >= ONE_WAY, "the reply overtook the delay");
    }

    #[tokio::test]
    async fn udp_delay_line_keeps_clients_apart() {
        let target = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dl = DelayLine::udp(
            LOCAL,
            target.local_addr().unwrap(),
            Duration::from_millis(5),
        )
        .await
        .unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 16];
        within(a.send_to(b"a", dl.addr())).await.unwrap();
        let (_, from_a) = within(target.recv_from(&mut buf)).await.unwrap();
        within(b.send_to(b"b", dl.addr())).await.unwrap();
        let (_, from_b) = within(target.recv_from(&mut buf)).await.unwrap();
        assert_ne!(from_a, from_b, "two clients share one upstream socket");
        within(target.send_to(b"to-b", from_b)).await.unwrap();
        let (n, _) = within(b.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"to-b");
    }
}
