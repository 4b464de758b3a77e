//! The format layer: one way to open any data set, [`open`].
//!
//! Each storage format is one [`Format`] value, defined beside its source and listed once in
//! [`FORMATS`].

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Index;
use super::{Access, Item, LabelSite, Source};
use crate::{Error, ErrorKind, Result};

/// How [`open`] reads a data set: which labels, which HDF5 datasets.
///
/// ```
/// use stoker::source::OpenOptions;
/// let o = OpenOptions::new().labels("labels-*.npy");
/// assert_eq!(o.labels_override(), Some("labels-*.npy"));
/// assert_eq!(o.images_dataset(), "images");
/// ```
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    labels: Option<String>,
    images_key: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_limit: Option<u64>,
    fetch_ahead: Option<u64>,
    remote_timeout: Option<Duration>,
    remote_retries: Option<usize>,
    endpoint: Option<String>,
}

impl OpenOptions {
    /// Defaults: labels paired automatically, HDF5 images in dataset `images`.
    pub fn new() -> Self {
        OpenOptions::default()
    }

    /// The labels, overriding the automatic pairing: a `.npy` file or glob for NPY images
    /// (one labels file per images file, in sorted order), the labels dataset of HDF5 files.
    /// Tar shards, image folders and manifests carry their own labels: there it is an error.
    pub fn labels(mut self, labels: impl Into<String>) -> Self {
        self.labels = Some(labels.into());
        self
    }

    /// The HDF5 dataset that holds the images (default `images`).
    pub fn images_key(mut self, key: impl Into<String>) -> Self {
        self.images_key = Some(key.into());
        self
    }

    /// Object storage (`s3://`, the `s3` feature): the node-local directory shards are
    /// downloaded into and mapped from (default
    /// `stoker::remote::default_cache_dir()`: `$STOKER_CACHE_DIR`,
    /// `$XDG_CACHE_HOME/stoker` or `~/.cache/stoker`). Processes of one node share it.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Object storage: at most this many bytes of shards in the cache for this data set
    /// (default: no limit, every shard stays once fetched). Below the data set's size, the
    /// shard whose next use is furthest away is evicted, and samples are copied out of their
    /// shard's map rather than borrowed from it (so that it can be unmapped).
    pub fn cache_limit(mut self, bytes: u64) -> Self {
        self.cache_limit = Some(bytes);
        self
    }

    /// Object storage: how many bytes of shards to fetch ahead of the loader's read position
    /// (default 1 GiB; at least the next shard is always fetched).
    pub fn fetch_ahead(mut self, bytes: u64) -> Self {
        self.fetch_ahead = Some(bytes);
        self
    }

    /// Object storage: how long a request may wait for the next bytes before it is retried
    /// (default 30 s).
    pub fn remote_timeout(mut self, timeout: Duration) -> Self {
        self.remote_timeout = Some(timeout);
        self
    }

    /// Object storage: how many times a failed request, or an object that arrived short, is
    /// tried again with backoff before the error (default 5).
    pub fn remote_retries(mut self, n: usize) -> Self {
        self.remote_retries = Some(n);
        self
    }

