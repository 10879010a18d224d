//! Deciding whether to trust the server's host key: a pinned key, an
//! OpenSSH known_hosts file, or trust on first use into wraith's own store.

use std::path::{Path, PathBuf};

use russh::keys::{Algorithm, PublicKey};

use super::known_hosts::{Verdict, host_name, is_plain_host, lookup};
use crate::keys::{HostKeyPin, fingerprint};

/// How the client verifies the server's SSH host key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HostKeyPolicy {
    /// Only this key is accepted (`--host-key`).
    Pin(HostKeyPin),
    /// The key must be listed for the server in this OpenSSH known_hosts file
    /// (`--known-hosts`).
    KnownHosts(PathBuf),
    /// Trust on first use: learn the key into this file the first time, and
    /// fail hard if it ever changes.
    TrustOnFirstUse(PathBuf),
}

impl HostKeyPolicy {
    /// Trust on first use in the default store (`<data dir>/wraith/known_hosts`).
    pub fn default_tofu() -> Self {
        HostKeyPolicy::TrustOnFirstUse(default_store())
    }
}

/// `<data dir>/wraith/known_hosts`, e.g. `~/.local/share/wraith/known_hosts`.
pub fn default_store() -> PathBuf {
    dirs::data_dir()
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("wraith")
        .join("known_hosts")
}

/// Check `key` presented by `host:port`. `Err` carries the reason to report.
///
/// Only Ed25519 keys are considered at all: the client offers no other host
/// key algorithm, and russh does not check that the key a server sends is of
/// the negotiated type, so anything else is refused here before any policy
/// looks at it (and before anything is learned).
pub(crate) fn verify(
    policy: &HostKeyPolicy,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), String> {
    let fp = fingerprint(key);
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!(
            "the server presented a {} host key ({fp}); wraith accepts only Ed25519 host keys",
            key.algorithm()
        ));
    }
    match policy {
        HostKeyPolicy::Pin(pin) => {
            if pin.matches(key) {
                Ok(())
            } else {
                Err(format!(
                    "the server presented {fp}, but --host-key pins {}",
                    pin.describe()
                ))
            }
        }
        HostKeyPolicy::KnownHosts(path) => {
            let text = read_file(path)?.ok_or_else(|| {
                format!(
                    "cannot read {} (--known-hosts): no such file",
                    path.display()
                )
            })?;
            match lookup(&text, host, port, key) {
                Ok(Verdict::Known { .. }) => Ok(()),
                Ok(Verdict::Unknown) => Err(format!(
                    "{} is not listed in {} (--known-hosts); the server presented {fp}",
                    host_name(host, port),
                    path.display()
                )),
                Ok(Verdict::Changed { line }) => Err(changed(host, port, &fp, path, line)),
                Ok(Verdict::Revoked { line }) => Err(revoked(host, port, &fp, path, line)),
                Err(e) => Err(format!(
                    "cannot use {} (--known-hosts): {e}",
                    path.display()
                )),
            }
        }
        HostKeyPolicy::TrustOnFirstUse(path) => tofu(path, host, port, key, &fp),
    }
}

fn changed(host: &str, port: u16, fp: &str, path: &Path, line: usize) -> String {
    format!(
        "THE HOST KEY HAS CHANGED for {}: the server presented {fp}, but {} line {line} \
         holds another key. This may be an attack; if the server really changed its key, \
         remove that line",
        host_name(host, port),
        path.display()
    )
}

fn revoked(host: &str, port: u16, fp: &str, path: &Path, line: usize) -> String {
    format!(
        "the host key {fp} of {} is marked @revoked in {} line {line}",
        host_name(host, port),
        path.display()
    )
}

/// The file's text, `None` if it does not exist.
fn read_file(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read {}: {}",
            path.display(),
            crate::keys::io_reason(&e)
        )),
    }
}

