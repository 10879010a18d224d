//! What a key may do, as pure functions: `authorized_keys` options
//! (`from=`, `permitopen=`, `permitlisten=`, `restrict`, `no-port-forwarding`,
//! `expiry-time=`, `cert-authority`, `principals=`, `hub`), OpenSSH
//! certificate checks (CA, type, validity, principals, critical options,
//! extensions), and the per-session policy the SSH handler consults for
//! every channel.
//!
//! Reasons returned from here reach the log: they may name options and
//! principals, never a channel's destination.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use russh::keys::Certificate;
use russh::keys::ssh_key::certificate::CertType;

/// A `host:port` pattern from `permitopen` / `permitlisten`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address, compared literally (case-insensitive);
    /// `*` matches any host.
    pub host: String,
    /// `None` matches any port (`*`).
    pub port: Option<u16>,
}

impl HostPort {
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
        let path = check_socket_path(v).map_err(|e| format!("{e}: {v:?}"))?;
        let below = v.ends_with('/');
        if path == Path::new("/") {
            return Err(format!(
                "{v:?} would allow every socket on the host; name a directory"
            ));
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

/// The options of one authorized_keys line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOptions {
    /// The key is a CA trusted to sign user certificates.
    pub cert_authority: bool,
    /// For a CA: the certificate must also carry one of these principals
    /// (the login name must be a certificate principal in any case).
    pub principals: Option<Vec<String>>,
    /// Source address patterns (`from=`).
    pub from: Option<Vec<String>>,
    /// Allowed `direct-tcpip` destinations; `None` allows any.
    pub permit_open: Option<Vec<HostPort>>,
    /// Allowed Unix sockets (`permitopen="/path"`); `None`: those the
    /// server allows (`--allow-stream-local`).
    pub permit_socket: Option<Vec<SocketRule>>,
    /// Allowed remote-forward binds; `None` allows any.
    pub permit_listen: Option<Vec<HostPort>>,
    /// Forwarding of any kind is allowed.
    pub port_forwarding: bool,
    /// The key may open the control channel (`hub`).
    pub hub: bool,
    /// Unix time after which the key is no longer accepted.
    pub expiry: Option<u64>,
}

impl Default for KeyOptions {
    fn default() -> Self {
        KeyOptions {
            cert_authority: false,
            principals: None,
            from: None,
            permit_open: None,
            permit_socket: None,
            permit_listen: None,
            port_forwarding: true,
            hub: false,
            expiry: None,
        }
    }
}

/// Options that concern shells, agents, X11 or commands, which a tunnel
/// server never offers: accepted and ignored.
const IGNORED_OPTIONS: &[&str] = &[
    "no-pty",
    "no-agent-forwarding",
    "no-x11-forwarding",
    "no-user-rc",
    "pty",
    "agent-forwarding",
    "x11-forwarding",
    "user-rc",
    "no-touch-required",
    "command",
    "environment",
];

impl KeyOptions {
    /// Parse the options part of a line (already split on commas outside
    /// quotes). Unknown options are an error, as in OpenSSH.
    #[cfg(test)]
    pub(crate) fn parse(options: &[&str]) -> Result<Self, String> {
        Self::parse_as(options, false)
    }

