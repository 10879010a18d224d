//! Results: one [`Row`] per tunnel per figure, the wraith/OpenSSH ratio
//! (same figure, same mode, same cipher), the printed table and the JSON
//! document. Pure data in, text out: nothing here measures anything.

use std::fmt::Write as _;

use serde::Serialize;

use crate::tunnel::{Implementation, Kind, Mode, TunnelSpec, short_cipher};

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// One measured figure of one tunnel, or why it could not be measured.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    /// Machine name of the figure, e.g. `bulk_upload`, `idle_1000_client`.
    pub(crate) figure: String,
    /// How the table names it, e.g. "bulk upload, 1 GiB, median of 3".
    pub(crate) title: String,
    pub(crate) unit: &'static str,
    pub(crate) better: Better,
    pub(crate) tunnel: &'static str,
    pub(crate) implementation: Implementation,
    pub(crate) mode: Mode,
    pub(crate) cipher: Option<String>,
    /// The figure (a median for repeated runs); `None` with `error`.
    pub(crate) value: Option<f64>,
    /// Every run behind `value` (throughput runs, latency samples).
    pub(crate) samples: Vec<f64>,
    /// wraith's value divided by OpenSSH's (same figure, mode and cipher).
    pub(crate) ratio_vs_openssh: Option<f64>,
    /// For interleaved throughput runs: wraith's run k divided by OpenSSH's
    /// run k (same round, so the same machine load), for every round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ratio_per_round: Vec<f64>,
    /// Extra facts (connections reached, raw RSS, CPU seconds, ...).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub(crate) detail: serde_json::Map<String, serde_json::Value>,
    pub(crate) error: Option<String>,
}

impl Row {
    pub(crate) fn new(
        spec: &TunnelSpec,
        cipher: Option<String>,
        figure: impl Into<String>,
        title: impl Into<String>,
        unit: &'static str,
        better: Better,
    ) -> Self {
        Self {
            figure: figure.into(),
            title: title.into(),
            unit,
            better,
            tunnel: spec.kind.name(),
            implementation: spec.kind.implementation(),
            mode: spec.kind.mode(),
            cipher,
            value: None,
            samples: Vec::new(),
            ratio_vs_openssh: None,
            ratio_per_round: Vec::new(),
            detail: serde_json::Map::new(),
            error: None,
        }
    }

    pub(crate) fn value(mut self, v: Option<f64>, samples: Vec<f64>) -> Self {
        self.value = v;
        self.samples = samples;
        self
    }

    pub(crate) fn error(mut self, e: &anyhow::Error) -> Self {
        self.error = Some(format!("{e:#}"));
        self
    }

    pub(crate) fn detail(mut self, key: &str, v: impl Into<serde_json::Value>) -> Self {
        self.detail.insert(key.to_string(), v.into());
        self
    }

    fn label(&self) -> String {
        let kind = Kind::ALL
            .iter()
            .find(|k| k.name() == self.tunnel)
            .map_or(self.tunnel, |k| k.label());
        match &self.cipher {
            Some(c) => format!("{kind} {}", short_cipher(c)),
            None => kind.to_string(),
        }
    }
}

/// Fills `ratio_vs_openssh` on every wraith row that has an OpenSSH row
/// with the same figure, mode and cipher.
pub(crate) fn add_ratios(rows: &mut [Row]) {
    type Baseline = (String, Mode, Option<String>, f64, Vec<f64>);
    let baseline: Vec<Baseline> = rows
        .iter()
        .filter(|r| r.implementation == Implementation::Openssh)
        .filter_map(|r| {
            Some((
                r.figure.clone(),
                r.mode,
                r.cipher.clone(),
                r.value?,
                r.samples.clone(),
            ))
        })
        .collect();
    for r in rows
        .iter_mut()
        .filter(|r| r.implementation == Implementation::Wraith)
    {
        let Some(v) = r.value else { continue };
        let Some((.., o, o_runs)) = baseline
            .iter()
            .find(|(f, m, c, ..)| *f == r.figure && *m == r.mode && *c == r.cipher)
            .filter(|(_, _, _, o, _)| o.abs() > f64::EPSILON)
        else {
            continue;
        };
        r.ratio_vs_openssh = Some(v / o);
        if r.unit == "MB/s" && r.samples.len() > 1 && r.samples.len() == o_runs.len() {
            r.ratio_per_round = r
                .samples
                .iter()
                .zip(o_runs)
                .filter(|(_, o)| o.abs() > f64::EPSILON)
                .map(|(w, o)| w / o)
                .collect();
        }
    }
}

