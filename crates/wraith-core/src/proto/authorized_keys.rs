//! The OpenSSH `authorized_keys` format, parsed without I/O: lines
//! (`[options] keytype base64 [comment]`), their options ([`KeyOptions`]:
//! `from=`, `permitopen=`, `permitlisten=`, `restrict`,
//! `no-port-forwarding`, `expiry-time=`, `cert-authority`, `principals=`,
//! `hub`), and the constant-time lookup of an offered key or a
//! certificate's CA in the parsed set.
//!
//! A line we cannot parse, or whose options we do not know, is reported with
//! its line number and skipped — never silently accepted with fewer
//! restrictions than it asks for. Reading the file and the host's time zone
//! is the server's part (`server::auth`, `server::policy`); what the options
//! grant is [`super::policy`].

use std::net::IpAddr;

use russh::keys::PublicKey;
use russh::keys::ssh_encoding::Encode;
use subtle::ConstantTimeEq;

use super::policy::{HostPattern, SessionPolicy, SocketRule, match_pattern_list};
use super::time::{LocalZone, parse_wall_clock};

/// One usable line of an authorized_keys file.
#[derive(Debug, Clone)]
pub struct AuthorizedKey {
    /// The key.
    pub key: PublicKey,
    /// Its line number in the source (1-based).
    pub line: usize,
    /// The line's options.
    pub options: KeyOptions,
    /// Its wire encoding, compared in constant time.
    blob: Vec<u8>,
}

/// A problem with one line, reported at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineWarning {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong; the line was skipped.
    pub reason: String,
}

/// The set of keys allowed to log in. Reading it from the host —
/// `load`, `load_cert_authorities`, and `parse` with expiry times in the
/// local time zone — is added in `server::auth`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizedKeys {
    entries: Vec<AuthorizedKey>,
}

impl AuthorizedKeys {
    /// Build a set directly from keys (for embedders and tests).
    pub fn from_keys(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let entries = keys
            .into_iter()
            .enumerate()
            .filter_map(|(i, key)| {
                let blob = encode(&key)?;
                Some(AuthorizedKey {
                    key,
                    line: i + 1,
                    options: KeyOptions::default(),
                    blob,
                })
            })
            .collect();
        AuthorizedKeys { entries }
    }

    /// Parse the text of an authorized_keys file; with `cert_authority`
    /// every line is a CA (the lines of a `--cert-authority` file, which may
    /// carry `principals=` and the other options without spelling out
    /// `cert-authority`). `zone` reads an `expiry-time=` without `Z`.
    pub(crate) fn parse_in(
        text: &str,
        cert_authority: bool,
        zone: LocalZone,
    ) -> (Self, Vec<LineWarning>) {
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match parse_line(trimmed, cert_authority, zone) {
                Ok((options, key)) => match encode(&key) {
                    Some(blob) => entries.push(AuthorizedKey {
                        key,
                        line,
                        options,
                        blob,
                    }),
                    None => warnings.push(LineWarning {
                        line,
                        reason: "the key cannot be encoded".into(),
                    }),
                },
                Err(reason) => warnings.push(LineWarning { line, reason }),
            }
        }
        (AuthorizedKeys { entries }, warnings)
    }

    /// Add the entries of `other` (e.g. CAs from `--cert-authority`).
    pub fn extend(&mut self, other: AuthorizedKeys) {
        self.entries.extend(other.entries);
    }

    /// True if any line trusts a certificate authority.
    pub fn has_cert_authorities(&self) -> bool {
        self.entries.iter().any(|e| e.options.cert_authority)
    }

    /// Find the CA line whose key signed a certificate.
    pub fn find_ca(&self, ca: &russh::keys::ssh_key::public::KeyData) -> Option<&AuthorizedKey> {
        let mut blob = Vec::new();
        ca.encode(&mut blob).ok()?;
        self.lookup(&blob, true)
    }

    /// The usable lines, in file order.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn entries(&self) -> &[AuthorizedKey] {
        &self.entries
    }

    /// Number of usable lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key may log in.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Find `key`, comparing against every entry in constant time so the
    /// answer's timing says nothing about which entries exist.
    pub fn find(&self, key: &PublicKey) -> Option<&AuthorizedKey> {
        let blob = encode(key)?;
        self.lookup(&blob, false)
    }

    fn lookup(&self, blob: &[u8], ca: bool) -> Option<&AuthorizedKey> {
        let mut found = None;
        for entry in self
            .entries
            .iter()
            .filter(|e| e.options.cert_authority == ca)
        {
            let same_len = entry.blob.len() == blob.len();
            let eq: bool = if same_len {
                entry.blob.ct_eq(blob).into()
            } else {
                false
            };
            if eq && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }
}

