//! Parsing of `--forward` (like `ssh -L`) and `--remote-forward` (like
//! `ssh -R`) specs into typed values.
//!
//! The grammar and defaults follow OpenSSH's `parse_forward()` and
//! `channel_rfwd_bind_host()`: fields are separated by `:`, a field in
//! `[brackets]` is taken literally (so IPv6 addresses and paths holding a
//! colon must be bracketed), and a field containing `/` is a Unix socket path.
//! A leading `udp:` makes a UDP forward (`udp:[bind:]port:host:hostport`,
//! the form wstunnel and chisel users know); its parts are host and port
//! only.
//!
//! This module only parses text: it must never resolve names, touch the file
//! system or bind sockets. Whether a host resolves or a socket path exists is
//! found out by the listener that uses the spec.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Default `--forward` bind address when the spec gives none: loopback only,
/// as `ssh -L` without `GatewayPorts`.
const LOCAL_DEFAULT_BIND: &str = "127.0.0.1";
/// What an empty or `*` `--forward` bind address stands for.
const LOCAL_ALL_INTERFACES: &str = "0.0.0.0";
/// Default `--remote-forward` bind address when the spec gives none. Like
/// `ssh -R`, send "localhost": sshd with `GatewayPorts clientspecified` binds
/// every interface for "", so "" must mean an explicit `*`, never a default.
const REMOTE_DEFAULT_BIND: &str = "localhost";
/// What an empty or `*` `--remote-forward` bind address is sent as: "" asks
/// the server for all interfaces (if its policy allows).
const REMOTE_ALL_INTERFACES: &str = "";

const LOCAL_FLAG: &str = "--forward";
const REMOTE_FLAG: &str = "--remote-forward";
const LOCAL_FORMS: &str = "[udp:][bind_address:]port:host:hostport, where a Unix socket path may replace \
     [bind_address:]port or host:hostport of a TCP forward (IPv6 addresses in brackets: [::1])";
const REMOTE_FORMS: &str = "[udp:][bind_address:]port:host:hostport, where a local Unix socket path may replace \
     host:hostport of a TCP forward (IPv6 addresses in brackets: [::1])";
/// The prefix of a UDP forward spec.
const UDP_PREFIX: &str = "udp:";

/// One end of a forward: a TCP or UDP host and port, or a Unix socket
/// path. The same shape serves where a forward listens ([`BindAddr`]: port
/// 0 picks a free port; `127.0.0.1` unless the spec names an address,
/// `0.0.0.0` for `*` or an empty one) and where it delivers
/// ([`ForwardTarget`]: the port is never 0). Hosts are kept without
/// brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// The port.
        port: u16,
    },
    /// A Unix domain socket.
    Unix(PathBuf),
    /// A UDP address.
    Udp {
        /// Host name or IP address.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Where a forwarded connection is delivered.
pub type ForwardTarget = Endpoint;

/// Where a `--forward` listener accepts connections on the client machine.
pub type BindAddr = Endpoint;

impl fmt::Display for Endpoint {
    /// `host:port`, `[v6::addr]:port`, the socket path, or `udp:host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => fmt_host_port(f, host, *port),
            Endpoint::Unix(path) => path.display().fmt(f),
            Endpoint::Udp { host, port } => {
                f.write_str(UDP_PREFIX)?;
                fmt_host_port(f, host, *port)
            }
        }
    }
}

fn fmt_host_port(f: &mut fmt::Formatter<'_>, host: &str, port: u16) -> fmt::Result {
    fmt::Display::fmt(&super::host_port::HostPort(host, port), f)
}

/// A local forward: listen on the client, connect from the server.
///
/// Parsed from `--forward [bind_address:]port:host:hostport`,
/// `[bind_address:]port:/path/to.sock` or `/local.sock:host:hostport` (and
/// `/local.sock:/remote.sock`), like `ssh -L`. Without a bind address the
/// listener is on `127.0.0.1`; `*` or an empty bind address
/// (`:8080:host:80`) means all interfaces, `0.0.0.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalForwardSpec {
    /// Where to listen on the client.
    pub bind: BindAddr,
    /// Where the server connects to, as seen from the server.
    pub target: ForwardTarget,
}

/// A remote forward: listen on the server, connect from the client.
///
/// Parsed from `--remote-forward [bind_address:]port:host:hostport` or
/// `[bind_address:]port:/local/path.sock`, like `ssh -R`: the bind side is on
/// the server, the target on the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteForwardSpec {
    /// Address the server should listen on, sent as-is in the
    /// `tcpip-forward` request: `localhost` when the spec names none (as
    /// OpenSSH sends), `""` for `*` or an empty bind address (all
    /// interfaces, if the server allows it), otherwise the given address
    /// without brackets. The server's policy decides what is honoured.
    pub bind_host: String,
    /// Port the server should listen on; 0 asks the server to pick one.
    pub bind_port: u16,
    /// Where the client connects to, as seen from the client.
    pub target: ForwardTarget,
}

