//! The server side: certificate sources, the rustls server config, and
//! the accept loop with its handshake limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::ResolvesServerCert;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::client::read_certs;
use super::{ALPN_HTTP1, ALPN_WEB, no_protocol_versions, provider};
use crate::error::{Error, Reason, Result};
use crate::io::Prefixed;
use crate::io::accept::OpeningGate;
use crate::io::proxy_protocol::{ProxyProtocol, log_refusal};
use crate::limits::{PerSource, SourceKey};
use crate::source::Source;
use crate::transport::stealth::{self, StealthOptions};
use crate::transport::{Acceptor, BoxFuture, BoxStream, PeerInfo, SocketOpts, TransportKind};

/// Where the server's certificate comes from.
#[derive(Clone)]
#[non_exhaustive]
pub enum CertSource {
    /// PEM files or their contents (`--tls-cert`, `--tls-key`).
    Pem {
        /// Certificate chain, leaf first.
        cert: Source,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: Source,
    },
    /// A resolver that can swap certificates at run time.
    Resolver(Arc<dyn ResolvesServerCert>),
    /// Certificates from an ACME CA, obtained and renewed in the background
    /// once the acceptor listens (TLS-ALPN-01 on this port).
    #[cfg(feature = "acme")]
    Acme(crate::transport::acme::AcmeOptions),
}

impl std::fmt::Debug for CertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertSource::Pem { cert, key } => f
                .debug_struct("Pem")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            CertSource::Resolver(_) => f.write_str("Resolver"),
            #[cfg(feature = "acme")]
            CertSource::Acme(_) => f.write_str("Acme"),
        }
    }
}

/// Server-side TLS settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsServerOptions {
    /// The certificate.
    pub cert: CertSource,
    /// Stealth mode (`--stealth`): only `SSH-2.0-` reaches SSH.
    pub stealth: Option<StealthOptions>,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Handshakes (and stealth sniffs, decoy and fallback sessions) in
    /// flight at once (`--max-tls-handshakes`, default 1024); more
    /// connections are closed at once.
    pub max_handshakes: usize,
    /// The same, for one source network (`--per-source-max-tls-handshakes`,
    /// default 64; 0 = no per-source cap).
    pub max_handshakes_per_source: usize,
    /// What counts as one source (`--per-source-net-block-size`, default
    /// 32:64).
    pub net_block: crate::limits::NetBlock,
    /// wss (`--ws-path`): only a WebSocket upgrade on this path reaches
    /// SSH; every other request gets nginx's answer (or the stealth
    /// fallback).
    #[cfg(feature = "ws")]
    pub websocket: Option<String>,
    /// wss: reverse proxies (`ADDR/BITS`) whose `X-Forwarded-For` names
    /// the client (`--ws-forwarded-from`).
    #[cfg(feature = "ws")]
    pub(crate) websocket_forwarded_from: Vec<crate::proto::cidr::Cidr>,
    /// `--proxy-protocol`: a PROXY header from a trusted proxy comes
    /// before the TLS handshake, and names the client.
    pub(crate) proxy_protocol: Option<ProxyProtocol>,
}

impl TlsServerOptions {
    /// Defaults: 10 s handshakes (60 s in stealth mode, like nginx), 1024 in
    /// flight and 64 per source network, no stealth.
    pub fn new(cert: CertSource) -> Self {
        TlsServerOptions {
            cert,
            stealth: None,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            max_handshakes_per_source: 64,
            net_block: crate::limits::NetBlock::default(),
            #[cfg(feature = "ws")]
            websocket: None,
            #[cfg(feature = "ws")]
            websocket_forwarded_from: Vec::new(),
            proxy_protocol: None,
        }
    }

    fn loop_options(&self) -> LoopOptions {
        let stealth = self.stealth.clone().map(Arc::new);
        // nginx 1.22 counts the handshake against client_header_timeout.
        let handshake_timeout = stealth
            .as_ref()
            .map_or(self.handshake_timeout, |s| s.header_timeout);
        #[cfg(feature = "ws")]
        if let Some(path) = &self.websocket {
            let web = stealth.unwrap_or_else(|| {
                Arc::new(StealthOptions {
                    header_timeout: self.handshake_timeout,
                    ..StealthOptions::default()
                })
            });
            return LoopOptions {
                kind: TransportKind::Wss,
                handshake_timeout,
                max_handshakes: self.max_handshakes,
                max_handshakes_per_source: self.max_handshakes_per_source,
                net_block: self.net_block,
                gate: Gate::WebSocket {
                    path: path.as_str().into(),
                    web,
                    forwarded_from: self.websocket_forwarded_from.clone().into(),
                },
                proxy_protocol: self.proxy_protocol.clone(),
            };
        }
        LoopOptions {
            kind: TransportKind::Tls,
            handshake_timeout,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_source: self.max_handshakes_per_source,
            net_block: self.net_block,
            gate: match stealth {
                Some(s) => Gate::SshBanner(s),
                None => Gate::Open,
            },
            proxy_protocol: self.proxy_protocol.clone(),
        }
    }
}