    /// Object storage: the endpoint URL (e.g. `http://127.0.0.1:8333`), for this data set
    /// only, over `AWS_ENDPOINT_URL`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The [`endpoint`](Self::endpoint) given, if any.
    pub fn endpoint_value(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The cache directory given with [`cache_dir`](Self::cache_dir), if any.
    pub fn cache_dir_value(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// The [`cache_limit`](Self::cache_limit), if any.
    pub fn cache_limit_value(&self) -> Option<u64> {
        self.cache_limit
    }

    /// The [`fetch_ahead`](Self::fetch_ahead) budget in bytes.
    pub fn fetch_ahead_value(&self) -> u64 {
        self.fetch_ahead.unwrap_or(1 << 30)
    }

    /// The [`remote_timeout`](Self::remote_timeout).
    pub fn remote_timeout_value(&self) -> Duration {
        self.remote_timeout.unwrap_or(Duration::from_secs(30))
    }

    /// The [`remote_retries`](Self::remote_retries).
    pub fn remote_retries_value(&self) -> usize {
        self.remote_retries.unwrap_or(5)
    }

    /// The labels given with [`labels`](Self::labels), if any.
    pub fn labels_override(&self) -> Option<&str> {
        self.labels.as_deref()
    }

    /// The HDF5 images dataset.
    pub fn images_dataset(&self) -> &str {
        self.images_key.as_deref().unwrap_or("images")
    }

    /// An error unless no labels were given: for formats that carry their own.
    pub(crate) fn no_labels(&self, format: &str, why: &str) -> Result<()> {
        match &self.labels {
            None => Ok(()),
            Some(_) => Err(Error::usage(format!(
                "labels cannot be given for {format} ({why})"
            ))),
        }
    }
}

/// One storage format: how to recognise it and open it. Listed in [`FORMATS`].
///
/// A new format implements this trait in its own module and adds one line to [`FORMATS`].
///
/// ```
/// use stoker::source::FORMATS;
/// let names: Vec<_> = FORMATS.iter().map(|f| f.name()).collect();
/// assert!(names.contains(&"npy") && names.contains(&"image folder"));
/// ```
pub trait Format: Sync {
    /// Short lowercase name, as [`Index::format`] and reports spell it (`"npy"`, `"tar"`).
    fn name(&self) -> &'static str;

    /// Whether the regular file `path`, whose first bytes are `head` (up to 512), is of this
    /// format (by extension or content).
    fn recognises(&self, path: &Path, head: &[u8]) -> bool;

    /// This format's shards in directory `dir` (sorted), when it holds some; `None` otherwise.
    /// Only called for a directory without an index.
    fn find(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>>;

    /// Opens `files` (shards of this format, sorted; for a directory format, the directory).
    fn open(&self, files: &[PathBuf], opts: &OpenOptions) -> Result<Box<dyn Source>>;

    /// Opens the shards an index lists (`index.shards` already resolved against `dir`).
    /// The default opens them like [`open`](Self::open).
    fn open_index(
        &self,
        index: &Index,
        shards: &[PathBuf],
        dir: &Path,
        opts: &OpenOptions,
    ) -> Result<Box<dyn Source>> {
        let _ = (index, dir);
        self.open(shards, opts)
    }
}

/// Every format [`open`] knows, in the order a directory without an index is tried.
pub static FORMATS: &[&dyn Format] = &[
    &super::npy::NPY,
    #[cfg(feature = "hdf5")]
    &super::hdf5::HDF5,
    &super::tar::TAR,
    &super::folder::MANIFEST,
    &super::folder::IMAGE_FILES,
    &super::folder::IMAGE_FOLDER,
];

/// The format named `name` (as in [`Format::name`]).
///
/// ```
/// assert_eq!(stoker::source::format_named("tar").unwrap().name(), "tar");
/// assert!(stoker::source::format_named("zip").is_none());
/// ```
pub fn format_named(name: &str) -> Option<&'static dyn Format> {
    FORMATS.iter().copied().find(|f| f.name() == name)
}

/// A data set opened by [`open`]: any format behind one [`Source`], with its format's name.
///
/// ```
/// use stoker::source::{open, OpenOptions, Source};
/// let src = open("fixtures/npy/images-000.npy", &OpenOptions::new())?;
/// assert_eq!(src.format(), "npy");
/// assert!(src.has_labels()); // labels-000.npy, paired by name
/// # Ok::<(), stoker::Error>(())
/// ```
pub struct AnySource {
    inner: Box<dyn Source>,
    format: &'static str,
    path: PathBuf,
    #[cfg(feature = "s3")]
    fetch: Option<std::sync::Arc<crate::remote::Counters>>,
}

impl std::fmt::Debug for AnySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnySource")
            .field("format", &self.format)
            .field("path", &self.path)
            .field("len", &self.inner.len())
            .finish()
    }
}

impl AnySource {
    /// The format's name (as in [`Format::name`]).
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// The path it was opened from.
    pub fn origin(&self) -> &Path {
        &self.path
    }

    /// What the fetcher has done, for a data set in object storage (`None` for a local one).
    pub fn fetch_stats(&self) -> Option<crate::remote::FetchStats> {
        #[cfg(feature = "s3")]
        return self.fetch.as_ref().map(|c| c.snapshot());
        #[cfg(not(feature = "s3"))]
        None
    }

    /// The source itself.
    pub fn into_inner(self) -> Box<dyn Source> {
        self.inner
    }
}

impl Source for AnySource {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        self.inner.get(index, buf)
    }
    fn path(&self, index: usize) -> Option<&Path> {
        self.inner.path(index)
    }
    fn has_labels(&self) -> bool {
        self.inner.has_labels()
    }
    fn label(&self, index: usize) -> Option<i64> {
        self.inner.label(index)
    }
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        self.inner.label_site(index)
    }
    fn channels(&self) -> Option<usize> {
        self.inner.channels()
    }
    fn size(&self) -> Option<(usize, usize)> {
        self.inner.size()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn access(&self) -> Access {
        self.inner.access()
    }
    fn shard_list(&self) -> Option<Vec<super::ShardInfo>> {
        self.inner.shard_list()
    }
    fn will_read(&self, order: &crate::sampler::EpochOrder, positions: std::ops::Range<usize>) {
        self.inner.will_read(order, positions)
    }
    fn will_read_next(
        &self,
        order: &crate::sampler::EpochOrder,
        positions: std::ops::Range<usize>,
    ) {
        self.inner.will_read_next(order, positions)
    }
}

