//! The TLS transport: SSH inside TLS (tokio-rustls, aws-lc-rs provider, the
//! one russh already links), so the server can sit on 443 and look like a
//! web server.
//!
//! Client: SNI, certificate verification against the webpki roots or a CA
//! file, an optional HPKP-style pin of the leaf's public key, or none at all
//! (`--insecure`). The SSH host-key check still runs inside TLS whatever the
//! choice here. Server: handshakes run in their own tasks with a timeout, so
//! a slow or silent client never holds up the accept loop; finished streams
//! reach [`Acceptor::accept`] through a bounded channel. In stealth mode a
//! connection reaches SSH only once its first bytes say `SSH-2.0-`.
//!
//! The rustls provider is always passed explicitly (never the process-wide
//! default), so no "no crypto provider installed" panic can happen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ResolvesServerCert;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::proxy::{self, ProxyUrl};
use super::stealth::{self, StealthOptions};
use super::{Acceptor, BoxFuture, BoxStream, PeerInfo, SocketOpts, Transport, TransportKind};
use crate::error::{Error, Result};
use crate::limits::{LogRate, PerSource, SourceKey};
use crate::proto::host_port::HostPort;
use crate::source::Source;

/// ALPN a plain TLS server offers: what a web server with HTTP/2 offers.
const ALPN_WEB: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN in stealth mode: the decoy answers HTTP/1.1 only (like nginx without
/// `http2`), so offering h2 would be a tell.
const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate pin: SHA-256 of the leaf certificate's SubjectPublicKeyInfo
/// (`--tls-pin sha256/<base64>`, as in HPKP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPin([u8; 32]);

impl TlsPin {
    /// The pin of a DER certificate (e.g. to print it for users).
    pub fn of_certificate(der: &[u8]) -> Result<TlsPin> {
        let cert = CertificateDer::from(der);
        let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| Error::Config {
            flag: "--tls-cert",
            value: String::new(),
            reason: format!("not a valid X.509 certificate: {e}"),
        })?;
        Ok(TlsPin(
            Sha256::digest(ee.subject_public_key_info().as_ref()).into(),
        ))
    }
}

impl std::fmt::Display for TlsPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sha256/{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

impl std::str::FromStr for TlsPin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config {
            flag: "--tls-pin",
            value: s.to_string(),
            reason: "expected sha256/<base64 of the SHA-256 of the certificate's public key>"
                .into(),
        };
        let b64 = s.strip_prefix("sha256/").ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        Ok(TlsPin(bytes.try_into().map_err(|_| bad())?))
    }
}

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsClientOptions {
    /// SNI and the name the certificate must be valid for
    /// (`--tls-server-name`); `None` means the server host.
    pub server_name: Option<String>,
    /// Trust only the CA certificates in this PEM (`--tls-ca`) instead of
    /// the webpki roots.
    pub ca: Option<Source>,
    /// Accept only a leaf with this public key (`--tls-pin`); replaces the
    /// CA check unless `ca` is also given.
    pub pin: Option<TlsPin>,
    /// No certificate check at all (`--insecure`).
    pub insecure: bool,
    /// Dial through this proxy (`--proxy`).
    pub proxy: Option<ProxyUrl>,
}

/// Dials `host:port`, then TLS, then hands the stream to SSH.
pub struct TlsTransport {
    host: String,
    port: u16,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    proxy: Option<ProxyUrl>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("server", &self.describe())
            .finish_non_exhaustive()
    }
}

impl TlsTransport {
    /// Build the transport; fails on a bad server name or CA file.
    pub fn new(host: impl Into<String>, port: u16, opts: TlsClientOptions) -> Result<Self> {
        let host = host.into();
        let name_str = opts.server_name.clone().unwrap_or_else(|| host.clone());
        let flag = if opts.server_name.is_some() {
            "--tls-server-name"
        } else {
            "--server"
        };
        let name = ServerName::try_from(name_str.clone()).map_err(|_| Error::Config {
            flag,
            value: name_str.clone(),
            reason: "not a valid TLS server name".into(),
        })?;
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = if opts.insecure {
            Arc::new(NoVerification(provider.clone()))
        } else {
            let webpki = match &opts.ca {
                Some(ca) => Some(webpki_verifier(load_roots(ca)?, provider.clone())?),
                None if opts.pin.is_none() => {
                    let roots = RootCertStore {
                        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                    };
                    Some(webpki_verifier(roots, provider.clone())?)
                }
                None => None,
            };
            match opts.pin.clone() {
                Some(pin) => Arc::new(PinVerifier {
                    pin,
                    chain: webpki,
                    provider: provider.clone(),
                }),
                None => webpki.ok_or_else(|| Error::Config {
                    flag: "--tls-ca",
                    value: String::new(),
                    reason: "no trust anchor".into(),
                })?,
            }
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config {
                flag: "--transport",
                value: "tls".into(),
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // What curl --http1.1 sends; a stealth server picks it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsTransport {
            host,
            port,
            name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            proxy: opts.proxy,
        })
    }
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>> {
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| Error::Config {
            flag: "--tls-ca",
            value: String::new(),
            reason: e.to_string(),
        })
}

