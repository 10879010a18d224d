//! OpenSSH known_hosts files, read without I/O: what a file says about the
//! key a host presents.
//!
//! Follows sshd(8)'s "SSH_KNOWN_HOSTS FILE FORMAT": each line is
//! `[marker] patterns keytype base64 [comment]`; patterns are a
//! comma-separated list where `*` and `?` are wildcards, `!` negates (a
//! negated match excludes the line whatever else matches) and `|1|salt|hash`
//! is a hashed name (HMAC-SHA1). A server on another port than 22 is looked
//! up as `[host]:port`. Host names compare case-insensitively.
//!
//! Nothing is silently skipped: a line that cannot be parsed is an error
//! naming it, `@revoked` refuses its key, and `@cert-authority` for the host
//! is an error, since wraith accepts no host certificates. This module must
//! never write a file or decide to trust a key; `host_key.rs` does that.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use sha1::Sha1;

/// What a known_hosts file says about a host and the key it presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The key is listed for the host on this line.
    Known {
        /// 1-based line number.
        line: usize,
    },
    /// No line names the host.
    Unknown,
    /// The host is listed, but only with other keys (of any type); this is
    /// the first such line.
    Changed {
        /// 1-based line number.
        line: usize,
    },
    /// The key is marked `@revoked` for the host on this line.
    Revoked {
        /// 1-based line number.
        line: usize,
    },
}

/// Why a known_hosts file cannot be used for a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KnownHostsError {
    /// A line does not have the known_hosts form.
    #[error("line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An `@cert-authority` line names the host.
    #[error(
        "line {line}: @cert-authority is not supported (wraith accepts no host certificates); \
         list the host's Ed25519 key instead"
    )]
    CertAuthority {
        /// 1-based line number.
        line: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One parsed line.
struct Entry<'a> {
    marker: Marker,
    patterns: &'a str,
    key: PublicKey,
}

/// The name a host is listed under: `host` on port 22, else `[host]:port`.
pub(crate) fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// What `text` (a whole known_hosts file) says about `key` presented by
/// `host:port`. A revoked key wins over any line that lists it; a listed
/// key wins over lines with other keys.
pub(crate) fn lookup(
    text: &str,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> Result<Verdict, KnownHostsError> {
    let name = host_name(host, port).to_ascii_lowercase();
    let mut known = None;
    let mut changed = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let Some(entry) =
            parse_line(raw).map_err(|reason| KnownHostsError::Malformed { line, reason })?
        else {
            continue;
        };
        if !matches_host(entry.patterns, &name)
            .map_err(|reason| KnownHostsError::Malformed { line, reason })?
        {
            continue;
        }
        let same = entry.key.key_data() == key.key_data();
        match entry.marker {
            Marker::CertAuthority => return Err(KnownHostsError::CertAuthority { line }),
            Marker::Revoked if same => return Ok(Verdict::Revoked { line }),
            Marker::Revoked => {}
            Marker::None if same => {
                known.get_or_insert(line);
            }
            Marker::None => {
                changed.get_or_insert(line);
            }
        }
    }
    Ok(match (known, changed) {
        (Some(line), _) => Verdict::Known { line },
        (None, Some(line)) => Verdict::Changed { line },
        (None, None) => Verdict::Unknown,
    })
}

/// Parses one line; `None` for blank lines and comments.
fn parse_line(raw: &str) -> Result<Option<Entry<'_>>, String> {
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let mut words = text.split_ascii_whitespace();
    let mut first = words.next().unwrap_or("");
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => {
            return Err(format!("unknown marker {:?}", shorten(m)));
        }
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = words
            .next()
            .ok_or("missing host patterns after the marker")?;
    }
    let patterns = first;
    let kind = words.next().ok_or("missing key type")?;
    let b64 = words.next().ok_or("missing key data")?;
    let key = PublicKey::from_openssh(&format!("{kind} {b64}"))
        // ssh-key's messages may quote the decoded data.
        .map_err(|e| {
            format!(
                "invalid {:?} key ({})",
                shorten(kind),
                e.to_string().escape_debug()
            )
        })?;
    if key.algorithm().as_str() != kind {
        return Err(format!(
            "key type {:?} does not match the key data ({})",
            shorten(kind),
            key.algorithm()
        ));
    }
    Ok(Some(Entry {
        marker,
        patterns,
        key,
    }))
}

