//! The `wraith` command: parses flags into the library's options structs,
//! sets up logging, and maps errors to exit codes (0 ok, 1 runtime failure,
//! 2 usage error). No tunnel logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use wraith_core::Source;
use wraith_core::client::{
    Client, ConnectOptions, LocalForwardSpec, RemoteForwardSpec, open_channel, split_host_port,
};
use wraith_core::keys;
use wraith_core::profile::{ClientProfile, ServerProfile, local_user, passphrase_from_env};
use wraith_core::server::{ServeOptions, Server};
use wraith_core::transport::{ClientTransportOptions, ServerTransportOptions, TransportKind};

/// Print a line to stdout. Unlike `println!` it never panics: a closed
/// stdout (`wraith connect | head -1`) must not kill a running tunnel.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, $($arg)*);
        let _ = o.flush();
    }};
}

mod allocator;
mod demo;
mod logging;

const EXAMPLES: &str = "\
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
struct Cli {
    /// More logging: -v debug, -vv trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only log errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: accept SSH connections and tunnel their channels.
    #[command(
        after_help = "Example:\n  wraith serve --key host_key --authorized-keys authorized_keys --listen 0.0.0.0:2222"
    )]
    Serve(ServeArgs),
    /// Run the client: one SSH session exposed as SOCKS5 and port forwards.
    #[command(
        after_help = "Examples:\n  wraith connect --server example.com:2222 --identity ~/.ssh/wraith_ed25519\n  wraith connect -s example.com:2222 -i key --forward 5432:db.internal:5432 --remote-forward 8080:localhost:3000\n  curl --socks5-hostname 127.0.0.1:1080 https://example.com/"
    )]
    Connect(ConnectArgs),
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
struct ServeArgs {
    /// SSH host key (OpenSSH Ed25519 private key; make one with `wraith keygen`).
    #[arg(long, env = "WRAITH_KEY", value_name = "FILE")]
    key: PathBuf,
    /// Keys allowed to log in, in OpenSSH authorized_keys format.
    #[arg(long, env = "WRAITH_AUTHORIZED_KEYS", value_name = "FILE")]
    authorized_keys: PathBuf,
    /// Address to listen on (port 0 picks a free port) [default: 0.0.0.0:22;
    /// with --transport iroh: the UDP socket, any free port].
    #[arg(long, env = "WRAITH_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Reach every tunnel target through this proxy (outbound, server side):
    /// socks5://[user:pass@]host:port (names resolved by the proxy) or http://[user:pass@]host:port.
    #[arg(long, env = "WRAITH_PROXY", value_name = "URL")]
    proxy: Option<String>,
    /// Trust user certificates signed by the CA keys in this file (repeatable).
    #[arg(
        long,
        env = "WRAITH_CERT_AUTHORITY",
        value_name = "FILE",
        value_delimiter = ','
    )]
    cert_authority: Vec<PathBuf>,
    /// Failed authentication attempts before a connection is dropped.
    #[arg(long, env = "WRAITH_MAX_AUTH_ATTEMPTS", default_value_t = 10)]
    max_auth_attempts: usize,

    /// Open channels allowed in one session (0 = unlimited).
    #[arg(
        long,
        env = "WRAITH_MAX_CHANNELS_PER_SESSION",
        default_value_t = 16384,
        value_name = "N"
    )]
    max_channels_per_session: usize,
    /// Seconds a connection may take to authenticate.
    #[arg(
        long,
        env = "WRAITH_LOGIN_GRACE_TIME",
        default_value_t = 30,
        value_name = "SECS"
    )]
    login_grace_time: u64,
    /// Let clients bind remote forwards on all interfaces (default: loopback only).
    #[arg(long, env = "WRAITH_GATEWAY_PORTS")]
    gateway_ports: bool,
    // --- issue #13 (logs helper): what the server announces ---
    /// Identification the server sends after "SSH-2.0-": a software version
    /// (printable US-ASCII, no spaces or '-') and optional comments after a space
    /// (RFC 4253 section 4.2) [default: wraith, without a version number].
    #[arg(long, env = "WRAITH_SSH_BANNER", value_name = "TEXT")]
    ssh_banner: Option<wraith_core::server::SshBanner>,
    // --- end issue #13 (logs helper) ---
    #[command(flatten)]
    transport: ServeTransportArgs,
    #[command(flatten)]
    keepalive: KeepaliveArgs,
    #[command(flatten)]
    access: ServeAccessArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `wraith serve` flags for what keys may reach besides TCP targets: Unix
