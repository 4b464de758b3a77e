//! [`RemoteShards`]: a sharded data set in object storage, read as a [`Source`]: each shard is
//! fetched into the node-local cache and opened (memory-mapped) from there by its format.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::FetchStats;
use super::fetcher::Fetcher;
use crate::image::{ImageView, Pixels};
use crate::sampler::EpochOrder;
use crate::source::{Access, Format, Item, LabelSite, OpenOptions, Raw, ShardInfo, Source};
use crate::{Error, Result};

/// Shards in object storage behind one [`Source`]: global index `i` maps to a shard and a row
/// in it as [`Concat`](crate::source::Concat) maps them, from sample counts known at open.
///
/// A shard is read from its file in the cache, mapped by its format as a local shard is.
/// Without a cache limit a shard stays mapped once fetched, and samples are slices of the map
/// (no copy). With one ([`OpenOptions::cache_limit`]), shards are evicted and unmapped, so a
/// sample is copied out of the map into the caller's buffer while the shard is held.
///
/// Made by [`open`](crate::source::open) for an `s3://` path.
pub struct RemoteShards {
    format: &'static dyn Format,
    opts: OpenOptions,
    urls: Vec<PathBuf>,
    starts: Vec<usize>,
    /// Opened shards, without a cache limit (never unmapped while the source lives).
    kept: Vec<OnceLock<Box<dyn Source>>>,
    /// Whether shards may be evicted (then they live in the fetcher's slots).
    evicting: bool,
    fetcher: Fetcher,
    labelled: bool,
    first: (Option<usize>, Option<(usize, usize)>, String, Access),
}

impl std::fmt::Debug for RemoteShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteShards")
            .field("format", &self.format.name())
            .field("shards", &self.urls.len())
            .field("len", &self.len())
            .field("fetcher", &self.fetcher)
            .finish()
    }
}

thread_local! {
    /// A reader's own buffer for a shard that reads into one (copied out from here).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl RemoteShards {
    /// The source over `counts[k]` samples in each shard, read through `fetcher`; shard 0 is
    /// opened here (its labels, channels and size stand for all).
    pub(crate) fn new(
        format: &'static dyn Format,
        opts: OpenOptions,
        urls: Vec<PathBuf>,
        counts: &[usize],
        fetcher: Fetcher,
        evicting: bool,
    ) -> Result<RemoteShards> {
        let mut starts = Vec::with_capacity(counts.len() + 1);
        let mut total = 0;
        for &c in counts {
            starts.push(total);
            total += c;
        }
        starts.push(total);
        let n = urls.len();
        let mut src = RemoteShards {
            format,
            opts,
            urls,
            starts,
            kept: (0..n).map(|_| OnceLock::new()).collect(),
            evicting,
            fetcher,
            labelled: false,
            first: (None, None, String::new(), Access::fast("")),
        };
        let first = src.with_shard(0, |s| {
            Ok((
                s.has_labels(),
                (s.channels(), s.size(), s.describe(), s.access()),
            ))
        })?;
        src.labelled = first.0;
        src.first = first.1;
        Ok(src)
    }

    /// What the fetcher has done so far.
    pub fn fetch_stats(&self) -> FetchStats {
        self.fetcher.shared.counters.snapshot()
    }

    /// The number of shards.
    pub fn num_shards(&self) -> usize {
        self.urls.len()
    }

    /// `(shard, row)` of global `index`, or `None` past the end.
    pub fn locate(&self, index: usize) -> Option<(usize, usize)> {
        if index >= self.len() {
            return None;
        }
        let k = self.starts.partition_point(|&s| s <= index) - 1;
        Some((k, index - self.starts[k]))
    }

    /// Opens shard `k` from its files in the cache, as its format opens local files.
    fn open_shard(&self, k: usize) -> Result<Box<dyn Source>> {
        let paths = self.fetcher.local_paths(k);
        let src = self.format.open(&paths[..1], &self.opts).map_err(|e| {
            let at = self.urls[k].clone();
            Error::new(
                e.kind(),
                format!("{} (cached at {})", e.message(), paths[0].display()),
            )
            .file(at)
            .with_source(e)
        })?;
        let want = self.starts[k + 1] - self.starts[k];
        if src.len() != want && self.starts.len() > 2 {
            return Err(Error::format(
                &self.urls[k],
                format!("holds {} samples, the index says {want}", src.len()),
            ));
        }
        Ok(src)
    }

    /// Runs `f` on shard `k`, fetching and opening it first if needed.
    fn with_shard<T>(&self, k: usize, f: impl FnOnce(&dyn Source) -> Result<T>) -> Result<T> {
        if self.evicting {
            loop {
                {
                    let slot = self.fetcher.shared.slots[k]
                        .read()
                        .unwrap_or_else(|p| p.into_inner());
                    if let Some(s) = slot.as_ref() {
                        return f(s.as_ref());
                    }
                }
                let _claim = self.fetcher.wait(k)?;
                let opened = self.open_shard(k)?;
                let mut slot = self.fetcher.shared.slots[k]
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(opened);
                }
            }
        }
        f(self.kept_shard(k)?)
    }

    /// Shard `k`, opened for good (no cache limit).
    fn kept_shard(&self, k: usize) -> Result<&dyn Source> {
        if let Some(s) = self.kept[k].get() {
            return Ok(s.as_ref());
        }
        let claim = self.fetcher.wait(k)?;
        let opened = self.open_shard(k)?;
        drop(claim);
        let _ = self.kept[k].set(opened);
        Ok(self.kept[k].get().expect("set just now").as_ref())
    }
}

