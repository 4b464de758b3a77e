//! `stoker`: tools around the stoker data loader.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use stoker::batch::Allocator;
use stoker::digest::Digest;
use stoker::source::{ImageFolder, NpySource, Source};
use stoker::{DType, Layout, Loader, Normalize, OnError};

mod augment;
mod convert;
#[cfg(feature = "cuda")]
mod device;
#[cfg(not(feature = "cuda"))]
mod device {
    /// Without the cuda feature there is no GPU value to bench with.
    pub fn bench(_: &crate::BenchArgs, g: crate::gpu::Gpu) -> stoker::Result<()> {
        match g {}
    }
}
mod gpu;
mod inspect;
mod plan;
mod resize;

#[derive(Parser)]
#[command(
    name = "stoker",
    version,
    about = "Keeps a GPU fed: data loading tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Iterate a data set as a trainer would and report images/s, stage times and consumer wait.
    Bench(BenchArgs),
    /// Pre-resize a folder of images once (parallel, resumable) into a folder or tar shards.
    Resize(resize::ResizeArgs),
    /// Convert a data set between folder, NPY, HDF5 and tar shards (labels carried along).
    Convert(convert::ConvertArgs),
    /// Show a data set's format, samples, shape, dtype, labels and whether its layout is fast.
    Inspect(inspect::InspectArgs),
    /// GPU memory of a training step, the largest batch that fits, accumulation and epoch time.
    Plan(plan::PlanArgs),
    /// Write a PNG grid of augmented samples (the training code path) and their parameters.
    AugmentPreview(augment::PreviewArgs),
}

#[derive(Args, Clone)]
struct BenchArgs {
    /// An image folder (one subfolder per class), a manifest CSV (path,label), or a .npy file
    /// or glob (`images-*.npy`). Default: the embedded fixtures (fixtures/photos-256x144).
    path: Option<String>,
    /// Labels for an NPY source: a .npy file or glob matching the images' shards.
    #[arg(long)]
    labels: Option<String>,
    /// Samples per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Worker threads (0: inline in the consumer thread). Default: number of cores.
    #[arg(long)]
    workers: Option<usize>,
    /// Batches prepared ahead of the consumer.
    #[arg(long, default_value_t = 2)]
    prefetch: usize,
    /// Epochs to run (default: as many as take at least 2 s, and at least 3).
    #[arg(long)]
    epochs: Option<u64>,
    /// Output size WxH (default: the source's size).
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Seed of the shuffle and of per-sample randomness.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not shuffle (sequential order).
    #[arg(long)]
    no_shuffle: bool,
    /// Output dtype: u8, f16, bf16, f32.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Output layout: nchw or nhwc.
    #[arg(long, default_value = "nchw")]
    layout: String,
    /// Normalisation: none or imagenet (float dtypes only).
    #[arg(long, default_value = "none")]
    normalize: String,
    /// Bad samples: raise (stop with an error) or skip (count and go on).
    #[arg(long, default_value = "raise")]
    on_error: String,
    /// Drop the last partial batch of each epoch.
    #[arg(long)]
    drop_last: bool,
    /// Print one JSON object on stdout instead of the report.
    #[arg(long)]
    json: bool,
    /// Add a digest over every batch's bytes, labels and indices, in order.
    #[arg(long)]
    digest: bool,
    /// Augmentation: none, default (rotation 15, shift 0.1, zoom 0.9:1.1, hflip, noise 0.03)
    /// or a spec like `rotation=15,shift=0.1,zoom=0.9:1.1,hflip,noise=0.03`.
    #[arg(long, default_value = "none")]
    augment: String,
    /// Simulate a training step of this many ms per batch in the consumer (it sleeps, then
    /// spins the last 0.2 ms), after a pass with the loader alone; report the GPU's idle
    /// fraction and a verdict: input-bound (with the change to make) or gpu-bound.
    #[arg(long, value_parser = gpu::parse_step_ms, allow_negative_numbers = true)]
    gpu_step_ms: Option<f64>,
    /// Run with 0..=cores workers and print images/s and idle % for each.
    #[arg(long)]
    sweep_workers: bool,
    /// With --sweep-workers: write an SVG chart of images/s against workers to this file.
    #[arg(long)]
    plot: Option<String>,
    /// Use GPU 0 (a build with --features cuda and an NVIDIA driver): the batch ring in
    /// pinned memory, batches uploaded by the device feeder, a real step on the GPU
    /// (--gpu-step, or --gpu-step-ms X for a kernel of X ms) and the GPU's idle time measured
    /// with CUDA events.
    #[arg(long)]
    gpu: bool,
    /// With --gpu: the step per batch, spin:MS (a kernel of MS ms), gemm:N or gemm:NxR (R
    /// cuBLAS SGEMMs of N x N).
    #[arg(long, value_parser = gpu::parse_gpu_step)]
    gpu_step: Option<gpu::GpuStep>,
    /// With --gpu: upload u8 NHWC and convert on the GPU to this dtype (f32, f16, bf16) in
    /// --layout, with --normalize (4x less to copy than f32).
    #[arg(long)]
    gpu_convert: Option<String>,
    /// With --gpu-convert: gaussian noise added on the GPU (fraction of the 8-bit range).
    #[arg(long, default_value_t = 0.0)]
    gpu_noise: f32,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {s:?} is not WxH"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("size {s:?}: {v:?} is not a positive integer"))
    };
    Ok((p(w)?, p(h)?))
}