    /// [`KeyOptions::parse`]; `cert_authority` is implied for the lines of a
    /// `--cert-authority` file.
    pub(crate) fn parse_as(options: &[&str], cert_authority: bool) -> Result<Self, String> {
        let mut o = KeyOptions {
            cert_authority,
            ..KeyOptions::default()
        };
        for raw in options {
            let (name, value) = match raw.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), Some(unquote(v)?)),
                None => (raw.to_ascii_lowercase(), None),
            };
            let need =
                |v: Option<String>| v.ok_or_else(|| format!("option {name:?} needs a value"));
            match name.as_str() {
                "restrict" => {
                    o.port_forwarding = false;
                }
                "no-port-forwarding" => o.port_forwarding = false,
                "port-forwarding" => o.port_forwarding = true,
                "hub" => o.hub = true,
                "cert-authority" => o.cert_authority = true,
                "principals" => {
                    let v = need(value)?;
                    o.principals = Some(v.split(',').map(|s| s.trim().to_string()).collect());
                }
                "from" => {
                    let v = need(value)?;
                    let pats: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
                    if pats.iter().any(String::is_empty) {
                        return Err("empty pattern in from=".into());
                    }
                    o.from = Some(pats);
                }
                "permitopen" => {
                    // Any permitopen limits both kinds: a key given only
                    // sockets reaches no host:port, and the other way round.
                    let v = need(value)?;
                    let hosts = o.permit_open.get_or_insert_with(Vec::new);
                    let sockets = o.permit_socket.get_or_insert_with(Vec::new);
                    if v.starts_with('/') {
                        sockets.push(SocketRule::parse(&v)?);
                    } else {
                        hosts.push(parse_host_port(&v, true)?);
                    }
                }
                "permitlisten" => {
                    let hp = parse_host_port(&need(value)?, false)?;
                    o.permit_listen.get_or_insert_with(Vec::new).push(hp);
                }
                "expiry-time" => {
                    o.expiry = Some(parse_expiry(&need(value)?)?);
                }
                n if IGNORED_OPTIONS.contains(&n) => {}
                n => return Err(format!("unknown option {n:?}")),
            }
        }
        if o.principals.is_some() && !o.cert_authority {
            return Err("principals= is only valid with cert-authority".into());
        }
        Ok(o)
    }

    /// Is a login from `ip` at unix time `now` allowed by this line?
    pub(crate) fn admits(&self, ip: Option<IpAddr>, now: u64) -> Result<(), String> {
        if let Some(exp) = self.expiry
            && now >= exp
        {
            return Err("key expired (expiry-time)".into());
        }
        if let Some(pats) = &self.from {
            let Some(ip) = ip else {
                return Err("from= restriction but the transport has no address".into());
            };
            if !match_pattern_list(pats, ip) {
                return Err("source address not allowed (from=)".into());
            }
        }
        Ok(())
    }

    /// The session policy these options grant.
    pub(crate) fn policy(&self) -> SessionPolicy {
        SessionPolicy {
            port_forwarding: self.port_forwarding,
            permit_open: self.permit_open.clone(),
            permit_socket: self.permit_socket.clone(),
            permit_listen: self.permit_listen.clone(),
            hub: self.hub,
        }
    }
}

fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| "unterminated quote in options".to_string())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => out.push(n),
                None => return Err("dangling backslash in options".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `host:port`, `[v6]:port`, `*:port`, `host:*`; for permitlisten the host
/// may be omitted (`port`), which means `localhost` as in OpenSSH.
fn parse_host_port(v: &str, host_required: bool) -> Result<HostPort, String> {
    let bad = || format!("bad host:port {v:?}");
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h.to_string(), p)
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None if !host_required => ("localhost".to_string(), v),
            None => return Err(bad()),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        "*" => None,
        p => Some(p.parse::<u16>().map_err(|_| bad())?),
    };
    Ok(HostPort { host, port })
}

/// `YYYYMMDD[HHMM[SS]][Z]` to unix seconds: UTC with the `Z`, else the
/// server's local time zone (`TZ`, `/etc/localtime`), as OpenSSH reads it.
fn parse_expiry(v: &str) -> Result<u64, String> {
    let (digits, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (v, false),
    };
    let wall = parse_wall_clock(digits)
        .ok_or_else(|| format!("bad expiry-time {v:?} (expected YYYYMMDD[HHMM[SS]][Z])"))?;
    if utc {
        return Ok(wall);
    }
    local_to_unix(wall).ok_or_else(|| {
        format!("expiry-time {v:?} does not exist in the local time zone (add Z for UTC)")
    })
}

/// The digits as a wall-clock time, counted in seconds since 1970-01-01
/// 00:00 of the same calendar (no zone applied yet).
fn parse_wall_clock(v: &str) -> Option<u64> {
    if !v.bytes().all(|b| b.is_ascii_digit()) || !matches!(v.len(), 8 | 12 | 14) {
        return None;
    }
    let num = |a: usize, b: usize| v.get(a..b).and_then(|s| s.parse::<u64>().ok());
    let (y, m, d) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (hh, mm, ss) = (
        num(8, 10).unwrap_or(0),
        num(10, 12).unwrap_or(0),
        num(12, 14).unwrap_or(0),
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y, m, d)?;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// A local wall-clock time (seconds as if it were UTC) to unix seconds. A
/// time that occurs twice (clocks going back) takes the earlier instant;
/// one that never occurs (clocks going forward) is `None`.
fn local_to_unix(wall: u64) -> Option<u64> {
    use chrono::TimeZone;
    let naive = chrono::DateTime::from_timestamp(i64::try_from(wall).ok()?, 0)?.naive_utc();
    let local = chrono::Local.from_local_datetime(&naive).earliest()?;
    u64::try_from(local.timestamp()).ok()
}

/// Days since 1970-01-01, or `None` before 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let (y, m, d) = (
        i64::try_from(y).ok()?,
        i64::try_from(m).ok()?,
        i64::try_from(d).ok()?,
    );
    u64::try_from(crate::proto::time::days_from_civil(y, m, d)).ok()
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

fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    // Compare IPv4-mapped IPv6 peers (and networks) as IPv4.
    match (net.to_canonical(), ip.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
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

/// What an authenticated session may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPolicy {
    port_forwarding: bool,
    permit_open: Option<Vec<HostPort>>,
    permit_socket: Option<Vec<SocketRule>>,
    permit_listen: Option<Vec<HostPort>>,
    hub: bool,
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

    /// May the session open the control channel? With the key's `hub`
    /// option; or, when the server grants the hub to every key
    /// (`hub_for_all_keys`), if it may forward and its `permitopen` (if
    /// any) names `wraith-control:0`.
    pub(crate) fn may_use_hub(&self, hub_for_all_keys: bool) -> bool {
        self.hub
            || (hub_for_all_keys
                && self.may_open(super::hub::CONTROL_HOST, super::hub::CONTROL_PORT))
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
        let host_ok = |hp: &HostPort| match hp.host.as_str() {
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
                let fits = |hp: &&HostPort| host_ok(hp) && hp.port.is_none_or(|p| p == port);
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

/// Critical options we understand. Anything else in a certificate rejects it.
const KNOWN_CRITICAL: &[&str] = &["source-address", "force-command"];

/// The checks russh leaves to us for a user certificate that it has already
/// verified cryptographically (signature over the session). `ca` is the
/// trusted CA line that signed it (see [`super::auth::AuthorizedKeys::find_ca`]).
pub(crate) fn check_certificate(
    cert: &Certificate,
    ca: &KeyOptions,
    user: &str,
    peer: Option<IpAddr>,
    now: u64,
) -> Result<SessionPolicy, String> {
    if cert.cert_type() != CertType::User {
        return Err("host certificate presented for user authentication".into());
    }
    if now < cert.valid_after() {
        return Err("certificate not yet valid".into());
    }
    if now >= cert.valid_before() {
        return Err("certificate expired".into());
    }
    ca.admits(peer, now)?;
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return Err("certificate has no principals".into());
    }
    // One file serves every login name here, so the name itself must be
    // vouched for by the CA: it has to be a principal of the certificate.
    if !principals.iter().any(|p| p == user) {
        return Err("no certificate principal matches the login name".into());
    }
    // principals= on the CA line (OpenSSH's AuthorizedPrincipalsFile): the
    // certificate must also carry one of those.
    if let Some(allowed) = &ca.principals
        && !principals.iter().any(|p| allowed.contains(p))
    {
        return Err("no certificate principal is listed in the CA line's principals=".into());
    }
    for (name, value) in cert.critical_options().iter() {
        if !KNOWN_CRITICAL.contains(&name.as_str()) {
            return Err(format!("unknown critical option {:?}", sanitize(name)));
        }
        if name == "source-address" {
            let Some(ip) = peer.map(|p| p.to_canonical()) else {
                return Err("source-address restriction but no peer address".into());
            };
            let nets: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
            let ip_ok = nets.iter().any(|n| {
                if n.contains('/') {
                    cidr_contains(n, ip)
                } else {
                    n.parse::<IpAddr>().is_ok_and(|a| a.to_canonical() == ip)
                }
            });
            if !ip_ok {
                return Err(
                    "source address not allowed by the certificate (source-address)".into(),
                );
            }
        }
    }
    let mut policy = ca.policy();
    if !cert.extensions().contains_key("permit-port-forwarding") {
        policy.port_forwarding = false;
    }
    Ok(policy)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<KeyOptions, String> {
        KeyOptions::parse(list)
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

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const ALL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

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
    fn expiry_time() {
        let o = opts(&["expiry-time=\"20300101Z\""]).unwrap();
        assert_eq!(o.expiry, Some(1_893_456_000));
        assert!(o.admits(None, 1_893_455_999).is_ok());
        assert!(o.admits(None, 1_893_456_000).is_err());
        assert_eq!(parse_expiry("197001010000Z").unwrap(), 0);
        assert_eq!(parse_expiry("20000229123456Z").unwrap(), 951_827_696);
        assert!(parse_expiry("2030").is_err());
        assert!(parse_expiry("20301301").is_err());
    }

    #[test]
    fn unknown_and_malformed_options_are_errors() {
        assert!(opts(&["tunnel=\"1\""]).is_err());
        assert!(opts(&["bogus"]).is_err());
        assert!(opts(&["from"]).is_err());
        assert!(
            opts(&["principals=\"a\""]).is_err(),
            "principals needs cert-authority"
        );
        assert!(opts(&["from=\"a"]).is_err());
        assert!(opts(&["command=\"echo hi\"", "no-pty"]).is_ok());
        assert!(opts(&["restrict", "hub"]).unwrap().hub);
        assert!(!opts(&[]).unwrap().hub, "the hub is opt-in");
        let o = opts(&["cert-authority", "principals=\"alice,bob\""]).unwrap();
        assert_eq!(o.principals, Some(vec!["alice".into(), "bob".into()]));
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
