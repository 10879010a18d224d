//! The command line: clap definitions of every subcommand and flag, and
//! their mapping onto the library's option structs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use wraith_core::Source;
use wraith_core::client::{LocalForwardSpec, RemoteForwardSpec};
use wraith_core::server::ServeOptions;
use wraith_core::transport::{
    ClientTransportOptions, ProxyHeaderVersion, ServerTransportOptions, TransportKind,
};

pub(crate) const EXAMPLES: &str = "\
Examples:
  Try it on one machine (server, client and a test page, all on loopback):
    wraith demo

  On the server:
    wraith keygen -f host_key
    wraith serve --key host_key --authorized-keys authorized_keys --listen 0.0.0.0:2222

  On your machine (SOCKS5 on 127.0.0.1:1080, Postgres on localhost:5432):
    wraith keygen -f ~/.ssh/wraith_ed25519
    wraith connect --server example.com:2222 --identity ~/.ssh/wraith_ed25519 \\
        --host-key SHA256:... --forward 5432:db.internal:5432
    curl --socks5-hostname 127.0.0.1:1080 https://example.com/";

/// Self-hostable SSH tunnels: a SOCKS5 proxy and port forwards over SSH.
#[derive(Parser, Debug)]
#[command(name = "wraith", version, about, after_help = EXAMPLES, propagate_version = true)]
pub(crate) struct Cli {
    /// More logging: -v debug, -vv trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Only log errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The command line as clap sees it. Every `serve` and `connect` flag can
/// also come from the environment, named by one rule: `WRAITH_` and the flag
/// in capitals (`--max-startups` is `WRAITH_MAX_STARTUPS`); the flag wins.
pub(crate) fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("serve", flags_from_env)
        .mut_subcommand("connect", flags_from_env)
}

/// Parses the process's arguments (and the `WRAITH_*` variables).
pub(crate) fn parse() -> Result<Cli, clap::Error> {
    let mut command = command();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// The variable that sets `--flag`.
pub(crate) fn env_name(long: &str) -> String {
    format!("WRAITH_{}", long.to_ascii_uppercase().replace('-', "_"))
}

fn flags_from_env(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| {
        let takes_env = !matches!(arg.get_action(), ArgAction::Help | ArgAction::Version);
        match arg.get_long().filter(|_| takes_env).map(env_name) {
            Some(var) => arg.env(var),
            None => arg,
        }
    })
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the server: accept SSH connections and tunnel their channels.
    #[command(
        after_help = "Example:\n  wraith serve --key host_key --authorized-keys authorized_keys --listen 0.0.0.0:2222"
    )]
    Serve(Box<ServeArgs>),
    /// Run the client: one SSH session exposed as SOCKS5 and port forwards.
    #[command(
        after_help = "Examples:\n  wraith connect --server example.com:2222 --identity ~/.ssh/wraith_ed25519\n  wraith connect -s example.com:2222 -i key --forward 5432:db.internal:5432 --remote-forward 8080:localhost:3000\n  curl --socks5-hostname 127.0.0.1:1080 https://example.com/"
    )]
    Connect(Box<ConnectArgs>),
    /// Write a new OpenSSH Ed25519 key pair (<file> and <file>.pub).
    Keygen(KeygenArgs),
    /// Start a server, a client and a test page on loopback, and show how to use them.
    Demo(DemoArgs),
    /// Print shell completions to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// SSH host key (OpenSSH Ed25519 private key; make one with `wraith keygen`).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// Keys allowed to log in, in OpenSSH authorized_keys format.
    #[arg(long, value_name = "FILE")]
    pub(crate) authorized_keys: PathBuf,
    /// Address to listen on (port 0 picks a free port), or `systemd` for the socket
    /// systemd passed (socket activation; also the default when it passed one)
    /// [default: 0.0.0.0:22; with --transport iroh: the UDP socket, any free port].
    /// SIGHUP reloads --authorized-keys and --cert-authority.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) listen: Option<String>,
    /// Reach every tunnel target through this proxy (outbound, server side):
    /// socks5://[user:pass@]host:port (names resolved by the proxy) or http://[user:pass@]host:port.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Trust user certificates signed by the CA keys in this file (repeatable).
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub(crate) cert_authority: Vec<PathBuf>,
    /// Failed authentication attempts before a connection is dropped.
    #[arg(long, default_value_t = 10)]
    pub(crate) max_auth_attempts: usize,

    /// Open channels allowed in one session (0 = unlimited).
    #[arg(long, default_value_t = 16384, value_name = "N")]
    pub(crate) max_channels_per_session: usize,
    /// Seconds a connection may take to authenticate.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub(crate) login_grace_time: u64,
    /// Let clients bind remote forwards on all interfaces (default: loopback only).
    #[arg(long)]
    pub(crate) gateway_ports: bool,
    // --- issue #13 (logs helper): what the server announces ---
    /// Identification the server sends after "SSH-2.0-": a software version
    /// (printable US-ASCII, no spaces or '-') and optional comments after a space
    /// (RFC 4253 section 4.2) [default: wraith, without a version number].
    #[arg(long, value_name = "TEXT", value_parser = said_once::<wraith_core::server::SshBanner>)]
    pub(crate) ssh_banner: Option<wraith_core::server::SshBanner>,
    // --- end issue #13 (logs helper) ---
    #[command(flatten)]
    pub(crate) transport: ServeTransportArgs,
    #[command(flatten)]
    pub(crate) keepalive: KeepaliveArgs,
    #[command(flatten)]
    pub(crate) access: ServeAccessArgs,
    #[cfg(feature = "nats")]
    #[command(flatten)]
    pub(crate) hub: HubArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// `wraith serve` flags for what keys may reach besides TCP targets: Unix
