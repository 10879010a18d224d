//! End to end: OpenSSH user certificates made with `ssh-keygen -s`, against
//! `wraith serve --cert-authority` and `cert-authority` lines, with the real
//! OpenSSH client. Every refusal must leave a log line saying why — and no
//! destination.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Sign `key`'s public half with `ca`; extra ssh-keygen flags in `opts`.
fn sign(ca: &Path, key: &Path, principal: &str, opts: &[&str]) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args([
        "-q",
        "-s",
        ca.to_str().unwrap(),
        "-I",
        "test-cert",
        "-n",
        principal,
    ]);
    cmd.args(opts);
    cmd.arg(pub_path(key));
    let out = run(cmd, TIMEOUT);
    expect_success(&out, "ssh-keygen -s");
}

fn cert_path(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}-cert.pub", key.display()))
}

/// `ssh -W` to an echo target with `key` (and its certificate, which ssh
/// loads from `<key>-cert.pub`); returns (success, stderr).
fn tunnel(dir: &Path, server: &WraithServer, key: &Path, echo_port: u16) -> (bool, String) {
    let ssh = OpenSsh::new(dir, server.addr, &server.host_key, key);
    let cmd = ssh.command(&["-W", &format!("127.0.0.1:{echo_port}")], &[]);
    let out = run_with_input(cmd, b"ping", TIMEOUT);
    let ok = out.status.success() && out.stdout == b"ping";
    (ok, String::from_utf8_lossy(&out.stderr).into_owned())
}

struct Ca {
    dir: tempfile::TempDir,
    ca: PathBuf,
    server: WraithServer,
    echo: Target,
}

fn with_ca() -> Option<Ca> {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return None;
    }
    let dir = temp_dir();
    let ca = ssh_keygen(dir.path(), "ca");
    let ca_pub = pub_path(&ca);
    let server = WraithServer::start_with(
        dir.path(),
        &[],
        &["--cert-authority", ca_pub.to_str().unwrap()],
        &[],
    );
    Some(Ca {
        dir,
        ca,
        server,
        echo: echo_target(),
    })
}

impl Ca {
    fn new_key(&self, name: &str) -> PathBuf {
        ssh_keygen(self.dir.path(), &unique(name))
    }

    fn attempt(&self, key: &Path) -> (bool, String) {
        tunnel(self.dir.path(), &self.server, key, self.echo.port())
    }

    /// Wait for a reject line with `reason` in the server log.
    fn expect_reject(&self, reason: &str) {
        self.server
            .process
            .wait_for_stderr(&["auth attempt", "result=reject", reason], TIMEOUT);
    }
}

#[test]
fn valid_certificate_is_accepted_and_tunnels() {
    let Some(t) = with_ca() else { return };
    let key = t.new_key("alice");
    sign(&t.ca, &key, &current_user(), &[]);
    let (ok, err) = t.attempt(&key);
    assert!(ok, "a valid certificate must work: {err}");
    t.server
        .process
        .wait_for_stderr(&["auth attempt", "result=accept"], TIMEOUT);
}

#[test]
fn expired_and_not_yet_valid_certificates_are_rejected() {
    let Some(t) = with_ca() else { return };
    let old = t.new_key("old");
    sign(&t.ca, &old, &current_user(), &["-V", "20200101:20200102"]);
    let (ok, _) = t.attempt(&old);
    assert!(!ok, "an expired certificate must not log in");
    let future = t.new_key("future");
    sign(&t.ca, &future, &current_user(), &["-V", "+52w:+53w"]);
    let (ok, _) = t.attempt(&future);
    assert!(!ok, "a not-yet-valid certificate must not log in");
    // russh refuses these before our handler sees them; its own warning
    // says why.
    t.server
        .process
        .wait_for_stderr(&["expired or not yet valid"], TIMEOUT);
}

#[test]
fn certificate_from_untrusted_ca_is_rejected() {
    let Some(t) = with_ca() else { return };
    let rogue = ssh_keygen(t.dir.path(), "rogue-ca");
    let key = t.new_key("mallory");
    sign(&rogue, &key, &current_user(), &[]);
    let (ok, _) = t.attempt(&key);
    assert!(!ok);
    t.expect_reject("untrusted CA");
}

