//! The `wraith` command: parses flags into the library's options structs,
//! sets up logging, and maps errors to exit codes (0 ok, 1 runtime failure,
//! 2 usage error). No tunnel logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use wraith_core::client::{
    Client, ConnectOptions, HostKeyPolicy, LocalForwardSpec, RemoteForwardSpec,
};
use wraith_core::keys::{self, HostKeyPin};
use wraith_core::server::{AuthorizedKeys, ServeOptions, Server};
use wraith_core::transport::{Acceptor, TcpAcceptor, TcpTransport, Transport};

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
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "WRAITH_LISTEN",
        default_value = "0.0.0.0:22",
        value_name = "ADDR:PORT"
    )]
    listen: String,
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
    /// Concurrent connections allowed from one IP address (0 = unlimited).
    #[arg(
        long,
        env = "WRAITH_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0,
        value_name = "N"
    )]
    max_connections_per_ip: usize,
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
    #[command(flatten)]
    transport: ServeTransportArgs,
    #[command(flatten)]
    keepalive: KeepaliveArgs,
}

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
}

/// `wraith connect` flags that configure the transport.
#[derive(Args, Debug)]
struct ConnectTransportArgs {
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

/// Bind the server's acceptor for `--transport`.
async fn bind_acceptor(listen: &str, t: &ServeTransportArgs) -> Result<Box<dyn Acceptor>> {
    match t.kind {
        TransportArg::Tcp => Ok(Box::new(TcpAcceptor::bind(listen).await?)),
        TransportArg::Tls => bind_tls_acceptor(listen, t).await,
    }
}

/// Usage checks that clap cannot express (flags valid for one transport only).
fn check_serve_transport(t: &ServeTransportArgs) {
    if t.kind != TransportArg::Tls {
        if t.stealth {
            usage_error("--stealth needs --transport tls");
        }
        if t.tls_cert.is_some() {
            usage_error("--tls-cert and --tls-key need --transport tls");
        }
    } else if t.tls_cert.is_none() && t.acme_domain.is_empty() && t.acme_ip.is_empty() {
        usage_error("--transport tls needs --tls-cert and --tls-key, or --acme-domain / --acme-ip");
    }
    if t.kind != TransportArg::Tls && (!t.acme_domain.is_empty() || !t.acme_ip.is_empty()) {
        usage_error("--acme-domain and --acme-ip need --transport tls");
    }
}

#[cfg(feature = "tls")]
async fn bind_tls_acceptor(listen: &str, t: &ServeTransportArgs) -> Result<Box<dyn Acceptor>> {
    use wraith_core::transport::{CertSource, StealthOptions, TlsAcceptor, TlsServerOptions};
    let source = match (t.tls_cert.clone(), t.tls_key.clone()) {
        (Some(cert), Some(key)) => CertSource::Files { cert, key },
        _ => acme_source(t)?,
    };
    let mut opts = TlsServerOptions::new(source);
    if t.stealth {
        let mut s = StealthOptions::default();
        s.fallback = t.stealth_fallback.clone();
        s.header_timeout = Duration::from_secs(t.stealth_timeout);
        opts.stealth = Some(s);
    }
    Ok(Box::new(TlsAcceptor::bind(listen, opts).await?))
}

#[cfg(feature = "acme")]
fn acme_source(t: &ServeTransportArgs) -> Result<wraith_core::transport::CertSource> {
    use wraith_core::transport::{AcmeOptions, CertSource, LETS_ENCRYPT_PRODUCTION};
    let cache = match &t.acme_cache {
        Some(c) => c.clone(),
        None => dirs::data_dir()
            .map(|d| d.join("wraith").join("acme"))
            .ok_or_else(|| {
                anyhow!("no data directory for the ACME cache: pass --acme-cache <dir>")
            })?,
    };
    let mut opts = AcmeOptions::new(t.acme_domain.clone(), t.acme_ip.clone(), cache);
    opts.email = t.acme_email.clone();
    opts.directory = t
        .acme_directory
        .clone()
        .unwrap_or_else(|| LETS_ENCRYPT_PRODUCTION.to_string());
    opts.ca_root = t.acme_ca_root.clone();
    Ok(CertSource::Acme(opts))
}

#[cfg(all(feature = "tls", not(feature = "acme")))]
fn acme_source(_: &ServeTransportArgs) -> Result<wraith_core::transport::CertSource> {
    usage_error("--acme-domain: this wraith was built without the `acme` feature")
}

#[cfg(not(feature = "tls"))]
async fn bind_tls_acceptor(_: &str, _: &ServeTransportArgs) -> Result<Box<dyn Acceptor>> {
    usage_error("--transport tls: this wraith was built without the `tls` feature")
}

/// Check `wraith connect`'s transport flags; returns the default server port.
fn check_connect_transport(kind: TransportArg, t: &ConnectTransportArgs) -> u16 {
    if kind != TransportArg::Tls {
        for (set, flag) in [
            (t.tls_server_name.is_some(), "--tls-server-name"),
            (t.tls_ca.is_some(), "--tls-ca"),
            (t.tls_pin.is_some(), "--tls-pin"),
            (t.insecure, "--insecure"),
        ] {
            if set {
                usage_error(&format!("{flag} needs --transport tls"));
            }
        }
        return 22;
    }
    443
}

/// The client transport for `--transport`, dialing through `--proxy` if set.
fn make_transport(
    kind: TransportArg,
    t: &ConnectTransportArgs,
    host: &str,
    port: u16,
) -> Result<Arc<dyn Transport>> {
    let proxy = match &t.proxy {
        Some(url) => Some(url.parse::<wraith_core::transport::ProxyUrl>()?),
        None => None,
    };
    match kind {
        TransportArg::Tcp => Ok(Arc::new(TcpTransport::new(host, port).with_proxy(proxy))),
        TransportArg::Tls => make_tls_transport(t, host, port, proxy),
    }
}

#[cfg(feature = "tls")]
fn make_tls_transport(
    t: &ConnectTransportArgs,
    host: &str,
    port: u16,
    proxy: Option<wraith_core::transport::ProxyUrl>,
) -> Result<Arc<dyn Transport>> {
    use wraith_core::transport::{TlsClientOptions, TlsPin, TlsTransport};
    let mut opts = TlsClientOptions {
        server_name: t.tls_server_name.clone(),
        ca_file: t.tls_ca.clone(),
        insecure: t.insecure,
        proxy,
        ..Default::default()
    };
    if let Some(pin) = &t.tls_pin {
        opts.pin = Some(pin.parse::<TlsPin>()?);
    }
    if t.insecure {
        tracing::warn!(
            "--insecure: the server's TLS certificate is NOT checked; only the SSH host key protects this connection"
        );
    }
    Ok(Arc::new(TlsTransport::new(host, port, opts)?))
}

#[cfg(not(feature = "tls"))]
fn make_tls_transport(
    _: &ConnectTransportArgs,
    _: &str,
    _: u16,
    _: Option<wraith_core::transport::ProxyUrl>,
) -> Result<Arc<dyn Transport>> {
    usage_error("--transport tls: this wraith was built without the `tls` feature")
}

#[derive(Args, Debug)]
struct ConnectArgs {
    /// The server, as host[:port] (port 22 if omitted; 443 with --transport tls).
    #[arg(short, long, env = "WRAITH_SERVER", value_name = "HOST[:PORT]")]
    server: String,
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
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

fn passphrase() -> Option<String> {
    std::env::var("WRAITH_KEY_PASSPHRASE").ok()
}

async fn serve(a: ServeArgs) -> Result<()> {
    check_serve_transport(&a.transport);
    let host_key = keys::load_private_key(&a.key, passphrase().as_deref(), "host key", "--key")?;
    let (mut authorized, warnings) = AuthorizedKeys::load(&a.authorized_keys)?;
    for w in &warnings {
        tracing::warn!(
            "{}:{}: {} (--authorized-keys)",
            a.authorized_keys.display(),
            w.line,
            w.reason
        );
    }
    for path in &a.cert_authority {
        let (cas, warnings) = AuthorizedKeys::load_cert_authorities(path)?;
        for w in &warnings {
            tracing::warn!(
                "{}:{}: {} (--cert-authority)",
                path.display(),
                w.line,
                w.reason
            );
        }
        if cas.is_empty() {
            return Err(anyhow!(
                "{} holds no usable CA key (--cert-authority)",
                path.display()
            ));
        }
        authorized.extend(cas);
    }
    if authorized.is_empty() {
        tracing::warn!(
            "{} holds no usable key: nobody can log in (--authorized-keys)",
            a.authorized_keys.display()
        );
    }
    let mut opts = ServeOptions::new(host_key, authorized);
    opts.max_auth_attempts = a.max_auth_attempts;
    opts.proxy = match &a.proxy {
        Some(url) => Some(url.parse::<wraith_core::transport::ProxyUrl>()?),
        None => None,
    };
    opts.max_connections_per_ip = a.max_connections_per_ip;
    opts.max_channels_per_session = a.max_channels_per_session;
    opts.login_grace_time = Duration::from_secs(a.login_grace_time);
    opts.gateway_ports = a.gateway_ports;
    opts.keepalive_interval = Duration::from_secs(a.keepalive.keepalive_interval);
    opts.keepalive_count_max = usize::try_from(a.keepalive.keepalive_count_max).unwrap_or(3);
    let fp = keys::fingerprint(opts.host_key.public_key());
    let acceptor = bind_acceptor(&a.listen, &a.transport).await?;
    let server = Server::new(opts);
    out!("listening on {}", acceptor.describe());
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

/// Split `host[:port]` (IPv6 in brackets) with a default port.
fn split_server(s: &str, default_port: u16) -> Result<(String, u16)> {
    let bad = || {
        anyhow!(
            "invalid --server value {s:?}: expected host[:port], e.g. example.com:2222 or [2001:db8::1]:22"
        )
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            if h.is_empty() {
                return Err(bad());
            }
            Ok((h.to_string(), p.parse().map_err(|_| bad())?))
        }
        Some(_) => Ok((s.to_string(), default_port)), // bare IPv6
        None if !s.is_empty() => Ok((s.to_string(), default_port)),
        None => Err(bad()),
    }
}

fn default_identity() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(p) = home.map(|h| h.join(".ssh").join("id_ed25519"))
        && p.exists()
    {
        return Ok(p);
    }
    Err(anyhow!(
        "no identity: pass --identity <key file> (or set WRAITH_IDENTITY); make one with `wraith keygen -f <file>`"
    ))
}

fn local_user() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("USERNAME"))
        && !u.is_empty()
    {
        return u;
    }
    passwd_name().unwrap_or_else(|| "wraith".into())
}

