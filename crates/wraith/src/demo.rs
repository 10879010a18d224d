//! `wraith demo`: a server, a client and a small test page, all in this
//! process on loopback, with throwaway keys. It prints the curl command to
//! try and the real commands to run on two machines.

use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::sync::Arc;

use anyhow::{Context, Result};
use wraith_core::client::{Client, ConnectOptions, HostKeyPolicy};
use wraith_core::keys::{self, HostKeyPin};
use wraith_core::server::{AuthorizedKeys, ServeOptions, Server};
use wraith_core::transport::{TcpAcceptor, TcpTransport};

const PAGE: &str = "hello from the far side of the wraith tunnel\n";

pub(crate) async fn run(socks5: &str) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let host_key = keys::generate_ed25519("demo-host")?;
    let user_key = keys::generate_ed25519("demo-user")?;
    let host_fp = keys::fingerprint(host_key.public_key());
    let user_key_path = dir.path().join("id_demo");
    keys::write_key_pair(&user_key, &user_key_path, true)?;

    let authorized = AuthorizedKeys::from_keys([user_key.public_key().clone()]);
    let acceptor = TcpAcceptor::bind("127.0.0.1:0").await?;
    let server_addr = acceptor.local_addr();
    let server = Server::new(ServeOptions::new(host_key.clone(), authorized));
    let server_task =
        tokio::spawn(async move { server.run(acceptor, std::future::pending()).await });

    let page = start_page()?;

    let transport = Arc::new(TcpTransport::new(
        server_addr.ip().to_string(),
        server_addr.port(),
    ));
    let mut opts = ConnectOptions::new(
        transport.clone(),
        server_addr.ip().to_string(),
        server_addr.port(),
        "demo",
        user_key.clone(),
    );
    opts.host_key = HostKeyPolicy::Pin(HostKeyPin::Fingerprint(host_fp.clone()));
    opts.socks5 = Some(socks5.to_string());
    let client = match Client::connect(opts).await {
        Ok(c) => c,
        Err(wraith_core::Error::Bind { .. }) => {
            // The default port is taken: use a free one rather than fail.
            let mut opts = ConnectOptions::new(
                transport,
                server_addr.ip().to_string(),
                server_addr.port(),
                "demo",
                user_key,
            );
            opts.host_key = HostKeyPolicy::Pin(HostKeyPin::Fingerprint(host_fp.clone()));
            opts.socks5 = Some("127.0.0.1:0".into());
            Client::connect(opts).await?
        }
        Err(e) => return Err(e.into()),
    };
    let socks = client
        .socks5_addr
        .context("the demo's SOCKS5 listener did not start")?;

    out!("wraith demo: a server and a client are running in this process.");
    out!("");
    out!("  server      tcp://{server_addr}  (host key {host_fp})");
    out!("  socks5      {socks}");
    out!("  test page   http://localhost:{page}/  (served on the server side)");
    out!("");
    out!("Try it (in another terminal):");
    out!("  curl --socks5-hostname {socks} http://localhost:{page}/");
    out!("  curl --socks5-hostname {socks} https://example.com/   # any site the server can reach");
    out!("");
    out!("The same tunnel between two machines:");
    out!("  server$ wraith keygen -f host_key");
    out!("  server$ wraith keygen -f client_key   # or use the client's own ~/.ssh/id_ed25519.pub");
    out!("  server$ cp client_key.pub authorized_keys");
    out!(
        "  server$ wraith serve --key host_key --authorized-keys authorized_keys --listen 0.0.0.0:2222"
    );
    out!(
        "  client$ wraith connect --server SERVER:2222 --identity client_key --host-key <the server's SHA256:... fingerprint>"
    );
    out!("");
    out!("Press Ctrl-C to stop.");
    let _ = std::io::stdout().flush();

    tokio::select! {
        err = client.wait() => Err(err.into()),
        r = server_task => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(anyhow::anyhow!("server task failed: {e}")),
        },
        _ = crate::signals::shutdown_signal() => {
            drop(dir);
            Ok(())
        }
    }
}

/// A tiny HTTP page on loopback, on a thread: it answers every request with
/// [`PAGE`] and closes.
fn start_page() -> Result<u16> {
    let listener = StdListener::bind("127.0.0.1:0").context("cannot start the demo page")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 65536 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = conn.write_all(resp.as_bytes());
            });
        }
    });
    Ok(port)
}
