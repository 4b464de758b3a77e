//! NPY source, memory-mapped: `(N, H, W, C)` or `(N, H, W)` arrays of `u8` or `f32`,
//! with optional 1-D integer labels, one file or many shards.
//!
//! The header parser is our own (versions 1.0, 2.0 and 3.0); pixels are borrowed straight
//! from the memory map, so `get` copies nothing.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{expand, Access, Concat, Item, Raw, Source};
use crate::{Error, ImageView, Pixels, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Deepest nesting of tuples/lists accepted in a header (guards the parser's stack).
const MAX_DEPTH: usize = 16;

/// Element types this module knows (images use `U1` and `F4`; labels the integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    U1,
    I1,
    U2,
    I2,
    U4,
    I4,
    U8,
    I8,
    F4,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::U1 | Elem::I1 => 1,
            Elem::U2 | Elem::I2 => 2,
            Elem::U4 | Elem::I4 | Elem::F4 => 4,
            Elem::U8 | Elem::I8 => 8,
        }
    }

    /// Parses a numpy `descr` such as `"|u1"` or `"<f4"`. Multi-byte types must be
    /// little-endian (`<`, or `=` / no prefix on a little-endian host): data is read in place.
    fn parse(descr: &str) -> Option<Elem> {
        let (order, rest) = match descr.as_bytes().first() {
            Some(b'<' | b'>' | b'|' | b'=') => (descr.as_bytes()[0], &descr[1..]),
            _ => (b'=', descr),
        };
        let elem = match rest {
            "u1" | "B" => Elem::U1,
            "i1" | "b" => Elem::I1,
            "u2" => Elem::U2,
            "i2" => Elem::I2,
            "u4" => Elem::U4,
            "i4" => Elem::I4,
            "u8" => Elem::U8,
            "i8" => Elem::I8,
            "f4" => Elem::F4,
            _ => return None,
        };
        let ok = elem.size() == 1
            || order == b'<' && cfg!(target_endian = "little")
            || order == b'=' && cfg!(target_endian = "little");
        ok.then_some(elem)
    }
}

/// A parsed NPY header.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
    /// Byte offset of the data from the start of the file.
    data_offset: usize,
}

/// A Python literal as found in an NPY header.
#[derive(Debug)]
enum PyVal {
    Str(String),
    Bool(bool),
    Int(u64),
    None,
    Seq(Vec<PyVal>),
    Dict,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "bad header: expected '{}' at byte {}",
                c as char, self.pos
            ))
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyVal, String> {
        if depth > MAX_DEPTH {
            return Err("bad header: nested too deeply".into());
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos] != q {
                    self.pos += if self.s[self.pos] == b'\\' { 2 } else { 1 };
                }
                if self.pos >= self.s.len() {
                    return Err("bad header: unterminated string".into());
                }
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.pos += 1;
                Ok(PyVal::Str(text))
            }
            Some(open @ (b'(' | b'[' | b'{')) => {
                let close = match open {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    if open == b'{' {
                        self.expect(b':')?;
                        self.value(depth + 1)?;
                    }
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {}
                        _ => return Err(format!("bad header: expected ',' at byte {}", self.pos)),
                    }
                }
                Ok(if open == b'{' {
                    PyVal::Dict
                } else {
                    PyVal::Seq(items)
                })
            }
            Some(c) if c.is_ascii_digit() => {
                let mut n: u64 = 0;
                while let Some(&d) = self.s.get(self.pos).filter(|d| d.is_ascii_digit()) {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(d - b'0')))
                        .ok_or("bad header: number too large")?;
                    self.pos += 1;
                }
                // Python 2 long suffix, as in old headers: `(10L, 3L)`.
                if matches!(self.s.get(self.pos), Some(b'L' | b'l')) {
                    self.pos += 1;
                }
                Ok(PyVal::Int(n))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(PyVal::Bool(true)),
                    b"False" => Ok(PyVal::Bool(false)),
                    b"None" => Ok(PyVal::None),
                    w => Err(format!(
                        "bad header: unexpected word '{}'",
                        String::from_utf8_lossy(w)
                    )),
                }
            }
            Some(_) => Err(format!(
                "bad header: unexpected character at byte {}",
                self.pos
            )),
            None => Err("bad header: unexpected end".into()),
        }
    }

    /// The top-level dict, as (key, value) pairs.
    fn dict(&mut self) -> Result<Vec<(String, PyVal)>, String> {
        self.expect(b'{')?;
        let mut out = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = match self.value(1)? {
                PyVal::Str(k) => k,
                _ => return Err("bad header: dict keys must be strings".into()),
            };
            self.expect(b':')?;
            let v = self.value(1)?;
            out.push((key, v));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(format!("bad header: expected ',' at byte {}", self.pos)),
            }
        }
        if self.peek().is_some() {
            return Err("bad header: text after the closing '}'".into());
        }
        Ok(out)
    }
}

