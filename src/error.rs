//! Typed errors that name the file and the sample they concern.
//!
//! Every [`Error`] has an [`ErrorKind`] in one of three groups, so that a caller can tell a
//! bad sample from a bug in its own code or a machine without a GPU:
//!
//! - **data errors** ([`ErrorKind::is_data`]): [`Io`](ErrorKind::Io),
//!   [`Format`](ErrorKind::Format) and [`Decode`](ErrorKind::Decode) — the file is missing,
//!   malformed or not a decodable image. They carry the path and sample index where known, and
//!   they are the only errors that [`OnError::Skip`](crate::OnError::Skip) skips.
//! - **usage errors** ([`ErrorKind::is_usage`]): [`Usage`](ErrorKind::Usage) (a bad option or
//!   argument), [`DTypeMismatch`](ErrorKind::DTypeMismatch) (a view or store of another dtype
//!   than the data's) and [`PoolExhausted`](ErrorKind::PoolExhausted) (the consumer holds every
//!   batch buffer) — the calling code must change.
//! - **device errors** ([`ErrorKind::is_device`]): [`NoDevice`](ErrorKind::NoDevice) (the CUDA
//!   driver, NVRTC or cuBLAS library could not be loaded, or there is no GPU) and
//!   [`Device`](ErrorKind::Device) (a CUDA call failed).
//!
//! Besides these, [`Cancelled`](ErrorKind::Cancelled) marks work given up on purpose,
//! [`Panic`](ErrorKind::Panic) a worker thread that panicked or exited, and
//! [`SkipLimit`](ErrorKind::SkipLimit) a pass that skipped more bad samples than its
//! [`SkipBound`](crate::SkipBound) allows (or all of them), and [`Remote`](ErrorKind::Remote)
//! object storage that failed after its retries (never skipped: the epoch would end short).
//!
//! The underlying error (an [`std::io::Error`], the JPEG or PNG decoder's, HDF5's, CUDA's) is
//! kept and returned by [`std::error::Error::source`].
//!
//! ```
//! use stoker::{Error, ErrorKind};
//!
//! enum Action { Skip, FixTheCaller, Other }
//!
//! fn triage(e: &Error) -> Action {
//!     match e.kind() {
//!         k if k.is_data() => Action::Skip,
//!         ErrorKind::Usage => Action::FixTheCaller,
//!         _ => Action::Other,
//!     }
//! }
//!
//! let bad_file = Error::new(ErrorKind::Decode, "not a jpeg or png").at(3);
//! assert!(matches!(triage(&bad_file), Action::Skip));
//! let bad_option = Error::usage("batch_size must be at least 1");
//! assert!(matches!(triage(&bad_option), Action::FixTheCaller));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, coarsely: the key under which skipped samples are counted.
///
/// More kinds may be added: a `match` needs a `_` arm (or the group predicates
/// [`is_data`](ErrorKind::is_data), [`is_usage`](ErrorKind::is_usage),
/// [`is_device`](ErrorKind::is_device)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Data: the file could not be opened or read (missing, unreadable, truncated read).
    Io,
    /// Data: the file is not what its format promises (bad header, wrong dtype, truncated data).
    Format,
    /// Data: the image bytes could not be decoded (corrupt, zero-byte, not an image).
    Decode,
    /// Usage: a bad option or argument (a zero batch size, an unknown name, an index out of
    /// range, a size that does not match).
    Usage,
    /// Usage: asked for data of another dtype than it has (a view of a batch, a store's rows).
    DTypeMismatch,
    /// Usage: the batch pool has no free buffer (the consumer holds them all).
    PoolExhausted,
    /// An epoch or stage was cancelled (dropped, or superseded by a new one).
    Cancelled,
    /// A worker thread panicked while it processed a sample, or every worker exited.
    Panic,
    /// Device: the CUDA driver, NVRTC or cuBLAS library could not be loaded, or there is no GPU.
    NoDevice,
    /// Device: a CUDA, NVRTC or cuBLAS call failed.
    Device,
    /// A pass skipped more bad samples than its [`SkipBound`](crate::SkipBound) allows, or
    /// every one of its samples; the error's source is the first failure.
    SkipLimit,
    /// Storage: object storage (`s3://`) failed after its retries, refused the credentials,
    /// or has no such bucket or object; the error names the URL. Never skipped: a shard that
    /// cannot be fetched would end the epoch short.
    Remote,
}

