//! One tunnel at a time: start it, run the selected figures against it,
//! stop it, and turn what was measured (or what failed) into rows. A tunnel
//! that fails to start or breaks mid-way yields error rows; the run goes on
//! with the next tunnel.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::ValueEnum;

use crate::measure::{self, Direction, IdleOutcome};
use crate::process::{Launcher, OtherLoad, Side, cpu_delta};
use crate::report::{Better, Row};
use crate::targets::Targets;
use crate::tools::{Keys, Tools};
use crate::tunnel::{self, Implementation, Link, Mode, Tunnel, TunnelSpec};

/// The figures the bench can measure (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Figure {
    /// Single-stream upload and download throughput.
    Bulk,
    /// Aggregate throughput of parallel streams.
    Parallel,
    /// New-connection round-trip latency, p50 and p99.
    Latency,
    /// RSS per idle connection (SOCKS5 tunnels only).
    Idle,
    /// CPU seconds per GiB over the bulk and parallel runs.
    Cpu,
    /// Instructions per byte under callgrind (slow; noise-free).
    Instructions,
    /// Single-stream upload and download through delay lines at each
    /// `--rtt`: no tunnel, ssh -D, wraith over tcp, tls, wss and iroh.
    Longpath,
    /// UDP round trip and throughput: no tunnel, and wraith's SOCKS5 UDP
    /// ASSOCIATE and udpgw (OpenSSH carries no UDP).
    Udp,
    /// Event-hub latency, p50 and p99: in-process, and across two servers
    /// through nats-server (`--hub`).
    Hub,
    /// Single-stream bulk through the Node addon's `connect()` beside
    /// `wraith connect --forward` (needs node and the built addon).
    Node,
}

/// What to measure and how much.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) figures: Vec<Figure>,
    pub(crate) bulk_bytes: u64,
    pub(crate) runs: usize,
    pub(crate) streams: usize,
    pub(crate) latency_samples: usize,
    pub(crate) idle_counts: Vec<usize>,
    /// Bytes per direction for the instruction counts.
    pub(crate) instructions_bytes: u64,
    /// Where to keep the callgrind profiles (else the run's temporary
    /// directory).
    pub(crate) callgrind_dir: Option<std::path::PathBuf>,
    /// Round-trip times the long-path figure adds, in milliseconds.
    pub(crate) longpath_rtts_ms: Vec<u64>,
    /// How long each long-path transfer runs.
    pub(crate) longpath_time: std::time::Duration,
}

impl Settings {
    pub(crate) fn has(&self, f: Figure) -> bool {
        self.figures.contains(&f)
    }
}

/// Everything a tunnel run needs.
pub(crate) struct Bench {
    pub(crate) tools: Tools,
    pub(crate) keys: Keys,
    pub(crate) targets: Targets,
    pub(crate) settings: Settings,
    pub(crate) clock_ticks: u64,
    /// Most idle connections this process can hold (it holds both ends).
    pub(crate) idle_cap: usize,
    /// The one OpenSSH cipher the idle, instruction and long-path figures
    /// run with (wraith's when selected): memory per connection does not
    /// depend on the cipher, OpenSSH needs minutes to open 10 000 channels
    /// on one session, and a long path is bound by windows, not ciphers.
    pub(crate) idle_openssh_cipher: Option<String>,
    /// CPU used by the rest of the machine, sampled throughout.
    pub(crate) other_load: OtherLoad,
    /// That CPU per phase of the run.
    pub(crate) phases: Mutex<Vec<PhaseLoad>>,
}

impl Bench {
    /// Starts `spec` with this run's tools, keys and targets, within
    /// [`tunnel::START`] (scaled by the launcher's slowdown).
    pub(crate) async fn start(
        &self,
        spec: &TunnelSpec,
        launcher: &Launcher,
        link: Link,
    ) -> anyhow::Result<Tunnel> {
        let bound = tunnel::START * launcher.slowdown();
        tokio::time::timeout(
            bound,
            Tunnel::start(spec, &self.tools, &self.keys, &self.targets, launcher, link),
        )
        .await
        .map_err(|_| anyhow!("{} did not start within {bound:?}", spec.label()))?
        .with_context(|| format!("cannot start {}", spec.label()))
    }
}

