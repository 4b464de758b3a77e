//! Tar shards in the WebDataset layout, memory-mapped: `shard-000000.tar` holding members
//! `KEY.jpg` (or `.jpeg` / `.png`) and `KEY.cls` (the label as ASCII digits).
//!
//! A shard is indexed once at open by walking its 512-byte headers (ustar, GNU long names
//! (`L` entries) and pax `x` headers); no member is copied: [`get`](Source::get) returns the
//! encoded bytes as a slice of the map ([`Raw::Encoded`]). [`TarWriter`] writes shards that
//! `tar` and Python's `tarfile` (which `webdataset` reads through) read.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{expand, Access, Concat, Item, Raw, Source};
use crate::{Error, Result};

const BLOCK: usize = 512;
/// Image member extensions (lowercase), as WebDataset names them.
const IMAGE_EXTS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One sample of a shard: where its image bytes are in the map, and its label.
#[derive(Clone, Debug)]
struct Entry {
    key: String,
    start: usize,
    len: usize,
    label: Option<i64>,
}

/// One tar shard in the WebDataset layout, memory-mapped and indexed at open.
///
/// Members are grouped into samples as WebDataset groups them: the key is the member's path
/// up to the first `.` of its file name, the extension (lowercased) is the rest; consecutive
/// members with one key form one sample. Each sample needs exactly one image member (`jpg`,
/// `jpeg` or `png`); a `cls` member, when present, is its integer label (either every sample
/// has one or none does). Other members (`json`, `txt`, …) are ignored.
/// The file must not be modified or truncated while the source is open.
///
/// ```
/// use stoker::source::{Raw, Source, TarSource, TarWriter};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("shard-000000.tar");
/// let mut w = TarWriter::new(std::fs::File::create(&path).unwrap());
/// w.append_sample("a", "jpg", b"not really a jpeg", Some(3)).unwrap();
/// w.append_sample("b", "png", b"png bytes", Some(1)).unwrap();
/// w.finish().unwrap();
/// let src = TarSource::open(&path).unwrap();
/// assert_eq!((src.len(), src.has_labels()), (2, true));
/// let mut buf = Vec::new();
/// let item = src.get(1, &mut buf).unwrap();
/// assert!(matches!(item.raw, Raw::Encoded(b"png bytes")));
/// assert_eq!((item.label, src.key(1)), (Some(1), Some("b")));
/// ```
#[derive(Debug)]
pub struct TarSource {
    path: PathBuf,
    map: Option<Mmap>,
    entries: Vec<Entry>,
    labelled: bool,
}

/// A member as the header walk finds it.
struct Member {
    name: String,
    start: usize,
    len: usize,
}

/// NUL-terminated field as bytes.
fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A numeric header field: octal digits (space or NUL padded), or GNU base-256 when the top
/// bit of the first byte is set.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s = cstr(field);
    let s = s.iter().skip_while(|&&b| b == b' ').copied();
    let mut v: u64 = 0;
    let mut any = false;
    for b in s {
        match b {
            b'0'..=b'7' => {
                v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
                any = true;
            }
            b' ' => break,
            _ => return None,
        }
    }
    (any || field.iter().all(|&b| b == 0 || b == b' ')).then_some(v)
}