/// sockets and the control hub.
#[derive(Args, Debug)]
struct ServeAccessArgs {
    /// Let keys without a permitopen reach this Unix socket (/run/app.sock), or every
    /// socket below this directory (/run/app/), with direct-streamlocal; repeatable.
    /// Absolute paths only; symlinks are resolved before matching. Default: no Unix
    /// sockets (except those a key's permitopen="/path" names).
    #[arg(long, env = "WRAITH_ALLOW_STREAM_LOCAL", value_name = "PATH", value_parser = parse_socket_rule)]
    allow_stream_local: Vec<wraith_core::server::policy::SocketRule>,
    /// Let every key that may forward open the control channel (wraith-control:0),
    /// not only keys and CAs with the `hub` option.
    #[arg(long, env = "WRAITH_HUB_FOR_ALL_KEYS")]
    hub_for_all_keys: bool,
    /// Control channels one session may hold open at once (0 = unlimited).
    #[arg(
        long,
        env = "WRAITH_MAX_CONTROL_CHANNELS",
        default_value_t = 8,
        value_name = "N"
    )]
    max_control_channels: usize,
}

impl ServeAccessArgs {
    fn apply(&self, opts: &mut ServeOptions) {
        opts.allow_stream_local = self.allow_stream_local.clone();
        opts.hub_for_all_keys = self.hub_for_all_keys;
        opts.max_control_channels_per_session = self.max_control_channels;
    }
}

/// `--allow-stream-local`: a socket path, or a directory ending in `/`.
fn parse_socket_rule(v: &str) -> Result<wraith_core::server::policy::SocketRule, String> {
    let rule = wraith_core::server::policy::SocketRule::parse(v)?;
    if !rule.is_directory() && rule.path().is_dir() {
        return Err(format!(
            "{v:?} is a directory; end it with / to allow the sockets below it"
        ));
    }
    Ok(rule)
}

/// `wraith serve` limits on connections that have not authenticated yet,
/// and per source network (see the README's security section).
#[derive(Args, Debug)]
struct LimitArgs {
    /// Concurrent connections allowed from one source network, authenticated or not
    /// (0 = unlimited).
    #[arg(
        long,
        env = "WRAITH_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256,
        value_name = "N"
    )]
    max_connections_per_ip: usize,
    /// Unauthenticated connections server-wide, as OpenSSH's MaxStartups: from START on,
    /// RATE% of new connections are refused, rising to all of them at FULL.
    #[arg(
        long,
        env = "WRAITH_MAX_STARTUPS",
        default_value = "64:30:256",
        value_name = "START:RATE:FULL"
    )]
    max_startups: wraith_core::limits::MaxStartups,
    /// Unauthenticated connections allowed from one source network (0 = no per-source cap).
    #[arg(
        long,
        env = "WRAITH_PER_SOURCE_MAX_STARTUPS",
        default_value_t = 16,
        value_name = "N"
    )]
    per_source_max_startups: usize,
    /// Prefix lengths that make one source network for the per-source limits:
    /// IPv4 bits, IPv6 bits (IPv4-mapped IPv6 peers count as IPv4).
    #[arg(
        long,
        env = "WRAITH_PER_SOURCE_NET_BLOCK_SIZE",
        default_value = "32:64",
        value_name = "V4:V6"
    )]
    per_source_net_block_size: wraith_core::limits::NetBlock,
    /// With --transport tls: TLS handshakes, stealth decoy and fallback sessions at once.
    #[arg(long, env = "WRAITH_MAX_TLS_HANDSHAKES", default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_tls_handshakes: u64,
    /// With --transport tls: the same, from one source network (0 = no per-source cap).
    #[arg(
        long,
        env = "WRAITH_PER_SOURCE_MAX_TLS_HANDSHAKES",
        default_value_t = 64,
        value_name = "N"
    )]
    per_source_max_tls_handshakes: usize,
    /// With --stealth-fallback: seconds without data either way before the relay to the
    /// web server is closed.
    #[arg(long, env = "WRAITH_STEALTH_FALLBACK_IDLE_TIMEOUT", default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    stealth_fallback_idle_timeout: u64,
}