/// Why a `--forward` or `--remote-forward` spec was rejected.
///
/// Every message quotes the spec, says what is wrong with it and gives the
/// expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardSpecError {
    /// The spec has a number of `:`-separated parts no form accepts.
    #[error(
        "bad {flag} spec {spec:?}: wrong number of ':'-separated parts ({found}){hint}; expected {expected}",
        hint = if *.found > 4 { " (are there unbracketed IPv6 addresses?)" } else { "" }
    )]
    WrongPartCount {
        /// The flag the spec was given to.
        flag: &'static str,
        /// The spec as given.
        spec: String,
        /// How many parts it has.
        found: usize,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A required part is empty, e.g. `8080::80`.
    #[error("bad {flag} spec {spec:?}: the {part} is empty; expected {expected}")]
    EmptyPart {
        /// The flag the spec was given to.
        flag: &'static str,
        /// The spec as given.
        spec: String,
        /// Which part is empty, e.g. "target host".
        part: &'static str,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A port is not a decimal number in range.
    #[error(
        "bad {flag} spec {spec:?}: the {part} {value:?} is not a port number ({range}); expected {expected}"
    )]
    InvalidPort {
        /// The flag the spec was given to.
        flag: &'static str,
        /// The spec as given.
        spec: String,
        /// Which port, e.g. "bind port".
        part: &'static str,
        /// The text found where the port should be.
        value: String,
        /// The accepted range, e.g. "1-65535".
        range: &'static str,
        /// The accepted forms.
        expected: &'static str,
    },
    /// The target port is 0, which cannot be connected to.
    #[error("bad {flag} spec {spec:?}: the target port must not be 0; expected {expected}")]
    TargetPortZero {
        /// The flag the spec was given to.
        flag: &'static str,
        /// The spec as given.
        spec: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A `[` that opens a part is never closed.
    #[error("bad {flag} spec {spec:?}: '[' is not closed by ']'; expected {expected}")]
    UnclosedBracket {
        /// The flag the spec was given to.
        flag: &'static str,
        /// The spec as given.
        spec: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A closing `]` is followed by something other than `:` or the end.
    #[error(
        "bad {flag} spec {spec:?}: ']' must be followed by ':' or the end of the spec; expected {expected}"
    )]
    TextAfterBracket {
        /// The flag the spec was given to.
        flag: &'static str,
        /// The spec as given.
        spec: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A part that must be a host contains `/`, so it reads as a path.
    #[error(
        "bad {flag} spec {spec:?}: the {part} {value:?} contains '/' but must be a host name or address; expected {expected}"
    )]
    UnexpectedPath {
        /// The flag the spec was given to.
        flag: &'static str,
        /// The spec as given.
        spec: String,
        /// Which part, e.g. "target host".
        part: &'static str,
        /// The text of that part.
        value: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A `--remote-forward` spec asks the server to listen on a Unix
    /// socket, which is not supported.
    #[error(
        "bad --remote-forward spec {spec:?}: listening on a Unix socket on the server is not supported; expected {expected}"
    )]
    RemoteUnixBind {
        /// The spec as given.
        spec: String,
        /// The accepted forms.
        expected: &'static str,
    },
    /// A `udp:` spec names a Unix socket.
    #[error(
        "bad {flag} spec {spec:?}: a UDP forward takes ports and hosts, not Unix socket paths; expected {expected}"
    )]
    UdpUnix {
        /// The flag the spec was given to.
        flag: &'static str,
        /// The spec as given.
        spec: String,
        /// The accepted forms.
        expected: &'static str,
    },
}

impl FromStr for LocalForwardSpec {
    type Err = ForwardSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let ctx = Ctx::new(spec, LOCAL_FLAG, LOCAL_FORMS);
        let parsed = ctx.parse_local()?;
        if !ctx.udp {
            return Ok(parsed);
        }
        match parsed {
            LocalForwardSpec {
                bind: BindAddr::Tcp { host, port },
                target:
                    ForwardTarget::Tcp {
                        host: to,
                        port: to_port,
                    },
            } => Ok(LocalForwardSpec {
                bind: BindAddr::Udp { host, port },
                target: ForwardTarget::Udp {
                    host: to,
                    port: to_port,
                },
            }),
            _ => Err(ctx.udp_unix()),
        }
    }
}

