//! End to end: channel flow control (issue 12). A channel whose local
//! reader stops (a paused download, a target that never reads an upload)
//! must not stall the other channels of its session; memory stays bounded
//! by the windows granted; a peer that sends beyond its window is
//! disconnected.
//!
//! The stall tests run on three pairings: `wraith connect` ↔ `wraith
//! serve`, `wraith connect` ↔ OpenSSH `sshd`, OpenSSH `ssh -D` ↔ `wraith
//! serve`; and on `ssh -D` ↔ `sshd`, which checks the test itself: with
//! OpenSSH on both sides it passes.
//!
//! Everything is on 127.0.0.1. Every load loop stops by itself (bytes and
//! time, see `LOAD_*` in the harness) and when its test ends; every wait has
//! a deadline. These tests need `ssh-keygen`, `ssh`, `/usr/sbin/sshd` and a
//! python3 with AsyncSSH (Debian `python3-asyncssh`); outside CI they are
//! skipped when a tool is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The tests here run one at a time: each drives dozens of saturated
/// channels through debug builds, and on a 2-core CI machine running them
/// at once would measure the scheduler, not flow control.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the fresh channel must move beside the stalled ones.
const BULK: usize = 64 << 20;

/// A 1-byte echo through a new SOCKS connection (SOCKS handshake, channel
/// open, round trip) must come back within this. A tunnel blocked behind
/// its stalled channels never answers; OpenSSH on both sides took 1.8 s
/// here once on a loaded 2-core machine, so the bound leaves room for that.
const ECHO_LIMIT: Duration = Duration::from_secs(3);

/// How long a stalled echo or SOCKS open is waited for before it is
/// reported as lost.
const GIVE_UP: Duration = Duration::from_secs(5);

/// A transfer that moves no byte for this long has stalled.
const NO_PROGRESS_LIMIT: Duration = Duration::from_secs(5);

/// Upper bound for the whole fresh-channel transfer, stalled or not.
const BULK_TIMEOUT: Duration = Duration::from_secs(90);

/// The stalled connections count as stalled once none of them has moved a
/// byte for this long ...
const QUIET: Duration = Duration::from_secs(1);

/// ... which must happen within this (the bytes the windows and the kernel
/// socket buffers of 64 channels take, through debug builds).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Granularity of reads and writes that watch for progress.
const SLICE: Duration = Duration::from_millis(200);

// Memory bound. A channel whose local side stops taking bytes may make the
// process that receives it hold at most the window it granted: a stalled
// channel's window never grows, so that is the initial window, russh's
// default and wraith's `WINDOW_SIZE` (2 MiB). The sender holds at most what
// it has read from its local socket and not yet sent (a copy buffer, 64
// KiB). Bytes already written into, or not yet read from, a socket sit in
// the kernel's socket buffers (wraith's sockets autotune to a few MiB each
// on loopback; the test's own ends are kept small, see
// LOAD_SOCKET_BUFFER), which VmRSS does not count: the bound is about
// user-space buffering only. What the client's transport read-ahead holds
// is data the windows already allowed, so it needs no allowance of its
// own. The slack covers everything that is not channel data: per-channel
// tasks and copy buffers, allocator slack and arenas.

/// The most a stalled channel may make its receiver buffer (the initial
/// window; stalled channels never grow).
const WINDOW_PER_STALLED_CHANNEL: u64 = 2 << 20;

/// Stalled channels in the memory tests.
const STALLED_CHANNELS: usize = 64;

/// Growth allowed on top of the windows.
const RSS_SLACK: u64 = 64 << 20;

/// RSS growth allowed for client and server with all channels stalled.
const RSS_BUDGET: u64 = WINDOW_PER_STALLED_CHANNEL * STALLED_CHANNELS as u64 + RSS_SLACK;

/// How long the window-ignoring peer keeps sending, at most.
const IGNORER_SECONDS: u64 = 10;

// ---------------------------------------------------------------------------
// Tunnels

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Wraith,
    OpenSsh,
}

