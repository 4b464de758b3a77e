//! Several sources as one: the sharding wrapper.

use std::path::Path;

use super::{Access, Item, LabelSite, Source};

/// One shard of a sharded data set, as the order and a checkpoint see it: its file name and
/// how many samples it holds ([`Source::shard_list`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    /// The shard's file name (without its directory).
    pub name: String,
    /// Samples in the shard.
    pub samples: usize,
}
use crate::{Error, Result};

/// Several sources (shards) read as one data set: global index `i` maps to
/// `(shard, i - start_of_shard)` by a binary search over the shards' start offsets.
///
/// Errors from a shard carry the global index.
///
/// ```
/// # use stoker::source::{Item, Raw, Source, Concat};
/// # use stoker::{ImageView, Pixels, Result};
/// # use std::path::Path;
/// # struct Const(u8, usize);
/// # impl Source for Const {
/// #     fn len(&self) -> usize { self.1 }
/// #     fn get<'a>(&'a self, _i: usize, _b: &'a mut Vec<u8>) -> Result<Item<'a>> {
/// #         Ok(Item { raw: Raw::Encoded(std::slice::from_ref(&self.0)), label: Some(self.0 as i64) })
/// #     }
/// #     fn path(&self, _i: usize) -> Option<&Path> { None }
/// #     fn has_labels(&self) -> bool { true }
/// # }
/// let all = Concat::new(vec![Const(7, 2), Const(9, 3)]).unwrap();
/// assert_eq!(all.len(), 5);
/// assert_eq!(all.locate(3), Some((1, 1)));
/// let mut buf = Vec::new();
/// assert_eq!(all.get(1, &mut buf).unwrap().label, Some(7));
/// assert_eq!(all.get(2, &mut buf).unwrap().label, Some(9));
/// ```
#[derive(Debug)]
pub struct Concat<S> {
    shards: Vec<S>,
    /// `starts[k]` is the global index of shard k's first sample; `starts[len]` the total.
    starts: Vec<usize>,
}

impl<S: Source> Concat<S> {
    /// Joins `shards` in order. All must agree on having labels.
    pub fn new(shards: Vec<S>) -> Result<Self> {
        if shards.is_empty() {
            return Err(Error::usage("no shards given"));
        }
        let labelled = shards[0].has_labels();
        if shards.iter().any(|s| s.has_labels() != labelled) {
            return Err(Error::usage("some shards have labels and others do not"));
        }
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut total = 0usize;
        for s in &shards {
            starts.push(total);
            total += s.len();
        }
        starts.push(total);
        Ok(Concat { shards, starts })
    }

    /// The shards, in order.
    pub fn shards(&self) -> &[S] {
        &self.shards
    }

    /// `(shard, local index)` of global `index`, or `None` past the end.
    pub fn locate(&self, index: usize) -> Option<(usize, usize)> {
        if index >= self.len() {
            return None;
        }
        // Last shard whose start is <= index (skips empty shards).
        let k = self.starts.partition_point(|&s| s <= index) - 1;
        Some((k, index - self.starts[k]))
    }
}

impl<S: Source> Source for Concat<S> {
    fn len(&self) -> usize {
        *self.starts.last().unwrap_or(&0)
    }

    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        let (k, local) = self.locate(index).ok_or_else(|| {
            Error::usage(format!("index out of range (len {})", self.len())).at(index)
        })?;
        self.shards[k].get(local, buf).map_err(|e| e.at(index))
    }

    fn path(&self, index: usize) -> Option<&Path> {
        let (k, local) = self.locate(index)?;
        self.shards[k].path(local)
    }

    fn has_labels(&self) -> bool {
        self.shards[0].has_labels()
    }

    fn label(&self, index: usize) -> Option<i64> {
        let (k, local) = self.locate(index)?;
        self.shards[k].label(local)
    }

    /// Each shard's file name (of its first sample) and sample count.
    fn shard_list(&self) -> Option<Vec<ShardInfo>> {
        Some(
            self.shards
                .iter()
                .map(|s| ShardInfo {
                    name: s
                        .path(0)
                        .and_then(Path::file_name)
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    samples: s.len(),
                })
                .collect(),
        )
    }

    /// The shard's site of the sample: the row within that shard's labels file.
    fn label_site(&self, index: usize) -> Option<LabelSite> {
        let (k, local) = self.locate(index)?;
        self.shards[k].label_site(local)
    }

    fn channels(&self) -> Option<usize> {
        let c = self.shards[0].channels()?;
        self.shards
            .iter()
            .all(|s| s.channels() == Some(c))
            .then_some(c)
    }

    fn size(&self) -> Option<(usize, usize)> {
        let z = self.shards[0].size()?;
        self.shards.iter().all(|s| s.size() == Some(z)).then_some(z)
    }

    fn describe(&self) -> String {
        format!(
            "{} shards, {} samples; first: {}",
            self.shards.len(),
            self.len(),
            self.shards[0].describe()
        )
    }

    /// Fast when every shard is; otherwise how many are slow, and why.
    fn access(&self) -> Access {
        let slow: Vec<Access> = self
            .shards
            .iter()
            .map(|s| s.access())
            .filter(|a| !a.fast)
            .collect();
        match slow.first() {
            None => self.shards[0].access(),
            Some(a) if slow.len() == self.shards.len() => a.clone(),
            Some(a) => Access::slow(format!(
                "{} of {} shards: {}",
                slow.len(),
                self.shards.len(),
                a.note
            )),
        }
    }
}
