//! HDF5 source: a dataset of images `(N, H, W, C)` or `(N, H, W)`, `u8` or `f32`, with an
//! optional 1-D integer labels dataset, one file or many shards.
//!
//! Three read paths ([`Hdf5Read`]), all but the last without the HDF5 library and its global
//! lock:
//! - **contiguous, uncompressed** (h5py's default for `create_dataset(name, data=...)`): the
//!   file is memory-mapped and the data read at `Dataset::offset()`, as fast as NPY;
//! - **chunked**, unfiltered or with deflate and/or shuffle (h5py's `chunks=`,
//!   `compression="gzip"`, `shuffle=True`): each chunk's file address is asked of the library
//!   once, at the chunk's first use, and kept; a chunk of whole images unfiltered is then a
//!   slice of the map, no copy; a filtered chunk, or chunks that cut images, are inflated,
//!   unshuffled and assembled in the worker's buffer, so consecutive samples of one chunk
//!   cost one inflate and more workers inflate in parallel;
//! - **through the library** for the rest (other filters such as fletcher32, szip or lzf,
//!   compact or virtual layouts): each read fetches the whole chunk of rows that holds the
//!   sample into the worker's buffer, and every call is serialised by the library's lock.
//!
//! A chunk that was never written (it reads as the fill value) is read through the library.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ::hdf5 as h5;
use memmap2::Mmap;

use super::{Access, Concat, Item, LabelSite, Raw, Source};

mod chunks;
mod filters;

use crate::{Error, ErrorKind, ImageView, Pixels, Result};
use chunks::{Chunks, Grid};
use filters::Filter;

/// Bytes of the tag that marks which chunk a worker's buffer holds.
const TAG: usize = 16;

/// Distinct per opened source, so that a buffer never passes one source's chunk to another.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How the pixels are read.
enum Store {
    /// Contiguous and uncompressed: the file mapped, data at `offset`.
    Mapped { map: Mmap, offset: usize },
    /// Chunked, deflate and shuffle at most: from the map by chunk address.
    Chunked {
        map: Mmap,
        ds: h5::Dataset,
        chunks: Box<Chunks>,
    },
    /// Through the library, `rows` samples per read; `why` not one of the paths above.
    Library {
        ds: h5::Dataset,
        rows: usize,
        why: String,
    },
}

/// Which path an [`Hdf5Source`] reads its images by ([`Hdf5Source::read_path`]).
///
/// ```
/// use stoker::source::{save_hdf5, Hdf5Layout, Hdf5Read, Hdf5Source};
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("c.h5");
/// let layout = Hdf5Layout::Chunked { rows: 1, deflate: Some(4) };
/// save_hdf5(&p, stoker::Pixels::U8(&[7; 8]), [2, 2, 2, 1], None, layout).unwrap();
/// let s = Hdf5Source::open(&p, "images", None).unwrap();
/// let want = Hdf5Read::Chunks { whole_images: true, deflate: true, shuffle: false };
/// assert_eq!(s.read_path(), want);
/// assert!(s.read_path().lock_free());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hdf5Read {
    /// Contiguous and uncompressed: a slice of the memory map.
    Contiguous,
    /// Chunked: from the memory map by chunk address, filters undone in the worker.
    Chunks {
        /// Every chunk holds whole images (it spans H, W and C): an unfiltered chunk is read
        /// without a copy.
        whole_images: bool,
        /// Deflate-compressed chunks, inflated in the worker.
        deflate: bool,
        /// Byte-shuffled chunks, unshuffled in the worker.
        shuffle: bool,
    },
    /// Through the HDF5 library and its global lock (a filter or layout the paths above do
    /// not handle; [`Hdf5Source::describe`](Source::describe) says which).
    Library,
}

impl Hdf5Read {
    /// Whether reads run without the HDF5 library's global lock (in parallel across workers).
    ///
    /// ```
    /// assert!(!stoker::source::Hdf5Read::Library.lock_free());
    /// ```
    pub fn lock_free(self) -> bool {
        !matches!(self, Hdf5Read::Library)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Mapped { offset, .. } => write!(f, "Mapped {{ offset: {offset} }}"),
            Store::Chunked { chunks, .. } => write!(f, "Chunked {{ {chunks:?} }}"),
            Store::Library { rows, why, .. } => {
                write!(f, "Library {{ rows: {rows}, why: {why:?} }}")
            }
        }
    }
}

/// One HDF5 file's images (and labels), memory-mapped when the layout allows.
///
/// ```
/// use stoker::source::{save_hdf5, Hdf5Layout, Hdf5Source, Raw, Source};
/// use stoker::Pixels;
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("data.h5");
/// let px: Vec<u8> = (0..2 * 1 * 2 * 3).collect();
/// save_hdf5(&p, Pixels::U8(&px), [2, 1, 2, 3], Some(&[4, 7]), Hdf5Layout::Contiguous).unwrap();
/// let src = Hdf5Source::open(&p, "images", Some("labels")).unwrap();
/// assert!(src.is_mapped());
/// let mut buf = Vec::new();
/// let item = src.get(1, &mut buf).unwrap();
/// assert_eq!(item.label, Some(7));
/// let Raw::Pixels(v) = item.raw else { panic!() };
/// assert!(matches!(v.pixels, Pixels::U8(p) if p == &[6, 7, 8, 9, 10, 11][..]));
/// ```
#[derive(Debug)]
pub struct Hdf5Source {
    path: PathBuf,
    f32: bool,
    /// `[N, H, W, C]`.
    shape: [usize; 4],
    sample_bytes: usize,
    labels: Option<Labels>,
    store: Store,
    id: u64,
}

