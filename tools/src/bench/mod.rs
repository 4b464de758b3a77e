//! `stoker bench`: iterate a data set as a trainer would and report images/s, stage times
//! and consumer wait; with a step (simulated, `--gpu-step-ms`, or on the GPU, `--gpu`), who
//! waits on whom ([`verdict`]), and `--sweep-workers` over every worker count.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use stoker::augment::Augment;
use stoker::batch::Allocator;
use stoker::decode::{DEFAULT_MAX_IMAGE_PIXELS, DecodePolicy};
use stoker::digest::Digest;
use stoker::launch::RankSource;
use stoker::source::{AnySource, Source};
use stoker::{DType, ErrorKind, Layout, Loader, OnError, SkipBound};

use crate::args::{
    NormalizeArg, layout_name, parse_dtype, parse_layout, parse_normalize, parse_on_error,
    parse_size, parse_skip_bound,
};

pub mod against;
pub mod cpu;
#[cfg(feature = "cuda")]
mod device;
pub mod pass;
pub mod svg;
pub mod sweep;
pub mod tune;
pub mod verdict;

#[cfg(not(feature = "cuda"))]
mod device {
    //! Without the cuda feature there is no GPU to bench with.

    /// GPU 0 for `stoker bench --gpu`: none in a build without the cuda feature.
    pub enum Gpu {}

    impl Gpu {
        /// Always the "rebuild with --features cuda" error.
        pub fn open() -> stoker::Result<Gpu> {
            Err(stoker::Error::new(
                stoker::ErrorKind::NoDevice,
                "--gpu: built without the cuda feature: rebuild with --features cuda \
                 (cargo build --release -p stoker-tools --features cuda)",
            ))
        }
    }

    /// Never called: there is no [`Gpu`] value.
    pub fn bench(_: &super::BenchArgs, g: Gpu) -> stoker::Result<()> {
        match g {}
    }
}

use pass::run_pass;
use verdict::{Figures, SourceShape, StageMs, StepReport};

