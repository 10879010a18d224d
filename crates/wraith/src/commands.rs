//! The subcommands: each maps its parsed flags onto a wraith-core profile
//! and options, runs it, and prints what the user needs (addresses,
//! tickets). The pipelines themselves live in wraith-core.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use wraith_core::Source;
use wraith_core::client::{self, Client, ConnectOptions, split_host_port};
use wraith_core::keys;
use wraith_core::profile::{ClientProfile, ServerProfile, local_user, passphrase_from_env};
use wraith_core::server::Server;

use crate::args::{ConnectArgs, KeygenArgs, ServeArgs};
use crate::signals::{Repeated, Signals, shutdown_signal};

/// Tell systemd (`Type=notify`) how the service is doing; nothing when it
/// did not start us.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(reason = %e, "cannot notify systemd");
    }
}

/// SIGHUP: read `--authorized-keys` and `--cert-authority` again. New
/// logins are checked against the new set; sessions stay up. A file that
/// cannot be read leaves the keys in force as they were.
fn reload_keys(server: &Server, profile: &ServerProfile) {
    let reloading = sd_notify::NotifyState::monotonic_usec_now()
        .map(|t| vec![sd_notify::NotifyState::Reloading, t])
        .unwrap_or_else(|_| vec![sd_notify::NotifyState::Reloading]);
    notify(&reloading);
    match profile.authorized_keys() {
        Ok((keys, warnings)) => {
            for w in &warnings {
                tracing::warn!("{w}");
            }
            let n = keys.len();
            server.set_authorized_keys(keys);
            tracing::info!(
                entries = n,
                "reloaded --authorized-keys and --cert-authority (SIGHUP)"
            );
        }
        Err(e) => {
            tracing::error!(reason = %e, "reload failed (SIGHUP); the keys in force stay as they were");
        }
    }
    notify(&[sd_notify::NotifyState::Ready]);
}

pub(crate) async fn serve(a: ServeArgs) -> Result<()> {
    // From the start: SIGHUP's default action would end the server.
    let mut hangups = Repeated::hangup();
    let mut transport = a.transport.options();
    let mut profile = ServerProfile::new(
        Source::File(a.key.clone()),
        Source::File(a.authorized_keys.clone()),
    );
    profile.passphrase = passphrase_from_env();
    profile.cert_authorities = a.cert_authority.iter().cloned().map(Source::File).collect();
    let (mut opts, warnings) = profile.serve_options()?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    opts.max_auth_attempts = a.max_auth_attempts;
    opts.proxy = match &a.proxy {
        Some(url) => Some(url.parse::<wraith_core::transport::ProxyUrl>()?),
        None => None,
    };
    a.limits.apply(&mut opts, &mut transport);
    opts.max_channels_per_session = a.max_channels_per_session;
    opts.login_grace_time = Duration::from_secs(a.login_grace_time);
    opts.gateway_ports = a.gateway_ports;
    if let Some(banner) = a.ssh_banner {
        opts.ssh_banner = banner;
    }
    opts.keepalive_interval = Duration::from_secs(a.keepalive.keepalive_interval);
    opts.keepalive_count_max = usize::try_from(a.keepalive.keepalive_count_max).unwrap_or(3);
    a.access.apply(&mut opts);
    #[cfg(feature = "nats")]
    a.hub.apply(&mut opts)?;
    let fp = keys::fingerprint(opts.host_key.public_key());
    let acceptor = transport.bind(a.listen.as_deref(), &opts.host_key).await?;
    let server = Server::new(opts);
    let metrics = match &a.access.metrics {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(wraith_core::Error::bind_failed(addr, "--metrics"))?;
            let local = l.local_addr()?;
            Some((l, local))
        }
        None => None,
    };
    out!("listening on {}", acceptor.describe());
    if let Some((_, local)) = &metrics {
        out!("metrics on http://{local}/metrics");
    }
    if let (Some(id), Some(ticket)) = (acceptor.endpoint_id(), acceptor.ticket()) {
        out!("endpoint: {id}");
        out!("ticket: {ticket}");
        let mut connect = format!("wraith connect --transport iroh --peer {ticket}");
        if let Some(relay) = a
            .transport
            .iroh_relay
            .as_deref()
            .filter(|r| *r != "default")
        {
            connect.push_str(&format!(" --iroh-relay {relay}"));
        }
        out!("connect with: {connect}");
    }
    tracing::info!(host_key = %fp, "server ready");
    notify(&[sd_notify::NotifyState::Ready]);
    let mut signals = Signals::new();
    let shutdown = async move {
        signals.recv().await;
        // The same registrations keep listening, so a second signal that
        // arrives at any time from here on is seen.
        tokio::spawn(async move {
            signals.recv().await;
            eprintln!("error: second signal: exiting without draining");
            std::process::exit(1);
        });
        tracing::info!("shutting down: draining sessions (signal again to exit at once)");
        notify(&[sd_notify::NotifyState::Stopping]);
    };
    let reloads = async {
        loop {
            hangups.recv().await;
            reload_keys(&server, &profile);
        }
    };
    let scrapes = async {
        match metrics {
            Some((l, _)) => server.serve_metrics(l).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = server.run(acceptor, shutdown) => r?,
        () = reloads => {}
        () = scrapes => {}
    }
    tracing::info!("shut down");
    Ok(())
}

