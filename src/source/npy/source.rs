//! [`NpySource`]: one memory-mapped `.npy` file of images (or many shards through
//! [`Concat`]), pixels borrowed straight from the map.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::header::{Elem, Header, data_len, parse_header, shape_str};
use crate::source::{Access, Concat, Item, LabelSite, Raw, Source, expand};
use crate::{Error, ImageView, Pixels, Result};

/// Maps `path` read-only; a zero-byte or non-regular file is a clear error, not an mmap failure.
fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::format(path, "not a regular file"));
    }
    if meta.len() == 0 {
        return Err(Error::format(path, "empty file (0 bytes)"));
    }
    // SAFETY: the map is read-only and lives as long as the source. As with every memory
    // map, the file must not be truncated or rewritten while it is open (documented on
    // `NpySource`); all other accesses are bounds-checked against the mapped length.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// Reads a 1-D integer `.npy` (`(N,)` or `(N, 1)`) into `i64`s.
fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_labels(&bytes).map_err(|m| Error::format(path, m))
}

/// The header of a labels `.npy` file of `file_len` bytes, from its first bytes (`bytes`, the
/// whole header at least): its element type, and the labels it holds (checked to fit).
fn label_header(
    bytes: &[u8],
    file_len: usize,
) -> std::result::Result<(Header, Elem, usize), String> {
    let h = parse_header(bytes)?;
    let elem = Elem::parse(&h.descr).filter(|&e| e != Elem::F4).ok_or_else(|| {
        format!(
            "label dtype {} is not supported (supported: |i1, |u1, <i2, <u2, <i4, <u4, <i8, <u8)",
            h.descr
        )
    })?;
    // For one dimension (or a trailing 1) Fortran and C order are the same layout.
    let n = match h.shape[..] {
        [n] | [n, 1] => n,
        _ => {
            return Err(format!(
                "labels must be 1-D, found shape {}",
                shape_str(&h.shape)
            ));
        }
    };
    data_len(&h, file_len, elem)?;
    Ok((h, elem, n))
}

/// The labels a labels `.npy` file of `file_len` bytes holds, from its first bytes (the whole
/// header at least), checked as [`parse_labels`] checks the whole file.
#[cfg(feature = "s3")]
pub(crate) fn label_rows(head: &[u8], file_len: u64) -> std::result::Result<usize, String> {
    label_header(head, usize::try_from(file_len).unwrap_or(usize::MAX)).map(|(_, _, n)| n)
}

/// The labels of a whole 1-D integer `.npy` file in memory.
pub(crate) fn parse_labels(bytes: &[u8]) -> std::result::Result<Vec<i64>, String> {
    let (h, elem, n) = label_header(bytes, bytes.len())?;
    let need = n * elem.size();
    let data = &bytes[h.data_offset..h.data_offset + need];
    let sz = elem.size();
    let mut out = Vec::with_capacity(n);
    for (row, c) in data.chunks_exact(sz).enumerate() {
        let v = match elem {
            Elem::U1 => i64::from(c[0]),
            Elem::I1 => i64::from(c[0] as i8),
            Elem::U2 => i64::from(u16::from_le_bytes([c[0], c[1]])),
            Elem::I2 => i64::from(i16::from_le_bytes([c[0], c[1]])),
            Elem::U4 => i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Elem::I4 => i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Elem::I8 | Elem::U8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                if elem == Elem::I8 {
                    i64::from_le_bytes(b)
                } else {
                    let u = u64::from_le_bytes(b);
                    i64::try_from(u)
                        .map_err(|_| format!("label {u} at row {row} does not fit in i64"))?
                }
            }
            Elem::F4 => unreachable!("filtered above"),
        };
        out.push(v);
    }
    Ok(out)
}

/// Where the images of an NPY file are: element type, `[N, H, W, C]`, first data byte, bytes
/// per sample. Every sample lies inside the file (`data_offset + N * sample_bytes <= len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageLayout {
    pub(crate) f32: bool,
    pub(crate) shape: [usize; 4],
    pub(crate) data_offset: usize,
    pub(crate) sample_bytes: usize,
}

/// Checks the header of a whole images `.npy` file in memory (or mapped).
pub(crate) fn image_layout(bytes: &[u8]) -> std::result::Result<ImageLayout, String> {
    image_layout_of(bytes, bytes.len())
}

/// The images an images `.npy` file of `file_len` bytes holds, from its first bytes (the
/// whole header at least), checked as opening the whole file checks them.
pub(crate) fn image_rows(head: &[u8], file_len: u64) -> std::result::Result<usize, String> {
    image_layout_of(head, usize::try_from(file_len).unwrap_or(usize::MAX)).map(|l| l.shape[0])
}