/// `min–max` of repeated throughput runs ("" for a single value).
fn spread(r: &Row) -> String {
    if r.unit != "MB/s" || r.samples.len() < 2 {
        return String::new();
    }
    let (lo, hi) = min_max(&r.samples);
    format!("{lo:.0}–{hi:.0}")
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "MB/s" | "KiB/conn" => format!("{v:.1}"),
        "ms" => format!("{v:.3}"),
        "instr/B" => format!("{v:.2}"),
        _ => format!("{v:.2}"),
    }
}

fn format_ratio(r: &Row) -> String {
    let Some(ratio) = r.ratio_vs_openssh else {
        return String::new();
    };
    let verdict = if (ratio - 1.0).abs() <= 0.05 {
        "on par"
    } else if (ratio > 1.0) == (r.better == Better::Higher) {
        "better"
    } else {
        "worse"
    };
    let mut out = format!("{ratio:.2}x ({verdict})");
    if !r.ratio_per_round.is_empty() {
        let (lo, hi) = min_max(&r.ratio_per_round);
        let _ = write!(
            out,
            "  per round {lo:.2}–{hi:.2}, median {:.2}",
            crate::measure::median(&r.ratio_per_round).unwrap_or(f64::NAN)
        );
    }
    out
}

/// The human-readable table: rows grouped by figure, in measuring order;
/// the long-path rows as one block per RTT with both directions side by side.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut figures: Vec<&str> = Vec::new();
    for r in rows {
        if is_longpath(r) {
            continue;
        }
        if !figures.contains(&r.figure.as_str()) {
            figures.push(&r.figure);
        }
    }
    let label_width = rows.iter().map(|r| r.label().len()).max().unwrap_or(10) + 2;
    let mut out = String::new();
    for fig in figures {
        let group: Vec<&Row> = rows.iter().filter(|r| r.figure == fig).collect();
        let Some(first) = group.first() else { continue };
        let better = match first.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        let _ = writeln!(out, "\n{} [{}; {better}]", first.title, first.unit);
        let _ = writeln!(
            out,
            "  {:<label_width$}{:>12} {:>11}   wraith/OpenSSH (same mode, same cipher)",
            "tunnel", "value", "min–max"
        );
        for r in group {
            let value = match (&r.value, &r.error) {
                (Some(v), _) => format_value(*v, r.unit),
                (None, Some(e)) => format!("error: {}", truncate(e, 90)),
                (None, None) => "-".to_string(),
            };
            let mut note = format_ratio(r);
            if let Some(serde_json::Value::String(n)) = r.detail.get("note") {
                if !note.is_empty() {
                    note.push_str("  ");
                }
                note.push_str(n);
            }
            let _ = writeln!(
                out,
                "  {:<label_width$}{:>12} {:>11}   {}",
                r.label(),
                value,
                spread(r),
                note
            );
        }
    }
    out.push_str(&longpath_table(rows));
    out
}

fn is_longpath(r: &Row) -> bool {
    r.figure.starts_with("longpath_")
}

fn detail_u64(r: &Row, key: &str) -> Option<u64> {
    r.detail.get(key).and_then(serde_json::Value::as_u64)
}

