//! Transport settings as flags spell them: which transport, plus the options
//! only one transport uses. `check` rejects combinations that make no sense
//! (one usage line naming the flags), `build` / `bind` make the client
//! transport or the server acceptor. `wraith connect` / `wraith serve` and
//! the Node package both go through here, so they agree on defaults, on
//! which flag needs which transport, and on every message.
//!
//! Only settings live here; no bytes move in this module.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Acceptor, ProxyUrl, TcpAcceptor, TcpTransport, Transport, TransportKind};
use crate::error::{Error, Result};
use crate::source::Source;

impl std::str::FromStr for TransportKind {
    type Err = Error;

    /// `tcp`, `tls`, `ws`, `wss` or `iroh`, as `--transport` takes them.
    fn from_str(s: &str) -> Result<Self> {
        TransportKind::from_name(s)
            .ok_or_else(|| Error::config("--transport", s, "expected tcp, tls, ws, wss or iroh"))
    }
}

/// Where `wraith serve` listens when `--listen` is not given (tcp, tls).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:22";

/// `--iroh-relay` as given (`None`: n0's default relays).
#[cfg(feature = "iroh")]
fn iroh_relay(value: Option<&str>) -> Result<super::IrohRelay> {
    value
        .map(str::parse)
        .transpose()
        .map(Option::unwrap_or_default)
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// The WebSocket path when `--ws-path` is not given.
#[cfg(feature = "ws")]
const DEFAULT_WS_PATH: &str = "/";

/// Transports that carry TLS from wraith itself.
fn uses_tls(kind: TransportKind) -> bool {
    matches!(kind, TransportKind::Tls | TransportKind::Wss)
}

fn is_ws(kind: TransportKind) -> bool {
    matches!(kind, TransportKind::Ws | TransportKind::Wss)
}

fn check_ws_path(path: Option<&str>) -> Result<()> {
    #[cfg(feature = "ws")]
    if let Some(p) = path {
        super::ws::check_path(p).map_err(|reason| Error::config("--ws-path", p, reason))?;
    }
    #[cfg(not(feature = "ws"))]
    let _ = path;
    Ok(())
}

fn without_ws(kind: TransportKind) -> Result<()> {
    if is_ws(kind) && cfg!(not(feature = "ws")) {
        return Err(usage(format!(
            "--transport {kind}: this wraith was built without the `ws` feature"
        )));
    }
    Ok(())
}

/// How `wraith connect` reaches the server (`--transport` and the flags
/// that configure it).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ClientTransportOptions {
    /// The transport (`--transport`).
    pub kind: TransportKind,
    /// Dial through this proxy, `socks5://…` or `http://…` (`--proxy`).
    pub proxy: Option<String>,
    /// TLS: SNI and the name the certificate must match (`--tls-server-name`).
    pub tls_server_name: Option<String>,
    /// TLS: trust only these CA certificates, PEM (`--tls-ca`).
    pub tls_ca: Option<Source>,
    /// TLS: accept only this certificate key, `sha256/<base64>` (`--tls-pin`).
    pub tls_pin: Option<String>,
    /// TLS: no certificate check at all (`--insecure`).
    pub insecure: bool,
    /// iroh: the server's ticket or endpoint id (`--peer`).
    pub peer: Option<String>,
    /// iroh: `default`, `disabled` or a relay URL (`--iroh-relay`).
    pub iroh_relay: Option<String>,
    /// ws, wss: the path of the WebSocket upgrade (`--ws-path`, default `/`).
    pub ws_path: Option<String>,
    /// ws, wss: the Host header, when it is not the server's name
    /// (`--ws-host`; for CDNs and virtual hosts).
    pub ws_host: Option<String>,
}

impl ClientTransportOptions {
    /// Options for `kind`, everything else unset.
    pub fn new(kind: TransportKind) -> Self {
        ClientTransportOptions {
            kind,
            ..Default::default()
        }
    }

    /// The server port when `--server` names none: 22, 443 for tls and
    /// wss, 80 for ws (iroh dials no port).
    pub fn default_port(&self) -> u16 {
        match self.kind {
            TransportKind::Tcp | TransportKind::Iroh => 22,
            TransportKind::Tls | TransportKind::Wss => 443,
            TransportKind::Ws => 80,
        }
    }