/// A labels dataset (its path in the file, as given) and its values, one per image.
#[derive(Debug)]
struct Labels {
    dataset: String,
    values: Vec<i64>,
}

/// How [`save_hdf5`] lays out the images dataset.
///
/// ```
/// let l = stoker::source::Hdf5Layout::Chunked { rows: 8, deflate: Some(4) };
/// assert_ne!(l, stoker::source::Hdf5Layout::Contiguous);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hdf5Layout {
    /// One contiguous, uncompressed block: read through a memory map (the fast layout).
    Contiguous,
    /// Chunks of `rows` whole images, optionally deflate-compressed (level 0–9).
    Chunked {
        /// Images per chunk.
        rows: usize,
        /// Deflate level, or `None` for no compression.
        deflate: Option<u8>,
    },
}

/// Fuzzing ([`crate::fuzz::hdf5`]): what stoker does with what the HDF5 library returns (a
/// dataset's shape, its element size, a contiguous dataset's address and the file's length),
/// read from `data`. Panics only on a broken invariant (an overflow, rows outside the file).
pub(crate) fn fuzz(data: &[u8]) {
    let mut words = data.chunks(8).map(|c| {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        // Small values are the interesting ones as often as huge ones.
        let v = u64::from_le_bytes(b);
        usize::try_from(if v & 1 == 0 { v >> 1 } else { (v >> 1) % 4096 }).unwrap_or(usize::MAX)
    });
    let head = words.next().unwrap_or(0);
    let (rank, elem) = (head % 6, if head & 8 == 0 { 1 } else { 4 });
    let dims: Vec<usize> = words.by_ref().take(rank).collect();
    let (offset, len) = (words.next().unwrap_or(0), words.next().unwrap_or(0));
    let Ok((shape, sample_bytes, total)) = image_extent("images", &dims, elem) else {
        return;
    };
    assert!(
        matches!(shape[3], 1 | 3) && shape[1] > 0 && shape[2] > 0,
        "{shape:?}"
    );
    // Exact in u128 (no overflow was missed).
    let wide = |v: usize| v as u128;
    let per = wide(shape[1]) * wide(shape[2]) * wide(shape[3]) * wide(elem);
    assert_eq!(
        (wide(sample_bytes), wide(total)),
        (per, per * wide(shape[0]))
    );
    if check_mapped("images", offset, total, len).is_ok() {
        assert!(wide(offset) + wide(total) <= wide(len));
    }
    // The chunk path: a small grid from the same words, every chunk of a row scattered into
    // its slab (no index may fall outside), and the filters undone on the input's bytes.
    let small = |v: usize| v % 9 + 1;
    let d = [small(shape[0]), small(shape[1]), small(shape[2]), shape[3]];
    let c = [
        small(offset),
        small(len),
        small(head >> 4),
        1 + (head >> 9) % shape[3],
    ];
    let c = [c[0], c[1].min(d[1] + 2), c[2].min(d[2] + 2), c[3]];
    if let Ok(g) = Grid::new(d, c, elem, 4) {
        let chunk = vec![1u8; g.chunk_bytes()];
        let index = (head >> 12) % d[0];
        for filtered in [false, true] {
            let (first, rows) = g.slab(index, filtered);
            assert!(first <= index && index < first + rows && first + rows <= d[0]);
            let mut slab = vec![0u8; rows * g.sample_bytes()];
            for k in 0..g.per_row() {
                g.scatter(g.linear(index / c[0], k), &chunk, first, rows, &mut slab);
            }
            assert!(
                slab.iter().all(|&v| v == 1),
                "every byte of the slab written"
            );
        }
    }
    let n = (head >> 16) % 4096;
    let (mut out, mut tmp) = (vec![0u8; n], vec![0u8; n]);
    let pipeline = [Filter::Shuffle(elem), Filter::Deflate];
    let mask = (head >> 20) as u32 & 3;
    let _ = filters::undo(&pipeline, mask, data, &mut out, &mut tmp);
}

/// The shape `[N, H, W, C]`, bytes per sample and bytes in all of an images dataset whose
/// shape the library gives as `dims`, of `elem`-byte values.
pub(crate) fn image_extent(
    images: &str,
    dims: &[usize],
    elem: usize,
) -> std::result::Result<([usize; 4], usize, usize), String> {
    let shape = match dims[..] {
        [n, h, w, c @ (1 | 3)] => [n, h, w, c],
        [n, h, w] => [n, h, w, 1],
        [_, _, _, c] => {
            return Err(format!(
                "'{images}' must have 1 or 3 channels, found {c} (shape {dims:?})"
            ));
        }
        _ => {
            return Err(format!(
                "'{images}' must have shape (N, H, W, C) or (N, H, W), found rank {} {dims:?}",
                dims.len()
            ));
        }
    };
    if shape[1] == 0 || shape[2] == 0 {
        return Err(format!("'{images}' has zero-size images {dims:?}"));
    }
    let sample_bytes = shape[1]
        .checked_mul(shape[2])
        .and_then(|v| v.checked_mul(shape[3] * elem))
        .ok_or_else(|| format!("'{images}' images are too large"))?;
    let total = sample_bytes
        .checked_mul(shape[0])
        .ok_or_else(|| format!("'{images}' is too large"))?;
    Ok((shape, sample_bytes, total))
}

