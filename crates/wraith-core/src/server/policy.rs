//! What a key may do, as pure functions: `authorized_keys` options
//! (`from=`, `permitopen=`, `permitlisten=`, `restrict`, `no-port-forwarding`,
//! `expiry-time=`, `cert-authority`, `principals=`), OpenSSH certificate
//! checks (CA, type, validity, principals, critical options, extensions),
//! and the per-session policy the SSH handler consults for every channel.
//!
//! Reasons returned from here reach the log: they may name options and
//! principals, never a channel's destination.

use std::net::IpAddr;

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

/// The options of one authorized_keys line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOptions {
    /// The key is a CA trusted to sign user certificates.
    pub cert_authority: bool,
    /// For a CA: principals accepted instead of the login name.
    pub principals: Option<Vec<String>>,
    /// Source address patterns (`from=`).
    pub from: Option<Vec<String>>,
    /// Allowed `direct-tcpip` destinations; `None` allows any.
    pub permit_open: Option<Vec<HostPort>>,
    /// Allowed remote-forward binds; `None` allows any.
    pub permit_listen: Option<Vec<HostPort>>,
    /// Forwarding of any kind is allowed.
    pub port_forwarding: bool,
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
            permit_listen: None,
            port_forwarding: true,
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
    pub(crate) fn parse(options: &[&str]) -> Result<Self, String> {
        let mut o = KeyOptions::default();
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
                    let hp = parse_host_port(&need(value)?, true)?;
                    o.permit_open.get_or_insert_with(Vec::new).push(hp);
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
            permit_listen: self.permit_listen.clone(),
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
/// may be omitted (`port`).
fn parse_host_port(v: &str, host_required: bool) -> Result<HostPort, String> {
    let bad = || format!("bad host:port {v:?}");
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h.to_string(), p)
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None if !host_required => ("*".to_string(), v),
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
    Ok(HostPort {
        host: if host == "localhost" && !host_required {
            "localhost".into()
        } else {
            host
        },
        port,
    })
}

/// `YYYYMMDD[HHMM[SS]]`, read as UTC, to unix seconds.
fn parse_expiry(v: &str) -> Result<u64, String> {
    let v = v.trim_end_matches(['Z', 'z']);
    let bad = || format!("bad expiry-time {v:?} (expected YYYYMMDD[HHMM[SS]])");
    if !v.bytes().all(|b| b.is_ascii_digit()) || !matches!(v.len(), 8 | 12 | 14) {
        return Err(bad());
    }
    let num = |a: usize, b: usize| v.get(a..b).and_then(|s| s.parse::<u64>().ok());
    let (y, m, d) = (
        num(0, 4).ok_or_else(bad)?,
        num(4, 6).ok_or_else(bad)?,
        num(6, 8).ok_or_else(bad)?,
    );
    let (hh, mm, ss) = (
        num(8, 10).unwrap_or(0),
        num(10, 12).unwrap_or(0),
        num(12, 14).unwrap_or(0),
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d).ok_or_else(bad)?;
    Ok(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01, or `None` before 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let (y, m, d) = (
        i64::try_from(y).ok()?,
        i64::try_from(m).ok()?,
        i64::try_from(d).ok()?,
    );
    u64::try_from(crate::time::days_from_civil(y, m, d)).ok()
}

/// OpenSSH pattern-list semantics against an address: `!` negates (a
/// negated match rejects outright), `*`/`?` wildcards match the address
/// text, and `a.b.c.d/n` (or IPv6 `/n`) match by prefix.
pub(crate) fn match_pattern_list(patterns: &[String], ip: IpAddr) -> bool {
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
    // Compare IPv4-mapped IPv6 peers as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (net, ip) {
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
    permit_listen: Option<Vec<HostPort>>,
}

impl SessionPolicy {
    /// May a `direct-tcpip` channel go to `host:port`?
    pub(crate) fn may_open(&self, host: &str, port: u16) -> bool {
        self.port_forwarding
            && self
                .permit_open
                .as_ref()
                .is_none_or(|list| list.iter().any(|hp| hp.matches(host, port)))
    }

    /// May the session reach a reserved in-server name? Only when
    /// forwarding is allowed and any `permitopen` list names it.
    pub(crate) fn may_use_reserved(&self, name: &str, port: u16) -> bool {
        self.may_open(name, port)
    }

    /// May a `direct-streamlocal` channel be opened? Not for keys limited
    /// by `permitopen`: a socket path is not a host:port they were given.
    pub(crate) fn may_open_unix(&self) -> bool {
        self.port_forwarding && self.permit_open.is_none()
    }

    /// May the session listen on `host:port` (remote forward)?
    pub(crate) fn may_listen(&self, host: &str, port: u16) -> bool {
        let host = if host.is_empty() { "localhost" } else { host };
        self.port_forwarding
            && self.permit_listen.as_ref().is_none_or(|list| {
                list.iter().any(|hp| {
                    hp.port.is_none_or(|p| p == port)
                        && (hp.host == "*" || hp.host.eq_ignore_ascii_case(host))
                })
            })
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
    let ok = match &ca.principals {
        Some(allowed) => principals.iter().any(|p| allowed.contains(p)),
        None => principals.iter().any(|p| p == user),
    };
    if !ok {
        return Err("no certificate principal matches".into());
    }
    for (name, value) in cert.critical_options().iter() {
        if !KNOWN_CRITICAL.contains(&name.as_str()) {
            return Err(format!("unknown critical option {:?}", sanitize(name)));
        }
        if name == "source-address" {
            let Some(ip) = peer else {
                return Err("source-address restriction but no peer address".into());
            };
            let nets: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
            let ip_ok = nets.iter().any(|n| {
                if n.contains('/') {
                    cidr_contains(n, ip)
                } else {
                    n.parse::<IpAddr>().is_ok_and(|a| a == ip)
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
        assert!(!o.policy().may_open_unix());
        assert!(!o.policy().may_listen("", 8080));
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
        assert!(!p.may_open_unix());
        assert!(opts(&["permitopen=\"nocolon\""]).is_err());
        assert!(opts(&["permitopen=\"h:99999\""]).is_err());
    }

    #[test]
    fn permitlisten_with_and_without_host() {
        let o = opts(&["permitlisten=\"8080\"", "permitlisten=\"localhost:9000\""]).unwrap();
        let p = o.policy();
        assert!(p.may_listen("", 8080));
        assert!(p.may_listen("0.0.0.0", 8080));
        assert!(p.may_listen("localhost", 9000));
        assert!(!p.may_listen("0.0.0.0", 9000));
        assert!(!p.may_listen("", 1234));
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
        let o = opts(&["from=\"10.0.0.0/8,!10.9.9.9\""]).unwrap();
        assert!(o.admits(Some(ip("10.1.1.1")), 0).is_ok());
        assert!(o.admits(Some(ip("10.9.9.9")), 0).is_err());
        assert!(o.admits(Some(ip("127.0.0.1")), 0).is_err());
        assert!(o.admits(None, 0).is_err());
    }

    #[test]
    fn expiry_time() {
        let o = opts(&["expiry-time=\"20300101\""]).unwrap();
        assert_eq!(o.expiry, Some(1_893_456_000));
        assert!(o.admits(None, 1_893_455_999).is_ok());
        assert!(o.admits(None, 1_893_456_000).is_err());
        assert_eq!(parse_expiry("197001010000").unwrap(), 0);
        assert_eq!(parse_expiry("20000229123456").unwrap(), 951_827_696);
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