/// sockets, the control hub and UDP (udpgw).
#[derive(Args, Debug)]
pub(crate) struct ServeAccessArgs {
    /// Let keys without a permitopen reach this Unix socket (/run/app.sock), or every
    /// socket below this directory (/run/app/), with direct-streamlocal; repeatable.
    /// Absolute paths only; symlinks are resolved before matching. Default: no Unix
    /// sockets (except those a key's permitopen="/path" names).
    #[arg(long, value_name = "PATH", value_parser = parse_socket_rule)]
    pub(crate) allow_stream_local: Vec<wraith_core::server::policy::SocketRule>,
    /// Let every key that may forward open the control channel (wraith-control:0),
    /// not only keys and CAs with the `hub` option.
    #[arg(long)]
    pub(crate) hub_for_all_keys: bool,
    /// Serve Prometheus metrics on this address (GET /metrics): sessions, channels by
    /// kind, authentication results, limit refusals, the hub, ACME expiry. Never a
    /// destination, an address, a key or a byte count. Keep it on loopback or a
    /// private network.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) metrics: Option<String>,
    /// Control channels one session may hold open at once (0 = unlimited).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub(crate) max_control_channels: usize,
    /// Do not relay UDP: refuse the udpgw service (wraith-udpgw:0, wraith-udpgw:1 and
    /// 0.0.0.0:0). It is never offered with --proxy.
    #[arg(long)]
    pub(crate) no_udp: bool,
    /// UDP flows (udpgw connection ids) one udpgw channel may hold at once (0 = unlimited).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub(crate) max_udp_flows: usize,
    /// UDP flows all udpgw channels of one session may hold at once (0 = unlimited).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub(crate) max_udp_flows_per_session: usize,
    /// Seconds without a datagram either way before a UDP flow is closed.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) udp_idle_timeout: u64,
}

impl ServeAccessArgs {
    pub(crate) fn apply(&self, opts: &mut ServeOptions) {
        opts.allow_stream_local = self.allow_stream_local.clone();
        opts.hub_for_all_keys = self.hub_for_all_keys;
        opts.max_control_channels_per_session = self.max_control_channels;
        opts.udpgw = !self.no_udp;
        opts.max_udp_flows_per_channel = self.max_udp_flows;
        opts.max_udp_flows_per_session = self.max_udp_flows_per_session;
        opts.udp_idle_timeout = Duration::from_secs(self.udp_idle_timeout);
    }
}