impl Ctx<'_> {
    fn parse_local(&self) -> Result<LocalForwardSpec, ForwardSpecError> {
        let ctx = self;
        let fields = ctx.split()?;
        match fields.as_slice() {
            // port:/remote.sock
            [port, path] if path.is_path && !port.is_path => Ok(LocalForwardSpec {
                bind: BindAddr::Tcp {
                    host: LOCAL_DEFAULT_BIND.to_owned(),
                    port: ctx.bind_port(port)?,
                },
                target: ForwardTarget::Unix(ctx.path(path)),
            }),
            // /local.sock:/remote.sock
            [local, remote] if local.is_path && remote.is_path => Ok(LocalForwardSpec {
                bind: BindAddr::Unix(ctx.path(local)),
                target: ForwardTarget::Unix(ctx.path(remote)),
            }),
            // /local.sock:host:hostport
            [local, host, port] if local.is_path => Ok(LocalForwardSpec {
                bind: BindAddr::Unix(ctx.path(local)),
                target: ctx.tcp_target(host, port)?,
            }),
            // bind_address:port:/remote.sock
            [bind, port, path] if path.is_path => Ok(LocalForwardSpec {
                bind: BindAddr::Tcp {
                    host: ctx.local_bind_host(bind)?,
                    port: ctx.bind_port(port)?,
                },
                target: ForwardTarget::Unix(ctx.path(path)),
            }),
            // port:host:hostport
            [port, host, host_port] => {
                ctx.non_empty(&[
                    (port, "bind port"),
                    (host, "target host"),
                    (host_port, "target port"),
                ])?;
                Ok(LocalForwardSpec {
                    bind: BindAddr::Tcp {
                        host: LOCAL_DEFAULT_BIND.to_owned(),
                        port: ctx.bind_port(port)?,
                    },
                    target: ctx.tcp_target(host, host_port)?,
                })
            }
            // bind_address:port:host:hostport
            [bind, port, host, host_port] => {
                ctx.non_empty(&[
                    (port, "bind port"),
                    (host, "target host"),
                    (host_port, "target port"),
                ])?;
                Ok(LocalForwardSpec {
                    bind: BindAddr::Tcp {
                        host: ctx.local_bind_host(bind)?,
                        port: ctx.bind_port(port)?,
                    },
                    target: ctx.tcp_target(host, host_port)?,
                })
            }
            _ => Err(ctx.wrong_part_count(fields.len())),
        }
    }
}

impl FromStr for RemoteForwardSpec {
    type Err = ForwardSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let ctx = Ctx::new(spec, REMOTE_FLAG, REMOTE_FORMS);
        let mut parsed = ctx.parse_remote()?;
        if ctx.udp {
            let ForwardTarget::Tcp { host, port } = parsed.target else {
                return Err(ctx.udp_unix());
            };
            parsed.target = ForwardTarget::Udp { host, port };
        }
        Ok(parsed)
    }
}

impl Ctx<'_> {
    fn parse_remote(&self) -> Result<RemoteForwardSpec, ForwardSpecError> {
        let ctx = self;
        let spec = ctx.spec;
        let fields = ctx.split()?;
        // OpenSSH would take a leading path as a server-side socket
        // (streamlocal-forward); we cannot offer that, so say so plainly.
        if fields.len() > 1 && fields.first().is_some_and(|f| f.is_path) {
            return Err(ForwardSpecError::RemoteUnixBind {
                spec: spec.to_owned(),
                expected: REMOTE_FORMS,
            });
        }
        let (bind_host, port, target) = match fields.as_slice() {
            // port:/local.sock
            [port, path] if path.is_path => (
                REMOTE_DEFAULT_BIND.to_owned(),
                port,
                ForwardTarget::Unix(ctx.path(path)),
            ),
            // bind_address:port:/local.sock
            [bind, port, path] if path.is_path => (
                ctx.remote_bind_host(bind)?,
                port,
                ForwardTarget::Unix(ctx.path(path)),
            ),
            // port:host:hostport
            [port, host, host_port] => {
                ctx.non_empty(&[
                    (port, "bind port"),
                    (host, "target host"),
                    (host_port, "target port"),
                ])?;
                (
                    REMOTE_DEFAULT_BIND.to_owned(),
                    port,
                    ctx.tcp_target(host, host_port)?,
                )
            }
            // bind_address:port:host:hostport
            [bind, port, host, host_port] => {
                ctx.non_empty(&[
                    (port, "bind port"),
                    (host, "target host"),
                    (host_port, "target port"),
                ])?;
                (
                    ctx.remote_bind_host(bind)?,
                    port,
                    ctx.tcp_target(host, host_port)?,
                )
            }
            _ => return Err(ctx.wrong_part_count(fields.len())),
        };
        Ok(RemoteForwardSpec {
            bind_host,
            bind_port: ctx.bind_port(port)?,
            target,
        })
    }
}

