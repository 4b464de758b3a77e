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
//!
//! With [`DeviceFeeder::with_convert`] the host batch is `u8` NHWC: it is copied into the
//! slot's raw buffer (without waiting for the consumer), then, once `released[s]` is reached,
//! the conversion kernel ([`crate::gpu_convert`]) writes the slot's output on the upload
//! stream, and `uploaded[s]` is recorded after it.
//!
//! Labels and noise keys are staged in a small page-locked buffer per slot: a copy from
//! pageable memory would make the host wait for the upload stream (and so for the consumer).

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::ffi::c_void;

use cudarc::driver::{CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, result, sys};

use super::{Device, PinnedAlloc, driver_error};
use crate::batch::{Allocator, Batch, HostMemory};
use crate::gpu_convert::{GpuConvert, KERNEL_NAME, KERNEL_SOURCE};
use crate::loader::Epoch;
use crate::source::Source;
use crate::{Error, ErrorKind, OutputSpec, Result};

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
    /// Page-locked staging: `batch_size` labels (i64), then `batch_size` noise keys (u32).
    /// Rewritten only after the slot's previous upload completed.
    aux: Box<dyn HostMemory>,
    /// With a conversion: the raw u8 batch and the per-sample noise keys, on the device.
    raw: Option<(CudaSlice<u8>, sys::CUdeviceptr)>,
    keys: Option<(CudaSlice<u32>, sys::CUdeviceptr)>,
}

/// The conversion kernel, loaded, and its fixed arguments.
struct Convert {
    conv: GpuConvert,
    func: CudaFunction,
    _params: CudaSlice<f32>,
    params_ptr: sys::CUdeviceptr,
    pixels: u64,
    channels: i32,
    planar: i32,
    dtype: i32,
    noise: i32,
}

