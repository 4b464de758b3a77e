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

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::batch::{Batch, Buffer, Pool};
use crate::output::OutputSpec;
use crate::sampler::{
    Checkpoint, DataFingerprint, EpochOrder, OrderSettings, RankProgress, Sampler,
};
use crate::source::Source;
use crate::stats::{Counters, Stats};
use crate::{Error, ErrorKind, Result};

mod builder;
mod labels;
mod policy;
mod schedule;
mod worker;

pub use builder::LoaderBuilder;
pub use policy::{OnError, SkipBound};
use schedule::{Dispatch, Outcome, Placement, Schedule};
use worker::{Done, Shared, Task, WorkerCtx, run_task, workers_gone};

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
    /// The data set, as a checkpoint identifies it.
    data: DataFingerprint,
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
    generation: u64,
    /// Which position goes into which slot, and when a batch is complete.
    schedule: Schedule,
    /// Batch buffers being filled; the front one is the schedule's front batch.
    batches: VecDeque<Box<Buffer>>,
    /// The order of the pass in progress.
    order: Option<EpochOrder>,
    epoch: u64,
    /// The pass's first position and end (`None`: the epoch's end), as `begin` was given them.
    pass: (usize, Option<usize>),
    /// The positions the next epoch's pass is expected to cover, when the caller knows better
    /// than the rule in `dispatch_ahead` (reset by `begin`).
    next_pass: Option<(usize, Option<usize>)>,
    /// Tasks of this pass sent to workers whose results have not come back.
    outstanding: usize,
    /// Tasks in flight at most, over both passes (what the task and result channels hold).
    window: usize,
    /// The pass expected next, started while this one ends.
    ahead: Ahead,
}

/// Work on the pass expected next (epoch `e + 1`), started once every position of the pass
/// in progress is dispatched, so the workers do not idle at an epoch boundary. All its
/// buffers are allocated with the loader.
pub(crate) struct Ahead {
    /// `LoaderBuilder::prefetch_next_epoch`, and there are worker threads.
    enabled: bool,
    /// Started (and not yet taken over or discarded).
    live: bool,
    generation: u64,
    epoch: u64,
    pass: (usize, Option<usize>),
    schedule: Schedule,
    batches: VecDeque<Box<Buffer>>,
    order: Option<EpochOrder>,
    outstanding: usize,
}