enum Server {
    Wraith(WraithServer),
    Sshd(Sshd),
}

impl Server {
    fn process(&self) -> &WraithProcess {
        match self {
            Server::Wraith(server) => &server.process,
            Server::Sshd(sshd) => &sshd.process,
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Server::Wraith(server) => server.addr,
            Server::Sshd(sshd) => sshd.addr,
        }
    }

    fn host_key(&self) -> &Path {
        match self {
            Server::Wraith(server) => &server.host_key,
            Server::Sshd(sshd) => &sshd.host_key,
        }
    }
}

/// One SSH session with a SOCKS5 port in front of it.
struct Tunnel {
    label: &'static str,
    socks: SocketAddr,
    client: WraithProcess,
    server: Server,
    // Declared last so the processes are killed before it is removed.
    _dir: tempfile::TempDir,
}

impl Tunnel {
    /// `None` (test skipped) if a tool is missing outside CI.
    fn start(client: Side, server: Side) -> Option<Self> {
        let mut tools = vec!["ssh-keygen"];
        if client == Side::OpenSsh {
            tools.push("ssh");
        }
        if server == Side::OpenSsh {
            tools.push(SSHD);
        }
        if !require_tools(&tools) {
            return None;
        }
        let dir = temp_dir();
        let key = ssh_keygen(dir.path(), "client");
        let server = match server {
            Side::Wraith => Server::Wraith(WraithServer::start(dir.path(), &[&key])),
            Side::OpenSsh => Server::Sshd(Sshd::start(&[&key])),
        };
        let (client_process, socks) = match client {
            Side::Wraith => {
                let pin = pub_path(server.host_key());
                let pin = pin.to_str().expect("utf-8 temp path");
                let client = WraithClient::start(server.addr(), &key, pin, &[]);
                (client.process, client.socks5)
            }
            Side::OpenSsh => {
                OpenSsh::new(dir.path(), server.addr(), server.host_key(), &key).dynamic_forward()
            }
        };
        let label = match (client, &server) {
            (Side::Wraith, Server::Wraith(_)) => "wraith connect -> wraith serve",
            (Side::Wraith, Server::Sshd(_)) => "wraith connect -> OpenSSH sshd",
            (Side::OpenSsh, Server::Wraith(_)) => "ssh -D -> wraith serve",
            (Side::OpenSsh, Server::Sshd(_)) => "ssh -D -> OpenSSH sshd",
        };
        Some(Self {
            label,
            socks,
            client: client_process,
            server,
            _dir: dir,
        })
    }

    /// Opens `n` SOCKS connections to `target` and returns them; panics if
    /// one cannot be opened (no data flows yet, so that is not a stall).
    fn open_connections(&self, target: SocketAddr, n: usize) -> Vec<TcpStream> {
        (1..=n)
            .map(|i| {
                socks5_open_for_load(self.socks, target, GIVE_UP).unwrap_or_else(|e| {
                    panic!(
                        "{}: SOCKS connection {i} of {n} failed before any data flowed: {e}\n{}",
                        self.label,
                        self.report()
                    )
                })
            })
            .collect()
    }

    /// Whether the processes still run, and the end of what they logged.
    fn report(&self) -> String {
        let state = |process: &WraithProcess| match process.try_status() {
            Some(status) => format!("exited ({status})"),
            None => "running".to_owned(),
        };
        format!(
            "client: {}, server: {}\n--- client stderr (last lines) ---\n{}\n--- server stderr (last lines) ---\n{}",
            state(&self.client),
            state(self.server.process()),
            tail(&self.client.stderr_text(), 15),
            tail(&self.server.process().stderr_text(), 15)
        )
    }
}

/// Polls `done` until it holds; panics naming `what` after `timeout`.
fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// What a fresh channel must still do beside the stalled ones

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Target → SOCKS client.
    Download,
    /// SOCKS client → target.
    Upload,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }
}