/// `wraith serve` flags that share the event hub with other servers.
#[cfg(feature = "nats")]
#[derive(Args, Debug)]
pub(crate) struct HubArgs {
    /// Share the event hub with every server on this NATS broker:
    /// nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT], tls://… for TLS, comma-separated for a
    /// cluster. Events cross servers at most once; local delivery never waits for it.
    /// Keep credentials in WRAITH_HUB rather than on the command line.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub(crate) hub: Option<String>,
    /// Subject prefix on the broker (events travel on PREFIX.events), so several
    /// deployments can share one broker.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "wraith",
        requires = "hub"
    )]
    pub(crate) hub_prefix: String,
    /// A NATS credentials file (.creds: JWT and NKey seed) for the broker.
    #[arg(long, value_name = "FILE", requires = "hub")]
    pub(crate) hub_creds: Option<PathBuf>,
    /// A CA (PEM) that signed the broker's certificate; implies TLS.
    #[arg(long, value_name = "FILE", requires = "hub")]
    pub(crate) hub_ca: Option<PathBuf>,
}

#[cfg(feature = "nats")]
impl HubArgs {
    pub(crate) fn apply(&self, opts: &mut ServeOptions) -> Result<(), wraith_core::Error> {
        let Some(url) = &self.hub else {
            return Ok(());
        };
        opts.hub_nats = Some(wraith_core::server::NatsHubOptions::configure(
            url,
            Some(&self.hub_prefix),
            self.hub_creds.clone(),
            self.hub_ca.clone(),
        )?);
        Ok(())
    }
}

/// `T::from_str` for clap, which already writes "invalid value 'V' for
/// '--flag <X>': ": the library's own opening (`bad --forward spec "V": `,
/// `invalid --ssh-banner value "V": `) is dropped, so flag and value are said
/// once.
pub(crate) fn said_once<T>(v: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| {
        let message = e.to_string();
        let quoted = format!("{v:?}: ");
        match message.find(&quoted) {
            Some(i) if message[..i].contains("--") => message[i + quoted.len()..].to_string(),
            _ => message,
        }
    })
}

/// `--allow-stream-local`: a socket path, or a directory ending in `/`.
pub(crate) fn parse_socket_rule(
    v: &str,
) -> Result<wraith_core::server::policy::SocketRule, String> {
    let rule = wraith_core::server::policy::SocketRule::parse(v)?;
    if !rule.is_directory() && rule.path().is_dir() {
        return Err("a directory; end it with / to allow the sockets below it".into());
    }
    Ok(rule)
}

/// `wraith serve` limits on connections that have not authenticated yet,
/// and per source network (see the README's security section).
#[derive(Args, Debug)]
pub(crate) struct LimitArgs {
    /// Concurrent connections allowed from one source network, authenticated or not
    /// (0 = unlimited).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub(crate) max_connections_per_ip: usize,
    /// Unauthenticated connections server-wide, as OpenSSH's MaxStartups: from START on,
    /// RATE% of new connections are refused, rising to all of them at FULL.
    #[arg(long, default_value = "64:30:256", value_name = "START:RATE:FULL")]
    pub(crate) max_startups: wraith_core::limits::MaxStartups,
    /// Unauthenticated connections allowed from one source network (0 = no per-source cap).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub(crate) per_source_max_startups: usize,
    /// Prefix lengths that make one source network for the per-source limits:
    /// IPv4 bits, IPv6 bits (IPv4-mapped IPv6 peers count as IPv4).
    #[arg(
        long,
        default_value = "32:64",
        value_name = "V4:V6",
        value_parser = said_once::<wraith_core::limits::NetBlock>
    )]
    pub(crate) per_source_net_block_size: wraith_core::limits::NetBlock,
    /// With --transport tls: TLS handshakes, stealth decoy and fallback sessions at once.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_tls_handshakes: u64,
    /// With --transport tls: the same, from one source network (0 = no per-source cap).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub(crate) per_source_max_tls_handshakes: usize,
    /// With --stealth-fallback: seconds without data either way before the relay to the
    /// web server is closed.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) stealth_fallback_idle_timeout: u64,
}