/// The embedded default data set: `fixtures/` under the current directory, else the one
/// beside the sources this binary was built from.
fn default_data() -> PathBuf {
    let here = Path::new("fixtures/photos-256x144");
    if here.is_dir() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/photos-256x144")
}

fn open_source(path: &str, labels: Option<&str>) -> stoker::Result<Box<dyn Source>> {
    let p = Path::new(path);
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".npy") {
        return Ok(Box::new(NpySource::glob(path, labels)?));
    }
    if let Some(src) = convert::open_container(path, labels)? {
        return Ok(src);
    }
    if labels.is_some() {
        return Err(stoker::Error::usage("--labels is only for .npy sources"));
    }
    if lower.ends_with(".csv") {
        return Ok(Box::new(ImageFolder::from_manifest(p)?));
    }
    Ok(Box::new(ImageFolder::open(p)?))
}

/// The bench's loader, over any source.
type BenchLoader = Loader<Box<dyn Source>>;

/// Builds the bench's loader with `workers` (None: the loader's default) and `allocator`.
fn build_loader(
    a: &BenchArgs,
    workers: Option<usize>,
    allocator: Option<&Arc<dyn Allocator>>,
) -> stoker::Result<(BenchLoader, String, gpu::SourceShape)> {
    let path = a
        .path
        .clone()
        .unwrap_or_else(|| default_data().display().to_string());
    let source = open_source(&path, a.labels.as_deref())?;
    let description = source.describe();
    let shape = gpu::SourceShape::probe(&*source);
    let dtype: DType = a.dtype.parse()?;
    let layout: Layout = a.layout.parse()?;
    let on_error: OnError = a.on_error.parse()?;
    let mut b = Loader::builder(source)
        .batch_size(a.batch_size)
        .prefetch(a.prefetch)
        .shuffle(!a.no_shuffle)
        .seed(a.seed)
        .drop_last(a.drop_last)
        .dtype(dtype)
        .layout(layout)
        .on_error(on_error);
    if let Some(w) = workers {
        b = b.num_workers(w);
    }
    if let Some((w, h)) = a.size {
        b = b.size(w, h);
    }
    if let Some(alloc) = allocator {
        b = b.allocator(Arc::clone(alloc));
    }
    if let Some(n) = parse_normalize(&a.normalize)? {
        b = b.normalize(n);
    }
    b = b.transform(augment::transform(&a.augment)?);
    Ok((b.build()?, description, shape))
}

/// `--normalize`: `none` or `imagenet`.
fn parse_normalize(s: &str) -> stoker::Result<Option<Normalize>> {
    match s {
        "none" => Ok(None),
        "imagenet" => Ok(Some(Normalize::imagenet())),
        other => Err(stoker::Error::usage(format!(
            "unknown normalisation {other:?} (none, imagenet)"
        ))),
    }
}

/// One timed pass over some epochs.
struct Pass {
    epochs: u64,
    samples: u64,
    wall: f64,
    /// Wall time the consumer waited for batches (including starting each epoch).
    wait: f64,
    /// The part of `wait` spent on the first batch of each epoch.
    start_wait: f64,
}