fn encode(key: &PublicKey) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    key.key_data().encode(&mut out).ok()?;
    Some(out)
}

fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-")
}

/// Parse one non-empty, non-comment line: `[options] keytype base64 [comment]`.
fn parse_line(
    line: &str,
    cert_authority: bool,
    zone: LocalZone,
) -> Result<(KeyOptions, PublicKey), String> {
    let (options, rest) = if is_key_type(first_word(line)) {
        ("", line)
    } else {
        split_options(line)?
    };
    let options = KeyOptions::parse_as(&split_option_list(options)?, cert_authority, zone)
        .map_err(|e| format!("{e}; line skipped"))?;
    let mut words = rest.split_whitespace();
    let kind = words.next().ok_or("missing key type")?;
    let b64 = words.next().ok_or("missing key data")?;
    if !is_key_type(kind) {
        return Err(format!("unknown key type {kind:?}"));
    }
    let key = PublicKey::from_openssh(&format!("{kind} {b64}"))
        // ssh-key's messages may quote the decoded data.
        .map_err(|e| format!("invalid {kind:?} key ({})", e.to_string().escape_debug()))?;
    if key.algorithm().as_str() != kind {
        return Err(format!(
            "key type {kind:?} does not match the key data ({})",
            key.algorithm()
        ));
    }
    Ok((options, key))
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

/// The characters of `s` that stand outside double quotes (a backslash
/// inside quotes escapes the next character), with their byte offsets;
/// `Err(())` at the end when a quote is left open.
fn outside_quotes(s: &str) -> impl Iterator<Item = Result<(usize, char), ()>> + '_ {
    let mut chars = s.char_indices();
    let mut in_quotes = false;
    std::iter::from_fn(move || {
        loop {
            let Some((i, c)) = chars.next() else {
                return in_quotes.then(|| {
                    in_quotes = false;
                    Err(())
                });
            };
            match c {
                '\\' if in_quotes => {
                    chars.next();
                }
                '"' => in_quotes = !in_quotes,
                _ if !in_quotes => return Some(Ok((i, c))),
                _ => {}
            }
        }
    })
}

/// Split `options rest` where options may contain quoted spaces.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    for found in outside_quotes(line) {
        match found {
            Ok((i, ' ' | '\t')) => return Ok((&line[..i], line[i..].trim_start())),
            Ok(_) => {}
            Err(()) => return Err("unterminated quote in options".into()),
        }
    }
    Err("missing key after options".into())
}

