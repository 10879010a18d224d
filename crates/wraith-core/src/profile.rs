//! What a front end (the CLI, the Node addon, an embedder) hands the library
//! to get a client or a server: the keys, certificates, host-key policy and
//! login name, loaded the same way with the same messages whoever asks.
//!
//! [`ClientProfile`] turns into [`ConnectOptions`], [`ServerProfile`] into
//! [`ServeOptions`] plus the warnings about skipped key-file lines. Front
//! ends only map their own option syntax onto these fields; messages name
//! fields the CLI way (`--identity`), and [`Naming::Options`] renders them
//! the way the addon's options are spelled (`identity`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::client::{ConnectOptions, HostKeyPolicy, ServerEndpoint};
use crate::error::{Error, Result};
use crate::keys::{self, HostKeyPin};
use crate::server::{AuthorizedKeys, ServeOptions};
use crate::source::Source;
use crate::transport::{ClientTransportOptions, Transport, TransportKind};

/// How a front end spells its options in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// Command-line flags: `--identity`, `--tls-pin` (the library's own
    /// messages use these).
    #[default]
    Flags,
    /// Option names of the Node addon: `identity`, `tlsPin`.
    Options,
}

/// The CLI flags whose addon option is not simply the flag in camelCase.
const RENAMED: &[(&str, &str)] = &[("--key", "hostKey"), ("--stdio", "target")];

/// The addon's name for a CLI flag (`--tls-pin` → `tlsPin`).
fn option_name(flag: &str) -> String {
    if let Some((_, name)) = RENAMED.iter().find(|(f, _)| *f == flag) {
        return (*name).to_string();
    }
    let mut out = String::new();
    let mut upper = false;
    for c in flag.trim_start_matches('-').chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Naming {
    /// `message` (a library error or warning, which names CLI flags) with
    /// every flag written this front end's way.
    pub fn render(self, message: &str) -> String {
        if self == Naming::Flags {
            return message.to_string();
        }
        // A command line in backticks (`wraith serve --transport iroh`) is
        // quoted as typed.
        message
            .split('`')
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 1 {
                    part.to_string()
                } else {
                    rename_flags(part)
                }
            })
            .collect::<Vec<_>>()
            .join("`")
    }

    /// [`Naming::render`] of an error.
    pub fn error(self, e: &Error) -> String {
        self.render(&e.to_string())
    }
}

/// Every `--flag` in `message` written as the addon's option name.
fn rename_flags(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("--") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after = &from[2..];
        let len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(after.len());
        // A flag starts right after a non-word character and has a name.
        let starts_word = !before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '-');
        let name = after[..len].trim_end_matches('-');
        if starts_word && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            out.push_str(&option_name(&format!("--{name}")));
            rest = &after[name.len()..];
        } else {
            out.push_str("--");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The login name when none is given: `$USER` (or `$USERNAME`), else the
/// name of the running user in /etc/passwd (cron and systemd leave `$USER`
/// unset), else `wraith`.
pub fn local_user() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("USERNAME"))
        && !u.is_empty()
    {
        return u;
    }
    passwd_name().unwrap_or_else(|| "wraith".into())
}

#[cfg(unix)]
fn passwd_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

#[cfg(not(unix))]
fn passwd_name() -> Option<String> {
    None
}

/// The passphrase for encrypted keys, from `WRAITH_KEY_PASSPHRASE`.
pub fn passphrase_from_env() -> Option<String> {
    std::env::var("WRAITH_KEY_PASSPHRASE").ok()
}

/// `~/.ssh/id_ed25519`, the identity used when none is given, if it exists.
fn default_identity() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(p) = home.map(|h| h.join(".ssh").join("id_ed25519"))
        && p.exists()
    {
        return Ok(p);
    }
    Err(Error::Usage(
        "no identity: pass --identity <key file> (or set WRAITH_IDENTITY); make one with `wraith keygen -f <file>`"
            .into(),
    ))
}

