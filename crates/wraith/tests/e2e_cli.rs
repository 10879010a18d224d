//! End to end: the commands a newcomer types first — `wraith demo` and the
//! curl line it prints, `wraith keygen` — and the CLI's error behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn demo_prints_a_curl_command_that_works() {
    if !require_tool("curl") {
        return;
    }
    let demo = WraithProcess::spawn(&["demo", "--socks5", "127.0.0.1:0"]);
    let line = demo.wait_for_line("  curl --socks5-hostname", TIMEOUT);
    // Run exactly what the demo printed, word for word.
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "curl", "{line}");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-q", "--noproxy", "", "--max-time", "20"])
        .args(&words[1..]);
    let out = run(cmd, TIMEOUT);
    let body = expect_success(&out, "the demo's curl command");
    assert!(
        body.contains("hello from the far side of the wraith tunnel"),
        "unexpected body: {body}"
    );
    // The demo also shows the two-machine commands.
    let text = demo.stdout_text();
    assert!(text.contains("wraith serve --key"), "{text}");
    assert!(text.contains("wraith connect --server"), "{text}");
}

#[test]
fn demo_falls_back_to_a_free_port_when_the_socks_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let demo = WraithProcess::spawn(&["demo", "--socks5", &addr]);
    let line = demo.wait_for_line("  socks5", TIMEOUT);
    assert!(
        !line.contains(&addr),
        "the taken port must not be reused: {line}"
    );
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let dir = temp_dir();
    let key = dir.path().join("k");
    let k = key.to_str().unwrap();
    let first = run(wraith_command(&["keygen", "-f", k]), TIMEOUT);
    expect_success(&first, "first keygen");
    let before = std::fs::read(&key).unwrap();
    let second = run(wraith_command(&["keygen", "-f", k]), TIMEOUT);
    assert_eq!(second.status.code(), Some(1), "{}", show(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key must be untouched"
    );
    let third = run(wraith_command(&["keygen", "-f", k, "--force"]), TIMEOUT);
    expect_success(&third, "keygen --force");
    assert_ne!(std::fs::read(&key).unwrap(), before);
    // OpenSSH agrees the result is a valid key pair.
    if require_tool("ssh-keygen") {
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-y", "-f", k]);
        let out = run(cmd, TIMEOUT);
        let derived = expect_success(&out, "ssh-keygen -y");
        let public = std::fs::read_to_string(pub_path(&key)).unwrap();
        let field = |s: &str| s.split_whitespace().nth(1).unwrap_or("").to_string();
        assert_eq!(field(&derived), field(&public));
    }
}

#[test]
fn startup_errors_are_one_line_with_exit_code() {
    let dir = temp_dir();
    let missing = dir.path().join("missing");
    let m = missing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["serve", "--key", m, "--authorized-keys", m],
            1,
            "--key",
        ),
        (
            vec!["connect", "--server", "127.0.0.1:1", "--identity", m],
            1,
            "--identity",
        ),
        (
            vec![
                "connect",
                "--server",
                "127.0.0.1:1",
                "--forward",
                "nonsense",
            ],
            2,
            "--forward",
        ),
        (vec!["connect", "--server", "host:notaport"], 2, "--server"),
        (vec!["bogus-subcommand"], 2, "bogus-subcommand"),
    ];
    for (args, code, needle) in cases {
        let out = run(wraith_command(&args), TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("stack backtrace"), "{args:?}: {err}");
        if code == 1 {
            assert_eq!(
                err.trim().lines().count(),
                1,
                "{args:?}: one line expected: {err}"
            );
        }
    }
}