/// Split `a,b="x,y",c` on commas outside quotes.
fn split_option_list(options: &str) -> Result<Vec<&str>, String> {
    if options.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut start = 0;
    for found in outside_quotes(options) {
        match found {
            Ok((i, ',')) => {
                out.push(&options[start..i]);
                start = i + 1;
            }
            Ok(_) => {}
            Err(()) => return Err("unterminated quote in options".into()),
        }
    }
    out.push(&options[start..]);
    if out.iter().any(|o| o.is_empty()) {
        return Err("empty option".into());
    }
    Ok(out)
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
    pub permit_open: Option<Vec<HostPattern>>,
    /// Allowed Unix sockets (`permitopen="/path"`); `None`: those the
    /// server allows (`--allow-stream-local`).
    pub permit_socket: Option<Vec<SocketRule>>,
    /// Allowed remote-forward binds; `None` allows any.
    pub permit_listen: Option<Vec<HostPattern>>,
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
    /// quotes), reading `expiry-time=` in UTC. Unknown options are an
    /// error, as in OpenSSH.
    #[cfg(test)]
    pub(crate) fn parse(options: &[&str]) -> Result<Self, String> {
        Self::parse_as(options, false, super::time::utc)
    }

    /// [`KeyOptions::parse`]; `cert_authority` is implied for the lines of a
    /// `--cert-authority` file, and `zone` reads an `expiry-time=` without
    /// `Z`.
    pub(crate) fn parse_as(
        options: &[&str],
        cert_authority: bool,
        zone: LocalZone,
    ) -> Result<Self, String> {
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
                        sockets.push(SocketRule::parse(&v).map_err(|e| format!("{e}: {v:?}"))?);
                    } else {
                        hosts.push(HostPattern::parse(&v, true)?);
                    }
                }
                "permitlisten" => {
                    let hp = HostPattern::parse(&need(value)?, false)?;
                    o.permit_listen.get_or_insert_with(Vec::new).push(hp);
                }
                "expiry-time" => {
                    o.expiry = Some(parse_expiry(&need(value)?, zone)?);
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

/// `YYYYMMDD[HHMM[SS]][Z]` to unix seconds: UTC with the `Z`, else in
/// `zone` (the server's local time zone, as OpenSSH reads it).
fn parse_expiry(v: &str, zone: LocalZone) -> Result<u64, String> {
    let (digits, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (v, false),
    };
    let wall = parse_wall_clock(digits)
        .ok_or_else(|| format!("bad expiry-time {v:?} (expected YYYYMMDD[HHMM[SS]][Z])"))?;
    if utc {
        return Ok(wall);
    }
    zone(wall).ok_or_else(|| {
        format!("expiry-time {v:?} does not exist in the local time zone (add Z for UTC)")
    })
}

#[cfg(test)]
mod tests {
    use super::super::time::utc;
    use super::*;

    fn key_line(comment: &str) -> (PublicKey, String) {
        let mut rng = russh::keys::key::safe_rng();
        let mut k =
            russh::keys::PrivateKey::random(&mut rng, russh::keys::Algorithm::Ed25519).unwrap();
        k.set_comment(comment);
        let line = k.public_key().to_openssh().unwrap();
        (k.public_key().clone(), line)
    }

    fn parse(text: &str) -> (AuthorizedKeys, Vec<LineWarning>) {
        AuthorizedKeys::parse_in(text, false, utc)
    }

    fn opts(list: &[&str]) -> Result<KeyOptions, String> {
        KeyOptions::parse(list)
    }

    fn utc_expiry(v: &str) -> Result<u64, String> {
        parse_expiry(v, utc)
    }

    #[test]
    fn keys_comments_and_blank_lines() {
        let (a, la) = key_line("alice");
        let (b, lb) = key_line("bob");
        let (c, _) = key_line("carol");
        let text = format!("# comment\n\n{la}\n   {lb}  \n");
        let (keys, warnings) = parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.find(&a).unwrap().line, 3);
        assert_eq!(keys.find(&b).unwrap().line, 4);
        assert!(keys.find(&c).is_none());
    }

    #[test]
    fn malformed_lines_are_reported_with_line_numbers() {
        let (_, la) = key_line("alice");
        let text = format!("garbage here\nssh-ed25519 !!!notbase64\n{la}\nssh-ed25519\n");
        let (keys, warnings) = parse(&text);
        assert_eq!(keys.len(), 1);
        let lines: Vec<usize> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![1, 2, 4]);
    }

    #[test]
    fn unknown_options_skip_the_line_and_known_ones_are_kept() {
        let (a, la) = key_line("alice");
        let text = format!("tunnel=\"0\",no-pty {la}\n");
        let (keys, warnings) = parse(&text);
        assert!(keys.find(&a).is_none());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].reason.contains("tunnel"), "{:?}", warnings[0]);
        let text = format!("restrict,from=\"10.0.0.1\" {la}\n");
        let (keys, warnings) = parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        let e = keys.find(&a).unwrap();
        assert!(!e.options.port_forwarding);
        assert_eq!(e.options.from, Some(vec!["10.0.0.1".to_string()]));
    }

    #[test]
    fn cert_authority_lines_are_not_login_keys() {
        let (a, la) = key_line("ca");
        let text = format!("cert-authority,principals=\"alice\" {la}\n");
        let (keys, warnings) = parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(
            keys.find(&a).is_none(),
            "a CA key must not log in by itself"
        );
        assert!(keys.has_cert_authorities());
        assert!(keys.find_ca(a.key_data()).is_some());
    }

    #[test]
    fn harmless_options_with_quotes_are_accepted() {
        let (a, la) = key_line("alice");
        let text = format!("no-pty,no-agent-forwarding,no-X11-forwarding {la}\n");
        let (keys, warnings) = parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(keys.find(&a).is_some());
        let text = format!("from=\"a b,c\" {la}\n");
        let (keys, warnings) = parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            keys.find(&a).unwrap().options.from.as_ref().unwrap().len(),
            2
        );
        let text = format!("from=\"unterminated {la}\n");
        let (_, warnings) = parse(&text);
        assert!(warnings[0].reason.contains("unterminated"), "{warnings:?}");
    }

    #[test]
    fn mismatched_key_type_is_rejected() {
        let (_, la) = key_line("alice");
        let b64 = la.split_whitespace().nth(1).unwrap();
        let (keys, warnings) = parse(&format!("ssh-rsa {b64}\n"));
        assert!(keys.is_empty());
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn expiry_time() {
        let o = opts(&["expiry-time=\"20300101Z\""]).unwrap();
        assert_eq!(o.expiry, Some(1_893_456_000));
        assert!(o.admits(None, 1_893_455_999).is_ok());
        assert!(o.admits(None, 1_893_456_000).is_err());
        assert_eq!(utc_expiry("197001010000Z").unwrap(), 0);
        assert_eq!(utc_expiry("20000229123456Z").unwrap(), 951_827_696);
        assert!(utc_expiry("2030").is_err());
        assert!(utc_expiry("20301301").is_err());
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
    fn expiry_time_without_z_is_read_in_the_given_zone() {
        // UTC+1: local midnight is 23:00 UTC the day before.
        let plus_one: LocalZone = |wall| wall.checked_sub(3600);
        assert_eq!(parse_expiry("20300101", plus_one), Ok(1_893_456_000 - 3600));
        assert_eq!(parse_expiry("20300101Z", plus_one), Ok(1_893_456_000));
        assert_eq!(parse_expiry("20300101z", plus_one), Ok(1_893_456_000));
        // A time the zone skips (clocks going forward) is refused.
        let gap: LocalZone = |_| None;
        let e = parse_expiry("20300101", gap).unwrap_err();
        assert!(e.contains("does not exist in the local time zone"), "{e}");
        assert_eq!(parse_expiry("20300101Z", gap), Ok(1_893_456_000));
        let o = KeyOptions::parse_as(&["expiry-time=\"20300101\""], false, plus_one).unwrap();
        assert_eq!(o.expiry, Some(1_893_452_400));
        let (keys, warnings) = AuthorizedKeys::parse_in(
            &format!("expiry-time=\"20300101\" {}\n", key_line("a").1),
            false,
            gap,
        );
        assert!(keys.is_empty());
        assert!(
            warnings[0].reason.contains("local time zone"),
            "{warnings:?}"
        );
    }
}