/// "1 GiB", "16 MiB", "1000 B".
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{} {unit}", bytes / scale);
        }
    }
    format!("{bytes} B")
}

/// Runs every figure on every tunnel and returns the rows. Throughput and
/// latency run with all tunnels up at once, round-robin (run 1 of each
/// tunnel, then run 2 of each, ...), so a change in machine load during the
/// run hits every tunnel alike instead of one tunnel's block of runs. The
/// long-path figure then starts the tunnels again behind delay lines, once
/// per round-trip time; the idle figure runs one fresh session at a time.
pub(crate) async fn run_all(b: &Bench, specs: &[TunnelSpec]) -> Vec<Row> {
    let s = &b.settings;
    let mut rows = Vec::new();
    let main = [Figure::Bulk, Figure::Parallel, Figure::Latency, Figure::Cpu];
    if main.iter().any(|f| s.has(*f)) {
        let mut live = Vec::new();
        for spec in specs {
            eprintln!("== starting {}", spec.label());
            match b.start(spec, &Launcher::Plain, Link::Loopback).await {
                Ok(t) => live.push(Live::new(t)),
                Err(e) => {
                    eprintln!("   failed: {e:#}");
                    rows.extend(failed_main_rows(b, spec, &e));
                }
            }
        }
        rows.extend(interleaved(b, &mut live).await);
        for l in live {
            l.tunnel.stop().await;
        }
    }
    if s.has(Figure::Longpath) {
        rows.extend(crate::longpath::rows(b, specs).await);
    }
    if s.has(Figure::Udp) {
        rows.extend(crate::udp::rows(b, specs).await);
    }
    let wants_wraith = specs
        .iter()
        .any(|s| s.kind.implementation() == Implementation::Wraith);
    if s.has(Figure::Hub) && wants_wraith {
        rows.extend(crate::hub::rows(b).await);
    }
    if s.has(Figure::Node) && wants_wraith {
        rows.extend(crate::node::rows(b).await);
    }
    if s.has(Figure::Idle) {
        for spec in specs {
            let idle_here = spec.kind.mode() == Mode::Socks5
                && (spec.kind.implementation() != Implementation::Openssh
                    || spec.cipher == b.idle_openssh_cipher);
            if idle_here {
                for &n in &s.idle_counts {
                    let phase = Phase::start(b);
                    let idle = idle_rows(b, spec, n).await;
                    rows.extend(phase.finish(b, &format!("{} idle {n}", spec.label()), idle));
                }
            }
        }
    }
    if s.has(Figure::Instructions) {
        // Like idle: OpenSSH with one cipher (wraith's), which is the pair
        // the ratio compares; callgrind makes every tunnel take minutes.
        for spec in specs.iter().filter(|s| {
            has_processes(s)
                && (s.kind.implementation() != Implementation::Openssh
                    || s.cipher == b.idle_openssh_cipher)
        }) {
            rows.extend(crate::instructions::rows(b, spec, s.instructions_bytes).await);
        }
    }
    rows
}

/// A tunnel in the round-robin phase and what it has moved so far.
struct Live {
    tunnel: Tunnel,
    cpu_before: [Option<HashMap<u32, u64>>; 2],
    moved: u64,
    bulk_failed: bool,
}

impl Live {
    fn new(tunnel: Tunnel) -> Self {
        let cpu_before = [
            tunnel.client.as_ref().map(Side::cpu_snapshot),
            tunnel.server.as_ref().map(Side::cpu_snapshot),
        ];
        Self {
            tunnel,
            cpu_before,
            moved: 0,
            bulk_failed: false,
        }
    }
}

/// Tracks the CPU other processes use during one phase of the run.
pub(crate) struct Phase {
    ticks: u64,
    start: Instant,
}

impl Phase {
    pub(crate) fn start(b: &Bench) -> Self {
        Self {
            ticks: b.other_load.ticks(),
            start: Instant::now(),
        }
    }

