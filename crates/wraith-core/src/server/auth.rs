//! Who may log in, as read from the host: `--authorized-keys` and
//! `--cert-authority` files (or their contents) through [`Source`], parsed
//! by `proto::authorized_keys` with expiry times in the host's time zone.
//! The set, its lines and their options are re-exported from there.

pub use crate::proto::authorized_keys::{AuthorizedKey, AuthorizedKeys, LineWarning};

use super::policy::local_to_unix;
use crate::error::Result;
use crate::source::Source;

impl AuthorizedKeys {
    /// Read and parse a file, or its contents (`--authorized-keys`).
    pub fn load(source: impl Into<Source>) -> Result<(Self, Vec<LineWarning>)> {
        let source = source.into();
        let text = source
            .read_text()
            .map_err(source.failed("authorized keys", "--authorized-keys"))?;
        Ok(Self::parse(&text))
    }

    /// Parse the text of an authorized_keys file; an `expiry-time=`
    /// without `Z` is in the server's local time zone, as in OpenSSH.
    pub fn parse(text: &str) -> (Self, Vec<LineWarning>) {
        Self::parse_in(text, false, local_to_unix)
    }

    /// Read a `--cert-authority` file (or its contents): CA public keys, one
    /// per line (authorized_keys syntax; `cert-authority` is implied, so a
    /// line may carry `principals=`, `from=`, `permitopen=`, `hub`, ...).
    /// A file without a single usable key is an error: trusting "no CA" is
    /// never what was meant.
    pub fn load_cert_authorities(source: impl Into<Source>) -> Result<(Self, Vec<LineWarning>)> {
        let source = source.into();
        let err = source.failed("certificate authorities", "--cert-authority");
        let text = source.read_text().map_err(err)?;
        let (cas, warnings) = Self::parse_in(&text, true, local_to_unix);
        if cas.is_empty() {
            return Err(err("no usable CA key in it".into()));
        }
        Ok((cas, warnings))
    }
}

#[cfg(test)]
mod tests {
    use russh::keys::PublicKey;

    use super::*;

    fn key_line(comment: &str) -> (PublicKey, String) {
        let k = crate::keys::generate_ed25519(comment).unwrap();
        let line = k.public_key().to_openssh().unwrap();
        (k.public_key().clone(), line)
    }

    #[test]
    fn cert_authorities_in_memory_and_without_a_key() {
        let (ca, line) = key_line("ca");
        let (cas, _) =
            AuthorizedKeys::load_cert_authorities(Source::Bytes(line.into_bytes())).unwrap();
        assert!(cas.has_cert_authorities());
        assert!(cas.find_ca(ca.key_data()).is_some());
        let e = AuthorizedKeys::load_cert_authorities(Source::Bytes(b"# none\n".to_vec()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot read certificate authorities from in-memory data (--cert-authority): no usable CA key in it"
        );
    }

    #[test]
    fn cert_authority_files_carry_principals_and_options() {
        let (ca, line) = key_line("ca");
        let text = format!("principals=\"tunnel\",hub,from=\"127.0.0.1\" {line}\n");
        let (cas, warnings) =
            AuthorizedKeys::load_cert_authorities(Source::Bytes(text.into_bytes())).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let e = cas.find_ca(ca.key_data()).unwrap();
        assert_eq!(e.options.principals, Some(vec!["tunnel".to_string()]));
        assert!(e.options.hub);
        assert!(e.options.cert_authority);
        // The same line in authorized_keys needs cert-authority spelled out.
        let (keys, warnings) = AuthorizedKeys::parse(&format!("principals=\"tunnel\" {line}\n"));
        assert!(keys.is_empty());
        assert!(
            warnings[0].reason.contains("cert-authority"),
            "{warnings:?}"
        );
    }

    #[test]
    fn warnings_quote_control_characters_from_the_line() {
        // Found by fuzz/fuzz_targets/authorized_keys.rs: a key type with
        // control characters reached the startup warning verbatim.
        let (_, warnings) = AuthorizedKeys::parse("ssh-\u{1}\u{1b}[31mx AAAA\n");
        assert_eq!(warnings.len(), 1);
        let reason = &warnings[0].reason;
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        // ssh-key's error quotes the label it decoded from the key data.
        let blob = crate::keys::tests::bad_label_blob();
        let (_, warnings) = AuthorizedKeys::parse(&format!("ssh-ed25519 {blob}\n"));
        let reason = &warnings[0].reason;
        assert!(reason.contains("label"), "{reason:?}");
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
    }
}
