//! The loader: worker threads that read, decode, transform and write samples straight into
//! the slots of pooled batch buffers, and a Rust iterator of batches in sampler order.
//!
//! # How a batch is made
//! The consumer's `next()` hands sample *tasks* (stream position, data set index, destination
//! slot) to the workers, up to `prefetch` batches ahead, and takes their results back in
//! stream order. A worker writes its sample directly into the destination slot: no staging
//! buffer, no copy. When a sample fails under [`OnError::Skip`], the batch is completed from
//! the following samples (as `tf.data`'s `ignore_errors` then `batch` would): samples already
//! written one slot too far are moved down once, dispatch pauses until the pipeline is empty,
//! and then continues at the corrected slot — so the cost of a bad file is one small bubble,
//! and the batches are identical whatever the number of workers or the timing.
//!
//! # Determinism
//! The epoch's order comes from the [`Sampler`] (a pure function of seed, epoch, rank, world
//! size and position), each sample's randomness from (seed, epoch, index), and batches are
//! assembled in stream order: the same seed gives bit-identical batches with 0, 1 or 16
//! workers, and `epoch_from(e, p)` yields exactly the tail of an uninterrupted epoch.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::batch::{AlignedAlloc, Allocator, Batch, Buffer, Pool};
use crate::decode::Decoder;
use crate::output::{DType, Layout, Normalize, OutputSpec, SrcType, Store};
use crate::rng::SampleRng;
use crate::sampler::{EpochOrder, Partition, Sampler};
use crate::source::{Raw, Source};
use crate::stats::{Counters, Stats};
use crate::transform::{Identity, SampleInfo, SlotWriter, Transform};
use crate::{Error, ErrorKind, ImageView, Result};

/// What to do with a sample that cannot be read or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop the epoch: `next()` returns the error (naming the file and sample), then `None`.
    #[default]
    Raise,
    /// Skip a sample that fails with a data error ([`ErrorKind::is_data`]: `Io`, `Format`,
    /// `Decode`), count it in [`Stats`], log it as a `tracing` warning, and complete the batch
    /// from the following samples so batch shapes stay fixed. Any other error (a panic, a
    /// usage error from a transform, ...) is raised as under [`OnError::Raise`].
    Skip,
}

impl std::str::FromStr for OnError {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "raise" | "error" | "fail" => Ok(OnError::Raise),
            "skip" => Ok(OnError::Skip),
            _ => Err(Error::usage(format!(
                "unknown error policy {s:?} (raise, skip)"
            ))),
        }
    }
}

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
pub struct LoaderBuilder<S> {
    source: S,
    batch_size: usize,
    shuffle: bool,
    num_workers: Option<usize>,
    prefetch: usize,
    drop_last: bool,
    seed: u64,
    size: Option<(usize, usize)>,
    channels: Option<usize>,
    dtype: DType,
    layout: Layout,
    normalize: Option<Normalize>,
    on_error: OnError,
    distributed: Option<(usize, usize)>,
    partition: Partition,
    allocator: Arc<dyn Allocator>,
    transform: Arc<dyn Transform>,
}

impl<S: Source + 'static> LoaderBuilder<S> {
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
    /// This process's rank and the world size for data-parallel training (default: the
    /// `RANK` and `WORLD_SIZE` environment variables that torchrun sets, else 0 of 1).
    pub fn distributed(mut self, rank: usize, world_size: usize) -> Self {
        self.distributed = Some((rank, world_size));
        self
    }
    /// How ranks are evened out (default [`Partition::Pad`], as DistributedSampler).
    pub fn partition(mut self, p: Partition) -> Self {
        self.partition = p;
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
        let sampler = Sampler::new(self.source.len())
            .shuffle(self.shuffle)
            .seed(self.seed)
            .partition(self.partition);
        let sampler = match self.distributed {
            Some((rank, world)) => sampler.distributed(rank, world)?,
            None => sampler.distributed_from_env()?,
        };
        let channels = self
            .channels
            .or_else(|| self.source.channels())
            .unwrap_or(3);
        if let Some(c) = self.source.channels() {
            if c != channels {
                return Err(Error::usage(format!(
                    "the source has {c} channel(s) per pixel; the loader cannot output {channels}"
                )));
            }
        }
        let size = match self.size.or_else(|| self.source.size()) {
            Some(s) => s,
            None => probe_size(&self.source, channels)?,
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
            counters: Counters::default(),
            active_gen: AtomicU64::new(0),
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
            let ctx = WorkerCtx::new(&spec, &*shared.transform)?;
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
            Some(WorkerCtx::new(&spec, &*shared.transform)?)
        } else {
            None
        };
        Ok(Loader {
            shared,
            sampler,
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
            gen: 0,
            state: EpochState {
                ring: VecDeque::with_capacity(window),
                batches: VecDeque::with_capacity(self.prefetch + 1),
                ..EpochState::default()
            },
        })
    }
}

