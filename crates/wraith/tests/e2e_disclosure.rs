//! End to end: what wraith tells strangers and what it warns its own user
//! about. The server's SSH identification line (`--ssh-banner`, no version
//! by default) read raw and through OpenSSH's `ssh -v`; the warning for a
//! private key file that other users can read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::*;

/// The first line the server sends, CR LF included (at most 512 bytes;
/// RFC 4253 allows 255).
fn identification_line(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") && line.len() < 512 {
        match s.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[test]
fn the_default_ssh_banner_names_no_version() {
    let dir = temp_dir();
    let client = keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&client]);
    let line = identification_line(server.addr);
    assert_eq!(line, "SSH-2.0-wraith\r\n");
    assert!(!line.contains(env!("CARGO_PKG_VERSION")), "{line:?}");
}

#[test]
fn ssh_banner_sets_the_identification_line() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let client = ssh_keygen(dir.path(), "client");
    let server = WraithServer::start_with(
        dir.path(),
        &[&client],
        &["--ssh-banner", "Example_1.0 a comment"],
        &[],
    );
    assert_eq!(
        identification_line(server.addr),
        "SSH-2.0-Example_1.0 a comment\r\n"
    );
    // OpenSSH reads it, and the session works as before.
    let echo = echo_target();
    let ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, &client);
    let out = run_with_input(
        ssh.command(&["-v", "-W", &format!("127.0.0.1:{}", echo.port())], &[]),
        b"ping",
        TIMEOUT,
    );
    let stdout = expect_success(&out, "ssh -W through a server with --ssh-banner");
    assert_eq!(stdout, "ping");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remote software version Example_1.0 a comment"),
        "{stderr}"
    );
}

#[test]
fn invalid_ssh_banners_are_usage_errors() {
    let dir = temp_dir();
    let host = keygen(dir.path(), "host");
    let ak = dir.path().join("authorized_keys");
    std::fs::write(&ak, "").unwrap();
    let too_long = "v".repeat(250);
    for bad in [
        "a\r\nb",
        "evil\nSSH-2.0-other",
        "has-minus",
        " leading-space",
        "comment with\ttab",
        "non_ascii_é",
        too_long.as_str(),
    ] {
        let out = run(
            wraith_command(&[
                "serve",
                "--key",
                host.to_str().unwrap(),
                "--authorized-keys",
                ak.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--ssh-banner",
                bad,
            ]),
            TIMEOUT,
        );
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--ssh-banner"), "{bad:?}: {stderr}");
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_private_key_file_others_can_read_is_warned_about() {
    let dir = temp_dir();
    let open_key = keygen(dir.path(), "open");
    let tight_key = keygen(dir.path(), "tight");
    chmod(&open_key, 0o644);
    let server = WraithServer::start(dir.path(), &[&open_key, &tight_key]);
    // The host key from `wraith keygen` is 0600: no warning.
    assert!(
        !server.process.stderr_text().contains("UNPROTECTED"),
        "{}",
        server.process.stderr_text()
    );

    // Warned, and still used (OpenSSH refuses such a key; wraith warns).
    let client = WraithClient::start(server.addr, &open_key, &server.host_pub_arg(), &[]);
    let warning = client
        .process
        .wait_for_stderr(&["UNPROTECTED PRIVATE KEY FILE"], TIMEOUT);
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(warning.contains("0644"), "{warning}");
    assert!(warning.contains("--identity"), "{warning}");
    assert!(
        warning.contains(&format!("chmod 600 {}", open_key.display())),
        "{warning}"
    );

    let client = WraithClient::start(server.addr, &tight_key, &server.host_pub_arg(), &[]);
    assert!(
        !client.process.stderr_text().contains("UNPROTECTED"),
        "{}",
        client.process.stderr_text()
    );

    // The same check for the server's host key.
    let host = keygen(dir.path(), "loose_host");
    chmod(&host, 0o640);
    let ak = dir.path().join("ak2");
    write_authorized_keys(&ak, &[&tight_key]);
    let loose = WraithProcess::spawn(&[
        "serve",
        "--key",
        host.to_str().unwrap(),
        "--authorized-keys",
        ak.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    loose.wait_for_line("listening on ", TIMEOUT);
    let warning = loose.wait_for_stderr(&["UNPROTECTED PRIVATE KEY FILE", "--key"], TIMEOUT);
    assert!(warning.contains("0640"), "{warning}");
}
