//! Data sets written in parts, in parallel (`stoker convert --shard i/n`, `stoker resize
//! --shard i/n`, a Slurm job array or a Kubernetes indexed Job): each part writes its own
//! shards, named with its [`Part::tag`], and its own index, `stoker.part-IIII-of-NNNN.json`;
//! the directory opens as one data set, the parts in order, once every part has written its
//! index, and names the parts still missing before then.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Index;
use crate::{Error, Result};

/// Part `index` of `count` (0-based) of a job that writes one data set in parallel.
///
/// ```
/// use stoker::source::Part;
/// let p = Part::new(3, 8)?;
/// assert_eq!(p.tag(), "0003-of-0008");
/// assert_eq!(p.index_file(), "stoker.part-0003-of-0008.json");
/// assert_eq!(Part::of_index_file("stoker.part-0003-of-0008.json"), Some(p));
/// assert_eq!(p.range(80), 30..40);
/// assert!(Part::new(8, 8).is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Part {
    /// This part, `< count`.
    pub index: usize,
    /// How many parts the job has.
    pub count: usize,
}

impl Part {
    /// Part `index` of `count`: a usage error unless `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Part> {
        if index >= count {
            return Err(Error::usage(format!(
                "part {index} of {count}: the part must be < the count (0-based)"
            )));
        }
        Ok(Part { index, count })
    }

    /// `IIII-of-NNNN`, zero-padded to four digits or to the width of `count`: what the part's
    /// shard names and index name carry, so that parts never write the same file.
    pub fn tag(&self) -> String {
        let width = self.count.to_string().len().max(4);
        format!("{:0width$}-of-{:0width$}", self.index, self.count)
    }

    /// The part's index file name, `stoker.part-IIII-of-NNNN.json`.
    pub fn index_file(&self) -> String {
        format!("stoker.part-{}.json", self.tag())
    }

    /// The part whose [`index_file`](Self::index_file) is `name`; `None` for any other name.
    pub fn of_index_file(name: &str) -> Option<Part> {
        let tag = name.strip_prefix("stoker.part-")?.strip_suffix(".json")?;
        let (i, n) = tag.split_once("-of-")?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(i) || !digits(n) {
            return None;
        }
        let part = Part::new(i.parse().ok()?, n.parse().ok()?).ok()?;
        // One spelling per part: `stoker.part-3-of-8.json` is not part 3's index.
        (part.index_file() == name).then_some(part)
    }

    /// This part's share of `len` items split into `count` contiguous ranges of sizes that
    /// differ by at most one, in order: the parts' ranges cover `0..len` once.
    pub fn range(&self, len: usize) -> Range<usize> {
        let at = |k: usize| (len as u128 * k as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// The part indexes in `dir`, sorted by part (count first); none when `dir` does not exist.
    ///
    /// ```
    /// use stoker::source::{Index, Part};
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut index = Index::new("tar", 0);
    /// index.part = Some(Part::new(1, 2)?);
    /// index.write(dir.path())?;
    /// let found = Part::files_in(dir.path())?;
    /// assert_eq!(found, vec![(Part::new(1, 2)?, dir.path().join("stoker.part-0001-of-0002.json"))]);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn files_in(dir: &Path) -> Result<Vec<(Part, PathBuf)>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name();
            if let Some(part) = name.to_str().and_then(Part::of_index_file) {
                out.push((part, entry.path()));
            }
        }
        out.sort_by_key(|&(p, _)| (p.count, p.index));
        Ok(out)
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The whole data set that the part indexes `files` (from [`Part::files_in`], not empty) in
/// `dir` make: a format error naming the parts not written yet, parts of two different counts,
/// or parts that disagree on the format, the HDF5 keys, the pixel shape or dtype, or labels.
pub(super) fn merge(dir: &Path, files: &[(Part, PathBuf)]) -> Result<Index> {
    let count = files[0].0.count;
    if let Some((_, other)) = files.iter().find(|(p, _)| p.count != count) {
        return Err(Error::format(
            dir,
            format!(
                "part indexes of two runs: {} and {}: remove those of the earlier run",
                name(&files[0].1),
                name(other)
            ),
        ));
    }
    let missing: Vec<String> = (0..count)
        .filter(|&i| files.iter().all(|(p, _)| p.index != i))
        .map(|i| Part { index: i, count }.index_file())
        .collect();
    if !missing.is_empty() {
        const SHOWN: usize = 8;
        let mut list = missing[..missing.len().min(SHOWN)].join(", ");
        if missing.len() > SHOWN {
            list.push_str(&format!(" and {} more", missing.len() - SHOWN));
        }
        return Err(Error::format(
            dir,
            format!(
                "{} of {count} parts not written yet: {list} (a part writes its index when it \
                 has finished: wait for those runs, or run them again)",
                missing.len()
            ),
        ));
    }
    let mut parts = Vec::with_capacity(count);
    for (part, path) in files {
        let index = Index::read_file(path)?.ok_or_else(|| {
            Error::format(
                path,
                "vanished while the data set was opened: open it again",
            )
        })?;
        if index.part != Some(*part) {
            return Err(Error::format(
                path,
                match index.part {
                    Some(p) => format!("holds the index of part {p}, not {part}"),
                    None => "holds no part number".to_string(),
                },
            ));
        }
        parts.push((path.as_path(), index));
    }
    let (_, first) = &parts[0];
    let mut whole = Index::new(first.format.clone(), 0);
    // What the parts that hold samples must agree on, from the first of them.
    let mut like: Option<(&Path, &Index)> = None;
    let mut per_shard = true;
    for (path, p) in &parts {
        if p.format != whole.format {
            return Err(Error::format(
                path,
                format!(
                    "format {:?}, unlike {:?} of {}",
                    p.format,
                    whole.format,
                    name(parts[0].0)
                ),
            ));
        }
        whole.samples += p.samples;
        whole.shards.extend(p.shards.iter().cloned());
        whole.labels.extend(p.labels.iter().cloned());
        per_shard &= p.shard_samples.len() == p.shards.len();
        whole.shard_samples.extend(p.shard_samples.iter().copied());
        if p.shards.is_empty() {
            continue;
        }
        let Some((lpath, l)) = like else {
            like = Some((path, p));
            whole.images_key = p.images_key.clone();
            whole.labels_key = p.labels_key.clone();
            whole.shape = p.shape;
            whole.dtype = p.dtype.clone();
            continue;
        };
        let differs = |what: &str, a: String, b: String| {
            Error::format(path, format!("{what} {a}, unlike {b} of {}", name(lpath)))
        };
        if p.images_key != l.images_key || p.labels_key != l.labels_key {
            let keys = |i: &Index| format!("{:?}/{:?}", i.images_key, i.labels_key);
            return Err(differs("hdf5 datasets", keys(p), keys(l)));
        }
        if p.shape != l.shape || p.dtype != l.dtype {
            let px = |i: &Index| format!("{:?} {:?}", i.shape, i.dtype);
            return Err(differs("pixels", px(p), px(l)));
        }
        if p.labels.is_empty() != l.labels.is_empty() {
            let has = if p.labels.is_empty() { "has no" } else { "has" };
            return Err(Error::format(
                path,
                format!("{has} label files, unlike {}", name(lpath)),
            ));
        }
    }
    if !per_shard {
        whole.shard_samples.clear();
    }
    Ok(whole)
}

/// The file name of `path`, for messages.
fn name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn ranges_cover_every_item_once() {
        for len in [0, 1, 2, 7, 32, 1001] {
            for count in 1..=9 {
                let ranges: Vec<_> = (0..count)
                    .map(|i| Part::new(i, count).unwrap().range(len))
                    .collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[count - 1].end, len);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "len {len} count {count}");
                }
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "len {len} count {count}: {sizes:?}");
            }
        }
    }

    #[test]
    fn tags_and_file_names() {
        let p = |i, n| Part::new(i, n).unwrap();
        assert_eq!(p(0, 1).tag(), "0000-of-0001");
        assert_eq!(p(12345, 100000).tag(), "012345-of-100000");
        for part in [p(0, 1), p(7, 8), p(9999, 10000), p(12, 123456)] {
            assert_eq!(Part::of_index_file(&part.index_file()), Some(part));
        }
        for other in [
            "stoker.json",
            "stoker.part-3-of-8.json",
            "stoker.part-0008-of-0008.json",
            "stoker.part-0001-of-0002.json.stoker-tmp",
            ".stoker.part-0001-of-0002.json.stoker-tmp",
            "stoker.part-+001-of-0002.json",
            "stoker.part-0001-of-0002",
        ] {
            assert_eq!(Part::of_index_file(other), None, "{other}");
        }
        let e = Part::new(2, 2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(Part::new(0, 0).is_err());
    }
}
