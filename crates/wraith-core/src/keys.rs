//! SSH keys: loading OpenSSH private keys, generating Ed25519 key pairs,
//! fingerprints, and parsing the ways a user can name a host key
//! (`SHA256:` fingerprint, an `ssh-ed25519 AAAA…` line, or a file holding one).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PrivateKey, PublicKey};

use crate::error::{Error, Reason, Result};
use crate::source::Source;

pub use russh::keys::ssh_key;

/// The SHA-256 fingerprint of a public key, as OpenSSH prints it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The permission bits of a private key file that group or others may
/// read, write or run (OpenSSH's "UNPROTECTED PRIVATE KEY FILE" check), or
/// `None` when only its owner may. OpenSSH refuses such a key; wraith loads
/// it with a warning, so keys from mounts that cannot set modes still work.
pub fn unprotected_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Load an OpenSSH private key from a file or from the file's contents.
/// A key file that others may read is loaded with a warning
/// ([`unprotected_mode`]).
///
/// `what` and `flag` only shape the error message ("cannot read identity from
/// ./k (--identity): …"). An encrypted key needs `passphrase`.
pub fn load_private_key(
    source: impl Into<Source>,
    passphrase: Option<&str>,
    what: &'static str,
    flag: &'static str,
) -> Result<PrivateKey> {
    let source = source.into();
    let err = source.failed(what, flag);
    let text = source.read_text().map_err(err)?;
    let t = text.trim_start();
    if t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-") {
        return Err(err(
            "this is a public key; give the private key file (the one without .pub)".into(),
        ));
    }
    let key = PrivateKey::from_openssh(text.trim()).map_err(|e| {
        err(Reason::with_source(
            format!("not an OpenSSH private key ({e})"),
            e,
        ))
    })?;
    if let Some(path) = source.path()
        && let Some(mode) = unprotected_mode(path)
    {
        tracing::warn!(
            "UNPROTECTED PRIVATE KEY FILE: {} ({flag}) has permissions {mode:04o}: \
             other users of this machine may read it and use the key; run: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    if key.is_encrypted() {
        let Some(pass) = passphrase else {
            return Err(err(
                "the key is encrypted; set WRAITH_KEY_PASSPHRASE to its passphrase".into(),
            ));
        };
        return key
            .decrypt(pass)
            .map_err(|_| err("wrong passphrase (WRAITH_KEY_PASSPHRASE)".into()));
    }
    Ok(key)
}

/// Load an OpenSSH certificate (`<identity>-cert.pub`, `--certificate`) and
/// check that it certifies `identity`.
pub fn load_certificate(
    source: impl Into<Source>,
    identity: &PrivateKey,
) -> Result<russh::keys::Certificate> {
    let source = source.into();
    let err = source.failed("certificate", "--certificate");
    let text = source.read_text().map_err(err)?;
    let cert = russh::keys::Certificate::from_openssh(text.trim()).map_err(|e| {
        err(Reason::with_source(
            format!("not an OpenSSH certificate ({e})"),
            e,
        ))
    })?;
    if cert.public_key() != identity.public_key().key_data() {
        return Err(err(
            "the certificate is for another key than --identity".into()
        ));
    }
    Ok(cert)
}

/// The certificate to present with `identity`: `certificate` when given
/// (`--certificate`), else `<identity_path>-cert.pub` when that file exists,
/// as OpenSSH does; else none.
pub fn find_certificate(
    certificate: Option<Source>,
    identity_path: Option<&Path>,
    identity: &PrivateKey,
) -> Result<Option<russh::keys::Certificate>> {
    if let Some(c) = certificate {
        return load_certificate(c, identity).map(Some);
    }
    let Some(path) = identity_path else {
        return Ok(None);
    };
    let mut default = path.as_os_str().to_owned();
    default.push("-cert.pub");
    let default = PathBuf::from(default);
    if default.exists() {
        load_certificate(default, identity).map(Some)
    } else {
        Ok(None)
    }
}

