//! [`LoaderBuilder`]: the loader's settings, checked once; `build` allocates the batch pool
//! and starts the workers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread;

use super::labels::LabelCheck;
use super::schedule::Schedule;
use super::worker::{Done, Shared, Task, WorkerCtx, block_once, locate, worker_main};
use super::{Ahead, Loader, OnError, SkipBound};
use crate::batch::{AlignedAlloc, Allocator, Pool};
use crate::decode::{DEFAULT_MAX_IMAGE_PIXELS, DecodePolicy, Decoder};
use crate::output::{DType, Layout, Normalize, OutputSpec};
use crate::sampler::{DataFingerprint, Order, Partition, Sampler};
use crate::source::{Raw, Source};
use crate::stats::Counters;
use crate::transform::{Identity, Transform};
use crate::{Error, ErrorKind, Result};

/// Settings of a [`Loader`], with the names PyTorch's `DataLoader` uses.
///
/// ```
/// use stoker::{Loader, DType, Layout, Normalize};
/// use stoker::source::ImageFolder;
/// let loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144").unwrap())
///     .batch_size(8)
///     .shuffle(true)
///     .seed(42)
///     .num_workers(2)
///     .prefetch(2)
///     .drop_last(true)
///     .size(128, 72)
///     .dtype(DType::F16)
///     .layout(Layout::Nchw)
///     .normalize(Normalize::imagenet())
///     .build()
///     .unwrap();
/// assert_eq!(loader.batches_per_epoch(), 4);
/// assert_eq!(loader.spec().sample_shape(), [3, 72, 128]);
/// ```
#[derive(Clone)]
pub struct LoaderBuilder<S> {
    source: S,
    batch_size: usize,
    shuffle: bool,
    num_workers: Option<usize>,
    prefetch: usize,
    ahead: bool,
    drop_last: bool,
    seed: u64,
    size: Option<(usize, usize)>,
    channels: Option<usize>,
    dtype: DType,
    layout: Layout,
    normalize: Option<Normalize>,
    on_error: OnError,
    max_skipped: SkipBound,
    decode_policy: DecodePolicy,
    max_image_pixels: u64,
    num_classes: Option<usize>,
    ignore_label: Option<i64>,
    distributed: Option<(usize, usize)>,
    partition: Partition,
    order: Order,
    allocator: Arc<dyn Allocator>,
    transform: Arc<dyn Transform>,
}

impl<S> LoaderBuilder<S> {
    /// The same settings over another source (e.g. the source behind an `Arc`, so the settings
    /// can be cloned to build more loaders over it).
    #[cfg_attr(not(feature = "burn"), allow(dead_code))]
    pub(crate) fn map_source<T>(self, f: impl FnOnce(S) -> T) -> LoaderBuilder<T> {
        LoaderBuilder {
            source: f(self.source),
            batch_size: self.batch_size,
            shuffle: self.shuffle,
            num_workers: self.num_workers,
            prefetch: self.prefetch,
            ahead: self.ahead,
            drop_last: self.drop_last,
            seed: self.seed,
            size: self.size,
            channels: self.channels,
            dtype: self.dtype,
            layout: self.layout,
            normalize: self.normalize,
            on_error: self.on_error,
            max_skipped: self.max_skipped,
            decode_policy: self.decode_policy,
            max_image_pixels: self.max_image_pixels,
            num_classes: self.num_classes,
            ignore_label: self.ignore_label,
            distributed: self.distributed,
            partition: self.partition,
            order: self.order,
            allocator: self.allocator,
            transform: self.transform,
        }
    }
}

