//! `stoker`: tools around the stoker data loader.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use stoker::digest::Digest;
use stoker::source::{ImageFolder, NpySource, Source};
use stoker::{DType, Layout, Loader, Normalize, OnError};

mod augment;
mod convert;
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

#[derive(Args)]
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
        return Err(stoker::Error::config("--labels is only for .npy sources"));
    }
    if lower.ends_with(".csv") {
        return Ok(Box::new(ImageFolder::from_manifest(p)?));
    }
    Ok(Box::new(ImageFolder::open(p)?))
}

fn bench(a: BenchArgs) -> stoker::Result<()> {
    let path = a
        .path
        .clone()
        .unwrap_or_else(|| default_data().display().to_string());
    let source = open_source(&path, a.labels.as_deref())?;
    let description = source.describe();
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
    if let Some(w) = a.workers {
        b = b.num_workers(w);
    }
    if let Some((w, h)) = a.size {
        b = b.size(w, h);
    }
    match a.normalize.as_str() {
        "none" => {}
        "imagenet" => b = b.normalize(Normalize::imagenet()),
        other => {
            return Err(stoker::Error::config(format!(
                "unknown normalisation {other:?} (none, imagenet)"
            )))
        }
    }
    b = b.transform(augment::transform(&a.augment)?);
    let mut loader = b.build()?;
    let spec = loader.spec().clone();
    if !a.json {
        println!("source: {description}");
        println!(
            "loader: batch {}, {} workers, prefetch {}, {} {} {}x{}x{}, {} memory",
            loader.batch_size(),
            loader.num_workers(),
            loader.prefetch(),
            spec.dtype.as_str(),
            a.layout.to_ascii_lowercase(),
            spec.width,
            spec.height,
            spec.channels,
            loader.allocator_name()
        );
    }
    let mut digest = a.digest.then(Digest::new);
    let start = Instant::now();
    let mut epochs = 0;
    let more = |e: u64, start: Instant| match a.epochs {
        Some(n) => e < n,
        None => e < 3 || start.elapsed().as_secs_f64() < 2.0,
    };
    let verbose = !a.json && a.epochs.is_some_and(|n| n <= 20);
    while more(epochs, start) {
        let e = epochs;
        epochs += 1;
        let t = Instant::now();
        let mut n = 0usize;
        for batch in loader.epoch(e) {
            let batch = batch?;
            n += batch.len();
            if let Some(d) = digest.as_mut() {
                d.update(&batch);
            }
        }
        if verbose {
            let s = t.elapsed().as_secs_f64();
            println!(
                "epoch {e}: {n} images in {s:.3} s, {:.0} images/s",
                n as f64 / s
            );
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let st = loader.stats();
    let ips = st.samples as f64 / wall;
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / (st.samples.max(1) as f64);
    if a.json {
        let mut j = format!(
            "{{\"images_per_s\":{ips:.2},\"samples\":{},\"batches\":{},\"skipped\":{},\
             \"epochs\":{},\"seconds\":{wall:.6},\"bytes_read\":{},\"workers\":{},\
             \"batch_size\":{},\"prefetch\":{},\"dtype\":\"{}\",\"layout\":\"{}\",\
             \"width\":{},\"height\":{},\"channels\":{},\
             \"stage_ms_per_image\":{{\"read\":{:.6},\"decode\":{:.6},\"transform\":{:.6},\"write\":{:.6}}},\
             \"consumer_wait_s\":{:.6}",
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
        );
        if let Some(d) = &digest {
            j.push_str(&format!(",\"digest\":\"{}\"", d.hex()));
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