    /// Reject flags the chosen transport does not use, and contradictions.
    pub fn check(&self) -> Result<()> {
        if self.kind == TransportKind::Iroh {
            if self.peer.is_none() {
                return Err(usage(
                    "--transport iroh needs --peer <ticket>: the `ticket:` line `wraith serve --transport iroh` printed",
                ));
            }
            if cfg!(not(feature = "iroh")) {
                return Err(usage(
                    "--transport iroh: this wraith was built without the `iroh` feature",
                ));
            }
        } else {
            if self.peer.is_some() {
                return Err(usage(
                    "--peer needs --transport iroh (other transports take --server)",
                ));
            }
            if self.iroh_relay.is_some() {
                return Err(usage("--iroh-relay needs --transport iroh"));
            }
        }
        if !uses_tls(self.kind) {
            for (set, flag) in [
                (self.tls_server_name.is_some(), "--tls-server-name"),
                (self.tls_ca.is_some(), "--tls-ca"),
                (self.tls_pin.is_some(), "--tls-pin"),
                (self.insecure, "--insecure"),
            ] {
                if set {
                    return Err(usage(format!("{flag} needs --transport tls or wss")));
                }
            }
        }
        if !is_ws(self.kind) {
            for (set, flag) in [
                (self.ws_path.is_some(), "--ws-path"),
                (self.ws_host.is_some(), "--ws-host"),
            ] {
                if set {
                    return Err(usage(format!("{flag} needs --transport ws or wss")));
                }
            }
        }
        check_ws_path(self.ws_path.as_deref())?;
        without_ws(self.kind)?;
        if self.insecure && (self.tls_ca.is_some() || self.tls_pin.is_some()) {
            return Err(usage(
                "--insecure cannot be used with --tls-ca or --tls-pin",
            ));
        }
        if cfg!(not(feature = "tls")) && uses_tls(self.kind) {
            return Err(usage(format!(
                "--transport {}: this wraith was built without the `tls` feature",
                self.kind
            )));
        }
        Ok(())
    }

    /// The transport to `host:port` (tcp and tls; iroh needs [`open`]).
    ///
    /// [`open`]: ClientTransportOptions::open
    pub fn build(&self, host: &str, port: u16) -> Result<Arc<dyn Transport>> {
        self.check()?;
        let proxy = match &self.proxy {
            Some(url) => Some(url.parse::<ProxyUrl>()?),
            None => None,
        };
        match self.kind {
            TransportKind::Tcp => Ok(Arc::new(TcpTransport::new(host, port).with_proxy(proxy))),
            TransportKind::Tls => self.build_tls(host, port, proxy),
            TransportKind::Ws => {
                let tcp = Arc::new(TcpTransport::new(host, port).with_proxy(proxy));
                self.build_ws(tcp, false, host, port)
            }
            TransportKind::Wss => {
                let tls = self.build_tls(host, port, proxy)?;
                self.build_ws(tls, true, host, port)
            }
            TransportKind::Iroh => Err(usage(
                "--transport iroh: the transport is opened from --peer, not --server",
            )),
        }
    }

    /// The transport to the server named by `server` (`--server
    /// host[:port]`, tcp and tls) or by `--peer` (iroh, which binds its
    /// endpoint here). Returns the host and port that name the server in
    /// known_hosts and messages (the endpoint id for iroh).
    pub async fn open(&self, server: Option<&str>) -> Result<(String, u16, Arc<dyn Transport>)> {
        self.check()?;
        if self.kind == TransportKind::Iroh {
            if server.is_some() {
                return Err(usage(
                    "--server is not used with --transport iroh: give the server's ticket with --peer (or drop --transport and give --server iroh:<ticket>)",
                ));
            }
            return self.open_iroh().await;
        }
        let Some(server) = server else {
            return Err(usage(
                "--server is required (or --transport iroh with --peer)",
            ));
        };
        let (host, port) = crate::error::split_host_port(server, self.default_port(), "--server")?;
        let transport = self.build(&host, port)?;
        Ok((host, port, transport))
    }

    #[cfg(feature = "iroh")]
    async fn open_iroh(&self) -> Result<(String, u16, Arc<dyn Transport>)> {
        use super::{IrohEndpoint, IrohOptions, IrohPeer, IrohTransport};
        let peer: IrohPeer = self.peer.as_deref().unwrap_or_default().parse()?;
        let relay = iroh_relay(self.iroh_relay.as_deref())?;
        let mut opts = IrohOptions::new(relay);
        opts.proxy = self.proxy.as_deref().map(str::parse).transpose()?;
        let endpoint = IrohEndpoint::bind(opts).await?;
        let host = peer.id().to_string();
        let transport = IrohTransport::new(endpoint, peer)?;
        Ok((host, 22, Arc::new(transport)))
    }

