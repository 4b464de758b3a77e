//! burn: a [`DataLoader`] over a stoker [`Loader`], batches as burn tensors.
//!
//! [`BurnLoader`] implements `burn::data::dataloader::DataLoader<BurnBatch>`, so it goes
//! wherever burn takes a data loader (its `Learner`, or a loop of your own):
//!
//! - [`iter`](DataLoader::iter) yields one epoch per call, in the loader's deterministic
//!   order (a pure function of seed, epoch, rank and world size); the epoch counter starts at
//!   0 and can be set for a resume ([`BurnLoader::set_epoch`], [`BurnLoader::resume`]);
//!   `progress()` counts samples.
//! - [`slice(start, end)`](DataLoader::slice) takes positions `start..end` of every epoch's
//!   shuffled order, so the slices burn's multi-device split makes cover each epoch exactly
//!   once with one global shuffle (burn's own loader shuffles inside fixed slices). **Each
//!   slice owns its own [`Loader`]**, built on its first `iter()`, with the workers divided
//!   in proportion to its share of the samples (at least one).
//! - [`to_device`](DataLoader::to_device) shares the loader (and its workers) and creates the
//!   tensors on the given device. Two iterators of one loader cannot run at once: the second
//!   yields an error instead of waiting.
//! - Errors become burn's `DatasetError`, wrapping the [`Error`] (path, sample index, kind):
//!   `err.source()` downcasts to [`Error`].
//!
//! # No copy on the host
//! The images tensor owns the stoker [`Batch`] (burn's `Bytes` over an allocation controller
//! holding it): making the tensor copies nothing, and the buffer goes back to the loader's
//! pool when burn drops the tensor. On a CPU backend (flex) the hand-off of a
//! `[256, 3, 144, 256]` f32 batch takes microseconds where a copy takes tens of
//! milliseconds (`cargo bench --features burn --bench burn`); a GPU backend copies once,
//! from pinned memory when the loader's allocator pins it. The pool holds `prefetch + 2`
//! buffers, so keep at most two batches alive, as a training step does.
//!
//! The loader's dtype must be f32, f16 or bf16 (`u8` is refused when the loader is made),
//! in its layout (burn's `Conv2d` takes NCHW, the default); the source must have labels.
//!
//! ```
//! use std::sync::Arc;
//! use burn::data::dataloader::DataLoader;
//! use burn::tensor::Device;
//! use stoker::{Augment, Loader};
//! use stoker::burn::BurnLoader;
//! use stoker::source::ImageFolder;
//!
//! let builder = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?)
//!     .batch_size(8).shuffle(true).seed(7).size(64, 36)
//!     .transform(Arc::new(Augment::keras_default()));
//! let loader: Arc<dyn DataLoader<_>> = Arc::new(BurnLoader::new(builder, &Device::default())?);
//! for batch in loader.iter() {
//!     let batch = batch?;                                  // burn's DatasetError
//!     assert_eq!(batch.images.dims(), [8, 3, 36, 64]);     // Tensor<4>, f32
//!     assert_eq!(batch.targets.dims(), [8]);               // Tensor<1, Int>
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use ::burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use ::burn::data::dataset::DatasetError;
use ::burn::tensor::{
    AllocationProperty, Bytes, DType as BurnDType, Device, Int, Tensor, TensorData,
};
use burn_std::{AccessError, AccessPolicy, AllocationController};

use crate::batch::Batch;
use crate::loader::{Loader, LoaderBuilder};
use crate::output::DType;
use crate::sampler::{Checkpoint, RankProgress};
use crate::source::Source;
use crate::{Error, Result};

/// A batch as burn tensors: what [`BurnLoader`] yields.
///
/// ```
/// use burn::tensor::Device;
/// use stoker::{Loader, burn::BurnBatch, source::NpySource};
/// let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
/// let mut loader = Loader::builder(source).batch_size(4).build()?;
/// let batch = loader.epoch(0).next().unwrap()?;
/// let burn = BurnBatch::from_batch(batch, &Device::default())?; // no copy of the images
/// assert_eq!(burn.images.dims(), [4, 3, 144, 256]);
/// assert_eq!(burn.indices, [0, 1, 2, 3]);
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BurnBatch {
    /// Images `[n, C, H, W]` (NCHW) or `[n, H, W, C]` (NHWC), in the loader's float dtype.
    pub images: Tensor<4>,
    /// Class labels, `[n]`.
    pub targets: Tensor<1, Int>,
    /// Data set index of each sample.
    pub indices: Vec<usize>,
    /// The epoch the batch belongs to.
    pub epoch: u64,
    /// The epoch position after the batch's last sample: pass it to [`BurnLoader::resume`]
    /// to continue after this batch.
    pub next_position: usize,
}