impl<S: Source + 'static> Loader<S> {
    /// Starts a builder over `source`.
    pub fn builder(source: S) -> LoaderBuilder<S> {
        LoaderBuilder::new(source)
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
        let error = self.begin(epoch, position, None);
        Epoch {
            loader: self,
            error,
        }
    }

    /// The batches of positions `positions` of `epoch`'s order: one part of an epoch split
    /// into contiguous ranges (one per device, say), each shuffled globally as the whole
    /// epoch is. The ranges of a split cover the epoch exactly once; batches start at
    /// `positions.start`, and the last one of the range may be partial (or dropped with
    /// `drop_last`).
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let mut loader = Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None)?)
    ///     .batch_size(8).shuffle(true).seed(3).build()?;
    /// let epoch = |l: &mut Loader<_>, r: std::ops::Range<usize>| -> stoker::Result<Vec<usize>> {
    ///     let mut seen = Vec::new();
    ///     for b in l.epoch_range(2, r) { seen.extend_from_slice(b?.indices()); }
    ///     Ok(seen)
    /// };
    /// let whole = epoch(&mut loader, 0..32)?;
    /// let halves = [epoch(&mut loader, 0..20)?, epoch(&mut loader, 20..32)?].concat();
    /// assert_eq!(halves, whole);
    /// assert!(loader.epoch_range(2, 0..33).next().unwrap().is_err()); // past the end
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn epoch_range(&mut self, epoch: u64, positions: Range<usize>) -> Epoch<'_, S> {
        let error = self.begin(epoch, positions.start, Some(positions.end));
        Epoch {
            loader: self,
            error,
        }
    }

    /// Starts a pass over positions `start..end` (`end`: the epoch's end when `None`) of
    /// `epoch`; an invalid range gives the error to return first (the pass then yields
    /// nothing).
    pub(crate) fn begin(&mut self, epoch: u64, start: usize, end: Option<usize>) -> Option<Error> {
        if self.ahead.live
            && self.schedule.is_finished()
            && self.outstanding == 0
            && (self.ahead.epoch, self.ahead.pass) == (epoch, (start, end))
        {
            self.take_over_ahead();
            return None;
        }
        self.drain();
        self.generation = self.generation.max(self.ahead.generation) + 1;
        self.shared
            .min_gen
            .store(self.generation, Ordering::Release);
        let order = self.sampler.epoch(epoch);
        let len = order.len();
        self.epoch = epoch;
        self.pass = (start, end);
        self.next_pass = None;
        let error = match end {
            None if start > len => Some(format!(
                "resume position {start} is past the end of epoch {epoch} ({len} samples)"
            )),
            Some(end) if end > len => Some(format!(
                "positions {start}..{end} reach past the end of epoch {epoch} ({len} samples)"
            )),
            Some(end) if start > end => Some(format!("positions {start}..{end} are reversed")),
            _ => None,
        };
        let end = end.unwrap_or(len).min(len);
        self.schedule.begin(end, start);
        self.shared.source.will_read(&order, start..end);
        self.order = Some(order);
        error.map(Error::usage)
    }

    /// The pass started ahead becomes the pass in progress (this one has ended: nothing of
    /// it is in flight). Swaps, so nothing is allocated.
    fn take_over_ahead(&mut self) {
        debug_assert!(self.batches.is_empty() && self.outstanding == 0);
        let a = &mut self.ahead;
        std::mem::swap(&mut self.schedule, &mut a.schedule);
        std::mem::swap(&mut self.batches, &mut a.batches);
        self.order = a.order.take();
        self.generation = a.generation;
        self.epoch = a.epoch;
        self.pass = a.pass;
        self.next_pass = None;
        self.outstanding = std::mem::take(&mut a.outstanding);
        a.live = false;
        a.schedule.finish();
        // Nothing older than this pass is in flight.
        self.shared
            .min_gen
            .store(self.generation, Ordering::Release);
    }

    /// Starts (once every position of the pass in progress is dispatched) and feeds the pass
    /// expected next: epoch `e + 1` from position 0 after a pass to the epoch's end, the same
    /// positions of `e + 1` after an [`epoch_range`](Self::epoch_range) pass. Its tasks go
    /// out only while both passes together stay within the window, from buffers the pool can
    /// spare.
    fn dispatch_ahead(&mut self) {
        if !self.ahead.enabled || !(self.schedule.is_finished() || self.schedule.exhausted()) {
            return;
        }
        let Some(tx) = self.task_tx.as_ref() else {
            return;
        };
        let a = &mut self.ahead;
        if !a.live {
            let Some(epoch) = self.epoch.checked_add(1) else {
                return;
            };
            let order = self.sampler.epoch(epoch);
            let len = order.len();
            let pass = match (self.next_pass, self.pass) {
                (Some(next), _) => next,
                (None, (_, None)) => (0, None),
                (None, range) => range,
            };
            let end = pass.1.unwrap_or(len);
            if pass.0 > end || end > len {
                return; // the same range does not fit the next epoch: nothing to guess
            }
            a.generation = self.generation + 1;
            a.epoch = epoch;
            a.pass = pass;
            a.schedule.begin(end, pass.0);
            self.shared.source.will_read_next(&order, pass.0..end);
            a.order = Some(order);
            a.live = true;
        }
        let order = a.order.as_ref().expect("a live pass has its order");
        let sample_bytes = self.shared.spec.sample_bytes();
        while self.outstanding + a.outstanding < self.window {
            let Some(d) = a.schedule.peek() else { break };
            let Some(task) = next_task(
                &mut self.pool,
                &mut a.batches,
                d,
                a.epoch,
                a.generation,
                order,
                sample_bytes,
            ) else {
                break;
            };
            // Never blocks: fewer than `window` tasks are in flight over both passes, and the
            // channel holds `window`. A failed send means every worker is gone; the pass in
            // progress reports that, so guessing just stops.
            if tx.send(task).is_err() {
                break;
            }
            a.outstanding += 1;
            a.schedule.push(Outcome::Pending);
        }
    }

    /// The positions of the pass expected after this one (for the next epoch), where the
    /// default guess (from 0 after a pass to the epoch's end, the same range after a range)
    /// is wrong: a resumed slice's next epoch starts at the slice's start.
    #[cfg_attr(not(feature = "burn"), allow(dead_code))]
    pub(crate) fn set_next_pass(&mut self, start: usize, end: Option<usize>) {
        self.next_pass = Some((start, end));
    }

    /// The pass in progress has handed out its last batch; every one of its tasks has been
    /// answered. Its buffers go back to the pool, and the workers go on with the next pass.
    fn end_pass(&mut self) {
        debug_assert_eq!(self.outstanding, 0);
        self.schedule.finish();
        while let Some(b) = self.batches.pop_front() {
            self.pool.put_back(b);
        }
        self.order = None;
        self.dispatch_ahead();
    }

    /// This rank's checkpoint part at `position` of `epoch` (a [`Batch::next_position`]):
    /// the positions `0..position` of its order were consumed. Gather every rank's part and
    /// [`Checkpoint::merge`] them (or, when every rank stands at the same position, use
    /// [`Checkpoint::every_rank_alike`]); the merged checkpoint resumes at any world size
    /// ([`resume`](Self::resume)). In an epoch this loader resumed, the part carries the
    /// positions consumed before, so resumes chain. An example is on [`Checkpoint`].
    pub fn checkpoint(&self, epoch: u64, position: usize) -> Checkpoint {
        let len = self.sampler.epoch(epoch).len();
        self.checkpoint_part(epoch, 0..len, position)
    }

    /// A checkpoint part for positions `positions` of this rank's order of `epoch`, of which
    /// `positions.start..position` were consumed.
    pub(crate) fn checkpoint_part(
        &self,
        epoch: u64,
        positions: Range<usize>,
        position: usize,
    ) -> Checkpoint {
        let s = &self.sampler;
        Checkpoint {
            version: Checkpoint::VERSION,
            epoch,
            seed: s.seed_value(),
            data: self.data.clone(),
            order: OrderSettings {
                shuffle: s.is_shuffled(),
                order: s.order_mode(),
                partition: s.partition_mode(),
                drop_last: self.drop_last,
            },
            consumed: s.consumed_before(epoch).to_vec(),
            ranks: vec![RankProgress {
                rank: s.rank(),
                world_size: s.world_size(),
                positions: positions.start as u64..positions.end as u64,
                position: position.clamp(positions.start, positions.end) as u64,
            }],
        }
    }

    /// Resumes from a merged `checkpoint` taken at any world size: the next pass of its
    /// epoch ([`epoch`](Self::epoch), or [`epoch_from`](Self::epoch_from) with a position of
    /// the resumed order) deals out across this loader's ranks exactly the global positions
    /// no rank consumed, each once (see [`Checkpoint`] for the rest of an epoch under
    /// [`Partition::Pad`](crate::Partition::Pad) and `Drop`); the epochs after it are whole.
    /// A pass in progress is cancelled.
    ///
    /// A usage error, naming the field, when the checkpoint is of another data set (sample
    /// count, shard names and sizes), seed or order (shuffle, order mode, partition,
    /// `drop_last`), or is a part not yet merged.
    pub fn resume(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let mine = self.checkpoint_part(checkpoint.epoch, 0..0, 0);
        checkpoint.check_resumable(&mine)?;
        self.drain();
        self.sampler = self
            .sampler
            .clone()
            .resume_epoch(checkpoint.epoch, &checkpoint.consumed)?;
        Ok(())
    }

    /// Positions of this rank's order of `epoch` (shorter than
    /// [`Sampler::samples_per_rank`] for an epoch [`resume`](Self::resume)d).
    pub fn epoch_len(&self, epoch: u64) -> usize {
        self.sampler.epoch(epoch).len()
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
    pub(crate) fn drain(&mut self) {
        self.shared.min_gen.store(u64::MAX, Ordering::Release);
        while self.outstanding + self.ahead.outstanding > 0 {
            match self.result_rx.recv() {
                Ok(done) => {
                    if self.ahead.live && done.generation == self.ahead.generation {
                        self.ahead.outstanding -= 1;
                    } else {
                        self.outstanding -= 1;
                    }
                    self.received += 1;
                }
                Err(_) => break, // every worker is gone: nothing can still write
            }
        }
        self.outstanding = 0;
        self.schedule.finish();
        while let Some(b) = self.batches.pop_front() {
            self.pool.put_back(b);
        }
        self.order = None;
        let a = &mut self.ahead;
        a.outstanding = 0;
        a.live = false;
        a.schedule.finish();
        a.order = None;
        while let Some(b) = a.batches.pop_front() {
            self.pool.put_back(b);
        }
    }

    /// Ends the pass in progress: [`drain`](Self::drain) if it is still running (work ahead
    /// included), nothing if it ended by itself (then the work ahead goes on).
    pub(crate) fn abandon(&mut self) {
        if !self.schedule.is_finished() || self.outstanding > 0 {
            self.drain();
        }
    }

    /// Hands out sample tasks as far as the schedule allows.
    fn dispatch(&mut self) {
        let Some(order) = self.order.as_ref() else {
            return;
        };
        let sample_bytes = self.shared.spec.sample_bytes();
        while let Some(d) = self.schedule.peek() {
            let Some(task) = next_task(
                &mut self.pool,
                &mut self.batches,
                d,
                self.epoch,
                self.generation,
                order,
                sample_bytes,
            ) else {
                break;
            };
            let outcome = match (&self.task_tx, self.inline.as_mut()) {
                (_, Some(ctx)) => match run_task(&self.shared, ctx, &task) {
                    Ok(label) => Outcome::Ready(label),
                    Err(e) => Outcome::Failed(e),
                },
                // Never blocks: at most `window` tasks are in flight and the channel holds
                // `window`. Fails only if every worker is gone.
                (Some(tx), None) => match tx.send(task) {
                    Ok(()) => {
                        self.outstanding += 1;
                        Outcome::Pending
                    }
                    Err(_) => Outcome::Failed(workers_gone()),
                },
                (None, None) => unreachable!("a loader has workers or an inline context"),
            };
            self.schedule.push(outcome);
        }
    }

    /// Takes finished samples in stream order, placing each in its final slot.
    fn advance(&mut self) -> Result<()> {
        let sample_bytes = self.shared.spec.sample_bytes();
        let b = self.batch_size;
        let (batches, order, counters) = (&mut self.batches, &self.order, &self.shared.counters);
        let order = order.as_ref().expect("epoch in progress");
        let place = |p: Placement| {
            if p.from != p.to {
                // A skip earlier in the stream: move the sample down to its slot.
                let src = batches[p.from.0].slot_ptr(p.from.1, sample_bytes);
                let dst = batches[p.to.0].slot_ptr(p.to.1, sample_bytes);
                // SAFETY: two distinct slots of live pool buffers, each `sample_bytes` long and
                // in bounds (asserted by `slot_ptr`), so they do not overlap; no task writes
                // either (the schedule dispatches nothing after a skip until the ring is empty,
                // and destinations before `from` are final).
                unsafe { std::ptr::copy_nonoverlapping(src, dst, sample_bytes) };
            }
            let buf = &mut batches[p.to.0];
            if p.to.1 == 0 {
                buf.first_position = p.pos;
            }
            buf.labels.push(p.label.unwrap_or(-1));
            buf.indices.push(order.index(p.pos));
            buf.len = p.to.1 + 1;
            buf.next_position = p.pos + 1;
            debug_assert!(buf.len <= b);
            Counters::add(&counters.samples, 1);
        };
        let skip = |e: &Error| {
            tracing::warn!(
                index = ?e.index(),
                path = ?e.path(),
                kind = e.kind().as_str(),
                message = e.message(),
                "stoker: skipping a sample that failed"
            );
            counters.skip(e);
        };
        self.schedule.advance(self.on_error, place, skip)
    }

    /// Records one worker result.
    fn record(&mut self, done: Done) {
        self.received += 1;
        let outcome = match done.result {
            Ok(label) => Outcome::Ready(label),
            Err(e) => Outcome::Failed(e),
        };
        if self.ahead.live && done.generation == self.ahead.generation {
            self.ahead.outstanding -= 1;
            self.ahead.schedule.record(done.pos, outcome);
            return;
        }
        self.outstanding -= 1;
        debug_assert_eq!(
            done.generation, self.generation,
            "stale results are drained"
        );
        self.schedule.record(done.pos, outcome);
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
    /// wake-up per batch, not per sample), then takes them. `Ok(false)` when `deadline` came
    /// first (nothing is lost: the results are taken on the next call).
    fn receive(&mut self, deadline: Option<Instant>) -> Result<bool> {
        if self.take_arrived()? > 0 {
            return Ok(true);
        }
        let target = self.received + self.schedule.pending_for_front() as u64;
        let t = Instant::now();
        self.shared.wake_at.store(target, Ordering::SeqCst);
        let mut arrived = true;
        while self.shared.sent.load(Ordering::SeqCst) < target {
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(Duration::from_millis(50)),
                    _ => {
                        arrived = false;
                        break;
                    }
                },
                None => Duration::from_millis(50),
            };
            if let Err(RecvTimeoutError::Timeout) = self.bell_rx.recv_timeout(wait)
                && self.workers.iter().all(|w| w.is_finished())
            {
                self.shared.wake_at.store(u64::MAX, Ordering::SeqCst);
                return Err(workers_gone());
            }
        }
        self.shared.wake_at.store(u64::MAX, Ordering::SeqCst);
        Counters::add(&self.shared.counters.wait_ns, t.elapsed().as_nanos() as u64);
        if !arrived {
            return Ok(false);
        }
        self.take_arrived().map(|_| true)
    }

    /// The front batch, when it is full (or the last one of the pass).
    fn take_ready(&mut self) -> Option<Batch> {
        if !self.schedule.front_ready() {
            return None;
        }
        let buf = self.batches.pop_front()?;
        self.schedule.pop_front();
        Counters::add(&self.shared.counters.batches, 1);
        Some(self.pool.hand_out(buf))
    }

    /// The next batch of the pass that [`begin_epoch`](Self::begin_epoch) started (or
    /// `None` at its end): what an [`Epoch`] yields, for code that cannot hold the borrow of
    /// an `Epoch` (a binding to another language, a loader kept in a struct). Blocks until
    /// the batch is ready.
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let mut loader = Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None)?)
    ///     .batch_size(10).build()?;
    /// loader.begin_epoch(0, 20)?;
    /// let mut sizes = Vec::new();
    /// while let Some(b) = loader.next_batch() {
    ///     sizes.push(b?.len());
    /// }
    /// assert_eq!(sizes, [10, 2]);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn next_batch(&mut self) -> Option<Result<Batch>> {
        match self.poll(None) {
            Poll::Ready(next) => next,
            Poll::Pending => unreachable!("no deadline"),
        }
    }

    /// [`next_batch`](Self::next_batch), waiting at most about `wait` for samples to arrive:
    /// `Poll::Pending` when the batch is not ready by then. Call again to go on waiting (no
    /// sample is lost): a caller that must stay responsive (to a signal, a cancellation)
    /// checks between calls.
    ///
    /// ```
    /// # use std::{task::Poll, time::Duration};
    /// # use stoker::{Loader, source::NpySource};
    /// let mut loader = Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None)?)
    ///     .batch_size(16).build()?;
    /// loader.begin_epoch(0, 0)?;
    /// let mut batches = 0;
    /// loop {
    ///     match loader.poll_batch(Duration::from_millis(10)) {
    ///         Poll::Pending => continue, // check for a signal here
    ///         Poll::Ready(Some(b)) => { b?; batches += 1; }
    ///         Poll::Ready(None) => break,
    ///     }
    /// }
    /// assert_eq!(batches, 2);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn poll_batch(&mut self, wait: Duration) -> Poll<Option<Result<Batch>>> {
        self.poll(Some(Instant::now() + wait))
    }

    /// Starts `epoch` at stream position `position` for [`next_batch`](Self::next_batch) and
    /// [`poll_batch`](Self::poll_batch), as [`epoch_from`](Self::epoch_from) does for an
    /// iterator; a pass still in progress is cancelled first. A position past the epoch's end
    /// is a usage error.
    pub fn begin_epoch(&mut self, epoch: u64, position: usize) -> Result<()> {
        match self.begin(epoch, position, None) {
            Some(e) => {
                self.drain();
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Ends the pass in progress, as dropping an [`Epoch`] does: samples in flight are
    /// cancelled and their buffers go back to the pool (after the pass's last batch, nothing
    /// is cancelled, and the next epoch's work started ahead goes on).
    pub fn end_epoch(&mut self) {
        self.abandon();
    }

    fn poll(&mut self, deadline: Option<Instant>) -> Poll<Option<Result<Batch>>> {
        Poll::Ready(loop {
            if let Some(batch) = self.take_ready() {
                break Some(Ok(batch));
            }
            if self.schedule.is_finished() {
                break None;
            }
            if self.schedule.ring_is_empty() && self.schedule.exhausted() {
                // Every sample of the pass is placed: the last batch may be partial.
                if let Err(e) = self.schedule.check_end() {
                    self.drain();
                    break Some(Err(e));
                }
                self.schedule.finish();
                let batch = if self.drop_last {
                    None
                } else {
                    self.take_ready()
                };
                self.end_pass();
                break batch.map(Ok);
            }
            self.dispatch();
            self.dispatch_ahead();
            if self.schedule.ring_is_empty() {
                let e = Error::new(
                    ErrorKind::PoolExhausted,
                    format!(
                        "all {} batch buffers are held by the consumer: drop batches before \
                         asking for more, or raise prefetch",
                        self.pool.total()
                    ),
                );
                self.drain();
                break Some(Err(e));
            }
            let step = if self.schedule.front_pending() {
                match self.receive(deadline) {
                    Ok(true) => self.advance(),
                    Ok(false) => return Poll::Pending,
                    Err(e) => Err(e),
                }
            } else {
                self.advance()
            };
            if let Err(e) = step {
                self.drain();
                break Some(Err(e));
            }
        })
    }
}

/// The task for dispatch `d` of a pass (of `epoch`, `generation`), taking the pass's next batch
/// buffer from the pool when `d` is the first slot past those it holds; `None` when the pool
/// has none to spare.
fn next_task(
    pool: &mut Pool,
    batches: &mut VecDeque<Box<Buffer>>,
    d: Dispatch,
    epoch: u64,
    generation: u64,
    order: &EpochOrder,
    sample_bytes: usize,
) -> Option<Task> {
    if d.buffer >= batches.len() {
        let mut buf = pool.try_take()?;
        buf.epoch = epoch;
        batches.push_back(buf);
    }
    Some(Task {
        generation,
        epoch,
        pos: d.pos,
        index: order.index(d.pos),
        slot: batches[d.buffer].slot_ptr(d.slot, sample_bytes),
    })
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
        self.loader.abandon();
    }
}
