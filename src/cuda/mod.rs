//! The CUDA side of the loader (feature `cuda`): opening a GPU and page-locked batch memory.
//!
//! The NVIDIA driver library (`libcuda.so`) is loaded at run time through `cudarc`, so a
//! binary built with this feature runs, and reports a clear error, on a machine without a GPU.
//! Every entry point checks for the driver before touching `cudarc` (whose context constructor
//! panics when the library is missing) and returns an [`ErrorKind::NoDevice`] error whose
//! message starts with `"no NVIDIA driver found:"` instead. A library that cannot be loaded,
//! or a machine without a GPU, is [`ErrorKind::NoDevice`]; a CUDA or NVRTC call that fails is
//! [`ErrorKind::Device`], with the `cudarc` error as its
//! [`source`](std::error::Error::source).
//!
//! [`Device`]; [`PinnedAlloc`], which makes a loader's batch ring page-locked so that uploads
//! can be asynchronous; [`DeviceFeeder`], which uploads batches on its own stream into a ring
//! of device slots (and, with [`DeviceFeeder::with_convert`], uploads `u8` and converts on the
//! GPU with a kernel compiled at run time by NVRTC: [`compile_ptx`]). See `docs/gpu.md`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use stoker::cuda::{Device, PinnedAlloc};
//! use stoker::source::ImageFolder;
//! use stoker::Loader;
//!
//! let gpu = Device::open(0)?;
//! let loader = Loader::builder(ImageFolder::open("data/train")?)
//!     .batch_size(256)
//!     .allocator(Arc::new(PinnedAlloc::for_device(&gpu)))
//!     .build()?;
//! assert_eq!(loader.allocator_name(), "pinned");
//! # Ok::<(), stoker::Error>(())
//! ```

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::sync::{Arc, OnceLock};

use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DriverError, HostSlice, PinnedHostSlice, sys,
};

mod feeder;
pub use feeder::{DeviceBatch, DeviceFeeder, Feed};

/// The `cudarc` this feature is built on (its driver, NVRTC and cuBLAS modules, loaded at run
/// time), for launching work on the feeder's streams with the same version.
///
/// ```
/// let _ = stoker::cuda::cudarc::driver::LaunchConfig::for_num_elems(256);
/// ```
pub use cudarc;

use crate::batch::{Allocator, HostMemory};
use crate::{Error, ErrorKind, Result};

/// Start of the message of the error every entry point returns when there is no driver library.
pub const NO_DRIVER: &str = "no NVIDIA driver found:";

/// Whether the NVIDIA driver library (`libcuda.so`, or `nvcuda.dll`) can be loaded.
///
/// Checked once per process; no CUDA call is made.
///
/// ```
/// // On a machine without a GPU this is false, and nothing panics.
/// let present = stoker::cuda::driver_present();
/// # let _ = present;
/// ```
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library by its usual names (running its initialisers,
    // as any use of the driver would) and drops the handle.
    #[cfg(not(feature = "candle-cuda"))]
    let present = || unsafe { sys::is_culib_present() };
    // candle's CUDA backend links libcuda at build time: this process started, so it is there.
    #[cfg(feature = "candle-cuda")]
    let present = || true;
    *PRESENT.get_or_init(present)
}

/// The error every entry point returns when [`driver_present`] is false.
fn no_driver() -> Error {
    Error::new(
        ErrorKind::NoDevice,
        format!(
            "{NO_DRIVER} could not load libcuda.so (or libcuda.so.1): install the NVIDIA driver, \
             or check that its library directory is on the loader path (LD_LIBRARY_PATH)"
        ),
    )
}

/// A failed driver call: [`ErrorKind::Device`], or [`ErrorKind::NoDevice`] when the driver
/// says there is no GPU (or none of that ordinal).
pub(crate) fn driver_error(what: &str, e: DriverError) -> Error {
    use sys::CUresult as R;
    let kind = match e.0 {
        R::CUDA_ERROR_NO_DEVICE | R::CUDA_ERROR_INVALID_DEVICE => ErrorKind::NoDevice,
        _ => ErrorKind::Device,
    };
    Error::new(kind, format!("cuda: {what}: {e}")).with_source(e)
}

/// Fails with the no-driver error unless the driver library loads.
fn require_driver() -> Result<()> {
    if driver_present() {
        Ok(())
    } else {
        Err(no_driver())
    }
}

/// Start of the message of the error returned when the NVRTC library (`libnvrtc.so`, needed
/// to compile kernels at run time) cannot be loaded.
pub const NO_NVRTC: &str = "no NVRTC library found:";