/// Checks that `total` bytes at `offset` (the library's address of a contiguous dataset) lie
/// inside a file of `len` bytes.
pub(crate) fn check_mapped(
    images: &str,
    offset: usize,
    total: usize,
    len: usize,
) -> std::result::Result<(), String> {
    if offset.checked_add(total).is_none_or(|end| end > len) {
        return Err(format!(
            "truncated: '{images}' needs {total} bytes at byte {offset}, the file has {len}"
        ));
    }
    Ok(())
}

/// The chunk grid and the filters to undo for a chunked dataset of `dims` (the library's
/// extent) in chunks of `chunk`, `elem`-byte values, or why it must be read through the
/// library (a filter other than deflate and shuffle).
fn chunk_plan(
    dims: &[usize],
    chunk: &[usize],
    elem: usize,
    filters: &[h5::filters::Filter],
) -> std::result::Result<(Grid, Vec<Filter>), String> {
    let pad = |v: &[usize]| match v[..] {
        [n, h, w, c] => Some([n, h, w, c]),
        [n, h, w] => Some([n, h, w, 1]),
        _ => None,
    };
    let (Some(d), Some(c)) = (pad(dims), pad(chunk)) else {
        return Err(format!("chunk shape {chunk:?} does not match {dims:?}"));
    };
    if dims.len() != chunk.len() {
        return Err(format!("chunk shape {chunk:?} does not match {dims:?}"));
    }
    let mut pipeline = Vec::with_capacity(filters.len());
    for f in filters {
        pipeline.push(match f {
            h5::filters::Filter::Deflate(_) => Filter::Deflate,
            h5::filters::Filter::Shuffle => Filter::Shuffle(elem),
            other => {
                let name = format!("{other:?}").to_lowercase();
                let name = name.split(['(', ' ']).next().unwrap_or("").to_string();
                return Err(format!(
                    "filter {name} (only deflate and shuffle are undone in the workers)"
                ));
            }
        });
    }
    if pipeline.len() > 32 {
        return Err("more than 32 filters".to_string());
    }
    Ok((Grid::new(d, c, elem, dims.len())?, pipeline))
}

fn h5err(path: &Path, what: &str, e: h5::Error) -> Error {
    let m = e.to_string().to_lowercase();
    let m = m.lines().next().unwrap_or("").trim().to_string();
    Error::format(path, format!("{what}: {m}")).with_source(e)
}