/// `item`, whose bytes borrow from a shard that may be unmapped once the caller lets go, with
/// its bytes copied into `buf`.
fn copy_out<'a>(item: Item<'_>, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
    let raw = match item.raw {
        Raw::Encoded(b) => {
            buf.clear();
            buf.extend_from_slice(b);
            Raw::Encoded(&buf[..])
        }
        Raw::Pixels(v) => {
            let (w, h, c) = (v.width, v.height, v.channels);
            let shape = || Error::usage("a shard gave pixels that do not match their shape");
            match v.pixels {
                Pixels::U8(p) => {
                    buf.clear();
                    buf.extend_from_slice(p);
                    Raw::Pixels(ImageView::new(w, h, c, Pixels::U8(&buf[..])).ok_or_else(shape)?)
                }
                Pixels::F32(p) => {
                    let bytes: &[u8] = bytemuck::cast_slice(p);
                    buf.clear();
                    buf.resize(bytes.len() + 4, 0);
                    let off = buf.as_ptr().align_offset(4).min(4);
                    buf[off..off + bytes.len()].copy_from_slice(bytes);
                    let px: &[f32] = bytemuck::cast_slice(&buf[off..off + bytes.len()]);
                    Raw::Pixels(ImageView::new(w, h, c, Pixels::F32(px)).ok_or_else(shape)?)
                }
            }
        }
    };
    Ok(Item {
        raw,
        label: item.label,
    })
}

impl Source for RemoteShards {
    fn len(&self) -> usize {
        *self.starts.last().unwrap_or(&0)
    }

    fn get<'a>(&'a self, index: usize, buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        let (k, row) = self.locate(index).ok_or_else(|| {
            Error::usage(format!("index out of range (len {})", self.len())).at(index)
        })?;
        if !self.evicting {
            self.fetcher.touch(k);
            let shard = self.kept_shard(k).map_err(|e| e.at(index))?;
            return shard.get(row, buf).map_err(|e| e.at(index));
        }
        // The shard's read lock is held while the sample is copied out: never unmapped under it.
        // The read counts (its next use moves on) only once it is done, under that lock: until
        // then the shard is needed now, and not evicted between the count and the read.
        SCRATCH
            .with(move |scratch| {
                let mut scratch = scratch.borrow_mut();
                self.with_shard(k, move |s| {
                    let item = s.get(row, &mut scratch);
                    self.fetcher.touch(k);
                    copy_out(item?, buf)
                })
            })
            .map_err(|e| e.at(index))
    }

    fn path(&self, index: usize) -> Option<&Path> {
        let (k, _) = self.locate(index)?;
        Some(&self.urls[k])
    }

    fn has_labels(&self) -> bool {
        self.labelled
    }

    fn label(&self, index: usize) -> Option<i64> {
        let (k, row) = self.locate(index)?;
        if self.evicting {
            return None;
        }
        self.kept[k].get()?.label(row)
    }

    fn label_site(&self, index: usize) -> Option<LabelSite> {
        let (k, row) = self.locate(index)?;
        if self.evicting {
            return None;
        }
        self.kept[k].get()?.label_site(row)
    }

    fn channels(&self) -> Option<usize> {
        self.first.0
    }

    fn size(&self) -> Option<(usize, usize)> {
        self.first.1
    }

    fn describe(&self) -> String {
        format!(
            "{} shards in object storage, {} samples; first: {}",
            self.urls.len(),
            self.len(),
            self.first.2
        )
    }

    fn access(&self) -> Access {
        let a = &self.first.3;
        let note = format!("fetched into the cache, then: {}", a.note);
        if a.fast {
            Access::fast(note)
        } else {
            Access::slow(note)
        }
    }

    /// Each shard's object name (without its prefix) and sample count, as a local glob of
    /// the same files gives them: the shard-aware order and checkpoints see the same shards.
    fn shard_list(&self) -> Option<Vec<ShardInfo>> {
        Some(
            self.urls
                .iter()
                .enumerate()
                .map(|(k, u)| ShardInfo {
                    name: u
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    samples: self.starts[k + 1] - self.starts[k],
                })
                .collect(),
        )
    }

    fn will_read(&self, order: &EpochOrder, positions: Range<usize>) {
        let seq =
            super::plan::shard_sequence(order, positions, |i| self.locate(i).map_or(0, |(k, _)| k));
        self.fetcher.plan(seq);
    }

    fn will_read_next(&self, order: &EpochOrder, positions: Range<usize>) {
        let seq =
            super::plan::shard_sequence(order, positions, |i| self.locate(i).map_or(0, |(k, _)| k));
        self.fetcher.plan_next(seq);
    }
}