/// clap writes "invalid value 'V' for '--flag <X>': reason"; the reason
/// must not say flag and value again.
#[test]
fn bad_values_name_the_flag_and_the_value_once() {
    let dir = temp_dir();
    let key = keygen(dir.path(), "k");
    let k = key.to_str().unwrap();
    let serve = |flag: &'static str, value: &'static str| {
        (
            vec!["serve", "--key", k, "--authorized-keys", k, flag, value],
            flag,
            value,
        )
    };
    let connect = |flag: &'static str, value: &'static str| {
        (
            vec!["connect", "--server", "127.0.0.1:1", flag, value],
            flag,
            value,
        )
    };
    let cases = [
        connect("--forward", "qx7"),
        connect("--forward", "1:2:qx7:99999"),
        connect("--remote-forward", "qx7"),
        connect("--keepalive-interval", "qx7"),
        serve("--ssh-banner", "qx7-1"),
        serve("--per-source-net-block-size", "qx7"),
        serve("--allow-stream-local", "qx7"),
        serve("--allow-stream-local", "/qx7/../x"),
        serve("--acme-ip", "qx7"),
    ];
    for (args, flag, value) in cases {
        expect_usage_error(&args, flag, value);
    }
}

/// Exit 2 and one `error:` line that names `flag` and `value` once each.
fn expect_usage_error(args: &[&str], flag: &str, value: &str) {
    let out = run(wraith_command(args), TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{args:?}: {err}");
    assert_eq!(first.matches(flag).count(), 1, "{flag} said twice: {first}");
    assert_eq!(
        first.matches(value).count(),
        1,
        "{value:?} said twice: {first}"
    );
}

/// Values that parse as strings for clap and are checked afterwards (an
/// address, a URL, a pin) are usage errors too: exit 2, flag named once.
#[test]
fn values_checked_after_parsing_are_usage_errors_too() {
    let dir = temp_dir();
    let key = keygen(dir.path(), "k");
    let k = key.to_str().unwrap();
    let pub_key = format!("{k}.pub");
    let serve = |flag: &'static str, value: &'static str| {
        let mut args = vec!["serve", "--key", k, "--authorized-keys", &pub_key];
        if flag != "--listen" {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend([flag, value]);
        (
            args.into_iter().map(String::from).collect::<Vec<_>>(),
            flag,
            value,
        )
    };
    let connect = |flag: &'static str, value: &'static str| {
        let mut args = vec!["connect", "--identity", k];
        if flag != "--socks5" {
            args.push("--no-socks5");
        }
        if flag != "--server" && flag != "--peer" {
            args.extend(["--server", "127.0.0.1:1"]);
        }
        if flag == "--tls-pin" {
            args.extend(["--transport", "tls"]);
        }
        if flag == "--peer" {
            args.extend(["--transport", "iroh"]);
        }
        args.extend([flag, value]);
        (
            args.into_iter().map(String::from).collect::<Vec<_>>(),
            flag,
            value,
        )
    };
    let cases = [
        connect("--server", "127.0.0.1:99999"),
        connect("--socks5", "qx7"),
        connect("--proxy", "ftp://qx7:1"),
        connect("--tls-pin", "qx7"),
        connect("--stdio", "qx7"),
        connect("--peer", "qx7"),
        connect("--host-key", "qx7"),
        serve("--listen", "qx7"),
        serve("--metrics", "qx7"),
        serve("--hub", "http://qx7"),
    ];
    for (args, flag, value) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_usage_error(&args, flag, value);
    }
}

#[test]
fn serve_port_in_use_is_a_clear_error() {
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let ak = dir.path().join("ak");
    std::fs::write(&ak, "").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(
        wraith_command(&[
            "serve",
            "--key",
            host.to_str().unwrap(),
            "--authorized-keys",
            ak.to_str().unwrap(),
            "--listen",
            &addr,
        ]),
        TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--listen") && err.contains(&addr), "{err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");
}

#[test]
fn version_help_completions_and_man_page() {
    let out = run(wraith_command(&["--version"]), TIMEOUT);
    let v = expect_success(&out, "--version");
    assert!(v.starts_with("wraith "), "{v}");
    let out = run(wraith_command(&["--help"]), TIMEOUT);
    let h = expect_success(&out, "--help");
    assert!(h.contains("Examples:") && h.contains("wraith demo"), "{h}");
    let out = run(wraith_command(&["completions", "bash"]), TIMEOUT);
    assert!(expect_success(&out, "completions").contains("wraith"));
    let out = run(wraith_command(&["man"]), TIMEOUT);
    assert!(expect_success(&out, "man").contains(".TH"));
}
