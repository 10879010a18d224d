//! The long-path figure: single-stream upload and download across an added
//! round-trip time, for no tunnel, `ssh -D` and wraith over tcp, tls and
//! iroh, side by side. The kernel here has no `netem`, so the path is a
//! pair of user-space delay lines (`delayline`): between the bench and the
//! targets for no tunnel, between the tunnel's client and its server
//! otherwise (UDP for iroh, which is dialed at the relay's address).
//!
//! For each `--rtt` the tunnels are started afresh behind delay lines of
//! RTT/2 each way (0 ms still goes through them, so every RTT pays the
//! relay's own cost), and each moves one stream for `--longpath-time` per
//! direction, the tunnels taking turns. The rate is bytes delivered over
//! time (see `measure::timed`). A 1-byte echo through each tunnel, after
//! its transfers, shows the delay really is on the path: it must take at
//! least the RTT, else the traffic found a way around the delay line.

use std::time::Duration;

use crate::bench::{Bench, Phase};
use crate::measure::{self, Direction};
use crate::process::Launcher;
use crate::report::{Better, Row};
use crate::tunnel::{Implementation, Kind, Link, TunnelSpec};

/// The tunnels this figure runs (OpenSSH with wraith's cipher only).
const KINDS: [Kind; 6] = [
    Kind::Direct,
    Kind::OpensshSocks5,
    Kind::WraithSocks5,
    Kind::WraithTlsSocks5,
    Kind::WraithWssSocks5,
    Kind::WraithIrohSocks5,
];

/// Echo round trips per tunnel; the least is reported.
const ECHO_TRIES: usize = 3;

/// Machine name of the figure for one RTT and direction.
pub(crate) fn figure(rtt_ms: u64, dir: Direction) -> String {
    format!("longpath_{}_{rtt_ms}ms", dir.name())
}

/// Which of `specs` this figure runs.
fn chosen<'a>(b: &Bench, specs: &'a [TunnelSpec]) -> Vec<&'a TunnelSpec> {
    specs
        .iter()
        .filter(|s| KINDS.contains(&s.kind))
        .filter(|s| {
            s.kind.implementation() != Implementation::Openssh || s.cipher == b.idle_openssh_cipher
        })
        .collect()
}

pub(crate) async fn rows(b: &Bench, specs: &[TunnelSpec]) -> Vec<Row> {
    let specs = chosen(b, specs);
    let mut rows = Vec::new();
    for &rtt_ms in &b.settings.longpath_rtts_ms {
        let phase = Phase::start(b);
        let here = one_rtt(b, &specs, rtt_ms).await;
        rows.extend(phase.finish(b, &format!("longpath {rtt_ms} ms"), here));
    }
    rows
}

async fn one_rtt(b: &Bench, specs: &[&TunnelSpec], rtt_ms: u64) -> Vec<Row> {
    let time = b.settings.longpath_time;
    let link = Link::Delayed(Duration::from_millis(rtt_ms) / 2);
    eprintln!(
        "== long path, RTT {rtt_ms} ms: {} tunnel(s), {:.0} s per transfer",
        specs.len(),
        time.as_secs_f64()
    );
    // In the order given, failed starts included, so the table keeps it.
    let mut slots = Vec::new();
    for spec in specs {
        eprintln!("   starting {} behind delay lines", spec.label());
        let started = b.start(spec, &Launcher::Plain, link).await;
        if let Err(e) = &started {
            eprintln!("   failed: {e:#}");
        }
        slots.push(((*spec).clone(), started));
    }
    let dirs = [Direction::Upload, Direction::Download];
    let mut results: Vec<[Option<anyhow::Result<measure::Timed>>; 2]> =
        slots.iter().map(|_| [None, None]).collect();
    for (d, dir) in dirs.into_iter().enumerate() {
        // A different tunnel goes first in each direction.
        let n = slots.len().max(1);
        for k in 0..slots.len() {
            let i = (k + d) % n;
            let Ok(t) = &slots[i].1 else { continue };
            let r = measure::timed(&t.route, dir, time).await;
            match &r {
                Ok(m) => eprintln!(
                    "   {}: {} {:.1} MB/s ({} MB in {:.1} s)",
                    t.spec.label(),
                    dir.name(),
                    m.mb_per_s(),
                    m.bytes / 1_000_000,
                    m.seconds
                ),
                Err(e) => eprintln!(
                    "   {}: {} failed: {e:#}\n{}",
                    t.spec.label(),
                    dir.name(),
                    t.stderr_excerpts()
                ),
            }
            results[i][d] = Some(r);
        }
    }
    let mut rows = Vec::new();
    for ((spec, started), result) in slots.iter().zip(results) {
        let t = match started {
            Ok(t) => t,
            Err(e) => {
                for dir in dirs {
                    rows.push(row(spec, spec.cipher.clone(), rtt_ms, dir, time).error(e));
                }
                continue;
            }
        };
        let echo = measure::echo_round_trip(&t.route, ECHO_TRIES).await;
        let echo_ms = echo.as_ref().ok().copied();
        let bypassed = echo_ms.is_some_and(|ms| ms < rtt_ms as f64);
        match &echo {
            Ok(ms) if bypassed => eprintln!(
                "   {}: echo {ms:.1} ms is under the {rtt_ms} ms RTT: the path bypassed the delay line",
                t.spec.label()
            ),
            Ok(ms) => eprintln!("   {}: echo {ms:.1} ms", t.spec.label()),
            Err(e) => eprintln!("   {}: echo failed: {e:#}", t.spec.label()),
        }
        for (dir, r) in dirs.into_iter().zip(result) {
            let mut row =
                row(&t.spec, t.cipher.clone(), rtt_ms, dir, time).detail("echo_rtt_ms", echo_ms);
            if bypassed {
                row = row.detail(
                    "note",
                    "echo faster than the RTT: the path bypassed the delay line",
                );
            }
            rows.push(match r {
                Some(Ok(m)) => row
                    .detail("bytes", m.bytes)
                    .detail("seconds", m.seconds)
                    .value(Some(m.mb_per_s()), vec![m.mb_per_s()]),
                Some(Err(e)) => row.error(&e),
                None => row.error(&anyhow::anyhow!("not measured")),
            });
        }
    }
    for (_, started) in slots {
        if let Ok(t) = started {
            t.stop().await;
        }
    }
    rows
}

fn row(
    spec: &TunnelSpec,
    cipher: Option<String>,
    rtt_ms: u64,
    dir: Direction,
    time: Duration,
) -> Row {
    Row::new(
        spec,
        cipher,
        figure(rtt_ms, dir),
        format!(
            "long path {}, RTT {rtt_ms} ms (delay line): 1 stream for {:.0} s",
            dir.name(),
            time.as_secs_f64()
        ),
        "MB/s",
        Better::Higher,
    )
    .detail("rtt_ms", rtt_ms)
    .detail("direction", dir.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_names_carry_direction_and_rtt() {
        assert_eq!(figure(50, Direction::Upload), "longpath_upload_50ms");
        assert_eq!(figure(0, Direction::Download), "longpath_download_0ms");
    }
}
