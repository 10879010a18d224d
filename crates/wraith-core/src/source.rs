//! Key and certificate material given either as a file to read or as the
//! file's contents already in memory (embedders such as the Node package
//! pass Buffers). Loaders take a [`Source`] so both spellings go through the
//! same parser and produce the same error messages.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::error::{Error, Reason};

/// A file, or the contents of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Read this file.
    File(PathBuf),
    /// These bytes are the file's contents.
    Bytes(Vec<u8>),
}

/// How in-memory material is named in error messages, where a file's path
/// would go ("cannot read identity from in-memory data (--identity): …").
const IN_MEMORY: &str = "in-memory data";

impl Source {
    /// How a failure to read or use this source as `what` (set by `flag`)
    /// is reported: `.map_err(source.failed("certificate", "--certificate"))`.
    pub(crate) fn failed(
        &self,
        what: &'static str,
        flag: &'static str,
    ) -> impl Fn(Reason) -> Error + Copy + '_ {
        move |reason| Error::KeyFile {
            what,
            path: self.origin(),
            flag,
            reason,
        }
    }

    /// The path for error messages (a placeholder for in-memory data).
    pub fn origin(&self) -> PathBuf {
        match self {
            Source::File(p) => p.clone(),
            Source::Bytes(_) => PathBuf::from(IN_MEMORY),
        }
    }

    /// The file's path, if this is a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::File(p) => Some(p),
            Source::Bytes(_) => None,
        }
    }

    /// The bytes; the error is a reason for a message ("no such file").
    pub(crate) fn read(&self) -> Result<Cow<'_, [u8]>, Reason> {
        match self {
            Source::File(p) => std::fs::read(p)
                .map(Cow::Owned)
                .map_err(|e| Reason::with_source(crate::keys::io_reason(&e), e)),
            Source::Bytes(b) => Ok(Cow::Borrowed(b)),
        }
    }

    /// The contents as UTF-8 text.
    pub(crate) fn read_text(&self) -> Result<Cow<'_, str>, Reason> {
        match self.read()? {
            Cow::Borrowed(b) => std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|e| Reason::with_source("not UTF-8 text", e)),
            Cow::Owned(b) => String::from_utf8(b)
                .map(Cow::Owned)
                .map_err(|e| Reason::with_source("not UTF-8 text", e)),
        }
    }
}

impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Self {
        Source::File(p)
    }
}

impl From<&PathBuf> for Source {
    fn from(p: &PathBuf) -> Self {
        Source::File(p.clone())
    }
}

impl From<&Path> for Source {
    fn from(p: &Path) -> Self {
        Source::File(p.to_path_buf())
    }
}

impl From<Vec<u8>> for Source {
    fn from(b: Vec<u8>) -> Self {
        Source::Bytes(b)
    }
}

impl From<&Source> for Source {
    fn from(s: &Source) -> Self {
        s.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_reads_as_no_such_file() {
        let s = Source::from(Path::new("/nonexistent/wraith/file"));
        let err = s.read().unwrap_err();
        assert_eq!(err.as_str(), "no such file");
        let source = std::error::Error::source(&err).expect("the io error");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
        assert_eq!(s.origin(), PathBuf::from("/nonexistent/wraith/file"));
    }

    #[test]
    fn bytes_are_named_as_in_memory() {
        let s = Source::from(b"hello".to_vec());
        assert_eq!(s.read_text().unwrap(), "hello");
        assert_eq!(s.origin(), PathBuf::from(IN_MEMORY));
        assert!(s.path().is_none());
        let bad = Source::Bytes(vec![0xff, 0xfe]);
        assert_eq!(bad.read_text().unwrap_err().as_str(), "not UTF-8 text");
    }
}