/// Decodes the first sample at its stored size to learn the output size.
fn probe_size<S: Source>(source: &S, channels: usize) -> Result<(usize, usize)> {
    let mut buf = Vec::new();
    let item = source.get(0, &mut buf)?;
    match item.raw {
        Raw::Pixels(v) => Ok((v.width, v.height)),
        Raw::Encoded(bytes) => {
            let mut d = Decoder::new()?;
            let img = d.decode(bytes, channels, None).map_err(|e| {
                let e = e.at(0);
                match source.path(0) {
                    Some(p) => e.file(p),
                    None => e,
                }
            })?;
            Ok((img.width, img.height))
        }
    }
}

/// State shared by the consumer and the workers.
struct Shared<S> {
    source: S,
    spec: Arc<OutputSpec>,
    seed: u64,
    transform: Arc<dyn Transform>,
    counters: Counters,
    /// Tasks of any other generation are cancelled (answered without work).
    active_gen: AtomicU64,
    /// Results sent by the workers, in all.
    sent: AtomicU64,
    /// The consumer sleeps until `sent` reaches this; the worker that gets there rings `bell`.
    /// Waking the consumer per batch rather than per sample spares the workers a system call
    /// and an inter-processor interrupt for every sample.
    wake_at: AtomicU64,
    bell: Sender<()>,
}

impl<S: Source> Shared<S> {
    /// Adds the sample index and, where the error has none, the file.
    fn locate(&self, e: Error, index: usize) -> Error {
        let e = e.at(index);
        match (e.path().is_none(), self.source.path(index)) {
            (true, Some(p)) => e.file(p),
            _ => e,
        }
    }
}

/// Everything a worker reuses from sample to sample.
struct WorkerCtx {
    buf: Vec<u8>,
    decoder: Decoder,
    store_u8: Store,
    store_f32: Store,
    /// The transform's per-worker scratch ([`Transform::scratch`]).
    scratch: Box<dyn std::any::Any + Send>,
}

impl WorkerCtx {
    fn new(spec: &OutputSpec, transform: &dyn Transform) -> Result<WorkerCtx> {
        Ok(WorkerCtx {
            buf: Vec::new(),
            decoder: Decoder::new()?,
            store_u8: Store::new(spec, SrcType::U8)?,
            store_f32: Store::new(spec, SrcType::F32)?,
            scratch: transform.scratch(),
        })
    }
}

/// One sample to make: read, decode, transform, write into `slot`.
struct Task {
    gen: u64,
    epoch: u64,
    pos: usize,
    index: usize,
    slot: *mut u8,
}

// SAFETY: `slot` points into a pool buffer that the consumer keeps alive and does not touch
// until the task's result has come back (it drains every task before releasing a buffer);
// each slot is written by exactly one task at a time.
unsafe impl Send for Task {}

/// A task's outcome: the label, or why the sample failed.
struct Done {
    gen: u64,
    pos: usize,
    result: Result<Option<i64>>,
}

fn workers_gone() -> Error {
    Error::new(ErrorKind::Panic, "every worker thread has exited")
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "cancelled")
}

/// crossbeam allocates a thread's context, and a channel's list of waiting threads, the first
/// time a thread really blocks on the channel (after spinning): make that happen once, at
/// start-up, on an empty channel, so that steady state allocates nothing.
fn block_once<T>(rx: &Receiver<T>) {
    let _ = rx.recv_timeout(Duration::from_millis(2));
}

