//! The device feeder: host batches copied on their own stream into a ring of device slots,
//! the consumer's stream ordered after each copy by an event (no host wait on the hot path),
//! and a slot reused only after the consumer's work on it has finished.
//!
//! The life of batch `k` (slot `s = k % slots`):
//! 1. the upload stream waits (on the GPU) for `released[s]`, recorded on the consumer stream
//!    when the previous [`DeviceBatch`] of slot `s` was dropped;
//! 2. the pinned host batch is copied on the upload stream, then `uploaded[s]` is recorded;
//! 3. the consumer stream waits (on the GPU) for `uploaded[s]`, and the [`DeviceBatch`] is
//!    handed out: work queued on the consumer stream after this sees the data;
//! 4. the host batch goes back to the loader's pool once `uploaded[s]` has completed (polled;
//!    the host waits only when every host buffer is still being copied).
//!
//! So the copy of batch `k + 1` overlaps the consumer's work on batch `k`.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaEvent, CudaSlice, CudaStream, DevicePtr};

use super::{driver_error, Device};
use crate::batch::Batch;
use crate::loader::Epoch;
use crate::source::Source;
use crate::{Error, OutputSpec, Result};

/// One device slot: the batch's bytes and labels, and the two events that order its reuse.
struct Slot {
    data: CudaSlice<u8>,
    data_ptr: sys::CUdeviceptr,
    labels: CudaSlice<i64>,
    labels_ptr: sys::CUdeviceptr,
    uploaded: CudaEvent,
    released: CudaEvent,
    /// A [`DeviceBatch`] of this slot is alive.
    held: AtomicBool,
    /// The labels of the batch in the slot, on the host (written only while not held).
    host_labels: UnsafeCell<Vec<i64>>,
    consumer: Arc<CudaStream>,
}

// SAFETY: `host_labels` is written by the feeder only while `held` is false, and read only
// through the one `DeviceBatch` that holds the slot; the CUDA handles are thread-safe.
unsafe impl Send for Slot {}
unsafe impl Sync for Slot {}

/// Uploads host batches into a ring of device slots on a dedicated stream.
///
/// ```no_run
/// use stoker::cuda::{Device, DeviceFeeder, PinnedAlloc};
/// use stoker::{Loader, source::ImageFolder};
/// let device = Device::open(0)?;
/// let mut loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?)
///     .batch_size(32).allocator(std::sync::Arc::new(PinnedAlloc::for_device(&device)))
///     .build()?;
/// let mut feeder = DeviceFeeder::new(&device, loader.spec(), 32, 2)?;
/// for batch in feeder.feed(loader.epoch(0)) {
///     let batch = batch?;
///     // launch work on feeder.consumer_stream() reading batch.data_ptr()
///     drop(batch); // the slot is free once that work has run
/// }
/// # Ok::<(), stoker::Error>(())
/// ```
pub struct DeviceFeeder {
    upload: Arc<CudaStream>,
    consumer: Arc<CudaStream>,
    slots: Vec<Arc<Slot>>,
    next: usize,
    /// Host batches whose copy may still be running, with their slot.
    inflight: VecDeque<(usize, Batch)>,
    sample_bytes: usize,
    batch_size: usize,
    /// Shared with every `DeviceBatch` (a clone per batch would allocate).
    spec: Arc<OutputSpec>,
}

impl std::fmt::Debug for DeviceFeeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceFeeder")
            .field("slots", &self.slots.len())
            .field("batch_size", &self.batch_size)
            .field("sample_bytes", &self.sample_bytes)
            .finish()
    }
}