/// [`image_layout`] of a file of `file_len` bytes that starts with `bytes`.
fn image_layout_of(bytes: &[u8], file_len: usize) -> std::result::Result<ImageLayout, String> {
    let h = parse_header(bytes)?;
    let elem = match Elem::parse(&h.descr) {
        Some(e @ (Elem::U1 | Elem::F4)) => e,
        _ => {
            let big = if h.descr.starts_with('>') {
                "big-endian "
            } else {
                ""
            };
            return Err(format!(
                "{big}dtype {} is not supported for images (supported: |u1, <f4)",
                h.descr
            ));
        }
    };
    if h.fortran_order {
        return Err(
            "fortran-order arrays are not supported; save with numpy.ascontiguousarray".into(),
        );
    }
    let shape = match h.shape[..] {
        [n, hh, w, c @ (1 | 3)] => [n, hh, w, c],
        [n, hh, w] => [n, hh, w, 1],
        [_, _, _, c] => {
            return Err(format!(
                "images must have 1 or 3 channels, found {c} (shape {})",
                shape_str(&h.shape)
            ));
        }
        _ => {
            return Err(format!(
                "expected shape (N, H, W, C) or (N, H, W), found {}",
                shape_str(&h.shape)
            ));
        }
    };
    if shape[1] == 0 || shape[2] == 0 {
        return Err(format!(
            "images have zero size (shape {})",
            shape_str(&h.shape)
        ));
    }
    data_len(&h, file_len, elem)?;
    if elem == Elem::F4 && h.data_offset % 4 != 0 {
        return Err(format!(
            "f32 data starts at byte {}, not a multiple of 4; re-save with numpy.save",
            h.data_offset
        ));
    }
    let sample_bytes = shape[1] * shape[2] * shape[3] * elem.size();
    Ok(ImageLayout {
        f32: elem == Elem::F4,
        shape,
        data_offset: h.data_offset,
        sample_bytes,
    })
}

/// A memory-mapped `.npy` file of images: shape `(N, H, W, C)` with C in {1, 3}, or
/// `(N, H, W)` (gray), dtype `|u1` or `<f4`, C order; optionally with a 1-D integer labels file.
///
/// [`get`](Source::get) borrows the pixels of row `i` straight from the map (zero copy).
/// The file must not be modified or truncated while the source is open.
///
/// ```
/// use stoker::source::{save_npy, NpySource, Raw, Source};
/// use stoker::Pixels;
/// let dir = tempfile::tempdir().unwrap();
/// let (img, lab) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
/// save_npy(&img, "|u1", &[2, 1, 2, 3], &(0..12).collect::<Vec<u8>>()).unwrap();
/// save_npy(&lab, "<i8", &[2], &[5i64.to_le_bytes(), 9i64.to_le_bytes()].concat()).unwrap();
/// let src = NpySource::open(&img, Some(&lab)).unwrap();
/// assert_eq!((src.len(), src.size(), src.channels()), (2, Some((2, 1)), Some(3)));
/// let mut buf = Vec::new();
/// let item = src.get(1, &mut buf).unwrap();
/// assert_eq!(item.label, Some(9));
/// let Raw::Pixels(view) = item.raw else { panic!() };
/// assert!(matches!(view.pixels, Pixels::U8(p) if p == &[6, 7, 8, 9, 10, 11][..]));
/// ```
#[derive(Debug)]
pub struct NpySource {
    path: PathBuf,
    map: Mmap,
    f32: bool,
    /// `[N, H, W, C]`.
    shape: [usize; 4],
    data_offset: usize,
    sample_bytes: usize,
    labels: Option<Labels>,
}

/// A labels file and its values, one per image.
#[derive(Debug)]
struct Labels {
    file: PathBuf,
    values: Vec<i64>,
}