/// Arguments of `stoker bench`.
#[derive(Args, Clone)]
pub struct BenchArgs {
    /// An image folder (one subfolder per class), a manifest CSV (path,label), or a .npy file
    /// or glob (`images-*.npy`). Default: the embedded fixtures (fixtures/photos-256x144).
    pub path: Option<PathBuf>,
    /// Labels for an NPY source: a .npy file or glob matching the images' shards.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Samples per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Worker threads (0: inline in the consumer thread). Default: number of cores.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Batches prepared ahead of the consumer.
    #[arg(long, default_value_t = 2)]
    pub prefetch: usize,
    /// Epochs to run (default: as many as take at least 2 s, and at least 3).
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Output size WxH (default: the source's size).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Seed of the shuffle and of per-sample randomness.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not shuffle (sequential order).
    #[arg(long)]
    pub no_shuffle: bool,
    /// How a shuffled epoch is ordered: `global` (one permutation of the data set) or
    /// `shards:K` (shards shuffled, samples shuffled within windows of K shards).
    #[arg(long, default_value = "global", value_parser = crate::args::parse_order)]
    pub order: stoker::sampler::Order,
    /// Output dtype: u8, f16 (half), bf16, f32 (float).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: DType,
    /// Output layout: nchw or nhwc.
    #[arg(long, default_value = "nchw", value_parser = parse_layout)]
    pub layout: Layout,
    /// Normalisation: none or imagenet (float dtypes only).
    #[arg(long, default_value = "none", value_parser = parse_normalize)]
    pub normalize: NormalizeArg,
    /// Bad samples: raise (stop with an error) or skip (count and go on).
    #[arg(long, default_value = "raise", value_parser = parse_on_error)]
    pub on_error: OnError,
    /// With --on-error skip: the most samples one epoch may skip, a count (12) or a
    /// percentage (2%); past it, or when every sample fails, the run stops with an error.
    #[arg(long, default_value = "5%", value_parser = parse_skip_bound)]
    pub max_skipped: SkipBound,
    /// Refuse every damaged JPEG (today's libjpeg-turbo warnings become errors).
    #[arg(long, conflicts_with = "lenient_decode")]
    pub strict_decode: bool,
    /// Also decode truncated JPEGs (missing rows come back gray), as Pillow's
    /// LOAD_TRUNCATED_IMAGES does.
    #[arg(long)]
    pub lenient_decode: bool,
    /// Refuse, from its header, a JPEG or PNG whose stored size is above N pixels (a
    /// decompression bomb): an error, or a skip with --on-error skip. The default is Pillow's
    /// limit.
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
    /// Labels must lie in 0..N (else an error naming the file and the first bad sample).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// One label value let through the label check (e.g. -1 or -100).
    #[arg(long, allow_hyphen_values = true)]
    pub ignore_label: Option<i64>,
    /// Drop the last partial batch of each epoch.
    #[arg(long)]
    pub drop_last: bool,
    /// Print one JSON object on stdout instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Add a digest over every batch's bytes, labels and indices, in order.
    #[arg(long)]
    pub digest: bool,
    /// Augmentation: none, default (rotation 15, shift 0.1, zoom 0.9:1.1, hflip, noise 0.03)
    /// or a spec like `rotation=15,shift=0.1,zoom=0.9:1.1,hflip,noise=0.03`; add `ycbcr`
    /// (`default,ycbcr`) to take JPEGs as YCbCr planes (faster, not the same bits).
    #[arg(long, default_value = "none")]
    pub augment: String,
    /// Simulate a training step of this many ms per batch in the consumer (it sleeps, then
    /// spins the last 0.2 ms), after a pass with the loader alone; report the GPU's idle
    /// fraction and a verdict: input-bound (with the change to make) or gpu-bound.
    #[arg(long, value_parser = parse_step_ms, allow_negative_numbers = true)]
    pub gpu_step_ms: Option<f64>,
    /// Run with 0..=cores workers and print images/s and idle % for each.
    #[arg(long)]
    pub sweep_workers: bool,
    /// Short trials over workers × prefetch × batch size (with --gpu-step-ms: the loop with
    /// the step, at your batch size); prints the fastest setting, its images/s and the builder
    /// call. Suggests only; --workers, when given, is kept fixed.
    #[arg(long, conflicts_with_all = ["sweep_workers", "epochs", "digest"])]
    pub tune: bool,
    /// Measure against B, in 5 alternating rounds, and print A / B from each round and their
    /// median: B is another data set (the loader with the same settings; for example the
    /// same images as NPY) or `decode` (the same samples read and decoded only, no loader).
    #[arg(long, value_name = "B", conflicts_with_all = ["sweep_workers", "tune", "digest", "gpu"])]
    pub against: Option<PathBuf>,
    /// With --sweep-workers: write an SVG chart of images/s against workers to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Use GPU 0 (a build with --features cuda and an NVIDIA driver): the batch ring in
    /// pinned memory, batches uploaded by the device feeder, a real step on the GPU
    /// (--gpu-step, or --gpu-step-ms X for a kernel of X ms) and the GPU's idle time measured
    /// with CUDA events.
    #[arg(long)]
    pub gpu: bool,
    /// With --gpu: the step per batch, spin:MS (a kernel of MS ms), gemm:N or gemm:NxR (R
    /// cuBLAS SGEMMs of N x N).
    #[arg(long, value_parser = parse_gpu_step)]
    pub gpu_step: Option<GpuStep>,
    /// With --gpu: upload u8 NHWC and convert on the GPU to this dtype (f32, f16, bf16) in
    /// --layout, with --normalize (4x less to copy than f32).
    #[arg(long, value_parser = parse_dtype)]
    pub gpu_convert: Option<DType>,
    /// With --gpu-convert: gaussian noise added on the GPU (fraction of the 8-bit range).
    #[arg(long, default_value_t = 0.0)]
    pub gpu_noise: f32,
}

/// Longest simulated step accepted (ms).
const MAX_STEP_MS: f64 = 60_000.0;

/// Parses `--gpu-step-ms`: a finite number of milliseconds, 0 to 60000.
pub fn parse_step_ms(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of milliseconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "{s:?}: a step time must be a non-negative number of milliseconds (0 = an \
             infinitely fast step)"
        ));
    }
    if v > MAX_STEP_MS {
        return Err(format!(
            "{s:?}: a step time above {MAX_STEP_MS} ms is not plausible"
        ));
    }
    Ok(v)
}

/// The work of one training step on the GPU, for `stoker bench --gpu`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GpuStep {
    /// A kernel that runs for this many milliseconds (it reads the GPU's nanosecond timer).
    Spin(f64),
    /// `repeats` single-precision GEMMs of `n x n` by `n x n` (cuBLAS).
    Gemm { n: usize, repeats: usize },
}