/// `wraith connect` with `key` and its certificate; returns the exit status
/// (None while still running after a successful start) and stderr.
fn wraith_connect(t: &Ca, key: &Path) -> (bool, String) {
    let server = t.server.addr.to_string();
    let cert = cert_path(key);
    let user = current_user();
    let client = WraithProcess::spawn(&[
        "connect",
        "--server",
        &server,
        "--identity",
        key.to_str().unwrap(),
        "--certificate",
        cert.to_str().unwrap(),
        "--host-key",
        &t.server.host_pub_arg(),
        "--user",
        &user,
        "--socks5",
        "127.0.0.1:0",
    ]);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if client.stdout_text().contains("socks5 listening on") {
            return (true, client.stderr_text());
        }
        if client.try_status().is_some() {
            return (false, client.stderr_text());
        }
        assert!(std::time::Instant::now() < deadline, "wraith connect hung");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn wraith_client_presents_its_certificate() {
    let Some(t) = with_ca() else { return };
    let key = t.new_key("carol");
    sign(&t.ca, &key, &current_user(), &[]);
    let (ok, err) = wraith_connect(&t, &key);
    assert!(ok, "{err}");
    t.server
        .process
        .wait_for_stderr(&["auth attempt", "result=accept"], TIMEOUT);
}

#[test]
fn host_certificate_is_not_a_user_certificate() {
    let Some(t) = with_ca() else { return };
    // OpenSSH's client will not offer a host certificate for user auth, so
    // wraith's client presents it.
    let key = t.new_key("hostish");
    sign(&t.ca, &key, &current_user(), &["-h"]);
    let (ok, err) = wraith_connect(&t, &key);
    assert!(!ok, "a host certificate must not log in");
    assert!(err.contains("did not accept"), "{err}");
    t.expect_reject("host certificate");
}

#[test]
fn principal_mismatch_is_rejected() {
    let Some(t) = with_ca() else { return };
    let key = t.new_key("bob");
    sign(&t.ca, &key, "somebody-else", &[]);
    let (ok, _) = t.attempt(&key);
    assert!(!ok);
    t.expect_reject("principal");
}

#[test]
fn source_address_excluding_the_peer_is_rejected() {
    let Some(t) = with_ca() else { return };
    let key = t.new_key("remote-only");
    sign(
        &t.ca,
        &key,
        &current_user(),
        &["-O", "source-address=10.0.0.0/8"],
    );
    let (ok, _) = t.attempt(&key);
    assert!(!ok);
    t.expect_reject("source-address");
    // Including the peer works.
    let key = t.new_key("local-ok");
    sign(
        &t.ca,
        &key,
        &current_user(),
        &["-O", "source-address=127.0.0.0/8,10.0.0.0/8"],
    );
    let (ok, err) = t.attempt(&key);
    assert!(ok, "{err}");
}

#[test]
fn certificate_without_port_forwarding_logs_in_but_cannot_tunnel() {
    let Some(t) = with_ca() else { return };
    let key = t.new_key("noforward");
    // -O clear removes every extension, permit-port-forwarding included.
    sign(&t.ca, &key, &current_user(), &["-O", "clear"]);
    let (ok, err) = t.attempt(&key);
    assert!(!ok, "the tunnel must be refused");
    assert!(
        !err.contains("Permission denied"),
        "login itself must succeed: {err}"
    );
    t.server
        .process
        .wait_for_stderr(&["auth attempt", "result=accept"], TIMEOUT);
    t.server
        .process
        .wait_for_stderr(&["channel refused", "not permitted"], TIMEOUT);
}

#[test]
fn unknown_critical_option_is_rejected() {
    let Some(t) = with_ca() else { return };
    let key = t.new_key("critical");
    sign(
        &t.ca,
        &key,
        &current_user(),
        &["-O", "critical:made-up@example.com=1"],
    );
    let (ok, _) = t.attempt(&key);
    assert!(!ok);
    t.expect_reject("unknown critical option");
}

#[test]
fn cert_authority_line_with_principals_option() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let (ca, ak) = ca_for_tunnel_users(dir.path());
    let server = serve_with_authorized_keys(dir.path(), &ak, &[]);
    let echo = echo_target();
    let user = current_user();
    // The login name is a principal, and so is one the line lists.
    let good = ssh_keygen(dir.path(), "member");
    sign(&ca, &good, &format!("{user},tunnel-users"), &[]);
    let (ok, err) = tunnel(dir.path(), &server, &good, echo.port());
    assert!(ok, "{err}");
    // Listed by the line, but the login name is not on the certificate.
    let group_only = ssh_keygen(dir.path(), "group-only");
    sign(&ca, &group_only, "tunnel-users", &[]);
    let (ok, _) = tunnel(dir.path(), &server, &group_only, echo.port());
    assert!(
        !ok,
        "the login name must be one of the certificate's principals"
    );
    server.process.wait_for_stderr(
        &[
            "result=reject",
            "no certificate principal matches the login name",
        ],
        TIMEOUT,
    );
    // The login name, but no principal the line lists.
    let outsider = ssh_keygen(dir.path(), "outsider");
    sign(&ca, &outsider, &user, &[]);
    let (ok, _) = tunnel(dir.path(), &server, &outsider, echo.port());
    assert!(
        !ok,
        "principals= must still narrow the certificates accepted"
    );
    server
        .process
        .wait_for_stderr(&["result=reject", "principals="], TIMEOUT);
    // The CA key itself is not a login key.
    let (ok, _) = tunnel(dir.path(), &server, &ca, echo.port());
    assert!(!ok, "a CA key must not log in as a plain key");
}

