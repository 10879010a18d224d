//! Deciding whether to trust the server's host key: a pinned key, an
//! OpenSSH known_hosts file, or trust on first use into wraith's own store.

use std::path::{Path, PathBuf};

use russh::keys::PublicKey;

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
pub(crate) fn verify(
    policy: &HostKeyPolicy,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<(), String> {
    let fp = fingerprint(key);
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
        HostKeyPolicy::KnownHosts(path) => match check_known_hosts(host, port, key, path) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{host} is not listed with key {fp} in {} (--known-hosts)",
                path.display()
            )),
            Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                "THE HOST KEY HAS CHANGED: {} line {line} lists another key for {host}; the server presented {fp}",
                path.display()
            )),
            Err(e) => Err(format!(
                "cannot read {} (--known-hosts): {e}",
                path.display()
            )),
        },
        HostKeyPolicy::TrustOnFirstUse(path) => tofu(path, host, port, key, &fp),
    }
}

fn tofu(path: &Path, host: &str, port: u16, key: &PublicKey, fp: &str) -> Result<(), String> {
    match check_known_hosts(host, port, key, path) {
        Ok(true) => Ok(()),
        Ok(false) => {
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
        Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
            "THE HOST KEY HAS CHANGED for {host}:{port}: the server presented {fp}, \
             but {} line {line} holds another key. This may be an attack; if the server \
             really changed its key, remove that line",
            path.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Is `key` recorded for `host:port` in `path`? `Ok(false)` when the host
/// is not listed (or the file does not exist), `KeyChanged` when it is listed
/// with another key of the same type. Compares key material only: russh's
/// own check compares comments too, so a key learned with a comment would
/// never match again.
fn check_known_hosts(
    host: &str,
    port: u16,
    key: &PublicKey,
    path: &Path,
) -> Result<bool, russh::keys::Error> {
    if !path.exists() {
        return Ok(false);
    }
    let mut changed = None;
    for (line, recorded) in russh::keys::known_hosts::known_host_keys_path(host, port, path)? {
        if recorded.algorithm() == key.algorithm() {
            if recorded.key_data() == key.key_data() {
                return Ok(true);
            }
            changed.get_or_insert(line);
        }
    }
    match changed {
        Some(line) => Err(russh::keys::Error::KeyChanged { line }),
        None => Ok(false),
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