/// Everything a client needs besides its listeners.
#[derive(Default)]
#[non_exhaustive]
pub struct ClientProfile {
    /// How to reach the server.
    pub transport: ClientTransportOptions,
    /// The servers (`--server`, repeatable), in order of preference: each
    /// `host[:port]` over [`transport`](Self::transport), or with its own
    /// transport as `tcp://host[:port]`, `tls://…`, `ws://host[:port][/path]`,
    /// `wss://…[/path]` or `iroh:<ticket or endpoint id>` (what
    /// [`peer`](ClientTransportOptions::peer) takes). Not used with
    /// `--transport iroh`, which takes the one server from `peer`.
    pub servers: Vec<String>,
    /// The private key (`--identity`); default `~/.ssh/id_ed25519`.
    pub identity: Option<Source>,
    /// Passphrase of an encrypted identity (`WRAITH_KEY_PASSPHRASE`).
    pub passphrase: Option<String>,
    /// A user certificate (`--certificate`); default `<identity>-cert.pub`
    /// when the identity is a file and that file exists.
    pub certificate: Option<Source>,
    /// A pinned host key (`--host-key`): `SHA256:…`, a key line or a file.
    pub host_key: Option<String>,
    /// An OpenSSH known_hosts file to check the host key against
    /// (`--known-hosts`); without it and `host_key`, trust on first use.
    pub known_hosts: Option<PathBuf>,
    /// Login name (`--user`); default [`local_user`].
    pub user: Option<String>,
}

impl ClientProfile {
    /// A profile with only the transport set.
    pub fn new(transport: ClientTransportOptions) -> Self {
        ClientProfile {
            transport,
            ..Default::default()
        }
    }

    /// The checks that need no file or network: transport options and
    /// the `--server` syntax, so that a typo fails at once.
    pub fn check(&self) -> Result<()> {
        if self.transport.kind == TransportKind::Iroh || self.servers.is_empty() {
            return self.transport.check();
        }
        for (t, server) in self.resolve_servers()? {
            if t.kind == TransportKind::Iroh {
                check_iroh_peer(&server)?;
            } else {
                crate::error::split_host_port(&server, t.default_port(), "--server")?;
            }
        }
        Ok(())
    }

    /// Each `--server` value as the transport options it uses and its
    /// `host[:port]` (for an `iroh:` server, its ticket or endpoint id, also
    /// set as the options' `peer`). One value without a scheme uses the
    /// options as they are, flags checked as always; in a list, or with a
    /// scheme, each server takes the flags its transport uses, and a flag no
    /// server uses is an error.
    fn resolve_servers(&self) -> Result<Vec<(ClientTransportOptions, String)>> {
        if !is_server_list(&self.servers) {
            self.transport.check()?;
            return Ok(vec![(self.transport.clone(), self.servers[0].clone())]);
        }
        if self.transport.peer.is_some() {
            return Err(Error::Usage(
                "--peer is not used with a --server list: give the iroh server in it as iroh:<ticket>"
                    .into(),
            ));
        }
        let mut out = Vec::new();
        for spec in &self.servers {
            let bad = |reason: &str| Error::config("--server", spec.clone(), reason);
            let mut t = self.transport.clone();
            let mut rest = spec.as_str();
            if let Some(peer) = iroh_server(spec) {
                if cfg!(not(feature = "iroh")) {
                    return Err(bad("this wraith was built without the `iroh` feature"));
                }
                if peer.is_empty() {
                    return Err(bad(
                        "iroh: needs the `ticket:` (or `endpoint:`) value the server printed after it",
                    ));
                }
                t.kind = TransportKind::Iroh;
                t.peer = Some(peer.to_string());
                rest = peer;
            } else if let Some((scheme, after)) = spec.split_once("://") {
                // iroh takes `iroh:<ticket>`, not a URL.
                t.kind = TransportKind::from_name(scheme)
                    .filter(|k| *k != TransportKind::Iroh)
                    .ok_or_else(|| {
                        bad("the scheme must be tcp://, tls://, ws://, wss:// or iroh:")
                    })?;
                rest = after;
            }
            if t.kind != TransportKind::Iroh {
                t.iroh_relay = None;
            }
            let ws = matches!(t.kind, TransportKind::Ws | TransportKind::Wss);
            if ws && let Some(i) = rest.find('/') {
                t.ws_path = Some(rest[i..].to_string());
                rest = &rest[..i];
            }
            if !matches!(t.kind, TransportKind::Tls | TransportKind::Wss) {
                t.tls_server_name = None;
                t.tls_ca = None;
                t.tls_pin = None;
                t.insecure = false;
            }
            if !ws {
                t.ws_path = None;
                t.ws_host = None;
            }
            t.check()?;
            out.push((t, rest.to_string()));
        }
        let any = |f: &dyn Fn(&ClientTransportOptions) -> bool| out.iter().any(|(t, _)| f(t));
        const TLS: &str = "a tls:// or wss:// scheme";
        let unused = [
            (
                self.transport.tls_server_name.is_some() && !any(&|t| t.tls_server_name.is_some()),
                "--tls-server-name",
                TLS,
            ),
            (
                self.transport.tls_ca.is_some() && !any(&|t| t.tls_ca.is_some()),
                "--tls-ca",
                TLS,
            ),
            (
                self.transport.tls_pin.is_some() && !any(&|t| t.tls_pin.is_some()),
                "--tls-pin",
                TLS,
            ),
            (
                self.transport.insecure && !any(&|t| t.insecure),
                "--insecure",
                TLS,
            ),
            (
                self.transport.ws_host.is_some() && !any(&|t| t.ws_host.is_some()),
                "--ws-host",
                "a ws:// or wss:// scheme",
            ),
            (
                self.transport.iroh_relay.is_some() && !any(&|t| t.iroh_relay.is_some()),
                "--iroh-relay",
                "the iroh: form",
            ),
        ];
        if let Some((_, flag, hint)) = unused.iter().find(|(u, _, _)| *u) {
            return Err(Error::Usage(format!(
                "{flag} is used by no server in --server (give one {hint}, or set --transport)"
            )));
        }
        Ok(out)
    }