    /// Records the phase's load and attaches it to its rows.
    pub(crate) fn finish(self, b: &Bench, name: &str, mut rows: Vec<Row>) -> Vec<Row> {
        let ticks = b.other_load.ticks().saturating_sub(self.ticks);
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let cpus = ticks as f64 / b.clock_ticks as f64 / secs;
        eprintln!("   other processes on this machine used {cpus:.2} CPUs meanwhile");
        if let Ok(mut p) = b.phases.lock() {
            p.push(PhaseLoad {
                name: name.to_string(),
                seconds: secs,
                other_cpus: cpus,
            });
        }
        for r in &mut rows {
            r.detail
                .insert("other_processes_cpus".into(), serde_json::json!(cpus));
        }
        rows
    }
}

/// How busy the rest of the machine was during one phase.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct PhaseLoad {
    pub(crate) name: String,
    pub(crate) seconds: f64,
    /// Average CPUs used by processes other than the bench and its tunnels.
    pub(crate) other_cpus: f64,
}

/// Average CPUs used by other processes above which a run is flagged as
/// measured on a busy machine.
const OTHER_LOAD_WARN: f64 = 0.1;

/// One line on how busy the rest of the machine was over the whole run.
pub(crate) fn machine_load_line(phases: &[PhaseLoad], cpus: usize) -> String {
    let seconds: f64 = phases.iter().map(|p| p.seconds).sum();
    let mean = phases.iter().map(|p| p.other_cpus * p.seconds).sum::<f64>() / seconds.max(1e-3);
    match phases
        .iter()
        .max_by(|a, b| a.other_cpus.total_cmp(&b.other_cpus))
    {
        Some(worst) => format!(
            "machine load: other processes used {mean:.2} of {cpus} CPUs on average over \
             {seconds:.0} s of measuring (most: {:.2} during {})",
            worst.other_cpus, worst.name
        ),
        None => format!("machine load: not sampled ({cpus} CPUs)"),
    }
}

/// Says so when other processes used a noticeable share of the machine.
pub(crate) fn busy_machine_note(phases: &[PhaseLoad], cpus: usize) -> Option<String> {
    let seconds: f64 = phases.iter().map(|p| p.seconds).sum();
    let mean = phases.iter().map(|p| p.other_cpus * p.seconds).sum::<f64>() / seconds.max(1e-3);
    let worst = phases
        .iter()
        .max_by(|a, b| a.other_cpus.total_cmp(&b.other_cpus))?;
    (mean > OTHER_LOAD_WARN).then(|| {
        format!(
            "the machine was not idle: other processes used {mean:.2} of {cpus} CPUs on \
             average ({:.2} during {}); figures are skewed, rerun on a quiet machine",
            worst.other_cpus, worst.name
        )
    })
}

async fn interleaved(b: &Bench, live: &mut [Live]) -> Vec<Row> {
    let s = &b.settings;
    let mut rows = Vec::new();
    let streams = s.streams.max(1) as u64;
    for (fig, parallel) in [(Figure::Bulk, false), (Figure::Parallel, true)] {
        if !s.has(fig) {
            continue;
        }
        for dir in [Direction::Upload, Direction::Download] {
            let name = format!("{} {}", fig_name(fig), dir.name());
            eprintln!(
                "== {name}: {} round(s) over {} tunnel(s)",
                s.runs,
                live.len()
            );
            let phase = Phase::start(b);
            let per_run = if parallel {
                s.bulk_bytes / streams * streams
            } else {
                s.bulk_bytes
            };
            let mut values: Vec<Vec<f64>> = vec![Vec::new(); live.len()];
            let mut errors: Vec<Option<anyhow::Error>> = live.iter().map(|_| None).collect();
            for run in 1..=s.runs {
                // A different tunnel goes first each round, so none always
                // runs right after the same neighbour (warm caches, a
                // draining socket buffer).
                let n = live.len().max(1);
                for k in 0..live.len() {
                    let i = (k + run - 1) % n;
                    let l = &mut live[i];
                    if errors[i].is_some() {
                        continue;
                    }
                    let route = &l.tunnel.route;
                    let r = if parallel {
                        measure::parallel(route, dir, s.bulk_bytes, s.streams).await
                    } else {
                        measure::single(route, dir, s.bulk_bytes).await
                    };
                    let label = l.tunnel.spec.label();
                    match r {
                        Ok(v) => {
                            eprintln!("   {label}: run {run}/{}: {v:.1} MB/s", s.runs);
                            values[i].push(v);
                            l.moved += per_run;
                        }
                        Err(e) => {
                            eprintln!("   {label}: run {run}/{} failed: {e:#}", s.runs);
                            l.bulk_failed = true;
                            errors[i] = Some(e);
                        }
                    }
                }
            }
            let mut fig_rows = Vec::new();
            for ((l, v), e) in live.iter().zip(values).zip(errors) {
                let row = bulk_row(b, &l.tunnel.spec, l.tunnel.cipher.clone(), parallel, dir);
                fig_rows.push(match e {
                    Some(e) => row.value(None, v).error(&e),
                    None => row.value(measure::median(&v), v),
                });
            }
            rows.extend(phase.finish(b, &name, fig_rows));
        }
    }
    if s.has(Figure::Cpu) {
        for l in live.iter().filter(|l| has_processes(&l.tunnel.spec)) {
            rows.extend(cpu_figures(b, l));
        }
    }
    if s.has(Figure::Latency) {
        rows.extend(latency_figures(b, live).await);
    }
    rows
}