/// Whether the header's checksum field matches its bytes (unsigned or, as old tars wrote, signed).
fn checksum_ok(h: &[u8]) -> bool {
    let Some(stored) = number(&h[148..156]) else {
        return false;
    };
    let field = |i: usize| (148..156).contains(&i);
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| if field(i) { 32 } else { u64::from(b) })
        .sum();
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| if field(i) { 32 } else { i64::from(b as i8) })
        .sum();
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// The `path` and `size` records of a pax extended header.
fn parse_pax(data: &[u8]) -> Result<(Option<String>, Option<u64>), String> {
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("bad pax header: no record length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > sp + 1 && n <= rest.len())
            .ok_or("bad pax header: bad record length")?;
        let record = &rest[sp + 1..len];
        let record = record
            .strip_suffix(b"\n")
            .ok_or("bad pax header: record does not end in a newline")?;
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("bad pax header: record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => path = Some(String::from_utf8_lossy(value).into_owned()),
            b"size" => {
                size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or("bad pax header: size is not a number")?,
                )
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

/// Walks the headers of a whole tar file; returns its regular-file members in order.
fn walk(bytes: &[u8]) -> Result<Vec<Member>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut long_name: Option<String> = None;
    let mut pax: (Option<String>, Option<u64>) = (None, None);
    while pos < bytes.len() {
        let Some(h) = bytes.get(pos..pos + BLOCK) else {
            return Err(format!(
                "truncated: header at byte {pos} is cut short ({} of 512 bytes)",
                bytes.len() - pos
            ));
        };
        if h.iter().all(|&b| b == 0) {
            break; // end-of-archive marker
        }
        if !checksum_ok(h) {
            return Err(format!("not a tar file: bad header checksum at byte {pos}"));
        }
        let kind = h[156];
        let field_size = number(&h[124..136])
            .ok_or_else(|| format!("bad header at byte {pos}: size is not a number"))?;
        let meta = matches!(kind, b'L' | b'x' | b'g' | b'K');
        let size = match kind {
            b'1' | b'2' => 0, // links: the size is not data
            _ if meta => field_size,
            _ => pax.1.unwrap_or(field_size),
        };
        let name = || {
            let mut name = cstr(&h[..100]).to_vec();
            if &h[257..263] == b"ustar\0" {
                let prefix = cstr(&h[345..500]);
                if !prefix.is_empty() {
                    name = [prefix, b"/", &name].concat();
                }
            }
            String::from_utf8_lossy(&name).into_owned()
        };
        let start = pos + BLOCK;
        let len =
            usize::try_from(size).map_err(|_| format!("member at byte {pos} is too large"))?;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "truncated: member '{}' at byte {pos} needs {len} bytes, the file has {}",
                    long_name.clone().or(pax.0.clone()).unwrap_or_else(name),
                    bytes.len().saturating_sub(start)
                )
            })?;
        let data = &bytes[start..end];
        match kind {
            b'L' => long_name = Some(String::from_utf8_lossy(cstr(data)).into_owned()),
            b'x' => pax = parse_pax(data).map_err(|m| format!("{m} (byte {pos})"))?,
            b'g' | b'K' => {}
            _ => {
                // A pax path wins over a GNU long name, which wins over the header's name.
                let member_name = pax.0.take().or(long_name.take()).unwrap_or_else(name);
                if matches!(kind, b'0' | 0 | b'7') {
                    out.push(Member {
                        name: member_name,
                        start,
                        len,
                    });
                }
                pax = (None, None);
                long_name = None;
            }
        }
        pos = start + len.next_multiple_of(BLOCK);
    }
    Ok(out)
}

/// WebDataset's split of a member path: `(key, extension)`, the key up to the first `.` of the
/// file name; `None` when the file name has no `.`.
fn split_key(name: &str) -> Option<(&str, &str)> {
    let base = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[base..].find('.')? + base;
    (dot > base).then(|| (&name[..dot], &name[dot + 1..]))
}

/// Parses a `.cls` member: ASCII integer, surrounding whitespace allowed.
fn parse_label(data: &[u8]) -> Option<i64> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

/// The sample being gathered while grouping members.
struct Pending {
    key: String,
    image: Option<(usize, usize)>,
    label: Option<i64>,
}

impl Pending {
    fn finish(self, entries: &mut Vec<Entry>) -> Result<(), String> {
        let (start, len) = self.image.ok_or_else(|| {
            format!(
                "sample '{}' has no image member (.jpg, .jpeg or .png)",
                self.key
            )
        })?;
        entries.push(Entry {
            key: self.key,
            start,
            len,
            label: self.label,
        });
        Ok(())
    }
}