/// Whether the NVRTC library can be loaded (checked once per process; no call is made).
///
/// ```
/// let present = stoker::cuda::nvrtc_present();
/// # let _ = present;
/// ```
pub fn nvrtc_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library by its usual names and drops the handle.
    #[cfg(not(feature = "candle-cuda"))]
    let present = || unsafe { cudarc::nvrtc::sys::is_culib_present() };
    // Linked at build time with candle's CUDA backend (see `driver_present`).
    #[cfg(feature = "candle-cuda")]
    let present = || true;
    *PRESENT.get_or_init(present)
}

/// Compiles CUDA C `source` to PTX with NVRTC (loaded at run time), with `--fmad=false` so
/// that multiplies and adds round one at a time, as stoker's CPU code does. Needs no GPU.
/// Without the library the error's message starts with [`NO_NVRTC`]; a compile error carries
/// NVRTC's log.
///
/// ```
/// let ptx = stoker::cuda::compile_ptx(stoker::gpu_convert::KERNEL_SOURCE, "convert.cu");
/// match ptx {
///     Ok(ptx) => assert!(ptx.contains(".entry stoker_convert_u8")),
///     Err(e) => assert!(e.message().starts_with("no NVRTC library found:")),
/// }
/// ```
pub fn compile_ptx(source: &str, name: &str) -> Result<String> {
    Ok(compile(source, name)?.to_src())
}

pub(crate) fn compile(source: &str, name: &str) -> Result<cudarc::nvrtc::Ptx> {
    if !nvrtc_present() {
        return Err(Error::new(
            ErrorKind::NoDevice,
            format!(
                "{NO_NVRTC} could not load libnvrtc.so (or libnvrtc.so.12): install the CUDA \
                 toolkit's NVRTC (e.g. the cuda-nvrtc package, or pip's \
                 nvidia-cuda-nvrtc-cu12) and put its library directory on LD_LIBRARY_PATH"
            ),
        ));
    }
    let opts = cudarc::nvrtc::CompileOptions {
        fmad: Some(false),
        name: Some(name.to_string()),
        ..Default::default()
    };
    std::panic::catch_unwind(|| cudarc::nvrtc::compile_ptx_with_opts(source, opts))
        .map_err(|_| {
            Error::new(
                ErrorKind::NoDevice,
                format!("{NO_NVRTC} a symbol is missing from libnvrtc"),
            )
        })?
        .map_err(|e| {
            Error::new(ErrorKind::Device, format!("nvrtc: compiling {name}: {e}")).with_source(e)
        })
}

/// One GPU, with its primary context retained.
///
/// ```no_run
/// let gpu = stoker::cuda::Device::open(0)?;
/// println!("{} ({} MiB free)", gpu.name()?, gpu.memory()?.0 >> 20);
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone)]
pub struct Device {
    ctx: Arc<CudaContext>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.ctx.ordinal())
            .finish()
    }
}

