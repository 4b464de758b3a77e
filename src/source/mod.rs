//! Sources: a storage format that gives the bytes or pixels of sample `i` and its label.
//!
//! One small trait, [`Source`], and composable wrappers ([`Concat`]) in the style of burn's
//! `Dataset`. A source never decodes: it hands encoded bytes ([`Raw::Encoded`]) or pixels
//! ([`Raw::Pixels`], borrowed straight from a memory map where it can) to the worker, which
//! decodes, transforms and writes the sample into its batch slot.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::sampler::EpochOrder;
use crate::{Error, ErrorKind, ImageView, Result};

mod concat;
pub use concat::{Concat, ShardInfo};
mod folder;
mod npy;
pub use folder::{ImageFolder, image_files};
pub use npy::{NpySource, save_npy, write_npy};
#[cfg(feature = "hdf5")]
mod hdf5;
#[cfg(feature = "hdf5")]
#[cfg_attr(docsrs, doc(cfg(feature = "hdf5")))]
pub use self::hdf5::{Hdf5Layout, Hdf5Read, Hdf5Source, save_hdf5};
mod tar;
pub use tar::{TarSource, TarWriter};
mod atomic;
pub use atomic::{write_file, write_with};
// The fuzz targets' views of the parsers (see `crate::fuzz`).
#[cfg(feature = "hdf5")]
pub(crate) use self::hdf5::fuzz as fuzz_hdf5;
pub(crate) use folder::fuzz_manifest;
pub(crate) use npy::fuzz as fuzz_npy;
#[cfg(feature = "s3")]
pub(crate) use npy::{
    header_end as npy_header_end, image_rows as npy_image_rows, label_rows as npy_label_rows,
};
pub(crate) use tar::fuzz as fuzz_tar;
mod index;
mod label_site;
mod open;
mod parts;
pub use index::Index;
pub use label_site::LabelSite;
pub use open::{
    AnySource, FORMATS, Format, OpenOptions, WITHOUT_HDF5, format_named, open, open_index,
};
pub use parts::Part;

/// What a source gives for one sample.
#[derive(Clone, Copy, Debug)]
pub enum Raw<'a> {
    /// Encoded image file bytes (JPEG or PNG), decoded by the worker.
    Encoded(&'a [u8]),
    /// Decoded pixels, interleaved HWC.
    Pixels(ImageView<'a>),
}

/// How a source reads its samples: whether this is the fast layout, and what to do if not.
///
/// ```
/// use stoker::source::{open, OpenOptions, Source};
/// let folder = open("fixtures/photos-256x144", &OpenOptions::new())?;
/// assert!(!folder.access().fast); // one file per sample
/// assert!(folder.access().note.contains("stoker convert"));
/// assert!(open("fixtures/npy", &OpenOptions::new())?.access().fast);
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    /// The fast layout: memory-mapped, no file opened per sample, no library lock.
    pub fast: bool,
    /// How samples are read and, when slow, what to convert to (one line).
    pub note: String,
}

impl Access {
    /// The fast layout, read as `note` says.
    pub fn fast(note: impl Into<String>) -> Access {
        Access {
            fast: true,
            note: note.into(),
        }
    }

    /// A slow layout, with what to do about it.
    pub fn slow(note: impl Into<String>) -> Access {
        Access {
            fast: false,
            note: note.into(),
        }
    }
}

/// One sample: its data and its label (`None` for an unlabelled data set).
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    /// The sample's bytes or pixels.
    pub raw: Raw<'a>,
    /// The class label.
    pub label: Option<i64>,
}