fn tofu(path: &Path, host: &str, port: u16, key: &PublicKey, fp: &str) -> Result<(), String> {
    let text = read_file(path)?.unwrap_or_default();
    match lookup(&text, host, port, key) {
        Ok(Verdict::Known { .. }) => Ok(()),
        Ok(Verdict::Unknown) => {
            if !is_plain_host(host) {
                return Err(format!(
                    "cannot record the host key of {host:?} in {}: the name holds characters \
                     known_hosts reads as patterns or separators (pin it with --host-key {fp})",
                    path.display()
                ));
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            russh::keys::known_hosts::learn_known_hosts_path(host, port, key, path)
                .map_err(|e| format!("cannot record the host key in {}: {e}", path.display()))?;
            tracing::warn!(
                "first connection to {host}:{port}: trusting host key {fp} and storing it in {} \
                 (pin it with --host-key {fp} to skip this step)",
                path.display()
            );
            Ok(())
        }
        Ok(Verdict::Changed { line }) => Err(changed(host, port, fp, path, line)),
        Ok(Verdict::Revoked { line }) => Err(revoked(host, port, fp, path, line)),
        Err(e) => Err(format!("cannot use {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tofu_learns_then_rejects_a_changed_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("sub").join("known_hosts");
        let policy = HostKeyPolicy::TrustOnFirstUse(store.clone());
        let a = crate::keys::generate_ed25519("a").unwrap();
        let b = crate::keys::generate_ed25519("b").unwrap();
        verify(&policy, "127.0.0.1", 2222, a.public_key()).unwrap();
        assert!(store.exists());
        verify(&policy, "127.0.0.1", 2222, a.public_key()).unwrap();
        let err = verify(&policy, "127.0.0.1", 2222, b.public_key()).unwrap_err();
        assert!(err.contains("CHANGED"), "{err}");
        // Another port is another server.
        verify(&policy, "127.0.0.1", 2223, b.public_key()).unwrap();
    }

    /// From `ssh-keygen -t ecdsa`.
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEBxO407ukIklUvrCVJ44gPCIzVLfTpQ0t2nUY4xkMO0CnrTHB7A8/oh5D8U7fLzXITTspP7oacdawrcd7ISiu0=";

    #[test]
    fn known_host_with_a_key_of_another_type_is_a_change_not_learned() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("known_hosts");
        let listed = format!("[127.0.0.1]:2222 {ECDSA}\n");
        std::fs::write(&store, &listed).unwrap();
        let a = crate::keys::generate_ed25519("a").unwrap();
        for policy in [
            HostKeyPolicy::TrustOnFirstUse(store.clone()),
            HostKeyPolicy::KnownHosts(store.clone()),
        ] {
            let err = verify(&policy, "127.0.0.1", 2222, a.public_key()).unwrap_err();
            assert!(err.contains("HOST KEY HAS CHANGED"), "{err}");
            assert!(err.contains("line 1"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&store).unwrap(), listed);
    }

    #[test]
    fn non_ed25519_host_keys_are_refused_before_any_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("known_hosts");
        let ecdsa = PublicKey::from_openssh(ECDSA).unwrap();
        let policy = HostKeyPolicy::TrustOnFirstUse(store.clone());
        let err = verify(&policy, "127.0.0.1", 2222, &ecdsa).unwrap_err();
        assert!(err.contains("accepts only Ed25519"), "{err}");
        assert!(!store.exists(), "a refused key was learned");
        // Even a file that lists it, or a pin of it, does not make it usable.
        std::fs::write(&store, format!("[127.0.0.1]:2222 {ECDSA}\n")).unwrap();
        let err = verify(&HostKeyPolicy::KnownHosts(store), "127.0.0.1", 2222, &ecdsa);
        assert!(err.unwrap_err().contains("accepts only Ed25519"));
        let pin = HostKeyPolicy::Pin(HostKeyPin::parse(ECDSA).unwrap());
        assert!(verify(&pin, "127.0.0.1", 2222, &ecdsa).is_err());
    }

    #[test]
    fn revoked_and_cert_authority_lines_are_honoured_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kh");
        let a = crate::keys::generate_ed25519("a").unwrap();
        let a_line = a.public_key().to_openssh().unwrap();
        std::fs::write(&file, format!("h {a_line}\n@revoked * {a_line}\n")).unwrap();
        for policy in [
            HostKeyPolicy::KnownHosts(file.clone()),
            HostKeyPolicy::TrustOnFirstUse(file.clone()),
        ] {
            let err = verify(&policy, "h", 22, a.public_key()).unwrap_err();
            assert!(err.contains("@revoked") && err.contains("line 2"), "{err}");
        }
        std::fs::write(&file, format!("@cert-authority *.corp {a_line}\n")).unwrap();
        let err = verify(
            &HostKeyPolicy::TrustOnFirstUse(file.clone()),
            "x.corp",
            22,
            a.public_key(),
        )
        .unwrap_err();
        assert!(err.contains("@cert-authority is not supported"), "{err}");
        // Nothing was learned past the error.
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 1);
    }

    #[test]
    fn wildcard_and_hashed_entries_protect_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kh");
        let a = crate::keys::generate_ed25519("a").unwrap();
        let b = crate::keys::generate_ed25519("b").unwrap();
        let a_line = a.public_key().to_openssh().unwrap();
        let hashed = super::super::known_hosts::hash_host("[srv]:2200", b"salt-salt-salt-salt!");
        std::fs::write(
            &file,
            format!("*.example.com {a_line}\n{hashed} {a_line}\n"),
        )
        .unwrap();
        let policy = HostKeyPolicy::TrustOnFirstUse(file.clone());
        verify(&policy, "www.example.com", 22, a.public_key()).unwrap();
        verify(&policy, "srv", 2200, a.public_key()).unwrap();
        for (host, port) in [("www.example.com", 22), ("srv", 2200)] {
            let err = verify(&policy, host, port, b.public_key()).unwrap_err();
            assert!(err.contains("HOST KEY HAS CHANGED"), "{host}: {err}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
    }

    #[test]
    fn names_that_read_as_patterns_are_not_learned() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("known_hosts");
        let a = crate::keys::generate_ed25519("a").unwrap();
        let policy = HostKeyPolicy::TrustOnFirstUse(store.clone());
        for host in ["*", "a,b", "!x"] {
            let err = verify(&policy, host, 22, a.public_key()).unwrap_err();
            assert!(err.contains("patterns"), "{err}");
        }
        assert!(!store.exists());
    }

    #[test]
    fn known_hosts_file_must_list_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kh");
        let a = crate::keys::generate_ed25519("a").unwrap();
        let line = format!(
            "[127.0.0.1]:2222 {}\n",
            a.public_key().to_openssh().unwrap()
        );
        std::fs::write(&file, line).unwrap();
        let policy = HostKeyPolicy::KnownHosts(file);
        verify(&policy, "127.0.0.1", 2222, a.public_key()).unwrap();
        let b = crate::keys::generate_ed25519("b").unwrap();
        assert!(verify(&policy, "127.0.0.1", 2222, b.public_key()).is_err());
        assert!(verify(&policy, "127.0.0.2", 2222, a.public_key()).is_err());
    }
}