impl Hdf5Source {
    /// Opens `images` (a dataset path such as `"images"` or `"train/x"`) in `path`, and
    /// `labels` when given (1-D, any integer type, one per image).
    ///
    /// Errors name the file: not an HDF5 file, no such dataset, a rank other than 3 or 4, a
    /// channel count other than 1 or 3, a dtype other than u8 or f32, a label count that
    /// differs from the image count.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = dir.path().join("not.h5");
    /// std::fs::write(&p, b"plain text").unwrap();
    /// let e = stoker::source::Hdf5Source::open(&p, "images", None).unwrap_err();
    /// assert!(e.to_string().contains("not.h5"));
    /// ```
    pub fn open(path: impl AsRef<Path>, images: &str, labels: Option<&str>) -> Result<Hdf5Source> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::format(path, "not a regular file"));
        }
        if meta.len() == 0 {
            return Err(Error::format(path, "empty file (0 bytes)"));
        }
        let fmt = |m: String| Error::format(path, m);
        let file = h5::File::open(path).map_err(|e| h5err(path, "not an hdf5 file", e))?;
        let ds = file
            .dataset(images)
            .map_err(|e| h5err(path, &format!("no dataset '{images}'"), e))?;
        let dims = ds.shape();
        let dtype = ds
            .dtype()
            .map_err(|e| h5err(path, &format!("'{images}' dtype"), e))?;
        let f32 = if dtype.is::<u8>() {
            false
        } else if dtype.is::<f32>() {
            true
        } else {
            return Err(fmt(format!(
                "'{images}' has dtype {}, not supported (u8 or little-endian f32)",
                dtype.to_descriptor().map_or_else(
                    |_| "unknown".to_string(),
                    |d| format!("{d:?}").to_lowercase()
                )
            )));
        };
        let elem = if f32 { 4 } else { 1 };
        let (shape, sample_bytes, total) = image_extent(images, &dims, elem).map_err(fmt)?;
        let labels = match labels {
            None => None,
            Some(name) => {
                let l = file
                    .dataset(name)
                    .map_err(|e| h5err(path, &format!("no dataset '{name}'"), e))?;
                let ld = l.shape();
                if !matches!(ld[..], [_] | [_, 1]) {
                    return Err(fmt(format!("labels '{name}' must be 1-D, found {ld:?}")));
                }
                let int = l.dtype().is_ok_and(|t| {
                    matches!(
                        t.to_descriptor(),
                        Ok(h5::types::TypeDescriptor::Integer(_)
                            | h5::types::TypeDescriptor::Unsigned(_))
                    )
                });
                if !int {
                    return Err(fmt(format!("labels '{name}' must be integers")));
                }
                let v: Vec<i64> = l
                    .read_raw()
                    .map_err(|e| h5err(path, &format!("labels '{name}'"), e))?;
                if v.len() != shape[0] {
                    return Err(fmt(format!(
                        "{} labels in '{name}' but {} images in '{images}'",
                        v.len(),
                        shape[0]
                    )));
                }
                Some(Labels {
                    dataset: name.to_string(),
                    values: v,
                })
            }
        };
        let layout = ds.layout();
        let filters = ds.filters();
        let contiguous = layout == h5::dataset::Layout::Contiguous && filters.is_empty();
        let offset = ds.offset().and_then(|o| usize::try_from(o).ok());
        let map = || -> Result<Mmap> {
            let f = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: read-only map kept as long as the source; the file must not be
            // modified while open (documented); reads are bounds-checked in `get`.
            unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))
        };
        let store = match (contiguous, offset) {
            (true, Some(offset)) if offset % elem == 0 => {
                let map = map()?;
                check_mapped(images, offset, total, map.len()).map_err(fmt)?;
                Store::Mapped { map, offset }
            }
            _ => {
                let chunk = ds.chunk();
                let plan = match (&layout, &chunk) {
                    (h5::dataset::Layout::Chunked, Some(c)) => chunk_plan(&dims, c, elem, &filters),
                    (h5::dataset::Layout::Chunked, None) => Err("no chunk shape".to_string()),
                    (h5::dataset::Layout::Contiguous, _) if offset.is_none() => {
                        Err("contiguous but never written".to_string())
                    }
                    (h5::dataset::Layout::Contiguous, _) if !filters.is_empty() => {
                        Err("contiguous with filters".to_string())
                    }
                    (h5::dataset::Layout::Contiguous, _) => {
                        Err("contiguous at an address not aligned to its dtype".to_string())
                    }
                    (l, _) => Err(format!("{l:?} layout").to_lowercase()),
                };
                match plan {
                    Ok((grid, pipeline)) => Store::Chunked {
                        map: map()?,
                        ds,
                        chunks: Box::new(Chunks::new(grid, pipeline)),
                    },
                    Err(why) => {
                        let rows = chunk.as_ref().and_then(|c| c.first().copied()).unwrap_or(1);
                        tracing::debug!(
                            path = %path.display(),
                            dataset = images,
                            why,
                            rows,
                            "stoker: hdf5 dataset read through the hdf5 library"
                        );
                        Store::Library {
                            ds,
                            rows: rows.clamp(1, shape[0].max(1)),
                            why,
                        }
                    }
                }
            }
        };
        Ok(Hdf5Source {
            path: path.to_path_buf(),
            f32,
            shape,
            sample_bytes,
            labels,
            store,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Opens shards `paths` (each with the same dataset names) as one data set; every shard
    /// must share H, W, C and dtype.
    ///
    /// ```
    /// use stoker::source::{save_hdf5, Hdf5Layout, Hdf5Source, Source};
    /// use stoker::Pixels;
    /// let dir = tempfile::tempdir().unwrap();
    /// let paths: Vec<_> = (0..2).map(|k| dir.path().join(format!("s{k}.h5"))).collect();
    /// save_hdf5(&paths[0], Pixels::U8(&[1, 2]), [2, 1, 1, 1], None, Hdf5Layout::Contiguous).unwrap();
    /// let chunked = Hdf5Layout::Chunked { rows: 2, deflate: Some(1) };
    /// save_hdf5(&paths[1], Pixels::U8(&[3, 4, 5]), [3, 1, 1, 1], None, chunked).unwrap();
    /// let all = Hdf5Source::shards(&paths, "images", None).unwrap();
    /// assert_eq!((all.len(), all.locate(3)), (5, Some((1, 1))));
    /// ```
    pub fn shards(
        paths: &[PathBuf],
        images: &str,
        labels: Option<&str>,
    ) -> Result<Concat<Hdf5Source>> {
        if paths.is_empty() {
            return Err(Error::usage("no hdf5 files given"));
        }
        let mut out: Vec<Hdf5Source> = Vec::with_capacity(paths.len());
        for p in paths {
            let s = Hdf5Source::open(p, images, labels)?;
            if let Some(first) = out.first()
                && (s.shape[1..] != first.shape[1..] || s.f32 != first.f32)
            {
                return Err(Error::format(
                    p,
                    format!(
                        "images are {}, unlike {} in {}",
                        s.kind_str(),
                        first.kind_str(),
                        first.path.display()
                    ),
                ));
            }
            out.push(s);
        }
        Concat::new(out)
    }

    /// Opens the files matching `pattern` (sorted; a plain path is one shard) as shards.
    ///
    /// ```
    /// let e = stoker::source::Hdf5Source::glob("/nonexistent/*.h5", "images", None).unwrap_err();
    /// assert!(e.to_string().contains("*.h5"));
    /// ```
    pub fn glob(pattern: &str, images: &str, labels: Option<&str>) -> Result<Concat<Hdf5Source>> {
        let paths = if !pattern.contains(['*', '?', '[']) || Path::new(pattern).is_file() {
            vec![PathBuf::from(pattern)]
        } else {
            let it = glob::glob(pattern).map_err(|e| {
                Error::usage(format!("bad glob pattern {pattern}: {}", e.msg)).with_source(e)
            })?;
            let mut v: Vec<PathBuf> = it.filter_map(|p| p.ok()).filter(|p| p.is_file()).collect();
            v.sort();
            v
        };
        if paths.is_empty() {
            return Err(Error::new(ErrorKind::Io, "no files match this pattern").file(pattern));
        }
        Hdf5Source::shards(&paths, images, labels)
    }

    /// Whether the images are one contiguous, uncompressed block read from the memory map
    /// ([`Hdf5Read::Contiguous`]); [`read_path`](Self::read_path) tells the other paths apart.
    ///
    /// ```
    /// # use stoker::source::{save_hdf5, Hdf5Layout, Hdf5Source};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("c.h5");
    /// let chunked = Hdf5Layout::Chunked { rows: 1, deflate: None };
    /// save_hdf5(&p, stoker::Pixels::U8(&[0; 4]), [4, 1, 1, 1], None, chunked).unwrap();
    /// assert!(!Hdf5Source::open(&p, "images", None).unwrap().is_mapped());
    /// ```
    pub fn is_mapped(&self) -> bool {
        matches!(self.store, Store::Mapped { .. })
    }

    /// The path reads take: a slice of the map, chunks from the map by address (filters
    /// undone in the worker), or the library (see [`Hdf5Read`]).
    ///
    /// ```
    /// # use stoker::source::{save_hdf5, Hdf5Layout, Hdf5Read, Hdf5Source};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("c.h5");
    /// save_hdf5(&p, stoker::Pixels::U8(&[0; 4]), [4, 1, 1, 1], None, Hdf5Layout::Contiguous).unwrap();
    /// assert_eq!(Hdf5Source::open(&p, "images", None).unwrap().read_path(), Hdf5Read::Contiguous);
    /// ```
    pub fn read_path(&self) -> Hdf5Read {
        match &self.store {
            Store::Mapped { .. } => Hdf5Read::Contiguous,
            Store::Chunked { chunks, .. } => Hdf5Read::Chunks {
                whole_images: chunks.grid.whole(),
                deflate: chunks.pipeline.contains(&Filter::Deflate),
                shuffle: chunks
                    .pipeline
                    .iter()
                    .any(|f| matches!(f, Filter::Shuffle(_))),
            },
            Store::Library { .. } => Hdf5Read::Library,
        }
    }

    /// The read path in words, for `describe` and `access`.
    fn path_words(&self) -> String {
        match &self.store {
            Store::Mapped { .. } => "contiguous, memory-mapped, lock-free".to_string(),
            Store::Chunked { chunks, .. } => {
                let c = chunks.grid.chunk;
                let shape = if chunks.grid.rank == 3 {
                    format!("({}, {}, {})", c[0], c[1], c[2])
                } else {
                    format!("({}, {}, {}, {})", c[0], c[1], c[2], c[3])
                };
                let mut filters: Vec<&str> = chunks
                    .pipeline
                    .iter()
                    .map(|f| match f {
                        Filter::Deflate => "deflate",
                        Filter::Shuffle(_) => "shuffle",
                    })
                    .collect();
                if filters.is_empty() {
                    filters.push("unfiltered");
                }
                format!(
                    "chunked {shape} {}, read from the memory map by chunk address, lock-free{}",
                    filters.join("+"),
                    match (chunks.pipeline.is_empty(), chunks.grid.whole()) {
                        (true, true) => ", zero copy",
                        (false, true) => ", inflated in the workers",
                        (true, false) => ", each image assembled from the chunks that cut it",
                        (false, false) => {
                            ", inflated in the workers; chunks cut images, so a shuffled read \
                             inflates every chunk of its row: chunks=(1, H, W, C) is faster"
                        }
                    }
                )
            }
            Store::Library { why, .. } => {
                format!("through the hdf5 library and its global lock: {why}")
            }
        }
    }

    /// `[N, H, W, C]` (C = 1 for an `(N, H, W)` dataset).
    ///
    /// ```
    /// # use stoker::source::{save_hdf5, Hdf5Layout, Hdf5Source};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("c.h5");
    /// save_hdf5(&p, stoker::Pixels::F32(&[0.0; 6]), [1, 1, 2, 3], None, Hdf5Layout::Contiguous).unwrap();
    /// let s = Hdf5Source::open(&p, "images", None).unwrap();
    /// assert_eq!((s.shape(), s.dtype()), ([1, 1, 2, 3], "f32"));
    /// ```
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Element type of the pixels: `"u8"` or `"f32"`.
    pub fn dtype(&self) -> &'static str {
        if self.f32 { "f32" } else { "u8" }
    }

    /// The labels, widened to `i64`, when a labels dataset was given.
    ///
    /// ```
    /// # use stoker::source::{save_hdf5, Hdf5Layout, Hdf5Source};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("c.h5");
    /// save_hdf5(&p, stoker::Pixels::U8(&[0; 2]), [2, 1, 1, 1], Some(&[5, -1]), Hdf5Layout::Contiguous).unwrap();
    /// let s = Hdf5Source::open(&p, "images", Some("labels")).unwrap();
    /// assert_eq!(s.labels(), Some(&[5, -1][..]));
    /// ```
    pub fn labels(&self) -> Option<&[i64]> {
        self.labels.as_ref().map(|l| &l.values[..])
    }

    fn kind_str(&self) -> String {
        let [_, h, w, c] = self.shape;
        format!("{h}x{w}x{c} {}", self.dtype())
    }

    /// The tag of the rows from `first` on held in a worker's buffer.
    fn tag(&self, first: usize) -> [u8; TAG] {
        let mut tag = [0u8; TAG];
        tag[..8].copy_from_slice(&self.id.to_le_bytes());
        tag[8..].copy_from_slice(&(first as u64).to_le_bytes());
        tag
    }

    /// Whether `buf` holds `rows` images from `first` on, as [`Self::tag`] marks them.
    fn holds(&self, buf: &[u8], first: usize, rows: usize) -> bool {
        buf.len() >= TAG + rows * self.sample_bytes && buf[..TAG] == self.tag(first)
    }

    /// Reads images `first..first + rows` through the library into `buf`, after their tag.
    fn read_rows(
        &self,
        ds: &h5::Dataset,
        first: usize,
        n: usize,
        index: usize,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let err = |e: h5::Error| {
            let m = e.to_string().to_lowercase();
            Error::new(ErrorKind::Io, format!("hdf5 read: {m}"))
                .file(&self.path)
                .at(index)
                .with_source(e)
        };
        let sel = ndarray::s![first..first + n, .., .., ..];
        let sel3 = ndarray::s![first..first + n, .., ..];
        buf.clear();
        buf.extend_from_slice(&[0; TAG]);
        if self.f32 {
            let a = if ds.ndim() == 3 {
                ds.read_slice::<f32, _, ndarray::Ix3>(sel3)
                    .map_err(err)?
                    .into_dyn()
            } else {
                ds.read_slice::<f32, _, ndarray::Ix4>(sel)
                    .map_err(err)?
                    .into_dyn()
            };
            let a = a.as_standard_layout();
            buf.extend_from_slice(bytemuck::cast_slice(a.as_slice().unwrap_or(&[])));
        } else {
            let a = if ds.ndim() == 3 {
                ds.read_slice::<u8, _, ndarray::Ix3>(sel3)
                    .map_err(err)?
                    .into_dyn()
            } else {
                ds.read_slice::<u8, _, ndarray::Ix4>(sel)
                    .map_err(err)?
                    .into_dyn()
            };
            let a = a.as_standard_layout();
            buf.extend_from_slice(a.as_slice().unwrap_or(&[]));
        }
        if buf.len() != TAG + n * self.sample_bytes {
            buf.clear();
            return Err(Error::format(&self.path, "short read").at(index));
        }
        buf[..TAG].copy_from_slice(&self.tag(first));
        Ok(())
    }

    /// The bytes of sample `index`: from the map, or from the rows cached in `buf`.
    fn sample_bytes<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        let sb = self.sample_bytes;
        let (first, rows) = match &self.store {
            Store::Mapped { map, offset } => {
                let start = offset + index * sb;
                return map.get(start..start + sb).ok_or_else(|| {
                    Error::format(&self.path, "sample beyond the end of the file").at(index)
                });
            }
            Store::Chunked { map, ds, chunks } => {
                if let Some(b) = self.read_chunks(map, ds, chunks, index, buf)? {
                    return Ok(b);
                }
                chunks.slab(index)
            }
            Store::Library { ds, rows, .. } => {
                let first = index / rows * rows;
                let n = (*rows).min(self.shape[0] - first);
                if !self.holds(buf, first, n) {
                    self.read_rows(ds, first, n, index, buf)?;
                }
                (first, n)
            }
        };
        debug_assert!(self.holds(buf, first, rows));
        let at = TAG + (index - first) * sb;
        Ok(&buf[at..at + sb])
    }

    /// Sample `index` of a chunked dataset: `Some` slice of the map when its chunk is
    /// stored plain and holds whole images; otherwise `None` once `buf` holds the slab
    /// ([`Grid::slab`]) with the sample, assembled from its chunks.
    fn read_chunks<'a>(
        &self,
        map: &'a Mmap,
        ds: &h5::Dataset,
        chunks: &Chunks,
        index: usize,
        buf: &mut Vec<u8>,
    ) -> Result<Option<&'a [u8]>> {
        let g = &chunks.grid;
        let sb = self.sample_bytes;
        let (first, rows) = chunks.slab(index);
        if self.holds(buf, first, rows) {
            return Ok(None);
        }
        let fail = |m: String| Error::format(&self.path, m).at(index);
        let row = index / g.chunk[0];
        let cb = g.chunk_bytes();
        if g.whole() {
            let l = chunks.locate(ds, g.linear(row, 0)).map_err(fail)?;
            // Never written (the fill value), or not inside the map: the library reads it.
            let Some(raw) = Chunks::allocated(&l)
                .then(|| chunks.stored(map, &l))
                .flatten()
            else {
                self.read_rows(ds, first, rows, index, buf)?;
                return Ok(None);
            };
            if chunks.plain(&l) {
                if raw.len() != cb {
                    return Err(fail(format!(
                        "a chunk holds {} bytes, expected {cb}",
                        raw.len()
                    )));
                }
                let at = (index - row * g.chunk[0]) * sb;
                let s = &raw[at..at + sb];
                if !self.f32 || s.as_ptr().align_offset(4) == 0 {
                    return Ok(Some(s));
                }
                // An f32 chunk at an address that is not a multiple of 4: copied.
                buf.clear();
                buf.extend_from_slice(&[0; TAG]);
                buf.extend_from_slice(&raw[..rows * sb]);
                buf[..TAG].copy_from_slice(&self.tag(first));
                return Ok(None);
            }
            // One inflate (and unshuffle) per chunk, into the buffer: `[tag | chunk | tmp]`.
            buf.resize(buf.len().max(TAG + 2 * cb), 0);
            buf[..TAG].fill(0);
            let (out, tmp) = buf[TAG..TAG + 2 * cb].split_at_mut(cb);
            chunks.unfilter(&l, raw, out, tmp).map_err(fail)?;
            buf[..TAG].copy_from_slice(&self.tag(first));
            return Ok(None);
        }
        // Chunks that cut images: every chunk of this chunk row lends its part of the slab.
        // The buffer: `[tag | slab | chunk | tmp]`.
        let slab = rows * sb;
        buf.resize(buf.len().max(TAG + slab + 2 * cb), 0);
        buf[..TAG].fill(0);
        for k in 0..g.per_row() {
            let lin = g.linear(row, k);
            let l = chunks.locate(ds, lin).map_err(fail)?;
            let Some(raw) = Chunks::allocated(&l)
                .then(|| chunks.stored(map, &l))
                .flatten()
            else {
                self.read_rows(ds, first, rows, index, buf)?;
                return Ok(None);
            };
            let (dst, rest) = buf[TAG..TAG + slab + 2 * cb].split_at_mut(slab);
            let bytes: &[u8] = if chunks.plain(&l) {
                if raw.len() != cb {
                    return Err(fail(format!(
                        "a chunk holds {} bytes, expected {cb}",
                        raw.len()
                    )));
                }
                raw
            } else {
                let (out, tmp) = rest.split_at_mut(cb);
                chunks.unfilter(&l, raw, out, tmp).map_err(fail)?;
                out
            };
            g.scatter(lin, bytes, first, rows, dst);
        }
        buf[..TAG].copy_from_slice(&self.tag(first));
        Ok(None)
    }
}