/// What a connection must show, after the TLS handshake if any, before SSH
/// gets it.
pub(crate) enum Gate {
    /// Nothing: SSH starts at once.
    Open,
    /// Stealth: the client's first bytes are `SSH-2.0-`.
    SshBanner(Arc<StealthOptions>),
    /// A WebSocket upgrade on `path`; the rest is for the web (`web`).
    /// `forwarded_from`: proxies whose `X-Forwarded-For` names the client.
    #[cfg(feature = "ws")]
    WebSocket {
        path: Arc<str>,
        web: Arc<StealthOptions>,
        forwarded_from: Arc<[crate::proto::cidr::Cidr]>,
    },
}

/// How the accept loop treats connections.
pub(crate) struct LoopOptions {
    /// What the peers arrive over, for [`PeerInfo`].
    pub(crate) kind: TransportKind,
    /// Time for the TLS handshake (and, with a gate, the first request).
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
    pub(crate) max_handshakes_per_source: usize,
    pub(crate) net_block: crate::limits::NetBlock,
    pub(crate) gate: Gate,
    /// `--proxy-protocol`: the PROXY header comes first and names the client.
    pub(crate) proxy_protocol: Option<ProxyProtocol>,
}

/// Build the rustls server config for `opts`; `acme` is the resolver when
/// the certificate comes from ACME.
pub(super) fn server_config(
    opts: &TlsServerOptions,
    #[cfg(feature = "acme")] acme: Option<Arc<crate::transport::acme::AcmeCerts>>,
) -> Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(no_protocol_versions)?
        .with_no_client_auth();
    let mut config = match &opts.cert {
        CertSource::Pem { cert, key } => {
            let chain = read_certs(cert).map_err(cert.failed("TLS certificate", "--tls-cert"))?;
            let bad_key = key.failed("TLS private key", "--tls-key");
            let bytes = key.read().map_err(bad_key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| bad_key(Reason::with_source(format!("no PEM private key: {e}"), e)))?;
            builder.with_single_cert(chain, key_der).map_err(|e| {
                bad_key(Reason::with_source(
                    format!("does not fit the certificate: {e}"),
                    e,
                ))
            })?
        }
        CertSource::Resolver(r) => builder.with_cert_resolver(r.clone()),
        #[cfg(feature = "acme")]
        CertSource::Acme(_) => match acme {
            Some(r) => builder.with_cert_resolver(r),
            None => {
                return Err(Error::config("--acme-domain", "", "ACME is not running"));
            }
        },
    };
    #[cfg(feature = "ws")]
    let web = opts.websocket.is_some();
    #[cfg(not(feature = "ws"))]
    let web = false;
    let alpn = if opts.stealth.is_some() || web {
        ALPN_HTTP1
    } else {
        ALPN_WEB
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    #[cfg(feature = "acme")]
    if matches!(opts.cert, CertSource::Acme(_)) {
        // Only validators offer it, and they offer nothing else.
        config
            .alpn_protocols
            .push(crate::transport::acme::ACME_TLS_ALPN.to_vec());
    }
    Ok(config)
}

/// Accepts TLS connections. Dropping it stops the accept loop.
pub struct TlsAcceptor {
    local: SocketAddr,
    scheme: &'static str,
    rx: mpsc::Receiver<(BoxStream, PeerInfo)>,
    task: tokio::task::JoinHandle<()>,
    #[cfg(feature = "acme")]
    _acme: Option<crate::transport::acme::Acme>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsAcceptor {
    /// Bind `addr` and start accepting; fails on unreadable certificate or
    /// key files or a port in use.
    pub async fn bind(addr: &str, opts: TlsServerOptions) -> Result<Self> {
        #[cfg(feature = "acme")]
        let acme_certs = match &opts.cert {
            CertSource::Acme(_) => Some(Arc::new(crate::transport::acme::AcmeCerts::default())),
            _ => None,
        };
        let config = Arc::new(server_config(
            &opts,
            #[cfg(feature = "acme")]
            acme_certs.clone(),
        )?);
        let (listener, local) = crate::transport::tcp::bind_listener(addr).await?;
        // ACME starts only now: the CA validates through this listener.
        #[cfg(feature = "acme")]
        let acme = match (&opts.cert, acme_certs) {
            (CertSource::Acme(o), Some(certs)) => {
                Some(crate::transport::acme::Acme::start(o.clone(), certs)?)
            }
            _ => None,
        };
        let lo = opts.loop_options();
        let scheme = if lo.kind == TransportKind::Tls {
            "tls"
        } else {
            "wss"
        };
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(
            listener,
            Some(tokio_rustls::TlsAcceptor::from(config)),
            lo,
            tx,
        ));
        Ok(TlsAcceptor {
            local,
            scheme,
            rx,
            task,
            #[cfg(feature = "acme")]
            _acme: acme,
        })
    }