impl LimitArgs {
    /// Copy the limits into the library's options.
    pub(crate) fn apply(&self, serve: &mut ServeOptions, transport: &mut ServerTransportOptions) {
        serve.max_connections_per_ip = self.max_connections_per_ip;
        serve.max_startups = self.max_startups;
        serve.per_source_max_startups = self.per_source_max_startups;
        serve.net_block = self.per_source_net_block_size;
        transport.net_block = self.per_source_net_block_size;
        transport.max_tls_handshakes =
            usize::try_from(self.max_tls_handshakes).unwrap_or(usize::MAX);
        transport.per_source_max_tls_handshakes = self.per_source_max_tls_handshakes;
        transport.stealth_fallback_idle_timeout =
            Duration::from_secs(self.stealth_fallback_idle_timeout);
    }
}

#[derive(Args, Debug)]
pub(crate) struct KeepaliveArgs {
    /// Seconds between SSH keepalives on an idle connection.
    #[arg(long, default_value_t = 15, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) keepalive_interval: u64,
    /// Unanswered keepalives before the peer is considered dead.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) keepalive_count_max: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransportArg {
    /// Plain TCP.
    Tcp,
    /// SSH inside TLS (e.g. on port 443).
    Tls,
    /// SSH in a WebSocket, for a reverse proxy in front that terminates TLS.
    Ws,
    /// SSH in a WebSocket inside TLS.
    Wss,
    /// SSH over iroh (QUIC, peer to peer): reaches servers with no public IP.
    Iroh,
}

/// `--stealth-fallback-proxy-protocol`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyHeaderArg {
    /// The text header (`PROXY TCP4 ...`).
    V1,
    /// The binary header.
    V2,
}

impl From<ProxyHeaderArg> for ProxyHeaderVersion {
    fn from(v: ProxyHeaderArg) -> Self {
        match v {
            ProxyHeaderArg::V1 => ProxyHeaderVersion::V1,
            ProxyHeaderArg::V2 => ProxyHeaderVersion::V2,
        }
    }
}

