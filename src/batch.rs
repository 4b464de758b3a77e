//! Batches and the fixed pool of batch buffers they live in.
//!
//! The pool allocates every buffer once, before the first batch, through an [`Allocator`]
//! (plain 64-byte-aligned memory by default; the cuda feature plugs in page-locked memory).
//! Workers write each sample straight into its slot; a [`Batch`] hands its buffer back to the
//! pool when it is dropped.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::alloc::{self, Layout as MemLayout};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use half::{bf16, f16};
use ndarray::{ArrayView4, ShapeBuilder};

use crate::output::{DType, Layout, OutputSpec};
use crate::{Error, ErrorKind, Result};

/// Memory a batch buffer lives in: `len()` bytes at a stable address, aligned to 64 bytes,
/// valid until dropped.
///
/// # Safety
/// `as_mut_ptr()` must return the same pointer for the value's whole life, valid for reads
/// and writes of `len()` bytes, aligned to 64, and not aliased by anything else. The memory
/// must not lie inside the value itself (no inline arrays): the value is moved (boxed, handed
/// between threads) after the pointer is first taken, and the pointer must stay valid.
pub unsafe trait HostMemory: Send + Sync {
    /// Start of the memory.
    fn as_mut_ptr(&self) -> *mut u8;
    /// Bytes.
    fn len(&self) -> usize;
    /// `true` when `len() == 0`.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Allocates the memory of batch buffers (the hook through which the cuda feature page-locks them).
///
/// The memory returned keeps the [`HostMemory`] contract (a stable pointer outside the value).
///
/// ```
/// use stoker::batch::{Allocator, AlignedAlloc};
/// let mem = AlignedAlloc.allocate(1000).unwrap();
/// assert_eq!(mem.len(), 1000);
/// assert_eq!(mem.as_mut_ptr() as usize % 64, 0);
/// ```
pub trait Allocator: Send + Sync {
    /// `bytes` bytes of zeroed, 64-byte-aligned memory.
    fn allocate(&self, bytes: usize) -> Result<Box<dyn HostMemory>>;
    /// Short name for reports, e.g. `"aligned"` or `"pinned"`.
    fn name(&self) -> &str;
    /// Whether the memory is page-locked (pinned), so a device can copy from it directly
    /// (default `false`).
    fn page_locked(&self) -> bool {
        false
    }
}

/// The default allocator: ordinary heap memory aligned to 64 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlignedAlloc;

struct AlignedMem {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the memory is owned exclusively by this value (a heap allocation, not inside it);
// access is coordinated by the pool.
unsafe impl Send for AlignedMem {}
// SAFETY: `&AlignedMem` only hands out the pointer; who writes through it and when is
// coordinated by the pool (one writer per slot, no reader until the batch is complete).
unsafe impl Sync for AlignedMem {}

impl AlignedMem {
    fn layout(len: usize) -> MemLayout {
        MemLayout::from_size_align(len.max(1), 64).expect("size fits isize")
    }
}

// SAFETY: the pointer is a heap allocation (not inside the value, so moves keep it valid),
// stable, 64-aligned, `len` bytes, owned by this value alone and freed only in Drop.
unsafe impl HostMemory for AlignedMem {
    fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl Drop for AlignedMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `AlignedAlloc::allocate` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), AlignedMem::layout(self.len)) }
    }
}

impl Allocator for AlignedAlloc {
    fn allocate(&self, bytes: usize) -> Result<Box<dyn HostMemory>> {
        if bytes > isize::MAX as usize / 2 {
            return Err(Error::usage(format!(
                "batch buffer of {bytes} bytes is too large"
            )));
        }
        let layout = AlignedMem::layout(bytes);
        // SAFETY: the layout has non-zero size (`layout` allocates at least one byte).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            Error::usage(format!(
                "out of memory allocating a {bytes}-byte batch buffer"
            ))
        })?;
        Ok(Box::new(AlignedMem { ptr, len: bytes }))
    }
    fn name(&self) -> &str {
        "aligned"
    }
}