impl ErrorKind {
    /// Every kind, in a fixed order (used to index per-kind counters).
    ///
    /// ```
    /// use stoker::ErrorKind;
    /// assert_eq!(ErrorKind::ALL[0], ErrorKind::Io);
    /// assert!(ErrorKind::ALL.contains(&ErrorKind::NoDevice));
    /// ```
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Io,
        ErrorKind::Format,
        ErrorKind::Decode,
        ErrorKind::Usage,
        ErrorKind::DTypeMismatch,
        ErrorKind::PoolExhausted,
        ErrorKind::Cancelled,
        ErrorKind::Panic,
        ErrorKind::NoDevice,
        ErrorKind::Device,
        ErrorKind::SkipLimit,
        ErrorKind::Remote,
    ];

    /// Short lowercase name, e.g. `"decode"`.
    ///
    /// ```
    /// assert_eq!(stoker::ErrorKind::Decode.as_str(), "decode");
    /// assert_eq!(stoker::ErrorKind::DTypeMismatch.as_str(), "dtype mismatch");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Format => "format",
            ErrorKind::Decode => "decode",
            ErrorKind::Usage => "usage",
            ErrorKind::DTypeMismatch => "dtype mismatch",
            ErrorKind::PoolExhausted => "pool exhausted",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Panic => "panic",
            ErrorKind::NoDevice => "no device",
            ErrorKind::Device => "device",
            ErrorKind::SkipLimit => "skip limit",
            ErrorKind::Remote => "remote",
        }
    }

    /// The position of this kind in [`ErrorKind::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether this is a data error (`Io`, `Format`, `Decode`): one bad sample, which a skip
    /// policy may skip.
    ///
    /// ```
    /// use stoker::ErrorKind;
    /// assert!(ErrorKind::Decode.is_data());
    /// assert!(!ErrorKind::Usage.is_data() && !ErrorKind::Panic.is_data());
    /// ```
    pub fn is_data(self) -> bool {
        matches!(self, ErrorKind::Io | ErrorKind::Format | ErrorKind::Decode)
    }

    /// Whether this is a usage error (`Usage`, `DTypeMismatch`, `PoolExhausted`): the calling
    /// code must change.
    ///
    /// ```
    /// use stoker::ErrorKind;
    /// assert!(ErrorKind::PoolExhausted.is_usage());
    /// assert!(!ErrorKind::Format.is_usage());
    /// ```
    pub fn is_usage(self) -> bool {
        matches!(
            self,
            ErrorKind::Usage | ErrorKind::DTypeMismatch | ErrorKind::PoolExhausted
        )
    }

    /// Whether this is a device error (`NoDevice`, `Device`).
    ///
    /// ```
    /// use stoker::ErrorKind;
    /// assert!(ErrorKind::NoDevice.is_device() && ErrorKind::Device.is_device());
    /// assert!(!ErrorKind::Io.is_device());
    /// ```
    pub fn is_device(self) -> bool {
        matches!(self, ErrorKind::NoDevice | ErrorKind::Device)
    }
}

/// An error with the sample index and file it concerns, where known, and the underlying
/// error as its [`source`](std::error::Error::source).
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
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
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

    /// An I/O error on `path`, with `err` as its source.
    ///
    /// ```
    /// use std::error::Error as _;
    /// let e = stoker::Error::io("x.npy", std::io::Error::from(std::io::ErrorKind::NotFound));
    /// assert!(e.to_string().starts_with("x.npy: io: "));
    /// assert!(e.source().unwrap().downcast_ref::<std::io::Error>().is_some());
    /// ```
    pub fn io(path: impl AsRef<Path>, err: io::Error) -> Self {
        let message = err.to_string().to_lowercase();
        Error::new(ErrorKind::Io, message)
            .file(path)
            .with_source(err)
    }

    /// A usage error: a bad option or argument given by the caller.
    ///
    /// ```
    /// let e = stoker::Error::usage("batch_size must be > 0");
    /// assert_eq!(e.to_string(), "usage: batch_size must be > 0");
    /// assert_eq!(e.kind(), stoker::ErrorKind::Usage);
    /// ```
    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
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

    /// Sets the underlying error, returned by [`source`](std::error::Error::source)
    /// (replaces one already set). The message is not changed.
    ///
    /// ```
    /// use std::error::Error as _;
    /// let parse = "x".parse::<usize>().unwrap_err();
    /// let e = stoker::Error::usage("invalid RANK \"x\"").with_source(parse);
    /// assert!(e.source().unwrap().is::<std::num::ParseIntError>());
    /// ```
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
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

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// `Error` crosses threads (worker results, `Stats`): it must stay `Send + Sync`.
    const _: () = {
        const fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
        send_sync::<ErrorKind>();
    };

    #[test]
    fn all_lists_every_kind_once_in_declaration_order() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
        let names: std::collections::BTreeSet<_> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn every_kind_is_in_at_most_one_group() {
        for k in ErrorKind::ALL {
            let groups = [k.is_data(), k.is_usage(), k.is_device()];
            assert!(groups.iter().filter(|&&g| g).count() <= 1, "{k:?}");
        }
        let ungrouped: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|k| !(k.is_data() || k.is_usage() || k.is_device()))
            .collect();
        assert_eq!(
            ungrouped,
            [
                ErrorKind::Cancelled,
                ErrorKind::Panic,
                ErrorKind::SkipLimit,
                ErrorKind::Remote
            ]
        );
    }

    #[test]
    fn source_is_the_chained_error_and_display_is_unchanged() {
        let io = io::Error::new(io::ErrorKind::NotFound, "No such file");
        let e = Error::io("a/b.jpg", io).at(3);
        assert_eq!(e.to_string(), "sample 3 (a/b.jpg): io: no such file");
        let src = e.source().expect("io source");
        assert_eq!(
            src.downcast_ref::<io::Error>().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        assert!(Error::usage("x").source().is_none());
    }
}