/// Groups consecutive members with one key into samples, as WebDataset does.
fn group(members: &[Member], map: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut cur: Option<Pending> = None;
    for m in members {
        let Some((key, ext)) = split_key(&m.name) else {
            continue;
        };
        let ext = ext.to_ascii_lowercase();
        let is_image = IMAGE_EXTS.contains(&ext.as_str());
        if !is_image && ext != "cls" {
            continue;
        }
        let c = match cur.take() {
            Some(c) if c.key == key => cur.insert(c),
            other => {
                if let Some(done) = other {
                    done.finish(&mut entries)?;
                }
                cur.insert(Pending {
                    key: key.to_string(),
                    image: None,
                    label: None,
                })
            }
        };
        if is_image {
            if c.image.is_some() {
                return Err(format!("sample '{key}' has two image members"));
            }
            c.image = Some((m.start, m.len));
        } else {
            let label = parse_label(&map[m.start..m.start + m.len])
                .ok_or_else(|| format!("'{}' is not an integer label", m.name))?;
            c.label = Some(label);
        }
    }
    if let Some(done) = cur {
        done.finish(&mut entries)?;
    }
    Ok(entries)
}

impl TarSource {
    /// Maps and indexes one shard. A missing file is an I/O error; a file that is not a tar,
    /// is cut inside a header or a member, or holds a sample without an image (or with a
    /// `.cls` that is not an integer) is a format error naming the file.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let p = dir.path().join("bad.tar");
    /// std::fs::write(&p, vec![7u8; 1024]).unwrap();
    /// let e = stoker::source::TarSource::open(&p).unwrap_err();
    /// assert!(e.to_string().contains("bad.tar") && e.message().contains("not a tar file"));
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<TarSource> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::format(path, "not a regular file"));
        }
        if meta.len() == 0 {
            return Err(Error::format(path, "empty file (0 bytes)"));
        }
        // SAFETY: read-only map that lives as long as the source; the file must not be
        // truncated while open (documented on `TarSource`); every access is bounds-checked
        // against the mapped length at open.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let fmt = |m: String| Error::format(path, m);
        let members = walk(&map).map_err(fmt)?;
        let entries = group(&members, &map).map_err(fmt)?;
        let labelled = entries.first().is_some_and(|e| e.label.is_some());
        if let Some(e) = entries.iter().find(|e| e.label.is_some() != labelled) {
            return Err(fmt(format!(
                "sample '{}' {} a .cls label, unlike the first sample",
                e.key,
                if labelled { "lacks" } else { "has" }
            )));
        }
        Ok(TarSource {
            path: path.to_path_buf(),
            map: Some(map),
            entries,
            labelled,
        })
    }

    /// Opens the given shards as one data set, in order.
    ///
    /// ```
    /// use stoker::source::{Source, TarSource, TarWriter};
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut paths = Vec::new();
    /// for k in 0..2 {
    ///     let p = dir.path().join(format!("shard-{k:06}.tar"));
    ///     let mut w = TarWriter::new(std::fs::File::create(&p).unwrap());
    ///     for j in 0..3 {
    ///         w.append_sample(&format!("{k}-{j}"), "png", b"x", Some(j)).unwrap();
    ///     }
    ///     w.finish().unwrap();
    ///     paths.push(p);
    /// }
    /// let all = TarSource::shards(&paths).unwrap();
    /// assert_eq!((all.len(), all.get(4, &mut Vec::new()).unwrap().label), (6, Some(1)));
    /// ```
    pub fn shards(paths: &[PathBuf]) -> Result<Concat<TarSource>> {
        if paths.is_empty() {
            return Err(Error::usage("no tar files given"));
        }
        let mut shards = paths
            .iter()
            .map(TarSource::open)
            .collect::<Result<Vec<_>>>()?;
        // Empty shards (every input of a resize shard was bad) hold nothing: leave them out.
        if shards.iter().any(|s| !s.is_empty()) {
            shards.retain(|s| !s.is_empty());
        }
        let paths: Vec<&Path> = shards.iter().map(|s| s.path.as_path()).collect();
        if let Some(k) = shards.iter().position(|s| s.labelled != shards[0].labelled) {
            return Err(Error::format(
                paths[k],
                format!(
                    "samples {} labels, unlike {}",
                    if shards[k].labelled { "have" } else { "lack" },
                    paths[0].display()
                ),
            ));
        }
        Concat::new(shards)
    }

    /// Opens the files matching `pattern` (sorted by path; a plain path is one shard), e.g.
    /// `data/shard-*.tar`.
    ///
    /// ```
    /// let e = stoker::source::TarSource::glob("/nonexistent/shard-*.tar").unwrap_err();
    /// assert!(e.to_string().contains("shard-*.tar"));
    /// ```
    pub fn glob(pattern: &str) -> Result<Concat<TarSource>> {
        TarSource::shards(&expand(pattern)?)
    }

    /// The shards of `paths` that rank `rank` of `world_size` reads: every `world_size`-th,
    /// starting at `rank` (so each rank maps only its own files). Give each rank a whole number
    /// of shards, or split by sample with the loader's `distributed` instead.
    ///
    /// ```
    /// use std::path::PathBuf;
    /// let all: Vec<PathBuf> = (0..5).map(|k| format!("s{k}.tar").into()).collect();
    /// let mine = stoker::source::TarSource::rank_shards(&all, 1, 2);
    /// assert_eq!(mine, [PathBuf::from("s1.tar"), PathBuf::from("s3.tar")]);
    /// ```
    pub fn rank_shards(paths: &[PathBuf], rank: usize, world_size: usize) -> Vec<PathBuf> {
        paths
            .iter()
            .skip(rank)
            .step_by(world_size.max(1))
            .cloned()
            .collect()
    }

    /// The WebDataset key of sample `index` (the member name without its extension).
    ///
    /// ```
    /// # use stoker::source::{TarSource, TarWriter};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("s.tar");
    /// let mut w = TarWriter::new(std::fs::File::create(&p).unwrap());
    /// w.append_sample("dogs/0001", "jpg", b"..", None).unwrap();
    /// w.finish().unwrap();
    /// assert_eq!(TarSource::open(&p).unwrap().key(0), Some("dogs/0001"));
    /// ```
    pub fn key(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(|e| e.key.as_str())
    }

    /// The labels of all samples, when the shard has `.cls` members.
    ///
    /// ```
    /// # use stoker::source::{TarSource, TarWriter};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let p = dir.path().join("s.tar");
    /// let mut w = TarWriter::new(std::fs::File::create(&p).unwrap());
    /// w.append_sample("a", "jpg", b"..", Some(-2)).unwrap();
    /// w.finish().unwrap();
    /// assert_eq!(TarSource::open(&p).unwrap().labels(), Some(vec![-2]));
    /// ```
    pub fn labels(&self) -> Option<Vec<i64>> {
        self.labelled
            .then(|| self.entries.iter().filter_map(|e| e.label).collect())
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl Source for TarSource {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get<'a>(&'a self, index: usize, _buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        let oob = || {
            Error::usage(format!("index out of range (len {})", self.entries.len()))
                .at(index)
                .file(&self.path)
        };
        let e = self.entries.get(index).ok_or_else(oob)?;
        // In bounds: `walk` checked every member against the mapped length.
        let bytes = self.bytes().get(e.start..e.start + e.len).ok_or_else(oob)?;
        Ok(Item {
            raw: Raw::Encoded(bytes),
            label: e.label,
        })
    }

    fn path(&self, _index: usize) -> Option<&Path> {
        Some(&self.path)
    }

    fn has_labels(&self) -> bool {
        self.labelled
    }

    fn describe(&self) -> String {
        let name = self.path.file_name().unwrap_or(self.path.as_os_str());
        format!(
            "tar: {} samples ({})",
            self.entries.len(),
            name.to_string_lossy()
        )
    }

    fn access(&self) -> Access {
        Access::fast("memory-mapped; decoded per sample")
    }
}