/// Results of the fresh-channel checks: each the time it took or why it
/// failed.
struct Checks {
    echo: Result<Duration, String>,
    bulk: Result<Duration, String>,
    direction: Direction,
}

impl Checks {
    /// A 1-byte echo through a new SOCKS connection, then [`BULK`] bytes on
    /// another fresh channel in `direction`.
    fn run(tunnel: &Tunnel, direction: Direction) -> Self {
        let echo = echo_target();
        let echo = timed_echo(tunnel.socks, echo.addr);
        let bulk = match direction {
            Direction::Download => {
                let data = Arc::new(pseudo_random_bytes(BULK, 0xb01c));
                let source = source_target(Arc::clone(&data));
                bulk_download(tunnel.socks, source.addr, &data)
            }
            Direction::Upload => {
                let sink = counting_sink_target(BULK as u64);
                bulk_upload(tunnel.socks, sink.addr, BULK)
            }
        };
        Self {
            echo,
            bulk,
            direction,
        }
    }

    fn passed(&self) -> bool {
        matches!(self.echo, Ok(took) if took < ECHO_LIMIT) && self.bulk.is_ok()
    }

    /// Panics, saying what stalled, unless both checks passed.
    fn assert_passed(&self, tunnel: &Tunnel, load: &str) {
        let show = |result: &Result<Duration, String>| match result {
            Ok(took) => format!("done in {took:.2?}"),
            Err(why) => format!("FAILED: {why}"),
        };
        if self.passed() {
            eprintln!(
                "{}: beside {load}: echo {}, {} MiB {} {}",
                tunnel.label,
                show(&self.echo),
                BULK >> 20,
                self.direction.name(),
                show(&self.bulk)
            );
            return;
        }
        panic!(
            "{}: the tunnel stalled beside {load}.\n  \
             1-byte echo through a new SOCKS connection (limit {ECHO_LIMIT:?}): {}\n  \
             {} MiB {} on a fresh channel: {}\n{}",
            tunnel.label,
            show(&self.echo),
            BULK >> 20,
            self.direction.name(),
            show(&self.bulk),
            tunnel.report()
        );
    }
}

/// SOCKS open, one byte out, the same byte back; the time all that took.
fn timed_echo(socks: SocketAddr, echo: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let mut stream = socks5_open(socks, echo, GIVE_UP)?;
    stream
        .write_all(b"!")
        .map_err(|e| format!("sending the byte failed: {e}"))?;
    let left = GIVE_UP.saturating_sub(start.elapsed()).max(SLICE);
    stream.set_read_timeout(Some(left)).expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(1) if byte == *b"!" => Ok(start.elapsed()),
        Ok(0) => Err(format!(
            "the channel closed before the echo, after {:.2?}",
            start.elapsed()
        )),
        Ok(_) => Err(format!("echoed {byte:?} instead of \"!\"")),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(format!(
            "SOCKS connection opened in {:.2?} but no echo came back within {GIVE_UP:?}",
            start.elapsed().saturating_sub(left)
        )),
        Err(e) => Err(format!("reading the echo failed: {e}")),
    }
}

/// Reads `expected` from `source` through a new SOCKS connection and checks
/// every byte; fails if nothing arrives for [`NO_PROGRESS_LIMIT`].
fn bulk_download(
    socks: SocketAddr,
    source: SocketAddr,
    expected: &[u8],
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut stream = socks5_open(socks, source, GIVE_UP)?;
    stream.set_read_timeout(Some(SLICE)).expect("read timeout");
    let len = expected.len();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    let mut last_progress = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if got + n > len || buf[..n] != expected[got..got + n] {
                    return Err(format!(
                        "the bytes differ from what the target sent, at or after offset {got}"
                    ));
                }
                got += n;
                last_progress = Instant::now();
            }
            Err(e) if slice_elapsed(&e) => {}
            Err(e) => {
                return Err(format!(
                    "the download failed after {} of {}: {e}",
                    mib(got as u64),
                    mib(len as u64)
                ));
            }
        }
        transfer_deadlines(start, last_progress, got, len, "arrived")?;
    }
    if got != len {
        return Err(format!(
            "the channel ended after {got} of {len} bytes ({:.2?})",
            start.elapsed()
        ));
    }
    Ok(start.elapsed())
}

