//! The server side: certificate sources, the rustls server config, and
//! the accept loop with its handshake limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::ResolvesServerCert;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::client::read_certs;
use super::{ALPN_HTTP1, ALPN_WEB, no_protocol_versions, provider};
use crate::error::{Error, Reason, Result};
use crate::io::Prefixed;
use crate::io::proxy_protocol::{ProxyProtocol, ProxyRefused, log_refusal};
use crate::limits::{LogRate, PerSource, SourceKey};
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
            proxy_protocol: None,
        }
    }
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
            let chain = read_certs(cert).map_err(|reason| Error::KeyFile {
                what: "TLS certificate",
                path: cert.origin(),
                flag: "--tls-cert",
                reason,
            })?;
            let bad_key = |reason: Reason| Error::KeyFile {
                what: "TLS private key",
                path: key.origin(),
                flag: "--tls-key",
                reason,
            };
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
                return Err(Error::Config {
                    flag: "--acme-domain",
                    value: String::new(),
                    reason: "ACME is not running".into(),
                });
            }
        },
    };
    let alpn = if opts.stealth.is_some() {
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
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(
            listener,
            tokio_rustls::TlsAcceptor::from(config),
            opts,
            tx,
        ));
        Ok(TlsAcceptor {
            local,
            rx,
            task,
            #[cfg(feature = "acme")]
            _acme: acme,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    opts: TlsServerOptions,
    tx: mpsc::Sender<(BoxStream, PeerInfo)>,
) {
    let in_flight = Arc::new(Semaphore::new(opts.max_handshakes));
    let per_source = PerSource::new(opts.max_handshakes_per_source);
    let stealth = opts.stealth.map(Arc::new);
    let proxy = opts.proxy_protocol.map(Arc::new);
    let refusals = Arc::new(LogRate::new(Duration::from_secs(10)));
    let net_block = opts.net_block;
    let mut listener = listener;
    let on_conn = |(tcp, tcp_peer): (TcpStream, SocketAddr)| {
        // Closing at once costs the peer a connection and us nothing; the
        // refusal is logged now and then, not once per connection.
        if let Some(pp) = &proxy
            && !pp.allows(tcp_peer.ip())
        {
            log_refusal(&refusals, tcp_peer, &ProxyRefused::NotAllowed);
            return;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if let Some(skipped) = refusals.check() {
                tracing::warn!(
                    skipped,
                    "too many TLS handshakes in flight (--max-tls-handshakes); connections dropped"
                );
            }
            return;
        };
        SocketOpts::default().apply(&tcp);
        let local = tcp.local_addr().ok();
        let tls = tls.clone();
        let tx = tx.clone();
        let stealth = stealth.clone();
        let proxy = proxy.clone();
        let per_source = per_source.clone();
        let refusals = refusals.clone();
        // nginx 1.22 counts the handshake against client_header_timeout.
        let timeout = stealth
            .as_ref()
            .map_or(opts.handshake_timeout, |s| s.header_timeout);
        tokio::spawn(async move {
            // Behind a proxy, everything from here on (the per-source cap,
            // PeerInfo, the fallback's own PROXY header) is about the
            // client the header names.
            let (tcp, peer) = match &proxy {
                None => (Prefixed::new(Vec::new(), tcp), tcp_peer),
                Some(pp) => match pp.accept(tcp, tcp_peer).await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        log_refusal(&refusals, tcp_peer, &e);
                        return;
                    }
                },
            };
            let source = SourceKey::Net(net_block.source_of(peer.ip()));
            let Some(source_slot) = per_source.try_take(&source) else {
                if let Some(skipped) = refusals.check() {
                    tracing::info!(remote_addr = %peer.ip(), skipped, "too many TLS handshakes from one source (--per-source-max-tls-handshakes); connections dropped");
                }
                return;
            };
            let permit = (permit, source_slot);
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
            if stream.get_ref().1.alpn_protocol() == Some(crate::transport::acme::ACME_TLS_ALPN) {
                // A TLS-ALPN-01 validation: the handshake was the answer.
                let mut stream = stream;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                return;
            }
            let sni = stream.get_ref().1.server_name().map(str::to_string);
            let mut info = PeerInfo::socket(peer, TransportKind::Tls);
            info.sni = sni;
            let stream: BoxStream = match stealth {
                None => Box::new(stream),
                Some(cfg) => {
                    let ends = stealth::Ends {
                        client: peer,
                        local,
                    };
                    match stealth::sniff(stream, &cfg, permit, ends).await {
                        Some(s) => s,
                        None => return,
                    }
                }
            };
            // The receiver is gone only when the server stopped.
            let _ = tx.send((stream, info)).await;
        });
    };
    crate::io::accept_loop(&mut listener, "tls", std::future::pending(), on_conn).await;
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
        format!("tls://{}", self.local)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.local)
    }
}