/// `wraith serve` flags that choose and configure the transport.
#[derive(Args, Debug)]
pub(crate) struct ServeTransportArgs {
    /// Transport to accept connections over.
    #[arg(long = "transport", value_enum, default_value = "tcp")]
    pub(crate) kind: TransportArg,
    /// TLS certificate chain, PEM, leaf first (with --transport tls).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (with --transport tls).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Look like a web server: only clients that start with an SSH banner (with
    /// --ws-path: a WebSocket upgrade on that path) reach SSH; anything else gets
    /// nginx's answer (needs --transport tls or wss).
    #[arg(long)]
    pub(crate) stealth: bool,
    /// With --stealth: relay non-SSH connections to this web server instead of the 404.
    #[arg(long, value_name = "HOST:PORT", requires = "stealth")]
    pub(crate) stealth_fallback: Option<String>,
    /// With --stealth: seconds a client may take for the TLS handshake and its request
    /// (nginx's client_header_timeout).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) stealth_timeout: u64,
    /// With --stealth-fallback: first send the web server a PROXY protocol header naming
    /// the client (for nginx's `listen ... proxy_protocol`).
    #[arg(
        long,
        value_enum,
        value_name = "VERSION",
        requires = "stealth_fallback"
    )]
    pub(crate) stealth_fallback_proxy_protocol: Option<ProxyHeaderArg>,
    /// Every connection starts with a PROXY protocol header, v1 or v2 (haproxy's
    /// send-proxy, send-proxy-v2); the client it names is the peer for logs, from=,
    /// source-address and the per-IP limits. Connections without one are closed
    /// (tcp and tls).
    #[arg(long)]
    pub(crate) proxy_protocol: bool,
    /// With --proxy-protocol: the proxies allowed to send the header, ADDR/BITS or ADDR;
    /// repeatable or comma-separated; anyone else is refused
    /// [default: 127.0.0.0/8,::1, loopback only].
    #[arg(
        long,
        value_name = "CIDR",
        value_delimiter = ',',
        requires = "proxy_protocol"
    )]
    pub(crate) proxy_protocol_from: Vec<String>,
    /// Get the TLS certificate for this domain from an ACME CA (TLS-ALPN-01 on the
    /// listening port, which must be reachable as <name>:443); repeatable.
    #[arg(
        long,
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "tls_cert"
    )]
    pub(crate) acme_domain: Vec<String>,
    /// Get a certificate for this IP address (short-lived, renewed continuously); repeatable.
    #[arg(
        long,
        value_name = "ADDR",
        value_delimiter = ',',
        conflicts_with = "tls_cert"
    )]
    pub(crate) acme_ip: Vec<std::net::IpAddr>,
    /// Contact e-mail for the ACME account.
    #[arg(long, value_name = "EMAIL")]
    pub(crate) acme_email: Option<String>,
    /// Where the ACME account and certificates are kept across restarts
    /// [default: <data dir>/wraith/acme].
    #[arg(long, value_name = "DIR")]
    pub(crate) acme_cache: Option<PathBuf>,
    /// ACME directory URL [default: Let's Encrypt production].
    #[arg(long, value_name = "URL")]
    pub(crate) acme_directory: Option<String>,
    /// Trust this CA (PEM) for the ACME server's HTTPS, e.g. a test CA such as pebble.
    #[arg(long, value_name = "PEM")]
    pub(crate) acme_ca_root: Option<PathBuf>,
    /// iroh relay: an http(s):// URL of a self-hosted relay, "default" (n0's public
    /// relays) or "disabled" (direct addresses only) [default: default] (with --transport iroh).
    #[arg(long, value_name = "URL")]
    pub(crate) iroh_relay: Option<String>,
    /// Only a WebSocket upgrade on this exact path reaches SSH; any other request gets
    /// nginx's 404 (with --transport ws or wss, or tls with --stealth) [default: /].
    /// A long random path works as a shared secret.
    #[arg(long, value_name = "PATH")]
    pub(crate) ws_path: Option<String>,
    /// Reverse proxies in front (ADDR or ADDR/BITS, repeatable) whose X-Forwarded-For
    /// (else X-Real-IP) names the client, for logs, from= and per-source limits
    /// (with --transport ws or wss); from anyone else the headers are ignored.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub(crate) ws_forwarded_from: Vec<String>,
}

/// `wraith connect` flags that configure the transport.
#[derive(Args, Debug)]
pub(crate) struct ConnectTransportArgs {
    /// The server's iroh endpoint: the `ticket:` (or `endpoint:`) value it printed,
    /// or ID@IP:PORT[,IP:PORT] to dial it at those UDP addresses instead of a ticket's
    /// (with --transport iroh; among other servers, give it as --server iroh:TICKET).
    #[arg(long, value_name = "TICKET|ID[@IP:PORT]")]
    pub(crate) peer: Option<String>,
    /// iroh relay: an http(s):// URL of a self-hosted relay, "default" (n0's public
    /// relays) or "disabled" (direct addresses only) [default: default] (with
    /// --transport iroh or an iroh: server).
    #[arg(long, value_name = "URL")]
    pub(crate) iroh_relay: Option<String>,
    /// TLS server name (SNI) and the name the certificate must match [default: the server host].
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_server_name: Option<String>,
    /// Trust only the CA certificates in this PEM file (instead of the webpki roots).
    #[arg(long, value_name = "PEM")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Accept only a certificate with this public key: sha256/<base64 of SHA-256 of its SPKI>.
    #[arg(long, value_name = "PIN")]
    pub(crate) tls_pin: Option<String>,
    /// The path of the WebSocket upgrade (with --transport ws or wss) [default: /].
    #[arg(long, value_name = "PATH")]
    pub(crate) ws_path: Option<String>,
    /// The Host header of the WebSocket upgrade, when it is not the server's name
    /// (a CDN or a virtual host).
    #[arg(long, value_name = "HOST")]
    pub(crate) ws_host: Option<String>,
    /// Do not check the TLS certificate at all (the SSH host key is still checked).
    #[arg(long, conflicts_with_all = ["tls_ca", "tls_pin"])]
    pub(crate) insecure: bool,
    /// Reach the server through this proxy: socks5://[user:pass@]host:port or
    /// http://[user:pass@]host:port (HTTP CONNECT). Carries the transport connection.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
}