impl DeviceFeeder {
    /// A feeder for batches of `batch_size` samples of `spec`, with `slots` device buffers
    /// (at least 2: one being filled while the consumer works on the other), a new upload
    /// stream and a new consumer stream.
    ///
    /// ```no_run
    /// use stoker::{cuda::{Device, DeviceFeeder}, OutputSpec};
    /// let feeder = DeviceFeeder::new(&Device::open(0)?, &OutputSpec::new(256, 144, 3), 64, 2)?;
    /// assert_eq!(feeder.slots(), 2);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn new(
        device: &Device,
        spec: &OutputSpec,
        batch_size: usize,
        slots: usize,
    ) -> Result<DeviceFeeder> {
        let ctx = device.context();
        let consumer = ctx
            .new_stream()
            .map_err(|e| driver_error("creating the consumer stream", e))?;
        DeviceFeeder::with_consumer(device, spec, batch_size, slots, consumer)
    }

    /// Like [`DeviceFeeder::new`], with the consumer's own stream: the training loop's work
    /// on a batch must be queued on it before the batch is dropped.
    ///
    /// ```no_run
    /// use stoker::{cuda::{Device, DeviceFeeder}, OutputSpec};
    /// let device = Device::open(0)?;
    /// let stream = device.context().default_stream();
    /// let f = DeviceFeeder::with_consumer(&device, &OutputSpec::new(8, 8, 3), 4, 2, stream)?;
    /// assert_eq!(f.batch_size(), 4);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn with_consumer(
        device: &Device,
        spec: &OutputSpec,
        batch_size: usize,
        slots: usize,
        consumer: Arc<CudaStream>,
    ) -> Result<DeviceFeeder> {
        spec.validate()?;
        if batch_size == 0 {
            return Err(Error::config("batch_size must be > 0"));
        }
        if slots < 2 {
            return Err(Error::config(
                "a device feeder needs at least 2 slots (one filled while one is in use)",
            ));
        }
        let ctx = device.context();
        let upload = ctx
            .new_stream()
            .map_err(|e| driver_error("creating the upload stream", e))?;
        let sample_bytes = spec.sample_bytes();
        let mut ring = Vec::with_capacity(slots);
        for _ in 0..slots {
            let data = upload
                .alloc_zeros::<u8>(sample_bytes * batch_size)
                .map_err(|e| driver_error("allocating a device slot", e))?;
            let labels = upload
                .alloc_zeros::<i64>(batch_size)
                .map_err(|e| driver_error("allocating a device slot", e))?;
            let data_ptr = {
                let (p, _sync) = data.device_ptr(&upload);
                p
            };
            let labels_ptr = {
                let (p, _sync) = labels.device_ptr(&upload);
                p
            };
            let event = || {
                ctx.new_event(None)
                    .map_err(|e| driver_error("creating an event", e))
            };
            ring.push(Arc::new(Slot {
                data,
                data_ptr,
                labels,
                labels_ptr,
                uploaded: event()?,
                released: event()?,
                held: AtomicBool::new(false),
                host_labels: UnsafeCell::new(Vec::with_capacity(batch_size)),
                consumer: Arc::clone(&consumer),
            }));
        }
        // The allocations above are ordered on the upload stream: finish them once.
        upload
            .synchronize()
            .map_err(|e| driver_error("allocating the device slots", e))?;
        Ok(DeviceFeeder {
            upload,
            consumer,
            slots: ring,
            next: 0,
            inflight: VecDeque::with_capacity(slots),
            sample_bytes,
            batch_size,
            spec: Arc::new(spec.clone()),
        })
    }

    /// Device slots in the ring.
    ///
    /// ```no_run
    /// # let f = stoker::cuda::DeviceFeeder::new(&stoker::cuda::Device::open(0)?, &stoker::OutputSpec::new(8, 8, 3), 4, 3)?;
    /// assert_eq!(f.slots(), 3);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Samples per batch (the capacity of a slot).
    ///
    /// ```no_run
    /// # let f = stoker::cuda::DeviceFeeder::new(&stoker::cuda::Device::open(0)?, &stoker::OutputSpec::new(8, 8, 3), 4, 2)?;
    /// assert_eq!(f.batch_size(), 4);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The stream the copies run on.
    ///
    /// ```no_run
    /// # let f = stoker::cuda::DeviceFeeder::new(&stoker::cuda::Device::open(0)?, &stoker::OutputSpec::new(8, 8, 3), 4, 2)?;
    /// f.upload_stream().synchronize().unwrap();
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn upload_stream(&self) -> &Arc<CudaStream> {
        &self.upload
    }

    /// The stream the consumer's work goes on: ordered after each batch's copy.
    ///
    /// ```no_run
    /// # let f = stoker::cuda::DeviceFeeder::new(&stoker::cuda::Device::open(0)?, &stoker::OutputSpec::new(8, 8, 3), 4, 2)?;
    /// f.consumer_stream().synchronize().unwrap();
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn consumer_stream(&self) -> &Arc<CudaStream> {
        &self.consumer
    }

    /// Returns to the loader's pool every host batch whose copy has completed; with `wait`,
    /// waits for the oldest copy first.
    fn retire(&mut self, wait: bool) -> Result<()> {
        if wait {
            if let Some((s, _)) = self.inflight.front() {
                self.slots[*s]
                    .uploaded
                    .synchronize()
                    .map_err(|e| driver_error("waiting for an upload", e))?;
            }
        }
        while let Some((s, _)) = self.inflight.front() {
            let done = self.slots[*s]
                .uploaded
                .try_is_complete()
                .map_err(|e| driver_error("an upload failed", e))?;
            if !done {
                break;
            }
            self.inflight.pop_front(); // drops the host batch: back to the pool
        }
        Ok(())
    }

    /// Copies `batch` into the next slot and returns it on the device; the consumer stream
    /// waits for the copy. The host batch is kept until its copy completes.
    ///
    /// ```no_run
    /// use stoker::{cuda::{Device, DeviceFeeder}, Loader, source::ImageFolder};
    /// let device = Device::open(0)?;
    /// let mut loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?).batch_size(8).build()?;
    /// let mut feeder = DeviceFeeder::new(&device, loader.spec(), 8, 2)?;
    /// let batch = loader.epoch(0).next().unwrap()?;
    /// let on_gpu = feeder.upload(batch)?;
    /// assert_eq!(on_gpu.len(), 8);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn upload(&mut self, batch: Batch) -> Result<DeviceBatch> {
        if batch.spec() != &*self.spec || batch.capacity() > self.batch_size {
            return Err(Error::config(format!(
                "batch of {} x {:?} does not match the feeder's {} x {:?}",
                batch.capacity(),
                batch.spec().sample_shape(),
                self.batch_size,
                self.spec.sample_shape()
            )));
        }
        let s = self.next;
        let slot = Arc::clone(&self.slots[s]);
        if slot.held.load(Ordering::Acquire) {
            return Err(Error::config(format!(
                "all {} device slots are held by the consumer: drop a DeviceBatch before asking \
                 for the next (or use more slots)",
                self.slots.len()
            )));
        }
        // The host batch last copied into this slot must be done before its events are
        // recorded again; and keep at most `slots` host batches waiting.
        while self.inflight.iter().any(|(i, _)| *i == s) || self.inflight.len() >= self.slots.len()
        {
            self.retire(true)?;
        }
        let bytes = batch.as_bytes();
        let upload = &self.upload;
        let err = |e| driver_error("queueing an upload", e);
        // SAFETY: the slot's buffers hold `batch_size` samples and labels (checked above);
        // the host memory stays alive and unmoved in `inflight` until `uploaded` completes;
        // the upload stream first waits for the consumer to release the slot.
        unsafe {
            upload.wait(&slot.released).map_err(err)?;
            result::memcpy_htod_async(slot.data_ptr, bytes, upload.cu_stream()).map_err(err)?;
            if let Some(labels) = batch.labels() {
                result::memcpy_htod_async(slot.labels_ptr, labels, upload.cu_stream())
                    .map_err(err)?;
            }
            // Written only while not held (checked above); no reader exists now.
            let host = &mut *slot.host_labels.get();
            host.clear();
            host.extend_from_slice(batch.labels().unwrap_or(&[]));
        }
        slot.uploaded.record(upload).map_err(err)?;
        self.consumer.wait(&slot.uploaded).map_err(err)?;
        slot.held.store(true, Ordering::Release);
        let out = DeviceBatch {
            slot,
            len: batch.len(),
            sample_bytes: self.sample_bytes,
            spec: Arc::clone(&self.spec),
            epoch: batch.epoch(),
            first_position: batch.first_position(),
        };
        self.inflight.push_back((s, batch));
        self.next = (s + 1) % self.slots.len();
        self.retire(false)?;
        Ok(out)
    }

    /// Waits for every queued copy and returns every host batch to the loader's pool.
    ///
    /// ```no_run
    /// # let mut f = stoker::cuda::DeviceFeeder::new(&stoker::cuda::Device::open(0)?, &stoker::OutputSpec::new(8, 8, 3), 4, 2)?;
    /// f.synchronize()?;
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn synchronize(&mut self) -> Result<()> {
        self.upload
            .synchronize()
            .map_err(|e| driver_error("waiting for the uploads", e))?;
        self.inflight.clear();
        Ok(())
    }

    /// An iterator of device batches over a loader's epoch.
    ///
    /// ```no_run
    /// use stoker::{cuda::{Device, DeviceFeeder}, Loader, source::ImageFolder};
    /// let device = Device::open(0)?;
    /// let mut loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?).batch_size(8).build()?;
    /// let mut feeder = DeviceFeeder::new(&device, loader.spec(), 8, 2)?;
    /// let n = feeder.feed(loader.epoch(0)).count();
    /// assert_eq!(n, 4);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn feed<'a, S: Source + 'static>(&'a mut self, epoch: Epoch<'a, S>) -> Feed<'a, S> {
        Feed {
            feeder: self,
            epoch,
        }
    }
}