impl LimitArgs {
    /// Copy the limits into the library's options.
    fn apply(&self, serve: &mut ServeOptions, transport: &mut ServerTransportOptions) {
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

/// Raise the soft open-files limit to the hard one: every connection is a
/// descriptor (two for a tunnel), and the usual soft default of 1024 would
/// run out long before the connection limits do.
#[cfg(unix)]
fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit")
            }
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

#[cfg(not(unix))]
fn raise_nofile_limit() {}

#[derive(Args, Debug)]
struct KeepaliveArgs {
    /// Seconds between SSH keepalives on an idle connection.
    #[arg(long, env = "WRAITH_KEEPALIVE_INTERVAL", default_value_t = 15, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    keepalive_interval: u64,
    /// Unanswered keepalives before the peer is considered dead.
    #[arg(long, env = "WRAITH_KEEPALIVE_COUNT_MAX", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    keepalive_count_max: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TransportArg {
    /// Plain TCP.
    Tcp,
    /// SSH inside TLS (e.g. on port 443).
    Tls,
    /// SSH over iroh (QUIC, peer to peer): reaches servers with no public IP.
    Iroh,
}

/// `wraith serve` flags that choose and configure the transport.
#[derive(Args, Debug)]
struct ServeTransportArgs {
    /// Transport to accept connections over.
    #[arg(
        long = "transport",
        env = "WRAITH_TRANSPORT",
        value_enum,
        default_value = "tcp"
    )]
    kind: TransportArg,
    /// TLS certificate chain, PEM, leaf first (with --transport tls).
    #[arg(
        long,
        env = "WRAITH_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (with --transport tls).
    #[arg(
        long,
        env = "WRAITH_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Look like a web server: only clients that start with an SSH banner reach SSH;
    /// anything else gets nginx's 404 (needs --transport tls).
    #[arg(long, env = "WRAITH_STEALTH")]
    stealth: bool,
    /// With --stealth: relay non-SSH connections to this web server instead of the 404.
    #[arg(
        long,
        env = "WRAITH_STEALTH_FALLBACK",
        value_name = "HOST:PORT",
        requires = "stealth"
    )]
    stealth_fallback: Option<String>,
    /// With --stealth: seconds a client may take for the TLS handshake and its request
    /// (nginx's client_header_timeout).
    #[arg(long, env = "WRAITH_STEALTH_TIMEOUT", default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    stealth_timeout: u64,
    /// Get the TLS certificate for this domain from an ACME CA (TLS-ALPN-01 on the
    /// listening port, which must be reachable as <name>:443); repeatable.
    #[arg(
        long,
        env = "WRAITH_ACME_DOMAIN",
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "tls_cert"
    )]
    acme_domain: Vec<String>,
    /// Get a certificate for this IP address (short-lived, renewed continuously); repeatable.
    #[arg(
        long,
        env = "WRAITH_ACME_IP",
        value_name = "ADDR",
        value_delimiter = ',',
        conflicts_with = "tls_cert"
    )]
    acme_ip: Vec<std::net::IpAddr>,
    /// Contact e-mail for the ACME account.
    #[arg(long, env = "WRAITH_ACME_EMAIL", value_name = "EMAIL")]
    acme_email: Option<String>,
    /// Where the ACME account and certificates are kept across restarts
    /// [default: <data dir>/wraith/acme].
    #[arg(long, env = "WRAITH_ACME_CACHE", value_name = "DIR")]
    acme_cache: Option<PathBuf>,
    /// ACME directory URL [default: Let's Encrypt production].
    #[arg(long, env = "WRAITH_ACME_DIRECTORY", value_name = "URL")]
    acme_directory: Option<String>,
    /// Trust this CA (PEM) for the ACME server's HTTPS, e.g. a test CA such as pebble.
    #[arg(long, env = "WRAITH_ACME_CA_ROOT", value_name = "PEM")]
    acme_ca_root: Option<PathBuf>,
    /// iroh relay: an http(s):// URL of a self-hosted relay, "default" (n0's public
    /// relays) or "disabled" (direct addresses only) [default: default] (with --transport iroh).
    #[arg(long, env = "WRAITH_IROH_RELAY", value_name = "URL")]
    iroh_relay: Option<String>,
}