/// Runs epochs `0..` (a fixed count, or at least 3 and at least `min_secs`), calling the
/// simulated step `step` after each batch (the batch is dropped first, as the device feeder
/// frees a host buffer once its upload completed).
fn run_pass(
    loader: &mut BenchLoader,
    epochs: Option<u64>,
    min_secs: f64,
    step: Option<Duration>,
    mut digest: Option<&mut Digest>,
    verbose: Option<&str>,
) -> stoker::Result<Pass> {
    let start = Instant::now();
    let (mut e, mut samples, mut wait) = (0u64, 0u64, Duration::ZERO);
    let mut start_wait = Duration::ZERO;
    let more = |e: u64| match epochs {
        Some(n) => e < n,
        None => e < 3 || start.elapsed().as_secs_f64() < min_secs,
    };
    while more(e) {
        let t = Instant::now();
        let mut n = 0usize;
        let mut w = Instant::now();
        let mut first = true;
        for batch in loader.epoch(e) {
            wait += w.elapsed();
            if first {
                start_wait += w.elapsed();
                first = false;
            }
            let batch = batch?;
            n += batch.len();
            if let Some(d) = digest.as_deref_mut() {
                d.update(&batch);
            }
            drop(batch);
            if let Some(s) = step {
                gpu::simulate_step(s);
            }
            w = Instant::now();
        }
        wait += w.elapsed();
        if first {
            start_wait += w.elapsed();
        }
        samples += n as u64;
        if let Some(what) = verbose {
            let s = t.elapsed().as_secs_f64();
            println!(
                "{what}epoch {e}: {n} images in {s:.3} s, {:.0} images/s",
                n as f64 / s
            );
        }
        e += 1;
    }
    Ok(Pass {
        epochs: e,
        samples,
        wall: start.elapsed().as_secs_f64(),
        wait: wait.as_secs_f64(),
        start_wait: start_wait.as_secs_f64(),
    })
}

