//! The client side: dial, TLS handshake, certificate trust, and one-line
//! handshake errors that name the flag that fixes them.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, RootCertStore};

use super::pin::TlsPin;
use super::verify::{Accept, PinMismatch, Verifier};
use super::{no_protocol_versions, provider};
use crate::error::{Error, Reason, Result};
use crate::source::Source;
use crate::transport::proxy::ProxyUrl;
use crate::transport::tcp::TcpTransport;
use crate::transport::{BoxFuture, BoxStream, Transport};

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
    /// What the TLS session runs over.
    tcp: TcpTransport,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
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
            Arc::new(Verifier {
                accept: Accept::Any,
                provider: provider.clone(),
            })
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
                Some(pin) => Arc::new(Verifier {
                    accept: Accept::Pin { pin, chain: webpki },
                    provider: provider.clone(),
                }),
                None => webpki.ok_or_else(|| Error::config("--tls-ca", "", "no trust anchor"))?,
            }
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(no_protocol_versions)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // What curl --http1.1 sends; a stealth server picks it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsTransport {
            tcp: TcpTransport::new(host, port).with_proxy(opts.proxy),
            name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

/// A TLS client configuration for another service (the NATS broker of
/// `--hub`): certificates checked against `ca`, or the Mozilla roots the
/// TLS transport also uses. `flag` names the CA option in errors.
#[cfg(feature = "nats")]
pub(crate) fn service_client_config(
    ca: Option<&Source>,
    flag: &'static str,
) -> Result<rustls::ClientConfig> {
    let roots = match ca {
        Some(ca) => load_roots(ca).map_err(|e| match e {
            Error::KeyFile {
                what, path, reason, ..
            } => Error::KeyFile {
                what,
                path,
                flag,
                reason,
            },
            other => other,
        })?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let provider = provider();
    let verifier = webpki_verifier(roots, provider.clone())?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(no_protocol_versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

pub(super) fn webpki_verifier(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>> {
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| Error::config("--tls-ca", "", e))
}

pub(super) fn load_roots(source: &Source) -> Result<RootCertStore> {
    let bad = source.failed("TLS CA certificates", "--tls-ca");
    let certs = read_certs(source).map_err(bad)?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable CA certificate in the file".into()));
    }
    Ok(roots)
}

pub(super) fn read_certs(
    source: &Source,
) -> std::result::Result<Vec<CertificateDer<'static>>, Reason> {
    let bytes = source.read()?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Reason::with_source(format!("not PEM: {e}"), e))?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

impl Transport for TlsTransport {
    fn connect(&self) -> BoxFuture<'_, Result<BoxStream>> {
        Box::pin(async move {
            let server = self.describe();
            let tcp = self.tcp.dial(&server).await?;
            let tls = self
                .connector
                .connect(self.name.clone(), tcp)
                .await
                .map_err(|e| handshake_error(&server, &self.name, e))?;
            Ok(Box::new(tls) as BoxStream)
        })
    }

    fn describe(&self) -> String {
        format!("tls://{}", self.tcp.describe())
    }
}

/// A handshake failure as one clear line: certificate problems name the flag
/// that fixes them and are fatal; the rest are ordinary transport errors.
pub(super) fn handshake_error(server: &str, name: &ServerName<'_>, e: std::io::Error) -> Error {
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
            reason: Reason::with_source(reason, e),
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

pub(super) fn ca_as_leaf() -> String {
    "the server presents a CA certificate, not a server certificate (have it sign a leaf certificate, or use --tls-pin)".into()
}
