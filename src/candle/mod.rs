//! candle: batches as candle tensors.
//!
//! [`Batch::to_candle`] turns one batch into `(images, labels)` tensors on a candle
//! [`Device`]; [`CandleBatches::candle`] does it for every batch of an epoch, so a candle
//! training loop iterates [`CandleBatch`]es:
//!
//! - images keep the loader's dtype (u8, f16, bf16 or f32: candle has all four) and layout:
//!   `[n, C, H, W]` for NCHW (what `candle_nn::Conv2d` takes), `[n, H, W, C]` for NHWC;
//! - labels are an `[n]` tensor of `i64` (what `candle_nn::loss::cross_entropy` takes), or
//!   `None` for an unlabelled source;
//! - errors are stoker [`Error`]s: the loader's (path, sample index, kind) pass through, and a
//!   tensor candle cannot make (out of device memory) is a [`Device`](crate::ErrorKind::Device)
//!   error with candle's error as its source.
//!
//! # One copy
//! A candle tensor owns its storage (a `Vec` on the CPU, device memory on CUDA), so making it
//! copies the batch once: on the CPU a memory copy, about as long as copying the bytes
//! (`cargo bench --features candle --bench candle` measures it next to a plain copy); on CUDA
//! one host-to-device upload straight from the batch, from page-locked memory when the
//! loader's allocator pins it (`stoker::cuda::PinnedAlloc`). The batch can be dropped as soon
//! as the tensors exist, so its buffer goes back to the pool before the step runs. With the
//! `candle-cuda` feature, batches uploaded by stoker's `DeviceFeeder` become candle CUDA
//! tensors without a trip through the host (the `cuda` submodule).
//!
//! ```
//! use std::sync::Arc;
//! use candle_core::{DType, Device};
//! use stoker::{Augment, Loader};
//! use stoker::candle::CandleBatches;
//! use stoker::source::ImageFolder;
//!
//! let mut loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?)
//!     .batch_size(8).shuffle(true).seed(7).size(64, 36)
//!     .transform(Arc::new(Augment::keras_default()))
//!     .build()?;
//! let device = Device::Cpu; // or Device::cuda_if_available(0)?
//! for batch in loader.epoch(0).candle(&device) {
//!     let batch = batch?;                              // stoker::Error
//!     assert_eq!(batch.images.dims(), [8, 3, 36, 64]);
//!     assert_eq!(batch.images.dtype(), DType::F32);
//!     assert_eq!(batch.targets.unwrap().dims(), [8]); // i64 class labels
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use candle_core::{Device, Tensor};

#[cfg(feature = "candle-cuda")]
#[cfg_attr(docsrs, doc(cfg(feature = "candle-cuda")))]
pub mod cuda;

use crate::batch::Batch;
use crate::output::DType;
use crate::{Error, ErrorKind, Result};

impl Batch {
    /// The batch as candle tensors on `device`: `(images, labels)`, one copy of the images
    /// (see the [module](crate::candle) docs).
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use stoker::{Loader, source::NpySource};
    ///
    /// let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
    /// let mut loader = Loader::builder(source).batch_size(4).build()?;
    /// let batch = loader.epoch(0).next().unwrap()?;
    /// let (images, labels) = batch.to_candle(&Device::Cpu)?;
    /// assert_eq!(images.dims(), [4, 3, 144, 256]);
    /// assert_eq!(labels.unwrap().to_vec1::<i64>()?, batch.labels().unwrap());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_candle(&self, device: &Device) -> Result<(Tensor, Option<Tensor>)> {
        let shape = self.shape();
        let bytes = self.as_bytes();
        let images = match self.dtype() {
            DType::U8 => Tensor::from_slice(bytes, &shape[..], device),
            DType::F16 => Tensor::from_slice::<_, half::f16>(cast(bytes), &shape[..], device),
            DType::BF16 => Tensor::from_slice::<_, half::bf16>(cast(bytes), &shape[..], device),
            DType::F32 => Tensor::from_slice::<_, f32>(cast(bytes), &shape[..], device),
        }
        .map_err(candle_error)?;
        let labels = match self.labels() {
            Some(labels) => {
                Some(Tensor::from_slice(labels, labels.len(), device).map_err(candle_error)?)
            }
            None => None,
        };
        Ok((images, labels))
    }
}