impl Device {
    /// Opens GPU `ordinal` (0 is the first). Without a driver the error's message starts with
    /// [`NO_DRIVER`]. No GPU, an ordinal past the last GPU or a driver older than the
    /// bindings is a [`ErrorKind::NoDevice`] error naming the reason; another failure to
    /// start is [`ErrorKind::Device`].
    ///
    /// ```
    /// match stoker::cuda::Device::open(0) {
    ///     Ok(gpu) => assert_eq!(gpu.ordinal(), 0),
    ///     Err(e) if !stoker::cuda::driver_present() => {
    ///         assert!(e.message().starts_with("no NVIDIA driver found:"))
    ///     }
    ///     Err(e) => println!("driver present but no usable GPU 0: {e}"),
    /// }
    /// ```
    pub fn open(ordinal: usize) -> Result<Device> {
        require_driver()?;
        // cudarc resolves each driver symbol on first use and panics if one is missing (a
        // driver older than the CUDA version cudarc was built for): report that as an error.
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| {
                Error::new(
                    ErrorKind::NoDevice,
                    format!(
                        "cuda: opening GPU {ordinal} panicked inside the driver bindings \
                         (is the NVIDIA driver older than CUDA 12.8?)"
                    ),
                )
            })?
            .map_err(|e| driver_error(&format!("opening GPU {ordinal}"), e))?;
        Ok(Device { ctx })
    }

    /// Number of GPUs the driver sees.
    ///
    /// ```no_run
    /// assert!(stoker::cuda::Device::count()? >= 1);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn count() -> Result<usize> {
        require_driver()?;
        let n = std::panic::catch_unwind(CudaContext::device_count)
            .map_err(|_| {
                Error::new(
                    ErrorKind::NoDevice,
                    "cuda: counting GPUs panicked inside the driver bindings",
                )
            })?
            .map_err(|e| driver_error("counting GPUs", e))?;
        Ok(n.max(0) as usize)
    }

    /// The ordinal this device was opened with.
    ///
    /// ```no_run
    /// assert_eq!(stoker::cuda::Device::open(1)?.ordinal(), 1);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    /// The GPU's name, e.g. `"NVIDIA H100 80GB HBM3"`.
    ///
    /// ```no_run
    /// println!("{}", stoker::cuda::Device::open(0)?.name()?);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn name(&self) -> Result<String> {
        self.ctx.name().map_err(|e| driver_error("device name", e))
    }

    /// `(free, total)` device memory in bytes (cuMemGetInfo).
    ///
    /// ```no_run
    /// let (free, total) = stoker::cuda::Device::open(0)?.memory()?;
    /// assert!(free <= total);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx
            .mem_get_info()
            .map_err(|e| driver_error("memory info", e))
    }

    /// Host-to-device copy bandwidth for copies of `bytes`, from pinned (portable,
    /// page-locked) and from pageable memory, timed with CUDA events on a new stream over
    /// `repeats` copies each, after one warm-up copy.
    ///
    /// ```no_run
    /// let bw = stoker::cuda::Device::open(0)?.h2d_bandwidth(64 << 20, 10)?;
    /// println!("pinned {:.1} GB/s, pageable {:.1} GB/s", bw.pinned_gbps, bw.pageable_gbps);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn h2d_bandwidth(&self, bytes: usize, repeats: usize) -> Result<H2dBandwidth> {
        if bytes == 0 || repeats == 0 {
            return Err(Error::usage("h2d_bandwidth: bytes and repeats must be > 0"));
        }
        let err = |what: &str| {
            let what = what.to_string();
            move |e: DriverError| driver_error(&what, e)
        };
        let stream = self.ctx.new_stream().map_err(err("new stream"))?;
        let mut dev = stream
            .alloc_zeros::<u8>(bytes)
            .map_err(err("device buffer"))?;
        // SAFETY: filled before it is read.
        let mut pinned = unsafe {
            self.ctx
                .alloc_pinned_with_flags::<u8>(bytes, sys::CU_MEMHOSTALLOC_PORTABLE)
        }
        .map_err(err("pinned buffer"))?;
        pinned.as_mut_slice().map_err(err("pinned buffer"))?.fill(1);
        let pageable = vec![1u8; bytes];
        let total = (bytes * repeats) as f64;
        let pinned_s = time_copies(&stream, &pinned, &mut dev, repeats)
            .map_err(err("timing pinned copies"))?;
        let pageable_s = time_copies(&stream, &pageable, &mut dev, repeats)
            .map_err(err("timing pageable copies"))?;
        Ok(H2dBandwidth {
            bytes,
            pinned_gbps: total / pinned_s.max(1e-9) / 1e9,
            pageable_gbps: total / pageable_s.max(1e-9) / 1e9,
        })
    }

    /// The underlying `cudarc` context, for streams, copies and kernels of your own.
    ///
    /// ```no_run
    /// let gpu = stoker::cuda::Device::open(0)?;
    /// let stream = gpu.context().default_stream();
    /// # let _ = stream;
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }
}

/// Host-to-device copy bandwidth measured by [`Device::h2d_bandwidth`], in GB/s (10^9 bytes/s).
///
/// ```
/// let bw = stoker::cuda::H2dBandwidth { bytes: 1 << 20, pinned_gbps: 25.0, pageable_gbps: 9.0 };
/// assert!(bw.pinned_gbps > bw.pageable_gbps);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct H2dBandwidth {
    /// Bytes per copy.
    pub bytes: usize,
    /// From page-locked memory.
    pub pinned_gbps: f64,
    /// From ordinary (pageable) memory, which the driver stages through a pinned buffer.
    pub pageable_gbps: f64,
}

/// Seconds for `repeats` copies of `src` into `dst` on `stream`, by events (after a warm-up).
fn time_copies<S: HostSlice<u8> + ?Sized>(
    stream: &Arc<CudaStream>,
    src: &S,
    dst: &mut CudaSlice<u8>,
    repeats: usize,
) -> std::result::Result<f64, DriverError> {
    let timing = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    stream.memcpy_htod(src, dst)?;
    let start = stream.record_event(timing)?;
    for _ in 0..repeats {
        stream.memcpy_htod(src, dst)?;
    }
    let end = stream.record_event(timing)?;
    end.synchronize()?;
    Ok(f64::from(start.elapsed_ms(&end)?) / 1e3)
}