fn worker_main<S: Source>(
    sh: Arc<Shared<S>>,
    tasks: Receiver<Task>,
    results: Sender<Done>,
    mut ctx: WorkerCtx,
    ready: Sender<()>,
) {
    block_once(&tasks);
    let _ = ready.send(());
    drop(ready);
    for task in tasks.iter() {
        let result = if sh.active_gen.load(Ordering::Acquire) != task.gen {
            Err(cancelled())
        } else {
            run_task(&sh, &mut ctx, &task)
        };
        let done = Done {
            gen: task.gen,
            pos: task.pos,
            result,
        };
        if results.send(done).is_err() {
            break; // the loader is gone
        }
        let sent = sh.sent.fetch_add(1, Ordering::SeqCst) + 1;
        if sent >= sh.wake_at.load(Ordering::SeqCst) {
            let _ = sh.bell.try_send(()); // full: the consumer is already being woken
        }
    }
}

/// Runs one task, turning a panic into an error value (and rebuilding the worker's state,
/// which the panic may have left inconsistent).
fn run_task<S: Source>(sh: &Shared<S>, ctx: &mut WorkerCtx, task: &Task) -> Result<Option<i64>> {
    match panic::catch_unwind(AssertUnwindSafe(|| process(sh, ctx, task))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            if let Ok(fresh) = WorkerCtx::new(&sh.spec, &*sh.transform) {
                *ctx = fresh;
            }
            Err(sh.locate(
                Error::new(ErrorKind::Panic, format!("worker panicked: {msg}")),
                task.index,
            ))
        }
    }
}

fn process<S: Source>(sh: &Shared<S>, ctx: &mut WorkerCtx, task: &Task) -> Result<Option<i64>> {
    let spec = &*sh.spec;
    let c = &sh.counters;
    let WorkerCtx {
        buf,
        decoder,
        store_u8,
        store_f32,
        scratch,
    } = ctx;
    let at_source = sh.transform.samples_source();
    let t0 = Instant::now();
    let item = sh
        .source
        .get(task.index, buf)
        .map_err(|e| sh.locate(e, task.index))?;
    let t1 = Instant::now();
    let img: ImageView<'_> = match item.raw {
        Raw::Encoded(bytes) => {
            Counters::add(&c.bytes_read, bytes.len() as u64);
            if at_source {
                decoder.decode_reduced(bytes, spec.channels, (spec.width, spec.height))
            } else {
                decoder.decode(bytes, spec.channels, Some((spec.width, spec.height)))
            }
            .map_err(|e| sh.locate(e, task.index))?
        }
        Raw::Pixels(v) => {
            let elem = match v.pixels {
                crate::Pixels::U8(_) => 1,
                crate::Pixels::F32(_) => 4,
            };
            Counters::add(
                &c.bytes_read,
                (v.width * v.height * v.channels * elem) as u64,
            );
            if v.channels != spec.channels {
                return Err(sh.locate(
                    Error::new(
                        ErrorKind::Format,
                        format!(
                            "sample has {} channel(s), the loader outputs {}",
                            v.channels, spec.channels
                        ),
                    ),
                    task.index,
                ));
            }
            if at_source || (v.width, v.height) == (spec.width, spec.height) {
                v
            } else {
                decoder
                    .resize(v, spec.width, spec.height)
                    .map_err(|e| sh.locate(e, task.index))?
            }
        }
    };
    let t2 = Instant::now();
    // SAFETY: see `Task`: the slot is `sample_bytes` long, alive, and ours alone.
    let slot = unsafe { std::slice::from_raw_parts_mut(task.slot, spec.sample_bytes()) };
    let mut out = SlotWriter {
        slot,
        store_u8,
        store_f32,
        write_time: Duration::ZERO,
        scratch: &mut **scratch,
    };
    let mut rng = SampleRng::for_sample(sh.seed, task.epoch, task.index);
    let info = SampleInfo {
        index: task.index,
        epoch: task.epoch,
    };
    sh.transform
        .apply(info, &img, &mut rng, &mut out)
        .map_err(|e| sh.locate(e, task.index))?;
    let t3 = Instant::now();
    let write = out.write_time;
    Counters::add(&c.read_ns, (t1 - t0).as_nanos() as u64);
    Counters::add(&c.decode_ns, (t2 - t1).as_nanos() as u64);
    Counters::add(
        &c.transform_ns,
        (t3 - t2).saturating_sub(write).as_nanos() as u64,
    );
    Counters::add(&c.write_ns, write.as_nanos() as u64);
    Ok(item.label)
}