impl Drop for DeviceFeeder {
    fn drop(&mut self) {
        // Host batches must outlive their copies.
        let _ = self.upload.synchronize();
        self.inflight.clear();
    }
}

/// Device batches of one epoch: see [`DeviceFeeder::feed`].
pub struct Feed<'a, S: Source + 'static> {
    feeder: &'a mut DeviceFeeder,
    epoch: Epoch<'a, S>,
}

impl<S: Source + 'static> Iterator for Feed<'_, S> {
    type Item = Result<DeviceBatch>;

    fn next(&mut self) -> Option<Result<DeviceBatch>> {
        let batch = match self.epoch.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some(self.feeder.upload(batch))
    }
}

/// One batch in device memory, ordered on the consumer stream after its copy. Dropping it
/// records, on the consumer stream, that the consumer's work on it is queued: the slot is
/// refilled only after that work has run.
pub struct DeviceBatch {
    slot: Arc<Slot>,
    len: usize,
    sample_bytes: usize,
    spec: Arc<OutputSpec>,
    epoch: u64,
    first_position: usize,
}

impl std::fmt::Debug for DeviceBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBatch")
            .field("len", &self.len)
            .field("epoch", &self.epoch)
            .field("first_position", &self.first_position)
            .finish()
    }
}

impl DeviceBatch {
    /// Samples in the batch.
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { assert!(b.len() > 0); }
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no sample (never, for a batch from a feeder).
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { assert!(!b.is_empty()); }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The output spec of every sample (dtype, layout, size).
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { assert_eq!(b.spec().channels, 3); }
    /// ```
    pub fn spec(&self) -> &OutputSpec {
        &self.spec
    }