    /// Load the keys, decide the host-key policy, and open the transport
    /// (iroh binds its endpoint here): connect options with default
    /// listeners (SOCKS5 on 127.0.0.1:1080, no forwards).
    pub async fn connect_options(self) -> Result<ConnectOptions> {
        self.check()?;
        let listed = self.transport.kind != TransportKind::Iroh && !self.servers.is_empty();
        let resolved = if listed {
            self.resolve_servers()?
        } else {
            Vec::new()
        };
        let identity_source = match self.identity {
            Some(s) => s,
            None => Source::File(default_identity()?),
        };
        let identity = keys::load_private_key(
            identity_source.clone(),
            self.passphrase.as_deref(),
            "identity",
            "--identity",
        )?;
        let certificate =
            keys::find_certificate(self.certificate, identity_source.path(), &identity)?;
        let host_key = match (&self.host_key, &self.known_hosts) {
            (Some(spec), _) => HostKeyPolicy::Pin(HostKeyPin::parse(spec)?),
            (None, Some(kh)) => {
                if !kh.exists() {
                    return Err(Error::Usage(format!(
                        "cannot read known hosts from {} (--known-hosts): no such file",
                        kh.display()
                    )));
                }
                HostKeyPolicy::KnownHosts(kh.clone())
            }
            (None, None) => HostKeyPolicy::default_tofu(),
        };
        let mut servers = Vec::new();
        if !listed {
            let server = self.servers.first().map(String::as_str);
            let (host, port, transport): (String, u16, Arc<dyn Transport>) =
                self.transport.open(server).await?;
            servers.push(ServerEndpoint {
                transport,
                host,
                port,
            });
        } else {
            for (t, server) in resolved {
                // iroh binds its endpoint here, one per iroh: server.
                let opened = if t.kind == TransportKind::Iroh {
                    t.open(None).await.map_err(|e| peer_as_server(e, &server))
                } else {
                    t.open(Some(&server)).await
                };
                let (host, port, transport) = opened?;
                servers.push(ServerEndpoint {
                    transport,
                    host,
                    port,
                });
            }
        }
        let first = servers.remove(0);
        let user = self.user.unwrap_or_else(local_user);
        let mut opts = ConnectOptions::new(first.transport, first.host, first.port, user, identity);
        opts.fallback_servers = servers;
        opts.host_key = host_key;
        opts.certificate = certificate;
        Ok(opts)
    }
}

/// Whether `servers` (the `--server` values) is a list whose entries each
/// name their transport, rather than the one server `--transport` reaches:
/// more than one value, or one with a scheme (`tls://…`, `iroh:…`).
pub fn is_server_list(servers: &[String]) -> bool {
    servers.len() > 1
        || servers
            .iter()
            .any(|s| s.contains("://") || iroh_server(s).is_some())
}