impl NpySource {
    /// Maps the images file and reads the labels file (if any) into memory.
    ///
    /// Labels: a 1-D array (or `(N, 1)`) of any of `|i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8`, with
    /// as many rows as there are images.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("gray.npy");
    /// stoker::source::save_npy(&p, "<f4", &[3, 2, 2], &[0u8; 3 * 2 * 2 * 4]).unwrap();
    /// let src = stoker::source::NpySource::open(&p, None).unwrap();
    /// assert_eq!(src.shape(), [3, 2, 2, 1]);
    /// assert_eq!(src.dtype(), "f32");
    /// ```
    pub fn open(images: impl AsRef<Path>, labels: Option<&Path>) -> Result<NpySource> {
        let path = images.as_ref();
        let map = map_file(path)?;
        let ImageLayout {
            f32,
            shape,
            data_offset,
            sample_bytes,
        } = image_layout(&map).map_err(|m| Error::format(path, m))?;
        let labels = match labels {
            None => None,
            Some(lp) => {
                let l = read_labels(lp)?;
                if l.len() != shape[0] {
                    return Err(Error::format(
                        lp,
                        format!(
                            "{} labels but {} has {} images",
                            l.len(),
                            path.display(),
                            shape[0]
                        ),
                    ));
                }
                Some(Labels {
                    file: lp.to_path_buf(),
                    values: l,
                })
            }
        };
        Ok(NpySource {
            path: path.to_path_buf(),
            map,
            f32,
            shape,
            data_offset,
            sample_bytes,
            labels,
        })
    }

    /// Opens shards: `images[k]` with `labels[k]`. Every shard must share H, W, C and dtype.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use stoker::source::{save_npy, NpySource, Source};
    /// let paths: Vec<_> = (0..2).map(|k| dir.path().join(format!("s{k}.npy"))).collect();
    /// save_npy(&paths[0], "|u1", &[2, 1, 1], &[1, 2]).unwrap();
    /// save_npy(&paths[1], "|u1", &[3, 1, 1], &[3, 4, 5]).unwrap();
    /// let all = NpySource::shards(&paths, None).unwrap();
    /// assert_eq!((all.len(), all.locate(3)), (5, Some((1, 1))));
    /// ```
    pub fn shards(images: &[PathBuf], labels: Option<&[PathBuf]>) -> Result<Concat<NpySource>> {
        if images.is_empty() {
            return Err(Error::usage("no npy files given"));
        }
        if let Some(l) = labels
            && l.len() != images.len()
        {
            return Err(Error::usage(format!(
                "{} image files but {} label files",
                images.len(),
                l.len()
            )));
        }
        let mut out: Vec<NpySource> = Vec::with_capacity(images.len());
        for (k, p) in images.iter().enumerate() {
            let s = NpySource::open(p, labels.map(|l| l[k].as_path()))?;
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

    /// Opens the files matching `images_pattern` (sorted by path) as shards, paired in order
    /// with those matching `labels_pattern`. A plain path (no `*?[`) is one shard.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use stoker::source::{save_npy, NpySource, Source};
    /// for k in 0..3 {
    ///     save_npy(dir.path().join(format!("img-{k}.npy")), "|u1", &[2, 1, 1], &[k, k]).unwrap();
    ///     save_npy(dir.path().join(format!("lab-{k}.npy")), "|u1", &[2], &[k, k]).unwrap();
    /// }
    /// let pat = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    /// let all = NpySource::glob(&pat("img-*.npy"), Some(&pat("lab-*.npy"))).unwrap();
    /// assert_eq!(all.get(5, &mut Vec::new()).unwrap().label, Some(2));
    /// ```
    pub fn glob(images_pattern: &str, labels_pattern: Option<&str>) -> Result<Concat<NpySource>> {
        let images = expand(images_pattern)?;
        let labels = labels_pattern.map(expand).transpose()?;
        if let (Some(l), Some(lp)) = (&labels, labels_pattern)
            && l.len() != images.len()
        {
            return Err(Error::usage(format!(
                "{images_pattern} matches {} files but {lp} matches {}",
                images.len(),
                l.len()
            )));
        }
        NpySource::shards(&images, labels.as_deref())
    }

    /// `[N, H, W, C]` (C = 1 for an `(N, H, W)` array).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("a.npy");
    /// stoker::source::save_npy(&p, "|u1", &[1, 2, 3, 3], &[0; 18]).unwrap();
    /// assert_eq!(stoker::source::NpySource::open(&p, None).unwrap().shape(), [1, 2, 3, 3]);
    /// ```
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Element type of the pixels: `"u8"` or `"f32"`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("a.npy");
    /// stoker::source::save_npy(&p, "|u1", &[1, 1, 1], &[0]).unwrap();
    /// assert_eq!(stoker::source::NpySource::open(&p, None).unwrap().dtype(), "u8");
    /// ```
    pub fn dtype(&self) -> &'static str {
        if self.f32 { "f32" } else { "u8" }
    }

    /// The labels, widened to `i64`, when a labels file was given.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let (p, l) = (dir.path().join("a.npy"), dir.path().join("l.npy"));
    /// stoker::source::save_npy(&p, "|u1", &[2, 1, 1], &[0, 0]).unwrap();
    /// stoker::source::save_npy(&l, "<i4", &[2], &[3, 0, 0, 0, 255, 255, 255, 255]).unwrap();
    /// let src = stoker::source::NpySource::open(&p, Some(&l)).unwrap();
    /// assert_eq!(src.labels(), Some(&[3, -1][..]));
    /// ```
    pub fn labels(&self) -> Option<&[i64]> {
        self.labels.as_ref().map(|l| &l.values[..])
    }

    /// `"144x256x3 u8"`: H×W×C and dtype.
    fn kind_str(&self) -> String {
        let [_, h, w, c] = self.shape;
        format!("{h}x{w}x{c} {}", self.dtype())
    }
}

impl Source for NpySource {
    fn len(&self) -> usize {
        self.shape[0]
    }