impl GpuStep {
    /// How the step is named in reports: `spin 40 ms`, `gemm 4096 x2`.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn describe(&self) -> String {
        match *self {
            GpuStep::Spin(ms) => format!("spin {ms} ms"),
            GpuStep::Gemm { n, repeats: 1 } => format!("gemm {n}"),
            GpuStep::Gemm { n, repeats } => format!("gemm {n} x{repeats}"),
        }
    }
}

/// Parses `--gpu-step`: `spin:MS` or `gemm:N` or `gemm:NxR` (R GEMMs of N x N per batch).
pub fn parse_gpu_step(s: &str) -> Result<GpuStep, String> {
    let (kind, arg) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: a GPU step is spin:MS, gemm:N or gemm:NxR"))?;
    match kind.trim() {
        "spin" => Ok(GpuStep::Spin(
            parse_step_ms(arg).map_err(|e| format!("{s:?}: {e}"))?,
        )),
        "gemm" => {
            let (n, r) = arg.split_once(['x', 'X']).unwrap_or((arg, "1"));
            let p = |v: &str, what: &str, max: usize| {
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&x| x > 0 && x <= max)
                    .ok_or_else(|| format!("{s:?}: {what} must be an integer from 1 to {max}"))
            };
            Ok(GpuStep::Gemm {
                n: p(n, "the GEMM size", 32768)?,
                repeats: p(r, "the repeat count", 1000)?,
            })
        }
        other => Err(format!(
            "{s:?}: unknown GPU step {other:?} (spin:MS, gemm:N, gemm:NxR)"
        )),
    }
}

/// The bench's loader, over any source.
pub type BenchLoader = Loader<AnySource>;

