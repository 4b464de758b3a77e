//! `stoker.json`: the index a converted data set carries, so [`open`](super::open) finds its
//! shards and labels without guessing.

use std::path::Path;

use serde::{Deserialize, Serialize};

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
        }
    }

    /// Reads `dir/stoker.json`; `None` when there is none. A file that does not parse is a
    /// format error naming it.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("stoker.json"), "{ not json").unwrap();
    /// let e = stoker::source::Index::read(dir.path()).unwrap_err();
    /// assert!(e.to_string().contains("stoker.json"));
    /// ```
    pub fn read(dir: &Path) -> Result<Option<Index>> {
        let path = dir.join(Index::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let index: Index = serde_json::from_str(&text)
            .map_err(|e| Error::format(&path, format!("not a stoker index: {e}")))?;
        if index.version != 1 {
            return Err(Error::format(
                &path,
                format!(
                    "index version {} is newer than this build reads (1)",
                    index.version
                ),
            ));
        }
        if !index.labels.is_empty() && index.labels.len() != index.shards.len() {
            return Err(Error::format(
                &path,
                format!(
                    "{} shards but {} label files",
                    index.shards.len(),
                    index.labels.len()
                ),
            ));
        }
        Ok(Some(index))
    }

    /// Writes `dir/stoker.json` atomically (a temporary beside it, then renamed into place).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(Index::FILE);
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::format(&path, format!("cannot serialise the index: {e}")))?;
        text.push('\n');
        super::write_file(&path, |f| std::io::Write::write_all(f, text.as_bytes()))
    }
}