impl BurnBatch {
    /// Hands `batch` to burn on `device`: the images tensor owns the batch's buffer (no copy
    /// on a CPU backend; one upload on a GPU backend), the labels are copied (`n` integers).
    ///
    /// Fails with a usage error for a u8 batch (burn's float tensors are f32, f16 or bf16)
    /// or a batch without labels. An example is on [`BurnBatch`].
    pub fn from_batch(batch: Batch, device: &Device) -> Result<BurnBatch> {
        let dtype = burn_dtype(batch.dtype())?;
        let Some(labels) = batch.labels() else {
            return Err(Error::usage(
                "burn batches need labels: the source has none",
            ));
        };
        let n = batch.len();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [n]), device);
        let indices = batch.indices().to_vec();
        let (epoch, next_position, shape) = (batch.epoch(), batch.next_position(), batch.shape());
        let len = batch.as_bytes().len();
        let owner = BatchMemory::new(batch);
        // SAFETY: `len` is the byte length of the batch's samples, which the workers wrote in
        // full before the batch was handed out: the first `len` bytes are initialised.
        let bytes = unsafe { Bytes::from_controller(Box::new(owner), len) };
        let images =
            Tensor::<4>::from_data(TensorData::from_bytes(bytes, shape, dtype), (device, dtype));
        Ok(BurnBatch {
            images,
            targets,
            indices,
            epoch,
            next_position,
        })
    }
}

/// burn's dtype for a stoker output dtype; u8 is refused.
fn burn_dtype(dtype: DType) -> Result<BurnDType> {
    match dtype {
        DType::F32 => Ok(BurnDType::F32),
        DType::F16 => Ok(BurnDType::F16),
        DType::BF16 => Ok(BurnDType::BF16),
        DType::U8 => Err(Error::usage(
            "burn takes float images: set the loader's dtype to f32, f16 or bf16 (it is u8)",
        )),
    }
}

/// A stoker batch as the memory of a burn tensor: dropping it returns the buffer to the pool.
struct BatchMemory {
    batch: Batch,
    ptr: *mut u8,
    len: usize,
    pinned: bool,
}

// SAFETY: `ptr` points into the buffer `batch` owns (a `Batch` is `Send`); no other handle to
// the buffer exists while the batch is held here, so moving the owner to another thread
// moves the only access to that memory with it.
unsafe impl Send for BatchMemory {}

impl BatchMemory {
    fn new(mut batch: Batch) -> BatchMemory {
        let ptr = batch.as_mut_ptr();
        let len = batch.buffer_len();
        let pinned = batch.is_page_locked();
        BatchMemory {
            batch,
            ptr,
            len,
            pinned,
        }
    }
}

impl AllocationController for BatchMemory {
    fn alloc_align(&self) -> usize {
        64
    }

    fn property(&self) -> AllocationProperty {
        if self.pinned {
            AllocationProperty::Pinned
        } else {
            AllocationProperty::Native
        }
    }

    unsafe fn memory_mut(
        &mut self,
        _policy: AccessPolicy,
    ) -> std::result::Result<&mut [MaybeUninit<u8>], AccessError> {
        debug_assert_eq!(self.batch.buffer_len(), self.len);
        // SAFETY: `ptr` is the start of the batch's buffer of `len` bytes (64-byte aligned,
        // valid while `batch` lives, which outlives the borrow of `self`); the batch is owned
        // here, so nothing else reads or writes it while the returned borrow is alive.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.cast(), self.len) })
    }

    fn memory(
        &self,
        _policy: AccessPolicy,
    ) -> std::result::Result<&[MaybeUninit<u8>], AccessError> {
        // SAFETY: as in `memory_mut`; shared access through `&self` only reads.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) })
    }
}

