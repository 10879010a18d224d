//! Who may log in: the OpenSSH `authorized_keys` format, parsed without I/O,
//! and the constant-time lookup of an offered key.
//!
//! A line we cannot parse, or whose options we do not know, is reported with
//! its line number and skipped — never silently accepted with fewer
//! restrictions than it asks for. The options themselves are interpreted in
//! [`super::policy`].

use russh::keys::PublicKey;
use russh::keys::ssh_encoding::Encode;
use subtle::ConstantTimeEq;

use super::policy::KeyOptions;
use crate::error::{Error, Reason, Result};
use crate::source::Source;

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

/// The set of keys allowed to log in.
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

    /// Read and parse a file, or its contents (`--authorized-keys`).
    pub fn load(source: impl Into<Source>) -> Result<(Self, Vec<LineWarning>)> {
        let source = source.into();
        let text = source.read_text().map_err(|reason| Error::KeyFile {
            what: "authorized keys",
            path: source.origin(),
            flag: "--authorized-keys",
            reason,
        })?;
        Ok(Self::parse(&text))
    }

    /// Parse the text of an authorized_keys file.
    pub fn parse(text: &str) -> (Self, Vec<LineWarning>) {
        Self::parse_as(text, false)
    }

    /// Parse lines; with `cert_authority` every line is a CA (the lines of a
    /// `--cert-authority` file, which may carry `principals=` and the other
    /// options without spelling out `cert-authority`).
    fn parse_as(text: &str, cert_authority: bool) -> (Self, Vec<LineWarning>) {
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match parse_line(trimmed, cert_authority) {
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

    /// Read a `--cert-authority` file (or its contents): CA public keys, one
    /// per line (authorized_keys syntax; `cert-authority` is implied, so a
    /// line may carry `principals=`, `from=`, `permitopen=`, `hub`, ...).
    /// A file without a single usable key is an error: trusting "no CA" is
    /// never what was meant.
    pub fn load_cert_authorities(source: impl Into<Source>) -> Result<(Self, Vec<LineWarning>)> {
        let source = source.into();
        let err = |reason: Reason| Error::KeyFile {
            what: "certificate authorities",
            path: source.origin(),
            flag: "--cert-authority",
            reason,
        };
        let text = source.read_text().map_err(err)?;
        let (cas, warnings) = Self::parse_as(&text, true);
        if cas.is_empty() {
            return Err(err("no usable CA key in it".into()));
        }
        Ok((cas, warnings))
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
fn parse_line(line: &str, cert_authority: bool) -> Result<(KeyOptions, PublicKey), String> {
    let (options, rest) = if is_key_type(first_word(line)) {
        ("", line)
    } else {
        split_options(line)?
    };
    let options = KeyOptions::parse_as(&split_option_list(options)?, cert_authority)
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

/// Split `options rest` where options may contain quoted spaces.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ' ' | '\t' if !in_quotes => return Ok((&line[..i], line[i..].trim_start())),
            _ => {}
        }
    }
    if in_quotes {
        Err("unterminated quote in options".into())
    } else {
        Err("missing key after options".into())
    }
}

/// Split `a,b="x,y",c` on commas outside quotes.
fn split_option_list(options: &str) -> Result<Vec<&str>, String> {
    if options.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in options.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err("unterminated quote in options".into());
    }
    out.push(&options[start..]);
    if out.iter().any(|o| o.is_empty()) {
        return Err("empty option".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(comment: &str) -> (PublicKey, String) {
        let k = crate::keys::generate_ed25519(comment).unwrap();
        let line = k.public_key().to_openssh().unwrap();
        (k.public_key().clone(), line)
    }

    #[test]
    fn cert_authorities_in_memory_and_without_a_key() {
        let (ca, line) = key_line("ca");
        let (cas, _) =
            AuthorizedKeys::load_cert_authorities(Source::Bytes(line.into_bytes())).unwrap();
        assert!(cas.has_cert_authorities());
        assert!(cas.find_ca(ca.key_data()).is_some());
        let e = AuthorizedKeys::load_cert_authorities(Source::Bytes(b"# none\n".to_vec()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot read certificate authorities from in-memory data (--cert-authority): no usable CA key in it"
        );
    }

    #[test]
    fn cert_authority_files_carry_principals_and_options() {
        let (ca, line) = key_line("ca");
        let text = format!("principals=\"tunnel\",hub,from=\"127.0.0.1\" {line}\n");
        let (cas, warnings) =
            AuthorizedKeys::load_cert_authorities(Source::Bytes(text.into_bytes())).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let e = cas.find_ca(ca.key_data()).unwrap();
        assert_eq!(e.options.principals, Some(vec!["tunnel".to_string()]));
        assert!(e.options.hub);
        assert!(e.options.cert_authority);
        // The same line in authorized_keys needs cert-authority spelled out.
        let (keys, warnings) = AuthorizedKeys::parse(&format!("principals=\"tunnel\" {line}\n"));
        assert!(keys.is_empty());
        assert!(
            warnings[0].reason.contains("cert-authority"),
            "{warnings:?}"
        );
    }

    #[test]
    fn keys_comments_and_blank_lines() {
        let (a, la) = key_line("alice");
        let (b, lb) = key_line("bob");
        let (c, _) = key_line("carol");
        let text = format!("# comment\n\n{la}\n   {lb}  \n");
        let (keys, warnings) = AuthorizedKeys::parse(&text);
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
        let (keys, warnings) = AuthorizedKeys::parse(&text);
        assert_eq!(keys.len(), 1);
        let lines: Vec<usize> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![1, 2, 4]);
    }

    #[test]
    fn unknown_options_skip_the_line_and_known_ones_are_kept() {
        let (a, la) = key_line("alice");
        let text = format!("tunnel=\"0\",no-pty {la}\n");
        let (keys, warnings) = AuthorizedKeys::parse(&text);
        assert!(keys.find(&a).is_none());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].reason.contains("tunnel"), "{:?}", warnings[0]);
        let text = format!("restrict,from=\"10.0.0.1\" {la}\n");
        let (keys, warnings) = AuthorizedKeys::parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        let e = keys.find(&a).unwrap();
        assert!(!e.options.port_forwarding);
        assert_eq!(e.options.from, Some(vec!["10.0.0.1".to_string()]));
    }

    #[test]
    fn cert_authority_lines_are_not_login_keys() {
        let (a, la) = key_line("ca");
        let text = format!("cert-authority,principals=\"alice\" {la}\n");
        let (keys, warnings) = AuthorizedKeys::parse(&text);
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
        let (keys, warnings) = AuthorizedKeys::parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(keys.find(&a).is_some());
        let text = format!("from=\"a b,c\" {la}\n");
        let (keys, warnings) = AuthorizedKeys::parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            keys.find(&a).unwrap().options.from.as_ref().unwrap().len(),
            2
        );
        let text = format!("from=\"unterminated {la}\n");
        let (_, warnings) = AuthorizedKeys::parse(&text);
        assert!(warnings[0].reason.contains("unterminated"), "{warnings:?}");
    }

    #[test]
    fn mismatched_key_type_is_rejected() {
        let (_, la) = key_line("alice");
        let b64 = la.split_whitespace().nth(1).unwrap();
        let (keys, warnings) = AuthorizedKeys::parse(&format!("ssh-rsa {b64}\n"));
        assert!(keys.is_empty());
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn warnings_quote_control_characters_from_the_line() {
        // Found by fuzz/fuzz_targets/authorized_keys.rs: a key type with
        // control characters reached the startup warning verbatim.
        let (_, warnings) = AuthorizedKeys::parse("ssh-\u{1}\u{1b}[31mx AAAA\n");
        assert_eq!(warnings.len(), 1);
        let reason = &warnings[0].reason;
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        // ssh-key's error quotes the label it decoded from the key data.
        let blob = crate::keys::tests::bad_label_blob();
        let (_, warnings) = AuthorizedKeys::parse(&format!("ssh-ed25519 {blob}\n"));
        let reason = &warnings[0].reason;
        assert!(reason.contains("label"), "{reason:?}");
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
    }
}