/// A read or write that only ran out its [`SLICE`]: try again.
fn slice_elapsed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Fails a bulk transfer that moved nothing for [`NO_PROGRESS_LIMIT`] or
/// runs past [`BULK_TIMEOUT`]; `done` of `len` bytes have `what` so far.
fn transfer_deadlines(
    start: Instant,
    last_progress: Instant,
    done: usize,
    len: usize,
    what: &str,
) -> Result<(), String> {
    if last_progress.elapsed() >= NO_PROGRESS_LIMIT {
        return Err(format!(
            "stalled after {} of {} {what}: nothing moved for {NO_PROGRESS_LIMIT:?}",
            mib(done as u64),
            mib(len as u64)
        ));
    }
    if start.elapsed() >= BULK_TIMEOUT {
        return Err(format!(
            "only {} of {} {what} within {BULK_TIMEOUT:?}",
            mib(done as u64),
            mib(len as u64)
        ));
    }
    Ok(())
}

/// Writes `len` bytes to a [`counting_sink_target`] through a new SOCKS
/// connection and checks the count it answers; fails if no byte can be
/// written for [`NO_PROGRESS_LIMIT`].
fn bulk_upload(socks: SocketAddr, sink: SocketAddr, len: usize) -> Result<Duration, String> {
    let start = Instant::now();
    let mut stream = socks5_open(socks, sink, GIVE_UP)?;
    stream
        .set_write_timeout(Some(SLICE))
        .expect("write timeout");
    let chunk = pseudo_random_bytes(256 * 1024, 0x5e9d);
    let mut sent = 0;
    let mut last_progress = Instant::now();
    while sent < len {
        let want = chunk.len().min(len - sent);
        match stream.write(&chunk[..want]) {
            Ok(0) => return Err(format!("the channel stopped taking bytes after {sent}")),
            Ok(n) => {
                sent += n;
                last_progress = Instant::now();
            }
            Err(e) if slice_elapsed(&e) => {}
            Err(e) => {
                return Err(format!(
                    "the upload failed after {} of {}: {e}",
                    mib(sent as u64),
                    mib(len as u64)
                ));
            }
        }
        transfer_deadlines(start, last_progress, sent, len, "written")?;
    }
    // The sink answers with its count once it has every byte.
    stream
        .set_read_timeout(Some(NO_PROGRESS_LIMIT))
        .expect("read timeout");
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).map_err(|e| {
        format!(
            "all {} written, but the target's byte count did not come back within \
             {NO_PROGRESS_LIMIT:?} ({e}): bytes are stuck in the tunnel",
            mib(len as u64)
        )
    })?;
    let count = u64::from_be_bytes(count);
    if count != len as u64 {
        return Err(format!("the target received {count} of {len} bytes"));
    }
    Ok(start.elapsed())
}

// ---------------------------------------------------------------------------
// Loads that stall

/// `n` SOCKS connections to a target that streams without pause, never
/// read; returns once they have stopped moving (with the connections, which
/// must be kept open, and the target, whose drop ends the load).
fn stall_downloads(
    tunnel: &Tunnel,
    n: usize,
    on_poll: impl FnMut(),
) -> (Vec<TcpStream>, StreamingTarget, String) {
    let streamer = StreamingTarget::start();
    let connections = tunnel.open_connections(streamer.addr(), n);
    eventually("the server side to dial every connection", TIMEOUT, || {
        streamer.target.accepted() >= n
    });
    streamer.release();
    if let Err(e) = streamer
        .written
        .wait_until_quiet(QUIET, STALL_TIMEOUT, on_poll)
    {
        panic!("{}: {e}\n{}", tunnel.label, tunnel.report());
    }
    let load = format!(
        "{n} never-reading SOCKS connection(s) to a target that streams without pause \
         (the target wrote {} before they stalled)",
        streamer.written.describe()
    );
    (connections, streamer, load)
}