impl Source for Hdf5Source {
    fn len(&self) -> usize {
        self.shape[0]
    }

    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        if index >= self.shape[0] {
            return Err(
                Error::usage(format!("index out of range (len {})", self.shape[0]))
                    .at(index)
                    .file(&self.path),
            );
        }
        let bytes = self.sample_bytes(index, buf)?;
        let pixels = if self.f32 {
            // SAFETY: any bit pattern is a valid f32; `align_to` yields only the aligned middle.
            let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
            if !pre.is_empty() || !post.is_empty() {
                return Err(Error::format(&self.path, "f32 data is not 4-byte aligned").at(index));
            }
            Pixels::F32(mid)
        } else {
            Pixels::U8(bytes)
        };
        let [_, h, w, c] = self.shape;
        let view = ImageView::new(w, h, c, pixels)
            .ok_or_else(|| Error::format(&self.path, "sample size mismatch").at(index))?;
        Ok(Item {
            raw: Raw::Pixels(view),
            label: self.labels.as_ref().map(|l| l.values[index]),
        })
    }

    fn path(&self, _index: usize) -> Option<&Path> {
        Some(&self.path)
    }

    fn has_labels(&self) -> bool {
        self.labels.is_some()
    }

    fn label(&self, index: usize) -> Option<i64> {
        self.labels.as_ref()?.values.get(index).copied()
    }

    /// Row `index` of the labels dataset in this file.
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        let l = self.labels.as_ref()?;
        (index < l.values.len()).then(|| LabelSite::Dataset {
            file: self.path.clone(),
            dataset: l.dataset.clone(),
            row: index,
        })
    }

    fn channels(&self) -> Option<usize> {
        Some(self.shape[3])
    }

    fn size(&self) -> Option<(usize, usize)> {
        Some((self.shape[2], self.shape[1]))
    }

    fn describe(&self) -> String {
        let name = self.path.file_name().unwrap_or(self.path.as_os_str());
        format!(
            "hdf5: {} samples of {}, {} ({})",
            self.shape[0],
            self.kind_str(),
            self.path_words(),
            name.to_string_lossy()
        )
    }

    fn access(&self) -> Access {
        if self.read_path().lock_free() {
            Access::fast(self.path_words())
        } else {
            Access::slow(format!(
                "{}; `stoker convert --to hdf5` writes contiguous files",
                self.path_words()
            ))
        }
    }
}

