//! What a loader did: samples, bytes, time per stage, time the consumer waited, skips and why.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::{Error, ErrorKind};

/// How many skipped samples are kept with their message (the counts are always complete).
pub const SKIP_LOG_LEN: usize = 64;

/// Live counters shared by the workers and the consumer (relaxed atomics: a few adds per sample).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) samples: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) read_ns: AtomicU64,
    pub(crate) decode_ns: AtomicU64,
    pub(crate) transform_ns: AtomicU64,
    pub(crate) write_ns: AtomicU64,
    pub(crate) wait_ns: AtomicU64,
    /// Skips per kind, indexed like [`ErrorKind::ALL`] (only data kinds are ever skipped).
    pub(crate) skipped: [AtomicU64; ErrorKind::ALL.len()],
    pub(crate) skip_log: Mutex<Vec<SkippedSample>>,
    /// Samples that decoded with a warning under the decode policy.
    pub(crate) warned: AtomicU64,
    pub(crate) first_warning: OnceLock<DecodeWarning>,
}

impl Counters {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, v: u64) {
        counter.fetch_add(v, Ordering::Relaxed);
    }

    pub(crate) fn skip(&self, err: &Error) {
        self.skipped[err.kind().index()].fetch_add(1, Ordering::Relaxed);
        let mut log = self.skip_log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() < SKIP_LOG_LEN {
            log.push(SkippedSample {
                index: err.index(),
                kind: err.kind(),
                message: err.to_string(),
            });
        }
    }

    /// Counts a sample that decoded with `message` as its warning, keeping the first.
    pub(crate) fn warn(&self, index: usize, path: Option<&std::path::Path>, message: &str) {
        self.warned.fetch_add(1, Ordering::Relaxed);
        if self.first_warning.get().is_none() {
            let _ = self.first_warning.set(DecodeWarning {
                index,
                path: path.map(PathBuf::from),
                message: message.to_string(),
            });
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let d = |c: &AtomicU64| Duration::from_nanos(c.load(Ordering::Relaxed));
        let mut skipped_by_kind = Vec::new();
        for (k, c) in ErrorKind::ALL.iter().zip(&self.skipped) {
            let n = g(c);
            if n > 0 {
                skipped_by_kind.push((*k, n));
            }
        }
        Stats {
            samples: g(&self.samples),
            batches: g(&self.batches),
            bytes_read: g(&self.bytes_read),
            read: d(&self.read_ns),
            decode: d(&self.decode_ns),
            transform: d(&self.transform_ns),
            write: d(&self.write_ns),
            consumer_wait: d(&self.wait_ns),
            skipped: skipped_by_kind.iter().map(|(_, n)| n).sum(),
            skipped_by_kind,
            skipped_samples: self
                .skip_log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            decoded_with_warnings: g(&self.warned),
            first_warning: self.first_warning.get().cloned(),
        }
    }
}

/// A sample that decoded with a warning (see [`DecodePolicy`](crate::decode::DecodePolicy)):
/// it is in its batch, with the pixels libjpeg-turbo could not decode filled in.
///
/// ```
/// let w = stoker::DecodeWarning {
///     index: 3,
///     path: Some("a/b.jpg".into()),
///     message: "jpeg: corrupt jpeg data: bad huffman code".into(),
/// };
/// assert_eq!(w.to_string(), "sample 3 (a/b.jpg): jpeg: corrupt jpeg data: bad huffman code");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeWarning {
    /// Data set index.
    pub index: usize,
    /// The file, where the source knows one.
    pub path: Option<PathBuf>,
    /// The decoder's warning.
    pub message: String,
}

impl fmt::Display for DecodeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sample {}", self.index)?;
        if let Some(p) = &self.path {
            write!(f, " ({})", p.display())?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A sample that was skipped under the skip policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedSample {
    /// Data set index, where known.
    pub index: Option<usize>,
    /// Kind of failure.
    pub kind: ErrorKind,
    /// The full message (names the file).
    pub message: String,
}

/// A snapshot of a loader's counters since it was built.
///
/// Stage times are summed over all workers (CPU time spent in each stage), so with several
/// workers they can exceed wall time. `consumer_wait` is wall time the consumer spent blocked
/// in `next()` waiting for a batch.
///
/// ```
/// # let mut loader = stoker::Loader::builder(stoker::source::NpySource::glob("fixtures/npy/images-*.npy", None).unwrap())
/// #     .batch_size(8).build().unwrap();
/// for b in loader.epoch(0) { b.unwrap(); }
/// let s = loader.stats();
/// assert_eq!(s.samples, 32);
/// assert_eq!(s.batches, 4);
/// assert_eq!(s.skipped, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Samples written into batches.
    pub samples: u64,
    /// Batches handed to the consumer.
    pub batches: u64,
    /// Bytes read from storage (encoded bytes, or pixel bytes for pixel sources).
    pub bytes_read: u64,
    /// Time reading (file reads, memory-map page faults).
    pub read: Duration,
    /// Time decoding and resizing.
    pub decode: Duration,
    /// Time in the transform stage (augmentation), not counting its writes.
    pub transform: Duration,
    /// Time converting and writing into batch slots.
    pub write: Duration,
    /// Time the consumer waited for batches.
    pub consumer_wait: Duration,
    /// Samples skipped under the skip policy.
    pub skipped: u64,
    /// Skipped samples counted by kind of failure (only kinds that occurred).
    pub skipped_by_kind: Vec<(ErrorKind, u64)>,
    /// The first [`SKIP_LOG_LEN`] skipped samples with their messages.
    pub skipped_samples: Vec<SkippedSample>,
    /// Samples that decoded with a warning (corrupt data that the
    /// [`DecodePolicy`](crate::decode::DecodePolicy) accepts); they are in their batches.
    pub decoded_with_warnings: u64,
    /// The first of them.
    pub first_warning: Option<DecodeWarning>,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "{} samples in {} batches, {:.1} MB read; stage time read {:.1} ms, decode {:.1} ms, \
             transform {:.1} ms, write {:.1} ms; consumer waited {:.1} ms; skipped {}",
            self.samples,
            self.batches,
            self.bytes_read as f64 / 1e6,
            ms(self.read),
            ms(self.decode),
            ms(self.transform),
            ms(self.write),
            ms(self.consumer_wait),
            self.skipped
        )?;
        for (k, n) in &self.skipped_by_kind {
            write!(f, " ({} {})", n, k.as_str())?;
        }
        if self.decoded_with_warnings > 0 {
            write!(f, "; decoded with warnings {}", self.decoded_with_warnings)?;
        }
        Ok(())
    }
}