/// `wraith connect` flags that configure the transport.
#[derive(Args, Debug)]
struct ConnectTransportArgs {
    /// The server's iroh endpoint: the `ticket:` (or `endpoint:`) value it printed,
    /// or ID@IP:PORT[,IP:PORT] to dial it at those UDP addresses instead of a ticket's
    /// (with --transport iroh).
    #[arg(long, env = "WRAITH_PEER", value_name = "TICKET|ID[@IP:PORT]")]
    peer: Option<String>,
    /// iroh relay: an http(s):// URL of a self-hosted relay, "default" (n0's public
    /// relays) or "disabled" (direct addresses only) [default: default].
    #[arg(long, env = "WRAITH_IROH_RELAY", value_name = "URL")]
    iroh_relay: Option<String>,
    /// TLS server name (SNI) and the name the certificate must match [default: the server host].
    #[arg(long, env = "WRAITH_TLS_SERVER_NAME", value_name = "NAME")]
    tls_server_name: Option<String>,
    /// Trust only the CA certificates in this PEM file (instead of the webpki roots).
    #[arg(long, env = "WRAITH_TLS_CA", value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Accept only a certificate with this public key: sha256/<base64 of SHA-256 of its SPKI>.
    #[arg(long, env = "WRAITH_TLS_PIN", value_name = "PIN")]
    tls_pin: Option<String>,
    /// Do not check the TLS certificate at all (the SSH host key is still checked).
    #[arg(long, env = "WRAITH_INSECURE", conflicts_with_all = ["tls_ca", "tls_pin"])]
    insecure: bool,
    /// Reach the server through this proxy: socks5://[user:pass@]host:port or
    /// http://[user:pass@]host:port (HTTP CONNECT). Carries the transport connection.
    #[arg(long, env = "WRAITH_PROXY", value_name = "URL")]
    proxy: Option<String>,
}

/// A usage error: one line on stderr, exit code 2, like clap's own.
fn usage_error(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2);
}

impl From<TransportArg> for TransportKind {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Tcp => TransportKind::Tcp,
            TransportArg::Tls => TransportKind::Tls,
            TransportArg::Iroh => TransportKind::Iroh,
        }
    }
}

impl ServeTransportArgs {
    /// The library's transport settings; usage errors (a flag for another
    /// transport) exit with 2.
    fn options(&self) -> ServerTransportOptions {
        let mut o = ServerTransportOptions::new(self.kind.into());
        o.tls_cert = self.tls_cert.clone().map(Source::File);
        o.tls_key = self.tls_key.clone().map(Source::File);
        o.stealth = self.stealth;
        o.stealth_fallback = self.stealth_fallback.clone();
        o.stealth_timeout = Duration::from_secs(self.stealth_timeout);
        o.acme_domains = self.acme_domain.clone();
        o.acme_ips = self.acme_ip.clone();
        o.acme_email = self.acme_email.clone();
        o.acme_cache = self.acme_cache.clone();
        o.acme_directory = self.acme_directory.clone();
        o.acme_ca_root = self.acme_ca_root.clone();
        o.iroh_relay = self.iroh_relay.clone();
        if let Err(e) = o.check() {
            usage_error(&e.to_string());
        }
        o
    }
}

impl ConnectTransportArgs {
    /// The library's transport settings; usage errors exit with 2.
    fn options(&self, kind: TransportArg) -> ClientTransportOptions {
        let mut o = ClientTransportOptions::new(kind.into());
        o.proxy = self.proxy.clone();
        o.tls_server_name = self.tls_server_name.clone();
        o.tls_ca = self.tls_ca.clone().map(Source::File);
        o.tls_pin = self.tls_pin.clone();
        o.insecure = self.insecure;
        o.peer = self.peer.clone();
        o.iroh_relay = self.iroh_relay.clone();
        if let Err(e) = o.check() {
            usage_error(&e.to_string());
        }
        o
    }
}