fn cpu_figures(b: &Bench, l: &Live) -> Vec<Row> {
    let t = &l.tunnel;
    let gib = l.moved as f64 / (1u64 << 30) as f64;
    let sides = [&t.client, &t.server];
    let mut secs_each: Vec<Option<f64>> = sides
        .iter()
        .zip(&l.cpu_before)
        .map(|(side, before)| match (side, before) {
            (Some(side), Some(before)) => {
                Some(cpu_delta(before, &side.cpu_snapshot()) as f64 / b.clock_ticks as f64)
            }
            _ => None,
        })
        .collect();
    secs_each.push(match (secs_each[0], secs_each[1]) {
        (Some(c), Some(s)) => Some(c + s),
        _ => None,
    });
    let mut rows = Vec::new();
    for (row, secs) in cpu_rows(&t.spec, t.cipher.clone())
        .into_iter()
        .zip(secs_each)
    {
        let row = row.detail("gib_moved", gib);
        rows.push(match secs {
            Some(secs) if l.moved > 0 => {
                let row = row
                    .detail("cpu_seconds", secs)
                    .value(Some(secs / gib), Vec::new());
                if l.bulk_failed {
                    row.detail(
                        "note",
                        "some bulk runs failed; CPU covers the runs that finished",
                    )
                } else {
                    row
                }
            }
            _ => row.error(&anyhow::anyhow!(
                "no bulk transfer finished, or the processes could not be read"
            )),
        });
    }
    rows
}

/// Latency samples are taken in up to 10 rounds across the tunnels.
async fn latency_figures(b: &Bench, live: &[Live]) -> Vec<Row> {
    let n = b.settings.latency_samples;
    let rounds = n.clamp(1, 10);
    eprintln!(
        "== latency: {n} connections per tunnel in {rounds} round(s) over {} tunnel(s)",
        live.len()
    );
    let phase = Phase::start(b);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); live.len()];
    let mut errors: Vec<Option<anyhow::Error>> = live.iter().map(|_| None).collect();
    for round in 0..rounds {
        let k = n / rounds + usize::from(round < n % rounds);
        for (i, l) in live.iter().enumerate() {
            if errors[i].is_some() {
                continue;
            }
            match measure::latency(&l.tunnel.route, k).await {
                Ok(mut v) => samples[i].append(&mut v),
                Err(e) => {
                    eprintln!("   {}: latency failed: {e:#}", l.tunnel.spec.label());
                    errors[i] = Some(e);
                }
            }
        }
    }
    let mut rows = Vec::new();
    for ((l, v), e) in live.iter().zip(samples).zip(errors) {
        let [p50, p99] = latency_rows(b, &l.tunnel.spec, l.tunnel.cipher.clone());
        if let Some(e) = e {
            rows.push(p50.error(&e));
            rows.push(p99.error(&e));
            continue;
        }
        let (a, z) = (measure::percentile(&v, 50.0), measure::percentile(&v, 99.0));
        eprintln!(
            "   {}: p50 {:.3} ms, p99 {:.3} ms",
            l.tunnel.spec.label(),
            a.unwrap_or(f64::NAN),
            z.unwrap_or(f64::NAN)
        );
        rows.push(p50.value(a, v.clone()));
        rows.push(p99.value(z, v));
    }
    phase.finish(b, "latency", rows)
}