type DynLoader = Loader<Arc<dyn Source>>;

/// One loader over a range of epoch positions, shared by the [`BurnLoader`]s that differ
/// only in their device.
struct Part {
    /// The settings, to build this part's loader and its slices' loaders.
    template: LoaderBuilder<Arc<dyn Source>>,
    /// Positions of every epoch this part yields.
    range: Range<usize>,
    /// Worker threads of this part's loader.
    workers: usize,
    /// Positions and workers of the whole (unsliced) loader, which slices divide.
    whole: usize,
    total_workers: usize,
    loader: Mutex<Option<DynLoader>>,
    /// The epoch and position the next `iter()` starts at (`None`: the start of this part's
    /// positions of that epoch).
    cursor: Mutex<(u64, Option<usize>)>,
    /// A checkpoint of the whole loader at position 0 of epoch 0: the fields every
    /// checkpoint of this loader shares.
    header: Checkpoint,
    /// The merged checkpoint this part resumed from ([`BurnLoader::resume_from`]).
    resumed: Mutex<Option<Arc<Checkpoint>>>,
}

impl Part {
    fn lock_cursor(&self) -> MutexGuard<'_, (u64, Option<usize>)> {
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resumed(&self) -> Option<Arc<Checkpoint>> {
        self.resumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This part's positions of `epoch`: `range`, except in an epoch resumed from a
    /// checkpoint, whose rank order is shorter: there the part takes the same share of it,
    /// its bounds scaled by `len / whole` (so the slices of a rank still cover its order
    /// exactly once).
    fn range_in(&self, epoch: u64) -> Range<usize> {
        match self.resumed() {
            Some(cp) if cp.epoch == epoch && self.whole > 0 => {
                let world = self.header.ranks[0].world_size;
                let len = crate::sampler::per_rank_after(&cp, world);
                let scale = |x: usize| (x as u128 * len as u128 / self.whole as u128) as usize;
                scale(self.range.start)..scale(self.range.end)
            }
            _ => self.range.clone(),
        }
    }
}

/// A burn `DataLoader` of [`BurnBatch`]es over a stoker [`Loader`]: see the
/// [module docs](self).
///
/// ```
/// use burn::data::dataloader::DataLoader;
/// use burn::tensor::Device;
/// use stoker::{Loader, burn::BurnLoader, source::NpySource};
/// let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
/// let loader = BurnLoader::new(Loader::builder(source).batch_size(8), &Device::default())?;
/// assert_eq!(loader.num_items(), 32);
/// let half = loader.slice(16, 32);
/// assert_eq!(half.iter().map(|b| b.unwrap().indices.len()).sum::<usize>(), 16);
/// # Ok::<(), stoker::Error>(())
/// ```
pub struct BurnLoader {
    part: Arc<Part>,
    device: Device,
}

impl BurnLoader {
    /// Builds the loader `builder` describes, yielding burn tensors on `device`.
    ///
    /// Fails as [`LoaderBuilder::build`] does, and with a usage error when the dtype is u8
    /// or the source has no labels.
    pub fn new<S: Source + 'static>(
        builder: LoaderBuilder<S>,
        device: &Device,
    ) -> Result<BurnLoader> {
        let template = builder.map_source(|s| Arc::new(s) as Arc<dyn Source>);
        let loader = template.clone().build()?;
        burn_dtype(loader.spec().dtype)?;
        if !loader.source().has_labels() {
            return Err(Error::usage(
                "burn batches need labels: the source has none",
            ));
        }
        let range = 0..loader.sampler().samples_per_rank();
        let workers = loader.num_workers();
        let header = loader.checkpoint(0, 0);
        Ok(BurnLoader {
            part: Arc::new(Part {
                template,
                whole: range.len(),
                range,
                workers,
                total_workers: workers,
                loader: Mutex::new(Some(loader)),
                cursor: Mutex::new((0, None)),
                header,
                resumed: Mutex::new(None),
            }),
            device: device.clone(),
        })
    }

