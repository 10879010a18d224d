//! `--tls-pin`: a pin of the leaf certificate's public key.

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A certificate pin: SHA-256 of the leaf certificate's SubjectPublicKeyInfo
/// (`--tls-pin sha256/<base64>`, as in HPKP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPin([u8; 32]);

impl TlsPin {
    /// The pin of a DER certificate (e.g. to print it for users).
    pub fn of_certificate(der: &[u8]) -> Result<TlsPin> {
        let cert = CertificateDer::from(der);
        let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| {
            Error::config(
                "--tls-cert",
                "",
                format!("not a valid X.509 certificate: {e}"),
            )
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
        let bad = || {
            Error::config(
                "--tls-pin",
                s,
                "expected sha256/<base64 of the SHA-256 of the certificate's public key>",
            )
        };
        let b64 = s.strip_prefix("sha256/").ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        Ok(TlsPin(bytes.try_into().map_err(|_| bad())?))
    }
}
