//! HDF5 source: a dataset of images `(N, H, W, C)` or `(N, H, W)`, `u8` or `f32`, with an
//! optional 1-D integer labels dataset, one file or many shards.
//!
//! Two read paths. A **contiguous, uncompressed** dataset (h5py's default for
//! `create_dataset(name, data=...)` without `chunks=` or `compression=`) is memory-mapped at
//! `Dataset::offset()` and read by every worker without the library and without a lock: as fast
//! as NPY. A **chunked or compressed** dataset goes through the HDF5 library, which serialises
//! every call behind one global lock: each read fetches the whole chunk of rows that holds the
//! sample (chunk-aligned) and keeps it in the worker's buffer, so consecutive samples of one
//! chunk cost one library call. For that path, chunks of whole images along the first axis
//! (`chunks=(k, H, W, C)`) are the fast layout; chunks that cut images read several chunks per
//! sample.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ::hdf5 as h5;
use memmap2::Mmap;

use super::{Access, Concat, Item, Raw, Source};
use crate::{Error, ErrorKind, ImageView, Pixels, Result};

/// Bytes of the tag that marks which chunk a worker's buffer holds.
const TAG: usize = 16;

/// Distinct per opened source, so that a buffer never passes one source's chunk to another.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How the pixels are read.
enum Store {
    /// Contiguous and uncompressed: the file mapped, data at `offset`.
    Mapped { map: Mmap, offset: usize },
    /// Chunked or compressed: through the library, `rows` samples per read.
    Library { ds: h5::Dataset, rows: usize },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Mapped { offset, .. } => write!(f, "Mapped {{ offset: {offset} }}"),
            Store::Library { rows, .. } => write!(f, "Library {{ rows: {rows} }}"),
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
    labels: Option<Vec<i64>>,
    store: Store,
    id: u64,
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
                Some(v)
            }
        };
        let contiguous = ds.layout() == h5::dataset::Layout::Contiguous && ds.filters().is_empty();
        let offset = ds.offset().and_then(|o| usize::try_from(o).ok());
        let store = match (contiguous, offset) {
            (true, Some(offset)) if offset % elem == 0 => {
                let f = File::open(path).map_err(|e| Error::io(path, e))?;
                // SAFETY: read-only map kept as long as the source; the file must not be
                // modified while open (documented); reads are bounds-checked below and in `get`.
                let map = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
                check_mapped(images, offset, total, map.len()).map_err(fmt)?;
                Store::Mapped { map, offset }
            }
            _ => {
                let rows = ds.chunk().and_then(|c| c.first().copied()).unwrap_or(1);
                tracing::debug!(
                    path = %path.display(),
                    dataset = images,
                    contiguous,
                    rows,
                    "stoker: hdf5 dataset is not mapped (chunked, filtered or unaligned): \
                     reading through the hdf5 library"
                );
                Store::Library {
                    ds,
                    rows: rows.clamp(1, shape[0].max(1)),
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

    /// Whether the images are read through a memory map (contiguous, uncompressed: the fast
    /// layout) rather than through the HDF5 library.
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
        self.labels.as_deref()
    }

    fn kind_str(&self) -> String {
        let [_, h, w, c] = self.shape;
        format!("{h}x{w}x{c} {}", self.dtype())
    }

    /// The bytes of sample `index`: from the map, or from the chunk cached in `buf`.
    fn sample_bytes<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        let sb = self.sample_bytes;
        match &self.store {
            Store::Mapped { map, offset } => {
                let start = offset + index * sb;
                map.get(start..start + sb).ok_or_else(|| {
                    Error::format(&self.path, "sample beyond the end of the file").at(index)
                })
            }
            Store::Library { ds, rows } => {
                let chunk = index / rows;
                let first = chunk * rows;
                let n = (*rows).min(self.shape[0] - first);
                let mut tag = [0u8; TAG];
                tag[..8].copy_from_slice(&self.id.to_le_bytes());
                tag[8..].copy_from_slice(&(chunk as u64).to_le_bytes());
                if buf.len() != TAG + n * sb || buf[..TAG] != tag {
                    let err = |e: h5::Error| {
                        let m = e.to_string().to_lowercase();
                        Error::new(ErrorKind::Io, format!("hdf5 read: {m}"))
                            .file(&self.path)
                            .at(index)
                            .with_source(e)
                    };
                    let sel = ndarray::s![first..first + n, .., .., ..];
                    buf.clear();
                    buf.extend_from_slice(&tag);
                    if self.f32 {
                        let a = if self.shape[3] == 1 && ds.ndim() == 3 {
                            ds.read_slice::<f32, _, ndarray::Ix3>(ndarray::s![
                                first..first + n,
                                ..,
                                ..
                            ])
                            .map_err(err)?
                            .into_dyn()
                        } else {
                            ds.read_slice::<f32, _, ndarray::Ix4>(sel)
                                .map_err(err)?
                                .into_dyn()
                        };
                        let a = a.as_standard_layout();
                        let s = a.as_slice().unwrap_or(&[]);
                        buf.extend_from_slice(bytemuck::cast_slice(s));
                    } else {
                        let a = if ds.ndim() == 3 {
                            ds.read_slice::<u8, _, ndarray::Ix3>(ndarray::s![
                                first..first + n,
                                ..,
                                ..
                            ])
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
                    if buf.len() != TAG + n * sb {
                        buf.clear();
                        return Err(Error::format(&self.path, "short read").at(index));
                    }
                }
                let at = TAG + (index - first) * sb;
                Ok(&buf[at..at + sb])
            }
        }
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
            label: self.labels.as_ref().map(|l| l[index]),
        })
    }

    fn path(&self, _index: usize) -> Option<&Path> {
        Some(&self.path)
    }

    fn has_labels(&self) -> bool {
        self.labels.is_some()
    }

    fn label(&self, index: usize) -> Option<i64> {
        self.labels.as_ref()?.get(index).copied()
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
            if self.is_mapped() {
                "contiguous, memory-mapped"
            } else {
                "chunked, through the library"
            },
            name.to_string_lossy()
        )
    }

    fn access(&self) -> Access {
        if self.is_mapped() {
            Access::fast("contiguous, memory-mapped, lock-free")
        } else {
            Access::slow(
                "chunked or compressed: read through the hdf5 library and its global lock; \
                 `stoker convert --to hdf5` writes contiguous files",
            )
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