/// At most 64 printable characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// Does the pattern list name `name` (already lowercase)? A negated match
/// excludes the line outright, as in OpenSSH's `match_hostname`.
fn matches_host(patterns: &str, name: &str) -> Result<bool, String> {
    let mut hit = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            if hashed_matches(hashed, name)? {
                hit = true;
            }
            continue;
        }
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if pattern.is_empty() {
            return Err("empty host pattern".into());
        }
        if glob(pattern.to_ascii_lowercase().as_bytes(), name.as_bytes()) {
            if negated {
                return Ok(false);
            }
            hit = true;
        }
    }
    Ok(hit)
}

/// `salt|hash` (both base64) against HMAC-SHA1(salt, name).
fn hashed_matches(hashed: &str, name: &str) -> Result<bool, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = || "bad hashed host name (expected |1|salt|hash)".to_string();
    let (salt, hash) = hashed.split_once('|').ok_or_else(bad)?;
    let salt = b64.decode(salt).map_err(|_| bad())?;
    let hash = b64.decode(hash).map_err(|_| bad())?;
    if salt.is_empty() || hash.len() != 20 {
        return Err(bad());
    }
    let mac = Hmac::<Sha1>::new_from_slice(&salt).map_err(|_| bad())?;
    Ok(mac
        .chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok())
}

/// `*` and `?` wildcards, iterative so no pattern can make it recurse or
/// backtrack more than once per star.
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        match (pat.get(p), text.get(t)) {
            (Some(b'*'), _) => {
                star = Some(p);
                mark = t;
                p += 1;
            }
            (Some(&c), Some(&x)) if c == b'?' || c == x => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some(s) => {
                    p = s + 1;
                    mark += 1;
                    t = mark;
                }
                None => return false,
            },
        }
    }
    while pat.get(p) == Some(&b'*') {
        p += 1;
    }
    p == pat.len()
}

/// Can `host` be written into a known_hosts line as a plain name? Pattern
/// characters, separators or whitespace would make the learned line match
/// other hosts or break the file.
pub(crate) fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with(['@', '|', '#'])
        && !host.chars().any(|c| {
            matches!(c, '*' | '?' | '!' | ',' | '[' | ']') || c.is_whitespace() || c.is_control()
        })
}

