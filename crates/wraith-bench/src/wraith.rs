//! Starts `wraith serve` and `wraith connect` exactly as a user would, and
//! reads back the cipher the client negotiated. wraith has no flag to force
//! a cipher; russh logs the negotiated algorithms at debug level under the
//! `russh::client::kex` target, which is enabled for that one target only
//! (the server caps russh logging at info, so the client is where to look).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::netns::ClientNetns;
use crate::process::{Launcher, Proc};
use crate::tools::{Keys, Tools, addr_at_end, pub_path};

/// Bound for a wraith process to print that it is ready.
const READY: Duration = Duration::from_secs(20);

/// What a wraith tunnel runs SSH over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WraithTransport {
    /// Plain TCP (the default).
    Tcp,
    /// SSH inside TLS: the server gets the bench CA's leaf certificate, the
    /// client trusts that CA (`--tls-ca`), so the full TLS path runs,
    /// certificate verification included.
    Tls,
    /// SSH over an iroh QUIC stream, both endpoints on 127.0.0.1 with
    /// relays disabled: `start_server` returns the printed ticket as the
    /// server address and `start_client` passes it as `--peer` (or
    /// `ID@IP:PORT` to dial the endpoint at a delay line instead).
    Iroh,
    /// SSH in binary WebSocket messages over TCP, on [`WS_PATH`].
    Ws,
    /// The same inside TLS, with the bench CA's certificate as for `Tls`.
    Wss,
}

impl WraithTransport {
    /// TLS inside (tls, wss): the server needs the bench CA's certificate,
    /// the client trusts that CA.
    fn has_tls(self) -> bool {
        matches!(self, WraithTransport::Tls | WraithTransport::Wss)
    }

    /// The arguments both sides take for this transport: `--transport`
    /// (none for tcp), the WebSocket path, iroh with relays disabled.
    fn add_args(self, cmd: &mut tokio::process::Command) {
        let name = match self {
            WraithTransport::Tcp => return,
            WraithTransport::Tls => "tls",
            WraithTransport::Iroh => "iroh",
            WraithTransport::Ws => "ws",
            WraithTransport::Wss => "wss",
        };
        cmd.args(["--transport", name]);
        match self {
            WraithTransport::Ws | WraithTransport::Wss => {
                cmd.args(["--ws-path", WS_PATH]);
            }
            WraithTransport::Iroh => {
                cmd.args(["--iroh-relay", "disabled"]);
            }
            WraithTransport::Tcp | WraithTransport::Tls => {}
        }
    }
}

/// The WebSocket path the ws and wss tunnels use.
const WS_PATH: &str = "/bench-0123456789abcdef";

/// Logs nothing but errors and the key exchange result (printed once per
/// key exchange, so it costs nothing during a transfer).
const CLIENT_LOG: &str = "warn,russh::client::kex=debug";

/// A started `wraith serve`: how a client names it, and where its socket is.
pub(crate) struct Server {
    /// What `wraith connect` is given: `--server IP:PORT`, or the ticket
    /// for `--peer` (iroh).
    pub(crate) connect: String,
    /// The server's socket (TCP; UDP for iroh), for a delay line to point
    /// at. `None` for iroh on a port it chose itself.
    pub(crate) socket: Option<SocketAddr>,
    /// The iroh endpoint id (iroh only).
    pub(crate) endpoint_id: Option<String>,
}

/// Starts `wraith serve` on `listen` (port 0: a free port; for iroh the
/// UDP socket, which it does not print, so give a port to learn it);
/// returns it and how to reach it.
pub(crate) async fn start_server(
    tools: &Tools,
    keys: &Keys,
    transport: WraithTransport,
    listen: SocketAddr,
    launcher: &Launcher,
) -> Result<(Proc, Server)> {
    let mut cmd = launcher.command(&tools.wraith, "wraith-serve", false);
    cmd.arg("-q")
        .arg("serve")
        .arg("--key")
        .arg(&keys.wraith_host)
        .arg("--authorized-keys")
        .arg(&keys.wraith_authorized)
        .arg("--listen")
        .arg(listen.to_string());
    transport.add_args(&mut cmd);
    if transport.has_tls() {
        let tls = keys.tls.as_ref().map_err(|e| anyhow!("{e}"))?;
        cmd.arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key);
    }
    let mut server = Proc::spawn("wraith serve", cmd)?;
    let ready = READY * launcher.slowdown();
    if transport == WraithTransport::Iroh {
        let ticket = server.stdout_lines("ticket: ", 1, ready).await?;
        let id = server.stdout_lines("endpoint: ", 1, ready).await?;
        let known = (listen.port() != 0).then_some(listen);
        return Ok((
            server,
            Server {
                connect: ticket[0].trim().to_string(),
                socket: known,
                endpoint_id: Some(id[0].trim().to_string()),
            },
        ));
    }
    let line = server.stdout_lines("listening on ", 1, ready).await?;
    let addr = addr_at_end(&line[0])?;
    Ok((
        server,
        Server {
            connect: addr.to_string(),
            socket: Some(addr),
            endpoint_id: None,
        },
    ))
}

