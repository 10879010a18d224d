//! End to end: how `wraith connect` treats the server's host key against
//! known_hosts files written by OpenSSH's tools, with a real `wraith serve`
//! and a real `sshd` that has no Ed25519 host key.
//!
//! These tests need `ssh-keygen`, and `/usr/sbin/sshd` for the OpenSSH one;
//! outside CI they are skipped when a tool is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `ssh-keygen -t <kind>`: a key pair at `<dir>/<name>`.
fn ssh_keygen_type(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
        .arg(&path);
    expect_success(&run(cmd, TIMEOUT), "ssh-keygen");
    path
}

/// Runs `wraith connect` to `server` with extra arguments and environment,
/// expects it to fail with exit code 1 before any session, and returns its
/// stderr.
fn connect_fails(
    server: &str,
    identity: &Path,
    user: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> String {
    let mut args = vec![
        "connect",
        "--server",
        server,
        "--identity",
        identity.to_str().expect("utf-8 temp path"),
        "--user",
        user,
        "--socks5",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let client = WraithProcess::spawn_env(&args, envs);
    let status = client.wait_exit(TIMEOUT);
    assert_eq!(
        status.code(),
        Some(1),
        "{}",
        client.failure("expected exit code 1")
    );
    assert!(
        !client.stdout_text().contains("socks5 listening on"),
        "{}",
        client.failure("it reported a working session")
    );
    let stderr = client.stderr_text();
    for bad in ["panicked", "stack backtrace"] {
        assert!(!stderr.contains(bad), "stderr shows a panic:\n{stderr}");
    }
    stderr
}

#[test]
fn known_host_listed_with_another_key_type_is_a_changed_key_and_not_rewritten() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&client_key]);
    let addr = server.addr.to_string();
    let user = current_user();
    // The host as OpenSSH would have recorded it had it once presented an
    // ECDSA key; the wraith server now presents Ed25519.
    let ecdsa = ssh_keygen_type(dir.path(), "old_ecdsa_host_key", "ecdsa");
    let listed = format!(
        "[{}]:{} {}\n",
        server.addr.ip(),
        server.addr.port(),
        public_key_line(&ecdsa)
    );

    // --known-hosts: the file is only read.
    let file = dir.path().join("known_hosts");
    std::fs::write(&file, &listed).expect("write known_hosts");
    let stderr = connect_fails(
        &addr,
        &client_key,
        &user,
        &["--known-hosts", file.to_str().expect("utf-8 temp path")],
        &[],
    );
    assert!(stderr.contains("HOST KEY HAS CHANGED"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), listed);

    // Trust on first use in the default store: the same line there must
    // fail the same way, not be taken for an unknown host and learned.
    let data = dir.path().join("data");
    let store = data.join("wraith").join("known_hosts");
    std::fs::create_dir_all(store.parent().expect("parent")).expect("mkdir");
    std::fs::write(&store, &listed).expect("write store");
    let data_arg = data.to_str().expect("utf-8 temp path");
    let stderr = connect_fails(
        &addr,
        &client_key,
        &user,
        &[],
        &[("XDG_DATA_HOME", data_arg)],
    );
    assert!(stderr.contains("HOST KEY HAS CHANGED"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&store).expect("read store"),
        listed,
        "the store was written to"
    );

    // The same store, once the line is gone, learns the key: the failure
    // above was the changed key, nothing else.
    std::fs::write(&store, "").expect("empty store");
    let client = WraithClient::ready(WraithProcess::spawn_env(
        &[
            "connect",
            "--server",
            &addr,
            "--identity",
            client_key.to_str().expect("utf-8 temp path"),
            "--user",
            &user,
            "--socks5",
            "127.0.0.1:0",
        ],
        &[("XDG_DATA_HOME", data_arg)],
    ));
    drop(client);
    let learned = std::fs::read_to_string(&store).expect("read store");
    assert!(
        learned.contains(&public_key_line(&server.host_key)),
        "{learned:?}"
    );
}

#[test]
fn revoked_host_key_in_an_ssh_keygen_hashed_file_is_refused() {
    if !require_tools(&["ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let server = WraithServer::start(dir.path(), &[&client_key]);
    let addr = server.addr.to_string();
    let host_line = public_key_line(&server.host_key);
    // A file that lists the key for the host, hashed by ssh-keygen -H, and
    // revokes it for every host.
    let file = dir.path().join("known_hosts");
    std::fs::write(
        &file,
        format!(
            "[{}]:{} {host_line}\n",
            server.addr.ip(),
            server.addr.port()
        ),
    )
    .expect("write known_hosts");
    let mut hash = Command::new("ssh-keygen");
    hash.arg("-H").arg("-f").arg(&file);
    expect_success(&run(hash, TIMEOUT), "ssh-keygen -H");
    let hashed = std::fs::read_to_string(&file).expect("read");
    assert!(hashed.starts_with("|1|"), "ssh-keygen -H wrote {hashed:?}");
    let file_arg = file.to_str().expect("utf-8 temp path");
    // Hashed alone: accepted.
    let user = current_user();
    let client = WraithClient::ready(WraithProcess::spawn(&[
        "connect",
        "--server",
        &addr,
        "--identity",
        client_key.to_str().expect("utf-8 temp path"),
        "--user",
        &user,
        "--known-hosts",
        file_arg,
        "--socks5",
        "127.0.0.1:0",
    ]));
    drop(client);
    std::fs::write(&file, format!("{hashed}@revoked * {host_line}\n")).expect("write");
    let stderr = connect_fails(&addr, &client_key, &user, &["--known-hosts", file_arg], &[]);
    assert!(stderr.contains("@revoked"), "{stderr}");
}

/// A stock sshd with only RSA and ECDSA host keys: the client offers only
/// Ed25519, so the key exchange fails before any key is shown, and nothing
/// is learned.
#[test]
fn server_without_an_ed25519_host_key_is_refused_and_nothing_learned() {
    if !require_tools(&["ssh-keygen", SSHD]) {
        return;
    }
    let _ = std::fs::create_dir_all("/run/sshd");
    let dir = temp_dir();
    let client_key = ssh_keygen(dir.path(), "client");
    let rsa = ssh_keygen_type(dir.path(), "ssh_host_rsa_key", "rsa");
    let ecdsa = ssh_keygen_type(dir.path(), "ssh_host_ecdsa_key", "ecdsa");
    let authorized = dir.path().join("authorized_keys");
    write_authorized_keys(&authorized, &[&client_key]);
    let port = free_port();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {}\nHostKey {}\n\
             AuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile none\n",
            rsa.display(),
            ecdsa.display(),
            authorized.display()
        ),
    )
    .expect("write sshd_config");
    let mut cmd = Command::new(SSHD);
    cmd.arg("-D").arg("-e").arg("-f").arg(&config);
    let sshd = WraithProcess::spawn_command(cmd);
    sshd.wait_for_stderr(
        &[&format!("Server listening on 127.0.0.1 port {port}")],
        TIMEOUT,
    );

    let data = dir.path().join("data");
    let store = data.join("wraith").join("known_hosts");
    let stderr = connect_fails(
        &format!("127.0.0.1:{port}"),
        &client_key,
        &current_user(),
        &[],
        &[("XDG_DATA_HOME", data.to_str().expect("utf-8 temp path"))],
    );
    assert!(!stderr.trim().is_empty());
    assert!(!store.exists(), "a host key was learned: {stderr}");
}