/// One `:`-separated part of a spec, brackets removed.
struct Field<'a> {
    text: &'a str,
    /// Contains a '/', so names a Unix socket (OpenSSH's rule, also inside
    /// brackets).
    is_path: bool,
}

impl<'a> Field<'a> {
    fn new(text: &'a str) -> Self {
        Field {
            text,
            is_path: text.contains('/'),
        }
    }
}

/// The spec being parsed and how to word errors about it.
struct Ctx<'a> {
    /// The whole spec, as errors quote it.
    spec: &'a str,
    /// What is split into fields: the spec without its `udp:` prefix.
    text: &'a str,
    /// The spec began with `udp:`.
    udp: bool,
    flag: &'static str,
    expected: &'static str,
}

impl<'a> Ctx<'a> {
    fn new(spec: &'a str, flag: &'static str, expected: &'static str) -> Self {
        let (text, udp) = match spec.strip_prefix(UDP_PREFIX) {
            Some(rest) => (rest, true),
            None => (spec, false),
        };
        Ctx {
            spec,
            text,
            udp,
            flag,
            expected,
        }
    }

    fn udp_unix(&self) -> ForwardSpecError {
        ForwardSpecError::UdpUnix {
            flag: self.flag,
            spec: self.spec.to_owned(),
            expected: self.expected,
        }
    }

