//! `wraith-bench`: measures wraith against OpenSSH and against no tunnel, on
//! loopback, in one run. It starts its own targets (source, sink, echo) in
//! this process, a throwaway `sshd` and `wraith serve`, and the clients
//! (`ssh -D`, `ssh -L`, `wraith connect`) as separate processes, the way
//! users run them; this process is the only load generator. It prints a
//! table with wraith/OpenSSH ratios and writes the rows as JSON.
//!
//! It must never be a timed pass/fail test: CI may run `--quick` to see that
//! every tunnel moves bytes, and nothing more.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use clap::{Parser, ValueEnum};
use serde::Serialize;

mod bench;
mod delayline;
mod hub;
mod instructions;
mod longpath;
mod machine;
mod measure;
mod netns;
mod node;
mod openssh;
mod process;
mod report;
mod socks5;
mod targets;
mod tools;
mod tunnel;
mod udp;
mod wraith;

use bench::{Bench, Figure, Settings};
use process::Launcher;
use tunnel::{Kind, Link, TunnelSpec};

const AFTER_HELP: &str = "\
Run it (from the workspace root):
  cargo build --release -p wraith -p wraith-bench && target/release/wraith-bench

Quick smoke run (seconds; what CI may run; never compare its figures):
  target/release/wraith-bench --quick

Iterate on one figure or tunnel:
  target/release/wraith-bench --only bulk --tunnels wraith-socks5,openssh-socks5 --ciphers aes128-gcm

Long path (delay lines add the round trip; no netem needed):
  target/release/wraith-bench --only longpath --rtt 0,50,150 --longpath-time 8

Noise: runs are interleaved across tunnels (a different one first each round);
the table gives the median, the min–max of the runs and the per-round
wraith/OpenSSH ratio range, and a machine-load line (CPU used by other
processes). The instruction counts (callgrind, on by default in a full run,
alone: --only instructions) do not move with load; keep the profiles with
--callgrind-dir DIR and read them with callgrind_annotate (for source lines,
build with `cargo build --profile profiling -p wraith` and pass
--wraith target/profiling/wraith: the release profile strips symbols).

wraith has no flag to force a cipher: the bench reads the negotiated one from
wraith's debug log; if that fails it uses WRAITH_BENCH_WRAITH_CIPHER, else
aes128-gcm@openssh.com when /proc/cpuinfo has the aes flag, else
chacha20-poly1305@openssh.com. WRAITH_CIPHERS, if set, is passed to wraith.";

/// Loopback benchmark: wraith (SOCKS5 and --forward) against OpenSSH
/// (ssh -D and ssh -L, each cipher) and against no tunnel.
#[derive(Parser, Debug)]
#[command(name = "wraith-bench", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Smoke mode: 16 MiB bulk, 1 run, 20 latency samples, 100 idle
    /// connections, no instruction counts. For CI and development; the
    /// figures mean little.
    #[arg(long)]
    quick: bool,
    /// The wraith binary to run [default: <workspace>/target/release/wraith].
    #[arg(long, value_name = "PATH")]
    wraith: Option<PathBuf>,
    /// Where to write the results as JSON [default: <workspace>/target/bench/results.json].
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Measure only these figures (cpu needs bulk transfers: alone it runs bulk too).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "FIGURE,...")]
    only: Vec<Figure>,
    /// Measure only these tunnels.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "TUNNEL,...")]
    tunnels: Vec<Kind>,
    /// Run OpenSSH with only these ciphers [default: all three wraith offers].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CIPHER,...")]
    ciphers: Vec<CipherArg>,
    /// Bytes per bulk measurement, e.g. 1GiB, 64MiB, 1000000 [default: 1GiB, 16MiB with --quick].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    bulk_size: Option<u64>,
    /// Runs per throughput figure, interleaved across tunnels; the median and
    /// the spread are reported [default: 5, 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..100))]
    runs: Option<u64>,
    /// Parallel streams for the aggregate figure.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..1000))]
    streams: u64,
    /// Sequential connections for the latency figure [default: 200, 20 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..100_000))]
    latency_samples: Option<u64>,
    /// Idle connection counts [default: 1000,10000; 100 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    idle: Vec<usize>,
    /// Bytes per direction for the instruction counts (under callgrind).
    #[arg(long, value_parser = parse_size, value_name = "SIZE", default_value = "64MiB")]
    instructions_size: u64,
    /// Keep the callgrind profiles of the instruction counts here, one
    /// directory per tunnel, for `callgrind_annotate` [default: a temporary
    /// directory, removed].
    #[arg(long, value_name = "DIR")]
    callgrind_dir: Option<PathBuf>,
    /// Round-trip times (milliseconds) the long-path figure adds with its
    /// delay lines [default: 0,50,150; 50 with --quick].
    #[arg(long, value_delimiter = ',', value_name = "MS,...",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    rtt: Vec<u64>,
    /// Seconds each long-path transfer runs; the rate is the bytes
    /// delivered in that time [default: 8, 2 with --quick].
    #[arg(long, value_parser = parse_seconds, value_name = "SECONDS")]
    longpath_time: Option<std::time::Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CipherArg {
    /// aes128-gcm@openssh.com
    Aes128Gcm,
    /// aes256-gcm@openssh.com
    Aes256Gcm,
    /// chacha20-poly1305@openssh.com
    Chacha20Poly1305,
}