/// A usage error: one line on stderr, exit code 2, like clap's own.
pub(crate) fn usage_error(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2);
}

impl From<TransportArg> for TransportKind {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Tcp => TransportKind::Tcp,
            TransportArg::Tls => TransportKind::Tls,
            TransportArg::Ws => TransportKind::Ws,
            TransportArg::Wss => TransportKind::Wss,
            TransportArg::Iroh => TransportKind::Iroh,
        }
    }
}

impl ServeTransportArgs {
    /// The library's transport settings; usage errors (a flag for another
    /// transport) exit with 2.
    pub(crate) fn options(&self) -> ServerTransportOptions {
        let mut o = ServerTransportOptions::new(self.kind.into());
        o.tls_cert = self.tls_cert.clone().map(Source::File);
        o.tls_key = self.tls_key.clone().map(Source::File);
        o.stealth = self.stealth;
        o.stealth_fallback = self.stealth_fallback.clone();
        o.stealth_timeout = Duration::from_secs(self.stealth_timeout);
        o.stealth_fallback_proxy_protocol = self.stealth_fallback_proxy_protocol.map(Into::into);
        o.proxy_protocol = self.proxy_protocol;
        o.proxy_protocol_from = self.proxy_protocol_from.clone();
        o.acme_domains = self.acme_domain.clone();
        o.acme_ips = self.acme_ip.clone();
        o.acme_email = self.acme_email.clone();
        o.acme_cache = self.acme_cache.clone();
        o.acme_directory = self.acme_directory.clone();
        o.acme_ca_root = self.acme_ca_root.clone();
        o.iroh_relay = self.iroh_relay.clone();
        o.ws_path = self.ws_path.clone();
        o.ws_forwarded_from = self.ws_forwarded_from.clone();
        if let Err(e) = o.check() {
            usage_error(&e.to_string());
        }
        o
    }
}

impl ConnectTransportArgs {
    /// The library's transport settings; usage errors exit with 2. With
    /// several `--server` values, or one with a scheme, the checks are the
    /// profile's, per server.
    pub(crate) fn options(&self, kind: TransportArg, servers: &[String]) -> ClientTransportOptions {
        let mut o = ClientTransportOptions::new(kind.into());
        o.proxy = self.proxy.clone();
        o.tls_server_name = self.tls_server_name.clone();
        o.tls_ca = self.tls_ca.clone().map(Source::File);
        o.tls_pin = self.tls_pin.clone();
        o.insecure = self.insecure;
        o.peer = self.peer.clone();
        o.iroh_relay = self.iroh_relay.clone();
        o.ws_path = self.ws_path.clone();
        o.ws_host = self.ws_host.clone();
        let listed = wraith_core::profile::is_server_list(servers);
        if let (false, Err(e)) = (listed, o.check()) {
            usage_error(&e.to_string());
        }
        o
    }
}

