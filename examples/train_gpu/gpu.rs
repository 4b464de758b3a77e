//! The CUDA trainer (`cuda` feature): the training step on the GPU, NVRTC kernels
//! (kernels.cu) and cuBLAS GEMMs on the feeder's consumer stream, with its device buffers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stoker::cuda::cudarc::cublas::sys::cublasOperation_t;
use stoker::cuda::cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use stoker::cuda::cudarc::driver::sys::{CUdeviceptr, CUevent_flags};
use stoker::cuda::cudarc::driver::{
    CudaEvent, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use stoker::cuda::cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};
use stoker::cuda::{Device, DeviceFeeder, PinnedAlloc};

use crate::args::Args;
use crate::model::{Dims, MOMENTUM, Params, RowMajorGemm};
use crate::report::{EpochLog, epoch_line, mib};
use crate::train::{
    Accumulation, at_path, checked_labels, dims_of, loader_builder, no_images, timed_next,
};

/// The CUDA source of the kernels; each mirrors the host function of the same name in
/// [`crate::model`].
pub const KERNELS: &str = include_str!("kernels.cu");

/// Names of the kernels in [`KERNELS`].
pub const KERNEL_NAMES: [&str; 7] = [
    "pool",
    "bias_relu",
    "softmax_xent",
    "batch_stats",
    "relu_backward",
    "bias_grad",
    "sgd_momentum",
];

/// Fails with a clear message unless NVRTC can be loaded (cudarc panics otherwise).
pub fn require_nvrtc() -> Result<(), String> {
    // SAFETY: only tries to dlopen the library by its usual names.
    if unsafe { stoker::cuda::cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "NVRTC not found: could not load libnvrtc.so (install the CUDA toolkit's \
             NVRTC, e.g. the nvidia-cuda-nvrtc-cu12 wheel, and put its lib directory on \
             LD_LIBRARY_PATH)"
                .to_string(),
        )
    }
}

/// Fails with a clear message unless cuBLAS can be loaded (cudarc panics otherwise).
pub fn require_cublas() -> Result<(), String> {
    // SAFETY: only tries to dlopen the library by its usual names.
    if unsafe { stoker::cuda::cudarc::cublas::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "cuBLAS not found: could not load libcublas.so (install the CUDA toolkit's \
             cuBLAS, e.g. the nvidia-cublas-cu12 wheel, and put its lib directory on \
             LD_LIBRARY_PATH)"
                .to_string(),
        )
    }
}

/// Compiles [`KERNELS`] to PTX with NVRTC (no GPU needed). Without fused multiply-adds, so
/// the element-wise kernels round as the CPU functions do.
pub fn compile_kernels() -> Result<Ptx, String> {
    require_nvrtc()?;
    let opts = CompileOptions {
        fmad: Some(false),
        ..Default::default()
    };
    compile_ptx_with_opts(KERNELS, opts).map_err(|e| format!("NVRTC: {e}"))
}

/// A driver error as a message saying what failed.
fn driver<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("cuda: {what}: {e}")
}

/// The loaded kernels.
struct Kernels {
    pool: CudaFunction,
    bias_relu: CudaFunction,
    softmax_xent: CudaFunction,
    batch_stats: CudaFunction,
    relu_backward: CudaFunction,
    bias_grad: CudaFunction,
    sgd_momentum: CudaFunction,
}

/// Parameters, gradients or momentum on the device.
type DevParams = Params<CudaSlice<f32>>;

/// Copies host parameters to the device (queued on `stream`).
fn upload(stream: &Arc<CudaStream>, p: &Params) -> Result<DevParams, String> {
    p.try_map(|v| stream.clone_htod(v).map_err(driver("uploading weights")))
}

/// Reads device parameters back (waits for the queued work).
#[cfg(test)]
fn download(stream: &Arc<CudaStream>, p: &DevParams) -> Result<Params, String> {
    let host = p.try_map(|v| stream.clone_dtoh(v).map_err(driver("reading weights")))?;
    stream.synchronize().map_err(driver("reading weights"))?;
    Ok(host)
}

