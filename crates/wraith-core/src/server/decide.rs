//! What the server does with a channel a client asks for, decided without
//! I/O: join the hub, serve udpgw, dial a target, or refuse with an SSH
//! reason code and a log reason. `handler.rs` asks, then takes its slots and does the I/O.
//! The log reasons say why in general terms, never where to.

use russh::ChannelOpenFailure;

use super::hub;
use crate::proto::policy::{SessionPolicy, SocketRule};
use crate::proto::udpgw::is_udpgw_target;

/// Host names starting with this are served inside the server, never
/// dialed (`wraith-control:0` is the hub).
pub(crate) const RESERVED_PREFIX: &str = "wraith-";

/// The server-wide settings a decision depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerRules<'a> {
    /// `--hub-for-all-keys`.
    pub hub_for_all_keys: bool,
    /// `--allow-stream-local`.
    pub allow_stream_local: &'a [SocketRule],
    /// The udpgw service is on (not `--no-udp`).
    pub udpgw: bool,
    /// Targets are dialed through `--proxy`, which cannot carry UDP.
    pub outbound_proxy: bool,
}

/// The answer to a channel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A control channel: join the event hub.
    Hub,
    /// UDP datagrams in udpgw frames (`wraith-udpgw:0`); each datagram's
    /// destination is checked against the session's policy when it is sent.
    Udpgw,
    /// Open a TCP connection to `host:port`.
    Dial {
        /// As the client sent it.
        host: String,
        /// Never 0 from a client that follows RFC 4254, but not checked.
        port: u16,
    },
    /// Connect to a Unix socket, if its path passes `rules` (checked when
    /// connecting: the path has to be resolved on the file system).
    DialSocket {
        /// The rules the resolved path must pass.
        rules: Vec<SocketRule>,
    },
    /// Refuse with `code`; log `reason` when there is one.
    Refuse {
        /// The SSH reason code sent back.
        code: ChannelOpenFailure,
        /// Why, for the log line; `None` for requests not worth a line.
        reason: Option<&'static str>,
    },
}

fn refuse(reason: &'static str) -> Decision {
    Decision::Refuse {
        code: ChannelOpenFailure::AdministrativelyProhibited,
        reason: Some(reason),
    }
}

/// A `direct-tcpip` request for `host:port`. `policy` is `None` before
/// authentication.
pub(crate) fn direct_tcpip(
    policy: Option<&SessionPolicy>,
    rules: ServerRules<'_>,
    host: &str,
    port: u32,
) -> Decision {
    let Some(policy) = policy else {
        return Decision::Refuse {
            code: ChannelOpenFailure::AdministrativelyProhibited,
            reason: None,
        };
    };
    let Ok(port) = u16::try_from(port) else {
        return Decision::Refuse {
            code: ChannelOpenFailure::ConnectFailed,
            reason: None,
        };
    };
    if is_udpgw_target(host, port) {
        return udpgw(policy, rules);
    }
    if host.starts_with(RESERVED_PREFIX) {
        if !hub::is_control_target(host, port) {
            return refuse("unknown reserved name");
        }
        // The hub is opt-in: the key's (or CA's) `hub` option, or
        // `--hub-for-all-keys`.
        if !policy.may_use_hub(rules.hub_for_all_keys) {
            return refuse("control channel not permitted for this key");
        }
        return Decision::Hub;
    }
    if !policy.may_open(host, port) {
        return refuse("destination not permitted for this key");
    }
    Decision::Dial {
        host: host.to_string(),
        port,
    }
}

/// The udpgw service, for a session that may reach some `host:port`: UDP
/// destinations follow the same `permitopen` rule as TCP ones.
fn udpgw(policy: &SessionPolicy, rules: ServerRules<'_>) -> Decision {
    if !rules.udpgw {
        return refuse("udp relay is off on this server");
    }
    if rules.outbound_proxy {
        return refuse("udp relay is not available through an outbound proxy");
    }
    if !policy.may_open_some() {
        return refuse("udp relay not permitted for this key");
    }
    Decision::Udpgw
}