/// Parses the preamble and header dict at the start of `bytes` (the whole file or more).
fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return Err("not an npy file".into());
    }
    if bytes.len() < 8 {
        return Err("truncated header".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => {
            return Err(format!(
                "unsupported npy version {major}.{minor} (supported: 1.0, 2.0, 3.0)"
            ))
        }
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Err("truncated header".into());
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format!(
                "truncated header: expected {header_len} bytes of header, found {}",
                bytes.len() - start
            )
        })?;
    let text = &bytes[start..end];
    if utf8 && std::str::from_utf8(text).is_err() {
        return Err("bad header: not utf-8".into());
    }
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, v) in (Parser { s: text, pos: 0 }).dict()? {
        match (key.as_str(), v) {
            ("descr", PyVal::Str(d)) => descr = Some(d),
            // A list here is a structured dtype: report it as an unsupported dtype.
            ("descr", PyVal::Seq(_)) => descr = Some("structured".into()),
            ("fortran_order", PyVal::Bool(b)) => fortran_order = Some(b),
            ("shape", PyVal::Seq(items)) => {
                let dims = items
                    .iter()
                    .map(|d| match d {
                        PyVal::Int(n) => usize::try_from(*n).ok(),
                        _ => None,
                    })
                    .collect::<Option<Vec<usize>>>()
                    .ok_or("bad header: shape must be a tuple of integers")?;
                shape = Some(dims);
            }
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(format!("bad header: '{key}' has the wrong type"))
            }
            _ => {}
        }
    }
    Ok(Header {
        descr: descr.ok_or("bad header: no 'descr'")?,
        fortran_order: fortran_order.ok_or("bad header: no 'fortran_order'")?,
        shape: shape.ok_or("bad header: no 'shape'")?,
        data_offset: end,
    })
}

fn shape_str(shape: &[usize]) -> String {
    let mut s = String::from("(");
    for (k, d) in shape.iter().enumerate() {
        let _ = write!(s, "{}{d}", if k > 0 { ", " } else { "" });
    }
    if shape.len() == 1 {
        s.push(',');
    }
    s.push(')');
    s
}