#[derive(Args, Debug)]
pub(crate) struct ConnectArgs {
    /// The server, as host[:port] (port 22 if omitted; 443 with --transport tls or wss,
    /// 80 with ws). Repeatable: the first that works is used, the others when it
    /// fails; each may name its own transport as tcp://, tls://, ws://HOST[:PORT][/PATH],
    /// wss://… or iroh:TICKET (anything --peer takes; ID@IP:PORT with one address, as
    /// commas separate servers). Not used with --transport iroh (give --peer).
    #[arg(
        short,
        long,
        value_name = "[SCHEME://]HOST[:PORT]|iroh:TICKET",
        value_delimiter = ',',
        required_unless_present = "peer"
    )]
    pub(crate) server: Vec<String>,
    /// Private key to log in with (OpenSSH format) [default: ~/.ssh/id_ed25519].
    #[arg(short, long, value_name = "FILE")]
    pub(crate) identity: Option<PathBuf>,
    /// OpenSSH user certificate to present [default: <identity>-cert.pub if it exists].
    #[arg(long, value_name = "FILE")]
    pub(crate) certificate: Option<PathBuf>,
    /// Login name [default: the local user name].
    #[arg(short = 'l', long)]
    pub(crate) user: Option<String>,
    /// Transport to reach the server over.
    #[arg(long, value_enum, default_value = "tcp")]
    pub(crate) transport: TransportArg,
    #[command(flatten)]
    pub(crate) transport_opts: ConnectTransportArgs,
    /// Pin the server's host key: SHA256:<fingerprint>, a public key line, or a .pub file.
    #[arg(long, value_name = "KEY", conflicts_with = "known_hosts")]
    pub(crate) host_key: Option<String>,
    /// Check the host key against this OpenSSH known_hosts file.
    #[arg(long, value_name = "FILE")]
    pub(crate) known_hosts: Option<PathBuf>,
    /// Where the SOCKS5 proxy listens.
    #[arg(long, default_value = "127.0.0.1:1080", value_name = "ADDR:PORT")]
    pub(crate) socks5: String,
    /// Do not run the SOCKS5 proxy.
    #[arg(long)]
    pub(crate) no_socks5: bool,
    /// Also run an HTTP proxy here (CONNECT, and plain http:// requests), for
    /// tools that honour only HTTP_PROXY/HTTPS_PROXY; names are resolved on
    /// the server.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) http_proxy: Option<String>,
    /// Open one channel to HOST:PORT (as seen from the server) and connect it to
    /// stdin/stdout, like `ssh -W`; no SOCKS5 or forwards. For an OpenSSH
    /// ProxyCommand: ssh -o ProxyCommand='wraith connect ... --stdio %h:%p' host
    #[arg(
        long,
        value_name = "HOST:PORT",
        conflicts_with_all = ["forwards", "remote_forwards", "http_proxy"]
    )]
    pub(crate) stdio: Option<String>,
    /// Local forward, like ssh -L: [bind_address:]port:host:hostport; udp:… for UDP (repeatable).
    #[arg(
        short = 'L',
        long = "forward",
        value_name = "SPEC",
        value_delimiter = ',',
        value_parser = said_once::<LocalForwardSpec>
    )]
    pub(crate) forwards: Vec<LocalForwardSpec>,
    /// Remote forward, like ssh -R: [bind_address:]port:host:hostport (repeatable).
    #[arg(
        short = 'R',
        long = "remote-forward",
        value_name = "SPEC",
        value_delimiter = ',',
        value_parser = said_once::<RemoteForwardSpec>
    )]
    pub(crate) remote_forwards: Vec<RemoteForwardSpec>,
    /// Seconds allowed for connecting, the handshake and authentication.
    #[arg(long, default_value_t = 15, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) connect_timeout: u64,
    /// Seconds a new connection waits for the tunnel while it reconnects, before it fails.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub(crate) reconnect_wait: u64,
    #[command(flatten)]
    pub(crate) keepalive: KeepaliveArgs,
}

#[derive(Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key; the public key goes to <FILE>.pub.
    #[arg(short, long, env = "WRAITH_KEYGEN_FILE", value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Comment stored in the key.
    #[arg(short = 'C', long, env = "WRAITH_KEYGEN_COMMENT")]
    pub(crate) comment: Option<String>,
    /// Overwrite existing files.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Where the demo's SOCKS5 proxy listens (a free port is used if this one is taken).
    #[arg(long, default_value = "127.0.0.1:1080", value_name = "ADDR:PORT")]
    pub(crate) socks5: String,
}