#[test]
fn certificate_cannot_log_in_as_a_name_it_does_not_carry() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let (ca, ak) = ca_for_tunnel_users(dir.path());
    let server = serve_with_authorized_keys(dir.path(), &ak, &[]);
    let echo = echo_target();
    let key = ssh_keygen(dir.path(), "alice");
    sign(&ca, &key, &format!("{},tunnel-users", current_user()), &[]);
    // The same certificate, naming another login: refused.
    let mut ssh = OpenSsh::new(dir.path(), server.addr, &server.host_key, &key);
    ssh.user = "root-or-anyone".into();
    let cmd = ssh.command(&["-W", &format!("127.0.0.1:{}", echo.port())], &[]);
    let out = run_with_input(cmd, b"ping", TIMEOUT);
    assert!(
        !out.status.success(),
        "a certificate logged in as a user it does not name"
    );
    server
        .process
        .wait_for_stderr(&["user=root-or-anyone", "result=reject"], TIMEOUT);
    let (ok, err) = tunnel(dir.path(), &server, &key, echo.port());
    assert!(ok, "as its own principal: {err}");
}

#[test]
fn cert_authority_file_lines_carry_principals() {
    if !require_tools(&["ssh", "ssh-keygen"]) {
        return;
    }
    let dir = temp_dir();
    let ca = ssh_keygen(dir.path(), "ca");
    let ca_file = dir.path().join("trusted_cas");
    std::fs::write(
        &ca_file,
        format!("principals=\"tunnel-users\" {}\n", public_key_line(&ca)),
    )
    .unwrap();
    let ak = dir.path().join("authorized_keys");
    std::fs::write(&ak, "").unwrap();
    let server = serve_with_authorized_keys(
        dir.path(),
        &ak,
        &["--cert-authority", ca_file.to_str().unwrap()],
    );
    let echo = echo_target();
    let user = current_user();
    let member = ssh_keygen(dir.path(), "member");
    sign(&ca, &member, &format!("{user},tunnel-users"), &[]);
    let (ok, err) = tunnel(dir.path(), &server, &member, echo.port());
    assert!(ok, "{err}");
    let outsider = ssh_keygen(dir.path(), "outsider");
    sign(&ca, &outsider, &user, &[]);
    let (ok, _) = tunnel(dir.path(), &server, &outsider, echo.port());
    assert!(!ok, "principals= in a --cert-authority file must apply");
}

/// `wraith serve` with `ak` and `extra` flags, once it listens.
/// A CA key and an authorized_keys file trusting it for certificates that
/// carry the principal `tunnel-users`.
fn ca_for_tunnel_users(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = ssh_keygen(dir, "ca");
    let ak = dir.join("authorized_keys");
    std::fs::write(
        &ak,
        format!(
            "cert-authority,principals=\"tunnel-users\" {}\n",
            public_key_line(&ca)
        ),
    )
    .unwrap();
    (ca, ak)
}

fn serve_with_authorized_keys(dir: &Path, ak: &Path, extra: &[&str]) -> WraithServer {
    let host = keygen(dir, "host");
    let mut args = vec![
        "serve",
        "--key",
        host.to_str().unwrap(),
        "--authorized-keys",
        ak.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let process = WraithProcess::spawn(&args);
    let addr = addr_after(
        &process.wait_for_line("listening on ", TIMEOUT),
        "listening on ",
    );
    WraithServer {
        process,
        addr,
        host_key: host,
        authorized_keys: ak.to_path_buf(),
    }
}