    #[cfg(not(feature = "iroh"))]
    async fn open_iroh(&self) -> Result<(String, u16, Arc<dyn Transport>)> {
        Err(usage(
            "--transport iroh: this wraith was built without the `iroh` feature",
        ))
    }

    #[cfg(feature = "ws")]
    fn build_ws(
        &self,
        inner: Arc<dyn Transport>,
        secure: bool,
        host: &str,
        port: u16,
    ) -> Result<Arc<dyn Transport>> {
        let path = self.ws_path.as_deref().unwrap_or(DEFAULT_WS_PATH);
        let ws = super::WsTransport::new(inner, secure, host, port, path, self.ws_host.clone())?;
        Ok(Arc::new(ws))
    }

    #[cfg(not(feature = "ws"))]
    fn build_ws(
        &self,
        _: Arc<dyn Transport>,
        _: bool,
        _: &str,
        _: u16,
    ) -> Result<Arc<dyn Transport>> {
        Err(usage(
            "--transport ws: this wraith was built without the `ws` feature",
        ))
    }

    #[cfg(feature = "tls")]
    fn build_tls(
        &self,
        host: &str,
        port: u16,
        proxy: Option<ProxyUrl>,
    ) -> Result<Arc<dyn Transport>> {
        use super::{TlsClientOptions, TlsPin, TlsTransport};
        let mut opts = TlsClientOptions {
            server_name: self.tls_server_name.clone(),
            ca: self.tls_ca.clone(),
            insecure: self.insecure,
            proxy,
            ..Default::default()
        };
        if let Some(pin) = &self.tls_pin {
            opts.pin = Some(pin.parse::<TlsPin>()?);
        }
        if self.insecure {
            tracing::warn!(
                "--insecure: the server's TLS certificate is NOT checked; only the SSH host key protects this connection"
            );
        }
        Ok(Arc::new(TlsTransport::new(host, port, opts)?))
    }

    #[cfg(not(feature = "tls"))]
    fn build_tls(&self, _: &str, _: u16, _: Option<ProxyUrl>) -> Result<Arc<dyn Transport>> {
        Err(usage(
            "--transport tls: this wraith was built without the `tls` feature",
        ))
    }
}

/// How `wraith serve` accepts connections (`--transport` and the flags that
/// configure it).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerTransportOptions {
    /// The transport (`--transport`).
    pub kind: TransportKind,
    /// TLS: certificate chain, PEM, leaf first (`--tls-cert`).
    pub tls_cert: Option<Source>,
    /// TLS: private key, PEM (`--tls-key`).
    pub tls_key: Option<Source>,
    /// TLS: look like a web server (`--stealth`).
    pub stealth: bool,
    /// Stealth: relay non-SSH connections here instead of the 404
    /// (`--stealth-fallback`).
    pub stealth_fallback: Option<String>,
    /// Stealth: time for the handshake and the first request
    /// (`--stealth-timeout`, default 60 s like nginx).
    pub stealth_timeout: Duration,
    /// Stealth: the fallback relay closes a connection idle this long
    /// either way (`--stealth-fallback-idle-timeout`, default 60 s).
    pub stealth_fallback_idle_timeout: Duration,
    /// TLS: handshakes, stealth sniffs, decoy and fallback sessions in
    /// progress at once (`--max-tls-handshakes`, default 1024).
    pub max_tls_handshakes: usize,
    /// TLS: the same for one source network
    /// (`--per-source-max-tls-handshakes`, default 64; 0 = no cap).
    pub per_source_max_tls_handshakes: usize,
    /// What counts as one source network (`--per-source-net-block-size`,
    /// default 32:64).
    pub net_block: crate::limits::NetBlock,
    /// ACME: domain names to get a certificate for (`--acme-domain`).
    pub acme_domains: Vec<String>,
    /// ACME: IP addresses to get a certificate for (`--acme-ip`).
    pub acme_ips: Vec<IpAddr>,
    /// ACME: account contact (`--acme-email`).
    pub acme_email: Option<String>,
    /// ACME: account and certificates across restarts (`--acme-cache`,
    /// default `<data dir>/wraith/acme`).
    pub acme_cache: Option<PathBuf>,
    /// ACME: directory URL (`--acme-directory`, default Let's Encrypt
    /// production).
    pub acme_directory: Option<String>,
    /// ACME: trust this CA for the ACME server's HTTPS (`--acme-ca-root`).
    pub acme_ca_root: Option<PathBuf>,
    /// iroh: `default`, `disabled` or a relay URL (`--iroh-relay`).
    pub iroh_relay: Option<String>,
    /// ws, wss (and tls with stealth): only a WebSocket upgrade on this
    /// path reaches SSH (`--ws-path`, default `/`).
    pub ws_path: Option<String>,
    /// ws, wss: reverse proxies (`ADDR[/BITS]`) whose `X-Forwarded-For`
    /// (or `X-Real-IP`) names the client, for logs, `from=` and per-source
    /// limits (`--ws-forwarded-from`).
    pub ws_forwarded_from: Vec<String>,
    /// tcp, tls: every connection starts with a PROXY protocol header (v1
    /// or v2) from a trusted proxy, and the client it names is the peer
    /// (`--proxy-protocol`).
    pub proxy_protocol: bool,
    /// The proxies trusted to send that header, `ADDR/BITS` or `ADDR`
    /// (`--proxy-protocol-from`; none given: loopback only, 127.0.0.0/8
    /// and ::1).
    pub proxy_protocol_from: Vec<String>,
    /// Stealth: send the `--stealth-fallback` web server a PROXY header
    /// naming the client (`--stealth-fallback-proxy-protocol`).
    pub stealth_fallback_proxy_protocol: Option<super::ProxyHeaderVersion>,
}