/// Page-locked (pinned) host memory for the batch ring: cuMemHostAlloc with
/// `CU_MEMHOSTALLOC_PORTABLE` (pinned for every context, not write-combined, so the CPU can
/// still read batches back at full speed). Uploads from pinned memory run at full PCIe speed and
/// can be asynchronous; workers write samples straight into it, with no staging copy.
///
/// ```no_run
/// use std::sync::Arc;
/// use stoker::cuda::PinnedAlloc;
/// use stoker::source::ImageFolder;
/// use stoker::Loader;
///
/// let loader = Loader::builder(ImageFolder::open("data/train")?)
///     .allocator(Arc::new(PinnedAlloc::new(0)?))
///     .build()?;
/// assert_eq!(loader.allocator_name(), "pinned");
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PinnedAlloc {
    device: Device,
}

impl PinnedAlloc {
    /// Pinned memory registered through GPU `ordinal`'s context (usable by every context, as
    /// the allocation is portable). Errors as [`Device::open`]: without a driver the message
    /// starts with [`NO_DRIVER`].
    ///
    /// ```
    /// if !stoker::cuda::driver_present() {
    ///     let e = stoker::cuda::PinnedAlloc::new(0).unwrap_err();
    ///     assert!(e.message().starts_with("no NVIDIA driver found:"));
    /// }
    /// ```
    pub fn new(ordinal: usize) -> Result<PinnedAlloc> {
        Ok(PinnedAlloc {
            device: Device::open(ordinal)?,
        })
    }

    /// Pinned memory through an already opened device.
    ///
    /// ```no_run
    /// use stoker::batch::Allocator;
    /// let gpu = stoker::cuda::Device::open(0)?;
    /// let mem = stoker::cuda::PinnedAlloc::for_device(&gpu).allocate(1 << 20)?;
    /// assert_eq!(mem.as_mut_ptr() as usize % 64, 0);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn for_device(device: &Device) -> PinnedAlloc {
        PinnedAlloc {
            device: device.clone(),
        }
    }
}

struct PinnedMem {
    ptr: *mut u8,
    len: usize,
    // Frees the memory (after any copy from it recorded on its event completed) when dropped.
    _slice: PinnedHostSlice<u8>,
}

// SAFETY: the memory is owned exclusively by this value (a driver allocation, not inside it);
// access is coordinated by the pool.
unsafe impl Send for PinnedMem {}
// SAFETY: `&PinnedMem` only hands out the pointer; who writes through it and when is
// coordinated by the pool (one writer per slot, no reader until the batch is complete).
unsafe impl Sync for PinnedMem {}

// SAFETY: `ptr` was taken once from the slice, which lives (and keeps the memory allocated) as
// long as this value; the memory is the driver's, not inside the value, so moving the value
// keeps it valid; cuMemHostAlloc returns page-aligned memory, checked at allocation.
unsafe impl HostMemory for PinnedMem {
    fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl Allocator for PinnedAlloc {
    fn allocate(&self, bytes: usize) -> Result<Box<dyn HostMemory>> {
        let ctx = self.device.context();
        // cuMemHostAlloc of 0 bytes fails: allocate at least one.
        let n = bytes.max(1);
        // SAFETY: the memory is zeroed below before anyone reads it.
        let mut slice =
            unsafe { ctx.alloc_pinned_with_flags::<u8>(n, sys::CU_MEMHOSTALLOC_PORTABLE) }
                .map_err(|e| driver_error(&format!("pinning a {bytes}-byte batch buffer"), e))?;
        let ptr = slice
            .as_mut_ptr()
            .map_err(|e| driver_error("pinned buffer pointer", e))?;
        if !(ptr as usize).is_multiple_of(64) {
            return Err(Error::new(
                ErrorKind::Device,
                format!("cuda: pinned buffer at {ptr:p} is not aligned to 64 bytes"),
            ));
        }
        // SAFETY: `ptr` is valid for `n` bytes, just allocated and not shared.
        unsafe { std::ptr::write_bytes(ptr, 0, n) };
        Ok(Box::new(PinnedMem {
            ptr,
            len: bytes,
            _slice: slice,
        }))
    }
    fn name(&self) -> &str {
        "pinned"
    }
    fn page_locked(&self) -> bool {
        true
    }
}