/// `HMAC-SHA1` hashed form of a host name, `|1|salt|hash` (what
/// `ssh-keygen -H` writes); for tests and the fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn hash_host(name: &str, salt: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(mac) = Hmac::<Sha1>::new_from_slice(salt) else {
        return String::new();
    };
    let hash = mac.chain_update(name.as_bytes()).finalize().into_bytes();
    format!("|1|{}|{}", b64.encode(salt), b64.encode(hash))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ed(comment: &str) -> PublicKey {
        crate::keys::generate_ed25519(comment)
            .unwrap()
            .public_key()
            .clone()
    }

    fn line(patterns: &str, key: &PublicKey) -> String {
        format!("{patterns} {}\n", key.to_openssh().unwrap())
    }

    #[test]
    fn listed_key_is_known_on_its_port_only() {
        let a = ed("a");
        let text = line("[127.0.0.1]:2222", &a);
        assert_eq!(
            lookup(&text, "127.0.0.1", 2222, &a),
            Ok(Verdict::Known { line: 1 })
        );
        assert_eq!(lookup(&text, "127.0.0.1", 22, &a), Ok(Verdict::Unknown));
        assert_eq!(lookup(&text, "127.0.0.2", 2222, &a), Ok(Verdict::Unknown));
        let text = line("Example.COM", &a);
        assert_eq!(
            lookup(&text, "example.com", 22, &a),
            Ok(Verdict::Known { line: 1 })
        );
    }

    #[test]
    fn another_key_of_another_type_is_a_change() {
        let a = ed("a");
        // An ECDSA key from ssh-keygen: listed for the host, so an Ed25519
        // key for it is a change, not an unknown host.
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEBxO407ukIklUvrCVJ44gPCIzVLfTpQ0t2nUY4xkMO0CnrTHB7A8/oh5D8U7fLzXITTspP7oacdawrcd7ISiu0=";
        let text = format!("# comment\n\n[h]:2222 {ecdsa}\n");
        assert_eq!(
            lookup(&text, "h", 2222, &a),
            Ok(Verdict::Changed { line: 3 })
        );
        // A second line with the presented key makes it known.
        let text = format!("{text}{}", line("[h]:2222", &a));
        assert_eq!(lookup(&text, "h", 2222, &a), Ok(Verdict::Known { line: 4 }));
    }

    #[test]
    fn wildcards_and_negation_follow_openssh() {
        let a = ed("a");
        let b = ed("b");
        let text = line("*.example.com,!bad.example.com", &a) + &line("[10.0.0.?]:2222", &a);
        assert_eq!(
            lookup(&text, "x.example.com", 22, &a),
            Ok(Verdict::Known { line: 1 })
        );
        assert_eq!(
            lookup(&text, "x.example.com", 22, &b),
            Ok(Verdict::Changed { line: 1 })
        );
        // Negated: the line does not apply, so the host is not listed.
        assert_eq!(
            lookup(&text, "bad.example.com", 22, &a),
            Ok(Verdict::Unknown)
        );
        assert_eq!(lookup(&text, "example.com", 22, &a), Ok(Verdict::Unknown));
        assert_eq!(
            lookup(&text, "10.0.0.7", 2222, &a),
            Ok(Verdict::Known { line: 2 })
        );
        assert_eq!(lookup(&text, "10.0.0.17", 2222, &a), Ok(Verdict::Unknown));
    }

    #[test]
    fn hashed_names_match_like_ssh_keygen_h() {
        let a = ed("a");
        let b = ed("b");
        let hashed = hash_host("[srv.example]:2200", b"0123456789abcdefghij");
        let text = line(&hashed, &a);
        assert_eq!(
            lookup(&text, "srv.example", 2200, &a),
            Ok(Verdict::Known { line: 1 })
        );
        assert_eq!(
            lookup(&text, "srv.example", 2200, &b),
            Ok(Verdict::Changed { line: 1 })
        );
        assert_eq!(lookup(&text, "srv.example", 22, &a), Ok(Verdict::Unknown));
        assert!(matches!(
            lookup(&line("|1|nothash", &a), "h", 22, &a),
            Err(KnownHostsError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn revoked_key_is_refused_even_when_listed() {
        let a = ed("a");
        let b = ed("b");
        let text = line("h", &a) + &format!("@revoked * {}\n", a.to_openssh().unwrap());
        assert_eq!(lookup(&text, "h", 22, &a), Ok(Verdict::Revoked { line: 2 }));
        // Another key is unaffected by the revocation.
        assert_eq!(lookup(&text, "h", 22, &b), Ok(Verdict::Changed { line: 1 }));
    }

    #[test]
    fn cert_authority_for_the_host_is_an_error() {
        let a = ed("a");
        let text = format!("@cert-authority *.corp {}\n", a.to_openssh().unwrap());
        assert_eq!(
            lookup(&text, "x.corp", 22, &a),
            Err(KnownHostsError::CertAuthority { line: 1 })
        );
        // A CA line for other hosts is no concern of this one.
        assert_eq!(lookup(&text, "x.org", 22, &a), Ok(Verdict::Unknown));
    }

    #[test]
    fn malformed_lines_are_errors_not_skipped() {
        let a = ed("a");
        for bad in [
            "h\n",
            "h ssh-ed25519\n",
            "h ssh-ed25519 AAAA\n",
            "@bogus h ssh-ed25519 AAAA\n",
            "h,,i ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
        ] {
            let text = format!("{}{bad}", line("other", &a));
            assert!(
                matches!(
                    lookup(&text, "h", 22, &a),
                    Err(KnownHostsError::Malformed { line: 2, .. })
                ),
                "{bad:?}"
            );
        }
        // Tabs and runs of spaces separate fields too.
        let tabbed = format!("h\t\t{}", a.to_openssh().unwrap().replacen(' ', "   ", 1));
        assert_eq!(lookup(&tabbed, "h", 22, &a), Ok(Verdict::Known { line: 1 }));
    }

    #[test]
    fn errors_quote_decoded_key_data_printably() {
        // Found by fuzz/fuzz_targets/known_hosts.rs: ssh-key's error quotes
        // the label it decoded, control characters and all.
        let a = ed("a");
        let text = format!("h ssh-ed25519 {}\n", crate::keys::tests::bad_label_blob());
        let err = lookup(&text, "h", 22, &a).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
    }

    #[test]
    fn glob_handles_stars_without_blowup() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXbYc"));
        assert!(!glob(b"a*b*c", b"aXbY"));
        assert!(glob(b"??", b"ab"));
        assert!(!glob(b"?", b""));
        let long = vec![b'a'; 4000];
        assert!(!glob(&[b"*a".repeat(50).as_slice(), b"b"].concat(), &long));
    }

    #[test]
    fn plain_hosts_only_are_learned() {
        assert!(is_plain_host("example.com"));
        assert!(is_plain_host("::1"));
        for bad in [
            "", "*", "a,b", "a b", "!a", "@revoked", "|1|x", "a\nb", "[a]",
        ] {
            assert!(!is_plain_host(bad), "{bad:?}");
        }
    }
}
