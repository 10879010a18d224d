//! Smoke test: runs the real `wraith-bench` binary in a tiny `--quick` mode
//! against the debug `wraith` binary and real OpenSSH, and checks that the
//! JSON it writes has a row for every tunnel that moved bytes both ways;
//! then a short long-path run at 20 ms, checking that every tunnel moved
//! bytes through the delay lines and that the delay was really on the path
//! (an echo through each tunnel took at least the RTT). It never asserts a
//! speed: figures from a debug build on a busy CI machine mean nothing, and
//! a benchmark must not be a timed pass/fail test.
//!
//! The `wraith` binary is not a dependency (a binary cannot be one). A
//! workspace test run (`cargo test --workspace`) builds it anyway, because
//! the `wraith` crate is a member with integration tests; it lands next to
//! this crate's binary. If it is missing (e.g. `cargo test -p wraith-bench`
//! on a clean tree) the test is skipped, or fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

const TUNNELS: [&str; 8] = [
    "direct",
    "openssh-socks5",
    "openssh-forward",
    "wraith-socks5",
    "wraith-forward",
    "wraith-tls-socks5",
    "wraith-ws-socks5",
    "wraith-wss-socks5",
];

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// Skips (returns false) or, under CI, fails when something is missing.
fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("{what} is missing; CI must provide it (see .ci/run)");
    }
    eprintln!("skipping the bench smoke test: {what} is missing (with CI=true this is a failure)");
    false
}

fn wraith_binary() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_wraith-bench"));
    let sibling = bench.with_file_name("wraith");
    if sibling.is_file() {
        return sibling;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/wraith")
}

fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .any(|d| d.join(name).is_file())
}

/// Whether the wraith binary and the tools the bench needs are here
/// (skips, or fails under CI, when not).
fn tools_present(wraith: &Path) -> bool {
    require(
        &format!(
            "the wraith binary at {} (build it with `cargo build -p wraith`)",
            wraith.display()
        ),
        wraith.is_file(),
    ) && require("OpenSSH `ssh`", on_path("ssh"))
        && require("OpenSSH `sshd`", on_path("sshd"))
        && require("`ssh-keygen`", on_path("ssh-keygen"))
        && require("`openssl` (the TLS rows' certificate)", on_path("openssl"))
        && require(
            "`nats-server` (the event hub across servers)",
            on_path("nats-server"),
        )
}

/// Runs wraith-bench with `args` (plus `--wraith` and `--json`), bounded by
/// [`TIMEOUT`]; returns the JSON it wrote and its output for messages.
fn run_bench(wraith: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("results.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wraith-bench"))
        .args(args)
        .arg("--wraith")
        .arg(wraith)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wraith-bench");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let shown = format!("--- stdout ---\n{out}\n--- stderr ---\n{err}");
    let status = status.unwrap_or_else(|| panic!("wraith-bench ran over {TIMEOUT:?}\n{shown}"));
    assert!(status.success(), "wraith-bench failed: {status}\n{shown}");
    let text = std::fs::read_to_string(&json).expect("the JSON file was written");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the JSON parses");
    (doc, shown)
}

