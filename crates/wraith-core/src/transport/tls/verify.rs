//! The certificate verifier beside webpki's: a public-key pin, or none at
//! all (`--insecure`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::pin::TlsPin;

type Cert<'a> = CertificateDer<'a>;
type Dss = DigitallySignedStruct;
/// What a signature check returns.
type Signed = Result<HandshakeSignatureValid, rustls::Error>;

#[derive(Debug)]
pub(super) struct PinMismatch(pub(super) TlsPin);

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "certificate key {} does not match --tls-pin", self.0)
    }
}

impl std::error::Error for PinMismatch {}

/// Which certificates [`Verifier`] accepts.
#[derive(Debug)]
pub(super) enum Accept {
    /// `--insecure`: any certificate; the SSH host key remains the real
    /// authentication.
    Any,
    /// `--tls-pin`: only a leaf whose public key hashes to `pin` (and, if a
    /// CA was given too, that also chains to it).
    Pin {
        pin: TlsPin,
        chain: Option<Arc<dyn ServerCertVerifier>>,
    },
}

/// The verifier for `--insecure` and `--tls-pin`. Whatever it accepts,
/// handshake signatures are still checked (they cost nothing and keep the
/// TLS state machine honest), so a pinned peer must hold the pinned key's
/// private half.
#[derive(Debug)]
pub(super) struct Verifier {
    pub(super) accept: Accept,
    pub(super) provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn algorithms(&self) -> rustls::crypto::WebPkiSupportedAlgorithms {
        self.provider.signature_verification_algorithms
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Accept::Pin { pin, chain } = &self.accept else {
            return Ok(ServerCertVerified::assertion());
        };
        let actual = TlsPin::of_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if actual != *pin {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch(actual))),
            )));
        }
        if let Some(chain) = chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    // Signatures are checked as webpki checks them, with the provider's
    // algorithms; only the certificate decision above is ours.
    fn verify_tls12_signature(&self, msg: &[u8], cert: &Cert<'_>, dss: &Dss) -> Signed {
        rustls::crypto::verify_tls12_signature(msg, cert, dss, &self.algorithms())
    }

    fn verify_tls13_signature(&self, msg: &[u8], cert: &Cert<'_>, dss: &Dss) -> Signed {
        rustls::crypto::verify_tls13_signature(msg, cert, dss, &self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}