fn bulk_row(
    b: &Bench,
    spec: &TunnelSpec,
    cipher: Option<String>,
    parallel: bool,
    dir: Direction,
) -> Row {
    let s = &b.settings;
    let (figure, title) = if parallel {
        (
            format!("parallel_{}", dir.name()),
            format!(
                "parallel {}: {} streams x {}, aggregate, median of {}",
                dir.name(),
                s.streams,
                size(s.bulk_bytes / s.streams.max(1) as u64),
                s.runs
            ),
        )
    } else {
        (
            format!("bulk_{}", dir.name()),
            format!(
                "bulk {}: 1 stream x {}, median of {}",
                dir.name(),
                size(s.bulk_bytes),
                s.runs
            ),
        )
    };
    Row::new(spec, cipher, figure, title, "MB/s", Better::Higher)
}

fn latency_rows(b: &Bench, spec: &TunnelSpec, cipher: Option<String>) -> [Row; 2] {
    let n = b.settings.latency_samples;
    let title = |p| {
        format!(
            "new connection + 1-byte echo + close (SOCKS5 handshake included), {p} of {n} sequential"
        )
    };
    [
        Row::new(
            spec,
            cipher.clone(),
            "latency_p50",
            title("p50"),
            "ms",
            Better::Lower,
        ),
        Row::new(
            spec,
            cipher,
            "latency_p99",
            title("p99"),
            "ms",
            Better::Lower,
        ),
    ]
}

fn cpu_rows(spec: &TunnelSpec, cipher: Option<String>) -> [Row; 3] {
    let title = |side| {
        format!("CPU seconds per GiB moved, {side} (user+system, over bulk and parallel runs)")
    };
    [
        Row::new(
            spec,
            cipher.clone(),
            "cpu_client",
            title("client"),
            "s/GiB",
            Better::Lower,
        ),
        Row::new(
            spec,
            cipher.clone(),
            "cpu_server",
            title("server"),
            "s/GiB",
            Better::Lower,
        ),
        Row::new(
            spec,
            cipher,
            "cpu_client_server",
            title("client+server"),
            "s/GiB",
            Better::Lower,
        ),
    ]
}

fn idle_row_pair(spec: &TunnelSpec, cipher: Option<String>, n: usize) -> [Row; 2] {
    let title = |side| format!("{n} idle connections: RSS growth per connection, {side}");
    [
        Row::new(
            spec,
            cipher.clone(),
            format!("idle_{n}_client"),
            title("client"),
            "KiB/conn",
            Better::Lower,
        ),
        Row::new(
            spec,
            cipher,
            format!("idle_{n}_server"),
            title("server"),
            "KiB/conn",
            Better::Lower,
        ),
    ]
}

fn has_processes(spec: &TunnelSpec) -> bool {
    spec.kind.mode() != Mode::Direct
}

fn failed_main_rows(b: &Bench, spec: &TunnelSpec, e: &anyhow::Error) -> Vec<Row> {
    let s = &b.settings;
    let c = spec.cipher.clone();
    let mut rows = Vec::new();
    for (fig, parallel) in [(Figure::Bulk, false), (Figure::Parallel, true)] {
        if s.has(fig) {
            for dir in [Direction::Upload, Direction::Download] {
                rows.push(bulk_row(b, spec, c.clone(), parallel, dir));
            }
        }
    }
    if s.has(Figure::Cpu) && has_processes(spec) {
        rows.extend(cpu_rows(spec, c.clone()));
    }
    if s.has(Figure::Latency) {
        rows.extend(latency_rows(b, spec, c));
    }
    rows.into_iter().map(|r| r.error(e)).collect()
}

