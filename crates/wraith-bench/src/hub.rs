//! The event-hub figure: how long an event takes from one control channel
//! to another, p50 and p99, in two set-ups side by side. In-process: the
//! publisher and the subscriber are on the same `wraith serve`. Across
//! servers: the publisher is on server B, the subscriber on server A, and
//! the two share their hub through a local `nats-server` (`--hub`).
//!
//! Each control channel is a `wraith connect --stdio wraith-control:0`
//! process, as a script would open one; the time runs from writing the
//! frame to the publisher's stdin to reading it whole from the
//! subscriber's stdout, one event at a time. OpenSSH has no hub, so there
//! is no ratio. The frames are built here from the spec (a 4-byte length,
//! then JSON), not with wraith's codec.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::{Instant, timeout};

use crate::bench::{Bench, Phase};
use crate::process::Proc;
use crate::report::{Better, Row};
use crate::tools::Tools;
use crate::tools::{addr_at_end, command, free_port, pub_path};
use crate::tunnel::{Kind, TunnelSpec};

/// Bound for a process to be ready, and for one event to arrive.
const READY: Duration = Duration::from_secs(20);
/// Events sent before the measured ones (connections warm up).
const WARMUP: usize = 5;

/// One control channel: a `wraith connect --stdio` process.
struct Channel {
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    buf: Vec<u8>,
}

fn frame(kind: &str, id: &str, payload: &str) -> Vec<u8> {
    let body = format!(r#"{{"type":"{kind}","id":"{id}","payload":{payload}}}"#);
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body.as_bytes());
    v
}