#[derive(Args, Debug)]
struct ConnectArgs {
    /// The server, as host[:port] (port 22 if omitted; 443 with --transport tls).
    /// Not used with --transport iroh (give --peer).
    #[arg(
        short,
        long,
        env = "WRAITH_SERVER",
        value_name = "HOST[:PORT]",
        required_unless_present = "peer"
    )]
    server: Option<String>,
    /// Private key to log in with (OpenSSH format) [default: ~/.ssh/id_ed25519].
    #[arg(short, long, env = "WRAITH_IDENTITY", value_name = "FILE")]
    identity: Option<PathBuf>,
    /// OpenSSH user certificate to present [default: <identity>-cert.pub if it exists].
    #[arg(long, env = "WRAITH_CERTIFICATE", value_name = "FILE")]
    certificate: Option<PathBuf>,
    /// Login name [default: the local user name].
    #[arg(short = 'l', long, env = "WRAITH_USER")]
    user: Option<String>,
    /// Transport to reach the server over.
    #[arg(long, env = "WRAITH_TRANSPORT", value_enum, default_value = "tcp")]
    transport: TransportArg,
    #[command(flatten)]
    transport_opts: ConnectTransportArgs,
    /// Pin the server's host key: SHA256:<fingerprint>, a public key line, or a .pub file.
    #[arg(
        long,
        env = "WRAITH_HOST_KEY",
        value_name = "KEY",
        conflicts_with = "known_hosts"
    )]
    host_key: Option<String>,
    /// Check the host key against this OpenSSH known_hosts file.
    #[arg(long, env = "WRAITH_KNOWN_HOSTS", value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Where the SOCKS5 proxy listens.
    #[arg(
        long,
        env = "WRAITH_SOCKS5",
        default_value = "127.0.0.1:1080",
        value_name = "ADDR:PORT"
    )]
    socks5: String,
    /// Do not run the SOCKS5 proxy.
    #[arg(long, env = "WRAITH_NO_SOCKS5")]
    no_socks5: bool,
    /// Open one channel to HOST:PORT (as seen from the server) and connect it to
    /// stdin/stdout, like `ssh -W`; no SOCKS5 or forwards. For an OpenSSH
    /// ProxyCommand: ssh -o ProxyCommand='wraith connect ... --stdio %h:%p' host
    #[arg(
        long,
        value_name = "HOST:PORT",
        conflicts_with_all = ["forwards", "remote_forwards"]
    )]
    stdio: Option<String>,
    /// Local forward, like ssh -L: [bind_address:]port:host:hostport (repeatable).
    #[arg(
        short = 'L',
        long = "forward",
        env = "WRAITH_FORWARD",
        value_name = "SPEC",
        value_delimiter = ','
    )]
    forwards: Vec<LocalForwardSpec>,
    /// Remote forward, like ssh -R: [bind_address:]port:host:hostport (repeatable).
    #[arg(
        short = 'R',
        long = "remote-forward",
        env = "WRAITH_REMOTE_FORWARD",
        value_name = "SPEC",
        value_delimiter = ','
    )]
    remote_forwards: Vec<RemoteForwardSpec>,
    /// Seconds allowed for connecting, the handshake and authentication.
    #[arg(long, env = "WRAITH_CONNECT_TIMEOUT", default_value_t = 15, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout: u64,
    /// Seconds a new connection waits for the tunnel while it reconnects, before it fails.
    #[arg(
        long,
        env = "WRAITH_RECONNECT_WAIT",
        default_value_t = 5,
        value_name = "SECS"
    )]
    reconnect_wait: u64,
    #[command(flatten)]
    keepalive: KeepaliveArgs,
}

#[derive(Args, Debug)]
struct KeygenArgs {
    /// Where to write the private key; the public key goes to <FILE>.pub.
    #[arg(short, long, env = "WRAITH_KEYGEN_FILE", value_name = "FILE")]
    file: PathBuf,
    /// Comment stored in the key.
    #[arg(short = 'C', long, env = "WRAITH_KEYGEN_COMMENT")]
    comment: Option<String>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Where the demo's SOCKS5 proxy listens (a free port is used if this one is taken).
    #[arg(
        long,
        env = "WRAITH_SOCKS5",
        default_value = "127.0.0.1:1080",
        value_name = "ADDR:PORT"
    )]
    socks5: String,
}