/// Prints `report` as one JSON document on stdout.
pub fn print_json(report: &impl Serialize) -> stoker::Result<()> {
    let text = serde_json::to_string(report)
        .map_err(|e| stoker::Error::usage(format!("json report: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Builds the bench's loader with `workers` (None: the loader's default) and `allocator`;
/// also gives the source's description and shape.
pub fn build_loader(
    a: &BenchArgs,
    workers: Option<usize>,
    allocator: Option<&Arc<dyn Allocator>>,
) -> stoker::Result<(BenchLoader, String, SourceShape, Option<Augment>)> {
    let path = a.path.clone().unwrap_or_else(crate::args::default_data);
    let source = crate::open::open(&path, a.labels.as_deref(), "images")?;
    let description = source.describe();
    let shape = SourceShape::probe(&source);
    let mut b = Loader::builder(source)
        .batch_size(a.batch_size)
        .prefetch(a.prefetch)
        .shuffle(!a.no_shuffle)
        .order(a.order)
        .seed(a.seed)
        .drop_last(a.drop_last)
        .dtype(a.dtype)
        .layout(a.layout)
        .on_error(a.on_error)
        .max_skipped(a.max_skipped)
        .decode_policy(decode_policy(a.strict_decode, a.lenient_decode))
        .max_image_pixels(a.max_image_pixels);
    if let Some(n) = a.num_classes {
        b = b.num_classes(n);
    }
    if let Some(l) = a.ignore_label {
        b = b.ignore_label(l);
    }
    if let Some(w) = workers {
        b = b.num_workers(w);
    }
    if let Some((w, h)) = a.size {
        b = b.size(w, h);
    }
    if let Some(alloc) = allocator {
        b = b.allocator(Arc::clone(alloc));
    }
    if let Some(n) = a.normalize.get() {
        b = b.normalize(n);
    }
    let augment = crate::augment::augment(&a.augment)?;
    b = b.transform(crate::augment::transform_of(augment.clone()));
    Ok((b.build()?, description, shape, augment))
}

/// Prints the source and loader lines of the bench report.
pub fn print_loader(loader: &BenchLoader, description: &str, layout: Layout) {
    let spec = loader.spec();
    println!("source: {description}");
    println!(
        "loader: batch {}, {} workers, prefetch {}, {} {} {}x{}x{}, {} memory",
        loader.batch_size(),
        loader.num_workers(),
        loader.prefetch(),
        spec.dtype.as_str(),
        layout_name(layout),
        spec.width,
        spec.height,
        spec.channels,
        loader.allocator_name()
    );
    let s = loader.sampler();
    if s.rank_source() != RankSource::None {
        println!(
            "rank: {} of {} (from {})",
            s.rank(),
            s.world_size(),
            s.rank_source()
        );
    }
}

/// CPU ms per image in each stage of a loader's run.
#[derive(Debug, Serialize)]
struct StageReport {
    read: f64,
    decode: f64,
    transform: f64,
    write: f64,
}

impl From<StageMs> for StageReport {
    fn from(s: StageMs) -> StageReport {
        StageReport {
            read: s.read,
            decode: s.decode,
            transform: s.transform,
            write: s.write,
        }
    }
}

/// `stoker bench --json` (with `--gpu-step-ms`: the step fields too).
#[derive(Debug, Serialize)]
struct BenchReport {
    images_per_s: f64,
    samples: u64,
    batches: u64,
    skipped: u64,
    /// Skips by kind of failure (`"decode"`, `"io"`, `"format"`).
    skipped_by_kind: BTreeMap<&'static str, u64>,
    /// Samples that decoded with a warning (corrupt data the decode policy accepts).
    decoded_with_warnings: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_warning: Option<String>,
    decode_policy: &'static str,
    epochs: u64,
    seconds: f64,
    bytes_read: u64,
    workers: usize,
    batch_size: usize,
    prefetch: usize,
    dtype: &'static str,
    layout: &'static str,
    width: usize,
    height: usize,
    channels: usize,
    stage_ms_per_image: StageReport,
    consumer_wait_s: f64,
    cpu: cpu::CpuReport,
    memory: String,
    /// This process's rank and the world size, and where they came from: `"torchrun"`,
    /// `"pmi"`, `"openmpi"`, `"slurm"` (a launcher's variables), `"none"` (rank 0 of 1).
    rank: usize,
    world_size: usize,
    rank_source: RankSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(flatten)]
    step: Option<StepReport>,
}

/// The decode policy the flags ask for.
pub fn decode_policy(strict: bool, lenient: bool) -> DecodePolicy {
    match (strict, lenient) {
        (true, _) => DecodePolicy::Strict,
        (false, true) => DecodePolicy::Lenient,
        (false, false) => DecodePolicy::Tolerant,
    }
}

/// Skip counts keyed by the kind's name, as the JSON report gives them.
fn by_kind(counts: &[(ErrorKind, u64)]) -> BTreeMap<&'static str, u64> {
    counts.iter().map(|(k, n)| (k.as_str(), *n)).collect()
}

/// Runs `stoker bench`.
pub fn run(a: BenchArgs) -> stoker::Result<()> {
    // A mistyped A/B switch stops here, not at the first augmented sample.
    stoker::simd::Vbmi::from_env()?;
    if a.gpu {
        let g = device::Gpu::open()?;
        if a.tune {
            return Err(stoker::Error::usage(
                "--tune runs with a simulated step: drop --gpu and pass --gpu-step-ms \
                 (the step time `stoker bench --gpu` measured)",
            ));
        }
        if a.sweep_workers {
            return Err(stoker::Error::usage(
                "--sweep-workers runs with a simulated step: drop --gpu and pass --gpu-step-ms \
                 (the step time `stoker bench --gpu` measured)",
            ));
        }
        return device::bench(&a, g);
    }
    if a.gpu_step.is_some() || a.gpu_convert.is_some() || a.gpu_noise != 0.0 {
        return Err(stoker::Error::usage(
            "--gpu-step, --gpu-convert and --gpu-noise need --gpu",
        ));
    }
    let step = a.gpu_step_ms.map(|ms| Duration::from_secs_f64(ms / 1e3));
    if a.plot.is_some() && !a.sweep_workers {
        return Err(stoker::Error::usage("--plot needs --sweep-workers"));
    }
    if a.sweep_workers {
        return sweep::run(&a, step);
    }
    if a.tune {
        return tune::run(&a, step);
    }
    if let Some(b) = &a.against {
        return against::run(&a, &against::Against::parse(b), step);
    }
    let (mut loader, description, shape, augment) = build_loader(&a, a.workers, None)?;
    let spec = loader.spec().clone();
    if !a.json {
        print_loader(&loader, &description, a.layout);
    }
    let mut digest = a.digest.then(Digest::new);
    let verbose = !a.json && a.epochs.is_some_and(|n| n <= 20);
    let alone = run_pass(
        &mut loader,
        a.epochs,
        2.0,
        None,
        digest.as_mut(),
        verbose.then_some(if step.is_some() { "loader alone: " } else { "" }),
    )?;
    let (epochs, wall) = (alone.epochs, alone.wall);
    let st = loader.stats();
    let ips = st.samples as f64 / wall;
    let per = |d: Duration| d.as_secs_f64() * 1e3 / (st.samples.max(1) as f64);
    let stages = StageMs {
        read: per(st.read),
        decode: per(st.decode),
        transform: per(st.transform),
        write: per(st.write),
    };
    // The same epochs again with the simulated step in the consumer.
    let combined = match step {
        Some(s) => Some(run_pass(
            &mut loader,
            Some(epochs),
            0.0,
            Some(s),
            None,
            verbose.then_some("with step: "),
        )?),
        None => None,
    };
    let figures = combined.as_ref().map(|c| Figures {
        idle_fraction: if c.wall > 0.0 { c.wait / c.wall } else { 0.0 },
        epoch_start_share: if c.wait > 0.0 {
            c.start_wait / c.wait
        } else {
            0.0
        },
        batches_per_epoch: loader.batches_per_epoch(),
        loader_ips: ips,
        step_ips: verdict::step_ips(loader.batch_size(), a.gpu_step_ms.unwrap_or(0.0)),
        combined_ips: c.samples as f64 / c.wall.max(1e-9),
        workers: loader.num_workers(),
        cores: verdict::cores(),
        batch_size: loader.batch_size(),
        prefetch: loader.prefetch(),
        source_size: shape.size,
        output_size: (spec.width, spec.height),
        encoded: shape.encoded,
        dtype_bytes: spec.dtype.size(),
        stages,
    });
    let verdict = figures.as_ref().map(verdict::verdict);
    let cpu = cpu::CpuReport::new(augment.as_ref())?;
    if a.json {
        let step = match (&figures, &verdict, &combined) {
            (Some(f), Some(v), Some(c)) => Some(StepReport::new(
                a.gpu_step_ms.unwrap_or(0.0),
                f,
                v,
                c.wall,
                c.wait,
            )),
            _ => None,
        };
        return print_json(&BenchReport {
            images_per_s: ips,
            samples: st.samples,
            batches: st.batches,
            skipped: st.skipped,
            skipped_by_kind: by_kind(&st.skipped_by_kind),
            decoded_with_warnings: st.decoded_with_warnings,
            first_warning: st.first_warning.as_ref().map(|w| w.to_string()),
            decode_policy: decode_policy(a.strict_decode, a.lenient_decode).as_str(),
            epochs,
            seconds: wall,
            bytes_read: st.bytes_read,
            workers: loader.num_workers(),
            batch_size: loader.batch_size(),
            prefetch: loader.prefetch(),
            dtype: spec.dtype.as_str(),
            layout: layout_name(a.layout),
            width: spec.width,
            height: spec.height,
            channels: spec.channels,
            stage_ms_per_image: stages.into(),
            consumer_wait_s: st.consumer_wait.as_secs_f64(),
            cpu,
            memory: loader.allocator_name().to_string(),
            rank: loader.sampler().rank(),
            world_size: loader.sampler().world_size(),
            rank_source: loader.sampler().rank_source(),
            digest: digest.as_ref().map(Digest::hex),
            step,
        });
    }
    println!(
        "total: {} epochs, {} images in {} batches, {wall:.3} s: {ips:.0} images/s, {:.1} MB/s read",
        epochs,
        st.samples,
        st.batches,
        st.bytes_read as f64 / 1e6 / wall
    );
    println!(
        "stage CPU time per image: read {:.3} ms, decode {:.3} ms, transform {:.3} ms, write {:.3} ms",
        stages.read, stages.decode, stages.transform, stages.write
    );
    println!(
        "consumer waited {:.3} s ({:.0}% of wall time)",
        st.consumer_wait.as_secs_f64(),
        100.0 * st.consumer_wait.as_secs_f64() / wall
    );
    println!("{}", cpu.line());
    println!("skipped: {}", st.skipped);
    for (kind, n) in &st.skipped_by_kind {
        println!("  {n} {}", kind.as_str());
    }
    for s in &st.skipped_samples {
        println!("  {}", s.message);
    }
    println!("decoded with warnings: {}", st.decoded_with_warnings);
    if let Some(w) = &st.first_warning {
        println!("  first: {w}");
    }
    if let Some(d) = &digest {
        println!("digest: {}", d.hex());
    }
    if let (Some(f), Some(v), Some(c)) = (&figures, &verdict, &combined) {
        let step = format!(
            "simulated GPU step: {} ms per batch of {}",
            a.gpu_step_ms.unwrap_or(0.0),
            f.batch_size
        );
        let idle = format!("{:.3} s waiting for input of {:.3} s", c.wait, c.wall);
        print!("{}", verdict::report(&step, f, v, &idle));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_gpu_steps() {
        assert_eq!(parse_gpu_step("spin:40"), Ok(GpuStep::Spin(40.0)));
        assert_eq!(
            parse_gpu_step("gemm:4096"),
            Ok(GpuStep::Gemm {
                n: 4096,
                repeats: 1
            })
        );
        assert_eq!(
            parse_gpu_step("gemm:2048x3"),
            Ok(GpuStep::Gemm {
                n: 2048,
                repeats: 3
            })
        );
        assert_eq!(
            parse_gpu_step("gemm:2048x3").unwrap().describe(),
            "gemm 2048 x3"
        );
        for bad in [
            "spin",
            "spin:-1",
            "gemm:0",
            "gemm:1x0",
            "gemm:99999",
            "conv:3",
            "gemm:ax2",
        ] {
            let e = parse_gpu_step(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn parse_step() {
        assert_eq!(parse_step_ms("0"), Ok(0.0));
        assert_eq!(parse_step_ms("12.5"), Ok(12.5));
        assert!(parse_step_ms("-1").unwrap_err().contains("non-negative"));
        assert!(parse_step_ms("nan").is_err());
        assert!(parse_step_ms("inf").is_err());
        assert!(parse_step_ms("fast").unwrap_err().contains("not a number"));
        assert!(parse_step_ms("1e9").is_err());
    }

    fn report(digest: Option<String>, step: Option<StepReport>) -> serde_json::Value {
        let r = BenchReport {
            images_per_s: 100.0,
            samples: 64,
            batches: 8,
            skipped: 0,
            skipped_by_kind: BTreeMap::new(),
            decoded_with_warnings: 0,
            first_warning: None,
            decode_policy: "tolerant",
            epochs: 2,
            seconds: 0.64,
            bytes_read: 1000,
            workers: 2,
            batch_size: 8,
            prefetch: 2,
            dtype: "f32",
            layout: "nchw",
            width: 4,
            height: 3,
            channels: 3,
            stage_ms_per_image: StageMs::default().into(),
            consumer_wait_s: 0.1,
            cpu: cpu::CpuReport::new(None).unwrap(),
            memory: "aligned".into(),
            rank: 1,
            world_size: 2,
            rank_source: RankSource::Slurm,
            digest,
            step,
        };
        serde_json::to_value(&r).unwrap()
    }

    #[test]
    fn bench_report_has_the_step_fields_only_with_a_step() {
        let j = report(None, None);
        assert_eq!(j["samples"], 64);
        assert_eq!(
            (&j["rank"], &j["world_size"], &j["rank_source"]),
            (&1.into(), &2.into(), &"slurm".into())
        );
        assert_eq!(j["stage_ms_per_image"]["decode"], 0.0);
        assert!(
            j.get("digest").is_none() && j.get("verdict").is_none(),
            "{j}"
        );
        let f = Figures {
            idle_fraction: 0.5,
            epoch_start_share: 0.0,
            batches_per_epoch: 4,
            loader_ips: 100.0,
            step_ips: f64::INFINITY,
            combined_ips: 90.0,
            workers: 1,
            cores: 2,
            batch_size: 8,
            prefetch: 2,
            source_size: None,
            output_size: (4, 3),
            encoded: false,
            dtype_bytes: 4,
            stages: StageMs::default(),
        };
        let v = verdict::verdict(&f);
        let step = StepReport::new(0.0, &f, &v, 1.0, 0.5);
        let j = report(Some("ab12".into()), Some(step));
        assert_eq!(j["digest"], "ab12");
        assert_eq!(j["verdict"], "input-bound");
        assert_eq!(j["gpu_idle_fraction"], 0.5);
        assert!(j["step_images_per_s"].is_null());
    }
}
