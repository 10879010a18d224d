//! The programs the bench drives and the throwaway keys they use. Nothing
//! here may touch the user's own SSH setup: every key, config and known-hosts
//! file lives in a temporary directory, and variables that would change how
//! wraith or ssh behave are removed from their environment.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::Command;

/// Bound for one-shot commands (key generation, `--version`).
const ONE_SHOT: Duration = Duration::from_secs(20);

/// Paths of the programs under test. The OpenSSH ones are `None` when not
/// installed; their tunnels then produce error rows.
pub(crate) struct Tools {
    pub(crate) wraith: PathBuf,
    pub(crate) ssh: Option<PathBuf>,
    pub(crate) sshd: Option<PathBuf>,
    pub(crate) ssh_keygen: Option<PathBuf>,
    /// Makes the TLS rows' CA and certificate.
    pub(crate) openssl: Option<PathBuf>,
    /// `valgrind` and `callgrind_control`, for the instruction counts.
    pub(crate) valgrind: Option<PathBuf>,
    pub(crate) callgrind_control: Option<PathBuf>,
    /// iproute2's `ip`, for the iroh client's network namespace on a long path.
    pub(crate) ip: Option<PathBuf>,
    /// The NATS broker, for the event hub across servers.
    pub(crate) nats_server: Option<PathBuf>,
    /// Node.js, for the addon's figure.
    pub(crate) node: Option<PathBuf>,
}

impl Tools {
    pub(crate) fn find(wraith: PathBuf) -> Result<Self> {
        if !wraith.is_file() {
            bail!(
                "no wraith binary at {} (--wraith): build it with `cargo build --release -p wraith`, \
                 or pass --wraith <path>",
                wraith.display()
            );
        }
        Ok(Self {
            wraith,
            ssh: find_in_path("ssh"),
            // sshd re-executes itself and insists on an absolute path.
            sshd: Some(PathBuf::from("/usr/sbin/sshd"))
                .filter(|p| p.is_file())
                .or_else(|| find_in_path("sshd")),
            ssh_keygen: find_in_path("ssh-keygen"),
            openssl: find_in_path("openssl"),
            valgrind: find_in_path("valgrind"),
            callgrind_control: find_in_path("callgrind_control"),
            ip: find_in_path("ip"),
            nats_server: find_in_path("nats-server"),
            node: find_in_path("node"),
        })
    }

    /// A tool a figure cannot go without: its path, or an error that says
    /// how to get it.
    pub(crate) fn need(tool: &Option<PathBuf>, missing: &str) -> Result<PathBuf> {
        tool.clone().ok_or_else(|| anyhow!("{missing}"))
    }