/// One reusable batch buffer: images, labels, sample indices.
pub(crate) struct Buffer {
    pub(crate) mem: Box<dyn HostMemory>,
    pub(crate) labels: Vec<i64>,
    pub(crate) indices: Vec<usize>,
    /// Samples filled.
    pub(crate) len: usize,
    pub(crate) epoch: u64,
    /// Stream position of the first sample, and one past the last sample consumed.
    pub(crate) first_position: usize,
    pub(crate) next_position: usize,
}

impl Buffer {
    /// Pointer to slot `i`, `sample_bytes` long. Panics when the slot does not lie within the
    /// buffer (checked in release builds too: once per sample, it costs nothing measurable).
    /// Writing through it is the caller's business: one writer per slot, none while a batch
    /// of this buffer is out.
    pub(crate) fn slot_ptr(&self, i: usize, sample_bytes: usize) -> *mut u8 {
        let end = i.checked_add(1).and_then(|n| n.checked_mul(sample_bytes));
        assert!(
            end.is_some_and(|end| end <= self.mem.len()),
            "slot {i} of {sample_bytes} bytes is outside a {}-byte buffer",
            self.mem.len()
        );
        // SAFETY: `i * sample_bytes + sample_bytes <= len` (asserted above, without overflow),
        // so the offset stays within the allocation of `len` bytes that `mem` points to.
        unsafe { self.mem.as_mut_ptr().add(i * sample_bytes) }
    }
}

/// The fixed ring of batch buffers, allocated once.
pub(crate) struct Pool {
    free_tx: Sender<Box<Buffer>>,
    free_rx: Receiver<Box<Buffer>>,
    total: usize,
    spec: Arc<OutputSpec>,
    batch_size: usize,
    has_labels: bool,
    allocator_name: String,
    page_locked: bool,
}

impl Pool {
    pub(crate) fn new(
        count: usize,
        batch_size: usize,
        spec: Arc<OutputSpec>,
        has_labels: bool,
        allocator: &dyn Allocator,
    ) -> Result<Pool> {
        let (free_tx, free_rx) = crossbeam_channel::bounded(count);
        let bytes = batch_size * spec.sample_bytes();
        for _ in 0..count {
            let mem = allocator.allocate(bytes)?;
            if mem.len() < bytes || !(mem.as_mut_ptr() as usize).is_multiple_of(64) {
                return Err(Error::usage(format!(
                    "allocator {:?} returned {} bytes at {:p}; need {bytes} bytes aligned to 64",
                    allocator.name(),
                    mem.len(),
                    mem.as_mut_ptr()
                )));
            }
            let buf = Box::new(Buffer {
                mem,
                labels: Vec::with_capacity(batch_size),
                indices: Vec::with_capacity(batch_size),
                len: 0,
                epoch: 0,
                first_position: 0,
                next_position: 0,
            });
            free_tx.send(buf).expect("pool channel has room");
        }
        Ok(Pool {
            free_tx,
            free_rx,
            total: count,
            spec,
            batch_size,
            has_labels,
            allocator_name: allocator.name().to_string(),
            page_locked: allocator.page_locked(),
        })
    }

    /// A free buffer, reset, if one is available now.
    pub(crate) fn try_take(&self) -> Option<Box<Buffer>> {
        let mut b = self.free_rx.try_recv().ok()?;
        b.labels.clear();
        b.indices.clear();
        b.len = 0;
        Some(b)
    }

    /// Gives a buffer back without handing it to the consumer.
    pub(crate) fn put_back(&self, buf: Box<Buffer>) {
        // Cannot fail: the pool holds the receiver and the channel has room for every buffer.
        let _ = self.free_tx.send(buf);
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn allocator_name(&self) -> &str {
        &self.allocator_name
    }

    /// Wraps a filled buffer as a batch handed to the consumer.
    pub(crate) fn hand_out(&self, buf: Box<Buffer>) -> Batch {
        Batch {
            buf: Some(buf),
            home: self.free_tx.clone(),
            spec: Arc::clone(&self.spec),
            capacity: self.batch_size,
            has_labels: self.has_labels,
            page_locked: self.page_locked,
        }
    }
}

/// Element types a batch can be viewed as.
pub trait Element: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The dtype this element type stands for.
    const DTYPE: DType;
}
mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
    impl Sealed for f32 {}
}
impl Element for u8 {
    const DTYPE: DType = DType::U8;
}
impl Element for f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}