/// A data set of `len()` samples, each readable by index from any thread.
///
/// `get` may borrow from the source itself (a memory map) or read into `buf`, a buffer the
/// caller owns and reuses from sample to sample so that steady state allocates nothing.
/// Errors carry the sample index and the file.
///
/// ```
/// use stoker::source::{Item, Raw, Source};
/// use stoker::{ImageView, Pixels, Result};
/// use std::path::Path;
///
/// /// Four 1×1 gray images, pixel value = index.
/// struct Tiny([u8; 4]);
/// impl Source for Tiny {
///     fn len(&self) -> usize { 4 }
///     fn get<'a>(&'a self, i: usize, _buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
///         let px = &self.0[i..i + 1];
///         Ok(Item { raw: Raw::Pixels(ImageView::new(1, 1, 1, Pixels::U8(px)).unwrap()), label: Some(i as i64) })
///     }
///     fn path(&self, _i: usize) -> Option<&Path> { None }
///     fn has_labels(&self) -> bool { true }
/// }
/// let t = Tiny([0, 1, 2, 3]);
/// let mut buf = Vec::new();
/// assert_eq!(t.get(2, &mut buf).unwrap().label, Some(2));
/// ```
pub trait Source: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// `true` when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index` (`< len()`); may read into `buf`.
    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>>;

    /// The file that holds sample `index`, for messages.
    fn path(&self, index: usize) -> Option<&Path>;

    /// Whether samples carry labels.
    fn has_labels(&self) -> bool;

    /// Sample `index`'s label when the source holds it without reading the sample (a labels
    /// array, a class folder); `None` when unknown until read. The loader checks these
    /// labels when it is built ([`LoaderBuilder::num_classes`](crate::LoaderBuilder::num_classes)).
    fn label(&self, index: usize) -> Option<i64> {
        let _ = index;
        None
    }

    /// Where sample `index`'s label is stored: the labels file and the row, line or member in
    /// it ([`LabelSite`]). An error about a bad label names this file and place rather than
    /// the sample's image. `None` when the source has no labels or does not say (a label
    /// given in code); errors then name the sample's file ([`path`](Self::path)). A wrapper
    /// maps `index` to its inner source's, as [`Concat`] maps a global index to a shard's row.
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        let _ = index;
        None
    }

    /// Channels of the samples when the source knows them without decoding (NPY does;
    /// an image folder does not).
    fn channels(&self) -> Option<usize> {
        None
    }

    /// Image size `(width, height)` when all samples share one and the source knows it
    /// without decoding.
    fn size(&self) -> Option<(usize, usize)> {
        None
    }

    /// One line that says what the source is, e.g. `"npy: 2 files, 32 samples of 144x256x3 u8"`.
    fn describe(&self) -> String {
        format!("{} samples", self.len())
    }

    /// Whether the source reads the fast way (see [`Access`]); unknown sources say so.
    fn access(&self) -> Access {
        Access::slow("a source of its own kind: its speed is unknown to stoker")
    }

    /// The shards the samples are stored in, in data set order (shard `s` holds the
    /// samples after those of shards `0..s`), with each one's name and sample count; `None`
    /// for a source that is not sharded. The shard-aware order
    /// ([`Order::Shards`](crate::sampler::Order::Shards)) and a
    /// [`Checkpoint`](crate::sampler::Checkpoint)'s fingerprint use it.
    fn shard_list(&self) -> Option<Vec<ShardInfo>> {
        None
    }

    /// Told by the loader as a pass starts: it reads data set index `order.index(p)` for each
    /// position `p` of `positions`, in that order. A source that fetches ahead (shards in
    /// object storage, `stoker::remote::RemoteShards`) plans its downloads
    /// from it; the default ignores it.
    fn will_read(&self, order: &EpochOrder, positions: Range<usize>) {
        let _ = (order, positions);
    }

    /// Told by the loader as it starts the pass that follows the one in progress (the next
    /// epoch, made ahead): it reads `order.index(p)` for each `p` of `positions` once the
    /// rest of the current pass is read. The default is [`will_read`](Self::will_read).
    fn will_read_next(&self, order: &EpochOrder, positions: Range<usize>) {
        self.will_read(order, positions)
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        (**self).get(index, buf)
    }
    fn path(&self, index: usize) -> Option<&Path> {
        (**self).path(index)
    }
    fn has_labels(&self) -> bool {
        (**self).has_labels()
    }
    fn label(&self, index: usize) -> Option<i64> {
        (**self).label(index)
    }
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        (**self).label_site(index)
    }
    fn channels(&self) -> Option<usize> {
        (**self).channels()
    }
    fn size(&self) -> Option<(usize, usize)> {
        (**self).size()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn access(&self) -> Access {
        (**self).access()
    }
    fn shard_list(&self) -> Option<Vec<ShardInfo>> {
        (**self).shard_list()
    }
    fn will_read(&self, order: &EpochOrder, positions: Range<usize>) {
        (**self).will_read(order, positions)
    }
    fn will_read_next(&self, order: &EpochOrder, positions: Range<usize>) {
        (**self).will_read_next(order, positions)
    }
}

impl<S: Source + ?Sized> Source for std::sync::Arc<S> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        (**self).get(index, buf)
    }
    fn path(&self, index: usize) -> Option<&Path> {
        (**self).path(index)
    }
    fn has_labels(&self) -> bool {
        (**self).has_labels()
    }
    fn label(&self, index: usize) -> Option<i64> {
        (**self).label(index)
    }
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        (**self).label_site(index)
    }
    fn channels(&self) -> Option<usize> {
        (**self).channels()
    }
    fn size(&self) -> Option<(usize, usize)> {
        (**self).size()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn access(&self) -> Access {
        (**self).access()
    }
    fn shard_list(&self) -> Option<Vec<ShardInfo>> {
        (**self).shard_list()
    }
    fn will_read(&self, order: &EpochOrder, positions: Range<usize>) {
        (**self).will_read(order, positions)
    }
    fn will_read_next(&self, order: &EpochOrder, positions: Range<usize>) {
        (**self).will_read_next(order, positions)
    }
}

/// Expands a glob pattern to sorted regular files; a path without glob characters is itself.
pub(crate) fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
    if !pattern.contains(['*', '?', '[']) || Path::new(pattern).is_file() {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let paths = glob::glob(pattern).map_err(|e| {
        Error::usage(format!("bad glob pattern {pattern}: {}", e.msg)).with_source(e)
    })?;
    let mut out = Vec::new();
    for entry in paths {
        let p = entry.map_err(|e| {
            let path = e.path().to_path_buf();
            Error::io(path, e.into())
        })?;
        if !p.is_dir() {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(Error::new(ErrorKind::Io, "no files match this pattern").file(pattern));
    }
    out.sort();
    Ok(out)
}
