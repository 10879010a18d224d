//! Smoke test: runs the real `wraith-bench` binary in a tiny `--quick` mode
//! against the debug `wraith` binary and real OpenSSH, and checks that the
//! JSON it writes has a row for every tunnel that moved bytes both ways. It
//! never asserts a speed: figures from a debug build on a busy CI machine
//! mean nothing, and a benchmark must not be a timed pass/fail test.
//!
//! The `wraith` binary is not a dependency (a binary cannot be one). A
//! workspace test run (`cargo test --workspace`) builds it anyway, because
//! the `wraith` crate is a member with integration tests; it lands next to
//! this crate's binary. If it is missing (e.g. `cargo test -p wraith-bench`
//! on a clean tree) the test is skipped, or fails under `CI=true`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

const TUNNELS: [&str; 6] = [
    "direct",
    "openssh-socks5",
    "openssh-forward",
    "wraith-socks5",
    "wraith-forward",
    "wraith-tls-socks5",
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

#[test]
fn quick_run_measures_every_tunnel() {
    let wraith = wraith_binary();
    let present = require(
        &format!(
            "the wraith binary at {} (build it with `cargo build -p wraith`)",
            wraith.display()
        ),
        wraith.is_file(),
    ) && require("OpenSSH `ssh`", on_path("ssh"))
        && require("OpenSSH `sshd`", on_path("sshd"))
        && require("`ssh-keygen`", on_path("ssh-keygen"))
        && require("`openssl` (the TLS rows' certificate)", on_path("openssl"));
    if !present {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("results.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wraith-bench"))
        .args(["--quick", "--bulk-size", "2MiB", "--latency-samples", "5"])
        .args(["--idle", "20", "--ciphers", "aes128-gcm,chacha20-poly1305"])
        .arg("--wraith")
        .arg(&wraith)
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