fn load_roots(source: &Source) -> Result<RootCertStore> {
    let bad = |reason: String| Error::KeyFile {
        what: "TLS CA certificates",
        path: source.origin(),
        flag: "--tls-ca",
        reason,
    };
    let certs = read_certs(source).map_err(bad)?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable CA certificate in the file".into()));
    }
    Ok(roots)
}

fn read_certs(source: &Source) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let bytes = source.read()?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

impl Transport for TlsTransport {
    fn connect(&self) -> BoxFuture<'_, Result<BoxStream>> {
        Box::pin(async move {
            let server = self.describe();
            let tcp = proxy::dial(self.proxy.as_ref(), &self.host, self.port)
                .await
                .map_err(|reason| Error::Transport {
                    server: server.clone(),
                    reason,
                })?;
            let tls = self
                .connector
                .connect(self.name.clone(), tcp)
                .await
                .map_err(|e| handshake_error(&server, &self.name, e))?;
            Ok(Box::new(tls) as BoxStream)
        })
    }

    fn describe(&self) -> String {
        format!("tls://{}", HostPort(&self.host, self.port))
    }
}

/// A handshake failure as one clear line: certificate problems name the flag
/// that fixes them and are fatal; the rest are ordinary transport errors.
fn handshake_error(server: &str, name: &ServerName<'_>, e: std::io::Error) -> Error {
    let tls_err = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let Some(rustls::Error::InvalidCertificate(cert)) = tls_err else {
        let reason = match tls_err {
            Some(t) => format!("TLS handshake failed: {t}"),
            None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                "TLS handshake failed: the server closed the connection".into()
            }
            None => format!("TLS handshake failed: {e}"),
        };
        return Error::Transport {
            server: server.into(),
            reason,
        };
    };
    let reason = match cert {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            "certificate not trusted (use --tls-ca or --tls-pin)".to_string()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "certificate is not valid for {} (use --tls-server-name)",
                name.to_str()
            )
        }
        CertificateError::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            ca_as_leaf()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate is not valid yet (check the clock)".into()
        }
        CertificateError::Other(other) => match other.0.downcast_ref::<PinMismatch>() {
            Some(m) => format!(
                "certificate does not match --tls-pin (the server's key is {})",
                m.0
            ),
            None => other.to_string(),
        },
        other if format!("{other:?}").contains("CaUsedAsEndEntity") => ca_as_leaf(),
        other => format!("certificate rejected: {other:?}"),
    };
    Error::TlsCertificate {
        server: server.into(),
        reason,
    }
}

fn ca_as_leaf() -> String {
    "the server presents a CA certificate, not a server certificate (have it sign a leaf certificate, or use --tls-pin)".into()
}

#[derive(Debug)]
struct PinMismatch(TlsPin);

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "certificate key {} does not match --tls-pin", self.0)
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts only a leaf whose public key hashes to the pin (and, if a CA was
/// given too, that also chains to it). Handshake signatures are still
/// checked, so a peer must hold the pinned key's private half.
#[derive(Debug)]
struct PinVerifier {
    pin: TlsPin,
    chain: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let actual = TlsPin::of_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if actual != self.pin {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch(actual))),
            )));
        }
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `--insecure`: any certificate. Handshake signatures are still checked
/// (they cost nothing and keep the TLS state machine honest); the SSH host
/// key remains the real authentication.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------
// Server

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
    Acme(super::acme::AcmeOptions),
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
        }
    }
}

