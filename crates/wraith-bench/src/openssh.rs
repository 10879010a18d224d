//! A throwaway OpenSSH server and `ssh -D` / `ssh -L` clients, the
//! baseline wraith is measured against. The server has its own config, host
//! key and authorized_keys in the bench's temporary directory and listens on
//! 127.0.0.1 only; the client reads no user configuration (`-F /dev/null`)
//! and uses only the bench's key. The cipher is forced with `-c` so each
//! row compares like with like.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::process::{Launcher, Proc};
use crate::tools::{Keys, OpensshKeys, Tools, free_port};
use wraith_core::profile::local_user;

/// Bound for sshd to listen and for ssh to open its forwarding ports.
const READY: Duration = Duration::from_secs(20);

/// The AEAD ciphers wraith offers, all of which OpenSSH supports.
pub(crate) const CIPHERS: [&str; 3] = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
];

/// sshd_config for the bench: key-only login for the current user (root
/// included), forwarding allowed, enough sessions and unauthenticated
/// connections for the idle figure, and all three ciphers.
fn sshd_config(port: u16, keys: &OpensshKeys) -> String {
    format!(
        "ListenAddress 127.0.0.1:{port}\n\
         HostKey {host}\n\
         AuthorizedKeysFile {authorized}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         AllowTcpForwarding yes\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         PidFile none\n\
         MaxSessions 100\n\
         MaxStartups 100:30:200\n\
         Ciphers {ciphers}\n\
         LogLevel INFO\n",
        host = keys.host.display(),
        authorized = keys.authorized.display(),
        ciphers = CIPHERS.join(","),
    )
}

/// Starts `sshd -D -e` on a free port; retries if the port was taken
/// between choosing and binding it.
pub(crate) async fn start_sshd(
    tools: &Tools,
    keys: &Keys,
    launcher: &Launcher,
) -> Result<(Proc, SocketAddr)> {
    let ok = keys.openssh.as_ref().map_err(|e| anyhow!("{e}"))?;
    let sshd = &Tools::need(&tools.sshd, "sshd not found")?;
    // As root, sshd refuses to start without its privilege-separation
    // directory; as another user it does not need it.
    let _ = std::fs::create_dir_all("/run/sshd");
    let mut last = anyhow!("sshd did not start");
    for attempt in 0..3 {
        let port = free_port()?;
        let config = keys.dir.path().join(format!("sshd_config_{port}"));
        std::fs::write(&config, sshd_config(port, ok))
            .with_context(|| format!("cannot write {}", config.display()))?;
        // sshd never runs under a profiler: its pre-auth child sandboxes
        // itself with setrlimit(RLIMIT_NOFILE, 0) and seccomp, which valgrind
        // refuses ("ssh_sandbox_child: setrlimit ... Operation not
        // permitted"), so no session could start.
        let _ = launcher;
        let mut cmd = Launcher::Plain.command(sshd, "sshd", false);
        cmd.arg("-D").arg("-e").arg("-f").arg(&config);
        let mut proc = Proc::spawn("sshd", cmd)?;
        let listening = format!("Server listening on 127.0.0.1 port {port}");
        match proc.stderr_line(&listening, READY).await {
            Ok(_) => return Ok((proc, SocketAddr::from(([127, 0, 0, 1], port)))),
            Err(e) => {
                let retry = e.to_string().contains("Address already in use") && attempt < 2;
                proc.stop().await;
                last = e;
                if !retry {
                    break;
                }
            }
        }
    }
    Err(last)
}

/// What the `ssh` client is asked to listen on.
pub(crate) enum Listen {
    /// `-D`: a SOCKS proxy.
    Socks,
    /// `-L`: one local forward per target.
    Forwards(Vec<SocketAddr>),
}

/// Starts `ssh -N` with `-D` or `-L` and waits until every local port
/// accepts connections (ssh opens them only after authentication).
/// Returns the listening addresses, in the order of the targets for `-L`.
pub(crate) async fn start_client(
    tools: &Tools,
    keys: &Keys,
    server: SocketAddr,
    cipher: &str,
    listen: &Listen,
    launcher: &Launcher,
) -> Result<(Proc, Vec<SocketAddr>)> {
    let ok = keys.openssh.as_ref().map_err(|e| anyhow!("{e}"))?;
    let ssh = tools.ssh.as_ref().ok_or_else(|| anyhow!("ssh not found"))?;
    let mut cmd = launcher.command(ssh, "ssh", false);
    cmd.args(["-F", "/dev/null", "-N"])
        .args(["-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "IdentitiesOnly=yes"])
        .args(["-o", "ExitOnForwardFailure=yes"])
        .args(["-o", "Compression=no"])
        .args(["-o", "LogLevel=ERROR"])
        .arg("-i")
        .arg(&ok.client)
        .args(["-c", cipher])
        .args(["-p", &server.port().to_string()]);
    let mut local = Vec::new();
    match listen {
        Listen::Socks => {
            let port = free_port()?;
            cmd.arg("-D").arg(format!("127.0.0.1:{port}"));
            local.push(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        Listen::Forwards(targets) => {
            for t in targets {
                let port = free_port()?;
                cmd.arg("-L")
                    .arg(format!("127.0.0.1:{port}:{}:{}", t.ip(), t.port()));
                local.push(SocketAddr::from(([127, 0, 0, 1], port)));
            }
        }
    }
    cmd.arg(format!("{}@{}", local_user(), server.ip()));
    let flag = if matches!(listen, Listen::Socks) {
        "-D"
    } else {
        "-L"
    };
    let mut proc = Proc::spawn(&format!("ssh {flag} ({cipher})"), cmd)?;
    let ready = READY * launcher.slowdown();
    let deadline = Instant::now() + ready;
    for addr in &local {
        wait_accepting(&mut proc, *addr, deadline, ready).await?;
    }
    Ok((proc, local))
}

/// Polls until `addr` accepts a connection, failing early if `proc` exits.
async fn wait_accepting(
    proc: &mut Proc,
    addr: SocketAddr,
    deadline: Instant,
    ready: Duration,
) -> Result<()> {
    loop {
        if proc.has_exited() {
            bail!(
                "{} exited before listening on {addr}{}",
                proc.label(),
                proc.stderr_excerpt()
            );
        }
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on {addr} within {ready:?}{}",
                proc.label(),
                proc.stderr_excerpt()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `ssh -V` (it prints to stderr).
pub(crate) async fn version(tools: &Tools) -> Option<String> {
    let mut cmd = crate::tools::command(tools.ssh.as_ref()?);
    cmd.arg("-V");
    crate::tools::run_once(cmd, "ssh -V")
        .await
        .ok()
        .map(|s| s.trim().to_string())
}
