//! `stoker bench --gpu`: the loader into the device feeder, a real step on the GPU, and the
//! GPU's idle time measured with CUDA events (feature `cuda`).
//!
//! Each batch gets two timing events on the consumer stream, around its step. The stream
//! reaches the first only once the batch's upload is done (the feeder made it wait), and
//! nothing runs on it while the host waits for the loader, so the time between one step's end
//! and the next one's start is exactly the time the GPU's training stream sat idle. The idle
//! fraction is `1 - busy / span`, `span` from an event recorded when the run starts to the
//! last step's end.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use stoker::batch::Allocator;
use stoker::cuda::cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys as blas_sys};
use stoker::cuda::cudarc::driver::{
    CudaEvent, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg, sys,
};
use stoker::cuda::{Device, DeviceFeeder, compile_ptx};
use stoker::source::Source;
use stoker::{DType, Error, GpuConvert, Layout, Loader, Result};

use super::verdict::{self, Figures, StageMs, StepReport};
use super::{BenchArgs, GpuStep, print_json};
use crate::args::{NormalizeArg, layout_name};

pub struct Gpu {
    device: stoker::cuda::Device,
}

impl Gpu {
    /// Opens GPU 0 (the no-driver error when there is none).
    pub fn open() -> stoker::Result<Gpu> {
        Ok(Gpu {
            device: stoker::cuda::Device::open(0)?,
        })
    }
    /// Page-locked batch memory on this GPU.
    pub fn allocator(&self) -> Arc<dyn Allocator> {
        Arc::new(stoker::cuda::PinnedAlloc::for_device(&self.device))
    }
    /// The device.
    pub fn device(&self) -> &stoker::cuda::Device {
        &self.device
    }
    /// The GPU's name.
    pub fn name(&self) -> String {
        self.device.name().unwrap_or_else(|_| "GPU 0".to_string())
    }
    /// H2D GB/s for copies of `bytes`: (pinned, pageable).
    pub fn h2d(&self, bytes: usize) -> stoker::Result<(f64, f64)> {
        // At least 8 MB a copy and 20 copies, so launch latency does not dominate.
        let bw = self.device.h2d_bandwidth(bytes.max(8 << 20), 20)?;
        Ok((bw.pinned_gbps, bw.pageable_gbps))
    }
}

/// A kernel that runs for `ns` nanoseconds of the GPU's global timer.
const SPIN_SOURCE: &str = r#"
extern "C" __global__ void stoker_spin(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}
"#;

fn cuda(what: &str) -> impl Fn(stoker::cuda::cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::new(stoker::ErrorKind::Device, format!("cuda: {what}: {e}"))
}

enum Work {
    Spin {
        func: CudaFunction,
        ns: u64,
    },
    Gemm {
        blas: CudaBlas,
        a: CudaSlice<f32>,
        b: CudaSlice<f32>,
        c: CudaSlice<f32>,
        n: usize,
        repeats: usize,
    },
}

/// One training step's worth of GPU work, queued on the consumer stream.
pub struct Step {
    work: Work,
    stream: Arc<CudaStream>,
}

impl Step {
    /// Prepares `kind` on `stream`: compiles the spin kernel, or allocates the GEMM operands.
    pub fn new(device: &Device, stream: Arc<CudaStream>, kind: GpuStep) -> Result<Step> {
        let work = match kind {
            GpuStep::Spin(ms) => {
                let ptx = compile_ptx(SPIN_SOURCE, "spin.cu")?;
                let module = device
                    .context()
                    .load_module(stoker::cuda::cudarc::nvrtc::Ptx::from_src(ptx))
                    .map_err(cuda("loading the spin kernel"))?;
                let func = module
                    .load_function("stoker_spin")
                    .map_err(cuda("loading the spin kernel"))?;
                Work::Spin {
                    func,
                    ns: (ms * 1e6).round() as u64,
                }
            }
            GpuStep::Gemm { n, repeats } => {
                // SAFETY: only looks for the library, as cudarc would on first use.
                if !unsafe { stoker::cuda::cudarc::cublas::sys::is_culib_present() } {
                    return Err(Error::new(
                        stoker::ErrorKind::NoDevice,
                        "no cuBLAS library found: install the CUDA toolkit's cuBLAS (libcublas.so) \
                         or use --gpu-step spin:MS",
                    ));
                }
                let blas = CudaBlas::new(Arc::clone(&stream)).map_err(|e| {
                    Error::new(
                        stoker::ErrorKind::Device,
                        format!("cublas: creating a handle: {e}"),
                    )
                })?;
                let fill = vec![0.5f32; n * n];
                let a = stream.clone_htod(&fill).map_err(cuda("GEMM operands"))?;
                let b = stream.clone_htod(&fill).map_err(cuda("GEMM operands"))?;
                let c = stream
                    .alloc_zeros::<f32>(n * n)
                    .map_err(cuda("GEMM operands"))?;
                Work::Gemm {
                    blas,
                    a,
                    b,
                    c,
                    n,
                    repeats,
                }
            }
        };
        stream.synchronize().map_err(cuda("preparing the step"))?;
        Ok(Step { work, stream })
    }

