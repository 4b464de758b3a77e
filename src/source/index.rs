//! `stoker.json`: the index a converted data set carries, so [`open`](super::open) finds its
//! shards and labels without guessing; `stoker.part-IIII-of-NNNN.json` for each part of one
//! written in parallel ([`Part`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Part;
use crate::{Error, Result};

/// What a directory written by `stoker convert` or `stoker resize` holds: its format, shards
/// (file names relative to the directory, in order), label files, sample count and pixel shape.
///
/// ```
/// use stoker::source::Index;
/// let dir = tempfile::tempdir().unwrap();
/// let mut index = Index::new("tar", 2);
/// index.shards = vec!["shard-000000.tar".into()];
/// index.write(dir.path()).unwrap();
/// let back = Index::read(dir.path()).unwrap().unwrap();
/// assert_eq!(back, index);
/// assert!(Index::read(&dir.path().join("elsewhere")).unwrap().is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Version of this file's layout (1).
    pub version: u32,
    /// The format's name, as [`Format::name`](super::Format::name) spells it.
    pub format: String,
    /// Samples in all shards together.
    pub samples: usize,
    /// The shard files, in order, relative to the directory.
    pub shards: Vec<String>,
    /// Label files, one per shard (NPY), relative to the directory; empty when the labels are
    /// inside the shards or there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The images dataset inside each shard (HDF5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_key: Option<String>,
    /// The labels dataset inside each shard (HDF5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_key: Option<String>,
    /// Pixel shape `[H, W, C]` when every sample shares one and it is known without decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<[usize; 3]>,
    /// Pixel dtype (`"u8"`, `"f32"`) of decoded-pixel formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Samples in each shard, in the order of `shards`, so that a reader can map a sample to
    /// its shard without opening any; empty when unknown (indexes of earlier versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_samples: Vec<usize>,
    /// The part of a job written in parallel that this index describes (its file is then
    /// [`Part::index_file`]); `None` for a whole data set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

impl Index {
    /// The file name, `stoker.json`.
    pub const FILE: &'static str = "stoker.json";

    /// An index of `samples` samples in `format`, with no shards listed yet.
    pub fn new(format: impl Into<String>, samples: usize) -> Index {
        Index {
            version: 1,
            format: format.into(),
            samples,
            shards: Vec::new(),
            labels: Vec::new(),
            images_key: None,
            labels_key: None,
            shape: None,
            dtype: None,
            shard_samples: Vec::new(),
            part: None,
        }
    }

    /// The index of the data set in `dir`: `dir/stoker.json`, or the parts' indexes
    /// (`stoker.part-*-of-*.json`) merged into one, the parts in order; `None` when there is
    /// neither.
    ///
    /// Format errors name the file: one that does not parse, one of a newer version, label
    /// files or shard sample counts that do not match its shards. Parts not written yet are an
    /// error that names them (see [`Part`]), and so are parts that disagree, and both a
    /// `stoker.json` and part indexes.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("stoker.json"), "{ not json").unwrap();
    /// let e = stoker::source::Index::read(dir.path()).unwrap_err();
    /// assert!(e.to_string().contains("stoker.json"));
    /// ```
    pub fn read(dir: &Path) -> Result<Option<Index>> {
        Ok(Index::find(dir)?.map(|(index, _)| index))
    }

    /// [`read`](Self::read), with the path that errors about the whole index name:
    /// `dir/stoker.json`, or `dir` itself for merged parts.
    pub(crate) fn find(dir: &Path) -> Result<Option<(Index, PathBuf)>> {
        let path = dir.join(Index::FILE);
        let parts = Part::files_in(dir)?;
        let whole = Index::read_file(&path)?;
        match (whole, parts.is_empty()) {
            (None, true) => Ok(None),
            (Some(index), true) => Ok(Some((index, path))),
            (None, false) => Ok(Some((super::parts::merge(dir, &parts)?, dir.to_path_buf()))),
            (Some(_), false) => Err(Error::format(
                dir,
                format!(
                    "both {} and part indexes ({}, ...): one is left from an earlier run; \
                     remove it",
                    Index::FILE,
                    parts[0].0.index_file()
                ),
            )),
        }
    }

    /// Reads one index file; `None` when it does not exist.
    pub(crate) fn read_file(path: &Path) -> Result<Option<Index>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let index: Index = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not a stoker index: {e}")))?;
        if index.version != 1 {
            return Err(Error::format(
                path,
                format!(
                    "index version {} is newer than this build reads (1)",
                    index.version
                ),
            ));
        }
        if !index.labels.is_empty() && index.labels.len() != index.shards.len() {
            return Err(Error::format(
                path,
                format!(
                    "{} shards but {} label files",
                    index.shards.len(),
                    index.labels.len()
                ),
            ));
        }
        if !index.shard_samples.is_empty() {
            let sum: usize = index.shard_samples.iter().sum();
            if index.shard_samples.len() != index.shards.len() || sum != index.samples {
                return Err(Error::format(
                    path,
                    format!(
                        "shard_samples lists {} shards of {sum} samples, but the index has {} \
                         shards of {} samples",
                        index.shard_samples.len(),
                        index.shards.len(),
                        index.samples
                    ),
                ));
            }
        }
        Ok(Some(index))
    }

    /// The name of this index's file: [`Index::FILE`], or the part's
    /// [`Part::index_file`].
    pub fn file_name(&self) -> String {
        self.part
            .map_or_else(|| Index::FILE.to_string(), |p| p.index_file())
    }

    /// Writes `dir/stoker.json` (or a part's `dir/stoker.part-IIII-of-NNNN.json`, see
    /// [`file_name`](Self::file_name)) atomically: a temporary beside it, then renamed into
    /// place.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(self.file_name());
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::format(&path, format!("cannot serialise the index: {e}")))?;
        text.push('\n');
        super::write_file(&path, |f| std::io::Write::write_all(f, text.as_bytes()))
    }
}