    fn get<'a>(&'a self, index: usize, _buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        let oob = || {
            Error::usage(format!("index out of range (len {})", self.shape[0]))
                .at(index)
                .file(&self.path)
        };
        if index >= self.shape[0] {
            return Err(oob());
        }
        // In range: `open` checked that offset + N * sample_bytes fits in the map.
        let start = self.data_offset + index * self.sample_bytes;
        let bytes = self
            .map
            .get(start..start + self.sample_bytes)
            .ok_or_else(oob)?;
        let pixels = if self.f32 {
            // SAFETY: every bit pattern is a valid f32, and `align_to` only yields the
            // middle part at f32 alignment. The map is page-aligned and `open` checked that
            // the data offset is a multiple of 4, so prefix and suffix are empty.
            let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
            if !pre.is_empty() || !post.is_empty() {
                return Err(Error::format(&self.path, "f32 data is not 4-byte aligned").at(index));
            }
            Pixels::F32(mid)
        } else {
            Pixels::U8(bytes)
        };
        let [_, h, w, c] = self.shape;
        let view = ImageView::new(w, h, c, pixels).ok_or_else(oob)?;
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

    /// Row `index` of the labels file.
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        let l = self.labels.as_ref()?;
        (index < l.values.len()).then(|| LabelSite::Row {
            file: l.file.clone(),
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
            "npy: {} samples of {} ({})",
            self.shape[0],
            self.kind_str(),
            name.to_string_lossy()
        )
    }

    fn access(&self) -> Access {
        Access::fast("memory-mapped, zero copy")
    }
}

#[cfg(test)]
mod tests {
    use super::super::header::MAGIC;
    use super::*;
    use crate::ErrorKind;
    use crate::source::{save_npy, write_npy};

    fn u8_px(item: &Item<'_>) -> Vec<u8> {
        match item.raw {
            Raw::Pixels(ImageView {
                pixels: Pixels::U8(p),
                ..
            }) => p.to_vec(),
            _ => panic!("expected u8 pixels"),
        }
    }

    /// A hand-made npy file: any version, any header text, any data.
    fn raw_npy(version: (u8, u8), header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([version.0, version.1]);
        if version.0 == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    fn open_err(dir: &Path, name: &str, bytes: &[u8]) -> Error {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = NpySource::open(&p, None).unwrap_err();
        assert_eq!(e.path(), Some(p.as_path()), "{e}");
        assert!(e.to_string().contains(name), "{e}");
        e
    }

    #[test]
    fn u8_nhwc_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("images-000.npy");
        let data: Vec<u8> = (0..4 * 3 * 5 * 3).map(|v| (v * 7 % 251) as u8).collect();
        save_npy(&p, "|u1", &[4, 3, 5, 3], &data).unwrap();
        let s = NpySource::open(&p, None).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s.size(), Some((5, 3)));
        assert_eq!(s.channels(), Some(3));
        assert!(!s.has_labels());
        assert_eq!(s.path(2), Some(p.as_path()));
        assert_eq!(s.describe(), "npy: 4 samples of 3x5x3 u8 (images-000.npy)");
        let mut buf = Vec::new();
        for i in 0..4 {
            let item = s.get(i, &mut buf).unwrap();
            assert_eq!(item.label, None);
            assert_eq!(u8_px(&item), &data[i * 45..(i + 1) * 45]);
            let Raw::Pixels(v) = item.raw else { panic!() };
            assert_eq!((v.width, v.height, v.channels), (5, 3, 3));
        }
        // Zero copy: the pixels point into the map.
        let Raw::Pixels(v) = s.get(1, &mut buf).unwrap().raw else {
            panic!()
        };
        let Pixels::U8(px) = v.pixels else { panic!() };
        let map = s.map.as_ptr_range();
        assert!(map.contains(&px.as_ptr()));
        let e = s.get(4, &mut buf).unwrap_err();
        assert_eq!(e.index(), Some(4));
        assert_eq!(e.path(), Some(p.as_path()));
    }