// SAFETY: `host_labels` is written by the feeder only while `held` is false, and read only
// through the one `DeviceBatch` that holds the slot; the CUDA handles are thread-safe.
unsafe impl Send for Slot {}
// SAFETY: as for `Send`: shared references read `host_labels` only while the slot is held,
// when the feeder does not write it.
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
    /// The spec of the host batches (`spec` itself, or u8 NHWC with a conversion).
    in_spec: OutputSpec,
    convert: Option<Convert>,
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
        DeviceFeeder::build(device, spec, None, batch_size, slots, consumer)
    }

    /// A feeder that uploads `u8` NHWC host batches (`convert.input_spec()`: a quarter of
    /// the bytes of f32) and converts them on the GPU into `convert.output_spec()` —
    /// normalised f32/f16/bf16, NCHW or NHWC, with optional noise — bit-identical to
    /// [`GpuConvert::convert_batch`] on the CPU. The kernel is compiled once, here, by NVRTC
    /// (loaded at run time: an error says so when `libnvrtc` is missing).
    ///
    /// ```no_run
    /// use stoker::{cuda::{Device, DeviceFeeder, PinnedAlloc}, DType, GpuConvert, Layout, Loader};
    /// use stoker::{source::ImageFolder, Normalize};
    /// let device = Device::open(0)?;
    /// let mut loader = Loader::builder(ImageFolder::open("fixtures/photos-256x144")?)
    ///     .batch_size(8).dtype(DType::U8).layout(Layout::Nhwc)
    ///     .allocator(std::sync::Arc::new(PinnedAlloc::for_device(&device)))
    ///     .build()?;
    /// let out = loader.spec().clone().with_dtype(DType::F16).with_layout(Layout::Nchw)
    ///     .with_normalize(Normalize::imagenet());
    /// let conv = GpuConvert::new(&out)?.with_noise(0.02, 0)?;
    /// let stream = device.context().new_stream().unwrap();
    /// let mut feeder = DeviceFeeder::with_convert(&device, &conv, 8, 2, stream)?;
    /// for batch in feeder.feed(loader.epoch(0)) {
    ///     assert_eq!(batch?.spec().dtype, DType::F16);
    /// }
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn with_convert(
        device: &Device,
        convert: &GpuConvert,
        batch_size: usize,
        slots: usize,
        consumer: Arc<CudaStream>,
    ) -> Result<DeviceFeeder> {
        let spec = convert.output_spec().clone();
        DeviceFeeder::build(device, &spec, Some(convert), batch_size, slots, consumer)
    }

    fn build(
        device: &Device,
        spec: &OutputSpec,
        convert: Option<&GpuConvert>,
        batch_size: usize,
        slots: usize,
        consumer: Arc<CudaStream>,
    ) -> Result<DeviceFeeder> {
        spec.validate()?;
        if batch_size == 0 {
            return Err(Error::usage("batch_size must be > 0"));
        }
        if slots < 2 {
            return Err(Error::usage(
                "a device feeder needs at least 2 slots (one filled while one is in use)",
            ));
        }
        let ctx = device.context();
        let upload = ctx
            .new_stream()
            .map_err(|e| driver_error("creating the upload stream", e))?;
        let in_spec = convert.map_or_else(|| spec.clone(), GpuConvert::input_spec);
        let sample_bytes = spec.sample_bytes();
        let pinned = PinnedAlloc::for_device(device);
        let alloc_err = |e| driver_error("allocating a device slot", e);
        let mut ring = Vec::with_capacity(slots);
        for _ in 0..slots {
            let data = upload
                .alloc_zeros::<u8>(sample_bytes * batch_size)
                .map_err(alloc_err)?;
            let labels = upload.alloc_zeros::<i64>(batch_size).map_err(alloc_err)?;
            let data_ptr = device_ptr(&data, &upload);
            let labels_ptr = device_ptr(&labels, &upload);
            let (raw, keys) = if convert.is_some() {
                let raw = upload
                    .alloc_zeros::<u8>(in_spec.sample_bytes() * batch_size)
                    .map_err(alloc_err)?;
                let keys = upload.alloc_zeros::<u32>(batch_size).map_err(alloc_err)?;
                let (rp, kp) = (device_ptr(&raw, &upload), device_ptr(&keys, &upload));
                (Some((raw, rp)), Some((keys, kp)))
            } else {
                (None, None)
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
                aux: pinned.allocate(batch_size * 12)?,
                raw,
                keys,
            }));
        }
        let convert = match convert {
            None => None,
            Some(conv) => Some(load_convert(device, &upload, conv)?),
        };
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
            in_spec,
            convert,
        })
    }

    /// The on-GPU conversion, when the feeder uploads `u8` batches.
    ///
    /// ```no_run
    /// # let f = stoker::cuda::DeviceFeeder::new(&stoker::cuda::Device::open(0)?, &stoker::OutputSpec::new(8, 8, 3), 4, 2)?;
    /// assert!(f.convert().is_none());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn convert(&self) -> Option<&GpuConvert> {
        self.convert.as_ref().map(|c| &c.conv)
    }

    /// The spec the host batches must have (the output spec, or `u8` NHWC with a conversion).
    ///
    /// ```no_run
    /// # let f = stoker::cuda::DeviceFeeder::new(&stoker::cuda::Device::open(0)?, &stoker::OutputSpec::new(8, 8, 3), 4, 2)?;
    /// assert_eq!(f.input_spec().width, 8);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn input_spec(&self) -> &OutputSpec {
        &self.in_spec
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
        if wait && let Some((s, _)) = self.inflight.front() {
            self.slots[*s]
                .uploaded
                .synchronize()
                .map_err(|e| driver_error("waiting for an upload", e))?;
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
        if batch.spec() != &self.in_spec || batch.capacity() > self.batch_size {
            let kind = if batch.dtype() != self.in_spec.dtype {
                ErrorKind::DTypeMismatch
            } else {
                ErrorKind::Usage
            };
            return Err(Error::new(
                kind,
                format!(
                    "batch of {} x {} {:?} does not match the feeder's {} x {} {:?}",
                    batch.capacity(),
                    batch.dtype().as_str(),
                    batch.spec().sample_shape(),
                    self.batch_size,
                    self.in_spec.dtype.as_str(),
                    self.in_spec.sample_shape()
                ),
            ));
        }
        let s = self.next;
        let slot = Arc::clone(&self.slots[s]);
        if slot.held.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::PoolExhausted,
                format!(
                    "all {} device slots are held by the consumer: drop a DeviceBatch before \
                     asking for the next (or use more slots)",
                    self.slots.len()
                ),
            ));
        }
        // The host batch last copied into this slot must be done before its events and its
        // staging buffer are used again; and keep at most `slots` host batches waiting.
        while self.inflight.iter().any(|(i, _)| *i == s) || self.inflight.len() >= self.slots.len()
        {
            self.retire(true)?;
        }
        let upload = &self.upload;
        let stream = upload.cu_stream();
        let err = |e| driver_error("queueing an upload", e);
        let n = batch.len();
        let labels = batch.labels().unwrap_or(&[]);
        let aux = slot.aux.as_mut_ptr();
        // SAFETY: the slot's buffers hold `batch_size` samples, labels and keys (checked
        // above); the host memory stays alive and unmoved in `inflight` until `uploaded`
        // completes; the staging buffer's previous copies completed (retired above); the
        // output buffer is written only after the consumer released the slot.
        unsafe {
            let labels_host = std::slice::from_raw_parts_mut(aux.cast::<i64>(), self.batch_size);
            labels_host[..labels.len()].copy_from_slice(labels);
            if !labels.is_empty() {
                result::memcpy_htod_async(slot.labels_ptr, &labels_host[..labels.len()], stream)
                    .map_err(err)?;
            }
            match (&self.convert, &slot.raw, &slot.keys) {
                (Some(cv), Some((_, raw_ptr)), Some((_, keys_ptr))) => {
                    result::memcpy_htod_async(*raw_ptr, batch.as_bytes(), stream).map_err(err)?;
                    let keys = std::slice::from_raw_parts_mut(
                        aux.add(self.batch_size * 8).cast::<u32>(),
                        self.batch_size,
                    );
                    for (k, &index) in keys.iter_mut().zip(batch.indices()) {
                        *k = cv.conv.sample_key(batch.epoch(), index);
                    }
                    result::memcpy_htod_async(*keys_ptr, &keys[..n], stream).map_err(err)?;
                    upload.wait(&slot.released).map_err(err)?;
                    launch_convert(cv, *raw_ptr, slot.data_ptr, *keys_ptr, n, stream)
                        .map_err(|e| driver_error("launching the conversion kernel", e))?;
                }
                _ => {
                    upload.wait(&slot.released).map_err(err)?;
                    result::memcpy_htod_async(slot.data_ptr, batch.as_bytes(), stream)
                        .map_err(err)?;
                }
            }
            // Written only while not held (checked above); no reader exists now.
            let host = &mut *slot.host_labels.get();
            host.clear();
            host.extend_from_slice(labels);
        }
        slot.uploaded.record(upload).map_err(err)?;
        self.consumer.wait(&slot.uploaded).map_err(err)?;
        slot.held.store(true, Ordering::Release);
        let out = DeviceBatch {
            slot,
            len: n,
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

/// The device address of a slice allocated on `stream`.
fn device_ptr<T>(slice: &CudaSlice<T>, stream: &CudaStream) -> sys::CUdeviceptr {
    let (p, _sync) = slice.device_ptr(stream);
    p
}

/// Compiles and loads the conversion kernel, and uploads its parameters.
fn load_convert(device: &Device, upload: &Arc<CudaStream>, conv: &GpuConvert) -> Result<Convert> {
    let ptx = super::compile(KERNEL_SOURCE, "convert.cu")?;
    let module = device
        .context()
        .load_module(ptx)
        .map_err(|e| driver_error("loading the conversion kernel", e))?;
    let func = module
        .load_function(KERNEL_NAME)
        .map_err(|e| driver_error("loading the conversion kernel", e))?;
    let params = upload
        .clone_htod(conv.params())
        .map_err(|e| driver_error("uploading the conversion parameters", e))?;
    let params_ptr = device_ptr(&params, upload);
    let out = conv.output_spec();
    Ok(Convert {
        conv: conv.clone(),
        func,
        _params: params,
        params_ptr,
        pixels: (out.width * out.height) as u64,
        channels: out.channels as i32,
        planar: conv.planar(),
        dtype: conv.dtype_code(),
        noise: i32::from(conv.has_noise()),
    })
}

/// Queues the conversion of `n` samples from `raw` into `out` on `stream`.
///
/// # Safety
/// `raw`, `out` and `keys` must be device buffers holding `n` samples (and `n` keys) of the
/// conversion's geometry, and stay alive until the kernel ran on `stream`.
unsafe fn launch_convert(
    cv: &Convert,
    raw: sys::CUdeviceptr,
    out: sys::CUdeviceptr,
    keys: sys::CUdeviceptr,
    n: usize,
    stream: sys::CUstream,
) -> std::result::Result<(), cudarc::driver::DriverError> {
    const BLOCK: u64 = 256;
    let total = cv.pixels * n as u64;
    let grid = total.div_ceil(BLOCK) as u32;
    let (mut raw, mut out, mut keys, mut params) = (raw, out, keys, cv.params_ptr);
    let (mut pixels, mut total) = (cv.pixels, total);
    let (mut c, mut planar, mut dtype, mut noise) = (cv.channels, cv.planar, cv.dtype, cv.noise);
    // The kernel's parameters in order (see src/kernels/convert.cu); no allocation.
    let mut args: [*mut c_void; 10] = [
        (&mut raw as *mut u64).cast(),
        (&mut out as *mut u64).cast(),
        (&mut keys as *mut u64).cast(),
        (&mut params as *mut u64).cast(),
        (&mut pixels as *mut u64).cast(),
        (&mut total as *mut u64).cast(),
        (&mut c as *mut i32).cast(),
        (&mut planar as *mut i32).cast(),
        (&mut dtype as *mut i32).cast(),
        (&mut noise as *mut i32).cast(),
    ];
    // SAFETY: `args` are the kernel's ten parameters in order, each pointing to a local of
    // its type that outlives the call (the driver copies them at launch); the buffers are as
    // the caller guarantees, and the grid covers exactly `total` pixels.
    unsafe {
        result::launch_kernel(
            cv.func.cu_function(),
            (grid.max(1), 1, 1),
            (BLOCK as u32, 1, 1),
            0,
            stream,
            &mut args,
        )
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

    /// The stream the batch is ordered on (the feeder's consumer stream).
    #[cfg_attr(not(feature = "candle-cuda"), allow(dead_code))]
    pub(crate) fn consumer_stream(&self) -> &Arc<CudaStream> {
        &self.slot.consumer
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