/// The tar shard format for [`open`](super::open): `.tar` files (by extension or the ustar
/// magic at byte 257); in a directory, every `*.tar` file. Labels are the `.cls` members.
pub(crate) struct TarFormat;

/// The one [`TarFormat`] value, listed in [`FORMATS`](super::FORMATS).
pub(crate) static TAR: TarFormat = TarFormat;

impl super::Format for TarFormat {
    fn name(&self) -> &'static str {
        "tar"
    }

    fn recognises(&self, path: &Path, head: &[u8]) -> bool {
        head.get(257..262) == Some(b"ustar") || super::open::has_ext(path, &["tar"])
    }

    fn find(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        let files = super::open::files_in(dir, |n| n.to_ascii_lowercase().ends_with(".tar"))?;
        Ok((!files.is_empty()).then_some(files))
    }

    fn open(&self, files: &[PathBuf], opts: &super::OpenOptions) -> Result<Box<dyn Source>> {
        opts.no_labels("tar shards", "their labels are the .cls members")?;
        Ok(Box::new(TarSource::shards(files)?))
    }
}

/// Writes a tar file member by member: ustar headers, GNU `L` entries for names longer than
/// 100 bytes, then the end-of-archive marker on [`finish`](Self::finish). Readable by `tar`,
/// Python's `tarfile` and `webdataset`, and [`TarSource`]. Modes are 0644, owners 0, times 0,
/// so the same members give the same bytes.
///
/// ```
/// use stoker::source::TarWriter;
/// let mut w = TarWriter::new(Vec::new());
/// w.append("x/hello.txt", b"hi").unwrap();
/// let bytes = w.finish().unwrap();
/// assert_eq!(bytes.len(), 512 + 512 + 1024); // header, padded data, two zero blocks
/// assert_eq!(&bytes[..11], b"x/hello.txt");
/// ```
#[derive(Debug)]
pub struct TarWriter<W: Write> {
    w: W,
}