    /// The epoch the next `iter()` yields.
    ///
    /// ```
    /// # use burn::{data::dataloader::DataLoader, tensor::Device};
    /// # use stoker::{Loader, burn::BurnLoader, source::NpySource};
    /// # let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
    /// let loader = BurnLoader::new(Loader::builder(source).batch_size(16), &Device::default())?;
    /// assert_eq!(loader.next_epoch(), 0);
    /// for b in loader.iter() { assert_eq!(b.unwrap().epoch, 0); }
    /// assert_eq!(loader.next_epoch(), 1);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn next_epoch(&self) -> u64 {
        self.part.lock_cursor().0
    }

    /// Makes the next `iter()` yield `epoch` from its start (e.g. when resuming from a
    /// checkpoint taken at an epoch boundary); the epochs after it follow.
    ///
    /// ```
    /// # use burn::{data::dataloader::DataLoader, tensor::Device};
    /// # use stoker::{Loader, burn::BurnLoader, source::NpySource};
    /// # let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
    /// let loader = BurnLoader::new(Loader::builder(source).batch_size(16), &Device::default())?;
    /// loader.set_epoch(5);
    /// assert_eq!(loader.iter().next().unwrap().unwrap().epoch, 5);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn set_epoch(&self, epoch: u64) {
        *self.part.lock_cursor() = (epoch, None);
    }

    /// Makes the next `iter()` yield `epoch` from epoch position `position` (a
    /// [`BurnBatch::next_position`] saved in a checkpoint): exactly the batches the
    /// interrupted epoch had left. Fails with a usage error when `position` lies outside
    /// this loader's positions.
    ///
    /// ```
    /// # use burn::{data::dataloader::DataLoader, tensor::Device};
    /// # use stoker::{Loader, burn::BurnLoader, source::NpySource};
    /// # let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
    /// let loader = BurnLoader::new(Loader::builder(source).batch_size(8).shuffle(true), &Device::default())?;
    /// let all: Vec<_> = loader.iter().map(|b| b.unwrap().indices).collect();
    /// loader.resume(0, 16)?;                      // a checkpoint after two batches
    /// let rest: Vec<_> = loader.iter().map(|b| b.unwrap().indices).collect();
    /// assert_eq!(rest, all[2..]);
    /// assert_eq!(loader.next_epoch(), 1);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn resume(&self, epoch: u64, position: usize) -> Result<()> {
        let r = self.part.range_in(epoch);
        if !(r.start..=r.end).contains(&position) {
            return Err(Error::usage(format!(
                "resume position {position} is outside this loader's positions {}..{}",
                r.start, r.end
            )));
        }
        *self.part.lock_cursor() = (epoch, Some(position));
        Ok(())
    }

    /// This loader's checkpoint part at position `position` of `epoch` (a
    /// [`BurnBatch::next_position`]): positions `start..position` of its positions of that
    /// epoch were consumed. Gather the parts of every rank and every slice (each device's
    /// slice gives its own) and [`Checkpoint::merge`] them; the merged checkpoint resumes at
    /// any world size ([`resume_from`](Self::resume_from), [`Loader::resume`]).
    ///
    /// ```
    /// # use burn::{data::dataloader::DataLoader, tensor::Device};
    /// # use stoker::{Checkpoint, Loader, burn::BurnLoader, source::NpySource};
    /// # let source = || NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"));
    /// let loader = BurnLoader::new(Loader::builder(source()?).batch_size(4).shuffle(true), &Device::default())?;
    /// let (a, b) = (loader.sliced(0, 16), loader.sliced(16, 32)); // two devices
    /// let (pa, pb) = (a.iter().next().unwrap().unwrap(), b.iter().next().unwrap().unwrap());
    /// let cp = Checkpoint::merge(&[a.checkpoint(0, pa.next_position), b.checkpoint(0, pb.next_position)])?;
    /// assert_eq!(cp.remaining(), 32 - 8);
    /// // Resume on one device: the 24 samples left.
    /// let one = BurnLoader::new(Loader::builder(source()?).batch_size(4).shuffle(true), &Device::default())?;
    /// one.resume_from(&cp)?;
    /// assert_eq!(one.iter().map(|b| b.unwrap().indices.len()).sum::<usize>(), 24);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn checkpoint(&self, epoch: u64, position: usize) -> Checkpoint {
        let positions = self.part.range_in(epoch);
        let h = &self.part.header;
        let consumed = match self.part.resumed() {
            Some(cp) if cp.epoch == epoch => cp.consumed.clone(),
            _ => Vec::new(),
        };
        Checkpoint {
            epoch,
            consumed,
            ranks: vec![RankProgress {
                position: position.clamp(positions.start, positions.end) as u64,
                positions: positions.start as u64..positions.end as u64,
                ..h.ranks[0].clone()
            }],
            ..h.clone()
        }
    }

    /// Resumes from a merged `checkpoint` taken at any world size (of ranks, devices or
    /// both): the next `iter()` yields the checkpoint's epoch, this loader's share of the
    /// positions no rank consumed (see [`Checkpoint`]); the epochs after it are whole. The
    /// slices made from this loader afterwards ([`slice`](DataLoader::slice), as burn's
    /// multi-device split does) take their share of the rest in proportion to their share of
    /// a whole epoch, so call it before handing the loader to burn. Fails as
    /// [`Loader::resume`] does, and when this loader is iterating an epoch.
    pub fn resume_from(&self, checkpoint: &Checkpoint) -> Result<()> {
        let mine = Checkpoint {
            epoch: checkpoint.epoch,
            ranks: Vec::new(),
            ..self.part.header.clone()
        };
        checkpoint.check_resumable(&mine)?;
        let mut guard = match self.part.loader.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                return Err(Error::usage(
                    "this burn loader is iterating an epoch: drop that iterator first",
                ));
            }
        };
        if let Some(loader) = guard.as_mut() {
            loader.resume(checkpoint)?;
        }
        *self.part.resumed.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(checkpoint.clone()));
        *self.part.lock_cursor() = (checkpoint.epoch, None);
        Ok(())
    }

    /// The positions of every epoch this loader yields (`0..len` unless it is a slice).
    ///
    /// ```
    /// # use burn::{data::dataloader::DataLoader, tensor::Device};
    /// # use stoker::{Loader, burn::BurnLoader, source::NpySource};
    /// # let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
    /// let loader = BurnLoader::new(Loader::builder(source).batch_size(8), &Device::default())?;
    /// assert_eq!(loader.positions(), 0..32);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn positions(&self) -> Range<usize> {
        self.part.range.clone()
    }

    /// Worker threads of this loader (for a slice: its share of the whole loader's).
    ///
    /// ```
    /// # use burn::{data::dataloader::DataLoader, tensor::Device};
    /// # use stoker::{Loader, burn::BurnLoader, source::NpySource};
    /// # let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
    /// let loader = BurnLoader::new(Loader::builder(source).batch_size(8).num_workers(4), &Device::default())?;
    /// assert_eq!(loader.num_workers(), 4);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn num_workers(&self) -> usize {
        self.part.workers
    }

    /// [`slice`](DataLoader::slice) as a `BurnLoader`: positions `start..end` of this
    /// loader's positions (clamped to them), with its own loader, built on its first
    /// `iter()`, and its share of the workers.
    ///
    /// ```
    /// # use burn::{data::dataloader::DataLoader, tensor::Device};
    /// # use stoker::{Loader, burn::BurnLoader, source::NpySource};
    /// # let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
    /// let loader = BurnLoader::new(Loader::builder(source).num_workers(4), &Device::default())?;
    /// let tail = loader.sliced(24, 32);
    /// assert_eq!((tail.positions(), tail.num_workers()), (24..32, 1));
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn sliced(&self, start: usize, end: usize) -> BurnLoader {
        let r = &self.part.range;
        let start = (r.start + start).min(r.end);
        let end = (r.start + end).clamp(start, r.end);
        let whole = self.part.whole;
        let total = self.part.total_workers;
        let workers = if total == 0 || whole == 0 {
            total
        } else {
            (total * (end - start)).div_ceil(whole).clamp(1, total)
        };
        let epoch = self.next_epoch();
        BurnLoader {
            part: Arc::new(Part {
                template: self.part.template.clone().num_workers(workers),
                range: start..end,
                workers,
                whole,
                total_workers: total,
                loader: Mutex::new(None),
                cursor: Mutex::new((epoch, None)),
                header: self.part.header.clone(),
                resumed: Mutex::new(self.part.resumed()),
            }),
            device: self.device.clone(),
        }
    }
}