/// The HDF5 format for [`open`](super::open): `.h5`/`.hdf5` files (by extension or the HDF5
/// signature); in a directory, every such file. Images in dataset `images` (or
/// [`OpenOptions::images_key`](super::OpenOptions::images_key)), labels in `labels` when every
/// file has one.
pub(crate) struct Hdf5Format;

/// The one [`Hdf5Format`] value, listed in [`FORMATS`](super::FORMATS).
pub(crate) static HDF5: Hdf5Format = Hdf5Format;

/// Whether the HDF5 file `path` has an object at `name`.
fn has_dataset(path: &Path, name: &str) -> bool {
    h5::File::open(path).is_ok_and(|f| f.link_exists(name))
}

impl super::Format for Hdf5Format {
    fn name(&self) -> &'static str {
        "hdf5"
    }

    fn recognises(&self, path: &Path, head: &[u8]) -> bool {
        head.starts_with(b"\x89HDF\r\n\x1a\n") || super::open::has_ext(path, &["h5", "hdf5"])
    }

    fn find(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        super::open::files_in(dir, |n| {
            let n = n.to_ascii_lowercase();
            n.ends_with(".h5") || n.ends_with(".hdf5")
        })
    }

    fn open(&self, files: &[PathBuf], opts: &super::OpenOptions) -> Result<Box<dyn Source>> {
        let labels = match opts.labels_override() {
            Some(l) => Some(l),
            None => files
                .iter()
                .all(|f| has_dataset(f, "labels"))
                .then_some("labels"),
        };
        Ok(Box::new(Hdf5Source::shards(
            files,
            opts.images_dataset(),
            labels,
        )?))
    }

    fn open_index(
        &self,
        index: &super::Index,
        shards: &[PathBuf],
        _dir: &Path,
        opts: &super::OpenOptions,
    ) -> Result<Box<dyn Source>> {
        let mut o = opts.clone();
        if let (Some(k), None) = (&index.images_key, opts.labels_override()) {
            o = o.images_key(k.clone());
            if let Some(l) = &index.labels_key {
                o = o.labels(l.clone());
            }
            return Ok(Box::new(Hdf5Source::shards(
                shards,
                o.images_dataset(),
                o.labels_override(),
            )?));
        }
        self.open(shards, &o)
    }
}

