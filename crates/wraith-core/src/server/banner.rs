//! The server's SSH identification string (`--ssh-banner`): what every
//! client and scanner sees before anything is authenticated. By default it
//! names no version, so a scan cannot match the server against a list of
//! releases with known holes.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The protocol part that RFC 4253 §4.2 puts before the software version.
const PREFIX: &str = "SSH-2.0-";

/// RFC 4253 §4.2: the identification line is at most 255 characters,
/// CR LF included.
const MAX_LINE: usize = 255;

/// The text after `SSH-2.0-` in the server's identification line:
/// `softwareversion [SP comments]`, checked against RFC 4253 §4.2 when
/// parsed. The default is `wraith`, without a version number.
#[derive(Clone, PartialEq, Eq)]
pub struct SshBanner(String);

impl SshBanner {
    /// The whole identification line without CR LF, e.g. `SSH-2.0-wraith`.
    pub fn identification(&self) -> String {
        format!("{PREFIX}{}", self.0)
    }
}

impl Default for SshBanner {
    fn default() -> Self {
        SshBanner("wraith".into())
    }
}

impl fmt::Debug for SshBanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshBanner({:?})", self.0)
    }
}

impl fmt::Display for SshBanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SshBanner {
    type Err = Error;

    /// `softwareversion [SP comments]`, with or without a leading
    /// `SSH-2.0-`. The software version is printable US-ASCII without
    /// spaces or `-`; comments are printable US-ASCII; the whole line fits
    /// in 255 characters with its CR LF.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::config("--ssh-banner", s, reason);
        let text = s.strip_prefix(PREFIX).unwrap_or(s);
        let (version, comments) = match text.split_once(' ') {
            Some((v, c)) => (v, Some(c)),
            None => (text, None),
        };
        if version.is_empty() {
            return Err(bad(
                "the software version (the text before any space) is empty",
            ));
        }
        if !version.bytes().all(|b| b.is_ascii_graphic() && b != b'-') {
            return Err(bad(
                "the software version must be printable US-ASCII without spaces or '-' (RFC 4253 section 4.2)",
            ));
        }
        if let Some(c) = comments
            && !c.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        {
            return Err(bad(
                "comments must be printable US-ASCII (RFC 4253 section 4.2)",
            ));
        }
        if PREFIX.len() + text.len() + 2 > MAX_LINE {
            return Err(bad(
                "the identification line would be longer than 255 characters (RFC 4253 section 4.2)",
            ));
        }
        Ok(SshBanner(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_names_no_version() {
        let id = SshBanner::default().identification();
        assert_eq!(id, "SSH-2.0-wraith");
    }

    #[test]
    fn banners_follow_rfc_4253() {
        for (given, line) in [
            ("OpenSSH_9.6", "SSH-2.0-OpenSSH_9.6"),
            ("x Debian comment", "SSH-2.0-x Debian comment"),
            ("SSH-2.0-Example_1.0", "SSH-2.0-Example_1.0"),
        ] {
            let b: SshBanner = given.parse().unwrap();
            assert_eq!(b.identification(), line);
        }
        let longest = "v".repeat(255 - 2 - PREFIX.len());
        assert!(longest.parse::<SshBanner>().is_ok());
        for bad in [
            "",
            " comment",
            "a-b",
            "a\r\nb",
            "a\nSSH-2.0-other",
            "tab\there",
            "x comment\u{7}",
            "ünï",
            "x comment\r\n",
            &format!("{longest}v"),
        ] {
            let e = bad.parse::<SshBanner>().unwrap_err().to_string();
            assert!(e.contains("--ssh-banner"), "{bad:?}: {e}");
        }
    }
}
