//! Typed errors that name the file and the sample they concern.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, coarsely: the key under which skipped samples are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The file could not be opened or read (missing, unreadable, truncated read).
    Io,
    /// The file is not what its format promises (bad header, wrong dtype, truncated data).
    Format,
    /// The image bytes could not be decoded (corrupt, zero-byte, not an image).
    Decode,
    /// The loader was configured in a way that cannot work.
    Config,
    /// A worker thread panicked while it processed a sample.
    Panic,
}

impl ErrorKind {
    /// Every kind, in a fixed order (used to index per-kind counters).
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Io,
        ErrorKind::Format,
        ErrorKind::Decode,
        ErrorKind::Config,
        ErrorKind::Panic,
    ];

    /// Short lowercase name, e.g. `"decode"`.
    ///
    /// ```
    /// assert_eq!(stoker::ErrorKind::Decode.as_str(), "decode");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Format => "format",
            ErrorKind::Decode => "decode",
            ErrorKind::Config => "config",
            ErrorKind::Panic => "panic",
        }
    }
}

/// An error with the sample index and file it concerns, where known.
///
/// ```
/// use stoker::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::Decode, "not a jpeg or png").at(7).file("a/b.jpg");
/// assert_eq!(e.to_string(), "sample 7 (a/b.jpg): decode: not a jpeg or png");
/// assert_eq!(e.index(), Some(7));
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    index: Option<usize>,
    path: Option<PathBuf>,
    message: String,
    source: Option<io::Error>,
}

impl Error {
    /// A new error of `kind` with a short lowercase message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            index: None,
            path: None,
            message: message.into(),
            source: None,
        }
    }

    /// An I/O error on `path`.
    ///
    /// ```
    /// let e = stoker::Error::io("x.npy", std::io::Error::from(std::io::ErrorKind::NotFound));
    /// assert!(e.to_string().starts_with("x.npy: io: "));
    /// ```
    pub fn io(path: impl AsRef<Path>, err: io::Error) -> Self {
        let message = err.to_string().to_lowercase();
        Error {
            kind: ErrorKind::Io,
            index: None,
            path: Some(path.as_ref().to_path_buf()),
            message,
            source: Some(err),
        }
    }

    /// A configuration error.
    ///
    /// ```
    /// assert_eq!(stoker::Error::config("batch_size must be > 0").to_string(), "config: batch_size must be > 0");
    /// ```
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// A format error in `path`.
    ///
    /// ```
    /// let e = stoker::Error::format("a.npy", "dtype <f8 is not supported");
    /// assert_eq!(e.kind(), stoker::ErrorKind::Format);
    /// ```
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Format, message).file(path)
    }

    /// Sets the sample index (an outer layer knows the global index: it overrides).
    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    /// Sets the file (keeps one that is already set).
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.as_ref().to_path_buf());
        }
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The sample index, if the error concerns one sample.
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// The file, if the error concerns one file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The message alone, without index and path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.index, &self.path) {
            (Some(i), Some(p)) => write!(f, "sample {i} ({}): ", p.display())?,
            (Some(i), None) => write!(f, "sample {i}: ")?,
            (None, Some(p)) => write!(f, "{}: ", p.display())?,
            (None, None) => {}
        }
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
