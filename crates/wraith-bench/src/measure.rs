//! The load generator: bulk transfers (one stream and several in parallel),
//! new-connection latency, and many idle connections. It runs in the bench
//! process and only talks to the targets through a [`Route`]; it never looks
//! inside the tunnel. Every loop is bounded in count, every socket operation
//! in time: a stalled tunnel yields an error, not a hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::process::Side;
use crate::targets::{CHUNK, Target, ZEROS};
use crate::tunnel::Route;

/// Longest a transfer may go without any progress.
const STALL: Duration = Duration::from_secs(20);

/// Lowest rate a transfer may average before it is abandoned (bytes/s); a
/// tunnel slower than this is broken, not slow.
const FLOOR_RATE: u64 = 2_000_000;

/// Connections the idle figure opens at once (below ssh's listen backlog).
const IDLE_PARALLEL: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Bench client → tunnel → sink.
    Upload,
    /// Source → tunnel → bench client.
    Download,
}

impl Direction {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// Time allowed for moving `bytes` end to end.
pub(crate) fn transfer_deadline(bytes: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_secs(bytes / FLOOR_RATE)
}

async fn io<T>(what: &str, f: impl Future<Output = std::io::Result<T>>) -> Result<T> {
    timeout(STALL, f)
        .await
        .map_err(|_| anyhow!("{what}: no progress for {STALL:?}"))?
        .with_context(|| what.to_string())
}

/// Opens a connection to the right target for `dir`.
async fn open(route: &Route, dir: Direction) -> Result<TcpStream> {
    route
        .connect(match dir {
            Direction::Upload => Target::Sink,
            Direction::Download => Target::Source,
        })
        .await
}

/// Moves `bytes` over an open connection; returns when the last byte is
/// delivered (download: read by us; upload: acknowledged by the sink).
async fn transfer(mut s: TcpStream, dir: Direction, bytes: u64) -> Result<()> {
    io("send the length", s.write_all(&bytes.to_be_bytes())).await?;
    match dir {
        Direction::Download => {
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0u64;
            while got < bytes {
                let n = io("download", s.read(&mut buf)).await?;
                if n == 0 {
                    bail!("download closed after {got} of {bytes} bytes");
                }
                got += n as u64;
            }
        }
        Direction::Upload => {
            let mut left = bytes;
            while left > 0 {
                let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
                io("upload", s.write_all(&ZEROS[..n])).await?;
                left -= n as u64;
            }
            let mut ack = [0u8; 8];
            io("read the sink's acknowledgement", s.read_exact(&mut ack)).await?;
            let delivered = u64::from_be_bytes(ack);
            if delivered != bytes {
                bail!("upload: the sink received {delivered} of {bytes} bytes");
            }
        }
    }
    Ok(())
}

/// One stream of `bytes`; returns MB/s (10^6 bytes per second).
pub(crate) async fn single(route: &Route, dir: Direction, bytes: u64) -> Result<f64> {
    let s = open(route, dir).await?;
    let start = Instant::now();
    timeout(transfer_deadline(bytes), transfer(s, dir, bytes))
        .await
        .map_err(|_| anyhow!("{} of {bytes} bytes took too long", dir.name()))??;
    Ok(mb_per_s(bytes, start.elapsed()))
}

/// `streams` concurrent streams of `total / streams` bytes each, all opened
/// before the clock starts; returns aggregate MB/s.
pub(crate) async fn parallel(
    route: &Route,
    dir: Direction,
    total: u64,
    streams: usize,
) -> Result<f64> {
    let streams = streams.max(1);
    let each = total / streams as u64;
    let mut conns = Vec::with_capacity(streams);
    for _ in 0..streams {
        conns.push(open(route, dir).await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in conns {
        tasks.spawn(transfer(s, dir, each));
    }
    let all = async {
        while let Some(r) = tasks.join_next().await {
            r.context("a transfer task failed")??;
        }
        Ok::<(), anyhow::Error>(())
    };
    timeout(transfer_deadline(total), all)
        .await
        .map_err(|_| anyhow!("{streams} parallel streams took too long"))??;
    Ok(mb_per_s(each * streams as u64, start.elapsed()))
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
}

/// What a time-bounded transfer moved.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timed {
    /// Bytes the receiving end got.
    pub(crate) bytes: u64,
    /// Seconds from the request to the end of the measurement.
    pub(crate) seconds: f64,
}

impl Timed {
    pub(crate) fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9) / 1e6
    }
}

