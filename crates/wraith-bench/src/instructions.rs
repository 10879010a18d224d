//! Instructions per byte moved, counted by valgrind's callgrind: a figure
//! the load on a shared machine does not move, unlike wall-clock and CPU
//! seconds. The tunnel's client and server run under callgrind (sshd with
//! its per-connection children); after a warm-up transfer the counters are
//! zeroed, one stream moves the bytes, and the counters are dumped
//! (`callgrind_control -z` / `-d`), so start-up and the key exchange are
//! not counted. The bench itself is not profiled.
//!
//! It never compares timing: callgrind slows the processes down 20-50x.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::bench::{Bench, size};
use crate::measure::{self, Direction};
use crate::process::{Launcher, Side};
use crate::report::{Better, Row};
use crate::tools::Tools;
use crate::tools::{command, run_once};
use crate::tunnel::{Implementation, Link, Tunnel, TunnelSpec};

/// Bytes moved before the counters are zeroed (connection set-up paths,
/// lazily grown buffers).
const WARM_UP: u64 = 1 << 20;

/// Bound for a dump file to appear after `callgrind_control -d`.
const DUMP_WAIT: Duration = Duration::from_secs(30);

/// Rows for one tunnel: instructions per byte, upload and download, for
/// the client, the server and both.
pub(crate) async fn rows(b: &Bench, spec: &TunnelSpec, bytes: u64) -> Vec<Row> {
    eprintln!(
        "== instructions: {} under callgrind, {} each way",
        spec.label(),
        size(bytes)
    );
    match measure_tunnel(b, spec, bytes).await {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("   failed: {e:#}");
            [Direction::Upload, Direction::Download]
                .into_iter()
                .flat_map(|d| row_triple(spec, spec.cipher.clone(), d, bytes))
                .map(|r| r.error(&e))
                .collect()
        }
    }
}