impl<S: Source + 'static> LoaderBuilder<S> {
    /// Defaults over `source` ([`Loader::builder`]).
    pub(super) fn new(source: S) -> LoaderBuilder<S> {
        LoaderBuilder {
            source,
            batch_size: 1,
            shuffle: false,
            num_workers: None,
            prefetch: 2,
            ahead: true,
            drop_last: false,
            seed: 0,
            size: None,
            channels: None,
            dtype: DType::F32,
            layout: Layout::Nchw,
            normalize: None,
            on_error: OnError::Raise,
            max_skipped: SkipBound::default(),
            decode_policy: DecodePolicy::default(),
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            num_classes: None,
            ignore_label: None,
            distributed: None,
            partition: Partition::Pad,
            order: Order::Global,
            allocator: Arc::new(AlignedAlloc),
            transform: Arc::new(Identity),
        }
    }

    /// Samples per batch (default 1, as in PyTorch).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Shuffle the order every epoch (default false).
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }
    /// Worker threads; 0 runs everything inline in the consumer's thread (default: the
    /// number of cores).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = Some(n);
        self
    }
    /// Batches prepared ahead of the consumer (default 2). The pool holds `prefetch + 2`
    /// buffers: the consumer may keep two batches while `prefetch` more are filled.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }
    /// Start the next epoch while this one ends (default true): once every sample of a pass
    /// is dispatched, idle workers go on with the positions of the pass that would follow
    /// (epoch `e + 1` from position 0, or the same range of `e + 1` after an
    /// [`epoch_range`](Loader::epoch_range) pass), so the next epoch has no cold start. The
    /// next [`epoch`](Loader::epoch) (or the same `epoch_range`) takes that work over; any
    /// other call discards it. Batches are the same either way; the read and decode figures
    /// of [`Stats`](crate::Stats) include the work done ahead. Off, workers idle from the end
    /// of one epoch to the start of the next.
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let b = || Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None).unwrap())
    ///     .batch_size(8).shuffle(true).seed(1);
    /// let (mut ahead, mut cold) = (b().build()?, b().prefetch_next_epoch(false).build()?);
    /// for e in 0..3 {
    ///     for (x, y) in ahead.epoch(e).zip(cold.epoch(e)) {
    ///         assert_eq!(x?.as_bytes(), y?.as_bytes());
    ///     }
    /// }
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn prefetch_next_epoch(mut self, on: bool) -> Self {
        self.ahead = on;
        self
    }
    /// Drop the last batch of an epoch when it is not full (default false).
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }
    /// Seed of the shuffle and of every sample's random generator (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Output size `width × height` (default: the source's size, or the first sample's).
    pub fn size(mut self, width: usize, height: usize) -> Self {
        self.size = Some((width, height));
        self
    }
    /// Output channels, 1 or 3 (default: the source's, or 3 for encoded images).
    pub fn channels(mut self, c: usize) -> Self {
        self.channels = Some(c);
        self
    }
    /// Element type of the batch tensor (default f32).
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }
    /// Layout of the batch tensor (default NCHW).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }
    /// Per-channel normalisation (default none: 8-bit pixels map to `[0, 1]`).
    pub fn normalize(mut self, n: Normalize) -> Self {
        self.normalize = Some(n);
        self
    }
    /// What to do with a bad sample (default [`OnError::Raise`]).
    pub fn on_error(mut self, policy: OnError) -> Self {
        self.on_error = policy;
        self
    }
    /// How many samples one pass may skip under [`OnError::Skip`] (default 5% of the pass,
    /// see [`SkipBound`]); past it, or when every sample of a pass fails, the pass ends with
    /// an [`ErrorKind::SkipLimit`] error naming the source, the count and the first failure.
    ///
    /// ```
    /// use stoker::{ErrorKind, Loader, OnError, SkipBound};
    /// use stoker::source::ImageFolder;
    /// let dir = tempfile::tempdir()?;
    /// for i in 0..4 {
    ///     std::fs::create_dir_all(dir.path().join("a"))?;
    ///     std::fs::write(dir.path().join(format!("a/{i}.jpg")), b"not a jpeg")?;
    /// }
    /// let mut loader = Loader::builder(ImageFolder::open(dir.path())?)
    ///     .size(32, 32)
    ///     .on_error(OnError::Skip)
    ///     .max_skipped(SkipBound::Count(2))
    ///     .build()?;
    /// let err = loader.epoch(0).find_map(|b| b.err()).unwrap();
    /// assert_eq!(err.kind(), ErrorKind::SkipLimit);
    /// assert_eq!(loader.stats().skipped, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_skipped(mut self, bound: SkipBound) -> Self {
        self.max_skipped = bound;
        self
    }
    /// What a damaged image decodes to (default [`DecodePolicy::Tolerant`]: corrupt scan
    /// data decodes with a warning, counted in [`Stats::decoded_with_warnings`](crate::Stats);
    /// a truncated file is an error).
    pub fn decode_policy(mut self, policy: DecodePolicy) -> Self {
        self.decode_policy = policy;
        self
    }
    /// The largest stored image, in pixels (width × height as its header gives them; default
    /// [`DEFAULT_MAX_IMAGE_PIXELS`], Pillow's limit): a larger JPEG or PNG is refused from its
    /// header, before it is decoded, with a [`Decode`](ErrorKind::Decode) error naming the file,
    /// the sample, its size and the limit, and is skipped and counted under
    /// [`OnError::Skip`]. Against decompression bombs: a 1 KB file that claims 65000×65000
    /// pixels. See [`Decoder::set_max_image_pixels`].
    pub fn max_image_pixels(mut self, limit: u64) -> Self {
        self.max_image_pixels = limit;
        self
    }
    /// The number of classes: a label outside `0..n` is an error when the loader is built
    /// (naming the first bad index, the labels file and the row, line or member in it that
    /// [`Source::label_site`] gives), except the [`ignore_label`](Self::ignore_label).
    /// Without it, only negative labels are refused.
    pub fn num_classes(mut self, n: usize) -> Self {
        self.num_classes = Some(n);
        self
    }
    /// A label value let through the label check (e.g. -1 or -100, the `ignore_index` of
    /// PyTorch's cross-entropy) for samples a loss function is to ignore.
    pub fn ignore_label(mut self, label: i64) -> Self {
        self.ignore_label = Some(label);
        self
    }
    /// This process's rank and the world size for data-parallel training (default: from the
    /// environment of the launcher that started the process, torchrun, MPI or a Slurm `srun`
    /// step, as [`Sampler::distributed_from_env`] reads it; else 0 of 1).
    pub fn distributed(mut self, rank: usize, world_size: usize) -> Self {
        self.distributed = Some((rank, world_size));
        self
    }
    /// How ranks are evened out (default [`Partition::Pad`], as DistributedSampler).
    pub fn partition(mut self, p: Partition) -> Self {
        self.partition = p;
        self
    }
    /// How a shuffled epoch's order is made (default [`Order::Global`], one permutation of
    /// the data set); [`Order::Shards`] shuffles shards, then samples within windows of
    /// shards, so that a rank reads from a few shards at a time (see `docs/scaling.md`).
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }
    /// Where batch buffers are allocated (default [`AlignedAlloc`]).
    pub fn allocator(mut self, a: Arc<dyn Allocator>) -> Self {
        self.allocator = a;
        self
    }
    /// The transform stage (default [`Identity`]).
    pub fn transform(mut self, t: Arc<dyn Transform>) -> Self {
        self.transform = t;
        self
    }

    /// Checks the settings, allocates the batch pool and starts the workers.
    pub fn build(self) -> Result<Loader<S>> {
        if self.batch_size == 0 {
            return Err(Error::usage("batch_size must be at least 1"));
        }
        if self.prefetch == 0 {
            return Err(Error::usage("prefetch must be at least 1"));
        }
        if self.source.is_empty() {
            return Err(Error::usage(format!(
                "the source has no samples ({})",
                self.source.describe()
            )));
        }
        self.max_skipped.validate()?;
        let labels = LabelCheck {
            num_classes: self.num_classes,
            ignore: self.ignore_label,
        };
        labels.check_source(&self.source)?;
        let described = self.source.describe();
        let shards = self.source.shard_list().unwrap_or_default();
        let mut sampler = Sampler::new(self.source.len())
            .shuffle(self.shuffle)
            .seed(self.seed)
            .partition(self.partition)
            .order(self.order);
        if !shards.is_empty() {
            let sizes: Vec<usize> = shards.iter().map(|s| s.samples).collect();
            sampler = sampler.shard_sizes(&sizes)?;
        }
        let data = DataFingerprint {
            samples: self.source.len() as u64,
            shards,
        };
        let sampler = match self.distributed {
            Some((rank, world)) => sampler.distributed(rank, world)?,
            None => sampler.distributed_from_env()?,
        };
        tracing::debug!(
            rank = sampler.rank(),
            world_size = sampler.world_size(),
            rank_source = sampler.rank_source().as_str(),
            local_rank = ?sampler.local_rank(),
            local_world_size = ?sampler.local_world_size(),
            "rank {} of {} from {}",
            sampler.rank(),
            sampler.world_size(),
            sampler.rank_source()
        );
        let channels = self
            .channels
            .or_else(|| self.source.channels())
            .unwrap_or(3);
        if let Some(c) = self.source.channels()
            && c != channels
        {
            return Err(Error::usage(format!(
                "the source has {c} channel(s) per pixel; the loader cannot output {channels}"
            )));
        }
        let size = match self.size.or_else(|| self.source.size()) {
            Some(s) => s,
            None => probe_size(
                &self.source,
                channels,
                (self.decode_policy, self.max_image_pixels),
                self.on_error,
            )?,
        };
        let spec = OutputSpec {
            width: size.0,
            height: size.1,
            channels,
            dtype: self.dtype,
            layout: self.layout,
            normalize: self.normalize,
        };
        spec.validate()?;
        let spec = Arc::new(spec);
        let pool = Pool::new(
            self.prefetch + 2,
            self.batch_size,
            Arc::clone(&spec),
            self.source.has_labels(),
            &*self.allocator,
        )?;
        let window = self.prefetch * self.batch_size;
        let (bell_tx, bell_rx) = crossbeam_channel::bounded::<()>(1);
        let shared = Arc::new(Shared {
            source: self.source,
            spec: Arc::clone(&spec),
            seed: self.seed,
            transform: self.transform,
            decode_policy: self.decode_policy,
            max_image_pixels: self.max_image_pixels,
            labels,
            counters: Counters::default(),
            min_gen: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            bell: bell_tx,
        });
        let num_workers = self.num_workers.unwrap_or_else(|| {
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let (task_tx, task_rx) = crossbeam_channel::bounded::<Task>(window);
        let (result_tx, result_rx) = crossbeam_channel::bounded::<Done>(window);
        let mut workers = Vec::with_capacity(num_workers);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<()>(num_workers);
        for w in 0..num_workers {
            let ctx = WorkerCtx::new(&shared)?;
            let (sh, rx, tx) = (Arc::clone(&shared), task_rx.clone(), result_tx.clone());
            let ready = ready_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("stoker-worker-{w}"))
                .spawn(move || worker_main(sh, rx, tx, ctx, ready))
                // Workers already started exit when the task channel closes on return.
                .map_err(|e| {
                    Error::new(ErrorKind::Panic, format!("cannot start worker thread: {e}"))
                        .with_source(e)
                })?;
            workers.push(handle);
        }
        drop(result_tx); // only workers hold senders: if all exit, the consumer sees it
        if num_workers > 0 {
            block_once(&result_rx);
            block_once(&bell_rx);
            for _ in 0..num_workers {
                let _ = ready_rx.recv();
            }
        }
        let inline = if num_workers == 0 {
            Some(WorkerCtx::new(&shared)?)
        } else {
            None
        };
        Ok(Loader {
            shared,
            sampler,
            data,
            pool,
            batch_size: self.batch_size,
            prefetch: self.prefetch,
            drop_last: self.drop_last,
            on_error: self.on_error,
            num_workers,
            task_tx: Some(task_tx),
            result_rx,
            bell_rx,
            received: 0,
            workers,
            inline,
            generation: 0,
            schedule: Schedule::new(
                self.batch_size,
                self.prefetch,
                self.drop_last,
                self.max_skipped,
            )
            .describing(described.clone()),
            batches: VecDeque::with_capacity(self.prefetch + 2),
            order: None,
            epoch: 0,
            pass: (0, None),
            next_pass: None,
            outstanding: 0,
            window,
            ahead: Ahead {
                enabled: self.ahead && num_workers > 0,
                live: false,
                generation: 0,
                epoch: 0,
                pass: (0, None),
                schedule: Schedule::new(
                    self.batch_size,
                    self.prefetch,
                    self.drop_last,
                    self.max_skipped,
                )
                .describing(described.clone()),
                batches: VecDeque::with_capacity(self.prefetch + 2),
                order: None,
                outstanding: 0,
            },
        })
    }
}