/// A `direct-streamlocal` request. Off unless the key's `permitopen` names
/// sockets or the server allows some (`--allow-stream-local`): every key
/// shares the server's user, so a socket is as open as the server makes it.
pub(crate) fn direct_streamlocal(
    policy: Option<&SessionPolicy>,
    rules: ServerRules<'_>,
) -> Decision {
    let Some(policy) = policy else {
        return Decision::Refuse {
            code: ChannelOpenFailure::AdministrativelyProhibited,
            reason: None,
        };
    };
    match policy.socket_rules(rules.allow_stream_local) {
        Some(r) => Decision::DialSocket { rules: r.to_vec() },
        None => refuse("not permitted for this key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::authorized_keys::KeyOptions;

    fn policy(options: &[&str]) -> SessionPolicy {
        KeyOptions::parse(options).unwrap().policy()
    }

    const NONE: ServerRules<'static> = ServerRules {
        hub_for_all_keys: false,
        allow_stream_local: &[],
        udpgw: true,
        outbound_proxy: false,
    };

    fn reason(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Refuse { reason, .. } => *reason,
            _ => None,
        }
    }

    #[test]
    fn tcp_destinations_follow_permitopen() {
        let any = policy(&[]);
        assert_eq!(
            direct_tcpip(Some(&any), NONE, "db.internal", 5432),
            Decision::Dial {
                host: "db.internal".into(),
                port: 5432
            }
        );
        let narrow = policy(&["permitopen=db.internal:5432"]);
        assert!(matches!(
            direct_tcpip(Some(&narrow), NONE, "db.internal", 5432),
            Decision::Dial { .. }
        ));
        let d = direct_tcpip(Some(&narrow), NONE, "other", 5432);
        assert_eq!(reason(&d), Some("destination not permitted for this key"));
        let none = policy(&["no-port-forwarding"]);
        assert!(matches!(
            direct_tcpip(Some(&none), NONE, "db.internal", 5432),
            Decision::Refuse { .. }
        ));
    }

    #[test]
    fn before_authentication_and_bad_ports_are_refused_without_a_line() {
        assert_eq!(
            direct_tcpip(None, NONE, "h", 80),
            Decision::Refuse {
                code: ChannelOpenFailure::AdministrativelyProhibited,
                reason: None
            }
        );
        assert_eq!(
            direct_tcpip(Some(&policy(&[])), NONE, "h", 70_000),
            Decision::Refuse {
                code: ChannelOpenFailure::ConnectFailed,
                reason: None
            }
        );
    }

    #[test]
    fn the_hub_is_opt_in_and_reserved_names_are_never_dialed() {
        let plain = policy(&[]);
        let d = direct_tcpip(Some(&plain), NONE, "wraith-control", 0);
        assert_eq!(
            reason(&d),
            Some("control channel not permitted for this key")
        );
        assert_eq!(
            direct_tcpip(Some(&policy(&["hub"])), NONE, "wraith-control", 0),
            Decision::Hub
        );
        assert_eq!(
            direct_tcpip(Some(&policy(&["hub"])), NONE, "wraith-control", 1),
            Decision::Hub
        );
        let all = ServerRules {
            hub_for_all_keys: true,
            ..NONE
        };
        assert_eq!(
            direct_tcpip(Some(&plain), all, "wraith-control", 0),
            Decision::Hub
        );
        let d = direct_tcpip(Some(&policy(&["hub"])), all, "wraith-other", 80);
        assert_eq!(reason(&d), Some("unknown reserved name"));
    }

    #[test]
    fn udpgw_is_served_on_its_names_and_the_ip_alias() {
        let plain = policy(&[]);
        for (host, port) in [("wraith-udpgw", 0), ("wraith-udpgw", 1), ("0.0.0.0", 0)] {
            assert_eq!(
                direct_tcpip(Some(&plain), NONE, host, port),
                Decision::Udpgw,
                "{host}:{port}"
            );
        }
        // Other ports of the name are unknown reserved names; other ports
        // of 0.0.0.0 are ordinary (if odd) TCP destinations.
        let d = direct_tcpip(Some(&plain), NONE, "wraith-udpgw", 2);
        assert_eq!(reason(&d), Some("unknown reserved name"));
        assert!(matches!(
            direct_tcpip(Some(&plain), NONE, "0.0.0.0", 1),
            Decision::Dial { .. }
        ));
        // A permitopen does not need to name the service: each datagram's
        // destination is checked against it instead.
        let narrow = policy(&["permitopen=10.0.0.53:53"]);
        assert_eq!(
            direct_tcpip(Some(&narrow), NONE, "wraith-udpgw", 0),
            Decision::Udpgw
        );
    }

    #[test]
    fn udpgw_is_refused_before_auth_without_forwarding_when_off_and_behind_a_proxy() {
        assert_eq!(
            direct_tcpip(None, NONE, "wraith-udpgw", 1),
            Decision::Refuse {
                code: ChannelOpenFailure::AdministrativelyProhibited,
                reason: None
            }
        );
        assert_eq!(
            direct_tcpip(None, NONE, "0.0.0.0", 0),
            direct_tcpip(None, NONE, "h", 1)
        );
        for key in [
            &["no-port-forwarding"][..],
            &["restrict"],
            &["permitopen=/run/app.sock"],
        ] {
            let d = direct_tcpip(Some(&policy(key)), NONE, "wraith-udpgw", 0);
            assert_eq!(
                reason(&d),
                Some("udp relay not permitted for this key"),
                "{key:?}"
            );
        }
        let off = ServerRules {
            udpgw: false,
            ..NONE
        };
        let d = direct_tcpip(Some(&policy(&[])), off, "0.0.0.0", 0);
        assert_eq!(reason(&d), Some("udp relay is off on this server"));
        let proxied = ServerRules {
            outbound_proxy: true,
            ..NONE
        };
        let d = direct_tcpip(Some(&policy(&[])), proxied, "wraith-udpgw", 1);
        assert_eq!(
            reason(&d),
            Some("udp relay is not available through an outbound proxy")
        );
    }

    #[test]
    fn sockets_need_a_rule() {
        let plain = policy(&[]);
        assert_eq!(
            reason(&direct_streamlocal(Some(&plain), NONE)),
            Some("not permitted for this key")
        );
        let allowed = [SocketRule::parse("/run/app.sock").unwrap()];
        let server = ServerRules {
            allow_stream_local: &allowed,
            ..NONE
        };
        assert_eq!(
            direct_streamlocal(Some(&plain), server),
            Decision::DialSocket {
                rules: allowed.to_vec()
            }
        );
        let own = policy(&["permitopen=/run/own.sock"]);
        assert!(matches!(
            direct_streamlocal(Some(&own), NONE),
            Decision::DialSocket { rules } if rules.len() == 1
        ));
    }
}