fn bench(a: BenchArgs) -> stoker::Result<()> {
    if a.gpu {
        let g = gpu::Gpu::open()?;
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
        return sweep(&a, step);
    }
    let (mut loader, description, shape) = build_loader(&a, a.workers, None)?;
    let spec = loader.spec().clone();
    if !a.json {
        print_loader(&loader, &description, &a.layout);
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
    let figures = combined.as_ref().map(|c| gpu::Figures {
        idle_fraction: if c.wall > 0.0 { c.wait / c.wall } else { 0.0 },
        epoch_start_share: if c.wait > 0.0 {
            c.start_wait / c.wait
        } else {
            0.0
        },
        batches_per_epoch: loader.batches_per_epoch(),
        loader_ips: ips,
        step_ips: gpu::step_ips(loader.batch_size(), a.gpu_step_ms.unwrap_or(0.0)),
        combined_ips: c.samples as f64 / c.wall.max(1e-9),
        workers: loader.num_workers(),
        cores: gpu::cores(),
        batch_size: loader.batch_size(),
        prefetch: loader.prefetch(),
        source_size: shape.size,
        output_size: (spec.width, spec.height),
        encoded: shape.encoded,
        dtype_bytes: spec.dtype.size(),
        stages: gpu::StageMs {
            read: per(st.read),
            decode: per(st.decode),
            transform: per(st.transform),
            write: per(st.write),
        },
    });
    let verdict = figures.as_ref().map(gpu::verdict);
    if a.json {
        let mut j = format!(
            "{{\"images_per_s\":{ips:.2},\"samples\":{},\"batches\":{},\"skipped\":{},\
             \"epochs\":{},\"seconds\":{wall:.6},\"bytes_read\":{},\"workers\":{},\
             \"batch_size\":{},\"prefetch\":{},\"dtype\":\"{}\",\"layout\":\"{}\",\
             \"width\":{},\"height\":{},\"channels\":{},\
             \"stage_ms_per_image\":{{\"read\":{:.6},\"decode\":{:.6},\"transform\":{:.6},\"write\":{:.6}}},\
             \"consumer_wait_s\":{:.6},\"memory\":\"{}\"",
            st.samples,
            st.batches,
            st.skipped,
            epochs,
            st.bytes_read,
            loader.num_workers(),
            loader.batch_size(),
            loader.prefetch(),
            spec.dtype.as_str(),
            a.layout.to_ascii_lowercase(),
            spec.width,
            spec.height,
            spec.channels,
            per(st.read),
            per(st.decode),
            per(st.transform),
            per(st.write),
            st.consumer_wait.as_secs_f64(),
            loader.allocator_name(),
        );
        if let Some(d) = &digest {
            j.push_str(&format!(",\"digest\":\"{}\"", d.hex()));
        }
        if let (Some(f), Some(v), Some(c)) = (&figures, &verdict, &combined) {
            j.push_str(&gpu::figures_json(
                a.gpu_step_ms.unwrap_or(0.0),
                f,
                v,
                c.wall,
                c.wait,
            ));
        }
        j.push('}');
        println!("{j}");
    } else {
        println!(
            "total: {} epochs, {} images in {} batches, {wall:.3} s: {ips:.0} images/s, {:.1} MB/s read",
            epochs,
            st.samples,
            st.batches,
            st.bytes_read as f64 / 1e6 / wall
        );
        println!(
            "stage CPU time per image: read {:.3} ms, decode {:.3} ms, transform {:.3} ms, write {:.3} ms",
            per(st.read),
            per(st.decode),
            per(st.transform),
            per(st.write)
        );
        println!(
            "consumer waited {:.3} s ({:.0}% of wall time)",
            st.consumer_wait.as_secs_f64(),
            100.0 * st.consumer_wait.as_secs_f64() / wall
        );
        println!("skipped: {}", st.skipped);
        for (kind, n) in &st.skipped_by_kind {
            println!("  {n} {}", kind.as_str());
        }
        for s in &st.skipped_samples {
            println!("  {}", s.message);
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
            print!("{}", gpu::report(&step, f, v, &idle));
        }
    }
    Ok(())
}

/// Prints the source and loader lines of the bench report.
fn print_loader(loader: &BenchLoader, description: &str, layout: &str) {
    let spec = loader.spec();
    println!("source: {description}");
    println!(
        "loader: batch {}, {} workers, prefetch {}, {} {} {}x{}x{}, {} memory",
        loader.batch_size(),
        loader.num_workers(),
        loader.prefetch(),
        spec.dtype.as_str(),
        layout.to_ascii_lowercase(),
        spec.width,
        spec.height,
        spec.channels,
        loader.allocator_name()
    );
}

/// `--sweep-workers`: the loader (and the step, when given) at 0..=cores workers.
fn sweep(a: &BenchArgs, step: Option<Duration>) -> stoker::Result<()> {
    if a.workers.is_some() {
        return Err(stoker::Error::usage(
            "--sweep-workers runs every worker count: leave out --workers",
        ));
    }
    let cores = gpu::cores();
    let mut rows = Vec::new();
    let mut step_ips = None;
    let mut description = String::new();
    for w in 0..=cores {
        let (mut loader, d, _) = build_loader(a, Some(w), None)?;
        description = d;
        let alone = run_pass(&mut loader, a.epochs, 1.0, None, None, None)?;
        let loader_ips = alone.samples as f64 / alone.wall.max(1e-9);
        let (combined_ips, idle_fraction) = match step {
            Some(s) => {
                step_ips = Some(gpu::step_ips(
                    loader.batch_size(),
                    a.gpu_step_ms.unwrap_or(0.0),
                ));
                let c = run_pass(&mut loader, Some(alone.epochs), 0.0, Some(s), None, None)?;
                (
                    Some(c.samples as f64 / c.wall.max(1e-9)),
                    c.wait / c.wall.max(1e-9),
                )
            }
            None => (None, alone.wait / alone.wall.max(1e-9)),
        };
        rows.push(gpu::SweepRow {
            workers: w,
            loader_ips,
            combined_ips,
            idle_fraction,
        });
    }
    if let Some(file) = &a.plot {
        let title = match a.gpu_step_ms {
            Some(ms) => format!("stoker bench: images/s against workers ({ms} ms step)"),
            None => "stoker bench: images/s against workers".to_string(),
        };
        std::fs::write(file, gpu::plot_svg(&rows, step_ips, &title))
            .map_err(|e| stoker::Error::io(file, e))?;
    }
    if a.json {
        println!("{}", gpu::sweep_json(cores, a.gpu_step_ms, step_ips, &rows));
    } else {
        println!("source: {description}");
        println!(
            "cores: {cores}, batch {}, prefetch {}",
            a.batch_size, a.prefetch
        );
        print!("{}", gpu::sweep_table(&rows, step_ips));
        if step.is_some() {
            match rows.iter().find(|r| r.idle_fraction <= gpu::IDLE_THRESHOLD) {
                Some(r) => println!(
                    "fewest workers that keep the GPU busy (idle <= {:.0}%): {}",
                    100.0 * gpu::IDLE_THRESHOLD,
                    r.workers
                ),
                None => println!(
                    "input-bound at every worker count (GPU idle > {:.0}%)",
                    100.0 * gpu::IDLE_THRESHOLD
                ),
            }
        }
        if let Some(file) = &a.plot {
            println!("plot: {file}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Bench(a) => bench(a),
        Command::Plan(a) => plan::run(a),
        Command::Resize(a) => resize::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::AugmentPreview(a) => augment::preview(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoker: {e}");
            ExitCode::FAILURE
        }
    }
}