/// What a time-bounded transfer asks for: more than any run can move, so
/// the clock, not the size, ends it.
const TIMED_REQUEST: u64 = 1 << 50;

/// One stream for `duration`, counted where the bytes arrive, from the
/// moment the request is sent (so both directions include one round trip
/// of set-up).
///
/// Download: the bench reads from the source for `duration`, then drops
/// the connection; the rate is what it read over that time. Upload: the
/// bench writes into the sink for `duration`, then half-closes; the sink
/// answers with the count it received, and the rate is that count over
/// the time until the answer arrived (so bytes still in flight at the end
/// are counted, and so is the time to deliver them).
pub(crate) async fn timed(route: &Route, dir: Direction, duration: Duration) -> Result<Timed> {
    let mut s = open(route, dir).await?;
    let start = Instant::now();
    let deadline = start + duration;
    io(
        "send the request",
        s.write_all(&TIMED_REQUEST.to_be_bytes()),
    )
    .await?;
    match dir {
        Direction::Download => {
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0u64;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match timeout(left.min(STALL), s.read(&mut buf)).await {
                    Ok(Ok(0)) => bail!("download closed after {got} bytes"),
                    Ok(Ok(n)) => got += n as u64,
                    Ok(Err(e)) => return Err(e).context("download"),
                    Err(_) if Instant::now() >= deadline => break,
                    Err(_) => bail!("download: no progress for {STALL:?}"),
                }
            }
            let seconds = start.elapsed().as_secs_f64();
            Ok(Timed {
                bytes: got,
                seconds,
            })
        }
        Direction::Upload => {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // Cut short at the deadline: bytes written so far count.
                match timeout(left.min(STALL), s.write_all(&ZEROS)).await {
                    Ok(r) => r.context("upload")?,
                    Err(_) if Instant::now() >= deadline => break,
                    Err(_) => bail!("upload: no progress for {STALL:?}"),
                }
            }
            io("half-close the upload", s.shutdown()).await?;
            let mut ack = [0u8; 8];
            io("read the sink's count", s.read_exact(&mut ack)).await?;
            Ok(Timed {
                bytes: u64::from_be_bytes(ack),
                seconds: start.elapsed().as_secs_f64(),
            })
        }
    }
}