    /// Device address of the first sample: `len() * spec().sample_bytes()` bytes follow.
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { assert_ne!(b.data_ptr(), 0); }
    /// ```
    pub fn data_ptr(&self) -> sys::CUdeviceptr {
        self.slot.data_ptr
    }

    /// Bytes of sample data in the batch.
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { assert_eq!(b.num_bytes(), b.len() * b.spec().sample_bytes()); }
    /// ```
    pub fn num_bytes(&self) -> usize {
        self.len * self.sample_bytes
    }

    /// Device address of the labels (`len()` `i64` values), when the source has labels.
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { let _ = b.labels_ptr(); }
    /// ```
    pub fn labels_ptr(&self) -> Option<sys::CUdeviceptr> {
        (!self.host_labels().is_empty()).then_some(self.slot.labels_ptr)
    }

    /// The labels on the host (empty when the source has none).
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { assert!(b.host_labels().len() <= b.len()); }
    /// ```
    pub fn host_labels(&self) -> &[i64] {
        // SAFETY: the feeder writes the slot's labels only while no DeviceBatch holds it.
        unsafe { &*self.slot.host_labels.get() }
    }

    /// The slot's buffers as cudarc slices (capacity of the slot; the batch's data is the
    /// first [`DeviceBatch::num_bytes`] bytes).
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { assert!(b.device_slices().0.len() >= b.num_bytes()); }
    /// ```
    pub fn device_slices(&self) -> (&CudaSlice<u8>, &CudaSlice<i64>) {
        (&self.slot.data, &self.slot.labels)
    }

    /// Epoch the batch belongs to.
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { let _ = b.epoch(); }
    /// ```
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Position of the first sample in the epoch's order (to resume from).
    ///
    /// ```no_run
    /// # fn f(b: stoker::cuda::DeviceBatch) { let _ = b.first_position(); }
    /// ```
    pub fn first_position(&self) -> usize {
        self.first_position
    }
}

impl Drop for DeviceBatch {
    fn drop(&mut self) {
        // Whatever the consumer queued on its stream reading this slot runs before the next
        // copy into it (the upload stream waits for this event).
        let _ = self.slot.released.record(&self.slot.consumer);
        self.slot.held.store(false, Ordering::Release);
    }
}