/// Where a dispatched sample stands.
enum Slot {
    Pending,
    Ready(Option<i64>),
    Failed(Error),
}

/// A dispatched stream position: where it was told to write, and its outcome.
struct Entry {
    dest: usize,
    state: Slot,
}

/// The consumer's bookkeeping for one pass over an epoch (reused across epochs).
#[derive(Default)]
struct EpochState {
    epoch: u64,
    order: Option<EpochOrder>,
    /// Entries for positions `done_pos ..`, in order.
    ring: VecDeque<Entry>,
    /// Batch buffers being filled; the front one is batch number `front_batch`.
    batches: VecDeque<Box<Buffer>>,
    front_batch: usize,
    /// Next stream position to dispatch, and the first one not yet taken in order.
    next_pos: usize,
    done_pos: usize,
    /// Destination (slot number counted from the start of this pass) of the next dispatch.
    next_dest: usize,
    /// Samples placed in their final slot.
    placed: usize,
    /// Tasks sent to workers whose results have not come back.
    outstanding: usize,
    /// A skipped sample shifted later ones: dispatch waits until the ring is empty.
    resync: bool,
    finished: bool,
    /// Slot numbers from this one on belong to a batch that `drop_last` drops.
    full_limit: usize,
}

/// Loads batches from a [`Source`]: see the [module docs](self).
///
/// ```
/// use stoker::{Loader, DType};
/// use stoker::source::NpySource;
/// let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy")).unwrap();
/// let mut loader = Loader::builder(source).batch_size(8).shuffle(true).seed(1).build().unwrap();
/// let mut seen = 0;
/// for batch in loader.epoch(0) {
///     let batch = batch.unwrap();
///     let images = batch.images::<f32>().unwrap(); // [8, 3, 144, 256], in [0, 1]
///     assert!(images.iter().all(|&x| (0.0..=1.0).contains(&x)));
///     seen += batch.len();
/// }
/// assert_eq!(seen, 32);
/// ```
pub struct Loader<S: Source + 'static> {
    shared: Arc<Shared<S>>,
    sampler: Sampler,
    pool: Pool,
    batch_size: usize,
    prefetch: usize,
    drop_last: bool,
    on_error: OnError,
    num_workers: usize,
    task_tx: Option<Sender<Task>>,
    result_rx: Receiver<Done>,
    bell_rx: Receiver<()>,
    /// Results taken from `result_rx`, in all (compared with `Shared::sent`).
    received: u64,
    workers: Vec<JoinHandle<()>>,
    inline: Option<WorkerCtx>,
    gen: u64,
    state: EpochState,
}