/// What a started client listens on.
pub(crate) struct ClientListeners {
    pub(crate) socks5: Option<SocketAddr>,
    /// (local listener, target) per `--forward`.
    pub(crate) forwards: Vec<(SocketAddr, SocketAddr)>,
    /// The negotiated cipher, if the client logged it.
    pub(crate) cipher: Option<String>,
}

/// Starts `wraith connect` with SOCKS5 on a free port, or with one
/// `--forward 0:<target>` per target and SOCKS5 off; inside `netns` if
/// given (SOCKS5 then listens on the namespace's end of its link).
pub(crate) async fn start_client(
    tools: &Tools,
    keys: &Keys,
    transport: WraithTransport,
    server: &str,
    forward_to: &[SocketAddr],
    launcher: &Launcher,
    netns: Option<&ClientNetns>,
) -> Result<(Proc, ClientListeners)> {
    let ready = READY * launcher.slowdown();
    let mut cmd = match netns {
        None => launcher.command(&tools.wraith, "wraith-connect", false),
        Some(ns) => {
            let mut cmd = launcher.command(ns.ip_tool(), "wraith-connect", false);
            cmd.args(["netns", "exec", ns.name()]).arg(&tools.wraith);
            cmd
        }
    };
    cmd.env("RUST_LOG", CLIENT_LOG).arg("-q").arg("connect");
    transport.add_args(&mut cmd);
    let server_flag = if transport == WraithTransport::Iroh {
        "--peer"
    } else {
        "--server"
    };
    cmd.arg(server_flag)
        .arg(server)
        .arg("--identity")
        .arg(&keys.wraith_client)
        .arg("--host-key")
        .arg(pub_path(&keys.wraith_host));
    if transport.has_tls() {
        let tls = keys.tls.as_ref().map_err(|e| anyhow!("{e}"))?;
        cmd.args(["--tls-server-name", "localhost"])
            .arg("--tls-ca")
            .arg(&tls.ca);
    }
    if forward_to.is_empty() {
        let ip = netns.map_or(std::net::Ipv4Addr::LOCALHOST, ClientNetns::ns_ip);
        cmd.arg("--socks5").arg(format!("{ip}:0"));
    } else {
        cmd.arg("--no-socks5");
        for t in forward_to {
            cmd.arg("--forward")
                .arg(format!("0:{}:{}", t.ip(), t.port()));
        }
    }
    let mut client = Proc::spawn("wraith connect", cmd)?;
    client.stdout_lines("connected to ", 1, ready).await?;
    let mut listeners = ClientListeners {
        socks5: None,
        forwards: Vec::new(),
        cipher: None,
    };
    if forward_to.is_empty() {
        let line = client
            .stdout_lines("socks5 listening on ", 1, ready)
            .await?;
        listeners.socks5 = Some(addr_at_end(&line[0])?);
    } else {
        let lines = client
            .stdout_lines("forward listening on ", forward_to.len(), ready)
            .await?;
        for line in lines {
            listeners.forwards.push(parse_forward(&line)?);
        }
    }
    // The key exchange has finished before "connected to" is printed, so
    // the line is there already if it is logged at all.
    if let Ok(line) = client
        .stderr_line(
            "negotiated algorithms",
            Duration::from_secs(2) * launcher.slowdown(),
        )
        .await
    {
        listeners.cipher = cipher_from_log(&line);
    }
    Ok((client, listeners))
}

/// `127.0.0.1:41000 -> 127.0.0.1:9` (the rest of a "forward listening on"
/// line) into (listener, target).
fn parse_forward(rest: &str) -> Result<(SocketAddr, SocketAddr)> {
    let Some((local, target)) = rest.split_once(" -> ") else {
        bail!("unexpected forward line from wraith: {rest:?}");
    };
    let local = local.trim().parse().context("forward listener address")?;
    let target = target.trim().parse().context("forward target address")?;
    Ok((local, target))
}

/// The cipher in russh's `negotiated algorithms: Names { .., cipher:
/// Name("aes128-gcm@openssh.com"), .. }` line.
pub(crate) fn cipher_from_log(line: &str) -> Option<String> {
    let after = &line[line.find("cipher: Name(\"")? + "cipher: Name(\"".len()..];
    Some(after[..after.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiated_cipher_is_read_from_the_russh_debug_line() {
        let line = r#"2026-11-24T02:30:38Z DEBUG negotiated algorithms: Names { kex: Name("mlkem768x25519-sha256"), key: Ed25519, cipher: Name("aes128-gcm@openssh.com"), client_mac: Name("hmac-sha2-256-etm@openssh.com") }"#;
        assert_eq!(
            cipher_from_log(line).as_deref(),
            Some("aes128-gcm@openssh.com")
        );
        assert_eq!(cipher_from_log("DEBUG something else"), None);
    }

    #[test]
    fn forward_line_gives_listener_and_target() {
        let (l, t) = parse_forward("127.0.0.1:44627 -> 127.0.0.1:9").unwrap();
        assert_eq!(l, "127.0.0.1:44627".parse().unwrap());
        assert_eq!(t, "127.0.0.1:9".parse().unwrap());
        assert!(parse_forward("127.0.0.1:1").is_err());
    }
}