impl Channel {
    async fn open(b: &Bench, server: &str) -> Result<Channel> {
        let mut cmd = command(&b.tools.wraith);
        cmd.args(["-q", "connect", "--server", server, "--identity"])
            .arg(&b.keys.wraith_client)
            .arg("--host-key")
            .arg(pub_path(&b.keys.wraith_host))
            .args(["--stdio", "wraith-control:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("cannot start wraith connect --stdio")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("wraith connect --stdio has no pipes");
        };
        Ok(Channel {
            _child: child,
            stdin,
            stdout,
            buf: Vec::new(),
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stdin.write_all(bytes).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// The next frame's body, within [`READY`].
    async fn next(&mut self) -> Result<String> {
        self.next_within(READY)
            .await?
            .ok_or_else(|| anyhow!("no frame within {READY:?}"))
    }

    /// The next frame's body, or `None` if none came within `bound`.
    async fn next_within(&mut self, bound: Duration) -> Result<Option<String>> {
        let read = timeout(bound, async {
            loop {
                if let Some(len) = self
                    .buf
                    .get(..4)
                    .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize)
                    && self.buf.len() >= 4 + len
                {
                    let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    return String::from_utf8(body).context("a frame that is not UTF-8");
                }
                let mut chunk = [0u8; 16 * 1024];
                let n = self.stdout.read(&mut chunk).await?;
                if n == 0 {
                    bail!("the control channel closed");
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        match read {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Subscribes to `kind` and waits for the hub's answer.
    async fn subscribe(&mut self, kind: &str) -> Result<()> {
        self.send(&frame("__subscribe", "s", &format!("\"{kind}\"")))
            .await?;
        let ack = self.next().await?;
        if !ack.contains("__subscribed") {
            bail!("unexpected answer to __subscribe: {ack}");
        }
        Ok(())
    }
}

/// `wraith serve` on loopback, every key allowed on the hub, sharing it
/// through `hub` if given; returns the process and its address.
async fn serve(b: &Bench, hub: Option<&str>) -> Result<(Proc, String)> {
    let mut cmd = command(&b.tools.wraith);
    cmd.args(["-q", "serve", "--key"])
        .arg(&b.keys.wraith_host)
        .arg("--authorized-keys")
        .arg(&b.keys.wraith_authorized)
        .args(["--listen", "127.0.0.1:0", "--hub-for-all-keys"]);
    if let Some(url) = hub {
        cmd.args(["--hub", url]);
    }
    let mut p = Proc::spawn("wraith serve", cmd)?;
    let line = p.stdout_lines("listening on ", 1, READY).await?;
    Ok((p, addr_at_end(&line[0])?.to_string()))
}

/// Starts `nats-server` on a free loopback port; returns it and its URL.
async fn nats(b: &Bench) -> Result<(Proc, String)> {
    let path = &Tools::need(
        &b.tools.nats_server,
        "nats-server not installed (apt-get install nats-server)",
    )?;
    let port = free_port()?;
    let mut cmd = command(path);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    let mut p = Proc::spawn("nats-server", cmd)?;
    p.stderr_line("Server is ready", READY).await?;
    Ok((p, format!("nats://127.0.0.1:{port}")))
}

/// Publishes `samples` events on `publisher`, one at a time, and times
/// each until `subscriber` has it whole; milliseconds.
async fn time_events(
    publisher: &mut Channel,
    subscriber: &mut Channel,
    samples: usize,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..WARMUP + samples {
        let id = format!("e{i}");
        let f = frame(
            "bench",
            &id,
            r#"{"seq":1,"text":"an event of a typical size"}"#,
        );
        let t0 = Instant::now();
        publisher.send(&f).await?;
        let got = subscriber.next().await?;
        let elapsed = t0.elapsed();
        if !got.contains(&format!(r#""id":"{id}""#)) {
            bail!("the subscriber got another frame: {got}");
        }
        if i >= WARMUP {
            out.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied()
}

/// One set-up's two rows (p50, p99); `label` is the row's tunnel name:
/// `wraith-hub-in-process` (publisher and subscriber on server A) or
/// `wraith-hub-nats` (publisher on B, subscriber on A).
fn set_up_rows(label: &'static str, result: Result<Vec<f64>>) -> Vec<Row> {
    let spec = TunnelSpec::any_cipher(Kind::WraithSocks5);
    let mut p50 = Row::new(
        &spec,
        None,
        "hub_event_p50",
        "event hub: publish on one control channel to delivery on another, p50",
        "ms",
        Better::Lower,
    );
    let mut p99 = Row::new(
        &spec,
        None,
        "hub_event_p99",
        "event hub: publish on one control channel to delivery on another, p99",
        "ms",
        Better::Lower,
    );
    p50.tunnel = label;
    p99.tunnel = label;
    match result {
        Ok(mut samples) => {
            samples.sort_by(f64::total_cmp);
            let (a, b) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
            vec![p50.value(a, samples.clone()), p99.value(b, samples)]
        }
        Err(e) => {
            eprintln!("   {label}: {e:#}");
            vec![p50.error(&e), p99.error(&e)]
        }
    }
}

async fn in_process(b: &Bench) -> Result<Vec<f64>> {
    let (_server, addr) = serve(b, None).await?;
    let mut sub = Channel::open(b, &addr).await?;
    let mut publ = Channel::open(b, &addr).await?;
    sub.subscribe("bench").await?;
    time_events(&mut publ, &mut sub, b.settings.latency_samples).await
}

async fn across_nats(b: &Bench) -> Result<Vec<f64>> {
    let (_broker, url) = nats(b).await?;
    let (_a, addr_a) = serve(b, Some(&url)).await?;
    let (_b, addr_b) = serve(b, Some(&url)).await?;
    let mut sub = Channel::open(b, &addr_a).await?;
    let mut publ = Channel::open(b, &addr_b).await?;
    sub.subscribe("probe").await?;
    // The servers connect to the broker in the background (and -q keeps
    // their "connected" line out): probe until an event crosses.
    let deadline = Instant::now() + READY;
    loop {
        publ.send(&frame("probe", "p", "null")).await?;
        if sub.next_within(Duration::from_millis(200)).await?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            bail!("no event crossed the broker within {READY:?}");
        }
    }
    // Late probes arrive before the answer to this, none after it.
    sub.send(&frame("__unsubscribe", "q", "\"probe\"")).await?;
    while !sub.next().await?.contains("__unsubscribed") {}
    sub.subscribe("bench").await?;
    time_events(&mut publ, &mut sub, b.settings.latency_samples).await
}

/// The figure's rows: in-process, then across two servers through NATS.
pub(crate) async fn rows(b: &Bench) -> Vec<Row> {
    eprintln!("== event hub: in-process, and across two servers through nats-server");
    let phase = Phase::start(b);
    let mut rows = set_up_rows("wraith-hub-in-process", in_process(b).await);
    rows.extend(set_up_rows("wraith-hub-nats", across_nats(b).await));
    phase.finish(b, "event hub", rows)
}