/// The samples of a batch as elements of their dtype (the buffer is 64-byte aligned and
/// holds whole elements, so the cast cannot fail).
fn cast<T: bytemuck::Pod>(bytes: &[u8]) -> &[T] {
    bytemuck::cast_slice(bytes)
}

fn candle_error(err: candle_core::Error) -> Error {
    Error::new(
        ErrorKind::Device,
        format!("candle could not make a tensor: {err}"),
    )
    .with_source(err)
}

/// A batch as candle tensors: what [`CandleBatches::candle`] yields.
///
/// ```
/// use candle_core::Device;
/// use stoker::{Loader, candle::CandleBatch, source::NpySource};
///
/// let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
/// let mut loader = Loader::builder(source).batch_size(4).build()?;
/// let batch = CandleBatch::from_batch(&loader.epoch(0).next().unwrap()?, &Device::Cpu)?;
/// assert_eq!(batch.images.dims(), [4, 3, 144, 256]);
/// assert_eq!((batch.indices, batch.next_position), (vec![0, 1, 2, 3], 4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct CandleBatch {
    /// Images `[n, C, H, W]` (NCHW) or `[n, H, W, C]` (NHWC), in the loader's dtype.
    pub images: Tensor,
    /// Class labels `[n]` (`i64`), `None` for an unlabelled source.
    pub targets: Option<Tensor>,
    /// Data set index of each sample.
    pub indices: Vec<usize>,
    /// The epoch the batch belongs to.
    pub epoch: u64,
    /// The epoch position after the batch's last sample: pass it to
    /// [`Loader::epoch_from`](crate::Loader::epoch_from) to continue after this batch.
    pub next_position: usize,
}

impl CandleBatch {
    /// `batch` as tensors on `device` ([`Batch::to_candle`]) with its bookkeeping. An example
    /// is on [`CandleBatch`].
    pub fn from_batch(batch: &Batch, device: &Device) -> Result<CandleBatch> {
        let (images, targets) = batch.to_candle(device)?;
        Ok(CandleBatch {
            images,
            targets,
            indices: batch.indices().to_vec(),
            epoch: batch.epoch(),
            next_position: batch.next_position(),
        })
    }
}

/// `.candle(&device)` on an epoch (or any iterator of batches): its batches as
/// [`CandleBatch`]es, each stoker batch returned to the pool once its tensors exist.
///
/// ```
/// use candle_core::Device;
/// use stoker::{Loader, candle::CandleBatches, source::NpySource};
///
/// let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
/// let mut loader = Loader::builder(source).batch_size(8).build()?;
/// let sizes: Vec<usize> = loader
///     .epoch(0)
///     .candle(&Device::Cpu)
///     .map(|b| b.map(|b| b.images.dims()[0]))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(sizes.iter().sum::<usize>(), loader.source().len());
/// # use stoker::source::Source;
/// # Ok::<(), stoker::Error>(())
/// ```
pub trait CandleBatches: Iterator<Item = Result<Batch>> + Sized {
    /// This iterator's batches as candle tensors on `device`.
    fn candle(self, device: &Device) -> Candle<Self> {
        Candle {
            batches: self,
            device: device.clone(),
        }
    }
}

impl<I: Iterator<Item = Result<Batch>>> CandleBatches for I {}

/// The iterator [`CandleBatches::candle`] returns.
///
/// ```
/// use candle_core::Device;
/// use stoker::{Loader, candle::{Candle, CandleBatches}, source::NpySource};
///
/// let source = NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy"))?;
/// let mut loader = Loader::builder(source).batch_size(8).build()?;
/// let mut batches: Candle<_> = loader.epoch(0).candle(&Device::Cpu);
/// assert_eq!(batches.next().unwrap()?.epoch, 0);
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Debug)]
pub struct Candle<I> {
    batches: I,
    device: Device,
}

impl<I: Iterator<Item = Result<Batch>>> Iterator for Candle<I> {
    type Item = Result<CandleBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.batches.next()?;
        Some(batch.and_then(|b| CandleBatch::from_batch(&b, &self.device)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.batches.size_hint()
    }
}