/// Checks that the data after the header holds `count` elements of `elem`; returns its byte length.
fn data_len(h: &Header, file_len: usize, elem: Elem) -> Result<usize, String> {
    let need = h
        .shape
        .iter()
        .try_fold(elem.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {} is too large", shape_str(&h.shape)))?;
    let found = file_len - h.data_offset;
    if found < need {
        return Err(format!(
            "truncated: expected {need} bytes of data, found {found}"
        ));
    }
    Ok(need)
}

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
    let h = parse_header(&bytes).map_err(|m| Error::format(path, m))?;
    let elem = Elem::parse(&h.descr).filter(|&e| e != Elem::F4).ok_or_else(|| {
        Error::format(
            path,
            format!(
                "label dtype {} is not supported (supported: |i1, |u1, <i2, <u2, <i4, <u4, <i8, <u8)",
                h.descr
            ),
        )
    })?;
    // For one dimension (or a trailing 1) Fortran and C order are the same layout.
    let n = match h.shape[..] {
        [n] | [n, 1] => n,
        _ => {
            return Err(Error::format(
                path,
                format!("labels must be 1-D, found shape {}", shape_str(&h.shape)),
            ))
        }
    };
    let need = data_len(&h, bytes.len(), elem).map_err(|m| Error::format(path, m))?;
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
                    i64::try_from(u).map_err(|_| {
                        Error::format(path, format!("label {u} at row {row} does not fit in i64"))
                    })?
                }
            }
            Elem::F4 => unreachable!("filtered above"),
        };
        out.push(v);
    }
    Ok(out)
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
    labels: Option<Vec<i64>>,
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
        let fmt = |m: String| Error::format(path, m);
        let h = parse_header(&map).map_err(fmt)?;
        let elem = match Elem::parse(&h.descr) {
            Some(e @ (Elem::U1 | Elem::F4)) => e,
            _ => {
                let big = if h.descr.starts_with('>') {
                    "big-endian "
                } else {
                    ""
                };
                return Err(fmt(format!(
                    "{big}dtype {} is not supported for images (supported: |u1, <f4)",
                    h.descr
                )));
            }
        };
        if h.fortran_order {
            return Err(fmt(
                "fortran-order arrays are not supported; save with numpy.ascontiguousarray".into(),
            ));
        }
        let shape = match h.shape[..] {
            [n, hh, w, c @ (1 | 3)] => [n, hh, w, c],
            [n, hh, w] => [n, hh, w, 1],
            [_, _, _, c] => {
                return Err(fmt(format!(
                    "images must have 1 or 3 channels, found {c} (shape {})",
                    shape_str(&h.shape)
                )))
            }
            _ => {
                return Err(fmt(format!(
                    "expected shape (N, H, W, C) or (N, H, W), found {}",
                    shape_str(&h.shape)
                )))
            }
        };
        if shape[1] == 0 || shape[2] == 0 {
            return Err(fmt(format!(
                "images have zero size (shape {})",
                shape_str(&h.shape)
            )));
        }
        data_len(&h, map.len(), elem).map_err(fmt)?;
        if elem == Elem::F4 && h.data_offset % 4 != 0 {
            return Err(fmt(format!(
                "f32 data starts at byte {}, not a multiple of 4; re-save with numpy.save",
                h.data_offset
            )));
        }
        let sample_bytes = shape[1] * shape[2] * shape[3] * elem.size();
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
                Some(l)
            }
        };
        Ok(NpySource {
            path: path.to_path_buf(),
            map,
            f32: elem == Elem::F4,
            shape,
            data_offset: h.data_offset,
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
        if let Some(l) = labels {
            if l.len() != images.len() {
                return Err(Error::usage(format!(
                    "{} image files but {} label files",
                    images.len(),
                    l.len()
                )));
            }
        }
        let mut out: Vec<NpySource> = Vec::with_capacity(images.len());
        for (k, p) in images.iter().enumerate() {
            let s = NpySource::open(p, labels.map(|l| l[k].as_path()))?;
            if let Some(first) = out.first() {
                if s.shape[1..] != first.shape[1..] || s.f32 != first.f32 {
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
        if let (Some(l), Some(lp)) = (&labels, labels_pattern) {
            if l.len() != images.len() {
                return Err(Error::usage(format!(
                    "{images_pattern} matches {} files but {lp} matches {}",
                    images.len(),
                    l.len()
                )));
            }
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
        if self.f32 {
            "f32"
        } else {
            "u8"
        }
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
        self.labels.as_deref()
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
            label: self.labels.as_ref().map(|l| l[index]),
        })
    }

    fn path(&self, _index: usize) -> Option<&Path> {
        Some(&self.path)
    }

    fn has_labels(&self) -> bool {
        self.labels.is_some()
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

/// The NPY format for [`open`](super::open): `.npy` files (by extension or the `\x93NUMPY`
/// magic); in a directory, the files named `images*.npy`. Labels pair by name.
pub(crate) struct NpyFormat;

/// The one [`NpyFormat`] value, listed in [`FORMATS`](super::FORMATS).
pub(crate) static NPY: NpyFormat = NpyFormat;

/// The labels file that goes with images file `path` by name, if it exists:
/// `images-000.npy` → `labels-000.npy`, `x_train.npy` → `y_train.npy` (`X` → `y`).
fn paired_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("images") {
        return Some(format!("labels{rest}"));
    }
    let mut chars = name.chars();
    let first = chars.next()?;
    let rest = chars.as_str();
    ((first == 'x' || first == 'X') && rest.starts_with(['_', '-', '.']))
        .then(|| format!("y{rest}"))
}

fn paired_labels(images: &[PathBuf]) -> Result<Option<Vec<PathBuf>>> {
    let pairs: Vec<Option<PathBuf>> = images
        .iter()
        .map(|p| {
            let name = p.file_name()?.to_str()?;
            let l = p.with_file_name(paired_name(name)?);
            l.is_file().then_some(l)
        })
        .collect();
    match pairs.iter().position(|p| p.is_none()) {
        None => Ok(Some(pairs.into_iter().flatten().collect())),
        Some(_) if pairs.iter().all(|p| p.is_none()) => Ok(None),
        Some(k) => Err(Error::format(
            &images[k],
            format!(
                "no labels file beside it, unlike {} of {} image files (give the labels explicitly)",
                pairs.iter().filter(|p| p.is_some()).count(),
                images.len()
            ),
        )),
    }
}

impl super::Format for NpyFormat {
    fn name(&self) -> &'static str {
        "npy"
    }

    fn recognises(&self, path: &Path, head: &[u8]) -> bool {
        head.starts_with(MAGIC) || super::open::has_ext(path, &["npy"])
    }

    fn find(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        let files = super::open::files_in(dir, |n| {
            n.starts_with("images") && n.to_ascii_lowercase().ends_with(".npy")
        })?;
        Ok((!files.is_empty()).then_some(files))
    }

    fn open(&self, files: &[PathBuf], opts: &super::OpenOptions) -> Result<Box<dyn Source>> {
        let labels = match opts.labels_override() {
            Some(pattern) => {
                let l = expand(pattern)?;
                if l.len() != files.len() {
                    return Err(Error::usage(format!(
                        "{} image files but the labels {pattern} are {} files",
                        files.len(),
                        l.len()
                    )));
                }
                Some(l)
            }
            None => paired_labels(files)?,
        };
        Ok(Box::new(NpySource::shards(files, labels.as_deref())?))
    }

    fn open_index(
        &self,
        index: &super::Index,
        shards: &[PathBuf],
        dir: &Path,
        opts: &super::OpenOptions,
    ) -> Result<Box<dyn Source>> {
        if opts.labels_override().is_some() || index.labels.is_empty() {
            return self.open(shards, opts);
        }
        let labels: Vec<PathBuf> = index.labels.iter().map(|l| dir.join(l)).collect();
        Ok(Box::new(NpySource::shards(shards, Some(&labels))?))
    }
}

/// Bytes per element of a `descr` like `"<f4"` or `"|u1"` (order char, kind letter, size).
fn descr_size(descr: &str) -> Option<usize> {
    let rest = descr.strip_prefix(['<', '>', '|', '=']).unwrap_or(descr);
    let mut chars = rest.chars();
    let kind = chars.next()?;
    let digits = chars.as_str();
    if !kind.is_ascii_alphabetic()
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}

/// Writes an NPY v1.0 array: `descr` such as `"|u1"` or `"<f4"`, C order, the header padded
/// with spaces so that the data starts at a multiple of 64 bytes (as numpy does).
/// `data` must hold exactly the shape's elements (else `InvalidInput`).
///
/// ```
/// let mut out = Vec::new();
/// stoker::source::write_npy(&mut out, "|u1", &[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
/// assert!(out.starts_with(b"\x93NUMPY\x01\x00"));
/// assert_eq!(out.len(), 128 + 6); // data starts at 128, like numpy
/// assert_eq!(&out[128..], &[1, 2, 3, 4, 5, 6]);
/// ```
pub fn write_npy<W: Write>(w: &mut W, descr: &str, shape: &[usize], data: &[u8]) -> io::Result<()> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let size =
        descr_size(descr).ok_or_else(|| invalid(format!("descr {descr:?} is not like \"<f4\"")))?;
    let need = shape
        .iter()
        .try_fold(size, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid("shape is too large".into()))?;
    if need != data.len() {
        return Err(invalid(format!(
            "shape {} of {descr} needs {need} bytes, data has {}",
            shape_str(shape),
            data.len()
        )));
    }
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_str(shape)
    );
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(64) - unpadded,
    ));
    header.push('\n');
    let len = u16::try_from(header.len()).map_err(|_| invalid("header is too long".into()))?;
    w.write_all(MAGIC)?;
    w.write_all(&[1, 0])?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    w.write_all(data)
}