/// Decodes the first sample at its stored size to learn the output size; under
/// [`OnError::Skip`], the first that decodes among the first [`PROBES`].
fn probe_size<S: Source>(
    source: &S,
    channels: usize,
    (policy, max_image_pixels): (DecodePolicy, u64),
    on_error: OnError,
) -> Result<(usize, usize)> {
    let mut buf = Vec::new();
    let mut d = Decoder::new()?;
    d.set_policy(policy);
    d.set_max_image_pixels(max_image_pixels);
    let tries = match on_error {
        OnError::Skip => source.len().min(PROBES),
        OnError::Raise => 1,
    };
    let mut first = None;
    for i in 0..tries {
        let probe = source.get(i, &mut buf).and_then(|item| match item.raw {
            Raw::Pixels(v) => Ok((v.width, v.height)),
            Raw::Encoded(bytes) => d
                .decode(bytes, channels, None)
                .map(|img| (img.width, img.height)),
        });
        match probe {
            Ok(size) => return Ok(size),
            Err(e) if e.kind().is_data() => {
                first.get_or_insert(locate(source, e, i));
            }
            Err(e) => return Err(e.at(i)),
        }
    }
    Err(first.expect("at least one sample was tried"))
}

/// Samples tried to learn the output size when none is set and bad samples are skipped.
const PROBES: usize = 64;