/// A batch of samples in sampler order, in a buffer of the loader's pool.
///
/// Dropping the batch returns its buffer to the pool. The images are one contiguous tensor of
/// shape `[n, C, H, W]` (NCHW) or `[n, H, W, C]` (NHWC) in the loader's dtype.
///
/// ```
/// # use stoker::{Loader, DType};
/// # let loader = Loader::builder(stoker::source::NpySource::glob("fixtures/npy/images-*.npy", Some("fixtures/npy/labels-*.npy")).unwrap())
/// #     .batch_size(8).build().unwrap();
/// # let mut loader = loader;
/// for batch in loader.epoch(0) {
///     let batch = batch.unwrap();
///     let x = batch.images::<f32>().unwrap();       // ndarray view, [8, 3, 144, 256]
///     assert_eq!(x.shape(), &[8, 3, 144, 256]);
///     assert_eq!(batch.labels().unwrap().len(), 8);
/// }
/// ```
pub struct Batch {
    buf: Option<Box<Buffer>>,
    home: Sender<Box<Buffer>>,
    spec: Arc<OutputSpec>,
    capacity: usize,
    has_labels: bool,
    page_locked: bool,
}

impl Batch {
    fn buf(&self) -> &Buffer {
        self.buf.as_ref().expect("buffer present until drop")
    }

