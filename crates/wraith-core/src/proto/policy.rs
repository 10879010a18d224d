//! What an authenticated session may do, as pure values: the `host:port`
//! patterns of `permitopen=` / `permitlisten=`, Unix-socket rules, OpenSSH
//! address pattern lists (`from=`, with CIDR), and the [`SessionPolicy`]
//! the SSH handler consults for every channel. Options are parsed in
//! [`super::authorized_keys`], certificates checked in
//! [`super::certificate`]; canonicalising socket paths on disk is the
//! server's job.
//!
//! Reasons returned from here reach the log: they may name options, never
//! a channel's destination.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use super::frame;
use super::host_port;

/// A `host:port` pattern from `permitopen` / `permitlisten`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Host name or address, compared literally (case-insensitive);
    /// `*` matches any host.
    pub host: String,
    /// `None` matches any port (`*`).
    pub port: Option<u16>,
}

impl HostPattern {
    /// `host:port`, `[v6]:port`, `*:port`, `host:*`; with `host_required`
    /// false (permitlisten) the host may be omitted (`port`), which means
    /// `localhost` as in OpenSSH. The split is [`host_port::split`]'s; only
    /// the `*` port and the omitted host are this grammar's own.
    pub(crate) fn parse(v: &str, host_required: bool) -> Result<Self, String> {
        let bad = || format!("bad host:port {v:?}");
        let parts = host_port::split(v).map_err(|_| bad())?;
        let (host, port) = match parts.port {
            Some(p) => (parts.host, p),
            None if !host_required && !parts.bracketed => ("localhost", v),
            None => return Err(bad()),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = match port {
            "*" => None,
            p => Some(p.parse::<u16>().map_err(|_| bad())?),
        };
        Ok(HostPattern {
            host: host.to_string(),
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        (self.host == "*" || self.host.eq_ignore_ascii_case(host))
            && self.port.is_none_or(|p| p == port)
    }
}

/// A Unix socket a key or the server allows `direct-streamlocal` to: one
/// absolute path, or (written with a trailing `/`) every socket below a
/// directory. Compared after both sides are canonicalised (symlinks
/// resolved), component by component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketRule {
    path: PathBuf,
    below: bool,
}

/// Longest socket path accepted from a client or a rule (Linux `PATH_MAX`).
const MAX_SOCKET_PATH: usize = 4096;

impl SocketRule {
    /// Parse `/run/app.sock` (that socket) or `/run/app/` (any socket below
    /// `/run/app`). Relative paths, `..`, `.` and `/` alone are refused.
    pub fn parse(v: &str) -> Result<Self, String> {
        let path = check_socket_path(v).map_err(|e| e.to_string())?;
        let below = v.ends_with('/');
        if path == Path::new("/") {
            return Err("it would allow every socket on the host; name a directory".into());
        }
        Ok(SocketRule { path, below })
    }

    /// The path as written (without the trailing `/`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for a directory rule (`/dir/`).
    pub fn is_directory(&self) -> bool {
        self.below
    }

    /// Does the (canonical) socket path `target` fall under this rule,
    /// whose own canonical form is `canonical_rule`?
    pub(crate) fn matches_canonical(&self, canonical_rule: &Path, target: &Path) -> bool {
        if self.below {
            target != canonical_rule && target.starts_with(canonical_rule)
        } else {
            target == canonical_rule
        }
    }
}

/// A socket path from a client or a rule: absolute, no NUL, no `.` or `..`
/// components, bounded length.
pub(crate) fn check_socket_path(v: &str) -> Result<PathBuf, &'static str> {
    if v.len() > MAX_SOCKET_PATH {
        return Err("socket path too long");
    }
    if v.contains('\0') {
        return Err("NUL in socket path");
    }
    if !v.starts_with('/') {
        return Err("socket path is not absolute");
    }
    // `Path::components` hides a `.` in the middle; look at the text.
    if v.split('/').any(|c| c == "." || c == "..") {
        return Err("socket path has a . or .. component");
    }
    let path = PathBuf::from(v);
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("socket path has a .. component");
    }
    Ok(path)
}

/// What an authenticated session may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPolicy {
    // Set from a key's options (`KeyOptions::policy`), and narrowed by a
    // certificate's extensions (`check_certificate`).
    pub(super) port_forwarding: bool,
    pub(super) permit_open: Option<Vec<HostPattern>>,
    pub(super) permit_socket: Option<Vec<SocketRule>>,
    pub(super) permit_listen: Option<Vec<HostPattern>>,
    pub(super) hub: bool,
}

/// Remote-forward ports below this need an explicit `permitlisten` naming
/// the port (OpenSSH lets only root bind them).
pub(crate) const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