/// Uploads that stop by themselves when dropped.
struct Uploads {
    fed: Progress,
    stop: Latch,
    _target: NeverReadingTarget,
}

impl Drop for Uploads {
    fn drop(&mut self) {
        self.stop.set();
    }
}

/// `n` SOCKS connections to a target that accepts and never reads, each
/// written to as fast as it takes bytes; returns once they have stopped
/// taking any.
fn stall_uploads(tunnel: &Tunnel, n: usize, on_poll: impl FnMut()) -> (Uploads, String) {
    let target = NeverReadingTarget::start();
    let connections = tunnel.open_connections(target.addr(), n);
    eventually("the server side to dial every connection", TIMEOUT, || {
        target.target.accepted() >= n
    });
    let uploads = Uploads {
        fed: Progress::default(),
        stop: Latch::default(),
        _target: target,
    };
    for stream in connections {
        spawn_uploader(stream, uploads.fed.add(), uploads.stop.clone());
    }
    if let Err(e) = uploads.fed.wait_until_quiet(QUIET, STALL_TIMEOUT, on_poll) {
        panic!("{}: {e}\n{}", tunnel.label, tunnel.report());
    }
    let load = format!(
        "{n} SOCKS connection(s) uploading into a target that never reads \
         (they wrote {} before they stalled)",
        uploads.fed.describe()
    );
    (uploads, load)
}

fn unread_downloads_leave_the_tunnel_working(client: Side, server: Side, n: usize) {
    let _serial = serial();
    let Some(tunnel) = Tunnel::start(client, server) else {
        return;
    };
    let (_connections, _streamer, load) = stall_downloads(&tunnel, n, || {});
    Checks::run(&tunnel, Direction::Download).assert_passed(&tunnel, &load);
}

fn unread_uploads_leave_the_tunnel_working(client: Side, server: Side, n: usize) {
    let _serial = serial();
    let Some(tunnel) = Tunnel::start(client, server) else {
        return;
    };
    let (_uploads, load) = stall_uploads(&tunnel, n, || {});
    Checks::run(&tunnel, Direction::Upload).assert_passed(&tunnel, &load);
}

// ---------------------------------------------------------------------------
// Never-reading downloads

#[test]
fn wraith_to_wraith_keeps_moving_beside_1_unread_download() {
    unread_downloads_leave_the_tunnel_working(Side::Wraith, Side::Wraith, 1);
}

#[test]
fn wraith_to_wraith_keeps_moving_beside_64_unread_downloads() {
    unread_downloads_leave_the_tunnel_working(Side::Wraith, Side::Wraith, 64);
}

#[test]
fn wraith_to_sshd_keeps_moving_beside_1_unread_download() {
    unread_downloads_leave_the_tunnel_working(Side::Wraith, Side::OpenSsh, 1);
}

#[test]
fn wraith_to_sshd_keeps_moving_beside_64_unread_downloads() {
    unread_downloads_leave_the_tunnel_working(Side::Wraith, Side::OpenSsh, 64);
}

#[test]
fn ssh_d_to_wraith_keeps_moving_beside_1_unread_download() {
    unread_downloads_leave_the_tunnel_working(Side::OpenSsh, Side::Wraith, 1);
}

#[test]
fn ssh_d_to_wraith_keeps_moving_beside_64_unread_downloads() {
    unread_downloads_leave_the_tunnel_working(Side::OpenSsh, Side::Wraith, 64);
}

/// Checks the test, not wraith: OpenSSH on both sides passes it.
#[test]
fn openssh_on_both_sides_keeps_moving_beside_64_unread_downloads() {
    unread_downloads_leave_the_tunnel_working(Side::OpenSsh, Side::OpenSsh, 64);
}