/// Generate a new Ed25519 key pair.
pub fn generate_ed25519(comment: &str) -> Result<PrivateKey> {
    let mut rng = russh::keys::key::safe_rng();
    let mut key = PrivateKey::random(&mut rng, russh::keys::Algorithm::Ed25519)
        .map_err(|e| Error::config("keygen", "", format!("key generation failed: {e}")))?;
    key.set_comment(comment);
    Ok(key)
}

/// Write `key` to `path` (mode 0600) and its public half to `path.pub`.
///
/// Refuses to overwrite an existing file unless `force` is set.
pub fn write_key_pair(key: &PrivateKey, path: &Path, force: bool) -> Result<PathBuf> {
    let pub_path = public_key_path(path);
    let err = |p: &Path, reason: Reason| Error::KeyFile {
        what: "new key",
        path: p.to_path_buf(),
        flag: "--file",
        reason,
    };
    if !force {
        for p in [path, pub_path.as_path()] {
            if p.exists() {
                return Err(err(p, "file exists (use --force to overwrite)".into()));
            }
        }
    }
    let private = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| err(path, Reason::with_source(e.to_string(), e)))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| err(&pub_path, Reason::with_source(e.to_string(), e)))?;
    write_private_file(path, private.as_bytes())
        .map_err(|e| err(path, Reason::with_source(io_reason(&e), e)))?;
    fs::write(&pub_path, format!("{public}\n"))
        .map_err(|e| err(&pub_path, Reason::with_source(io_reason(&e), e)))?;
    Ok(pub_path)
}

fn public_key_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

#[cfg(unix)]
fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// How the client recognises the server's host key when it is pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPin {
    /// A `SHA256:…` fingerprint.
    Fingerprint(String),
    /// A full public key.
    Key(Box<PublicKey>),
}