/// The ticket or endpoint id of an `iroh:<peer>` server (`iroh://<peer>`
/// is taken too). `iroh:<port>` stays a host named `iroh` with a port.
fn iroh_server(spec: &str) -> Option<&str> {
    let peer = spec
        .strip_prefix("iroh://")
        .or_else(|| spec.strip_prefix("iroh:"))?;
    (peer.parse::<u16>().is_err()).then_some(peer)
}

/// An error about `--peer` from the iroh transport, told about the
/// `--server` value `iroh:<peer>` it came from.
fn peer_as_server(e: Error, peer: &str) -> Error {
    match e {
        Error::Config {
            flag: "--peer",
            reason,
            ..
        } => Error::Config {
            flag: "--server",
            value: format!("iroh:{peer}"),
            reason,
        },
        other => other,
    }
}

/// An `iroh:` server's ticket or endpoint id is well-formed.
fn check_iroh_peer(peer: &str) -> Result<()> {
    #[cfg(feature = "iroh")]
    peer.parse::<crate::transport::IrohPeer>()
        .map_err(|e| peer_as_server(e, peer))?;
    #[cfg(not(feature = "iroh"))]
    let _ = peer;
    Ok(())
}

/// A line of a key file that was skipped, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileWarning {
    /// The file, as given.
    pub file: String,
    /// The option that named it (`--authorized-keys`, `--cert-authority`).
    pub flag: &'static str,
    /// 1-based line number.
    pub line: usize,
    /// Why the line was skipped.
    pub reason: String,
}

impl std::fmt::Display for KeyFileWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} ({})",
            self.file, self.line, self.reason, self.flag
        )
    }
}

/// The keys a server needs: its host key and who may log in.
#[non_exhaustive]
pub struct ServerProfile {
    /// The host key (`--key`).
    pub host_key: Source,
    /// Passphrase of an encrypted host key (`WRAITH_KEY_PASSPHRASE`).
    pub passphrase: Option<String>,
    /// The authorized_keys file (`--authorized-keys`).
    pub authorized_keys: Source,
    /// Files of trusted user CAs (`--cert-authority`).
    pub cert_authorities: Vec<Source>,
}

impl ServerProfile {
    /// A profile with no CA and no passphrase.
    pub fn new(host_key: Source, authorized_keys: Source) -> Self {
        ServerProfile {
            host_key,
            passphrase: None,
            authorized_keys,
            cert_authorities: Vec::new(),
        }
    }

    /// Load the keys: serve options with defaults, and a warning for every
    /// line that was skipped (and one when nobody can log in).
    pub fn serve_options(&self) -> Result<(ServeOptions, Vec<String>)> {
        let host_key = keys::load_private_key(
            self.host_key.clone(),
            self.passphrase.as_deref(),
            "host key",
            "--key",
        )?;
        let (authorized, warnings) = self.authorized_keys()?;
        Ok((ServeOptions::new(host_key, authorized), warnings))
    }

    /// Read the authorized_keys file and the CA files into one set, with a
    /// warning per skipped line (and one if nobody can log in). What
    /// [`ServerProfile::serve_options`] does for the keys, and what a
    /// reload (SIGHUP) does again.
    pub fn authorized_keys(&self) -> Result<(AuthorizedKeys, Vec<String>)> {
        let mut warnings = Vec::new();
        let file_warnings =
            |source: &Source, flag: &'static str, lines: Vec<crate::server::LineWarning>| {
                let file = source.origin().display().to_string();
                lines
                    .into_iter()
                    .map(|w| {
                        KeyFileWarning {
                            file: file.clone(),
                            flag,
                            line: w.line,
                            reason: w.reason,
                        }
                        .to_string()
                    })
                    .collect::<Vec<_>>()
            };
        let (mut authorized, lines) = AuthorizedKeys::load(self.authorized_keys.clone())?;
        warnings.extend(file_warnings(
            &self.authorized_keys,
            "--authorized-keys",
            lines,
        ));
        for ca in &self.cert_authorities {
            let (cas, lines) = AuthorizedKeys::load_cert_authorities(ca.clone())?;
            warnings.extend(file_warnings(ca, "--cert-authority", lines));
            authorized.extend(cas);
        }
        if authorized.is_empty() {
            warnings.push(format!(
                "{} holds no usable key: nobody can log in (--authorized-keys)",
                self.authorized_keys.origin().display()
            ));
        }
        Ok((authorized, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "ws")]
    fn listed(
        servers: &[&str],
        base: ClientTransportOptions,
    ) -> Result<Vec<(TransportKind, String, Option<String>)>> {
        let mut p = ClientProfile::new(base);
        p.servers = servers.iter().map(|s| s.to_string()).collect();
        p.check()?;
        Ok(p.resolve_servers()?
            .into_iter()
            .map(|(t, s)| (t.kind, s, t.ws_path))
            .collect())
    }

