//! [`TarSource`]: one memory-mapped tar shard in the WebDataset layout, indexed at open
//! (or many through [`Concat`]); members are slices of the map.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::ustar::walk;
use super::webdataset::{Entry, group};
use crate::source::{Access, Concat, Item, LabelSite, Raw, Source, expand};
use crate::{Error, Result};

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

impl TarSource {
    /// Maps and indexes one shard. A missing file is an I/O error; a file that is not a tar,
    /// or is cut inside a header or a member, is a format error naming the file. What is
    /// wrong with one sample (no image member, two, a `.cls` that is not an integer, or none
    /// where other samples have one) is a format error of that sample alone, from
    /// [`get`](Source::get), which [`OnError::Skip`](crate::OnError::Skip) skips.
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
        let entries = group(&members, &map);
        let labelled = entries.iter().any(Entry::has_cls);
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

    /// The labels of all samples, when every sample has a readable `.cls` member.
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
            .then(|| {
                let label = |e: &Entry| e.fault.is_none().then_some(e.label).flatten();
                self.entries.iter().map(label).collect::<Option<Vec<_>>>()
            })
            .flatten()
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
        if let Some(fault) = &e.fault {
            return Err(Error::format(&self.path, fault.clone()));
        }
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

    fn label(&self, index: usize) -> Option<i64> {
        let e = self.entries.get(index)?;
        e.fault.is_none().then_some(e.label?)
    }

    /// The sample's `.cls` member in this shard.
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        Some(LabelSite::Member {
            file: self.path.clone(),
            member: self.entries.get(index)?.cls_member()?,
        })
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

#[cfg(test)]
mod tests {
    use super::super::ustar::header;
    use super::*;
    use crate::ErrorKind;
    use crate::source::TarWriter;

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
        ];
        for (name, bytes, needle) in cases {
            let e = open_bytes(d, name, &bytes).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Format, "{name}: {e}");
            assert_eq!(e.path(), Some(d.join(name).as_path()));
            assert!(e.message().contains(needle), "{name}: {e}");
        }
        // What is wrong with one sample is an error of that sample alone: the shard opens,
        // the good samples read, the bad one (index 1 of 3) fails with a format error.
        let z = ("z", "jpg", &b"zz"[..], Some(9));
        type Member<'a> = (&'a str, &'a str, &'a [u8], Option<i64>);
        let samples: Vec<(&str, Vec<Member>, &str)> = vec![
            (
                "noimg.tar",
                vec![("b", "cls", b"1", None)],
                "sample 'b' has no image member",
            ),
            (
                "twoimg.tar",
                vec![("b", "jpg", b"1", Some(2)), ("b", "png", b"1", None)],
                "sample 'b' has two image members",
            ),
            (
                "badcls.tar",
                vec![("b", "jpg", b"1", None), ("b", "cls", b"dog", None)],
                "member 'b.cls' is not an integer label",
            ),
            (
                "mixed.tar",
                vec![("b", "jpg", b"1", None)],
                "sample 'b' lacks a .cls label",
            ),
        ];
        for (name, middle, needle) in samples {
            let mut all = vec![("a", "jpg", &b"aa"[..], Some(1))];
            all.extend(middle);
            all.push(z);
            let src = open_bytes(d, name, &tar_bytes(&all)).unwrap();
            assert_eq!((src.len(), src.has_labels()), (3, true), "{name}");
            let mut buf = Vec::new();
            assert_eq!(enc(&src, 0, &mut buf), (&b"aa"[..], Some(1)), "{name}");
            assert_eq!(enc(&src, 2, &mut buf), (&b"zz"[..], Some(9)), "{name}");
            let e = src.get(1, &mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Format, "{name}: {e}");
            assert_eq!(e.path(), Some(d.join(name).as_path()));
            assert!(e.message().contains(needle), "{name}: {e}");
            assert_eq!((src.label(1), src.labels()), (None, None), "{name}");
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
                        // A damaged sample is a format error of its own, never a panic.
                        if let Err(e) = s.get(i, &mut buf) {
                            assert_eq!(
                                (e.kind(), e.path()),
                                (ErrorKind::Format, Some(p.as_path()))
                            );
                        }
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