/// The round trip of one byte on an open connection to the echo target
/// (connection set-up not included), in milliseconds: the least of
/// `tries`, since a path only ever adds delay.
pub(crate) async fn echo_round_trip(route: &Route, tries: usize) -> Result<f64> {
    let mut s = route.connect(Target::Echo).await?;
    let mut best = f64::INFINITY;
    for _ in 0..tries.max(1) {
        let start = Instant::now();
        io("send one byte", s.write_all(b"x")).await?;
        let mut b = [0u8; 1];
        io("read the echo", s.read_exact(&mut b)).await?;
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

/// `samples` sequential "connect (with SOCKS5 handshake), send one byte,
/// read it back, close" round trips; returns each in milliseconds.
pub(crate) async fn latency(route: &Route, samples: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let start = Instant::now();
        let mut s = route
            .connect(Target::Echo)
            .await
            .with_context(|| format!("connection {} of {samples}", i + 1))?;
        io("send one byte", s.write_all(b"x")).await?;
        let mut b = [0u8; 1];
        io("read the echo", s.read_exact(&mut b)).await?;
        drop(s);
        out.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

/// Percentile by nearest rank (`p` in 0..=100) of unsorted values.
pub(crate) fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Median of unsorted values (mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// What holding many idle connections cost.
#[derive(Debug)]
pub(crate) struct IdleOutcome {
    pub(crate) requested: usize,
    /// Connections open and verified at the time RSS was read.
    pub(crate) reached: usize,
    /// How long opening and verifying them took.
    pub(crate) open_seconds: f64,
    pub(crate) client_base_kib: Option<u64>,
    pub(crate) client_kib: Option<u64>,
    pub(crate) server_base_kib: Option<u64>,
    pub(crate) server_kib: Option<u64>,
    /// Why fewer than `requested` were reached.
    pub(crate) error: Option<String>,
}

impl IdleOutcome {
    /// KiB per connection: (RSS with N − baseline) / N.
    pub(crate) fn per_conn(base: Option<u64>, with: Option<u64>, n: usize) -> Option<f64> {
        let (b, w) = (base?, with?);
        (n > 0).then(|| (w as f64 - b as f64) / n as f64)
    }
}

/// Opens `n` connections to the echo target through `route`, checks each
/// echoes, holds them all while reading the RSS of `client` and `server`,
/// then closes them. The baseline is read after one warm-up connection.
pub(crate) async fn idle(
    route: &Route,
    client: &Side,
    server: &Side,
    n: usize,
) -> Result<IdleOutcome> {
    echo_once(route).await.context("warm-up connection")?;
    let client_base_kib = client.rss_kib();
    let server_base_kib = server.rss_kib();

    let start = Instant::now();
    let deadline = start + Duration::from_secs(60) + Duration::from_millis(20) * n as u32;
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IDLE_PARALLEL.min(n.max(1)) {
        let (route, next, failed) = (route.clone(), next.clone(), failed.clone());
        workers.spawn(async move {
            let mut held = Vec::new();
            let mut error = None;
            while !failed.load(Ordering::Relaxed) && next.fetch_add(1, Ordering::Relaxed) < n {
                if Instant::now() >= deadline {
                    error = Some("opening the connections took too long".to_string());
                    failed.store(true, Ordering::Relaxed);
                    break;
                }
                match echo_once(&route).await {
                    Ok(s) => held.push(s),
                    Err(e) => {
                        error = Some(format!("{e:#}"));
                        failed.store(true, Ordering::Relaxed);
                    }
                }
            }
            (held, error)
        });
    }
    let mut held = Vec::with_capacity(n);
    let mut error = None;
    while let Some(r) = workers.join_next().await {
        let (mut h, e) = r.context("an idle-connection task failed")?;
        held.append(&mut h);
        if error.is_none() {
            error = e;
        }
    }
    let outcome = IdleOutcome {
        requested: n,
        reached: held.len(),
        open_seconds: start.elapsed().as_secs_f64(),
        client_base_kib,
        client_kib: client.rss_kib(),
        server_base_kib,
        server_kib: server.rss_kib(),
        error,
    };
    drop(held);
    Ok(outcome)
}

/// A new connection to the echo target that has echoed four bytes.
async fn echo_once(route: &Route) -> Result<TcpStream> {
    let mut s = route.connect(Target::Echo).await?;
    io("send to echo", s.write_all(b"ping")).await?;
    let mut b = [0u8; 4];
    io("read the echo", s.read_exact(&mut b)).await?;
    if &b != b"ping" {
        bail!("the echo target answered {b:?}");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(100.0));
        assert_eq!(percentile(&v, 99.0), Some(198.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn per_connection_memory_is_growth_over_count() {
        assert_eq!(
            IdleOutcome::per_conn(Some(1000), Some(3000), 100),
            Some(20.0)
        );
        assert_eq!(IdleOutcome::per_conn(None, Some(3000), 100), None);
        assert_eq!(IdleOutcome::per_conn(Some(1), Some(2), 0), None);
    }
}