    /// Queues one step on the consumer stream.
    pub fn launch(&mut self) -> Result<()> {
        match &mut self.work {
            Work::Spin { func, ns } => {
                let cfg = LaunchConfig {
                    grid_dim: (1, 1, 1),
                    block_dim: (1, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: the kernel takes one u64 and touches no memory.
                unsafe { self.stream.launch_builder(func).arg(&*ns).launch(cfg) }
                    .map(drop)
                    .map_err(cuda("launching the spin kernel"))
            }
            Work::Gemm {
                blas,
                a,
                b,
                c,
                n,
                repeats,
            } => {
                let n = *n as i32;
                let cfg = GemmConfig {
                    transa: blas_sys::cublasOperation_t::CUBLAS_OP_N,
                    transb: blas_sys::cublasOperation_t::CUBLAS_OP_N,
                    m: n,
                    n,
                    k: n,
                    alpha: 1.0f32,
                    lda: n,
                    ldb: n,
                    beta: 0.0f32,
                    ldc: n,
                };
                for _ in 0..*repeats {
                    // SAFETY: a, b and c hold n * n floats each.
                    unsafe { blas.gemm(cfg, a, b, c) }.map_err(|e| {
                        Error::new(stoker::ErrorKind::Device, format!("cublas: sgemm: {e}"))
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Milliseconds one step takes on an otherwise idle GPU (events around `reps` steps, after
    /// two to warm up).
    pub fn time_alone(&mut self, reps: usize) -> Result<f64> {
        for _ in 0..2 {
            self.launch()?;
        }
        let ctx = Arc::clone(self.stream.context());
        let timed = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = ctx.new_event(timed).map_err(cuda("creating an event"))?;
        let end = ctx.new_event(timed).map_err(cuda("creating an event"))?;
        start
            .record(&self.stream)
            .map_err(cuda("recording an event"))?;
        for _ in 0..reps {
            self.launch()?;
        }
        end.record(&self.stream)
            .map_err(cuda("recording an event"))?;
        let ms = start.elapsed_ms(&end).map_err(cuda("timing the step"))?;
        Ok(ms as f64 / reps.max(1) as f64)
    }
}

/// What a run of the loader into the feeder and the step measured.
#[derive(Debug)]
pub struct DevicePass {
    pub epochs: u64,
    pub samples: u64,
    /// Host wall time of the run, seconds.
    pub wall: f64,
    /// GPU time the consumer stream was idle, as a fraction of the run's GPU span.
    pub idle_fraction: f64,
    /// The part of the idle time before the first batch of each epoch.
    pub epoch_start_share: f64,
    /// Mean GPU time of one step during the run, ms.
    pub step_ms: f64,
    /// Host time spent waiting for the next device batch, seconds.
    pub host_wait: f64,
}

/// Runs `epochs` epochs of `loader` through `feeder`, one `step` per batch on the consumer
/// stream, and measures the consumer stream's idle time with events.
pub fn run<S: Source + 'static>(
    loader: &mut Loader<S>,
    feeder: &mut DeviceFeeder,
    step: &mut Step,
    epochs: u64,
) -> Result<DevicePass> {
    let consumer = Arc::clone(feeder.consumer_stream());
    let ctx = Arc::clone(consumer.context());
    let timed = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    let event = || ctx.new_event(timed).map_err(cuda("creating an event"));
    // Every event the run records, created before it starts.
    let batches = loader.batches_per_epoch() * epochs as usize;
    let mut marks: Vec<(CudaEvent, CudaEvent)> = Vec::with_capacity(batches);
    for _ in 0..batches {
        marks.push((event()?, event()?));
    }
    let origin = event()?;
    let mut first_of_epoch = Vec::with_capacity(epochs as usize);
    let (mut k, mut samples) = (0usize, 0u64);
    let mut host_wait = 0.0;
    consumer.synchronize().map_err(cuda("starting the run"))?;
    let start = Instant::now();
    origin
        .record(&consumer)
        .map_err(cuda("recording an event"))?;
    for e in 0..epochs {
        first_of_epoch.push(k);
        let mut w = Instant::now();
        for batch in feeder.feed(loader.epoch(e)) {
            host_wait += w.elapsed().as_secs_f64();
            let batch = batch?;
            if k == marks.len() {
                return Err(Error::usage(format!(
                    "bench: epoch {e} has more batches than the {} expected",
                    marks.len()
                )));
            }
            samples += batch.len() as u64;
            marks[k]
                .0
                .record(&consumer)
                .map_err(cuda("recording an event"))?;
            step.launch()?;
            marks[k]
                .1
                .record(&consumer)
                .map_err(cuda("recording an event"))?;
            drop(batch); // after its step was queued: the slot is refilled once it ran
            k += 1;
            w = Instant::now();
        }
    }
    consumer.synchronize().map_err(cuda("finishing the run"))?;
    let wall = start.elapsed().as_secs_f64();
    let marks = &marks[..k];
    let ms = |a: &CudaEvent, b: &CudaEvent| -> Result<f64> {
        a.elapsed_ms(b)
            .map(f64::from)
            .map_err(cuda("reading an event"))
    };
    let mut busy = 0.0;
    let mut start_idle = 0.0;
    for (i, (s, e)) in marks.iter().enumerate() {
        busy += ms(s, e)?;
        if first_of_epoch.contains(&i) {
            let prev = if i == 0 { &origin } else { &marks[i - 1].1 };
            start_idle += ms(prev, s)?.max(0.0);
        }
    }
    let span = match marks.last() {
        Some((_, end)) => ms(&origin, end)?,
        None => 0.0,
    };
    let idle = (span - busy).max(0.0);
    Ok(DevicePass {
        epochs,
        samples,
        wall,
        idle_fraction: if span > 0.0 { idle / span } else { 0.0 },
        epoch_start_share: if idle > 0.0 {
            (start_idle / idle).min(1.0)
        } else {
            0.0
        },
        step_ms: if k > 0 { busy / k as f64 } else { 0.0 },
        host_wait,
    })
}

/// `stoker bench --gpu --json`: the GPU's figures, then the step fields.
#[derive(Debug, Serialize)]
struct DeviceReport {
    gpu_name: String,
    h2d_gbps_pinned: f64,
    h2d_gbps_pageable: f64,
    gpu_step: String,
    gpu_step_ms_alone: f64,
    gpu_step_ms_in_run: f64,
    upload: &'static str,
    upload_bytes_per_batch: usize,
    output_dtype: &'static str,
    idle_measured_with: &'static str,
    epochs: u64,
    samples: u64,
    workers: usize,
    batch_size: usize,
    /// As in `stoker bench --json`: this process's rank, the world size, where they came from.
    rank: usize,
    world_size: usize,
    rank_source: stoker::launch::RankSource,
    #[serde(flatten)]
    step: StepReport,
}

/// `stoker bench --gpu`: loader alone, GPU step alone, then both through the device feeder.
pub fn bench(a: &BenchArgs, g: Gpu) -> Result<()> {
    let kind = match (a.gpu_step, a.gpu_step_ms) {
        (Some(k), None) => k,
        (None, Some(ms)) => GpuStep::Spin(ms),
        (Some(_), Some(_)) => {
            return Err(Error::usage(
                "give the GPU step once: --gpu-step or --gpu-step-ms",
            ));
        }
        (None, None) => {
            return Err(Error::usage(
                "--gpu needs a step: --gpu-step gemm:N, --gpu-step spin:MS or --gpu-step-ms X",
            ));
        }
    };
    let convert_to: Option<DType> = a.gpu_convert;
    if convert_to.is_none() && a.gpu_noise != 0.0 {
        return Err(Error::usage("--gpu-noise needs --gpu-convert"));
    }
    // With a conversion the workers write u8 NHWC, unnormalised; the GPU does the rest.
    let mut la = a.clone();
    if convert_to.is_some() {
        la.dtype = DType::U8;
        la.layout = Layout::Nhwc;
        la.normalize = NormalizeArg::None;
    }
    let alloc = g.allocator();
    let (mut loader, description, shape, _) = super::build_loader(&la, a.workers, Some(&alloc))?;
    let host_spec = loader.spec().clone();
    let convert = match convert_to {
        Some(d) => {
            let mut out = host_spec.clone().with_dtype(d).with_layout(a.layout);
            if let Some(n) = a.normalize.get() {
                out = out.with_normalize(n);
            }
            Some(GpuConvert::new(&out)?.with_noise(a.gpu_noise, a.seed)?)
        }
        None => None,
    };
    let batch_bytes = loader.batch_size() * host_spec.sample_bytes();
    let (pinned, pageable) = g.h2d(batch_bytes)?;
    if !a.json {
        super::print_loader(&loader, &description, la.layout);
        println!(
            "gpu: {}; H2D copy (at least 8 MB): pinned {pinned:.2} GB/s, pageable {pageable:.2} GB/s",
            g.name()
        );
        match &convert {
            Some(c) => println!(
                "upload: u8 nhwc, {:.2} MB a batch, converted on the GPU to {} {}{}",
                batch_bytes as f64 / 1e6,
                c.output_spec().dtype.as_str(),
                layout_name(a.layout),
                if c.has_noise() { " with noise" } else { "" }
            ),
            None => println!(
                "upload: {} as written, {:.2} MB a batch",
                host_spec.dtype.as_str(),
                batch_bytes as f64 / 1e6
            ),
        }
    }
    // 1. The loader alone (host batches, pinned ring).
    let alone = super::pass::run_pass(&mut loader, a.epochs, 2.0, None, None, None)?;
    let st = loader.stats();
    let loader_ips = alone.samples as f64 / alone.wall.max(1e-9);
    // 2. The step alone.
    let device = g.device();
    let stream = device
        .context()
        .new_stream()
        .map_err(cuda("creating the consumer stream"))?;
    let mut step = Step::new(device, Arc::clone(&stream), kind)?;
    let step_alone_ms = step.time_alone(10)?;
    // 3. Both: loader -> feeder (2 device slots) -> step, idle measured with events.
    let bs = loader.batch_size();
    let mut feeder = match &convert {
        Some(c) => DeviceFeeder::with_convert(device, c, bs, 2, stream)?,
        None => DeviceFeeder::with_consumer(device, &host_spec, bs, 2, stream)?,
    };
    let pass = run(&mut loader, &mut feeder, &mut step, alone.epochs)?;
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / (st.samples.max(1) as f64);
    let f = Figures {
        idle_fraction: pass.idle_fraction,
        epoch_start_share: pass.epoch_start_share,
        batches_per_epoch: loader.batches_per_epoch(),
        loader_ips,
        step_ips: if step_alone_ms > 0.0 {
            bs as f64 * 1e3 / step_alone_ms
        } else {
            f64::INFINITY
        },
        combined_ips: pass.samples as f64 / pass.wall.max(1e-9),
        workers: loader.num_workers(),
        cores: verdict::cores(),
        batch_size: bs,
        prefetch: loader.prefetch(),
        source_size: shape.size,
        output_size: (host_spec.width, host_spec.height),
        encoded: shape.encoded,
        dtype_bytes: host_spec.dtype.size(),
        stages: StageMs {
            read: per(st.read),
            decode: per(st.decode),
            transform: per(st.transform),
            write: per(st.write),
        },
    };
    let v = verdict::verdict(&f);
    if a.json {
        return print_json(&DeviceReport {
            gpu_name: g.name(),
            h2d_gbps_pinned: pinned,
            h2d_gbps_pageable: pageable,
            gpu_step: kind.describe(),
            gpu_step_ms_alone: step_alone_ms,
            gpu_step_ms_in_run: pass.step_ms,
            upload: host_spec.dtype.as_str(),
            upload_bytes_per_batch: batch_bytes,
            output_dtype: convert
                .as_ref()
                .map_or(host_spec.dtype, |c| c.output_spec().dtype)
                .as_str(),
            idle_measured_with: "cuda-events",
            epochs: pass.epochs,
            samples: pass.samples,
            workers: loader.num_workers(),
            batch_size: bs,
            rank: loader.sampler().rank(),
            world_size: loader.sampler().world_size(),
            rank_source: loader.sampler().rank_source(),
            step: StepReport::new(step_alone_ms, &f, &v, pass.wall, pass.host_wait),
        });
    }
    let line = format!(
        "GPU step: {} per batch of {bs}: {step_alone_ms:.3} ms alone, {:.3} ms in the run",
        kind.describe(),
        pass.step_ms
    );
    let idle = format!(
        "measured with CUDA events on the training stream over {:.3} s",
        pass.wall
    );
    print!("{}", verdict::report(&line, &f, &v, &idle));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spin kernel compiles with NVRTC (no GPU needed); CI fetches libnvrtc and sets
    /// STOKER_REQUIRE_NVRTC so this cannot skip there.
    #[test]
    fn spin_kernel_compiles() {
        if !stoker::cuda::nvrtc_present() {
            assert!(
                std::env::var_os("STOKER_REQUIRE_NVRTC").is_none(),
                "STOKER_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
            );
            eprintln!("skipped: libnvrtc not found");
            return;
        }
        let ptx = compile_ptx(SPIN_SOURCE, "spin.cu").unwrap();
        assert!(ptx.contains(".entry stoker_spin"), "{ptx}");
        assert!(ptx.contains("%globaltimer"), "{ptx}");
    }
}