    #[cfg(feature = "ws")]
    #[test]
    fn a_server_list_gives_each_server_its_transport() {
        let mut base = ClientTransportOptions::new(TransportKind::Tcp);
        base.tls_ca = Some(Source::Bytes(b"pem".to_vec()));
        let got = listed(
            &[
                "a.example",
                "tls://b.example:8443",
                "wss://c.example/s3cret/x",
                "ws://[::1]:80",
            ],
            base.clone(),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                (TransportKind::Tcp, "a.example".into(), None),
                (TransportKind::Tls, "b.example:8443".into(), None),
                (
                    TransportKind::Wss,
                    "c.example".into(),
                    Some("/s3cret/x".into())
                ),
                (TransportKind::Ws, "[::1]:80".into(), None),
            ]
        );
        // --tls-ca with no TLS server in the list is a mistake, said once.
        let e = listed(&["a.example", "tcp://b.example"], base.clone()).unwrap_err();
        assert!(
            e.to_string().starts_with("--tls-ca is used by no server"),
            "{e}"
        );
        let e = listed(&["ftp://a.example"], base.clone()).unwrap_err();
        assert!(e.to_string().contains("the scheme must be tcp://"), "{e}");
        let e = listed(&["tls://a.example:99999"], base.clone()).unwrap_err();
        assert!(e.to_string().contains("--server"), "{e}");
        // One plain server: the flags are checked as always.
        let e = listed(&["a.example"], base).unwrap_err();
        assert_eq!(e.to_string(), "--tls-ca needs --transport tls or wss");
    }

    #[cfg(all(feature = "iroh", feature = "tls"))]
    #[test]
    fn an_iroh_server_in_a_list_takes_its_ticket_or_endpoint_id() {
        use iroh::EndpointAddr;
        use iroh_tickets::endpoint::EndpointTicket;
        let key = keys::generate_ed25519("server").unwrap();
        let id = crate::transport::derive_secret_key(&key).unwrap().public();
        let addr = EndpointAddr::new(id).with_ip_addr("127.0.0.1:4433".parse().unwrap());
        let ticket = EndpointTicket::new(addr).to_string();
        let pinned = format!("{id}@127.0.0.1:4433");
        let mut base = ClientTransportOptions::new(TransportKind::Tcp);
        base.iroh_relay = Some("disabled".into());
        let resolve = |servers: &[&str], base: &ClientTransportOptions| {
            let mut p = ClientProfile::new(base.clone());
            p.servers = servers.iter().map(|s| s.to_string()).collect();
            p.check()?;
            Ok::<_, Error>(
                p.resolve_servers()?
                    .into_iter()
                    .map(|(t, s)| (t.kind, s, t.peer, t.iroh_relay))
                    .collect::<Vec<_>>(),
            )
        };
        let servers = [
            "tls://a.example",
            &format!("iroh:{ticket}"),
            &format!("iroh://{id}"),
            &format!("iroh:{pinned}"),
            // A host named iroh, with a port: not an iroh server.
            "iroh:2222",
        ];
        let disabled = Some("disabled".to_string());
        assert_eq!(
            resolve(&servers, &base).unwrap(),
            [
                (TransportKind::Tls, "a.example".into(), None, None),
                (
                    TransportKind::Iroh,
                    ticket.clone(),
                    Some(ticket.clone()),
                    disabled.clone()
                ),
                (
                    TransportKind::Iroh,
                    id.to_string(),
                    Some(id.to_string()),
                    disabled.clone()
                ),
                (
                    TransportKind::Iroh,
                    pinned.clone(),
                    Some(pinned.clone()),
                    disabled.clone()
                ),
                (TransportKind::Tcp, "iroh:2222".into(), None, None),
            ]
        );
        // One iroh: server alone is a list of one: it is not a host name.
        let one = format!("iroh:{ticket}");
        assert!(is_server_list(std::slice::from_ref(&one)));
        assert!(!is_server_list(&["iroh:22".to_string()]));
        assert_eq!(resolve(&[&one], &base).unwrap()[0].0, TransportKind::Iroh);

        // Mistakes: one line naming --server and the value as typed.
        let e = resolve(&["a.example", "iroh:nonsense"], &base).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid --server value \"iroh:nonsense\": expected the `ticket:`"),
            "{e}"
        );
        let e = resolve(&["a.example", "iroh:"], &base).unwrap_err();
        assert!(e.to_string().contains("iroh: needs the `ticket:`"), "{e}");
        let e = resolve(&["a.example", "tls://b.example"], &base).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--iroh-relay is used by no server in --server (give one the iroh: form, or set --transport)"
        );
        let mut with_peer = ClientTransportOptions::new(TransportKind::Tcp);
        with_peer.peer = Some(id.to_string());
        let e = resolve(&["a.example", &one], &with_peer).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--peer is not used with a --server list"),
            "{e}"
        );
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
    }

    /// What an `iroh:` server cannot be dialled with shows up when its
    /// endpoint is opened, still naming `--server`.
    #[cfg(all(feature = "iroh", feature = "tls"))]
    #[tokio::test]
    async fn a_bare_endpoint_id_without_relays_names_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join("id");
        keys::write_key_pair(&keys::generate_ed25519("c").unwrap(), &identity, false).unwrap();
        let key = keys::generate_ed25519("server").unwrap();
        let id = crate::transport::derive_secret_key(&key).unwrap().public();
        let mut base = ClientTransportOptions::new(TransportKind::Tcp);
        base.iroh_relay = Some("disabled".into());
        let mut p = ClientProfile::new(base);
        p.servers = vec!["127.0.0.1:1".into(), format!("iroh:{id}")];
        p.identity = Some(Source::File(identity));
        let e = p.connect_options().await.err().unwrap().to_string();
        assert!(
            e.starts_with(&format!(
                "invalid --server value \"iroh:{id}\": with --iroh-relay disabled"
            )),
            "{e}"
        );
    }

    #[test]
    fn flags_become_option_names() {
        let o = Naming::Options;
        assert_eq!(
            o.render("cannot read identity from ./k (--identity): bad"),
            "cannot read identity from ./k (identity): bad"
        );
        assert_eq!(
            o.render("certificate does not match --tls-pin (the key is sha256/x--y)"),
            "certificate does not match tlsPin (the key is sha256/x--y)"
        );
        assert_eq!(
            o.render("cannot read host key from k (--key): x"),
            "cannot read host key from k (hostKey): x"
        );
        // Not flags: a lone "--", one inside a word, one before a capital.
        for same in ["a -- b", "x--y", "--", "see --Foo", "end --"] {
            assert_eq!(o.render(same), same);
        }
        assert_eq!(Naming::Flags.render("(--tls-pin)"), "(--tls-pin)");
        // A command line in backticks stays as typed.
        assert_eq!(
            o.render(
                "--transport iroh needs --peer: the line `wraith serve --transport iroh` printed"
            ),
            "transport iroh needs peer: the line `wraith serve --transport iroh` printed"
        );
    }

    #[test]
    fn warnings_name_file_line_and_flag() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        keys::write_key_pair(&keys::generate_ed25519("h").unwrap(), &host, false).unwrap();
        let ak = dir.path().join("ak");
        std::fs::write(&ak, "not a key\n").unwrap();
        let profile = ServerProfile::new(Source::File(host), Source::File(ak.clone()));
        let (_, warnings) = profile.serve_options().unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with(&format!("{}:1: ", ak.display())),
            "{warnings:?}"
        );
        assert!(warnings[0].ends_with("(--authorized-keys)"), "{warnings:?}");
        assert!(warnings[1].contains("nobody can log in"), "{warnings:?}");
    }
}