/// Reads up to 512 bytes from the start of `path`.
fn head(path: &Path) -> Result<Vec<u8>> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0; 512];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// What a build without the `hdf5` feature says of an HDF5 file (a usage error naming the
/// file): how to get a build that reads it.
pub const WITHOUT_HDF5: &str = "this build of stoker has no HDF5 support (the hdf5 feature): \
     install libhdf5-dev (HDF5 >= 1.10.5), then rebuild with it (Rust: features = [\"hdf5\"]; \
     Python: MATURIN_PEP517_ARGS=\"--features hdf5\" pip install ./python)";

/// The first bytes of every HDF5 file (its superblock signature).
const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";

fn recognise(path: &Path) -> Result<&'static dyn Format> {
    let head = head(path)?;
    if cfg!(not(feature = "hdf5"))
        && (head.starts_with(HDF5_SIGNATURE)
            || path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("h5") || e.eq_ignore_ascii_case("hdf5")))
    {
        return Err(Error::usage(WITHOUT_HDF5).file(path));
    }
    FORMATS
        .iter()
        .copied()
        .find(|f| f.recognises(path, &head))
        .ok_or_else(|| {
            let names: Vec<_> = FORMATS.iter().map(|f| f.name()).collect();
            Error::format(
                path,
                format!("not a data set of a known format ({})", names.join(", ")),
            )
        })
}

/// Opens the data set at `path`, whatever its format.
///
/// - a **glob** (`shards/images-*.npy`) expands to sorted files, all of one format;
/// - a **file** is recognised by its extension or its first bytes (`.npy`, `.tar`, `.h5`, a
///   manifest `.csv`, `.jpg`/`.png` image files);
/// - a **directory** with a [`stoker.json`](Index) index (what `stoker convert` and
///   `stoker resize` write) opens the shards it lists; one written in parts in parallel
///   (`--shard i/n`) opens once every part has written its index
///   (`stoker.part-IIII-of-NNNN.json`, see [`Part`](super::Part)), and is an error naming the
///   missing parts before then; without an index, the first format in
///   [`FORMATS`] order that finds its shards there (`images-*.npy`, `*.h5`, `*.tar`) opens
///   them; a directory of class folders is an image folder, one of loose images a list of
///   unlabelled image files.
///
/// An **`s3://bucket/…` path** (the `s3` feature) names the same in object storage: a glob
/// of shards, NPY shards with their labels, a directory with a `stoker.json` (see
/// [`remote`](crate::remote)); shards are fetched into a node-local cache and mapped from there.
/// Without the feature it is a usage error that names it.
///
/// Labels are paired automatically: `images-000000.npy` with `labels-000000.npy` (and
/// `x_train.npy` with `y_train.npy`), an HDF5 file's `labels` dataset, a tar shard's `.cls`
/// members, an image folder's class folders. [`OpenOptions::labels`] overrides the pairing.
///
/// Errors name the path: no such file, a format it does not recognise, files of several
/// formats behind one glob, an index that does not match its shards.
///
/// ```
/// use stoker::source::{open, OpenOptions, Source};
/// let folder = open("fixtures/photos-256x144", &OpenOptions::new())?;
/// assert_eq!((folder.format(), folder.len()), ("image folder", 32));
/// let npy = open("fixtures/npy", &OpenOptions::new())?;       // images-*.npy + labels-*.npy
/// assert_eq!((npy.format(), npy.len(), npy.has_labels()), ("npy", 32, true));
/// let csv = open("fixtures/manifest.csv", &OpenOptions::new())?;
/// assert_eq!(csv.format(), "manifest");
/// let e = open("fixtures/README.md", &OpenOptions::new()).unwrap_err();
/// assert!(e.to_string().contains("README.md"));
/// # Ok::<(), stoker::Error>(())
/// ```
pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<AnySource> {
    let path = path.as_ref();
    let text = path.to_string_lossy();
    if crate::remote::is_remote(&text) {
        #[cfg(feature = "s3")]
        {
            let o = crate::remote::open(&text, opts)?;
            return Ok(AnySource {
                inner: o.source,
                format: o.format.name(),
                path: path.to_path_buf(),
                fetch: Some(o.counters),
            });
        }
        #[cfg(not(feature = "s3"))]
        return Err(Error::usage(crate::remote::WITHOUT_S3).file(path));
    }
    let (format, inner) = if text.contains(['*', '?', '[']) && !path.exists() {
        let files = super::expand(&text)?;
        let format = recognise(&files[0])?;
        for f in &files[1..] {
            let other = recognise(f)?;
            if other.name() != format.name() {
                return Err(Error::usage(format!(
                    "{text} matches files of two formats: {} ({}) and {} ({})",
                    format.name(),
                    files[0].display(),
                    other.name(),
                    f.display()
                )));
            }
        }
        (format, format.open(&files, opts)?)
    } else {
        let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            open_dir(path, opts)?
        } else {
            let format = recognise(path)?;
            (format, format.open(&[path.to_path_buf()], opts)?)
        }
    };
    Ok(AnySource {
        inner,
        format: format.name(),
        path: path.to_path_buf(),
        #[cfg(feature = "s3")]
        fetch: None,
    })
}