impl CipherArg {
    fn ssh_name(self) -> &'static str {
        match self {
            CipherArg::Aes128Gcm => openssh::CIPHERS[0],
            CipherArg::Aes256Gcm => openssh::CIPHERS[1],
            CipherArg::Chacha20Poly1305 => openssh::CIPHERS[2],
        }
    }
}

/// `1GiB`, `16MiB`, `512KiB`, `1GB`, `1000` (bytes).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 1GiB, 16MiB or 1000000"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB, GiB)")),
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("{s:?}: size must be between 1 byte and 16 EiB")),
        Some(v) => Ok(v),
    }
}

/// `8`, `0.5` (seconds, more than 0 and at most 600).
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v > 0.0 && v <= 600.0) {
        return Err(format!("{s:?}: give between 0 and 600 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

/// The workspace this binary was built in; defaults are relative to it.
fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn settings(cli: &Cli) -> Settings {
    let mut figures = if cli.only.is_empty() {
        let mut all = vec![
            Figure::Bulk,
            Figure::Parallel,
            Figure::Latency,
            Figure::Idle,
            Figure::Cpu,
            Figure::Udp,
            Figure::Hub,
            Figure::Node,
        ];
        if !cli.quick {
            all.push(Figure::Longpath);
            all.push(Figure::Instructions);
        }
        all
    } else {
        cli.only.clone()
    };
    if figures.contains(&Figure::Cpu)
        && !figures.contains(&Figure::Bulk)
        && !figures.contains(&Figure::Parallel)
    {
        figures.push(Figure::Bulk);
    }
    let q = cli.quick;
    Settings {
        figures,
        bulk_bytes: cli.bulk_size.unwrap_or(if q { 16 << 20 } else { 1 << 30 }),
        runs: usize::try_from(cli.runs.unwrap_or(if q { 1 } else { 5 })).unwrap_or(5),
        streams: usize::try_from(cli.streams).unwrap_or(8),
        latency_samples: usize::try_from(cli.latency_samples.unwrap_or(if q { 20 } else { 200 }))
            .unwrap_or(200),
        idle_counts: if !cli.idle.is_empty() {
            cli.idle.clone()
        } else if q {
            vec![100]
        } else {
            vec![1000, 10_000]
        },
        instructions_bytes: cli.instructions_size,
        callgrind_dir: cli.callgrind_dir.clone(),
        longpath_rtts_ms: if !cli.rtt.is_empty() {
            cli.rtt.clone()
        } else if q {
            vec![50]
        } else {
            vec![0, 50, 150]
        },
        longpath_time: cli
            .longpath_time
            .unwrap_or(std::time::Duration::from_secs(if q { 2 } else { 8 })),
    }
}

/// The cipher wraith negotiates, and how the bench knows.
#[derive(Debug, Serialize)]
struct WraithCipher {
    name: String,
    source: String,
}

/// Reads the cipher from a short-lived wraith session's debug log; falls
/// back to `WRAITH_BENCH_WRAITH_CIPHER`, then to what wraith prefers on
/// this CPU (AES-GCM with AES hardware, ChaCha20-Poly1305 without).
async fn wraith_cipher(b: &Bench, aes_flag: bool, probe: bool) -> WraithCipher {
    if probe {
        let spec = TunnelSpec::any_cipher(Kind::WraithSocks5);
        match b.start(&spec, &Launcher::Plain, Link::Loopback).await {
            Ok(t) => {
                let found = t.cipher.clone();
                t.stop().await;
                if let Some(name) = found {
                    return WraithCipher {
                        name,
                        source: "negotiated: read from wraith's debug log (russh::client::kex)"
                            .into(),
                    };
                }
            }
            Err(e) => eprintln!("cannot start wraith to read its cipher: {e:#}"),
        }
    }
    if let Ok(name) = std::env::var("WRAITH_BENCH_WRAITH_CIPHER")
        && !name.trim().is_empty()
    {
        return WraithCipher {
            name: name.trim().to_string(),
            source: "assumed: WRAITH_BENCH_WRAITH_CIPHER".into(),
        };
    }
    let (name, why) = if aes_flag {
        (openssh::CIPHERS[0], "/proc/cpuinfo has the aes flag")
    } else {
        (openssh::CIPHERS[2], "/proc/cpuinfo lacks the aes flag")
    };
    WraithCipher {
        name: name.into(),
        source: format!("assumed: {why}"),
    }
}

/// Tunnels to run, in order: no tunnel, OpenSSH per cipher (wraith's first),
/// then wraith.
fn tunnel_specs(cli: &Cli, wraith_cipher: &str) -> Vec<TunnelSpec> {
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| cli.tunnels.is_empty() || cli.tunnels.contains(k))
        .collect();
    let mut ciphers: Vec<String> = if cli.ciphers.is_empty() {
        openssh::CIPHERS.iter().map(|c| c.to_string()).collect()
    } else {
        cli.ciphers
            .iter()
            .map(|c| c.ssh_name().to_string())
            .collect()
    };
    ciphers.sort_by_key(|c| c != wraith_cipher);
    let mut specs = Vec::new();
    for kind in kinds {
        match kind.implementation() {
            tunnel::Implementation::None => specs.push(TunnelSpec::any_cipher(kind)),
            tunnel::Implementation::Openssh => specs.extend(ciphers.iter().map(|c| TunnelSpec {
                kind,
                cipher: Some(c.clone()),
            })),
            tunnel::Implementation::Wraith => specs.push(TunnelSpec {
                kind,
                cipher: Some(wraith_cipher.to_string()),
            }),
        }
    }
    specs
}

#[derive(Serialize)]
struct SettingsDoc {
    figures: Vec<String>,
    bulk_bytes: u64,
    runs: usize,
    streams: usize,
    latency_samples: usize,
    idle_counts: Vec<usize>,
    instructions_bytes: u64,
    longpath_rtts_ms: Vec<u64>,
    longpath_seconds: f64,
    nofile_limit: u64,
    idle_cap: usize,
}

#[derive(Serialize)]
struct Versions {
    wraith: String,
    wraith_path: String,
    openssh: Option<String>,
    bench: &'static str,
}

#[derive(Serialize)]
struct Document<'a> {
    schema: u32,
    tool: &'static str,
    mode: &'static str,
    argv: Vec<String>,
    started_unix: u64,
    duration_s: f64,
    machine: &'a machine::Machine,
    versions: Versions,
    wraith_cipher: WraithCipher,
    settings: SettingsDoc,
    units: serde_json::Value,
    /// CPUs used by other processes, per phase of the run.
    other_load: Vec<bench::PhaseLoad>,
    notes: Vec<String>,
    rows: &'a [report::Row],
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = tokio::select! {
        r = run(cli) => r,
        // Dropping `run` kills every process it started.
        s = interrupted() => Err(anyhow!("interrupted by {s}; stopped the tunnels")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let root = workspace_root();
    let wraith_path = cli
        .wraith
        .clone()
        .unwrap_or_else(|| root.join("target/release/wraith"));
    let json_path = cli
        .json
        .clone()
        .unwrap_or_else(|| root.join("target/bench/results.json"));
    let settings = settings(&cli);
    let max_idle = settings.idle_counts.iter().copied().max().unwrap_or(0) as u64;
    let nofile = machine::raise_nofile(2 * max_idle + 1024);
    // This process holds both ends of every idle connection; keep room for
    // connections being opened, child pipes and listeners.
    let reserve = 2 * 64 + 64 + process::open_fds();
    let idle_cap = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve)
        / 2;

    let tools = tools::Tools::find(wraith_path)?;
    let wraith_version = {
        let mut cmd = tools::command(&tools.wraith);
        cmd.arg("--version");
        tools::run_once(cmd, "wraith --version")
            .await?
            .trim()
            .to_string()
    };
    let openssh_version = openssh::version(&tools).await;
    let machine = machine::Machine::read();
    let keys = tools::Keys::generate(&tools).await?;
    let targets = targets::Targets::start().await?;
    let mut bench = Bench {
        tools,
        keys,
        targets,
        settings,
        clock_ticks: process::clock_ticks_per_second(),
        idle_cap,
        idle_openssh_cipher: None,
        other_load: process::OtherLoad::start(),
        phases: std::sync::Mutex::new(Vec::new()),
    };
    let wants_wraith = cli.tunnels.is_empty()
        || cli
            .tunnels
            .iter()
            .any(|k| k.implementation() == tunnel::Implementation::Wraith);
    let wcipher = wraith_cipher(&bench, machine.aes_flag, wants_wraith).await;
    eprintln!(
        "wraith-bench: {} on {} ({} CPUs); {}; {}",
        wraith_version,
        machine.cpu_model,
        machine.cpus,
        openssh_version.as_deref().unwrap_or("OpenSSH not found"),
        format_args!("wraith cipher {} ({})", wcipher.name, wcipher.source),
    );
    let mut notes = Vec::new();
    if let Some(missing) = bench.tools.openssh_missing() {
        notes.push(missing);
    }
    if bench.settings.idle_counts.iter().any(|&n| n > idle_cap) && bench.settings.has(Figure::Idle)
    {
        notes.push(format!(
            "RLIMIT_NOFILE is {nofile} and cannot be raised further here; the bench holds both \
             ends of each idle connection, so at most {idle_cap} idle connections are opened"
        ));
    }

    let specs = tunnel_specs(&cli, &wcipher.name);
    bench.idle_openssh_cipher = specs
        .iter()
        .find(|s| s.kind == Kind::OpensshSocks5)
        .and_then(|s| s.cipher.clone());
    if bench.settings.has(Figure::Idle)
        && let Some(c) = &bench.idle_openssh_cipher
        && specs
            .iter()
            .filter(|s| s.kind == Kind::OpensshSocks5)
            .count()
            > 1
    {
        notes.push(format!(
            "idle connections are measured for ssh -D with {c} only: memory per connection does \
             not depend on the cipher, and OpenSSH takes minutes to open 10 000 channels"
        ));
    }
    let mut rows = bench::run_all(&bench, &specs).await;
    let phases = bench.phases.lock().map(|p| p.clone()).unwrap_or_default();
    notes.extend(bench::busy_machine_note(&phases, machine.cpus));
    let load_line = bench::machine_load_line(&phases, machine.cpus);
    if bench.settings.has(Figure::Instructions) && bench.tools.valgrind.is_none() {
        notes.push("instruction counts need valgrind (apt-get install valgrind)".into());
    }
    for r in &rows {
        if r.implementation == tunnel::Implementation::Wraith
            && let Some(c) = &r.cipher
            && *c != wcipher.name
        {
            notes.push(format!(
                "a wraith session negotiated {c}, not {} as expected",
                wcipher.name
            ));
            break;
        }
    }
    report::add_ratios(&mut rows);

    let s = &bench.settings;
    let mode = if cli.quick { "quick" } else { "full" };
    let duration = started.elapsed();
    println!(
        "wraith-bench ({mode}) — {} — {} on {} ({} CPUs, kernel {})",
        wraith_version,
        openssh_version.as_deref().unwrap_or("OpenSSH not found"),
        machine.cpu_model,
        machine.cpus,
        machine.kernel
    );
    println!(
        "wraith cipher: {} ({}). Ratio = wraith / OpenSSH with the same mode (SOCKS5 = ssh -D, \
         --forward = ssh -L) and cipher. MB/s = 10^6 bytes/s.",
        wcipher.name, wcipher.source
    );
    print!("{}", report::table(&rows));
    println!("\n{load_line}");
    for n in &notes {
        println!("note: {n}");
    }
    let doc = Document {
        schema: 1,
        tool: "wraith-bench",
        mode,
        argv: std::env::args().collect(),
        started_unix,
        duration_s: duration.as_secs_f64(),
        machine: &machine,
        versions: Versions {
            wraith: wraith_version,
            wraith_path: bench.tools.wraith.display().to_string(),
            openssh: openssh_version,
            bench: env!("CARGO_PKG_VERSION"),
        },
        wraith_cipher: wcipher,
        settings: SettingsDoc {
            figures: s
                .figures
                .iter()
                .filter_map(|f| f.to_possible_value().map(|v| v.get_name().to_string()))
                .collect(),
            bulk_bytes: s.bulk_bytes,
            runs: s.runs,
            streams: s.streams,
            latency_samples: s.latency_samples,
            idle_counts: s.idle_counts.clone(),
            instructions_bytes: s.instructions_bytes,
            longpath_rtts_ms: s.longpath_rtts_ms.clone(),
            longpath_seconds: s.longpath_time.as_secs_f64(),
            nofile_limit: nofile,
            idle_cap,
        },
        units: serde_json::json!({
            "MB/s": "10^6 bytes per second of payload",
            "ms": "milliseconds",
            "KiB/conn": "(VmRSS with N connections - VmRSS before) / N",
            "s/GiB": "user+system CPU seconds per 2^30 bytes of payload",
            "instr/B": "instructions executed (callgrind) per byte of payload",
        }),
        notes,
        other_load: phases,
        rows: &rows,
    };
    write_json(&json_path, &doc)?;
    println!(
        "\nJSON: {}\ntook {:.0} s",
        json_path.display(),
        duration.as_secs_f64()
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM with the signal's name; never if the
/// handlers cannot be installed.
async fn interrupted() -> &'static str {
    use std::future::pending;
    use tokio::signal::unix::{SignalKind, signal};
    let int = async {
        if tokio::signal::ctrl_c().await.is_err() {
            pending::<()>().await;
        }
    };
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut t) => {
                if t.recv().await.is_none() {
                    pending::<()>().await;
                }
            }
            Err(_) => pending::<()>().await,
        }
    };
    tokio::select! {
        _ = int => "SIGINT",
        _ = term => "SIGTERM",
    }
}