fn fig_name(f: Figure) -> &'static str {
    match f {
        Figure::Bulk => "bulk",
        Figure::Parallel => "parallel",
        Figure::Latency => "latency",
        Figure::Idle => "idle",
        Figure::Cpu => "cpu",
        Figure::Instructions => "instructions",
        Figure::Longpath => "longpath",
        Figure::Udp => "udp",
        Figure::Hub => "hub",
        Figure::Node => "node",
    }
}

async fn idle_rows(b: &Bench, spec: &TunnelSpec, requested: usize) -> Vec<Row> {
    let n = requested.min(b.idle_cap);
    eprintln!("== {} ({n} idle connections, fresh session)", spec.label());
    let t = match b.start(spec, &Launcher::Plain, Link::Loopback).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("   failed: {e:#}");
            return idle_row_pair(spec, spec.cipher.clone(), requested)
                .into_iter()
                .map(|r| r.error(&e))
                .collect();
        }
    };
    let rows = idle_rows_on(&t, requested, n).await;
    t.stop().await;
    rows
}

async fn idle_rows_on(t: &Tunnel, requested: usize, n: usize) -> Vec<Row> {
    let [client_row, server_row] = idle_row_pair(&t.spec, t.cipher.clone(), requested);
    let (Some(client), Some(server)) = (&t.client, &t.server) else {
        let e = anyhow::anyhow!("this tunnel has no processes to measure");
        return vec![client_row.error(&e), server_row.error(&e)];
    };
    let out = match measure::idle(&t.route, client, server, n).await {
        Ok(out) => out,
        Err(e) => {
            eprintln!("   failed: {e:#}");
            return vec![client_row.error(&e), server_row.error(&e)];
        }
    };
    eprintln!(
        "   reached {} of {requested} in {:.1} s; client RSS {:?} -> {:?} KiB, server RSS {:?} -> {:?} KiB",
        out.reached,
        out.open_seconds,
        out.client_base_kib,
        out.client_kib,
        out.server_base_kib,
        out.server_kib
    );
    let note = (out.reached < requested).then(|| {
        let why = match &out.error {
            Some(e) => e.clone(),
            None => "file descriptor limit, see notes".to_string(),
        };
        format!("reached {} of {requested} ({why})", out.reached)
    });
    let side = |row: Row, base: Option<u64>, with: Option<u64>, out: &IdleOutcome| {
        let mut row = row
            .detail("requested", requested)
            .detail("attempted", out.requested)
            .detail("open_seconds", out.open_seconds)
            .detail("reached", out.reached)
            .detail("rss_baseline_kib", base)
            .detail("rss_kib", with);
        if let Some(n) = &note {
            row = row.detail("note", n.clone());
        }
        match IdleOutcome::per_conn(base, with, out.reached) {
            Some(v) => row.value(Some(v), Vec::new()),
            None => row.error(&anyhow::anyhow!(
                "no connection held, or RSS unreadable{}",
                out.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
        }
    };
    vec![
        side(client_row, out.client_base_kib, out.client_kib, &out),
        side(server_row, out.server_base_kib, out.server_kib, &out),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_machine_is_flagged_by_time_weighted_other_load() {
        let phase = |name: &str, seconds, other_cpus| PhaseLoad {
            name: name.into(),
            seconds,
            other_cpus,
        };
        let quiet = [phase("bulk", 100.0, 0.02), phase("idle", 1.0, 0.9)];
        assert_eq!(busy_machine_note(&quiet, 2), None);
        let busy = [phase("bulk", 100.0, 0.5), phase("idle", 10.0, 1.5)];
        let note = busy_machine_note(&busy, 2).unwrap();
        assert!(note.contains("0.59 of 2 CPUs"), "{note}");
        assert!(note.contains("1.50 during idle"), "{note}");
        assert_eq!(busy_machine_note(&[], 2), None);
    }

    #[test]
    fn sizes_are_named_in_binary_units() {
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(16 << 20), "16 MiB");
        assert_eq!(size(128 << 20), "128 MiB");
        assert_eq!(size(1000), "1000 B");
    }
}