/// A grid of `len` threads in blocks of 256.
fn grid(len: usize) -> LaunchConfig {
    let threads = 256u32;
    LaunchConfig {
        grid_dim: ((len as u32).div_ceil(threads).max(1), 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The cuBLAS operation: transposed or not.
fn op(trans: bool) -> cublasOperation_t {
    if trans {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

/// Row-major `c = op(a)·op(b) + beta·c` through cuBLAS's column-major sgemm: see
/// [`RowMajorGemm::blas_call`] for the proof of the operand swap and leading dimensions.
fn gemm(
    blas: &CudaBlas,
    g: RowMajorGemm,
    a: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
    c: &mut CudaSlice<f32>,
) -> Result<(), String> {
    let call = g.blas_call();
    let cfg = GemmConfig {
        transa: op(call.trans_a),
        transb: op(call.trans_b),
        m: call.m as i32,
        n: call.n as i32,
        k: call.k as i32,
        alpha: 1.0f32,
        lda: call.lda as i32,
        ldb: call.ldb as i32,
        beta: g.beta,
        ldc: call.ldc as i32,
    };
    debug_assert!(a.len() >= g.m * g.k && b.len() >= g.k * g.n && c.len() >= g.m * g.n);
    // SAFETY: the buffers hold at least the matrices' elements (asserted above; every
    // buffer is sized for a full batch), all on the blas handle's stream. cuBLAS's first
    // operand is our B and its second our A.
    unsafe { blas.gemm(cfg, b, a, c) }.map_err(|e| format!("cuBLAS sgemm: {e:?}"))
}

/// The MLP on the GPU, with its gradients, momentum and scratch buffers; all work goes on
/// `stream`.
pub struct GpuModel {
    dims: Dims,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    params: DevParams,
    grads: DevParams,
    velocity: DevParams,
    feat: CudaSlice<f32>,
    a1: CudaSlice<f32>,
    logits: CudaSlice<f32>,
    dlogits: CudaSlice<f32>,
    da1: CudaSlice<f32>,
    loss: CudaSlice<f32>,
    correct: CudaSlice<f32>,
    /// Loss sum, correct count, images: of the epoch so far.
    stats: CudaSlice<f64>,
}

impl GpuModel {
    /// Compiles and loads the kernels, uploads `params`, allocates buffers for batches of
    /// up to `batch_size`.
    pub fn new(
        stream: Arc<CudaStream>,
        dims: Dims,
        params: &Params,
        batch_size: usize,
    ) -> Result<GpuModel, String> {
        require_cublas()?;
        let ptx = compile_kernels()?;
        let module = stream
            .context()
            .load_module(ptx)
            .map_err(driver("loading the kernels"))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| format!("cuda: kernel {name}: {e}"))
        };
        let k = Kernels {
            pool: f(KERNEL_NAMES[0])?,
            bias_relu: f(KERNEL_NAMES[1])?,
            softmax_xent: f(KERNEL_NAMES[2])?,
            batch_stats: f(KERNEL_NAMES[3])?,
            relu_backward: f(KERNEL_NAMES[4])?,
            bias_grad: f(KERNEL_NAMES[5])?,
            sgd_momentum: f(KERNEL_NAMES[6])?,
        };
        let blas = CudaBlas::new(Arc::clone(&stream)).map_err(driver("creating cuBLAS"))?;
        let zeros = |len: usize| {
            stream
                .alloc_zeros::<f32>(len)
                .map_err(driver("allocating buffers"))
        };
        let b = batch_size;
        let zero = Params::zeros(&dims);
        Ok(GpuModel {
            params: upload(&stream, params)?,
            grads: upload(&stream, &zero)?,
            velocity: upload(&stream, &zero)?,
            feat: zeros(b * dims.features())?,
            a1: zeros(b * dims.hidden)?,
            logits: zeros(b * dims.classes)?,
            dlogits: zeros(b * dims.classes)?,
            da1: zeros(b * dims.hidden)?,
            loss: zeros(b)?,
            correct: zeros(b)?,
            stats: stream
                .alloc_zeros::<f64>(3)
                .map_err(driver("allocating buffers"))?,
            dims,
            stream,
            blas,
            k,
        })
    }

    /// Queues forward and backward for `n` images at device address `x` (f32 NCHW) with
    /// labels at `labels` (`n` i64 values, checked on the host to be in range): the
    /// gradients are added to the accumulated ones, the loss and accuracy to the epoch's.
    ///
    /// # Safety
    /// `x` and `labels` must hold `n` images and labels, be ready on the model's stream
    /// (ordered before it), and stay allocated until the work queued here has run.
    pub unsafe fn train_batch(
        &mut self,
        x: CUdeviceptr,
        labels: CUdeviceptr,
        n: usize,
    ) -> Result<(), String> {
        let d = self.dims;
        let (f, hd, k) = (d.features(), d.hidden, d.classes);
        let gemms = d.gemms(n);
        let s = &self.stream;
        let err = driver("launching a kernel");
        let (ni, ci, hi, wi, pi) = (
            n as i32,
            d.channels as i32,
            d.height as i32,
            d.width as i32,
            d.pool as i32,
        );
        let (hdi, ki) = (hd as i32, k as i32);
        // feat[n×f] = pool(x)
        // SAFETY: the kernel's arguments match its signature; every buffer is the model's,
        // sized for a full batch, or `x`/`labels` as the caller guarantees, on this stream.
        unsafe {
            s.launch_builder(&self.k.pool)
                .arg(&x)
                .arg(&mut self.feat)
                .arg(&ni)
                .arg(&ci)
                .arg(&hi)
                .arg(&wi)
                .arg(&pi)
                .launch(grid(n * f))
        }
        .map_err(&err)?;
        // Z1[n×hd] = feat[n×f] · W1[f×hd]
        gemm(
            &self.blas,
            gemms.hidden,
            &self.feat,
            &self.params.w1,
            &mut self.a1,
        )?;
        // A1 = relu(Z1 + b1)
        // SAFETY: the kernel's arguments match its signature; every buffer is the model's,
        // sized for a full batch, or `x`/`labels` as the caller guarantees, on this stream.
        unsafe {
            s.launch_builder(&self.k.bias_relu)
                .arg(&mut self.a1)
                .arg(&self.params.b1)
                .arg(&ni)
                .arg(&hdi)
                .launch(grid(n * hd))
        }
        .map_err(&err)?;
        // logits[n×k] = A1[n×hd] · W2[hd×k]  (b2 is added inside softmax_xent)
        gemm(
            &self.blas,
            gemms.logits,
            &self.a1,
            &self.params.w2,
            &mut self.logits,
        )?;
        // SAFETY: the kernel's arguments match its signature; every buffer is the model's,
        // sized for a full batch, or `x`/`labels` as the caller guarantees, on this stream.
        unsafe {
            s.launch_builder(&self.k.softmax_xent)
                .arg(&self.logits)
                .arg(&self.params.b2)
                .arg(&labels)
                .arg(&ni)
                .arg(&ki)
                .arg(&mut self.dlogits)
                .arg(&mut self.loss)
                .arg(&mut self.correct)
                .launch(grid(n))
        }
        .map_err(&err)?;
        // SAFETY: the kernel's arguments match its signature; every buffer is the model's,
        // sized for a full batch, or `x`/`labels` as the caller guarantees, on this stream.
        unsafe {
            s.launch_builder(&self.k.batch_stats)
                .arg(&self.loss)
                .arg(&self.correct)
                .arg(&ni)
                .arg(&mut self.stats)
                .launch(grid(1))
        }
        .map_err(&err)?;
        // dW2[hd×k] += A1ᵀ[hd×n] · dlogits[n×k]
        gemm(
            &self.blas,
            gemms.dw2,
            &self.a1,
            &self.dlogits,
            &mut self.grads.w2,
        )?;
        // db2[k] += Σ_rows dlogits
        // SAFETY: the kernel's arguments match its signature; every buffer is the model's,
        // sized for a full batch, or `x`/`labels` as the caller guarantees, on this stream.
        unsafe {
            s.launch_builder(&self.k.bias_grad)
                .arg(&self.dlogits)
                .arg(&mut self.grads.b2)
                .arg(&ni)
                .arg(&ki)
                .launch(grid(k))
        }
        .map_err(&err)?;
        // dA1[n×hd] = dlogits[n×k] · W2ᵀ[k×hd]
        gemm(
            &self.blas,
            gemms.da1,
            &self.dlogits,
            &self.params.w2,
            &mut self.da1,
        )?;
        // dZ1 = dA1 where A1 > 0
        let len = (n * hd) as i32;
        // SAFETY: the kernel's arguments match its signature; every buffer is the model's,
        // sized for a full batch, or `x`/`labels` as the caller guarantees, on this stream.
        unsafe {
            s.launch_builder(&self.k.relu_backward)
                .arg(&mut self.da1)
                .arg(&self.a1)
                .arg(&len)
                .launch(grid(n * hd))
        }
        .map_err(&err)?;
        // dW1[f×hd] += featᵀ[f×n] · dZ1[n×hd]
        gemm(
            &self.blas,
            gemms.dw1,
            &self.feat,
            &self.da1,
            &mut self.grads.w1,
        )?;
        // db1[hd] += Σ_rows dZ1
        // SAFETY: the kernel's arguments match its signature; every buffer is the model's,
        // sized for a full batch, or `x`/`labels` as the caller guarantees, on this stream.
        unsafe {
            s.launch_builder(&self.k.bias_grad)
                .arg(&self.da1)
                .arg(&mut self.grads.b1)
                .arg(&ni)
                .arg(&hdi)
                .launch(grid(hd))
        }
        .map_err(&err)?;
        Ok(())
    }

    /// Queues one SGD step with the accumulated gradients scaled by `scale` (and zeroes
    /// them).
    pub fn step(&mut self, lr: f32, scale: f32) -> Result<(), String> {
        let s = &self.stream;
        let fields = self.params.fields_mut().into_iter();
        let fields = fields
            .zip(self.grads.fields_mut())
            .zip(self.velocity.fields_mut());
        for ((w, g), v) in fields {
            let len = w.len();
            let leni = len as i32;
            // SAFETY: the three buffers hold `len` f32 each, on this stream.
            unsafe {
                s.launch_builder(&self.k.sgd_momentum)
                    .arg(w)
                    .arg(g)
                    .arg(v)
                    .arg(&leni)
                    .arg(&lr)
                    .arg(&MOMENTUM)
                    .arg(&scale)
                    .launch(grid(len))
            }
            .map_err(driver("launching sgd_momentum"))?;
        }
        Ok(())
    }

    /// Zeroes the epoch's loss and accuracy sums.
    pub fn reset_stats(&mut self) -> Result<(), String> {
        self.stream
            .memset_zeros(&mut self.stats)
            .map_err(driver("zeroing the stats"))
    }

    /// Waits for the queued work and reads the epoch's `[loss sum, correct, images]`.
    pub fn read_stats(&self) -> Result<[f64; 3], String> {
        let v = self
            .stream
            .clone_dtoh(&self.stats)
            .map_err(driver("reading the stats"))?;
        self.stream
            .synchronize()
            .map_err(driver("waiting for the GPU"))?;
        Ok([v[0], v[1], v[2]])
    }

    /// The parameters, read back (waits for the queued work).
    #[cfg(test)]
    pub fn params(&self) -> Result<Params, String> {
        download(&self.stream, &self.params)
    }
}

/// Samples `total - free` device memory and updates the peak.
fn sample_memory(device: &Device, peak: &mut usize) -> Result<(usize, usize), String> {
    let (free, total) = device.memory().map_err(|e| e.to_string())?;
    let used = total.saturating_sub(free);
    *peak = (*peak).max(used);
    Ok((used, *peak))
}

/// Trains on GPU 0 from device batches; prints one line per epoch.
pub fn run(args: &Args) -> Result<Vec<EpochLog>, String> {
    let device = Device::open(0).map_err(|e| e.message().to_string())?;
    require_nvrtc()?;
    require_cublas()?;
    let path = args.path.as_path();
    let with_path = |e: stoker::Error| at_path(path, e);
    let mut loader = loader_builder(args)?
        .allocator(Arc::new(PinnedAlloc::for_device(&device)))
        .build()
        .map_err(with_path)?;
    let dims = dims_of(args, &loader)?;
    let mut feeder =
        DeviceFeeder::new(&device, loader.spec(), args.batch_size, 2).map_err(|e| e.to_string())?;
    // `feed` borrows the feeder for the whole epoch: keep our own handle on its stream.
    let stream = Arc::clone(feeder.consumer_stream());
    let mut model = GpuModel::new(
        Arc::clone(&stream),
        dims,
        &Params::init(&dims, args.seed),
        args.batch_size,
    )?;
    println!(
        "{} ({}), {} classes, {}x{} images, {} features, hidden {}",
        device.name().unwrap_or_else(|_| "GPU 0".into()),
        loader.allocator_name(),
        dims.classes,
        dims.width,
        dims.height,
        dims.features(),
        dims.hidden
    );
    let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let mut acc = Accumulation::new(args.accumulate);
    let mut peak = 0usize;
    let mut logs = Vec::with_capacity(args.epochs);
    for epoch in 0..args.epochs {
        let start = Instant::now();
        let mut wait = Duration::ZERO;
        // CUDA events around each batch's work (and the epoch end's flushed step, whose
        // time counts with the epoch's batches).
        let mut events: Vec<(CudaEvent, CudaEvent)> = Vec::new();
        let mut batches = 0;
        model.reset_stats()?;
        let mut it = feeder.feed(loader.epoch(epoch as u64));
        loop {
            let Some(batch) = timed_next(&mut it, &mut wait) else {
                break;
            };
            let batch = batch.map_err(with_path)?;
            let n = batch.len();
            checked_labels(Some(batch.host_labels()), n, dims.classes, path)?;
            let labels = batch
                .labels_ptr()
                .ok_or_else(|| format!("{}: the batch has no labels", path.display()))?;
            if batch.num_bytes() != n * dims.image_len() * 4 {
                return Err(format!(
                    "device batch of {} bytes, expected {}",
                    batch.num_bytes(),
                    n * dims.image_len() * 4
                ));
            }
            let t0 = stream.record_event(timing).map_err(driver("event"))?;
            // SAFETY: the batch's data and labels are ordered before the consumer stream
            // (the feeder made it wait for the copy) and the slot is not refilled before
            // the work queued here has run (dropping the batch records that).
            unsafe { model.train_batch(batch.data_ptr(), labels, n)? };
            if let Some(scale) = acc.after_batch() {
                model.step(args.lr, scale)?;
            }
            let t1 = stream.record_event(timing).map_err(driver("event"))?;
            events.push((t0, t1));
            drop(batch);
            batches += 1;
            if epoch == 0 && batches == 1 {
                stream
                    .synchronize()
                    .map_err(driver("waiting for the GPU"))?;
                let (used, peak) = sample_memory(&device, &mut peak)?;
                println!(
                    "first batch: gpu mem {:.1} MiB in use (peak {:.1} MiB)",
                    mib(used),
                    mib(peak)
                );
            }
        }
        drop(it);
        if let Some(scale) = acc.flush() {
            let t0 = stream.record_event(timing).map_err(driver("event"))?;
            model.step(args.lr, scale)?;
            let t1 = stream.record_event(timing).map_err(driver("event"))?;
            events.push((t0, t1));
        }
        let stats = model.read_stats()?;
        let wall = start.elapsed();
        let mut step_ms = 0.0f64;
        for (t0, t1) in &events {
            step_ms += f64::from(t0.elapsed_ms(t1).map_err(driver("event timing"))?);
        }
        let step = Duration::from_secs_f64(step_ms / 1e3);
        let mut log = EpochLog::from_stats(epoch, stats, batches, wall, step, wait)
            .ok_or_else(|| no_images(path))?;
        log.memory = Some(sample_memory(&device, &mut peak)?);
        println!("{}", epoch_line(&log, args.epochs));
        logs.push(log);
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuModel;
    use crate::model::tests::tiny;

    /// The kernel source compiles with NVRTC (no GPU needed); skipped without libnvrtc.
    #[test]
    fn kernels_compile_with_nvrtc() {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { stoker::cuda::cudarc::nvrtc::sys::is_culib_present() } {
            // CI fetches libnvrtc and sets this, so there the test cannot skip.
            assert!(
                std::env::var_os("STOKER_REQUIRE_NVRTC").is_none(),
                "STOKER_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
            );
            eprintln!("skipped: libnvrtc.so not found");
            return;
        }
        let ptx = compile_kernels().unwrap().to_src();
        for name in KERNEL_NAMES {
            assert!(
                ptx.contains(&format!(".entry {name}(")),
                "no kernel {name} in the PTX"
            );
        }
    }

    /// On a machine with a GPU: one step on the GPU gives the CPU's weights.
    #[test]
    fn gpu_step_matches_cpu() {
        let device = match stoker::cuda::Device::open(0) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        if require_nvrtc().is_err() || require_cublas().is_err() {
            eprintln!("skipped: NVRTC or cuBLAS missing");
            return;
        }
        let (dims, params, x, labels, n) = tiny(6);
        let mut cpu = CpuModel::new(dims, params.clone(), n);
        let mut stats = [0.0; 3];
        let stream = device.context().new_stream().unwrap();
        let mut model = GpuModel::new(Arc::clone(&stream), dims, &params, n).unwrap();
        let dx = stream.clone_htod(&x).unwrap();
        let dy = stream.clone_htod(&labels).unwrap();
        use stoker::cuda::cudarc::driver::DevicePtr;
        let (xp, _rx) = dx.device_ptr(&stream);
        let (yp, _ry) = dy.device_ptr(&stream);
        for _ in 0..2 {
            cpu.train_batch(&x, &labels, n, &mut stats);
            cpu.step(0.1, 1.0);
            // SAFETY: `dx`, `dy` hold `n` images and labels on this stream and outlive it.
            unsafe { model.train_batch(xp, yp, n).unwrap() };
            model.step(0.1, 1.0).unwrap();
        }
        let got = model.params().unwrap();
        let gpu_stats = model.read_stats().unwrap();
        assert!((gpu_stats[0] - stats[0]).abs() < 1e-4 * stats[0].abs().max(1.0));
        assert_eq!(gpu_stats[1..], stats[1..]);
        let want = &cpu.params;
        for (u, v) in got.fields().into_iter().zip(want.fields()) {
            for (p, q) in u.iter().zip(v) {
                assert!((p - q).abs() <= 1e-4 * q.abs().max(1.0), "{p} vs {q}");
            }
        }
    }
}