pub(crate) async fn connect(a: ConnectArgs) -> Result<()> {
    let mut profile = ClientProfile::new(a.transport_opts.options(a.transport, &a.server));
    profile.servers = a.server.clone();
    profile.identity = a.identity.clone().map(Source::File);
    profile.passphrase = passphrase_from_env();
    profile.certificate = a.certificate.clone().map(Source::File);
    profile.host_key = a.host_key.clone();
    profile.known_hosts = a.known_hosts.clone();
    profile.user = a.user.clone();
    let mut opts = profile.connect_options().await?;
    opts.socks5 = (!a.no_socks5).then(|| a.socks5.clone());
    opts.http_proxy = a.http_proxy.clone();
    opts.forwards = a.forwards;
    opts.remote_forwards = a.remote_forwards;
    opts.connect_timeout = Duration::from_secs(a.connect_timeout);
    opts.reconnect_wait = Duration::from_secs(a.reconnect_wait);
    opts.keepalive_interval = Duration::from_secs(a.keepalive.keepalive_interval);
    opts.keepalive_count_max = usize::try_from(a.keepalive.keepalive_count_max).unwrap_or(3);

    let closers: Vec<_> = std::iter::once(Arc::clone(&opts.transport))
        .chain(
            opts.fallback_servers
                .iter()
                .map(|s| Arc::clone(&s.transport)),
        )
        .collect();
    let close_all = || async {
        for c in &closers {
            c.close().await;
        }
    };
    if let Some(target) = &a.stdio {
        let result = stdio(opts, target).await;
        close_all().await;
        return result;
    }
    let mut status_requests = Repeated::user1();
    let result = async {
        let client = Client::connect(opts).await?;
        print_client(&client);
        let mut watch = client.status_watch();
        let first = watch.get().to_string();
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&first),
        ]);
        let answers = async {
            loop {
                // `systemctl status` shows the line; SIGUSR1 also prints it.
                let asked = tokio::select! {
                    () = status_requests.recv() => true,
                    () = watch.changed() => false,
                };
                let line = watch.get().to_string();
                if asked {
                    eprintln!("status: {line}");
                }
                notify(&[sd_notify::NotifyState::Status(&line)]);
            }
        };
        tokio::select! {
            err = client.wait() => Err(err.into()),
            _ = shutdown_signal() => Ok(()),
            () = answers => Ok(()),
        }
    }
    .await;
    // iroh: leave the relay cleanly instead of dropping the endpoint.
    close_all().await;
    result
}

/// `--stdio HOST:PORT`: one channel, joined to stdin and stdout (see
/// `wraith_core::client::stdio`).
async fn stdio(opts: ConnectOptions, target: &str) -> Result<()> {
    let (host, port) = split_host_port(target, 0, "--stdio")?;
    // Port 0 only names the control channel (wraith-control:0, the hub).
    if port == 0 && host != "wraith-control" {
        return Err(wraith_core::Error::config(
            "--stdio",
            target,
            "expected host:port, e.g. localhost:22",
        )
        .into());
    }
    let input = Box::new(tokio::io::stdin());
    let output = Box::new(tokio::io::stdout());
    tokio::select! {
        ended = client::stdio(opts, &host, port, input, output) => Ok(ended?),
        _ = shutdown_signal() => Ok(()),
    }
}

fn print_client(client: &Client) {
    out!("connected to {}", client.server);
    if let Some(a) = client.socks5_addr {
        out!("socks5 listening on {a}");
    }
    if let Some(a) = client.http_proxy_addr {
        out!("http proxy listening on {a}");
    }
    for f in &client.forwards {
        out!("forward listening on {} -> {}", f.local, f.target);
    }
    for r in &client.remote_forwards {
        let host = if r.remote_host.is_empty() {
            "localhost"
        } else {
            r.remote_host.as_str()
        };
        out!(
            "remote forward listening on {}:{} -> {}",
            host,
            r.remote_port,
            r.target
        );
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wraith".into())
}

pub(crate) fn keygen(a: KeygenArgs) -> Result<()> {
    let comment = a
        .comment
        .clone()
        .unwrap_or_else(|| format!("{}@{}", local_user(), host_name()));
    let key = keys::generate_ed25519(&comment)?;
    let pub_path = keys::write_key_pair(&key, &a.file, a.force)?;
    out!("private key: {}", a.file.display());
    out!("public key:  {}", pub_path.display());
    out!("fingerprint: {}", keys::fingerprint(key.public_key()));
    Ok(())
}