    /// Accept on `listener` without TLS (`ws`): connections go through
    /// `lo`'s gate only.
    #[cfg(feature = "ws")]
    pub(crate) fn plain(
        listener: TcpListener,
        local: SocketAddr,
        lo: LoopOptions,
        scheme: &'static str,
    ) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(listener, None, lo, tx));
        TlsAcceptor {
            local,
            scheme,
            rx,
            task,
            #[cfg(feature = "acme")]
            _acme: None,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    lo: LoopOptions,
    tx: mpsc::Sender<(BoxStream, PeerInfo)>,
) {
    let admission = Arc::new(OpeningGate::new(
        lo.proxy_protocol.map(Arc::new),
        lo.max_handshakes,
        lo.kind.name(),
        "too many handshakes in flight (--max-tls-handshakes); connections dropped",
    ));
    let per_source = PerSource::new(lo.max_handshakes_per_source);
    let gate = Arc::new(lo.gate);
    let (kind, timeout, net_block) = (lo.kind, lo.handshake_timeout, lo.net_block);
    let mut listener = listener;
    let on_conn = |(tcp, tcp_peer): (TcpStream, SocketAddr)| {
        let Some(permit) = admission.admit(tcp_peer) else {
            return;
        };
        SocketOpts::STANDARD.apply(&tcp);
        let local = tcp.local_addr().ok();
        let tls = tls.clone();
        let tx = tx.clone();
        let gate = gate.clone();
        let admission = admission.clone();
        let per_source = per_source.clone();
        tokio::spawn(async move {
            // Behind a proxy, everything from here on (the per-source cap,
            // PeerInfo, the fallback's own PROXY header) is about the
            // client the header names.
            let (tcp, peer) = match admission.proxy() {
                None => (Prefixed::new(Vec::new(), tcp), tcp_peer),
                Some(pp) => match pp.accept(tcp, tcp_peer).await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        log_refusal(admission.refusals(), tcp_peer, &e);
                        return;
                    }
                },
            };
            let source = SourceKey::Net(net_block.source_of(peer.ip()));
            let Some(source_slot) = per_source.try_take(&source) else {
                if let Some(skipped) = admission.refusals().check() {
                    tracing::info!(remote_addr = %peer.ip(), skipped, transport = %kind, "too many handshakes from one source (--per-source-max-tls-handshakes); connections dropped");
                }
                return;
            };
            let permit = (permit, source_slot);
            let mut info = PeerInfo::socket(peer, kind);
            let stream: BoxStream = match tls {
                None => Box::new(tcp),
                Some(tls) => {
                    let stream = match tokio::time::timeout(timeout, tls.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(remote_addr = %peer.ip(), error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(remote_addr = %peer.ip(), "TLS handshake timed out");
                            return;
                        }
                    };
                    #[cfg(feature = "acme")]
                    if stream.get_ref().1.alpn_protocol()
                        == Some(crate::transport::acme::ACME_TLS_ALPN)
                    {
                        // A TLS-ALPN-01 validation: the handshake was the answer.
                        let mut stream = stream;
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                        return;
                    }
                    info.sni = stream.get_ref().1.server_name().map(str::to_string);
                    Box::new(stream)
                }
            };
            let ends = stealth::Ends {
                client: peer,
                local,
            };
            let stream: BoxStream = match &*gate {
                Gate::Open => stream,
                Gate::SshBanner(cfg) => match stealth::sniff(stream, cfg, permit, ends).await {
                    Some(s) => s,
                    None => return,
                },
                #[cfg(feature = "ws")]
                Gate::WebSocket {
                    path,
                    web,
                    forwarded_from,
                } => match crate::transport::ws::upgrade(stream, path, web, permit, ends).await {
                    Some((s, forwarded)) => {
                        if let Some(ip) = forwarded
                            && crate::transport::ws::trusted(forwarded_from, peer.ip())
                        {
                            info.remote_addr = Some(SocketAddr::new(ip, 0));
                        }
                        s
                    }
                    None => return,
                },
            };
            // The receiver is gone only when the server stopped.
            let _ = tx.send((stream, info)).await;
        });
    };
    crate::io::accept_loop(&mut listener, kind.name(), std::future::pending(), on_conn).await;
}

impl Acceptor for TlsAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxStream, PeerInfo)>> {
        Box::pin(async move {
            self.rx.recv().await.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "TLS accept loop ended")
            })
        })
    }

    fn describe(&self) -> String {
        format!("{}://{}", self.scheme, self.local)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.local)
    }
}