    /// Splits at ':' outside brackets. Unlike OpenSSH, a trailing ':' yields
    /// an empty last field (reported as such) rather than being ignored.
    fn split(&self) -> Result<Vec<Field<'a>>, ForwardSpecError> {
        let mut fields = Vec::new();
        let mut rest = self.text;
        loop {
            if let Some(open) = rest.strip_prefix('[') {
                let Some((inner, after)) = open.split_once(']') else {
                    return Err(ForwardSpecError::UnclosedBracket {
                        flag: self.flag,
                        spec: self.spec.to_owned(),
                        expected: self.expected,
                    });
                };
                fields.push(Field::new(inner));
                if after.is_empty() {
                    return Ok(fields);
                }
                let Some(next) = after.strip_prefix(':') else {
                    return Err(ForwardSpecError::TextAfterBracket {
                        flag: self.flag,
                        spec: self.spec.to_owned(),
                        expected: self.expected,
                    });
                };
                rest = next;
            } else if let Some((field, next)) = rest.split_once(':') {
                fields.push(Field::new(field));
                rest = next;
            } else {
                fields.push(Field::new(rest));
                return Ok(fields);
            }
        }
    }

    fn wrong_part_count(&self, found: usize) -> ForwardSpecError {
        ForwardSpecError::WrongPartCount {
            flag: self.flag,
            spec: self.spec.to_owned(),
            found,
            expected: self.expected,
        }
    }

    /// Reports the first empty part, checked before any part's content so
    /// that a stray ':' is named as such rather than as a bad port.
    fn non_empty(&self, parts: &[(&Field<'_>, &'static str)]) -> Result<(), ForwardSpecError> {
        match parts.iter().find(|(field, _)| field.text.is_empty()) {
            Some((_, part)) => Err(ForwardSpecError::EmptyPart {
                flag: self.flag,
                spec: self.spec.to_owned(),
                part,
                expected: self.expected,
            }),
            None => Ok(()),
        }
    }

    fn port(
        &self,
        field: &Field<'_>,
        part: &'static str,
        range: &'static str,
    ) -> Result<u16, ForwardSpecError> {
        // Digits only: `u16::from_str` would also take "+80". Service names
        // ("http"), which OpenSSH looks up, would need I/O.
        let parsed = if field.text.bytes().all(|b| b.is_ascii_digit()) {
            field.text.parse::<u16>().ok()
        } else {
            None
        };
        parsed.ok_or_else(|| ForwardSpecError::InvalidPort {
            flag: self.flag,
            spec: self.spec.to_owned(),
            part,
            value: field.text.to_owned(),
            range,
            expected: self.expected,
        })
    }

    fn bind_port(&self, field: &Field<'_>) -> Result<u16, ForwardSpecError> {
        self.non_empty(&[(field, "bind port")])?;
        self.port(field, "bind port", "0-65535")
    }

    fn tcp_target(
        &self,
        host: &Field<'_>,
        port: &Field<'_>,
    ) -> Result<ForwardTarget, ForwardSpecError> {
        self.non_empty(&[(host, "target host"), (port, "target port")])?;
        self.not_path(host, "target host")?;
        let port = match self.port(port, "target port", "1-65535")? {
            0 => {
                return Err(ForwardSpecError::TargetPortZero {
                    flag: self.flag,
                    spec: self.spec.to_owned(),
                    expected: self.expected,
                });
            }
            port => port,
        };
        Ok(ForwardTarget::Tcp {
            host: host.text.to_owned(),
            port,
        })
    }

    fn not_path(&self, field: &Field<'_>, part: &'static str) -> Result<(), ForwardSpecError> {
        if field.is_path {
            return Err(ForwardSpecError::UnexpectedPath {
                flag: self.flag,
                spec: self.spec.to_owned(),
                part,
                value: field.text.to_owned(),
                expected: self.expected,
            });
        }
        Ok(())
    }

    fn local_bind_host(&self, field: &Field<'_>) -> Result<String, ForwardSpecError> {
        self.not_path(field, "bind address")?;
        Ok(match field.text {
            "" | "*" => LOCAL_ALL_INTERFACES.to_owned(),
            host => host.to_owned(),
        })
    }

    fn remote_bind_host(&self, field: &Field<'_>) -> Result<String, ForwardSpecError> {
        self.not_path(field, "bind address")?;
        Ok(match field.text {
            "" | "*" => REMOTE_ALL_INTERFACES.to_owned(),
            host => host.to_owned(),
        })
    }

    /// Paths are never empty: they were recognised by their '/'.
    fn path(&self, field: &Field<'_>) -> PathBuf {
        PathBuf::from(field.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(spec: &str) -> LocalForwardSpec {
        spec.parse()
            .unwrap_or_else(|e| panic!("{spec:?} should parse: {e}"))
    }

    fn remote(spec: &str) -> RemoteForwardSpec {
        spec.parse()
            .unwrap_or_else(|e| panic!("{spec:?} should parse: {e}"))
    }

    fn local_err(spec: &str) -> ForwardSpecError {
        match spec.parse::<LocalForwardSpec>() {
            Err(e) => e,
            Ok(parsed) => panic!("{spec:?} should fail, got {parsed:?}"),
        }
    }

    fn remote_err(spec: &str) -> ForwardSpecError {
        match spec.parse::<RemoteForwardSpec>() {
            Err(e) => e,
            Ok(parsed) => panic!("{spec:?} should fail, got {parsed:?}"),
        }
    }

    fn tcp_bind(host: &str, port: u16) -> BindAddr {
        BindAddr::Tcp {
            host: host.into(),
            port,
        }
    }

    fn tcp(host: &str, port: u16) -> ForwardTarget {
        ForwardTarget::Tcp {
            host: host.into(),
            port,
        }
    }

    fn unix(path: &str) -> ForwardTarget {
        ForwardTarget::Unix(path.into())
    }

    // --- --forward: accepted forms ---

    #[test]
    fn local_three_parts_bind_loopback() {
        assert_eq!(
            local("8080:example.com:80"),
            LocalForwardSpec {
                bind: tcp_bind("127.0.0.1", 8080),
                target: tcp("example.com", 80),
            }
        );
    }

    #[test]
    fn local_four_parts_use_given_bind_address() {
        assert_eq!(
            local("192.168.1.2:8080:db.internal:5432"),
            LocalForwardSpec {
                bind: tcp_bind("192.168.1.2", 8080),
                target: tcp("db.internal", 5432),
            }
        );
        assert_eq!(local("localhost:1:h:65535").bind, tcp_bind("localhost", 1));
        assert_eq!(local("localhost:1:h:65535").target, tcp("h", 65535));
    }

    #[test]
    fn local_star_or_empty_bind_means_all_interfaces() {
        assert_eq!(local("*:8080:h:80").bind, tcp_bind("0.0.0.0", 8080));
        assert_eq!(local(":8080:h:80").bind, tcp_bind("0.0.0.0", 8080));
        assert_eq!(local("[]:8080:h:80").bind, tcp_bind("0.0.0.0", 8080));
        assert_eq!(
            local("*:8080:/run/app.sock").bind,
            tcp_bind("0.0.0.0", 8080)
        );
    }

    #[test]
    fn local_ipv6_in_brackets_on_both_sides() {
        assert_eq!(
            local("[::1]:8080:[fe80::1]:80"),
            LocalForwardSpec {
                bind: tcp_bind("::1", 8080),
                target: tcp("fe80::1", 80),
            }
        );
        assert_eq!(
            local("8080:[2001:db8::2]:443").target,
            tcp("2001:db8::2", 443)
        );
        assert_eq!(
            local("[::]:0:[fe80::1%eth0]:22").target,
            tcp("fe80::1%eth0", 22)
        );
    }

    #[test]
    fn local_bind_port_zero_is_allowed() {
        assert_eq!(local("0:h:80").bind, tcp_bind("127.0.0.1", 0));
    }

    #[test]
    fn local_unix_target() {
        assert_eq!(
            local("8080:/run/app.sock"),
            LocalForwardSpec {
                bind: tcp_bind("127.0.0.1", 8080),
                target: unix("/run/app.sock"),
            }
        );
        assert_eq!(
            local("0.0.0.0:8080:/run/app.sock"),
            LocalForwardSpec {
                bind: tcp_bind("0.0.0.0", 8080),
                target: unix("/run/app.sock"),
            }
        );
        assert_eq!(
            local("[::1]:8080:/run/app.sock").bind,
            tcp_bind("::1", 8080)
        );
        assert_eq!(
            local("8080:./relative.sock").target,
            unix("./relative.sock")
        );
    }

    #[test]
    fn local_bracketed_path_may_hold_colons() {
        assert_eq!(local("8080:[/tmp/a:b.sock]").target, unix("/tmp/a:b.sock"));
    }

    #[test]
    fn local_unix_bind() {
        assert_eq!(
            local("/tmp/local.sock:db.internal:5432"),
            LocalForwardSpec {
                bind: BindAddr::Unix("/tmp/local.sock".into()),
                target: tcp("db.internal", 5432),
            }
        );
        assert_eq!(
            local("/tmp/local.sock:/run/remote.sock"),
            LocalForwardSpec {
                bind: BindAddr::Unix("/tmp/local.sock".into()),
                target: unix("/run/remote.sock"),
            }
        );
    }

    // --- --forward: rejected forms ---

    #[test]
    fn local_error_message_quotes_spec_and_expected_form() {
        let msg = local_err("abc").to_string();
        assert!(
            msg.starts_with(r#"bad --forward spec "abc": wrong number of ':'-separated parts (1); expected [udp:][bind_address:]port:host:hostport"#),
            "{msg}"
        );
    }

    #[test]
    fn local_wrong_part_counts_are_rejected() {
        for (spec, found) in [
            ("", 1),
            ("8080", 1),
            ("8080:h", 2),
            ("/a.sock:80", 2),
            ("a:1:b:2:c", 5),
        ] {
            assert!(
                matches!(local_err(spec), ForwardSpecError::WrongPartCount { found: f, .. } if f == found),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn local_unbracketed_ipv6_gets_a_hint() {
        let err = local_err("::1:8080:h:80");
        assert!(matches!(
            err,
            ForwardSpecError::WrongPartCount { found: 6, .. }
        ));
        assert!(err.to_string().contains("unbracketed IPv6"), "{err}");
    }

    #[test]
    fn local_empty_parts_are_rejected() {
        for (spec, part) in [
            ("8080::80", "target host"),
            ("8080:h:", "target port"),
            (":h:80", "bind port"),
            ("8080:h:80:", "target port"),
            ("*::h:80", "bind port"),
            ("*::/run/a.sock", "bind port"),
            ("/tmp/l.sock::80", "target host"),
        ] {
            match local_err(spec) {
                ForwardSpecError::EmptyPart { part: p, .. } => assert_eq!(p, part, "{spec:?}"),
                other => panic!("{spec:?}: {other:?}"),
            }
        }
        let msg = local_err("8080::80").to_string();
        assert!(
            msg.contains(r#""8080::80": the target host is empty"#),
            "{msg}"
        );
    }

    #[test]
    fn local_bad_ports_are_rejected() {
        for (spec, part, value) in [
            ("http:h:80", "bind port", "http"),
            ("65536:h:80", "bind port", "65536"),
            ("8080:h:65536", "target port", "65536"),
            ("8080:h:-1", "target port", "-1"),
            ("8080:h:+80", "target port", "+80"),
            ("8080:h: 80", "target port", " 80"),
            (
                "*:99999999999999999999:h:80",
                "bind port",
                "99999999999999999999",
            ),
            ("/tmp/l.sock:h:x", "target port", "x"),
        ] {
            match local_err(spec) {
                ForwardSpecError::InvalidPort {
                    part: p, value: v, ..
                } => {
                    assert_eq!((p, v.as_str()), (part, value), "{spec:?}");
                }
                other => panic!("{spec:?}: {other:?}"),
            }
        }
        let msg = local_err("8080:h:70000").to_string();
        assert!(
            msg.contains(r#"the target port "70000" is not a port number (1-65535)"#),
            "{msg}"
        );
    }

    #[test]
    fn local_target_port_zero_is_rejected() {
        for spec in ["8080:h:0", "*:8080:h:0", "/tmp/l.sock:h:0", "8080:h:00000"] {
            assert!(
                matches!(local_err(spec), ForwardSpecError::TargetPortZero { .. }),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn local_unclosed_bracket_is_rejected() {
        for spec in ["[::1:8080:h:80", "8080:[::1:80", "[::1]:8080:[fe80::1"] {
            assert!(
                matches!(local_err(spec), ForwardSpecError::UnclosedBracket { .. }),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn local_text_after_bracket_is_rejected() {
        for spec in ["[::1]x:8080:h:80", "8080:[::1]80", "8080:[h]]:80"] {
            assert!(
                matches!(local_err(spec), ForwardSpecError::TextAfterBracket { .. }),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn local_path_where_host_belongs_is_rejected() {
        match local_err("8080:/var/run/x:80") {
            ForwardSpecError::UnexpectedPath { part, value, .. } => {
                assert_eq!((part, value.as_str()), ("target host", "/var/run/x"));
            }
            other => panic!("{other:?}"),
        }
        match local_err("/bind:8080:h:80") {
            ForwardSpecError::UnexpectedPath { part, .. } => assert_eq!(part, "bind address"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            local_err("/tmp/l.sock:a/b:80"),
            ForwardSpecError::UnexpectedPath {
                part: "target host",
                ..
            }
        ));
    }

    // --- --remote-forward: accepted forms ---

    #[test]
    fn remote_three_parts_use_default_bind() {
        assert_eq!(
            remote("8080:localhost:3000"),
            RemoteForwardSpec {
                bind_host: "localhost".into(),
                bind_port: 8080,
                target: tcp("localhost", 3000),
            }
        );
    }

    #[test]
    fn remote_four_parts_use_given_bind_address() {
        assert_eq!(
            remote("0.0.0.0:8080:127.0.0.1:80"),
            RemoteForwardSpec {
                bind_host: "0.0.0.0".into(),
                bind_port: 8080,
                target: tcp("127.0.0.1", 80),
            }
        );
    }

    #[test]
    fn remote_star_or_empty_bind_is_sent_as_empty_string() {
        assert_eq!(remote("*:8080:h:80").bind_host, "");
        assert_eq!(remote(":8080:h:80").bind_host, "");
        assert_eq!(remote("*:8080:/run/a.sock").bind_host, "");
    }

    #[test]
    fn remote_bind_port_zero_asks_server_to_pick() {
        assert_eq!(remote("0:h:80").bind_port, 0);
    }

    #[test]
    fn remote_ipv6_in_brackets_on_both_sides() {
        assert_eq!(
            remote("[::]:8080:[::1]:80"),
            RemoteForwardSpec {
                bind_host: "::".into(),
                bind_port: 8080,
                target: tcp("::1", 80),
            }
        );
    }

    #[test]
    fn remote_unix_target() {
        assert_eq!(
            remote("8080:/run/app.sock"),
            RemoteForwardSpec {
                bind_host: "localhost".into(),
                bind_port: 8080,
                target: unix("/run/app.sock"),
            }
        );
        assert_eq!(
            remote("[::1]:9000:/run/app.sock"),
            RemoteForwardSpec {
                bind_host: "::1".into(),
                bind_port: 9000,
                target: unix("/run/app.sock"),
            }
        );
    }

    // --- --remote-forward: rejected forms ---

    #[test]
    fn remote_unix_bind_is_rejected() {
        for spec in [
            "/tmp/s.sock:h:80",
            "/tmp/s.sock:/tmp/t.sock",
            "[/tmp/s]:8080:h:80",
        ] {
            assert!(
                matches!(remote_err(spec), ForwardSpecError::RemoteUnixBind { .. }),
                "{spec:?}"
            );
        }
        assert!(
            remote_err("/tmp/s.sock:h:80")
                .to_string()
                .contains("--remote-forward")
        );
    }

    #[test]
    fn remote_wrong_part_counts_are_rejected() {
        // A lone port would be OpenSSH's remote dynamic (SOCKS) forward.
        for spec in ["8080", "8080:h", "a:1:b:2:c", ""] {
            assert!(
                matches!(remote_err(spec), ForwardSpecError::WrongPartCount { .. }),
                "{spec:?}"
            );
        }
        let msg = remote_err("abc").to_string();
        assert!(
            msg.starts_with(r#"bad --remote-forward spec "abc": "#),
            "{msg}"
        );
        assert!(
            msg.contains("expected [udp:][bind_address:]port:host:hostport"),
            "{msg}"
        );
    }

    #[test]
    fn remote_bad_parts_are_rejected() {
        assert!(matches!(
            remote_err("8080:h:0"),
            ForwardSpecError::TargetPortZero { .. }
        ));
        assert!(matches!(
            remote_err("99999:h:80"),
            ForwardSpecError::InvalidPort {
                part: "bind port",
                ..
            }
        ));
        assert!(matches!(
            remote_err("8080::80"),
            ForwardSpecError::EmptyPart {
                part: "target host",
                ..
            }
        ));
        assert!(matches!(
            remote_err("*::/run/a.sock"),
            ForwardSpecError::EmptyPart {
                part: "bind port",
                ..
            }
        ));
        assert!(matches!(
            remote_err(":/run/a.sock"),
            ForwardSpecError::EmptyPart {
                part: "bind port",
                ..
            }
        ));
        assert!(matches!(
            remote_err("[::1:8080:h:80"),
            ForwardSpecError::UnclosedBracket { .. }
        ));
        assert!(matches!(
            remote_err("[::1]8080:h:80"),
            ForwardSpecError::TextAfterBracket { .. }
        ));
        assert!(matches!(
            remote_err("8080:a/b:80"),
            ForwardSpecError::UnexpectedPath {
                part: "target host",
                ..
            }
        ));
    }

    // --- display ---

    #[test]
    fn targets_and_binds_display_like_specs() {
        assert_eq!(tcp("example.com", 80).to_string(), "example.com:80");
        assert_eq!(tcp("10.0.0.1", 22).to_string(), "10.0.0.1:22");
        assert_eq!(tcp("fe80::1", 80).to_string(), "[fe80::1]:80");
        assert_eq!(unix("/run/app.sock").to_string(), "/run/app.sock");
        assert_eq!(tcp_bind("::1", 8080).to_string(), "[::1]:8080");
        assert_eq!(tcp_bind("127.0.0.1", 0).to_string(), "127.0.0.1:0");
        assert_eq!(
            BindAddr::Unix("/tmp/l.sock".into()).to_string(),
            "/tmp/l.sock"
        );
    }

    // --- udp ---

    #[test]
    fn udp_forwards_take_the_tcp_forms_with_a_prefix() {
        let udp = |host: &str, port| ForwardTarget::Udp {
            host: host.into(),
            port,
        };
        let l = local("udp:5353:dns.internal:53");
        assert_eq!(
            l.bind,
            BindAddr::Udp {
                host: "127.0.0.1".into(),
                port: 5353
            }
        );
        assert_eq!(l.target, udp("dns.internal", 53));
        let l = local("udp:[::1]:0:[fe80::1]:53");
        assert_eq!(
            l.bind,
            BindAddr::Udp {
                host: "::1".into(),
                port: 0
            }
        );
        assert_eq!(l.target.to_string(), "udp:[fe80::1]:53");
        assert_eq!(l.bind.to_string(), "udp:[::1]:0");
        assert_eq!(
            local("udp:*:53:h:53").bind,
            BindAddr::Udp {
                host: "0.0.0.0".into(),
                port: 53
            }
        );
        let r = remote("udp:5353:127.0.0.1:53");
        assert_eq!((r.bind_host.as_str(), r.bind_port), ("localhost", 5353));
        assert_eq!(r.target, udp("127.0.0.1", 53));
        // A bracketed "udp" is a bind address, not the prefix.
        assert_eq!(local("[udp]:1:h:2").bind, tcp_bind("udp", 1));
    }

    #[test]
    fn udp_forwards_refuse_paths_and_quote_the_whole_spec() {
        for spec in [
            "udp:/tmp/a.sock:h:53",
            "udp:53:/run/x.sock",
            "udp:/a/b:/c/d",
        ] {
            let e = local_err(spec);
            assert!(matches!(e, ForwardSpecError::UdpUnix { .. }), "{spec}: {e}");
            assert!(e.to_string().contains(&format!("{spec:?}")), "{e}");
        }
        assert!(matches!(
            remote_err("udp:53:/run/x.sock"),
            ForwardSpecError::UdpUnix { .. }
        ));
        let e = local_err("udp:53:h:0");
        assert!(
            e.to_string()
                .starts_with(r#"bad --forward spec "udp:53:h:0": the target port must not be 0"#),
            "{e}"
        );
        assert!(matches!(
            local_err("udp:53"),
            ForwardSpecError::WrongPartCount { found: 1, .. }
        ));
    }
}