fn main() -> ExitCode {
    allocator::keep_freed_memory_for_reuse();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A bug must still look like one clear line, not a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error (please report it): {msg}{at}");
    }));
    let is_server = matches!(cli.command, Command::Serve(_));
    logging::init(cli.verbose, cli.quiet, is_server);
    raise_nofile_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // A blocking read of stdin (`--stdio`) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            // A flag combination the library rejects is a usage error, as
            // when clap rejects it.
            let usage = matches!(
                e.downcast_ref::<wraith_core::Error>(),
                Some(wraith_core::Error::Usage(_))
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes on one line, without repeating a cause the
/// message already contains.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out.replace('\n', " ")
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Connect(a) => connect(a).await,
        Command::Keygen(a) => keygen(a),
        Command::Demo(a) => demo::run(&a.socks5).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "wraith", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
            Ok(())
        }
    }
}

async fn serve(a: ServeArgs) -> Result<()> {
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
    let fp = keys::fingerprint(opts.host_key.public_key());
    let acceptor = transport.bind(a.listen.as_deref(), &opts.host_key).await?;
    let server = Server::new(opts);
    out!("listening on {}", acceptor.describe());
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
    };
    server.run(acceptor, shutdown).await?;
    tracing::info!("shut down");
    Ok(())
}

/// SIGINT and SIGTERM, registered once so that no signal is missed between
/// two waits (the second signal must always be seen).
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Resolves on the next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    Signals::new().recv().await;
}

async fn connect(a: ConnectArgs) -> Result<()> {
    let mut profile = ClientProfile::new(a.transport_opts.options(a.transport));
    profile.server = a.server.clone();
    profile.identity = a.identity.clone().map(Source::File);
    profile.passphrase = passphrase_from_env();
    profile.certificate = a.certificate.clone().map(Source::File);
    profile.host_key = a.host_key.clone();
    profile.known_hosts = a.known_hosts.clone();
    profile.user = a.user.clone();
    let mut opts = profile.connect_options().await?;
    opts.socks5 = (!a.no_socks5).then(|| a.socks5.clone());
    opts.forwards = a.forwards;
    opts.remote_forwards = a.remote_forwards;
    opts.connect_timeout = Duration::from_secs(a.connect_timeout);
    opts.reconnect_wait = Duration::from_secs(a.reconnect_wait);
    opts.keepalive_interval = Duration::from_secs(a.keepalive.keepalive_interval);
    opts.keepalive_count_max = usize::try_from(a.keepalive.keepalive_count_max).unwrap_or(3);

    let closer = Arc::clone(&opts.transport);
    if let Some(target) = &a.stdio {
        let result = stdio(opts, target).await;
        closer.close().await;
        return result;
    }
    let result = async {
        let client = Client::connect(opts).await?;
        print_client(&client);
        tokio::select! {
            err = client.wait() => Err(err.into()),
            _ = shutdown_signal() => Ok(()),
        }
    }
    .await;
    // iroh: leave the relay cleanly instead of dropping the endpoint.
    closer.close().await;
    result
}

/// `--stdio HOST:PORT`: one channel, joined to stdin and stdout. Nothing
/// but channel data goes to stdout; EOF on stdin is sent as channel EOF,
/// and the command ends when the channel does.
async fn stdio(opts: ConnectOptions, target: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let (host, port) = split_host_port(target, 0, "--stdio")?;
    // Port 0 only names the control channel (wraith-control:0, the hub).
    if port == 0 && host != "wraith-control" {
        return Err(anyhow!(
            "invalid --stdio value {target:?}: expected host:port, e.g. localhost:22"
        ));
    }
    let channel = open_channel(opts, &host, port).await?;
    let (mut from_channel, mut to_channel) = tokio::io::split(channel);
    // stdin EOF half-closes the channel; the command ends when the channel
    // does (the peer closed), whether or not stdin is still open.
    let upstream = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let _ = tokio::io::copy(&mut stdin, &mut to_channel).await;
        let _ = to_channel.shutdown().await;
    });
    let downstream = async {
        let mut stdout = tokio::io::stdout();
        let copied = tokio::io::copy(&mut from_channel, &mut stdout).await;
        let _ = stdout.flush().await;
        copied
    };
    let result = tokio::select! {
        copied = downstream => copied.map(|_| ()).map_err(|e| anyhow!("--stdio: {e}")),
        _ = shutdown_signal() => Ok(()),
    };
    upstream.abort();
    result
}

fn print_client(client: &Client) {
    out!("connected to {}", client.server);
    if let Some(a) = client.socks5_addr {
        out!("socks5 listening on {a}");
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

fn keygen(a: KeygenArgs) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