    /// Start of the whole buffer (`buffer_len()` bytes; the batch's samples come first), for
    /// adapters that hand the buffer to a framework which owns the batch from then on.
    #[cfg_attr(not(feature = "burn"), allow(dead_code))]
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.buf().mem.as_mut_ptr()
    }

    /// Bytes of the whole buffer (at least `as_bytes().len()`).
    #[cfg_attr(not(feature = "burn"), allow(dead_code))]
    pub(crate) fn buffer_len(&self) -> usize {
        self.buf().mem.len()
    }

    /// Whether the batch lives in page-locked memory (the cuda feature's pinned allocator).
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let mut loader = Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None)?).build()?;
    /// assert!(!loader.epoch(0).next().unwrap()?.is_page_locked()); // plain aligned memory
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn is_page_locked(&self) -> bool {
        self.page_locked
    }

    /// Samples in the batch (the batch size, or fewer for a last partial batch).
    pub fn len(&self) -> usize {
        self.buf().len
    }

    /// `true` for a batch without samples (never yielded by a loader).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The loader's batch size (capacity of the buffer).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tensor shape: `[n, C, H, W]` or `[n, H, W, C]`.
    pub fn shape(&self) -> [usize; 4] {
        let [a, b, c] = self.spec.sample_shape();
        [self.len(), a, b, c]
    }

    /// Element type of the images.
    pub fn dtype(&self) -> DType {
        self.spec.dtype
    }

    /// Layout of the images.
    pub fn layout(&self) -> Layout {
        self.spec.layout
    }

    /// The output format every sample was written in.
    pub fn spec(&self) -> &OutputSpec {
        &self.spec
    }

    /// The images as raw bytes in native byte order (`len() * sample_bytes` bytes).
    pub fn as_bytes(&self) -> &[u8] {
        let b = self.buf();
        let n = b.len * self.spec.sample_bytes();
        // SAFETY: the buffer holds at least capacity * sample_bytes bytes, the workers that
        // wrote them finished before the batch was handed out, and nobody writes while the
        // batch exists.
        unsafe { std::slice::from_raw_parts(b.mem.as_mut_ptr(), n) }
    }

    /// Pointer to the images (for uploads: with the cuda feature this memory is page-locked).
    pub fn as_ptr(&self) -> *const u8 {
        self.buf().mem.as_mut_ptr()
    }

    /// The images as an ndarray view, when `T` matches the loader's dtype.
    ///
    /// ```
    /// # use stoker::{Loader, DType};
    /// # let mut loader = Loader::builder(stoker::source::NpySource::glob("fixtures/npy/images-*.npy", None).unwrap())
    /// #     .batch_size(4).dtype(DType::U8).build().unwrap();
    /// let batch = loader.epoch(0).next().unwrap().unwrap();
    /// assert!(batch.images::<u8>().is_ok());
    /// assert!(batch.images::<f32>().is_err()); // wrong dtype: a clear error, not garbage
    /// ```
    pub fn images<T: Element>(&self) -> Result<ArrayView4<'_, T>> {
        if T::DTYPE != self.spec.dtype {
            return Err(Error::new(
                ErrorKind::DTypeMismatch,
                format!(
                    "batch holds {} images, asked for {}",
                    self.spec.dtype.as_str(),
                    T::DTYPE.as_str()
                ),
            ));
        }
        let bytes = self.as_bytes();
        let n = bytes.len() / std::mem::size_of::<T>();
        // SAFETY: the buffer is 64-byte aligned and holds `n` initialised values of T (T is a
        // plain-old-data type for which every bit pattern is valid).
        let data = unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, n) };
        let shape = self.shape();
        ArrayView4::from_shape(
            (shape[0], shape[1], shape[2], shape[3]).strides((
                shape[1] * shape[2] * shape[3],
                shape[2] * shape[3],
                shape[3],
                1,
            )),
            data,
        )
        .map_err(|e| Error::usage(format!("batch view: {e}")).with_source(e))
    }

    /// Class labels, one per sample, when the source has labels.
    ///
    /// ```
    /// # use stoker::{Loader, source::ImageFolder};
    /// let mut l = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?).batch_size(8).build()?;
    /// let b = l.epoch(0).next().unwrap()?;
    /// assert_eq!(b.labels(), Some(&[0i64; 8][..])); // the first 8 images are class-a
    /// assert_eq!(b.indices(), &[0, 1, 2, 3, 4, 5, 6, 7]);
    /// assert_eq!((b.epoch(), b.first_position(), b.next_position()), (0, 0, 8));
    /// assert_eq!(b.shape(), [8, 3, 144, 256]);
    /// assert_eq!(b.as_bytes().len(), 8 * 3 * 144 * 256 * 4);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn labels(&self) -> Option<&[i64]> {
        self.has_labels.then(|| &self.buf().labels[..])
    }

    /// Data set indices of the samples, in order.
    pub fn indices(&self) -> &[usize] {
        &self.buf().indices
    }

    /// The epoch this batch belongs to.
    pub fn epoch(&self) -> u64 {
        self.buf().epoch
    }

    /// Position (in this rank's order of the epoch) of the batch's first sample.
    pub fn first_position(&self) -> usize {
        self.buf().first_position
    }

    /// Position to resume from after this batch: `loader.epoch_from(epoch, next_position)`
    /// yields exactly the batches that would have followed this one.
    pub fn next_position(&self) -> usize {
        self.buf().next_position
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("epoch", &self.epoch())
            .field("shape", &self.shape())
            .field("dtype", &self.dtype())
            .field("first_position", &self.first_position())
            .finish()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            // The pool may be gone (loader dropped first): then the buffer is simply freed.
            let _ = self.home.send(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(bytes: usize) -> Buffer {
        Buffer {
            mem: AlignedAlloc.allocate(bytes).unwrap(),
            labels: Vec::new(),
            indices: Vec::new(),
            len: 0,
            epoch: 0,
            first_position: 0,
            next_position: 0,
        }
    }

    #[test]
    fn slot_ptr_in_range_offsets_by_slot() {
        let b = buffer(3 * 10);
        let base = b.mem.as_mut_ptr() as usize;
        assert_eq!(b.slot_ptr(0, 10) as usize, base);
        assert_eq!(b.slot_ptr(2, 10) as usize, base + 20);
    }

    #[test]
    #[should_panic(expected = "slot 3 of 10 bytes is outside a 30-byte buffer")]
    fn slot_ptr_past_the_end_panics() {
        buffer(3 * 10).slot_ptr(3, 10);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn slot_ptr_overflowing_offset_panics() {
        buffer(64).slot_ptr(usize::MAX / 2, 4);
    }
}
