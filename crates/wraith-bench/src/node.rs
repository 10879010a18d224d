//! The Node figure: single-stream bulk throughput through the Node addon's
//! `connect()` beside `wraith connect --forward`, against one `wraith serve`
//! and the same targets, runs interleaved (CLI first in odd rounds, Node
//! first in even ones). The addon side is `node/bulk.js`, one node process
//! per run, which times the transfer itself (connect() and node's start-up
//! are outside the clock, as the SSH session set-up is for the CLI). Each
//! Node row carries its ratio to the CLI row (`detail.ratio_vs_cli`).
//!
//! It needs `node` on the PATH and the addon built
//! (`cd crates/wraith-node && npm install && npm run build`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::time::timeout;

use crate::bench::{Bench, Phase, size};
use crate::measure::{self, Direction};
use crate::process::{Launcher, Proc};
use crate::report::{Better, Row};
use crate::targets::Target;
use crate::tools::Tools;
use crate::tools::pub_path;
use crate::tunnel::{Kind, Route, TunnelSpec};
use crate::wraith::{WraithTransport, start_client, start_server};

/// The bench's own script, beside this crate's sources.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/node/bulk.js");

/// The addon package, whose `wraith.node` `npm run build` writes.
const ADDON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wraith-node");

/// The row names: the addon, and the CLI it is compared with.
const NODE_LABEL: &str = "wraith-node-connect";
const CLI_LABEL: &str = "wraith-cli-forward";

/// The CLI client and server this figure runs, and how to reach them.
struct Set {
    route: Route,
    server: String,
    _procs: [Proc; 2],
}

async fn start(b: &Bench) -> Result<Set> {
    let launcher = Launcher::Plain;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (server_proc, server) =
        start_server(&b.tools, &b.keys, WraithTransport::Tcp, any, &launcher).await?;
    let t = &b.targets;
    let targets = [
        t.addr(Target::Source),
        t.addr(Target::Sink),
        t.addr(Target::Echo),
    ];
    let (client_proc, listeners) = start_client(
        &b.tools,
        &b.keys,
        WraithTransport::Tcp,
        &server.connect,
        &targets,
        &launcher,
        None,
    )
    .await?;
    let local = |target| {
        listeners
            .forwards
            .iter()
            .find(|(_, to)| *to == target)
            .map(|(l, _)| *l)
            .ok_or_else(|| anyhow!("wraith connect printed no forward to {target}"))
    };
    let route = Route::Forward {
        source: local(targets[0])?,
        sink: local(targets[1])?,
        echo: local(targets[2])?,
    };
    Ok(Set {
        route,
        server: server.connect,
        _procs: [client_proc, server_proc],
    })
}

/// The addon's `wraith.node`, if built.
fn addon() -> Result<PathBuf> {
    let dir = Path::new(ADDON);
    if !dir.join("wraith.node").is_file() {
        bail!("the Node addon is not built: cd crates/wraith-node && npm install && npm run build");
    }
    Ok(dir.to_path_buf())
}

/// One transfer through the addon; MB/s as `node/bulk.js` measured it.
async fn node_run(
    b: &Bench,
    node: &Path,
    addon: &Path,
    server: &str,
    dir: Direction,
    bytes: u64,
) -> Result<f64> {
    let target = b.targets.addr(match dir {
        Direction::Upload => Target::Sink,
        Direction::Download => Target::Source,
    });
    let job = serde_json::json!({
        "server": server,
        "identity": b.keys.wraith_client,
        "hostKey": pub_path(&b.keys.wraith_host),
        "target": target.to_string(),
        "direction": dir.name(),
        "bytes": bytes,
    });
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(SCRIPT)
        .arg(addon)
        .arg(job.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let bound = measure::transfer_deadline(bytes) + Duration::from_secs(20);
    let out = timeout(bound, cmd.output())
        .await
        .map_err(|_| anyhow!("node bulk.js did not finish within {bound:?}"))?
        .context("cannot run node")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "node bulk.js failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("mb_per_s "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("node bulk.js printed no figure: {}", stdout.trim()))
}

fn row(b: &Bench, label: &'static str, dir: Direction) -> Row {
    let spec = TunnelSpec::any_cipher(Kind::WraithForward);
    let mut r = Row::new(
        &spec,
        None,
        format!("node_bulk_{}", dir.name()),
        format!(
            "Node addon connect() vs CLI --forward, {}: 1 stream x {}, median of {}",
            dir.name(),
            size(b.settings.bulk_bytes),
            b.settings.runs
        ),
        "MB/s",
        Better::Higher,
    );
    r.tunnel = label;
    r
}

/// Both directions' rows: the CLI's, then the addon's with its ratio.
pub(crate) async fn rows(b: &Bench) -> Vec<Row> {
    eprintln!("== Node addon connect() beside wraith connect --forward");
    let phase = Phase::start(b);
    let set = async {
        let node = Tools::need(&b.tools.node, "node not found on the PATH")?;
        let addon = addon()?;
        let set = start(b).await?;
        Ok::<_, anyhow::Error>((node, addon, set))
    }
    .await;
    let (node, addon, set) = match set {
        Ok(v) => v,
        Err(e) => {
            eprintln!("   failed: {e:#}");
            let mut rows = Vec::new();
            for dir in [Direction::Upload, Direction::Download] {
                rows.push(row(b, CLI_LABEL, dir).error(&e));
                rows.push(row(b, NODE_LABEL, dir).error(&e));
            }
            return phase.finish(b, "node", rows);
        }
    };
    let bytes = b.settings.bulk_bytes;
    let mut rows = Vec::new();
    for dir in [Direction::Upload, Direction::Download] {
        let (mut cli, mut js) = (Vec::new(), Vec::new());
        let mut error = None;
        for run in 1..=b.settings.runs {
            for k in 0..2 {
                let addon_turn = (k + run) % 2 == 0;
                let r = if addon_turn {
                    node_run(b, &node, &addon, &set.server, dir, bytes).await
                } else {
                    measure::single(&set.route, dir, bytes).await
                };
                let label = if addon_turn { NODE_LABEL } else { CLI_LABEL };
                match r {
                    Ok(v) => {
                        eprintln!("   {label} {}: run {run}: {v:.1} MB/s", dir.name());
                        if addon_turn { &mut js } else { &mut cli }.push(v);
                    }
                    Err(e) => {
                        eprintln!("   {label} {}: run {run} failed: {e:#}", dir.name());
                        error = Some(e);
                    }
                }
            }
            if error.is_some() {
                break;
            }
        }
        let (cli_median, js_median) = (measure::median(&cli), measure::median(&js));
        let mut cli_row = row(b, CLI_LABEL, dir).value(cli_median, cli);
        let mut js_row = row(b, NODE_LABEL, dir).value(js_median, js);
        if let (Some(c), Some(j)) = (cli_median, js_median)
            && c > 0.0
        {
            js_row = js_row
                .detail("ratio_vs_cli", j / c)
                .detail("note", format!("{:.2}x the CLI", j / c));
        }
        if let Some(e) = error {
            cli_row = cli_row.error(&e);
            js_row = js_row.error(&e);
        }
        rows.push(cli_row);
        rows.push(js_row);
    }
    phase.finish(b, "node", rows)
}