    pub(crate) fn openssh_missing(&self) -> Option<String> {
        let missing: Vec<&str> = [
            ("ssh", &self.ssh),
            ("sshd", &self.sshd),
            ("ssh-keygen", &self.ssh_keygen),
        ]
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(n, _)| *n)
        .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "OpenSSH not installed ({} missing; e.g. apt-get install openssh-server openssh-client)",
                missing.join(", ")
            )
        })
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A command with the variables removed that would change what the bench
/// spelled out. `WRAITH_CIPHERS` is kept: it is how a user asks wraith for
/// another cipher, and the bench reads back what was negotiated anyway.
pub(crate) fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let lower = key.to_ascii_lowercase();
        if (key.starts_with("WRAITH_") && key != "WRAITH_CIPHERS")
            || key == "RUST_LOG"
            || key == "SSH_AUTH_SOCK"
            || lower.ends_with("_proxy")
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Runs a short command to completion and returns stdout + stderr.
pub(crate) async fn run_once(mut cmd: Command, what: &str) -> Result<String> {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(ONE_SHOT, cmd.output())
        .await
        .map_err(|_| anyhow!("{what} did not finish within {ONE_SHOT:?}"))?
        .with_context(|| format!("cannot run {what}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, text.trim());
    }
    Ok(text)
}

/// Keys for one bench run, in a temporary directory removed on drop.
pub(crate) struct Keys {
    pub(crate) dir: tempfile::TempDir,
    /// wraith server host key (from `wraith keygen`; `.pub` beside it).
    pub(crate) wraith_host: PathBuf,
    /// wraith client identity.
    pub(crate) wraith_client: PathBuf,
    /// authorized_keys holding the wraith client's key.
    pub(crate) wraith_authorized: PathBuf,
    /// OpenSSH keys (from `ssh-keygen`), or why they could not be made.
    pub(crate) openssh: Result<OpensshKeys, String>,
    /// The TLS rows' CA and server certificate, or why they could not be made.
    pub(crate) tls: Result<TlsCerts, String>,
}

/// A throwaway CA and a certificate for `localhost` and 127.0.0.1 it signed
/// (P-256, made with the openssl CLI).
pub(crate) struct TlsCerts {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

pub(crate) struct OpensshKeys {
    pub(crate) host: PathBuf,
    pub(crate) client: PathBuf,
    pub(crate) authorized: PathBuf,
}

impl Keys {
    pub(crate) async fn generate(tools: &Tools) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("wraith-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let wraith_host = dir.path().join("wraith_host_key");
        let wraith_client = dir.path().join("wraith_client_key");
        for key in [&wraith_host, &wraith_client] {
            let mut cmd = command(&tools.wraith);
            cmd.arg("-q").arg("keygen").arg("-f").arg(key);
            run_once(cmd, "wraith keygen").await?;
        }
        let wraith_authorized = dir.path().join("wraith_authorized_keys");
        copy_pub(&wraith_client, &wraith_authorized)?;
        let openssh = match (tools.openssh_missing(), &tools.ssh_keygen) {
            (None, Some(keygen)) => openssh_keys(keygen, dir.path())
                .await
                .map_err(|e| format!("{e:#}")),
            (missing, _) => Err(missing.unwrap_or_else(|| "ssh-keygen not found".into())),
        };
        let tls = match &tools.openssl {
            Some(openssl) => tls_certs(openssl, dir.path())
                .await
                .map_err(|e| format!("{e:#}")),
            None => Err("openssl not found (it makes the TLS rows' certificate)".into()),
        };
        Ok(Self {
            dir,
            wraith_host,
            wraith_client,
            wraith_authorized,
            openssh,
            tls,
        })
    }
}

async fn tls_certs(openssl: &Path, dir: &Path) -> Result<TlsCerts> {
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca = dir.join("tls_ca.pem");
    let ca_key = dir.join("tls_ca.key");
    let cert = dir.join("tls_cert.pem");
    let key = dir.join("tls_key.pem");
    let csr = dir.join("tls_leaf.csr");
    let ext = dir.join("tls_ext.cnf");
    let mut cmd = command(openssl);
    cmd.args(["req", "-x509"])
        .args(p256)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca)
        .args(["-days", "2", "-subj", "/CN=wraith-bench CA"]);
    run_once(cmd, "openssl req (CA)").await?;
    let mut cmd = command(openssl);
    cmd.arg("req")
        .args(p256)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=localhost"]);
    run_once(cmd, "openssl req (leaf)").await?;
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .with_context(|| format!("cannot write {}", ext.display()))?;
    let mut cmd = command(openssl);
    cmd.args(["x509", "-req", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-CAcreateserial")
        .arg("-out")
        .arg(&cert)
        .args(["-days", "2", "-extfile"])
        .arg(&ext);
    run_once(cmd, "openssl x509 (sign leaf)").await?;
    Ok(TlsCerts { ca, cert, key })
}

async fn openssh_keys(keygen: &Path, dir: &Path) -> Result<OpensshKeys> {
    let host = dir.join("ssh_host_ed25519_key");
    let client = dir.join("ssh_client_ed25519_key");
    for key in [&host, &client] {
        let mut cmd = command(keygen);
        cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", "wraith-bench", "-f"])
            .arg(key);
        run_once(cmd, "ssh-keygen").await?;
    }
    let authorized = dir.join("ssh_authorized_keys");
    copy_pub(&client, &authorized)?;
    Ok(OpensshKeys {
        host,
        client,
        authorized,
    })
}

/// `<key>.pub`.
pub(crate) fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn copy_pub(key: &Path, authorized: &Path) -> Result<()> {
    let public = pub_path(key);
    std::fs::copy(&public, authorized).with_context(|| {
        format!(
            "cannot copy {} to {}",
            public.display(),
            authorized.display()
        )
    })?;
    Ok(())
}

/// A port on 127.0.0.1 that was free a moment ago, for programs that cannot
/// be told to pick one and report it (sshd, `ssh -D`, `ssh -L`).
pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// A UDP port on 127.0.0.1 that was free a moment ago, for an iroh server
/// whose socket address the bench must know (it prints only its ticket).
pub(crate) fn free_udp_port() -> Result<u16> {
    let s = UdpSocket::bind("127.0.0.1:0").context("cannot find a free UDP port on 127.0.0.1")?;
    Ok(s.local_addr()?.port())
}

/// Parses the `IP:PORT` that ends a readiness line.
pub(crate) fn addr_at_end(line: &str) -> Result<SocketAddr> {
    let last = line.split_whitespace().last().unwrap_or_default();
    let last = last.split_once("://").map_or(last, |(_, rest)| rest);
    last.parse()
        .with_context(|| format!("no address at the end of {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lines_yield_their_address() {
        assert_eq!(
            addr_at_end("listening on tcp://127.0.0.1:4022").unwrap(),
            "127.0.0.1:4022".parse().unwrap()
        );
        assert_eq!(
            addr_at_end("listening on tls://127.0.0.1:4443").unwrap(),
            "127.0.0.1:4443".parse().unwrap()
        );
        assert_eq!(
            addr_at_end("socks5 listening on 127.0.0.1:1080").unwrap(),
            "127.0.0.1:1080".parse().unwrap()
        );
        assert!(addr_at_end("connected to example").is_err());
    }

    #[test]
    fn pub_path_appends_suffix() {
        assert_eq!(pub_path(Path::new("/t/k")), PathBuf::from("/t/k.pub"));
    }
}