/// Writes `images` (`shape = [N, H, W, C]`, C order) as dataset `images` and, when given,
/// `labels` as an `i64` dataset `labels`, in a new HDF5 file at `path` (replaced if it exists).
///
/// ```
/// use stoker::source::{save_hdf5, Hdf5Layout};
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("x.h5");
/// assert!(save_hdf5(&p, stoker::Pixels::U8(&[0; 3]), [2, 1, 1, 1], None, Hdf5Layout::Contiguous).is_err());
/// ```
pub fn save_hdf5(
    path: impl AsRef<Path>,
    images: Pixels<'_>,
    shape: [usize; 4],
    labels: Option<&[i64]>,
    layout: Hdf5Layout,
) -> Result<()> {
    let path = path.as_ref();
    let n: usize = shape.iter().product();
    let len = match images {
        Pixels::U8(p) => p.len(),
        Pixels::F32(p) => p.len(),
    };
    if len != n {
        return Err(
            Error::usage(format!("shape {shape:?} needs {n} values, found {len}")).file(path),
        );
    }
    if labels.is_some_and(|l| l.len() != shape[0]) {
        return Err(Error::usage(format!(
            "{} images but a different number of labels",
            shape[0]
        ))
        .file(path));
    }
    let err = |e: h5::Error| {
        Error::new(
            ErrorKind::Io,
            format!("hdf5 write: {}", e.to_string().to_lowercase()),
        )
        .file(path)
        .with_source(e)
    };
    let file = h5::File::create(path).map_err(err)?;
    let mut b = file.new_dataset_builder();
    if let Hdf5Layout::Chunked { rows, deflate } = layout {
        b = b.chunk([rows.clamp(1, shape[0].max(1)), shape[1], shape[2], shape[3]]);
        if let Some(level) = deflate {
            b = b.deflate(level);
        }
    }
    let ds = match images {
        Pixels::U8(p) => b
            .empty::<u8>()
            .shape(shape)
            .create("images")
            .map_err(err)
            .and_then(|d| d.write_raw(p).map_err(err).map(|()| d)),
        Pixels::F32(p) => b
            .empty::<f32>()
            .shape(shape)
            .create("images")
            .map_err(err)
            .and_then(|d| d.write_raw(p).map_err(err).map(|()| d)),
    }?;
    drop(ds);
    if let Some(l) = labels {
        let d = file
            .new_dataset::<i64>()
            .shape([l.len()])
            .create("labels")
            .map_err(err)?;
        d.write_raw(l).map_err(err)?;
    }
    file.close().map_err(err)
}