impl SessionPolicy {
    /// May a `direct-tcpip` channel go to `host:port`?
    pub(crate) fn may_open(&self, host: &str, port: u16) -> bool {
        self.port_forwarding
            && self
                .permit_open
                .as_ref()
                .is_none_or(|list| list.iter().any(|hp| hp.matches(host, port)))
    }

    /// May the session reach any `host:port` at all? False with
    /// `no-port-forwarding` (or `restrict`) and when every `permitopen`
    /// names a Unix socket: then no TCP destination, and no UDP one either.
    pub(crate) fn may_open_some(&self) -> bool {
        self.port_forwarding
            && self
                .permit_open
                .as_ref()
                .is_none_or(|list| !list.is_empty())
    }

    /// May the session open the control channel? With the key's `hub`
    /// option; or, when the server grants the hub to every key
    /// (`hub_for_all_keys`), if it may forward and its `permitopen` (if
    /// any) names `wraith-control:0`.
    pub(crate) fn may_use_hub(&self, hub_for_all_keys: bool) -> bool {
        self.hub || (hub_for_all_keys && self.may_open(frame::CONTROL_HOST, frame::CONTROL_PORT))
    }

    /// The socket rules a `direct-streamlocal` channel is checked against:
    /// the key's own `permitopen="/path"` entries when it has any
    /// `permitopen`, else the server's `server_rules`. `None` when the
    /// session may reach no socket at all.
    pub(crate) fn socket_rules<'a>(
        &'a self,
        server_rules: &'a [SocketRule],
    ) -> Option<&'a [SocketRule]> {
        if !self.port_forwarding {
            return None;
        }
        let rules = match &self.permit_socket {
            Some(own) => own.as_slice(),
            None => server_rules,
        };
        (!rules.is_empty()).then_some(rules)
    }

    /// May the session listen on `port` at `bind` (the address the server
    /// will actually bind), asked for as `requested`? `Err` says why not.
    ///
    /// A `permitlisten` host matches the bound address, not the text asked
    /// for: `localhost` (also an omitted host) only a loopback address,
    /// an IP literal only itself, `*` anything, a name the same name asked
    /// for. Ports below 1024 need a `permitlisten` naming that port.
    pub(crate) fn may_listen(
        &self,
        requested: &str,
        bind: IpAddr,
        port: u16,
    ) -> Result<(), &'static str> {
        if !self.port_forwarding {
            return Err("forwarding not permitted for this key");
        }
        let bind = bind.to_canonical();
        let host_ok = |hp: &HostPattern| match hp.host.as_str() {
            "*" => true,
            h if h.eq_ignore_ascii_case("localhost") => bind.is_loopback(),
            h => match h.parse::<IpAddr>() {
                Ok(ip) => ip.to_canonical() == bind,
                Err(_) => h.eq_ignore_ascii_case(requested),
            },
        };
        let privileged = port != 0 && port < FIRST_UNPRIVILEGED_PORT;
        match &self.permit_listen {
            None if privileged => Err("privileged port (below 1024) not named in permitlisten"),
            None => Ok(()),
            Some(list) => {
                let fits = |hp: &&HostPattern| host_ok(hp) && hp.port.is_none_or(|p| p == port);
                if !list.iter().any(|hp| fits(&hp)) {
                    Err("listen address not permitted for this key")
                } else if privileged && !list.iter().filter(fits).any(|hp| hp.port == Some(port)) {
                    Err("privileged port (below 1024) not named in permitlisten")
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// OpenSSH pattern-list semantics against an address: `!` negates (a
/// negated match rejects outright), `*`/`?` wildcards match the address
/// text, and `a.b.c.d/n` (or IPv6 `/n`) match by prefix. An IPv4-mapped
/// IPv6 peer (`::ffff:a.b.c.d`, as a dual-stack `[::]` listener reports
/// IPv4 clients) is matched as the IPv4 address it is.
pub(crate) fn match_pattern_list(patterns: &[String], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let text = ip.to_string();
    let mut allowed = false;
    for p in patterns {
        let (neg, pat) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let hit = if pat.contains('/') {
            cidr_contains(pat, ip)
        } else {
            glob(pat.as_bytes(), text.as_bytes())
        };
        if hit {
            if neg {
                return false;
            }
            allowed = true;
        }
    }
    allowed
}

/// `addr/bits` contains `ip`; a pattern that does not parse matches
/// nothing (OpenSSH ignores it too).
pub(crate) fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    cidr.parse::<super::cidr::Cidr>()
        .is_ok_and(|net| net.contains(ip))
}

/// Shell-style `*` and `?` matching, iterative (no recursion blow-up).
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p].eq_ignore_ascii_case(&text[t])) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::super::authorized_keys::KeyOptions;
    use super::*;

    fn opts(list: &[&str]) -> Result<KeyOptions, String> {
        KeyOptions::parse(list)
    }

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const ALL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

    #[test]
    fn host_patterns_split_like_host_port_with_wildcards() {
        let hp = |v: &str, required: bool| HostPattern::parse(v, required);
        let pat = |host: &str, port: Option<u16>| HostPattern {
            host: host.to_string(),
            port,
        };
        assert_eq!(hp("db:5432", true), Ok(pat("db", Some(5432))));
        assert_eq!(hp("*:*", true), Ok(pat("*", None)));
        assert_eq!(hp("[::1]:*", true), Ok(pat("::1", None)));
        assert_eq!(hp("[fe80::1]:22", true), Ok(pat("fe80::1", Some(22))));
        // Unbracketed, the port follows the last colon.
        assert_eq!(hp("::1:22", true), Ok(pat("::1", Some(22))));
        // permitlisten may omit the host: localhost.
        assert_eq!(hp("8080", false), Ok(pat("localhost", Some(8080))));
        assert_eq!(hp("*", false), Ok(pat("localhost", None)));
        for bad in [
            "8080", "[::1]", ":80", "[]:80", "h:", "h:x", "h:65536", "[::1", "[a]b]:1",
        ] {
            assert!(hp(bad, true).is_err(), "{bad:?}");
        }
        for bad in ["[::1]", "[8080]", ":80", ""] {
            assert!(hp(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn restrict_and_reenable() {
        let o = opts(&["restrict"]).unwrap();
        assert!(!o.policy().may_open("h", 1));
        let o = opts(&["restrict", "port-forwarding"]).unwrap();
        assert!(o.policy().may_open("h", 1));
        let o = opts(&["no-port-forwarding"]).unwrap();
        let any = [SocketRule::parse("/run/").unwrap()];
        assert!(o.policy().socket_rules(&any).is_none());
        assert!(o.policy().may_listen("", LO, 8080).is_err());
    }

    #[test]
    fn unix_sockets_are_off_unless_the_server_or_the_key_names_them() {
        let server = [SocketRule::parse("/run/app/").unwrap()];
        let plain = opts(&[]).unwrap().policy();
        assert!(plain.socket_rules(&[]).is_none(), "off by default");
        assert_eq!(plain.socket_rules(&server), Some(&server[..]));
        let own = opts(&["permitopen=\"/run/one.sock\""]).unwrap();
        let rules = own.policy().socket_rules(&server).unwrap().to_vec();
        assert_eq!(rules, vec![SocketRule::parse("/run/one.sock").unwrap()]);
        assert!(!own.policy().may_open("localhost", 80), "sockets only");
        let tcp_only = opts(&["permitopen=\"db:5432\""]).unwrap();
        assert!(tcp_only.policy().socket_rules(&server).is_none());
    }

    #[test]
    fn socket_rules_are_absolute_and_match_component_wise() {
        for bad in ["run/x.sock", "/run/../etc/x", "/run/./x", "/", "/a\0b", ""] {
            assert!(SocketRule::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(opts(&["permitopen=\"/a/../b\""]).is_err());
        let dir = SocketRule::parse("/run/app/").unwrap();
        let p = Path::new;
        assert!(dir.matches_canonical(p("/run/app"), p("/run/app/s.sock")));
        assert!(dir.matches_canonical(p("/run/app"), p("/run/app/d/s.sock")));
        assert!(!dir.matches_canonical(p("/run/app"), p("/run/apps/s.sock")));
        assert!(!dir.matches_canonical(p("/run/app"), p("/run/app")));
        let one = SocketRule::parse("/run/one.sock").unwrap();
        assert!(one.matches_canonical(p("/run/one.sock"), p("/run/one.sock")));
        assert!(!one.matches_canonical(p("/run/one.sock"), p("/run/one.sock2")));
    }

    #[test]
    fn privileged_ports_need_a_permitlisten_naming_them() {
        let plain = opts(&[]).unwrap().policy();
        assert!(plain.may_listen("", LO, 80).is_err());
        assert!(plain.may_listen("", LO, 1023).is_err());
        assert!(plain.may_listen("", LO, 1024).is_ok());
        assert!(plain.may_listen("", LO, 0).is_ok(), "server-chosen port");
        let wild = opts(&["permitlisten=\"*:*\""]).unwrap().policy();
        assert!(wild.may_listen("", LO, 80).is_err());
        let named = opts(&["permitlisten=\"*:*\"", "permitlisten=\"localhost:80\""])
            .unwrap()
            .policy();
        assert!(named.may_listen("", LO, 80).is_ok());
        assert!(
            named.may_listen("", ALL, 80).is_err(),
            "80 only on loopback"
        );
    }

    #[test]
    fn may_open_some_is_false_only_when_no_host_port_can_pass() {
        assert!(opts(&[]).unwrap().policy().may_open_some());
        assert!(
            opts(&["permitopen=\"h:53\""])
                .unwrap()
                .policy()
                .may_open_some()
        );
        assert!(
            !opts(&["no-port-forwarding"])
                .unwrap()
                .policy()
                .may_open_some()
        );
        assert!(!opts(&["restrict"]).unwrap().policy().may_open_some());
        assert!(
            !opts(&["permitopen=\"/run/app.sock\""])
                .unwrap()
                .policy()
                .may_open_some()
        );
    }

    #[test]
    fn permitopen_is_literal_with_port_wildcard() {
        let o = opts(&[
            "permitopen=\"db.internal:5432\"",
            "permitopen=\"*:443\"",
            "permitopen=\"[::1]:*\"",
        ])
        .unwrap();
        let p = o.policy();
        assert!(p.may_open("db.internal", 5432));
        assert!(p.may_open("DB.INTERNAL", 5432));
        assert!(!p.may_open("db.internal", 5433));
        assert!(p.may_open("anything", 443));
        assert!(p.may_open("::1", 22));
        assert!(!p.may_open("db.internal.evil", 5432));
        assert!(
            p.socket_rules(&[SocketRule::parse("/run/").unwrap()])
                .is_none()
        );
        assert!(opts(&["permitopen=\"nocolon\""]).is_err());
        assert!(opts(&["permitopen=\"h:99999\""]).is_err());
    }

    #[test]
    fn permitlisten_matches_the_address_actually_bound() {
        let o = opts(&[
            "permitlisten=\"8080\"",
            "permitlisten=\"localhost:9000\"",
            "permitlisten=\"*:7000\"",
            "permitlisten=\"10.1.1.1:6000\"",
        ])
        .unwrap();
        let p = o.policy();
        let v6lo: IpAddr = "::1".parse().unwrap();
        // An omitted host is localhost, as in OpenSSH.
        assert!(p.may_listen("", LO, 8080).is_ok());
        assert!(p.may_listen("", ALL, 8080).is_err());
        assert!(p.may_listen("localhost", LO, 9000).is_ok());
        assert!(p.may_listen("::1", v6lo, 9000).is_ok());
        // --gateway-ports binds "" on every interface: not localhost.
        assert!(p.may_listen("", ALL, 9000).is_err());
        assert!(p.may_listen("localhost", ALL, 9000).is_err());
        assert!(p.may_listen("", ALL, 7000).is_ok());
        assert!(
            p.may_listen("10.1.1.1", "10.1.1.1".parse().unwrap(), 6000)
                .is_ok()
        );
        assert!(p.may_listen("", ALL, 6000).is_err());
        assert!(p.may_listen("", LO, 1234).is_err());
    }

    #[test]
    fn from_patterns() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let pats = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(match_pattern_list(&pats(&["127.0.0.1"]), ip("127.0.0.1")));
        assert!(match_pattern_list(&pats(&["10.*"]), ip("10.1.2.3")));
        assert!(!match_pattern_list(&pats(&["10.*"]), ip("110.1.2.3")));
        assert!(match_pattern_list(
            &pats(&["192.168.0.0/16"]),
            ip("192.168.4.5")
        ));
        assert!(!match_pattern_list(
            &pats(&["192.168.0.0/16"]),
            ip("192.169.0.1")
        ));
        assert!(!match_pattern_list(
            &pats(&["*", "!10.0.0.1"]),
            ip("10.0.0.1")
        ));
        assert!(match_pattern_list(
            &pats(&["*", "!10.0.0.1"]),
            ip("10.0.0.2")
        ));
        assert!(match_pattern_list(&pats(&["::1"]), ip("::1")));
        assert!(match_pattern_list(
            &pats(&["127.0.0.0/8"]),
            ip("::ffff:127.0.0.1")
        ));
        assert!(match_pattern_list(&pats(&["1?.0.0.1"]), ip("10.0.0.1")));
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        let mapped = ip("::ffff:127.0.0.1");
        assert!(!match_pattern_list(&pats(&["!127.0.0.1", "*"]), mapped));
        assert!(!match_pattern_list(&pats(&["*", "!127.0.0.*"]), mapped));
        assert!(match_pattern_list(&pats(&["127.0.0.1"]), mapped));
        assert!(!match_pattern_list(&pats(&["!127.0.0.0/8", "*"]), mapped));
        let o = opts(&["from=\"10.0.0.0/8,!10.9.9.9\""]).unwrap();
        assert!(o.admits(Some(ip("10.1.1.1")), 0).is_ok());
        assert!(o.admits(Some(ip("10.9.9.9")), 0).is_err());
        assert!(o.admits(Some(ip("127.0.0.1")), 0).is_err());
        assert!(o.admits(None, 0).is_err());
    }

    #[test]
    fn glob_is_linear_and_correct() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
        let long = vec![b'a'; 5000];
        assert!(!glob(b"*a*a*a*a*a*b", &long));
    }
}