async fn measure_tunnel(b: &Bench, spec: &TunnelSpec, bytes: u64) -> Result<Vec<Row>> {
    let valgrind = Tools::need(
        &b.tools.valgrind,
        "valgrind not found (apt-get install valgrind)",
    )?;
    let control = Tools::need(
        &b.tools.callgrind_control,
        "callgrind_control not found (it comes with valgrind)",
    )?;
    let dir = b
        .settings
        .callgrind_dir
        .as_deref()
        .unwrap_or(b.keys.dir.path())
        .join(format!("callgrind-{}", spec.kind.name()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let launcher = Launcher::Callgrind {
        valgrind,
        dir: dir.clone(),
    };
    let t = b.start(spec, &launcher, Link::Loopback).await?;
    let out = measure_on(&t, &control, &dir, bytes).await;
    t.stop().await;
    out
}

async fn measure_on(t: &Tunnel, control: &Path, dir: &Path, bytes: u64) -> Result<Vec<Row>> {
    let (Some(client), Some(server)) = (&t.client, &t.server) else {
        bail!("this tunnel has no processes to profile");
    };
    for d in [Direction::Upload, Direction::Download] {
        measure::single(&t.route, d, WARM_UP)
            .await
            .context("warm-up transfer")?;
    }
    let server_profiled = t.spec.kind.implementation() != Implementation::Openssh;
    let mut rows = Vec::new();
    for d in [Direction::Upload, Direction::Download] {
        let profiled: Vec<&Side> = [Some(client), server_profiled.then_some(server)]
            .into_iter()
            .flatten()
            .collect();
        for side in &profiled {
            for pid in side.pids() {
                callgrind_control(control, "-z", pid).await?;
            }
        }
        let rate = measure::single(&t.route, d, bytes).await?;
        let mut counts = [None, None];
        for (count, side) in counts.iter_mut().zip(&profiled) {
            *count = Some(dump_side(control, dir, side).await?);
        }
        let per_byte = |n: Option<u64>| n.map(|n| n as f64 / bytes as f64);
        eprintln!(
            "   {}: {} client {:.2} + server {:.2} instructions/byte ({rate:.1} MB/s under callgrind)",
            t.spec.label(),
            d.name(),
            per_byte(counts[0]).unwrap_or(f64::NAN),
            per_byte(counts[1]).unwrap_or(f64::NAN),
        );
        let both = counts[0].zip(counts[1]).map(|(c, s)| c + s);
        let [c, s, sum] = row_triple(&t.spec, t.cipher.clone(), d, bytes);
        for (row, n) in [c, s, sum].into_iter().zip([counts[0], counts[1], both]) {
            rows.push(match n {
                Some(n) => row
                    .detail("instructions", n)
                    .detail("bytes", bytes)
                    .value(per_byte(Some(n)), Vec::new()),
                None => row.error(&anyhow!(
                    "sshd is not profiled: its pre-auth sandbox cannot run under valgrind"
                )),
            });
        }
    }
    Ok(rows)
}

async fn callgrind_control(control: &Path, flag: &str, pid: u32) -> Result<()> {
    let mut cmd = command(control);
    cmd.arg(flag).arg(pid.to_string());
    let out = run_once(cmd, &format!("callgrind_control {flag} {pid}")).await?;
    if !out.contains("OK") {
        bail!("callgrind_control {flag} {pid}: {}", out.trim());
    }
    Ok(())
}

/// Dumps every process of `side` and sums the instructions counted since
/// they were zeroed.
async fn dump_side(control: &Path, dir: &Path, side: &Side) -> Result<u64> {
    let mut total = 0;
    for pid in side.pids() {
        let before = last_dump(dir, pid).map(|(n, _)| n);
        callgrind_control(control, "-d", pid).await?;
        let deadline = tokio::time::Instant::now() + DUMP_WAIT;
        let path = loop {
            match last_dump(dir, pid) {
                Some((n, p)) if Some(n) != before => break p,
                _ if tokio::time::Instant::now() >= deadline => {
                    bail!("callgrind wrote no dump for pid {pid} in {DUMP_WAIT:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        // The file is complete once its totals line is there.
        let deadline = tokio::time::Instant::now() + DUMP_WAIT;
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(n) = totals(&text) {
                total += n;
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{} has no totals line", path.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(total)
}

/// The newest numbered dump (`<name>.<pid>.<n>`) of `pid` in `dir`.
fn last_dump(dir: &Path, pid: u32) -> Option<(u32, PathBuf)> {
    let infix = format!(".{pid}.");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let (_, n) = name.split_once(&infix)?;
            Some((n.parse::<u32>().ok()?, e.path()))
        })
        .max_by_key(|(n, _)| *n)
}

/// The instruction count on a callgrind dump's `totals:` (or `summary:`)
/// line.
fn totals(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .or_else(|| dump.lines().find_map(|l| l.strip_prefix("summary:")))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn row_triple(spec: &TunnelSpec, cipher: Option<String>, d: Direction, bytes: u64) -> [Row; 3] {
    let row = |side: &str| {
        Row::new(
            spec,
            cipher.clone(),
            format!("instructions_{}_{side}", d.name()),
            format!(
                "instructions per byte, {} 1 stream x {}, {}, counted by callgrind",
                d.name(),
                size(bytes),
                side.replace('_', "+")
            ),
            "instr/B",
            Better::Lower,
        )
    };
    [row("client"), row("server"), row("client_server")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_line_is_read_from_a_dump() {
        let dump =
            "version: 1\ncmd: wraith\nevents: Ir\nsummary: 1234\n\nfn=x\n1 5\ntotals: 987654\n";
        assert_eq!(totals(dump), Some(987_654));
        assert_eq!(totals("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(totals("events: Ir\n"), None);
    }

    #[test]
    fn newest_dump_of_a_pid_is_found() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ssh.10.1", "ssh.10.2", "ssh.100.7", "ssh.10"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let (n, p) = last_dump(dir.path(), 10).unwrap();
        assert_eq!(n, 2);
        assert!(p.ends_with("ssh.10.2"));
        assert!(last_dump(dir.path(), 11).is_none());
    }
}