fn open_dir(dir: &Path, opts: &OpenOptions) -> Result<(&'static dyn Format, Box<dyn Source>)> {
    if let Some((index, ipath)) = Index::find(dir)? {
        return indexed(dir, &index, &ipath, opts);
    }
    for format in FORMATS {
        if let Some(files) = format.find(dir)? {
            return Ok((*format, format.open(&files, opts)?));
        }
    }
    Err(Error::new(
        ErrorKind::Format,
        "no data set here: no stoker.json, no shards (images-*.npy, *.h5, *.tar) and no class folders",
    )
    .file(dir))
}

/// Opens the shards that `index` lists in `dir`, as [`open`] opens a directory with that
/// index: for example one part's own shards, before the other parts have finished (what
/// `stoker convert --shard i/n --verify` reads back). Errors name `dir`.
///
/// ```
/// use stoker::source::{Index, OpenOptions, Source, open, open_index};
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::copy("fixtures/npy/images-000.npy", dir.path().join("images-000.npy")).unwrap();
/// let n = open("fixtures/npy/images-000.npy", &OpenOptions::new())?.len();
/// let mut index = Index::new("npy", n);
/// index.shards = vec!["images-000.npy".into()];
/// assert_eq!(open_index(dir.path(), &index, &OpenOptions::new())?.len(), n);
/// index.samples += 1;
/// assert!(open_index(dir.path(), &index, &OpenOptions::new()).is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
pub fn open_index(dir: &Path, index: &Index, opts: &OpenOptions) -> Result<AnySource> {
    let (format, inner) = indexed(dir, index, dir, opts)?;
    Ok(AnySource {
        inner,
        format: format.name(),
        path: dir.to_path_buf(),
        #[cfg(feature = "s3")]
        fetch: None,
    })
}

/// The shards `index` lists in `dir`; errors about the index name `ipath`.
fn indexed(
    dir: &Path,
    index: &Index,
    ipath: &Path,
    opts: &OpenOptions,
) -> Result<(&'static dyn Format, Box<dyn Source>)> {
    let format = format_named(&index.format).ok_or_else(|| {
        Error::format(
            ipath,
            if index.format == "hdf5" {
                WITHOUT_HDF5.to_string()
            } else {
                format!("format {:?} is not one this build reads", index.format)
            },
        )
    })?;
    let shards: Vec<PathBuf> = index.shards.iter().map(|s| dir.join(s)).collect();
    if shards.is_empty() {
        return Err(Error::format(ipath, "lists no shards"));
    }
    let src = format.open_index(index, &shards, dir, opts)?;
    if src.len() != index.samples {
        return Err(Error::format(
            ipath,
            format!(
                "lists {} samples but its shards hold {}",
                index.samples,
                src.len()
            ),
        ));
    }
    Ok((format, src))
}

/// The regular, non-hidden files directly in `dir` for which `keep` holds, sorted by name;
/// `None` when there are none (what [`Format::find`] answers).
pub(crate) fn files_in(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Option<Vec<PathBuf>>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !keep(name) {
            continue;
        }
        let p = entry.path();
        if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok((!out.is_empty()).then_some(out))
}

/// Whether `path`'s extension is one of `exts` (lowercase), in any letter case.
pub(crate) fn has_ext(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_a_distinct_name() {
        let mut names: Vec<_> = FORMATS.iter().map(|f| f.name()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn a_missing_path_is_an_io_error_naming_it() {
        let e = open("/nonexistent/data", &OpenOptions::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("/nonexistent/data"));
    }

    #[test]
    fn an_empty_directory_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), &OpenOptions::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format);
        assert!(e.to_string().contains("no data set here"), "{e}");
    }
}