impl DataLoader<BurnBatch> for BurnLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<BurnBatch> + 'a> {
        let (epoch, start) = {
            let mut cursor = self.part.lock_cursor();
            let now = *cursor;
            *cursor = (now.0 + 1, None);
            now
        };
        let range = self.part.range_in(epoch);
        let start = start.unwrap_or(range.start);
        let next = self.part.range_in(epoch + 1);
        let resumed = self.part.resumed();
        let mut iter = BurnIter {
            guard: None,
            first_error: None,
            device: &self.device,
            epoch,
            processed: start - range.start,
            total: range.len(),
        };
        match self.part.loader.try_lock() {
            Ok(mut guard) => {
                let ready = match guard.as_mut() {
                    Some(_) => Ok(()),
                    None => self.part.template.clone().build().map(|l| {
                        *guard = Some(l);
                    }),
                };
                // A checkpoint resumed from applies to its epoch (once per loader built).
                let ready = ready.and_then(|()| match (&resumed, guard.as_mut()) {
                    (Some(cp), Some(loader))
                        if cp.epoch == epoch
                            && loader.sampler().consumed_before(epoch)
                                != cp.consumed.as_slice() =>
                    {
                        loader.resume(cp)
                    }
                    _ => Ok(()),
                });
                match ready {
                    Ok(()) => {
                        let loader = guard.as_mut().expect("built above");
                        iter.first_error = loader.begin(epoch, start, Some(range.end));
                        // After a resumed epoch, the next one starts at the slice's start.
                        loader.set_next_pass(next.start, Some(next.end));
                        iter.guard = Some(guard);
                    }
                    Err(e) => iter.first_error = Some(e),
                }
            }
            Err(TryLockError::WouldBlock) => {
                iter.first_error = Some(Error::usage(
                    "this burn loader is already iterating an epoch: drop that iterator first",
                ))
            }
            Err(TryLockError::Poisoned(_)) => {
                iter.first_error = Some(Error::usage(
                    "this burn loader panicked in an earlier epoch",
                ))
            }
        }
        Box::new(iter)
    }

    fn num_items(&self) -> usize {
        self.part.range.len()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<BurnBatch>> {
        Arc::new(BurnLoader {
            part: Arc::clone(&self.part),
            device: device.clone(),
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<BurnBatch>> {
        Arc::new(self.sliced(start, end))
    }
}

/// One epoch of a [`BurnLoader`].
struct BurnIter<'a> {
    /// The loader, held for the epoch; `None` once the epoch has ended.
    guard: Option<MutexGuard<'a, Option<DynLoader>>>,
    /// An error to yield before anything else.
    first_error: Option<Error>,
    device: &'a Device,
    epoch: u64,
    processed: usize,
    total: usize,
}

impl BurnIter<'_> {
    fn end(&mut self) {
        if let Some(mut guard) = self.guard.take()
            && let Some(loader) = guard.as_mut()
        {
            loader.abandon(); // at the epoch's end, the next epoch's work goes on
        }
    }
}

impl Iterator for BurnIter<'_> {
    type Item = std::result::Result<BurnBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.first_error.take() {
            self.end();
            return Some(Err(DatasetError::new(e)));
        }
        let loader = self.guard.as_mut()?.as_mut()?;
        match loader.next_batch() {
            None => {
                self.end();
                None
            }
            Some(Ok(batch)) => {
                debug_assert_eq!(batch.epoch(), self.epoch);
                self.processed += batch.len();
                match BurnBatch::from_batch(batch, self.device) {
                    Ok(b) => Some(Ok(b)),
                    Err(e) => {
                        self.end();
                        Some(Err(DatasetError::new(e)))
                    }
                }
            }
            Some(Err(e)) => {
                self.end();
                Some(Err(DatasetError::new(e)))
            }
        }
    }
}

impl DataLoaderIterator<BurnBatch> for BurnIter<'_> {
    fn progress(&self) -> Progress {
        Progress::new(self.processed, self.total, Some("samples".to_string()))
    }
}

impl Drop for BurnIter<'_> {
    fn drop(&mut self) {
        self.end();
    }
}