/// Build the rustls server config for `opts`; `acme` is the resolver when
/// the certificate comes from ACME.
fn server_config(
    opts: &TlsServerOptions,
    #[cfg(feature = "acme")] acme: Option<Arc<super::acme::AcmeCerts>>,
) -> Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            flag: "--transport",
            value: "tls".into(),
            reason: e.to_string(),
        })?
        .with_no_client_auth();
    let mut config = match &opts.cert {
        CertSource::Pem { cert, key } => {
            let chain = read_certs(cert).map_err(|reason| Error::KeyFile {
                what: "TLS certificate",
                path: cert.origin(),
                flag: "--tls-cert",
                reason,
            })?;
            let bad_key = |reason: String| Error::KeyFile {
                what: "TLS private key",
                path: key.origin(),
                flag: "--tls-key",
                reason,
            };
            let bytes = key.read().map_err(bad_key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| bad_key(format!("no PEM private key: {e}")))?;
            builder
                .with_single_cert(chain, key_der)
                .map_err(|e| bad_key(format!("does not fit the certificate: {e}")))?
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
            .push(super::acme::ACME_TLS_ALPN.to_vec());
    }
    Ok(config)
}

/// Accepts TLS connections. Dropping it stops the accept loop.
pub struct TlsAcceptor {
    local: SocketAddr,
    rx: mpsc::Receiver<(BoxStream, PeerInfo)>,
    task: tokio::task::JoinHandle<()>,
    #[cfg(feature = "acme")]
    _acme: Option<super::acme::Acme>,
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
            CertSource::Acme(_) => Some(Arc::new(super::acme::AcmeCerts::default())),
            _ => None,
        };
        let config = Arc::new(server_config(
            &opts,
            #[cfg(feature = "acme")]
            acme_certs.clone(),
        )?);
        let (listener, local) = super::tcp::bind_listener(addr).await?;
        // ACME starts only now: the CA validates through this listener.
        #[cfg(feature = "acme")]
        let acme = match (&opts.cert, acme_certs) {
            (CertSource::Acme(o), Some(certs)) => Some(super::acme::Acme::start(o.clone(), certs)?),
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

async fn accept_loop(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    opts: TlsServerOptions,
    tx: mpsc::Sender<(BoxStream, PeerInfo)>,
) {
    let in_flight = Arc::new(Semaphore::new(opts.max_handshakes));
    let per_source = PerSource::new(opts.max_handshakes_per_source);
    let stealth = opts.stealth.map(Arc::new);
    let refusals = LogRate::new(Duration::from_secs(10));
    let mut listener = listener;
    let on_conn = |(tcp, peer): (TcpStream, SocketAddr)| {
        // Closing at once costs the peer a connection and us nothing; the
        // refusal is logged now and then, not once per connection.
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if let Some(skipped) = refusals.check() {
                tracing::warn!(
                    skipped,
                    "too many TLS handshakes in flight (--max-tls-handshakes); connections dropped"
                );
            }
            return;
        };
        let source = SourceKey::Net(opts.net_block.source_of(peer.ip()));
        let Some(source_slot) = per_source.try_take(&source) else {
            if let Some(skipped) = refusals.check() {
                tracing::info!(remote_addr = %peer.ip(), skipped, "too many TLS handshakes from one source (--per-source-max-tls-handshakes); connections dropped");
            }
            return;
        };
        let permit = (permit, source_slot);
        SocketOpts::default().apply(&tcp);
        let tls = tls.clone();
        let tx = tx.clone();
        let stealth = stealth.clone();
        // nginx 1.22 counts the handshake against client_header_timeout.
        let timeout = stealth
            .as_ref()
            .map_or(opts.handshake_timeout, |s| s.header_timeout);
        tokio::spawn(async move {
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
            if stream.get_ref().1.alpn_protocol() == Some(super::acme::ACME_TLS_ALPN) {
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
                Some(cfg) => match stealth::sniff(stream, &cfg, permit).await {
                    Some(s) => s,
                    None => return,
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_print() {
        let s = format!(
            "sha256/{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let pin: TlsPin = s.parse().unwrap();
        assert_eq!(pin.to_string(), s);
        for bad in ["sha1/AAAA", "sha256/!!", "sha256/AAAA", ""] {
            let e = bad.parse::<TlsPin>().unwrap_err();
            assert!(e.to_string().contains("--tls-pin"), "{e}");
        }
    }
}