// ---------------------------------------------------------------------------
// Uploads into targets that never read

#[test]
fn wraith_to_wraith_keeps_moving_beside_1_unread_upload() {
    unread_uploads_leave_the_tunnel_working(Side::Wraith, Side::Wraith, 1);
}

#[test]
fn wraith_to_wraith_keeps_moving_beside_64_unread_uploads() {
    unread_uploads_leave_the_tunnel_working(Side::Wraith, Side::Wraith, 64);
}

#[test]
fn wraith_to_sshd_keeps_moving_beside_1_unread_upload() {
    unread_uploads_leave_the_tunnel_working(Side::Wraith, Side::OpenSsh, 1);
}

#[test]
fn wraith_to_sshd_keeps_moving_beside_64_unread_uploads() {
    unread_uploads_leave_the_tunnel_working(Side::Wraith, Side::OpenSsh, 64);
}

#[test]
fn ssh_d_to_wraith_keeps_moving_beside_1_unread_upload() {
    unread_uploads_leave_the_tunnel_working(Side::OpenSsh, Side::Wraith, 1);
}

#[test]
fn ssh_d_to_wraith_keeps_moving_beside_64_unread_uploads() {
    unread_uploads_leave_the_tunnel_working(Side::OpenSsh, Side::Wraith, 64);
}

/// Checks the test, not wraith: OpenSSH on both sides passes it.
#[test]
fn openssh_on_both_sides_keeps_moving_beside_64_unread_uploads() {
    unread_uploads_leave_the_tunnel_working(Side::OpenSsh, Side::OpenSsh, 64);
}

// ---------------------------------------------------------------------------
// Memory

/// Client and server RSS growth from before the stalled channels to their
/// peak once every channel has stopped taking bytes.
fn memory_stays_bounded(direction: Direction) {
    let _serial = serial();
    let Some(tunnel) = Tunnel::start(Side::Wraith, Side::Wraith) else {
        return;
    };
    // One channel first, so the baseline includes a session that has
    // carried data.
    let echo = echo_target();
    if let Err(e) = timed_echo(tunnel.socks, echo.addr) {
        panic!(
            "{}: warm-up echo failed: {e}\n{}",
            tunnel.label,
            tunnel.report()
        );
    }
    let mut client = RssPeak::new(tunnel.client.pid());
    let mut server = RssPeak::new(tunnel.server.process().pid());
    let sample = || {
        client.sample();
        server.sample();
    };
    let (load, _held) = match direction {
        Direction::Download => {
            let (connections, streamer, load) = stall_downloads(&tunnel, STALLED_CHANNELS, sample);
            (load, (Some((connections, streamer)), None))
        }
        Direction::Upload => {
            let (uploads, load) = stall_uploads(&tunnel, STALLED_CHANNELS, sample);
            (load, (None, Some(uploads)))
        }
    };
    client.sample();
    server.sample();
    let growth = |what: &str, rss: &RssPeak| {
        format!(
            "{what} grew by {} (from {} to {})",
            mib(rss.growth()),
            mib(rss.baseline),
            mib(rss.peak)
        )
    };
    let summary = format!(
        "{}, {}; allowed: {} each ({STALLED_CHANNELS} × {} window + {} slack)",
        growth("wraith connect", &client),
        growth("wraith serve", &server),
        mib(RSS_BUDGET),
        mib(WINDOW_PER_STALLED_CHANNEL),
        mib(RSS_SLACK)
    );
    if client.growth() > RSS_BUDGET || server.growth() > RSS_BUDGET {
        panic!(
            "beside {load}: {summary}. A process buffers beyond the windows it granted.\n{}",
            tunnel.report()
        );
    }
    eprintln!("beside {load}: {summary}");
}

#[test]
fn wraith_memory_stays_within_the_windows_beside_64_unread_downloads() {
    memory_stays_bounded(Direction::Download);
}