fn header(name: &[u8], size: u64, kind: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 1 << 33 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256 for members of 8 GiB and more.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

impl<W: Write> TarWriter<W> {
    /// A writer that appends to `w` (wrap a file in a `BufWriter` for many small members).
    pub fn new(w: W) -> Self {
        TarWriter { w }
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.w.write_all(data)?;
        let pad = data.len().next_multiple_of(BLOCK) - data.len();
        self.w.write_all(&[0u8; BLOCK][..pad])
    }

    /// Appends a regular file member `name` (a relative path, `/`-separated) with `data`.
    ///
    /// ```
    /// let mut w = stoker::source::TarWriter::new(Vec::new());
    /// let long = format!("{}/a.jpg", "d".repeat(150));
    /// w.append(&long, b"x").unwrap(); // a GNU long-name entry precedes it
    /// assert_eq!(w.finish().unwrap().len(), 512 * 4 + 1024);
    /// ```
    pub fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let name = name.as_bytes();
        if name.is_empty() || name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tar member names must be non-empty and without NUL",
            ));
        }
        if name.len() > 100 {
            let mut long = name.to_vec();
            long.push(0);
            self.w
                .write_all(&header(b"././@LongLink", long.len() as u64, b'L'))?;
            self.write_data(&long)?;
        }
        self.w.write_all(&header(name, data.len() as u64, b'0'))?;
        self.write_data(data)
    }

    /// Appends one WebDataset sample: `KEY.EXT` with the image bytes, then `KEY.cls` with the
    /// label in ASCII when there is one.
    ///
    /// ```
    /// let mut w = stoker::source::TarWriter::new(Vec::new());
    /// w.append_sample("000001", "jpg", b"..", Some(7)).unwrap();
    /// let bytes = w.finish().unwrap();
    /// assert_eq!(&bytes[1024..1034], b"000001.cls");
    /// assert_eq!(bytes[1536], b'7');
    /// ```
    pub fn append_sample(
        &mut self,
        key: &str,
        ext: &str,
        image: &[u8],
        label: Option<i64>,
    ) -> io::Result<()> {
        self.append(&format!("{key}.{ext}"), image)?;
        if let Some(l) = label {
            self.append(&format!("{key}.cls"), l.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks), flushes, and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&[0u8; 2 * BLOCK])?;
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn tar_bytes(samples: &[(&str, &str, &[u8], Option<i64>)]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        for &(k, e, d, l) in samples {
            w.append_sample(k, e, d, l).unwrap();
        }
        w.finish().unwrap()
    }

    fn open_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<TarSource> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        TarSource::open(&p)
    }

    fn enc<'a>(s: &'a TarSource, i: usize, buf: &'a mut Vec<u8>) -> (&'a [u8], Option<i64>) {
        let item = s.get(i, buf).unwrap();
        let Raw::Encoded(b) = item.raw else { panic!() };
        (b, item.label)
    }

    #[test]
    fn split_key_like_webdataset() {
        assert_eq!(split_key("a/b/c.d.jpg"), Some(("a/b/c", "d.jpg")));
        assert_eq!(split_key("x.y/z.png"), Some(("x.y/z", "png")));
        assert_eq!(split_key("noext"), None);
        assert_eq!(split_key("dir/.hidden"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"00000001750\0"), Some(1000));
        assert_eq!(number(b"   1750 \0\0\0\0"), Some(1000));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(b"0009"), None);
        assert_eq!(number(&[0xff; 12]), None);
        assert_eq!(
            number(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }

    #[test]
    fn zero_copy_and_grouping() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TarWriter::new(Vec::new());
        w.append("README", b"no dot: ignored").unwrap();
        w.append("s/0.JPG", b"img0").unwrap();
        w.append("s/0.json", b"{}").unwrap();
        w.append("s/0.cls", b" 12\n").unwrap();
        w.append("s/1.cls", b"-3").unwrap();
        w.append("s/1.png", &[9u8; 700]).unwrap();
        let bytes = w.finish().unwrap();
        let src = open_bytes(dir.path(), "a.tar", &bytes).unwrap();
        assert_eq!(src.len(), 2);
        assert_eq!(src.labels(), Some(vec![12, -3]));
        let mut buf = Vec::new();
        let (b, l) = enc(&src, 0, &mut buf);
        assert_eq!((b, l), (&b"img0"[..], Some(12)));
        // The slice points into the map: no copy, nothing in `buf`.
        let map = src.bytes().as_ptr_range();
        assert!(map.contains(&b.as_ptr()));
        assert!(buf.is_empty());
        assert_eq!(enc(&src, 1, &mut buf).0, &[9u8; 700][..]);
        assert_eq!(src.key(1), Some("s/1"));
        assert!(src.describe().contains("2 samples"), "{}", src.describe());
        let e = src.get(2, &mut buf).unwrap_err();
        assert_eq!(e.index(), Some(2));
    }

    #[test]
    fn gnu_long_names_pax_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let long_key = format!("{}/k", "d".repeat(120));
        let mut w = TarWriter::new(Vec::new());
        w.append(&format!("{long_key}.jpg"), b"long").unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.truncate(bytes.len() - 1024);
        // A pax header that renames the next member and overrides its size.
        let pax_key = "p".repeat(130);
        let rec = |k: &str, v: &str| {
            let body = format!(" {k}={v}\n");
            let mut n = body.len() + 1;
            while format!("{n}{body}").len() != n {
                n += 1;
            }
            format!("{n}{body}")
        };
        let pax = format!(
            "{}{}{}",
            rec("path", &format!("{pax_key}.png")),
            rec("mtime", "1.5"),
            rec("size", "3")
        );
        bytes.extend(header(b"PaxHeaders/x", pax.len() as u64, b'x'));
        bytes.extend(pax.as_bytes());
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        // The ustar size field says 0: pax's size wins.
        bytes.extend(header(b"short.png", 0, b'0'));
        bytes.extend(b"pax");
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        // A ustar prefix field.
        let mut h = header(b"q.jpg", 1, b'0');
        h[345..351].copy_from_slice(b"prefix");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        bytes.extend(h);
        bytes.extend([b'Q'; 512]);
        // A directory entry is skipped; no end marker: EOF at a block boundary ends the walk.
        bytes.extend(header(b"dir/", 0, b'5'));
        let src = open_bytes(dir.path(), "x.tar", &bytes).unwrap();
        assert_eq!(src.len(), 3);
        assert_eq!(src.key(0), Some(long_key.as_str()));
        assert_eq!(src.key(1), Some(pax_key.as_str()));
        assert_eq!(src.key(2), Some("prefix/q"));
        let mut buf = Vec::new();
        assert_eq!(enc(&src, 0, &mut buf).0, b"long");
        assert_eq!(enc(&src, 1, &mut buf).0, b"pax");
        assert_eq!(enc(&src, 2, &mut buf).0, b"Q");
        assert!(!src.has_labels());
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let good = tar_bytes(&[
            ("a", "jpg", &[1; 1000], Some(1)),
            ("b", "jpg", b"x", Some(2)),
        ]);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty.tar", vec![], "empty file"),
            ("junk.tar", vec![b'x'; 2048], "not a tar file"),
            (
                "cut-member.tar",
                good[..1000].to_vec(),
                "truncated: member 'a.jpg'",
            ),
            (
                "cut-header.tar",
                good[..512 + 1024 + 100].to_vec(),
                "truncated: header",
            ),
            (
                "noimg.tar",
                tar_bytes(&[("a", "cls", b"1", None)]),
                "no image member",
            ),
            (
                "twoimg.tar",
                tar_bytes(&[("a", "jpg", b"1", None), ("a", "png", b"1", None)]),
                "two image members",
            ),
            (
                "badcls.tar",
                tar_bytes(&[("a", "jpg", b"1", None), ("a", "cls", b"dog", None)]),
                "not an integer label",
            ),
            (
                "mixed.tar",
                tar_bytes(&[("a", "jpg", b"1", Some(1)), ("b", "jpg", b"1", None)]),
                "lacks a .cls label",
            ),
        ];
        for (name, bytes, needle) in cases {
            let e = open_bytes(d, name, &bytes).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Format, "{name}: {e}");
            assert_eq!(e.path(), Some(d.join(name).as_path()));
            assert!(e.message().contains(needle), "{name}: {e}");
        }
        let e = TarSource::open(d.join("missing.tar")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("missing.tar"));
        let e = TarSource::open(d).unwrap_err();
        assert!(e.message().contains("not a regular file"));
    }

    #[test]
    fn fuzz_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.tar");
        let good = tar_bytes(&[
            ("a", "jpg", &[1; 600], Some(1)),
            ("b", "png", b"xy", Some(2)),
        ]);
        let (mut ok, mut failed) = (0, 0);
        let mut try_bytes = |b: &[u8]| {
            std::fs::write(&p, b).unwrap();
            match TarSource::open(&p) {
                Ok(s) => {
                    let mut buf = Vec::new();
                    for i in 0..s.len() {
                        s.get(i, &mut buf).unwrap();
                    }
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(e.path(), Some(p.as_path()));
                    failed += 1;
                }
            }
        };
        for n in (0..good.len()).step_by(37) {
            try_bytes(&good[..n]);
        }
        for i in (0..512).chain(1536..2048) {
            for v in [0u8, b' ', b'7', b'9', 0x80, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                try_bytes(&b);
            }
        }
        assert!(ok > 10 && failed > 10, "{ok} {failed}");
    }
}