impl<S: Source + 'static> Loader<S> {
    /// Starts a builder over `source`.
    pub fn builder(source: S) -> LoaderBuilder<S> {
        LoaderBuilder {
            source,
            batch_size: 1,
            shuffle: false,
            num_workers: None,
            prefetch: 2,
            drop_last: false,
            seed: 0,
            size: None,
            channels: None,
            dtype: DType::F32,
            layout: Layout::Nchw,
            normalize: None,
            on_error: OnError::Raise,
            distributed: None,
            partition: Partition::Pad,
            allocator: Arc::new(AlignedAlloc),
            transform: Arc::new(Identity),
        }
    }

    /// The batches of `epoch`, in order.
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let mut loader = Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None)?)
    ///     .batch_size(10).build()?;
    /// let sizes: Vec<usize> = loader.epoch(0).map(|b| b.map(|b| b.len())).collect::<Result<_, _>>()?;
    /// assert_eq!(sizes, [10, 10, 10, 2]);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn epoch(&mut self, epoch: u64) -> Epoch<'_, S> {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from stream position `position` on (a [`Batch::next_position`]
    /// saved in a checkpoint): exactly the batches an uninterrupted epoch would yield after it.
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let mut loader = Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None)?)
    ///     .batch_size(8).shuffle(true).seed(3).build()?;
    /// let all: Vec<Vec<usize>> =
    ///     loader.epoch(5).map(|b| b.map(|b| b.indices().to_vec())).collect::<Result<_, _>>()?;
    /// // A checkpoint taken after the second batch stores its `next_position()` (here 16).
    /// let tail: Vec<Vec<usize>> =
    ///     loader.epoch_from(5, 16).map(|b| b.map(|b| b.indices().to_vec())).collect::<Result<_, _>>()?;
    /// assert_eq!(tail, all[2..]);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn epoch_from(&mut self, epoch: u64, position: usize) -> Epoch<'_, S> {
        self.drain();
        self.gen += 1;
        self.shared.active_gen.store(self.gen, Ordering::Release);
        let order = self.sampler.epoch(epoch);
        let len = order.len();
        let b = self.batch_size;
        let st = &mut self.state;
        st.epoch = epoch;
        st.next_pos = position.min(len);
        st.done_pos = st.next_pos;
        st.next_dest = 0;
        st.placed = 0;
        st.front_batch = 0;
        st.resync = false;
        st.finished = false;
        st.full_limit = if self.drop_last {
            (len - st.next_pos) / b * b
        } else {
            usize::MAX
        };
        st.order = Some(order);
        let error = (position > len).then(|| {
            Error::usage(format!(
                "resume position {position} is past the end of epoch {epoch} ({len} samples)"
            ))
        });
        Epoch {
            loader: self,
            error,
        }
    }

    /// Batches in one epoch when no sample is skipped.
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let l = Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None)?)
    ///     .batch_size(5).distributed(1, 2).build()?;
    /// assert_eq!(l.batches_per_epoch(), 4); // 16 samples for rank 1 of 2, in batches of 5
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.sampler.samples_per_rank();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// What the loader has done so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The output format of every sample.
    pub fn spec(&self) -> &OutputSpec {
        &self.shared.spec
    }

    /// The sampler deciding the order.
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.shared.source
    }

    /// Samples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Worker threads (0: inline).
    pub fn num_workers(&self) -> usize {
        self.num_workers
    }

    /// Batches prepared ahead.
    pub fn prefetch(&self) -> usize {
        self.prefetch
    }

    /// Name of the allocator of the batch buffers.
    pub fn allocator_name(&self) -> &str {
        self.pool.allocator_name()
    }

    /// Cancels what is in flight, waits for the workers to answer every task, and returns
    /// every buffer of the pass to the pool.
    fn drain(&mut self) {
        self.shared.active_gen.store(0, Ordering::Release);
        while self.state.outstanding > 0 {
            match self.result_rx.recv() {
                Ok(_) => {
                    self.state.outstanding -= 1;
                    self.received += 1;
                }
                Err(_) => break, // every worker is gone: nothing can still write
            }
        }
        self.state.outstanding = 0;
        self.state.ring.clear();
        while let Some(b) = self.state.batches.pop_front() {
            self.pool.put_back(b);
        }
        self.state.order = None;
        self.state.finished = true;
    }

    /// Hands out sample tasks up to the prefetch window.
    fn dispatch(&mut self) {
        let b = self.batch_size;
        let window = self.prefetch * b;
        let st = &mut self.state;
        let Some(order) = st.order.as_ref() else {
            return;
        };
        while !st.resync
            && st.next_pos < order.len()
            && st.ring.len() < window
            && st.next_dest < st.full_limit
        {
            let d = st.next_dest;
            let k = d / b - st.front_batch;
            if k >= self.prefetch {
                break;
            }
            if k >= st.batches.len() {
                match self.pool.try_take() {
                    Some(mut buf) => {
                        buf.epoch = st.epoch;
                        st.batches.push_back(buf);
                    }
                    None => break,
                }
            }
            let slot = st.batches[k].slot_ptr(d % b, self.shared.spec.sample_bytes());
            let task = Task {
                gen: self.gen,
                epoch: st.epoch,
                pos: st.next_pos,
                index: order.index(st.next_pos),
                slot,
            };
            st.next_pos += 1;
            st.next_dest += 1;
            match (&self.task_tx, self.inline.as_mut()) {
                (_, Some(ctx)) => {
                    let state = match run_task(&self.shared, ctx, &task) {
                        Ok(label) => Slot::Ready(label),
                        Err(e) => Slot::Failed(e),
                    };
                    st.ring.push_back(Entry { dest: d, state });
                }
                (Some(tx), None) => {
                    st.ring.push_back(Entry {
                        dest: d,
                        state: Slot::Pending,
                    });
                    // Never blocks: at most `window` tasks are in flight and the channel
                    // holds `window`. Fails only if every worker is gone.
                    if tx.send(task).is_err() {
                        let e = workers_gone();
                        st.ring.back_mut().expect("just pushed").state = Slot::Failed(e);
                    } else {
                        st.outstanding += 1;
                    }
                }
                (None, None) => unreachable!("a loader has workers or an inline context"),
            }
        }
    }

    /// Takes finished entries in stream order, placing each sample in its final slot.
    fn advance(&mut self) -> Result<()> {
        let b = self.batch_size;
        let sample_bytes = self.shared.spec.sample_bytes();
        let st = &mut self.state;
        // Stops when the front batch is full, so that it is handed out before any later
        // error is raised.
        while st.placed < (st.front_batch + 1) * b
            && matches!(st.ring.front(), Some(e) if !matches!(e.state, Slot::Pending))
        {
            let entry = st.ring.pop_front().expect("front exists");
            let pos = st.done_pos;
            st.done_pos += 1;
            match entry.state {
                Slot::Ready(label) => {
                    let t = st.placed;
                    let k = t / b - st.front_batch;
                    if entry.dest != t {
                        // A skip earlier in the stream: move the sample down to its slot.
                        let kd = entry.dest / b - st.front_batch;
                        let src = st.batches[kd].slot_ptr(entry.dest % b, sample_bytes);
                        let dst = st.batches[k].slot_ptr(t % b, sample_bytes);
                        // SAFETY: two distinct slots of live pool buffers; no task writes
                        // either (dispatch waits for the ring to empty after a skip, and
                        // destinations before `entry.dest` are final).
                        unsafe { std::ptr::copy_nonoverlapping(src, dst, sample_bytes) };
                    }
                    let order = st.order.as_ref().expect("epoch in progress");
                    let buf = &mut st.batches[k];
                    if t.is_multiple_of(b) {
                        buf.first_position = pos;
                    }
                    buf.labels.push(label.unwrap_or(-1));
                    buf.indices.push(order.index(pos));
                    buf.len = t % b + 1;
                    buf.next_position = pos + 1;
                    st.placed += 1;
                    Counters::add(&self.shared.counters.samples, 1);
                }
                // Only data errors (one bad sample) are skipped: a usage, device or panic
                // error is raised whatever the policy.
                Slot::Failed(e) => match self.on_error {
                    OnError::Skip if e.kind().is_data() => {
                        tracing::warn!(
                            index = ?e.index(),
                            path = ?e.path(),
                            kind = e.kind().as_str(),
                            message = e.message(),
                            "stoker: skipping a sample that failed"
                        );
                        self.shared.counters.skip(&e);
                        st.resync = true;
                    }
                    OnError::Raise | OnError::Skip => return Err(e),
                },
                Slot::Pending => unreachable!("loop condition"),
            }
        }
        if st.resync && st.ring.is_empty() {
            st.resync = false;
            st.next_dest = st.placed;
            let remaining = st.order.as_ref().map_or(0, |o| o.len() - st.next_pos);
            if st.full_limit != usize::MAX {
                // The batches that can still be filled completely, given what is left.
                st.full_limit = (st.placed + remaining) / b * b;
            }
        }
        Ok(())
    }

    /// Records one worker result in its ring entry.
    fn record(&mut self, done: Done) {
        self.state.outstanding -= 1;
        self.received += 1;
        debug_assert_eq!(done.gen, self.gen, "stale results are drained");
        let i = done.pos - self.state.done_pos;
        self.state.ring[i].state = match done.result {
            Ok(label) => Slot::Ready(label),
            Err(e) => Slot::Failed(e),
        };
    }

    /// Takes every result that has arrived; `Ok(n)` with how many.
    fn take_arrived(&mut self) -> Result<usize> {
        let mut n = 0;
        loop {
            match self.result_rx.try_recv() {
                Ok(done) => {
                    self.record(done);
                    n += 1;
                }
                Err(TryRecvError::Empty) => return Ok(n),
                Err(TryRecvError::Disconnected) => return Err(workers_gone()),
            }
        }
    }

    /// Waits for results: sleeps until enough have arrived to fill the front batch (one
    /// wake-up per batch, not per sample), then takes them.
    fn receive(&mut self) -> Result<()> {
        if self.take_arrived()? > 0 {
            return Ok(());
        }
        let b = self.batch_size;
        let st = &self.state;
        let room = ((st.front_batch + 1) * b - st.placed).clamp(1, st.ring.len().max(1));
        let needed = st
            .ring
            .iter()
            .take(room)
            .filter(|e| matches!(e.state, Slot::Pending))
            .count()
            .max(1);
        let target = self.received + needed as u64;
        let t = Instant::now();
        self.shared.wake_at.store(target, Ordering::SeqCst);
        while self.shared.sent.load(Ordering::SeqCst) < target {
            if let Err(RecvTimeoutError::Timeout) =
                self.bell_rx.recv_timeout(Duration::from_millis(50))
            {
                if self.workers.iter().all(|w| w.is_finished()) {
                    return Err(workers_gone());
                }
            }
        }
        self.shared.wake_at.store(u64::MAX, Ordering::SeqCst);
        Counters::add(&self.shared.counters.wait_ns, t.elapsed().as_nanos() as u64);
        self.take_arrived().map(|_| ())
    }

    /// The front batch, when it is full (or the last one of the pass).
    fn take_ready(&mut self) -> Option<Batch> {
        let b = self.batch_size;
        let st = &mut self.state;
        let full = st.placed >= (st.front_batch + 1) * b;
        if !(full || (st.finished && st.placed > st.front_batch * b)) {
            return None;
        }
        let buf = st.batches.pop_front()?;
        st.front_batch += 1;
        Counters::add(&self.shared.counters.batches, 1);
        Some(self.pool.hand_out(buf))
    }

    fn next_batch(&mut self) -> Option<Result<Batch>> {
        loop {
            if let Some(batch) = self.take_ready() {
                return Some(Ok(batch));
            }
            if self.state.finished {
                return None;
            }
            let st = &self.state;
            let len = st.order.as_ref().map_or(0, |o| o.len());
            let exhausted = st.next_pos >= len || (!st.resync && st.next_dest >= st.full_limit);
            if st.ring.is_empty() && exhausted {
                // Every sample of the pass is placed: the last batch may be partial.
                self.state.finished = true;
                let batch = if self.drop_last {
                    None
                } else {
                    self.take_ready()
                };
                self.drain();
                return batch.map(Ok);
            }
            self.dispatch();
            if self.state.ring.is_empty() {
                let e = Error::new(
                    ErrorKind::PoolExhausted,
                    format!(
                        "all {} batch buffers are held by the consumer: drop batches before \
                         asking for more, or raise prefetch",
                        self.pool.total()
                    ),
                );
                self.drain();
                return Some(Err(e));
            }
            let front_pending =
                matches!(self.state.ring.front(), Some(e) if matches!(e.state, Slot::Pending));
            let step = if front_pending {
                self.receive().and_then(|()| self.advance())
            } else {
                self.advance()
            };
            if let Err(e) = step {
                self.drain();
                return Some(Err(e));
            }
        }
    }
}

impl<S: Source + 'static> Drop for Loader<S> {
    fn drop(&mut self) {
        self.drain();
        self.task_tx = None; // workers see the channel close and exit
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// An iterator over the batches of one epoch; see [`Loader::epoch`].
///
/// Dropping it mid-epoch cancels the samples in flight (workers answer them without work)
/// and returns their buffers to the pool; the workers stay alive for the next epoch.
pub struct Epoch<'a, S: Source + 'static> {
    loader: &'a mut Loader<S>,
    error: Option<Error>,
}

impl<S: Source + 'static> Iterator for Epoch<'_, S> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if let Some(e) = self.error.take() {
            self.loader.drain();
            return Some(Err(e));
        }
        self.loader.next_batch()
    }
}

impl<S: Source + 'static> Drop for Epoch<'_, S> {
    fn drop(&mut self) {
        self.loader.drain();
    }
}