#[test]
fn quick_run_measures_every_tunnel() {
    let wraith = wraith_binary();
    if !tools_present(&wraith) {
        return;
    }
    let (doc, shown) = run_bench(
        &wraith,
        &[
            "--quick",
            "--bulk-size",
            "2MiB",
            "--latency-samples",
            "5",
            "--idle",
            "20",
            "--ciphers",
            "aes128-gcm,chacha20-poly1305",
        ],
    );
    let rows = doc["rows"].as_array().expect("rows is an array");
    for tunnel in TUNNELS {
        for figure in ["bulk_upload", "bulk_download"] {
            let moved = rows.iter().any(|r| {
                r["tunnel"] == tunnel
                    && r["figure"] == figure
                    && r["error"].is_null()
                    && r["value"].as_f64().is_some_and(|v| v > 0.0)
            });
            assert!(
                moved,
                "no {figure} row with bytes moved for {tunnel}\n{shown}"
            );
        }
    }
    // UDP: no tunnel, and wraith's SOCKS5 UDP ASSOCIATE and udpgw.
    for (tunnel, path) in [
        ("direct", "direct"),
        ("wraith-socks5", "socks5-udp"),
        ("wraith-socks5", "udpgw"),
    ] {
        for figure in ["udp_rtt_p50", "udp_throughput"] {
            let figure = format!("{figure}_{path}");
            let row = rows
                .iter()
                .find(|r| r["tunnel"] == tunnel && r["figure"] == figure.as_str())
                .unwrap_or_else(|| panic!("no {figure} row for {tunnel}\n{shown}"));
            assert!(
                row["error"].is_null() && row["value"].as_f64().is_some_and(|v| v > 0.0),
                "{figure} for {tunnel}: {row}\n{shown}"
            );
        }
    }
    // The event hub: in-process and across two servers through NATS.
    for tunnel in ["wraith-hub-in-process", "wraith-hub-nats"] {
        for figure in ["hub_event_p50", "hub_event_p99"] {
            let row = rows
                .iter()
                .find(|r| r["tunnel"] == tunnel && r["figure"] == figure)
                .unwrap_or_else(|| panic!("no {figure} row for {tunnel}\n{shown}"));
            assert!(
                row["error"].is_null() && row["value"].as_f64().is_some_and(|v| v > 0.0),
                "{figure} for {tunnel}: {row}\n{shown}"
            );
        }
    }
    let wraith_cipher = doc["wraith_cipher"]["name"].as_str().unwrap_or_default();
    assert!(
        wraith_cipher.ends_with("@openssh.com"),
        "no wraith cipher reported: {:?}",
        doc["wraith_cipher"]
    );
    assert!(
        rows.iter()
            .any(|r| r["tunnel"] == "wraith-socks5" && r["ratio_vs_openssh"].is_f64()),
        "wraith rows carry no ratio against OpenSSH\n{shown}"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2).map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

/// Every tunnel of the long-path figure.
const LONGPATH_TUNNELS: [&str; 6] = [
    "direct",
    "openssh-socks5",
    "wraith-socks5",
    "wraith-tls-socks5",
    "wraith-wss-socks5",
    "wraith-iroh-socks5",
];

#[test]
fn quick_longpath_run_moves_bytes_through_a_real_delay() {
    const RTT_MS: f64 = 20.0;
    let wraith = wraith_binary();
    if !tools_present(&wraith) {
        return;
    }
    let (doc, shown) = run_bench(
        &wraith,
        &[
            "--quick",
            "--only",
            "longpath",
            "--rtt",
            "20",
            "--longpath-time",
            "1",
            "--ciphers",
            "aes128-gcm",
        ],
    );
    let rows = doc["rows"].as_array().expect("rows is an array");
    // The iroh row runs its client in a network namespace (so hole
    // punching cannot go around the delay line), which needs root and `ip`.
    let netns = is_root() && on_path("ip");
    if !netns {
        let why = "the iroh long-path row needs root and iproute2's `ip` (a network namespace)";
        assert!(!in_ci(), "{why}; CI must provide them (see .ci/run)");
        eprintln!("not checking the iroh long-path row: {why}");
    }
    for tunnel in LONGPATH_TUNNELS
        .into_iter()
        .filter(|t| netns || *t != "wraith-iroh-socks5")
    {
        for figure in ["longpath_upload_20ms", "longpath_download_20ms"] {
            let row = rows
                .iter()
                .find(|r| r["tunnel"] == tunnel && r["figure"] == figure)
                .unwrap_or_else(|| panic!("no {figure} row for {tunnel}\n{shown}"));
            assert!(
                row["error"].is_null() && row["value"].as_f64().is_some_and(|v| v > 0.0),
                "{figure} for {tunnel} moved nothing: {row}\n{shown}"
            );
            // The delay is on the path only if a 1-byte echo through the
            // tunnel takes at least the RTT.
            let echo = row["detail"]["echo_rtt_ms"].as_f64();
            assert!(
                echo.is_some_and(|ms| ms >= RTT_MS),
                "{tunnel}: echo through the delay line took {echo:?} ms, under {RTT_MS} ms\n{shown}"
            );
        }
    }
    assert!(
        rows.iter().any(|r| r["tunnel"] == "wraith-socks5"
            && r["figure"] == "longpath_upload_20ms"
            && r["ratio_vs_openssh"].is_f64()),
        "long-path wraith rows carry no ratio against ssh -D\n{shown}"
    );
    assert_eq!(doc["settings"]["longpath_rtts_ms"], serde_json::json!([20]));
}