/// [`write_npy`] to a new file at `path` (replaced if it exists).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("a.npy");
/// stoker::source::save_npy(&p, "<f4", &[1], &1.5f32.to_le_bytes()).unwrap();
/// assert_eq!(std::fs::metadata(&p).unwrap().len(), 128 + 4);
/// assert!(stoker::source::save_npy(&p, "<f4", &[2], &[0; 4]).is_err());
/// ```
pub fn save_npy(path: impl AsRef<Path>, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let err = |e: io::Error| {
        if e.kind() == io::ErrorKind::InvalidInput {
            Error::usage(e.to_string()).file(path).with_source(e)
        } else {
            Error::io(path, e)
        }
    };
    // Check the arguments before touching the file.
    write_npy(&mut io::sink(), descr, shape, data).map_err(err)?;
    let mut f = io::BufWriter::new(File::create(path).map_err(err)?);
    write_npy(&mut f, descr, shape, data).map_err(err)?;
    f.into_inner()
        .map_err(|e| err(e.into_error()))?
        .sync_all()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

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
            ((1, 0), "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 2), }"),
            ((2, 0), "{'shape':(2,1,2),'fortran_order':False,'descr':'|u1'}"),
            ((3, 0), "{  \"descr\" :  \"|u1\" ,\n 'shape' : ( 2 , 1 , 2 , ) ,'fortran_order':False,}   \n"),
            ((1, 0), "{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 1L, 2L), 'extra': [1, (2,)]}"),
        ];
        for (k, (ver, h)) in headers.iter().enumerate() {
            let p = dir.path().join(format!("h{k}.npy"));
            std::fs::write(&p, raw_npy(*ver, h, &[1, 2, 3, 4])).unwrap();
            let s = NpySource::open(&p, None).unwrap_or_else(|e| panic!("{h}: {e}"));
            assert_eq!(s.shape(), [2, 1, 2, 1], "{h}");
            assert_eq!(u8_px(&s.get(1, &mut Vec::new()).unwrap()), [3, 4], "{h}");
        }
    }

    #[test]
    fn writer_pads_to_64_and_round_trips_header() {
        for shape in [&[1usize][..], &[3, 2], &[1000, 144, 256, 3]] {
            let n: usize = shape.iter().product();
            let mut out = Vec::new();
            write_npy(&mut out, "|u1", shape, &vec![0; n]).unwrap();
            let h = parse_header(&out).unwrap();
            assert_eq!(h.data_offset % 64, 0);
            assert_eq!(h.shape, shape);
            assert_eq!(h.descr, "|u1");
            assert!(!h.fortran_order);
            assert_eq!(out[h.data_offset - 1], b'\n');
        }
        let e = write_npy(&mut Vec::new(), "|u1", &[2], &[0]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(write_npy(&mut Vec::new(), "float", &[1], &[0]).is_err());
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