/// The name of the user running us, from /etc/passwd (when $USER is unset,
/// as under cron or systemd).
#[cfg(unix)]
fn passwd_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

#[cfg(not(unix))]
fn passwd_name() -> Option<String> {
    None
}

async fn connect(a: ConnectArgs) -> Result<()> {
    let default_port = check_connect_transport(a.transport, &a.transport_opts);
    let (host, port) = split_server(&a.server, default_port)?;
    let identity_path = match &a.identity {
        Some(p) => p.clone(),
        None => default_identity()?,
    };
    let identity = keys::load_private_key(
        &identity_path,
        passphrase().as_deref(),
        "identity",
        "--identity",
    )?;
    let certificate = match &a.certificate {
        Some(p) => Some(keys::load_certificate(p, &identity)?),
        None => {
            let default = PathBuf::from(format!("{}-cert.pub", identity_path.display()));
            if default.exists() {
                Some(keys::load_certificate(&default, &identity)?)
            } else {
                None
            }
        }
    };
    let host_key = if let Some(spec) = &a.host_key {
        HostKeyPolicy::Pin(HostKeyPin::parse(spec)?)
    } else if let Some(kh) = &a.known_hosts {
        if !kh.exists() {
            return Err(anyhow!(
                "cannot read known hosts from {} (--known-hosts): no such file",
                kh.display()
            ));
        }
        HostKeyPolicy::KnownHosts(kh.clone())
    } else {
        HostKeyPolicy::default_tofu()
    };
    let transport = make_transport(a.transport, &a.transport_opts, &host, port)?;
    let user = a.user.clone().unwrap_or_else(local_user);
    let mut opts = ConnectOptions::new(transport, host, port, user, identity);
    opts.host_key = host_key;
    opts.certificate = certificate;
    opts.socks5 = (!a.no_socks5).then(|| a.socks5.clone());
    opts.forwards = a.forwards;
    opts.remote_forwards = a.remote_forwards;
    opts.connect_timeout = Duration::from_secs(a.connect_timeout);
    opts.reconnect_wait = Duration::from_secs(a.reconnect_wait);
    opts.keepalive_interval = Duration::from_secs(a.keepalive.keepalive_interval);
    opts.keepalive_count_max = usize::try_from(a.keepalive.keepalive_count_max).unwrap_or(3);

    let client = Client::connect(opts).await?;
    print_client(&client);
    tokio::select! {
        err = client.wait() => Err(err.into()),
        _ = shutdown_signal() => Ok(()),
    }
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
    fn server_spec_forms() {
        assert_eq!(split_server("h", 22).unwrap(), ("h".into(), 22));
        assert_eq!(split_server("h:2222", 22).unwrap(), ("h".into(), 2222));
        assert_eq!(
            split_server("[::1]:2222", 22).unwrap(),
            ("::1".into(), 2222)
        );
        assert_eq!(split_server("[::1]", 22).unwrap(), ("::1".into(), 22));
        assert_eq!(split_server("::1", 22).unwrap(), ("::1".into(), 22));
        assert!(split_server("h:notaport", 22).is_err());
        assert!(split_server("h:70000", 22).is_err());
        assert!(split_server("", 22).is_err());
        assert!(split_server("[::1", 22).is_err());
        assert!(split_server(":22", 22).is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