impl HostKeyPin {
    /// Parse `--host-key`: a `SHA256:` fingerprint, a public key line
    /// (`ssh-ed25519 AAAA… [comment]`), or the path of a file holding one.
    pub fn parse(value: &str) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            flag: "--host-key",
            value: value.to_string(),
            reason,
        };
        let value_t = value.trim();
        if let Some(b64) = value_t.strip_prefix("SHA256:") {
            let ok = !b64.is_empty()
                && b64
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
            if !ok {
                return Err(bad("not a SHA256 fingerprint".into()));
            }
            return Ok(HostKeyPin::Fingerprint(format!(
                "SHA256:{}",
                b64.trim_end_matches('=')
            )));
        }
        // Only Ed25519 host keys are ever accepted (see ssh.rs), so a
        // pin of another type could never match: say so now.
        let ed25519_only = |k: PublicKey| {
            if k.algorithm() == russh::keys::Algorithm::Ed25519 {
                Ok(HostKeyPin::Key(Box::new(k)))
            } else {
                Err(bad(format!(
                    "pins a {} key, but wraith accepts only Ed25519 host keys",
                    k.algorithm()
                )))
            }
        };
        if value_t.starts_with("ssh-") || value_t.starts_with("ecdsa-") {
            return PublicKey::from_openssh(value_t)
                .map_err(|e| bad(format!("not a valid public key ({e})")))
                .and_then(ed25519_only);
        }
        let path = Path::new(value_t);
        let text = fs::read_to_string(path).map_err(|e| {
            bad(format!(
                "expected SHA256:<fingerprint>, a public key, or a readable file ({})",
                io_reason(&e)
            ))
        })?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| bad("the file holds no public key".into()))?;
        PublicKey::from_openssh(line)
            .map_err(|e| bad(format!("the file does not hold a public key ({e})")))
            .and_then(ed25519_only)
    }

    /// Does `key` match this pin?
    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            HostKeyPin::Fingerprint(fp) => {
                subtle::ConstantTimeEq::ct_eq(fp.as_bytes(), fingerprint(key).as_bytes()).into()
            }
            HostKeyPin::Key(k) => k.key_data() == key.key_data(),
        }
    }

    /// A human-readable form for error messages.
    pub fn describe(&self) -> String {
        match self {
            HostKeyPin::Fingerprint(fp) => fp.clone(),
            HostKeyPin::Key(k) => fingerprint(k),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key blob whose algorithm label holds a control character.
    pub(crate) fn bad_label_blob() -> String {
        let label = b"ssh-ed2550\x04";
        let mut blob = (label.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(label);
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[7; 32]);
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, blob)
    }

    #[cfg(unix)]
    #[test]
    fn key_files_open_to_others_are_flagged() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        write_key_pair(&generate_ed25519("t").unwrap(), &path, false).unwrap();
        assert_eq!(unprotected_mode(&path), None, "keygen writes 0600");
        for (mode, flagged) in [
            (0o600, false),
            (0o400, false),
            (0o640, true),
            (0o604, true),
            (0o620, true),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(unprotected_mode(&path), flagged.then_some(mode), "{mode:o}");
        }
    }

    #[test]
    fn generated_key_round_trips_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let key = generate_ed25519("test@wraith").unwrap();
        let pub_path = write_key_pair(&key, &path, false).unwrap();
        let loaded = load_private_key(&path, None, "identity", "--identity").unwrap();
        assert_eq!(loaded.public_key().key_data(), key.public_key().key_data());
        let pin = HostKeyPin::parse(pub_path.to_str().unwrap()).unwrap();
        assert!(pin.matches(key.public_key()));
        let fp = HostKeyPin::parse(&fingerprint(key.public_key())).unwrap();
        assert!(fp.matches(key.public_key()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = write_key_pair(&key, &path, false).unwrap_err();
        assert!(again.to_string().contains("--force"), "{again}");
    }

    #[test]
    fn other_key_does_not_match_pin() {
        let a = generate_ed25519("a").unwrap();
        let b = generate_ed25519("b").unwrap();
        let pin = HostKeyPin::parse(&fingerprint(a.public_key())).unwrap();
        assert!(!pin.matches(b.public_key()));
        let line = a.public_key().to_openssh().unwrap();
        let pin = HostKeyPin::parse(&line).unwrap();
        assert!(!pin.matches(b.public_key()));
    }

    #[test]
    fn missing_key_file_names_path_and_flag() {
        let e = load_private_key(Path::new("/nonexistent/k"), None, "host key", "--key")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot read host key from /nonexistent/k (--key): no such file"
        );
    }

    #[test]
    fn public_key_given_as_private_key_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let key = generate_ed25519("x").unwrap();
        let pub_path = write_key_pair(&key, &path, false).unwrap();
        let e = load_private_key(&pub_path, None, "identity", "--identity")
            .unwrap_err()
            .to_string();
        assert!(e.contains("public key") && e.contains("--identity"), "{e}");
    }

    #[test]
    fn key_in_memory_loads_like_its_file() {
        let key = generate_ed25519("m").unwrap();
        let text = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
        let loaded = load_private_key(
            Source::Bytes(text.as_bytes().to_vec()),
            None,
            "identity",
            "--identity",
        )
        .unwrap();
        assert_eq!(loaded.public_key().key_data(), key.public_key().key_data());
        let e = load_private_key(Source::Bytes(b"junk".to_vec()), None, "host key", "--key")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "cannot read host key from in-memory data (--key): not an OpenSSH private key"
            ),
            "{e}"
        );
    }

    #[test]
    fn certificate_defaults_to_identity_cert_pub_only_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let key = generate_ed25519("x").unwrap();
        write_key_pair(&key, &path, false).unwrap();
        assert!(find_certificate(None, Some(&path), &key).unwrap().is_none());
        assert!(find_certificate(None, None, &key).unwrap().is_none());
        std::fs::write(dir.path().join("id-cert.pub"), "garbage\n").unwrap();
        let e = find_certificate(None, Some(&path), &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("id-cert.pub (--certificate)"), "{e}");
        let e = find_certificate(Some(Source::Bytes(b"x".to_vec())), None, &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in-memory data (--certificate)"), "{e}");
    }

    #[test]
    fn garbage_host_key_spec_is_rejected() {
        assert!(HostKeyPin::parse("SHA256:").is_err());
        assert!(HostKeyPin::parse("SHA256:a b").is_err());
        assert!(HostKeyPin::parse("ssh-ed25519 notbase64").is_err());
        assert!(HostKeyPin::parse("/nonexistent/file").is_err());
    }
}