fn write_json(path: &Path, doc: &Document<'_>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} (--json)", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(doc).map_err(|e| anyhow!("cannot encode JSON: {e}"))?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write {} (--json)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1TiB").is_err());
    }

    #[test]
    fn quick_mode_is_small_and_full_mode_is_as_specified() {
        let quick = settings(&Cli::parse_from(["wraith-bench", "--quick"]));
        assert_eq!(quick.bulk_bytes, 16 << 20);
        assert_eq!((quick.runs, quick.latency_samples), (1, 20));
        assert_eq!(quick.idle_counts, [100]);
        let full = settings(&Cli::parse_from(["wraith-bench"]));
        assert_eq!(full.bulk_bytes, 1 << 30);
        assert_eq!((full.runs, full.streams, full.latency_samples), (5, 8, 200));
        assert_eq!(full.idle_counts, [1000, 10_000]);
        assert!(full.has(Figure::Instructions) && !quick.has(Figure::Instructions));
        assert!(full.has(Figure::Longpath) && !quick.has(Figure::Longpath));
        assert_eq!(full.longpath_rtts_ms, [0, 50, 150]);
        assert_eq!(full.longpath_time, std::time::Duration::from_secs(8));
        let quick_longpath = settings(&Cli::parse_from([
            "wraith-bench",
            "--quick",
            "--only",
            "longpath",
        ]));
        assert_eq!(quick_longpath.longpath_rtts_ms, [50]);
        assert_eq!(
            quick_longpath.longpath_time,
            std::time::Duration::from_secs(2)
        );
    }

    #[test]
    fn rtt_list_and_transfer_time_are_overridable() {
        let s = settings(&Cli::parse_from([
            "wraith-bench",
            "--only",
            "longpath",
            "--rtt",
            "0,20,300",
            "--longpath-time",
            "1.5",
        ]));
        assert_eq!(s.figures, [Figure::Longpath]);
        assert_eq!(s.longpath_rtts_ms, [0, 20, 300]);
        assert_eq!(s.longpath_time, std::time::Duration::from_millis(1500));
        assert!(Cli::try_parse_from(["wraith-bench", "--rtt", "20000"]).is_err());
        assert!(parse_seconds("0").is_err() && parse_seconds("x").is_err());
    }

    #[test]
    fn openssh_runs_every_cipher_with_wraiths_first() {
        let cli = Cli::parse_from(["wraith-bench", "--tunnels", "openssh-socks5,wraith-socks5"]);
        let specs = tunnel_specs(&cli, "chacha20-poly1305@openssh.com");
        let names: Vec<String> = specs.iter().map(TunnelSpec::label).collect();
        assert_eq!(
            names,
            [
                "ssh -D chacha20-poly1305",
                "ssh -D aes128-gcm",
                "ssh -D aes256-gcm",
                "wraith socks5 chacha20-poly1305",
            ]
        );
    }

    #[test]
    fn cpu_alone_brings_bulk_transfers() {
        let s = settings(&Cli::parse_from(["wraith-bench", "--only", "cpu"]));
        assert!(s.has(Figure::Cpu) && s.has(Figure::Bulk));
    }
}
