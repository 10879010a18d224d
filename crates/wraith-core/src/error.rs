//! Typed errors for each layer: configuration, transport, authentication and
//! channels. Messages name the input at fault and, where one exists, the flag
//! that sets it. No error message may carry a tunnel destination that a server
//! could log.

use std::path::PathBuf;

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key file could not be read or parsed.
    #[error("cannot read {what} from {} ({flag}): {reason}", path.display())]
    KeyFile {
        /// What the file was meant to hold ("host key", "identity", ...).
        what: &'static str,
        /// The file at fault.
        path: PathBuf,
        /// The CLI flag that names it.
        flag: &'static str,
        /// Why it failed.
        #[source]
        reason: Reason,
    },
    /// An option value is invalid.
    #[error("invalid {flag} value {value:?}: {reason}")]
    Config {
        /// The CLI flag (or option name) at fault.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Options that do not fit together, or a required one that is missing
    /// ("--stealth needs --transport tls"). The CLI exits with 2 for these.
    #[error("{0}")]
    Usage(String),
    /// A local listener could not be bound.
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// The flag that asked for it.
        flag: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The transport connection could not be made or broke.
    #[error("cannot connect to {server}: {reason}")]
    Transport {
        /// The server that was dialed, as described by the transport.
        server: String,
        /// What went wrong.
        #[source]
        reason: Reason,
    },
    /// The server's TLS certificate was not accepted (untrusted, wrong name,
    /// expired, not matching the pin). Retrying cannot help.
    #[error("TLS certificate check failed for {server}: {reason}")]
    TlsCertificate {
        /// The server, as described by the transport.
        server: String,
        /// What is wrong and which flag fixes it.
        reason: String,
    },
    /// The server's host key is not the one we expected.
    #[error("host key verification failed for {server}: {reason}")]
    HostKey {
        /// The server.
        server: String,
        /// Why the key was not trusted (fingerprints, where it was looked up).
        reason: String,
    },
    /// The server did not accept our key.
    #[error(
        "authentication failed for user {user:?} at {server}: the server did not accept the key {fingerprint} (check --identity and the server's authorized keys)"
    )]
    AuthRejected {
        /// The login name used.
        user: String,
        /// The server.
        server: String,
        /// Fingerprint of the key that was offered.
        fingerprint: String,
    },
    /// An SSH protocol failure.
    #[error("ssh session with {server} failed: {reason}")]
    Ssh {
        /// The server.
        server: String,
        /// What russh reported.
        #[source]
        reason: Reason,
    },
    /// A remote forward was refused by the server.
    #[error("the server refused the remote forward {spec} (--remote-forward)")]
    RemoteForwardRefused {
        /// The spec as given by the user.
        spec: String,
    },
    /// The session ended.
    #[error("the ssh session ended: {0}")]
    SessionClosed(String),
    /// Other I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True if retrying the same connection cannot succeed (wrong key, wrong
    /// host key, bad configuration): a supervisor must stop, not retry.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::KeyFile { .. }
                | Error::Config { .. }
                | Error::Usage(_)
                | Error::Bind { .. }
                | Error::HostKey { .. }
                | Error::TlsCertificate { .. }
                | Error::AuthRejected { .. }
                | Error::RemoteForwardRefused { .. }
        )
    }

    /// True if the options themselves are wrong: a value that does not
    /// parse (an address, a URL, a pin), options that do not fit together.
    /// The CLI exits with 2 for these, as for the errors clap finds.
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Usage(_) | Error::Config { .. } => true,
            // "nope" for --listen: no address at all, not a bind that failed.
            Error::Bind { source, .. } => source.kind() == std::io::ErrorKind::InvalidInput,
            _ => false,
        }
    }

    /// An invalid value `value` of `flag`, and what is wrong with it.
    pub fn config(flag: &'static str, value: impl ToString, reason: impl ToString) -> Self {
        Error::Config {
            flag,
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    /// What a socket that could not be bound to `addr`, given as `flag`,
    /// fails with: `map_err(Error::bind_failed(addr, flag))`.
    pub fn bind_failed(
        addr: impl std::fmt::Display,
        flag: &'static str,
    ) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Error::Bind {
            addr: addr.to_string(),
            flag,
            source,
        }
    }

    /// What a bound socket whose address cannot be read fails with.
    pub(crate) fn no_local_addr(source: std::io::Error) -> Self {
        Error::io("local address", source)
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Why something failed: words complete enough for a message, and the
/// error underneath (an [`std::io::Error`], a russh or rustls error) when
/// there is one, as the `source()` of the chain for programs that look at
/// it. The words already say what the source does: printing the chain
/// after an [`Error`] adds nothing.
#[derive(Debug)]
pub struct Reason {
    text: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Reason {
    /// A reason with an underlying error.
    pub fn with_source(
        text: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Reason {
            text: text.into(),
            source: Some(source.into()),
        }
    }

    /// The words alone.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Reason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Reason { text, source: None }
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Reason::from(text.to_string())
    }
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Split `host[:port]` (`--server`, `--stdio`; IPv6 in brackets, or bare
/// without a port) with `default_port` when none is given; `flag` names
/// the option in the error.
pub fn split_host_port(
    value: &str,
    default_port: u16,
    flag: &'static str,
) -> Result<(String, u16)> {
    crate::proto::host_port::parse(value, default_port).map_err(|e| Error::Config {
        flag,
        value: value.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_errors_name_the_flag_and_value() {
        assert_eq!(
            split_host_port("[::1]:2222", 22, "--server").unwrap(),
            ("::1".into(), 2222)
        );
        assert_eq!(
            split_host_port("h:x", 22, "--server")
                .unwrap_err()
                .to_string(),
            "invalid --server value \"h:x\": expected host[:port], e.g. example.com:2222 or [2001:db8::1]:22"
        );
    }
}