/// One block per RTT: upload and download MB/s of each tunnel side by
/// side, wraith ÷ `ssh -D` for each, and the echo round trip that shows
/// the delay was on the path. Errors are listed under the block.
fn longpath_table(rows: &[Row]) -> String {
    let lp: Vec<&Row> = rows.iter().filter(|r| is_longpath(r)).collect();
    let mut rtts: Vec<u64> = Vec::new();
    for r in &lp {
        if let Some(rtt) = detail_u64(r, "rtt_ms")
            && !rtts.contains(&rtt)
        {
            rtts.push(rtt);
        }
    }
    let label_width = lp.iter().map(|r| r.label().len()).max().unwrap_or(10) + 2;
    let mut out = String::new();
    for rtt in rtts {
        let here: Vec<&Row> = lp
            .iter()
            .copied()
            .filter(|r| detail_u64(r, "rtt_ms") == Some(rtt))
            .collect();
        let mut labels: Vec<String> = Vec::new();
        for r in &here {
            if !labels.contains(&r.label()) {
                labels.push(r.label());
            }
        }
        let title = here
            .first()
            .map(|r| {
                r.title
                    .replacen(" upload,", ",", 1)
                    .replacen(" download,", ",", 1)
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "
{title} [MB/s; higher is better]"
        );
        let _ = writeln!(
            out,
            "  {:<label_width$}{:>10} {:>10}   {:>9}   wraith/ssh -D (up, down)",
            "tunnel", "upload", "download", "echo ms"
        );
        let mut errors = Vec::new();
        for label in labels {
            let find = |dir: &str| {
                here.iter().copied().find(|r| {
                    r.label() == label
                        && r.detail.get("direction").and_then(|d| d.as_str()) == Some(dir)
                })
            };
            let (up, down) = (find("upload"), find("download"));
            let cell = |r: Option<&Row>| match r.and_then(|r| r.value) {
                Some(v) => format_value(v, "MB/s"),
                None => "-".to_string(),
            };
            let ratio = |r: Option<&Row>| {
                r.and_then(|r| r.ratio_vs_openssh)
                    .map_or("-".to_string(), |x| format!("{x:.2}x"))
            };
            let echo = up
                .or(down)
                .and_then(|r| r.detail.get("echo_rtt_ms"))
                .and_then(serde_json::Value::as_f64)
                .map_or("-".to_string(), |ms| format!("{ms:.1}"));
            let ratios = if up
                .or(down)
                .is_some_and(|r| r.implementation == Implementation::Wraith)
            {
                format!("{}, {}", ratio(up), ratio(down))
            } else {
                String::new()
            };
            let mut note = ratios;
            if let Some(serde_json::Value::String(n)) =
                up.or(down).and_then(|r| r.detail.get("note"))
            {
                note.push_str("  ");
                note.push_str(n);
            }
            let _ = writeln!(
                out,
                "  {:<label_width$}{:>10} {:>10}   {:>9}   {}",
                label,
                cell(up),
                cell(down),
                echo,
                note.trim_start()
            );
            for r in [up, down].into_iter().flatten() {
                if let Some(e) = &r.error {
                    let dir = r
                        .detail
                        .get("direction")
                        .and_then(|d| d.as_str())
                        .unwrap_or("");
                    errors.push(format!("{label} {dir}: {}", truncate(e, 110)));
                }
            }
        }
        for e in errors {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_string()
    } else {
        format!("{}…", line.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind, cipher: &str) -> TunnelSpec {
        TunnelSpec {
            kind,
            cipher: Some(cipher.to_string()),
        }
    }

    fn row(kind: Kind, cipher: &str, value: f64) -> Row {
        let s = spec(kind, cipher);
        Row::new(
            &s,
            s.cipher.clone(),
            "bulk_upload",
            "bulk upload",
            "MB/s",
            Better::Higher,
        )
        .value(Some(value), vec![value])
    }

    #[test]
    fn ratio_compares_same_mode_and_cipher_only() {
        let aes = "aes128-gcm@openssh.com";
        let chacha = "chacha20-poly1305@openssh.com";
        let mut rows = vec![
            row(Kind::OpensshSocks5, aes, 800.0),
            row(Kind::OpensshSocks5, chacha, 400.0),
            row(Kind::OpensshForward, aes, 1000.0),
            row(Kind::WraithSocks5, aes, 400.0),
            row(Kind::WraithForward, chacha, 400.0),
        ];
        add_ratios(&mut rows);
        assert_eq!(rows[3].ratio_vs_openssh, Some(0.5));
        assert_eq!(rows[4].ratio_vs_openssh, None, "no ssh -L chacha row");
        assert!(rows[..3].iter().all(|r| r.ratio_vs_openssh.is_none()));
        assert_eq!(format_ratio(&rows[3]), "0.50x (worse)");
    }

    #[test]
    fn interleaved_runs_give_a_ratio_per_round_and_a_spread() {
        let aes = "aes128-gcm@openssh.com";
        let mut ssh = row(Kind::OpensshSocks5, aes, 500.0);
        ssh.samples = vec![400.0, 500.0, 600.0];
        let mut w = row(Kind::WraithSocks5, aes, 550.0);
        w.samples = vec![600.0, 550.0, 540.0];
        let mut rows = vec![ssh, w];
        add_ratios(&mut rows);
        assert_eq!(rows[1].ratio_per_round, [1.5, 1.1, 0.9]);
        assert_eq!(spread(&rows[1]), "540–600");
        let text = format_ratio(&rows[1]);
        assert!(text.contains("per round 0.90–1.50, median 1.10"), "{text}");
    }

    #[test]
    fn lower_is_better_figures_flip_the_verdict() {
        let mut r = row(Kind::WraithSocks5, "aes128-gcm@openssh.com", 1.0);
        r.better = Better::Lower;
        r.ratio_vs_openssh = Some(0.5);
        assert_eq!(format_ratio(&r), "0.50x (better)");
        r.ratio_vs_openssh = Some(1.02);
        assert_eq!(format_ratio(&r), "1.02x (on par)");
    }

    fn longpath_row(kind: Kind, dir: &str, rtt: u64, value: Option<f64>) -> Row {
        let s = spec(kind, "aes128-gcm@openssh.com");
        let r = Row::new(
            &s,
            s.cipher.clone(),
            format!("longpath_{dir}_{rtt}ms"),
            format!("long path {dir}, RTT {rtt} ms (delay line): 1 stream for 8 s"),
            "MB/s",
            Better::Higher,
        )
        .detail("rtt_ms", rtt)
        .detail("direction", dir)
        .detail("echo_rtt_ms", rtt as f64 + 0.4);
        match value {
            Some(v) => r.value(Some(v), vec![v]),
            None => r.error(&anyhow::anyhow!("cannot start wraith serve")),
        }
    }

    #[test]
    fn longpath_rows_print_one_block_per_rtt_with_both_directions_and_ratios() {
        let mut rows = Vec::new();
        for rtt in [0, 50] {
            for dir in ["upload", "download"] {
                rows.push(longpath_row(Kind::OpensshSocks5, dir, rtt, Some(40.0)));
                rows.push(longpath_row(Kind::WraithSocks5, dir, rtt, Some(20.0)));
                rows.push(longpath_row(Kind::WraithIrohSocks5, dir, rtt, None));
            }
        }
        add_ratios(&mut rows);
        let t = table(&rows);
        assert_eq!(t.matches("long path, RTT").count(), 2, "{t}");
        assert!(t.contains("long path, RTT 50 ms (delay line)"), "{t}");
        let wraith = t
            .lines()
            .find(|l| l.trim_start().starts_with("wraith socks5"))
            .unwrap();
        assert!(
            wraith.contains("20.0") && wraith.contains("0.50x, 0.50x"),
            "{wraith}"
        );
        assert!(wraith.contains("0.4"), "echo column missing: {wraith}");
        assert!(
            t.contains("error: wraith iroh socks5 aes128-gcm upload: cannot start wraith serve"),
            "{t}"
        );
        assert!(
            !t.contains("long path upload"),
            "no per-direction groups: {t}"
        );
    }

    #[test]
    fn table_shows_errors_instead_of_values() {
        let s = spec(Kind::WraithSocks5, "aes128-gcm@openssh.com");
        let r = Row::new(&s, None, "latency_p50", "latency p50", "ms", Better::Lower)
            .error(&anyhow::anyhow!("cannot start wraith serve"));
        let t = table(&[r]);
        assert!(t.contains("error: cannot start wraith serve"), "{t}");
    }
}