impl Default for ServerTransportOptions {
    fn default() -> Self {
        ServerTransportOptions {
            kind: TransportKind::Tcp,
            tls_cert: None,
            tls_key: None,
            stealth: false,
            stealth_fallback: None,
            stealth_timeout: Duration::from_secs(60),
            stealth_fallback_idle_timeout: Duration::from_secs(60),
            max_tls_handshakes: 1024,
            per_source_max_tls_handshakes: 64,
            net_block: crate::limits::NetBlock::default(),
            acme_domains: Vec::new(),
            acme_ips: Vec::new(),
            acme_email: None,
            acme_cache: None,
            acme_directory: None,
            acme_ca_root: None,
            iroh_relay: None,
            ws_path: None,
            ws_forwarded_from: Vec::new(),
            proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
            stealth_fallback_proxy_protocol: None,
        }
    }
}

impl ServerTransportOptions {
    /// Options for `kind`, everything else at its default.
    pub fn new(kind: TransportKind) -> Self {
        ServerTransportOptions {
            kind,
            ..Default::default()
        }
    }

    fn uses_acme(&self) -> bool {
        !self.acme_domains.is_empty() || !self.acme_ips.is_empty()
    }

    /// Reject flags the chosen transport does not use, contradictions, and
    /// a tls server without a certificate.
    pub fn check(&self) -> Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(usage("--tls-cert and --tls-key go together"));
        }
        if self.stealth_fallback.is_some() && !self.stealth {
            return Err(usage("--stealth-fallback needs --stealth"));
        }
        if self.kind != TransportKind::Iroh && self.iroh_relay.is_some() {
            return Err(usage("--iroh-relay needs --transport iroh"));
        }
        if self.stealth_fallback_proxy_protocol.is_some() && self.stealth_fallback.is_none() {
            return Err(usage(
                "--stealth-fallback-proxy-protocol needs --stealth-fallback",
            ));
        }
        if !self.proxy_protocol_from.is_empty() && !self.proxy_protocol {
            return Err(usage("--proxy-protocol-from needs --proxy-protocol"));
        }
        if self.proxy_protocol && self.kind == TransportKind::Iroh {
            return Err(usage(
                "--proxy-protocol needs --transport tcp, tls, ws or wss: iroh connections do not pass through a TCP proxy",
            ));
        }
        self.ingress_proxy_protocol()?;
        if self.kind == TransportKind::Iroh && cfg!(not(feature = "iroh")) {
            return Err(usage(
                "--transport iroh: this wraith was built without the `iroh` feature",
            ));
        }
        without_ws(self.kind)?;
        check_ws_path(self.ws_path.as_deref())?;
        let web_socket = is_ws(self.kind) || self.ws_path.is_some();
        if !self.ws_forwarded_from.is_empty() && !web_socket {
            return Err(usage("--ws-forwarded-from needs --transport ws or wss"));
        }
        #[cfg(feature = "ws")]
        super::ws::parse_cidrs(&self.ws_forwarded_from)?;
        if self.ws_path.is_some() && !is_ws(self.kind) {
            if self.kind != TransportKind::Tls {
                return Err(usage("--ws-path needs --transport ws or wss"));
            }
            if !self.stealth {
                return Err(usage(
                    "--ws-path with --transport tls needs --stealth (or use --transport wss)",
                ));
            }
        }
        if !uses_tls(self.kind) {
            if self.stealth {
                return Err(usage("--stealth needs --transport tls or wss"));
            }
            if self.tls_cert.is_some() {
                return Err(usage(
                    "--tls-cert and --tls-key need --transport tls or wss",
                ));
            }
            if self.uses_acme() {
                return Err(usage(
                    "--acme-domain and --acme-ip need --transport tls or wss",
                ));
            }
            return Ok(());
        }
        if self.tls_cert.is_some() && self.uses_acme() {
            return Err(usage(
                "--tls-cert cannot be used with --acme-domain / --acme-ip",
            ));
        }
        if self.tls_cert.is_none() && !self.uses_acme() {
            return Err(usage(format!(
                "--transport {} needs --tls-cert and --tls-key, or --acme-domain / --acme-ip",
                self.kind
            )));
        }
        if cfg!(not(feature = "tls")) {
            return Err(usage(
                "--transport tls: this wraith was built without the `tls` feature",
            ));
        }
        if cfg!(not(feature = "acme")) && self.uses_acme() {
            return Err(usage(
                "--acme-domain: this wraith was built without the `acme` feature",
            ));
        }
        Ok(())
    }

    /// `--proxy-protocol` with its trusted networks parsed, or `None`
    /// without it. A network that does not parse is a usage error naming
    /// `--proxy-protocol-from`.
    pub(crate) fn ingress_proxy_protocol(
        &self,
    ) -> Result<Option<crate::io::proxy_protocol::ProxyProtocol>> {
        use crate::io::proxy_protocol::ProxyProtocol;
        if !self.proxy_protocol {
            return Ok(None);
        }
        if self.proxy_protocol_from.is_empty() {
            return Ok(Some(ProxyProtocol::new(ProxyProtocol::loopback())));
        }
        let from = self
            .proxy_protocol_from
            .iter()
            .map(|net| {
                net.trim()
                    .parse()
                    .map_err(|e: crate::proto::cidr::CidrError| {
                        Error::config("--proxy-protocol-from", net.clone(), e)
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ProxyProtocol::new(from)))
    }

    /// Listen on `listen` (`--listen`; port 0 picks a free port; default
    /// `0.0.0.0:22`, for iroh any free UDP port). iroh derives its endpoint
    /// key from `host_key`.
    pub async fn bind(
        &self,
        listen: Option<&str>,
        host_key: &russh::keys::PrivateKey,
    ) -> Result<Box<dyn Acceptor>> {
        self.check()?;
        // Socket activation: with no --listen, the socket systemd passed.
        let socket = match listen {
            Some(l) => l,
            None if super::systemd_sockets() > 0 => super::LISTEN_SYSTEMD,
            None => DEFAULT_LISTEN,
        };
        if self.kind == TransportKind::Iroh && socket == super::LISTEN_SYSTEMD {
            return Err(usage(
                "--listen systemd: iroh binds its own UDP socket; socket activation is for tcp, tls, ws and wss",
            ));
        }
        match self.kind {
            TransportKind::Tcp => match self.ingress_proxy_protocol()? {
                None => Ok(Box::new(TcpAcceptor::bind(socket).await?)),
                Some(pp) => Ok(Box::new(TcpAcceptor::bind_behind_proxy(socket, pp).await?)),
            },
            TransportKind::Tls | TransportKind::Wss => self.bind_tls(socket).await,
            TransportKind::Ws => self.bind_ws(socket).await,
            TransportKind::Iroh => self.bind_iroh(listen, host_key).await,
        }
    }

    #[cfg(feature = "iroh")]
    async fn bind_iroh(
        &self,
        listen: Option<&str>,
        host_key: &russh::keys::PrivateKey,
    ) -> Result<Box<dyn Acceptor>> {
        use super::{IrohAcceptor, IrohEndpoint, IrohOptions, derive_secret_key};
        let relay = iroh_relay(self.iroh_relay.as_deref())?;
        let mut opts = IrohOptions::new(relay);
        opts.secret_key = Some(derive_secret_key(host_key)?);
        opts.bind = match listen {
            Some(l) => Some(l.parse().map_err(|_| {
                Error::Config {
                    flag: "--listen",
                    value: l.to_string(),
                    reason:
                        "with --transport iroh give the UDP address as IP:PORT, e.g. 0.0.0.0:4433"
                            .into(),
                }
            })?),
            None => None,
        };
        let endpoint = IrohEndpoint::bind(opts).await?;
        let ticket = endpoint.ticket().await;
        Ok(Box::new(IrohAcceptor::new(endpoint, ticket)))
    }

    #[cfg(not(feature = "iroh"))]
    async fn bind_iroh(
        &self,
        _: Option<&str>,
        _: &russh::keys::PrivateKey,
    ) -> Result<Box<dyn Acceptor>> {
        Err(usage(
            "--transport iroh: this wraith was built without the `iroh` feature",
        ))
    }

    #[cfg(feature = "tls")]
    async fn bind_tls(&self, listen: &str) -> Result<Box<dyn Acceptor>> {
        use super::{CertSource, StealthOptions, TlsAcceptor, TlsServerOptions};
        let source = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => CertSource::Pem {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => self.acme_source()?,
        };
        let mut opts = TlsServerOptions::new(source);
        opts.max_handshakes = self.max_tls_handshakes.max(1);
        opts.max_handshakes_per_source = self.per_source_max_tls_handshakes;
        opts.net_block = self.net_block;
        #[cfg(feature = "ws")]
        if self.kind == TransportKind::Wss || self.ws_path.is_some() {
            opts.websocket = Some(
                self.ws_path
                    .clone()
                    .unwrap_or_else(|| DEFAULT_WS_PATH.to_string()),
            );
            opts.websocket_forwarded_from = super::ws::parse_cidrs(&self.ws_forwarded_from)?;
        }
        opts.proxy_protocol = self.ingress_proxy_protocol()?;
        if self.stealth {
            opts.stealth = Some(StealthOptions {
                fallback: self.stealth_fallback.clone(),
                header_timeout: self.stealth_timeout,
                fallback_idle_timeout: self.stealth_fallback_idle_timeout,
                fallback_proxy_protocol: self.stealth_fallback_proxy_protocol,
                ..Default::default()
            });
        }
        Ok(Box::new(TlsAcceptor::bind(listen, opts).await?))
    }

    #[cfg(feature = "ws")]
    async fn bind_ws(&self, listen: &str) -> Result<Box<dyn Acceptor>> {
        use super::{WsAcceptor, WsServerOptions};
        let path = self.ws_path.as_deref().unwrap_or(DEFAULT_WS_PATH);
        let mut opts = WsServerOptions::new(path);
        opts.max_handshakes = self.max_tls_handshakes.max(1);
        opts.max_handshakes_per_source = self.per_source_max_tls_handshakes;
        opts.net_block = self.net_block;
        opts.forwarded_from = self.ws_forwarded_from.clone();
        opts.proxy_protocol = self.ingress_proxy_protocol()?;
        Ok(Box::new(WsAcceptor::bind(listen, opts).await?))
    }

    #[cfg(not(feature = "ws"))]
    async fn bind_ws(&self, _: &str) -> Result<Box<dyn Acceptor>> {
        Err(usage(
            "--transport ws: this wraith was built without the `ws` feature",
        ))
    }

    #[cfg(not(feature = "tls"))]
    async fn bind_tls(&self, _: &str) -> Result<Box<dyn Acceptor>> {
        Err(usage(
            "--transport tls: this wraith was built without the `tls` feature",
        ))
    }

    #[cfg(feature = "acme")]
    fn acme_source(&self) -> Result<super::CertSource> {
        use super::{AcmeOptions, CertSource, LETS_ENCRYPT_PRODUCTION};
        let cache = match &self.acme_cache {
            Some(c) => c.clone(),
            None => dirs::data_dir()
                .map(|d| d.join("wraith").join("acme"))
                .ok_or_else(|| {
                    usage("no data directory for the ACME cache: pass --acme-cache <dir>")
                })?,
        };
        let mut opts = AcmeOptions::new(self.acme_domains.clone(), self.acme_ips.clone(), cache);
        opts.email = self.acme_email.clone();
        opts.directory = self
            .acme_directory
            .clone()
            .unwrap_or_else(|| LETS_ENCRYPT_PRODUCTION.to_string());
        opts.ca_root = self.acme_ca_root.clone();
        Ok(CertSource::Acme(opts))
    }

    #[cfg(all(feature = "tls", not(feature = "acme")))]
    fn acme_source(&self) -> Result<super::CertSource> {
        Err(usage(
            "--acme-domain: this wraith was built without the `acme` feature",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<()>) -> String {
        match r {
            Err(Error::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn transport_names_parse() {
        assert_eq!("tcp".parse::<TransportKind>().unwrap(), TransportKind::Tcp);
        assert_eq!("tls".parse::<TransportKind>().unwrap(), TransportKind::Tls);
        let e = "quic".parse::<TransportKind>().unwrap_err().to_string();
        assert_eq!(
            "iroh".parse::<TransportKind>().unwrap(),
            TransportKind::Iroh
        );
        assert_eq!(
            e,
            "invalid --transport value \"quic\": expected tcp, tls, ws, wss or iroh"
        );
    }

    #[test]
    fn client_tls_flags_need_tls() {
        let mut o = ClientTransportOptions::new(TransportKind::Tcp);
        assert_eq!(o.default_port(), 22);
        o.check().unwrap();
        o.tls_pin = Some("sha256/x".into());
        assert_eq!(msg(o.check()), "--tls-pin needs --transport tls or wss");
        o.kind = TransportKind::Tls;
        assert_eq!(o.default_port(), 443);
        o.insecure = true;
        assert_eq!(
            msg(o.check()),
            "--insecure cannot be used with --tls-ca or --tls-pin"
        );
    }

    #[test]
    fn client_proxy_is_parsed_when_building() {
        let mut o = ClientTransportOptions::new(TransportKind::Tcp);
        o.proxy = Some("ftp://x:1".into());
        let e = o.build("h", 22).err().unwrap().to_string();
        assert!(e.contains("--proxy"), "{e}");
        o.proxy = Some("socks5://127.0.0.1:1080".into());
        assert_eq!(o.build("h", 22).unwrap().describe(), "h:22");
    }

    #[test]
    fn iroh_flags_need_iroh() {
        let mut c = ClientTransportOptions::new(TransportKind::Tcp);
        c.peer = Some("x".into());
        assert_eq!(
            msg(c.check()),
            "--peer needs --transport iroh (other transports take --server)"
        );
        c.peer = None;
        c.iroh_relay = Some("disabled".into());
        assert_eq!(msg(c.check()), "--iroh-relay needs --transport iroh");
        let mut i = ClientTransportOptions::new(TransportKind::Iroh);
        assert!(msg(i.check()).starts_with("--transport iroh needs --peer <ticket>"));
        i.peer = Some("x".into());
        let mut s = ServerTransportOptions::new(TransportKind::Tls);
        s.iroh_relay = Some("disabled".into());
        assert_eq!(msg(s.check()), "--iroh-relay needs --transport iroh");
        let server = ServerTransportOptions::new(TransportKind::Iroh);
        if cfg!(feature = "iroh") {
            i.check().unwrap();
            server.check().unwrap();
        } else {
            let without = "--transport iroh: this wraith was built without the `iroh` feature";
            assert_eq!(msg(i.check()), without);
            assert_eq!(msg(server.check()), without);
        }
    }

    #[test]
    fn server_flags_need_tls_and_a_certificate() {
        let mut o = ServerTransportOptions::new(TransportKind::Tcp);
        o.check().unwrap();
        o.stealth = true;
        assert_eq!(msg(o.check()), "--stealth needs --transport tls or wss");
        o.stealth = false;
        o.acme_domains = vec!["example.com".into()];
        assert_eq!(
            msg(o.check()),
            "--acme-domain and --acme-ip need --transport tls or wss"
        );
        o.acme_domains.clear();
        o.tls_cert = Some(Source::Bytes(Vec::new()));
        assert_eq!(msg(o.check()), "--tls-cert and --tls-key go together");
        o.tls_key = Some(Source::Bytes(Vec::new()));
        assert_eq!(
            msg(o.check()),
            "--tls-cert and --tls-key need --transport tls or wss"
        );
        let mut t = ServerTransportOptions::new(TransportKind::Tls);
        assert_eq!(
            msg(t.check()),
            "--transport tls needs --tls-cert and --tls-key, or --acme-domain / --acme-ip"
        );
        t.stealth_fallback = Some("127.0.0.1:80".into());
        assert_eq!(msg(t.check()), "--stealth-fallback needs --stealth");
    }

    #[test]
    #[cfg(feature = "ws")]
    fn websocket_flags_need_a_websocket_transport() {
        let mut c = ClientTransportOptions::new(TransportKind::Tcp);
        c.ws_path = Some("/x".into());
        assert_eq!(msg(c.check()), "--ws-path needs --transport ws or wss");
        c.ws_path = None;
        c.ws_host = Some("cdn.example".into());
        assert_eq!(msg(c.check()), "--ws-host needs --transport ws or wss");
        let mut w = ClientTransportOptions::new(TransportKind::Ws);
        assert_eq!(w.default_port(), 80);
        w.tls_pin = Some("sha256/x".into());
        assert_eq!(msg(w.check()), "--tls-pin needs --transport tls or wss");
        let mut ws = ClientTransportOptions::new(TransportKind::Wss);
        assert_eq!(ws.default_port(), 443);
        ws.ws_path = Some("no-slash".into());
        let e = ws.check().unwrap_err().to_string();
        if cfg!(feature = "ws") {
            assert_eq!(e, "invalid --ws-path value \"no-slash\": must start with /");
        }

        let mut s = ServerTransportOptions::new(TransportKind::Tcp);
        s.ws_path = Some("/x".into());
        assert_eq!(msg(s.check()), "--ws-path needs --transport ws or wss");
        s.kind = TransportKind::Tls;
        s.tls_cert = Some(Source::Bytes(Vec::new()));
        s.tls_key = Some(Source::Bytes(Vec::new()));
        assert_eq!(
            msg(s.check()),
            "--ws-path with --transport tls needs --stealth (or use --transport wss)"
        );
        let mut plain = ServerTransportOptions::new(TransportKind::Ws);
        plain.stealth = true;
        assert_eq!(msg(plain.check()), "--stealth needs --transport tls or wss");
        let wss = ServerTransportOptions::new(TransportKind::Wss);
        assert_eq!(
            msg(wss.check()),
            "--transport wss needs --tls-cert and --tls-key, or --acme-domain / --acme-ip"
        );
    }

    #[test]
    #[cfg(feature = "tls")]
    fn proxy_protocol_flags_are_checked() {
        let mut o = ServerTransportOptions::new(TransportKind::Tcp);
        o.proxy_protocol_from = vec!["10.0.0.0/8".into()];
        assert_eq!(
            msg(o.check()),
            "--proxy-protocol-from needs --proxy-protocol"
        );
        o.proxy_protocol = true;
        o.check().unwrap();
        let pp = o.ingress_proxy_protocol().unwrap().unwrap();
        assert!(pp.allows("10.2.3.4".parse().unwrap()));
        assert!(!pp.allows("127.0.0.1".parse().unwrap()));
        o.proxy_protocol_from = vec!["10.0.0.0/33".into()];
        let e = o.check().unwrap_err().to_string();
        assert!(
            e.starts_with("invalid --proxy-protocol-from value \"10.0.0.0/33\""),
            "{e}"
        );
        o.proxy_protocol_from.clear();
        let pp = o.ingress_proxy_protocol().unwrap().unwrap();
        assert!(pp.allows("127.0.0.9".parse().unwrap()));
        assert!(pp.allows("::1".parse().unwrap()));
        assert!(!pp.allows("192.0.2.1".parse().unwrap()));
        o.kind = TransportKind::Iroh;
        assert!(
            msg(o.check()).starts_with("--proxy-protocol needs --transport tcp, tls, ws or wss"),
            "{:?}",
            o.check()
        );
        let mut t = ServerTransportOptions::new(TransportKind::Tls);
        t.tls_cert = Some(Source::Bytes(Vec::new()));
        t.tls_key = Some(Source::Bytes(Vec::new()));
        t.stealth = true;
        t.stealth_fallback_proxy_protocol = Some(crate::transport::ProxyHeaderVersion::V1);
        assert_eq!(
            msg(t.check()),
            "--stealth-fallback-proxy-protocol needs --stealth-fallback"
        );
        t.stealth_fallback = Some("127.0.0.1:80".into());
        t.check().unwrap();
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn server_tls_with_unreadable_certificate_names_the_flag() {
        let mut o = ServerTransportOptions::new(TransportKind::Tls);
        o.tls_cert = Some(Source::Bytes(b"not pem".to_vec()));
        o.tls_key = Some(Source::Bytes(b"not pem".to_vec()));
        let key = crate::keys::generate_ed25519("host").unwrap();
        let e = o
            .bind(Some("127.0.0.1:0"), &key)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("cannot read TLS certificate from in-memory data (--tls-cert)"),
            "{e}"
        );
    }
}