#[test]
fn wraith_memory_stays_within_the_windows_beside_64_unread_uploads() {
    memory_stays_bounded(Direction::Upload);
}

// ---------------------------------------------------------------------------
// A peer that ignores the window

fn window_ignorer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/window_ignorer.py")
}

/// The number after `prefix` in `line`, e.g. `sent` in `"closed after 123
/// bytes"`.
fn number_after(line: &str, prefix: &str) -> Option<u64> {
    line.split(prefix)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// An independent SSH client (AsyncSSH, patched to ignore the window) keeps
/// sending on a direct-tcpip channel to a target that never reads. OpenSSH
/// 9.2's sshd logs "rcvd too much data" and drops the excess; wraith serve
/// must end the session, holding no more than one window meanwhile.
#[test]
fn wraith_serve_disconnects_a_peer_that_sends_beyond_its_window() {
    let _serial = serial();
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let Some(python) = require_python_module("asyncssh", "python3-asyncssh") else {
        return;
    };
    let dir = temp_dir();
    let key = ssh_keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&key]);
    let known_hosts = dir.path().join("known_hosts");
    write_known_hosts(&known_hosts, server.addr, &server.host_key);
    let target = NeverReadingTarget::start();
    let mut rss = RssPeak::new(server.process.pid());

    let mut cmd = Command::new(python);
    cmd.args(["-W", "ignore"])
        .arg(window_ignorer_script())
        .args(["--port", &server.addr.port().to_string()])
        .args(["--user", &current_user()])
        .arg("--identity")
        .arg(&key)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .args(["--target-port", &target.addr().port().to_string()])
        .args(["--seconds", &IGNORER_SECONDS.to_string()]);
    let peer = WraithProcess::spawn_command(cmd);
    let opened = peer.wait_for_line("open window=", TIMEOUT);
    let window = number_after(&opened, "window=").unwrap_or(0);

    let deadline = Instant::now() + Duration::from_secs(IGNORER_SECONDS) + TIMEOUT;
    while peer.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "{}",
            peer.failure("the window-ignoring peer did not stop by itself")
        );
        rss.sample();
        thread::sleep(Duration::from_millis(50));
    }
    rss.sample();
    peer.wait_exit(TIMEOUT);
    let stdout = peer.stdout_text();
    let outcome = stdout
        .lines()
        .find(|line| line.starts_with("closed after") || line.starts_with("still open after"))
        .unwrap_or_else(|| panic!("{}", peer.failure("the peer printed no outcome")))
        .to_owned();
    let sent = number_after(&outcome, "after ").unwrap_or(0);
    let server_log = tail(&server.process.stderr_text(), 15);

    assert!(
        outcome.starts_with("closed after"),
        "wraith serve kept the session open while an AsyncSSH client ignoring its \
         {window}-byte window sent {} on one channel to a target that never reads \
         (peer: {outcome:?}): a peer that sends beyond its window must be disconnected\n\
         --- server stderr (last lines) ---\n{server_log}",
        mib(sent)
    );
    assert!(
        sent > window,
        "the session closed before the peer had sent more than its {window}-byte window \
         ({outcome:?}): it was dropped for another reason\n{}",
        peer.failure("peer output")
    );
    let allowed = WINDOW_PER_STALLED_CHANNEL + RSS_SLACK;
    assert!(
        rss.growth() <= allowed,
        "wraith serve grew by {} (from {} to {}) while the peer ignored its window; \
         allowed: {} (one {} window + {} slack)\n--- server stderr ---\n{server_log}",
        mib(rss.growth()),
        mib(rss.baseline),
        mib(rss.peak),
        mib(allowed),
        mib(WINDOW_PER_STALLED_CHANNEL),
        mib(RSS_SLACK)
    );
    assert!(
        server.process.try_status().is_none(),
        "{}",
        server.process.failure("the server itself exited")
    );
    eprintln!(
        "window ignorer: {outcome}; wraith serve grew by {}",
        mib(rss.growth())
    );
}