    #[test]
    fn u8_gray_nhw_and_dtype_spellings() {
        let dir = tempfile::tempdir().unwrap();
        for descr in ["|u1", "u1", "<u1", "B"] {
            let p = dir.path().join("g.npy");
            save_npy(
                &p,
                "|u1",
                &[2, 2, 3],
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            )
            .unwrap();
            // Rewrite the descr in place (same length keeps the header valid).
            let mut b = std::fs::read(&p).unwrap();
            let text = String::from_utf8_lossy(&b[10..64])
                .replace("'|u1'", &format!("{:<5}", format!("'{descr}'")));
            b[10..64].copy_from_slice(text.as_bytes());
            std::fs::write(&p, &b).unwrap();
            let s = NpySource::open(&p, None).unwrap();
            assert_eq!(s.shape(), [2, 2, 3, 1], "{descr}");
            assert_eq!(s.dtype(), "u8");
            assert_eq!(
                u8_px(&s.get(1, &mut Vec::new()).unwrap()),
                [7, 8, 9, 10, 11, 12]
            );
        }
    }

    #[test]
    fn f32_exact_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.npy");
        let vals: Vec<f32> = (0..2 * 2 * 2 * 3).map(|v| v as f32 * 0.5 - 3.0).collect();
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        save_npy(&p, "<f4", &[2, 2, 2, 3], &bytes).unwrap();
        let s = NpySource::open(&p, None).unwrap();
        assert_eq!(s.dtype(), "f32");
        assert!(s.describe().contains("2x2x3 f32"));
        let mut buf = Vec::new();
        let item = s.get(1, &mut buf).unwrap();
        let Raw::Pixels(ImageView {
            pixels: Pixels::F32(px),
            ..
        }) = item.raw
        else {
            panic!()
        };
        assert_eq!(px, &vals[12..24]);
        if cfg!(target_endian = "little") {
            // `=f4` and a bare `f4` are native order: accepted on little-endian hosts.
            for d in ["=f4", "f4"] {
                let h = format!("{{'descr': '{d}', 'fortran_order': False, 'shape': (1, 1, 1), }}");
                let h = format!("{h:<117}\n"); // 10 + 118 = 128
                let q = dir.path().join("n.npy");
                std::fs::write(&q, raw_npy((1, 0), &h, &2.5f32.to_le_bytes())).unwrap();
                let s = NpySource::open(&q, None).unwrap();
                let mut buf = Vec::new();
                let it = s.get(0, &mut buf).unwrap();
                assert!(
                    matches!(it.raw, Raw::Pixels(ImageView { pixels: Pixels::F32([v]), .. }) if *v == 2.5),
                    "{d}"
                );
            }
        }
    }

    #[test]
    fn header_versions_and_spacing() {
        let dir = tempfile::tempdir().unwrap();
        let headers = [
            (
                (1, 0),
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 2), }",
            ),
            (
                (2, 0),
                "{'shape':(2,1,2),'fortran_order':False,'descr':'|u1'}",
            ),
            (
                (3, 0),
                "{  \"descr\" :  \"|u1\" ,\n 'shape' : ( 2 , 1 , 2 , ) ,'fortran_order':False,}   \n",
            ),
            (
                (1, 0),
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 1L, 2L), 'extra': [1, (2,)]}",
            ),
        ];
        for (k, (ver, h)) in headers.iter().enumerate() {
            let p = dir.path().join(format!("h{k}.npy"));
            std::fs::write(&p, raw_npy(*ver, h, &[1, 2, 3, 4])).unwrap();
            let s = NpySource::open(&p, None).unwrap_or_else(|e| panic!("{h}: {e}"));
            assert_eq!(s.shape(), [2, 1, 2, 1], "{h}");
            assert_eq!(u8_px(&s.get(1, &mut Vec::new()).unwrap()), [3, 4], "{h}");
        }
    }

    fn label_bytes(descr: &str, vals: &[i64]) -> Vec<u8> {
        vals.iter()
            .flat_map(|&v| match descr {
                "|u1" => vec![v as u8],
                "|i1" => vec![v as i8 as u8],
                "<u2" => (v as u16).to_le_bytes().to_vec(),
                "<i2" => (v as i16).to_le_bytes().to_vec(),
                "<u4" => (v as u32).to_le_bytes().to_vec(),
                "<i4" => (v as i32).to_le_bytes().to_vec(),
                "<u8" => (v as u64).to_le_bytes().to_vec(),
                "<i8" => v.to_le_bytes().to_vec(),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn all_label_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("x.npy");
        save_npy(&img, "|u1", &[3, 1, 1], &[0, 0, 0]).unwrap();
        let cases: [(&str, [i64; 3]); 8] = [
            ("|u1", [0, 7, 255]),
            ("|i1", [-128, 0, 127]),
            ("<u2", [0, 9, 65535]),
            ("<i2", [-300, 1, 300]),
            ("<u4", [0, 1, 4_000_000_000]),
            ("<i4", [-5, 0, 2_000_000_000]),
            ("<u8", [0, 1, i64::MAX]),
            ("<i8", [i64::MIN, -1, 1 << 40]),
        ];
        let mut buf = Vec::new();
        for (descr, vals) in cases {
            let lab = dir.path().join("y.npy");
            save_npy(&lab, descr, &[3], &label_bytes(descr, &vals)).unwrap();
            let s = NpySource::open(&img, Some(&lab)).unwrap();
            assert!(s.has_labels());
            assert_eq!(s.labels(), Some(&vals[..]), "{descr}");
            assert_eq!(s.get(2, &mut buf).unwrap().label, Some(vals[2]), "{descr}");
        }
        // (N, 1) is accepted too.
        let lab = dir.path().join("col.npy");
        save_npy(&lab, "<i8", &[3, 1], &label_bytes("<i8", &[4, 5, 6])).unwrap();
        assert_eq!(
            NpySource::open(&img, Some(&lab)).unwrap().labels(),
            Some(&[4, 5, 6][..])
        );
    }

    #[test]
    fn label_errors() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("imgs.npy");
        save_npy(&img, "|u1", &[3, 1, 1], &[0, 0, 0]).unwrap();
        let lab = dir.path().join("labs.npy");
        let check = |descr: &str, shape: &[usize], data: &[u8], needle: &str| {
            save_npy(&lab, descr, shape, data).unwrap();
            let e = NpySource::open(&img, Some(&lab)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Format, "{e}");
            assert_eq!(e.path(), Some(lab.as_path()));
            assert!(e.to_string().contains(needle), "{e}");
        };
        // Wrong count names both files and both counts.
        check("|u1", &[2], &[1, 2], "2 labels but");
        save_npy(&lab, "|u1", &[2], &[1, 2]).unwrap();
        let e = NpySource::open(&img, Some(&lab)).unwrap_err().to_string();
        assert!(
            e.contains("labs.npy") && e.contains("imgs.npy") && e.contains("3 images"),
            "{e}"
        );
        check("<f4", &[3], &[0; 12], "label dtype <f4 is not supported");
        check(">i4", &[3], &[0; 12], "label dtype >i4");
        check("|u1", &[3, 2], &[0; 6], "labels must be 1-D");
        check("<u8", &[3], &[255; 24], "does not fit in i64");
        // Missing labels file: Io naming it.
        let e = NpySource::open(&img, Some(&dir.path().join("nope.npy"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("nope.npy"));
    }

    #[test]
    fn format_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hdr = |descr: &str, fortran: &str, shape: &str| {
            let h =
                format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
            format!("{h:<117}\n") // 10 + 118 = 128
        };
        let ok = hdr("|u1", "False", "(2, 2, 2, 3)");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty.npy", vec![], "empty file (0 bytes)"),
            (
                "magic.npy",
                b"PK\x03\x04 not numpy at all".to_vec(),
                "not an npy file",
            ),
            ("short.npy", b"\x93NUM".to_vec(), "truncated header"),
            (
                "short2.npy",
                b"\x93NUMPY\x01\x00\x50".to_vec(),
                "truncated header",
            ),
            (
                "hdr.npy",
                raw_npy((1, 0), &ok, &[])[..60].to_vec(),
                "truncated header",
            ),
            (
                "ver.npy",
                raw_npy((4, 0), &ok, &[0; 24]),
                "unsupported npy version 4.0",
            ),
            (
                "f8.npy",
                raw_npy((1, 0), &hdr("<f8", "False", "(1, 1, 1)"), &[0; 8]),
                "dtype <f8 is not supported for images (supported: |u1, <f4)",
            ),
            (
                "big.npy",
                raw_npy((1, 0), &hdr(">f4", "False", "(1, 1, 1)"), &[0; 4]),
                "big-endian dtype >f4",
            ),
            (
                "struct.npy",
                raw_npy(
                    (1, 0),
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 1, 1)}",
                    &[0; 4],
                ),
                "dtype structured is not supported",
            ),
            (
                "fortran.npy",
                raw_npy((1, 0), &hdr("|u1", "True", "(2, 2, 2, 3)"), &[0; 24]),
                "fortran-order arrays are not supported; save with numpy.ascontiguousarray",
            ),
            (
                "rank2.npy",
                raw_npy((1, 0), &hdr("|u1", "False", "(2, 3)"), &[0; 6]),
                "expected shape (N, H, W, C) or (N, H, W), found (2, 3)",
            ),
            (
                "rank5.npy",
                raw_npy((1, 0), &hdr("|u1", "False", "(1, 1, 1, 1, 1)"), &[0; 1]),
                "expected shape",
            ),
            (
                "c4.npy",
                raw_npy((1, 0), &hdr("|u1", "False", "(1, 1, 1, 4)"), &[0; 4]),
                "1 or 3 channels, found 4",
            ),
            (
                "zero.npy",
                raw_npy((1, 0), &hdr("|u1", "False", "(1, 0, 1)"), &[]),
                "zero size",
            ),
            (
                "trunc.npy",
                raw_npy((1, 0), &ok, &[0; 20]),
                "truncated: expected 24 bytes of data, found 20",
            ),
            (
                "huge.npy",
                raw_npy(
                    (1, 0),
                    &hdr("|u1", "False", "(99999999999, 99999999999, 99999999999)"),
                    &[0; 4],
                ),
                "too large",
            ),
            (
                "align.npy",
                raw_npy(
                    (1, 0),
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1)}",
                    &[0; 4],
                ),
                "not a multiple of 4",
            ),
            ("nodict.npy", raw_npy((1, 0), "[1, 2]", &[]), "bad header"),
            (
                "noshape.npy",
                raw_npy((1, 0), "{'descr': '|u1', 'fortran_order': False}", &[]),
                "no 'shape'",
            ),
            (
                "badshape.npy",
                raw_npy(
                    (1, 0),
                    "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 'a')}",
                    &[],
                ),
                "tuple of integers",
            ),
            (
                "junk.npy",
                raw_npy(
                    (1, 0),
                    "{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1)} x",
                    &[0],
                ),
                "after the closing",
            ),
            (
                "unterm.npy",
                raw_npy((1, 0), "{'descr': '|u1", &[]),
                "unterminated",
            ),
            (
                "deep.npy",
                raw_npy((1, 0), &format!("{{'shape': {}", "(".repeat(10_000)), &[]),
                "nested too deeply",
            ),
            (
                "utf8.npy",
                raw_npy((3, 0), "{'descr': '\u{1}'}", &[])
                    .iter()
                    .map(|&b| if b == 1 { 0xff } else { b })
                    .collect(),
                "not utf-8",
            ),
        ];
        for (name, bytes, needle) in cases {
            let e = open_err(d, name, &bytes);
            assert_eq!(e.kind(), ErrorKind::Format, "{name}: {e}");
            assert!(e.message().contains(needle), "{name}: {e}");
        }
        // Missing file: Io naming it.
        let p = d.join("missing.npy");
        let e = NpySource::open(&p, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.path(), Some(p.as_path()));
        // A directory: a clear error, not an mmap failure.
        let e = NpySource::open(d, None).unwrap_err();
        assert!(e.message().contains("not a regular file"), "{e}");
    }

    #[test]
    fn header_fuzz_never_panics() {
        // Every prefix and many single-byte corruptions of a valid file: `open` gives an error
        // or a source whose every row reads in bounds with the right length, never a panic.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fuzz.npy");
        let mut good = Vec::new();
        write_npy(&mut good, "<f4", &[2, 1, 2, 3], &[0; 48]).unwrap();
        let (mut ok, mut failed) = (0, 0);
        let mut try_bytes = |b: &[u8]| {
            std::fs::write(&p, b).unwrap();
            match NpySource::open(&p, None) {
                Ok(s) => {
                    let mut buf = Vec::new();
                    for i in 0..s.len() {
                        let Raw::Pixels(v) = s.get(i, &mut buf).unwrap().raw else {
                            panic!()
                        };
                        let n = match v.pixels {
                            Pixels::U8(px) => px.len(),
                            Pixels::F32(px) => px.len(),
                        };
                        assert_eq!(n, v.width * v.height * v.channels);
                    }
                    assert!(s.get(s.len(), &mut buf).is_err());
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(e.path(), Some(p.as_path()));
                    failed += 1;
                }
            }
        };
        for n in 0..good.len() {
            try_bytes(&good[..n]);
        }
        for i in 0..64 {
            for v in [
                0u8, b' ', b'(', b')', b'\'', b'{', b'}', b',', b'1', b'9', 0xff,
            ] {
                let mut b = good.clone();
                b[i] = v;
                try_bytes(&b);
            }
        }
        try_bytes(&good);
        // The intact file and harmless edits open; truncations and most edits fail.
        assert!(ok >= 10, "{ok}");
        assert!(failed >= good.len(), "{failed}");
    }

    fn err<T>(r: Result<T>) -> Error {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    fn write_shards(dir: &Path, counts: &[usize]) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let mut imgs = Vec::new();
        let mut labs = Vec::new();
        let mut next = 0u8;
        for (k, &n) in counts.iter().enumerate() {
            let px: Vec<u8> = (0..n * 2).map(|j| next + (j / 2) as u8).collect();
            let lab: Vec<u8> = (0..n)
                .flat_map(|j| (100 + i32::from(next) + j as i32).to_le_bytes())
                .collect();
            let (ip, lp) = (
                dir.join(format!("img-{k:03}.npy")),
                dir.join(format!("lab-{k:03}.npy")),
            );
            save_npy(&ip, "|u1", &[n, 1, 2], &px).unwrap();
            save_npy(&lp, "<i4", &[n], &lab).unwrap();
            imgs.push(ip);
            labs.push(lp);
            next += n as u8;
        }
        (imgs, labs)
    }

    fn check_global(all: &Concat<NpySource>, imgs: &[PathBuf]) {
        assert_eq!(all.len(), 9);
        assert_eq!(all.size(), Some((2, 1)));
        assert_eq!(all.channels(), Some(1));
        assert!(all.has_labels());
        let mut buf = Vec::new();
        for i in 0..9 {
            let item = all.get(i, &mut buf).unwrap();
            assert_eq!(u8_px(&item), [i as u8; 2], "row {i}");
            assert_eq!(item.label, Some(100 + i as i64));
        }
        assert_eq!(all.path(0), Some(imgs[0].as_path()));
        assert_eq!(all.path(5), Some(imgs[1].as_path()));
        assert_eq!(all.path(8), Some(imgs[2].as_path()));
        assert_eq!(all.locate(5), Some((1, 2)));
    }

    #[test]
    fn shards_and_glob() {
        let dir = tempfile::tempdir().unwrap();
        let (imgs, labs) = write_shards(dir.path(), &[3, 4, 2]);
        let all = NpySource::shards(&imgs, Some(&labs)).unwrap();
        check_global(&all, &imgs);
        let pat = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
        let all = NpySource::glob(&pat("img-*.npy"), Some(&pat("lab-???.npy"))).unwrap();
        check_global(&all, &imgs);
        // A plain path is one shard.
        let one = NpySource::glob(imgs[1].to_str().unwrap(), None).unwrap();
        assert_eq!(one.len(), 4);
        assert!(!one.has_labels());
        assert!(one.describe().contains("img-001.npy"), "{}", one.describe());
    }

    #[test]
    fn shard_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (mut imgs, labs) = write_shards(dir.path(), &[2, 2]);
        let pat = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
        // Pattern that matches nothing names the pattern.
        let e = err(NpySource::glob(&pat("nothing-*.npy"), None));
        assert!(e.to_string().contains("nothing-*.npy"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Io);
        // A plain path that does not exist: Io naming the file.
        let e = err(NpySource::glob(&pat("gone.npy"), None));
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("gone.npy"), "{e}");
        // Label file count differs.
        let e = err(NpySource::glob(
            &pat("img-*.npy"),
            Some(&pat("lab-000.npy")),
        ));
        assert!(e.to_string().contains("matches 2 files"), "{e}");
        let e = err(NpySource::shards(&imgs, Some(&labs[..1])));
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(NpySource::shards(&[], None).is_err());
        // A shard with another shape or dtype is named.
        let odd = dir.path().join("img-odd.npy");
        save_npy(&odd, "|u1", &[2, 2, 1], &[0; 4]).unwrap();
        imgs.push(odd.clone());
        let e = err(NpySource::shards(&imgs, None));
        assert_eq!(e.path(), Some(odd.as_path()));
        assert!(e.message().contains("2x1x1 u8, unlike 1x2x1 u8"), "{e}");
        save_npy(&odd, "<f4", &[2, 1, 2], &[0; 16]).unwrap();
        let e = err(NpySource::shards(&imgs, None));
        assert!(e.message().contains("1x2x1 f32"), "{e}");
        // A broken shard inside a glob: its own error, naming it.
        std::fs::write(&odd, b"nope").unwrap();
        let e = err(NpySource::glob(&pat("img-*.npy"), None));
        assert_eq!(e.path(), Some(odd.as_path()));
        // Errors from `get` through Concat carry the global index.
        let all = NpySource::shards(&imgs[..2], None).unwrap();
        assert_eq!(all.get(7, &mut Vec::new()).unwrap_err().index(), Some(7));
    }
}
