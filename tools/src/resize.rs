//! `stoker resize SRC DST`: pre-resize a data set once, in parallel, resumably.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};
use serde::Serialize;
use stoker::decode::{DEFAULT_MAX_IMAGE_PIXELS, Decoder, Filter, ImageFormat};
use stoker::source::{Index, Part, Source, TarWriter, write_npy};
use stoker::{Error, Pixels, Result};

use crate::part::{ShardArg, clear_indexes, shard_name};
use crate::progress::Progress;
use stoker::source::{write_file as write_atomic, write_with};

/// How an image is fitted into `--size WxH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Fit {
    /// Resize to exactly WxH, changing the aspect ratio.
    Stretch,
    /// Resize to cover WxH, then cut the centre.
    Crop,
    /// Resize to fit inside WxH, then pad with black around the centre.
    Pad,
}

/// What `--decode-only` decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecodeOnly {
    /// The stored size.
    Full,
    /// The size the resize decodes at (a JPEG downscaled in the DCT domain).
    Scaled,
}

/// Resampling filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FilterArg {
    /// Antialiased Lanczos3 (sharpest).
    Lanczos3,
    /// Antialiased bilinear (about 3× faster).
    Bilinear,
}

/// Output image encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    /// JPEG at `--quality`, 4:2:0.
    Jpg,
    /// PNG (lossless).
    Png,
}

/// Output layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum To {
    /// One file per image, keeping the source's folder layout.
    Folder,
    /// WebDataset tar shards (`shard-000000.tar`, `KEY.jpg` + `KEY.cls`).
    Tar,
    /// NPY shards of u8 pixels (`images-000000.npy` + `labels-000000.npy`); needs --size.
    Npy,
    /// Contiguous HDF5 shards (`data-000000.h5`: `images`, `labels`); needs --size.
    Hdf5,
}

/// Arguments of `stoker resize`.
#[derive(Args, Debug)]
pub struct ResizeArgs {
    /// Source folder: every .jpg/.jpeg/.png below it (recursively; hidden entries skipped).
    pub src: PathBuf,
    /// Destination folder (created if needed).
    pub dst: PathBuf,
    /// Output size WxH (see --fit).
    #[arg(long, value_parser = crate::args::parse_size)]
    pub size: Option<(usize, usize)>,
    /// Scale factor applied to each image's own size, e.g. 0.1.
    #[arg(long)]
    pub scale: Option<f64>,
    /// Resize so that the shorter side is this many pixels, keeping the aspect ratio.
    #[arg(long)]
    pub short_side: Option<usize>,
    /// How to fit --size: stretch, crop (centre) or pad (black borders).
    #[arg(long, value_enum, default_value = "stretch")]
    pub fit: Fit,
    /// Resampling filter.
    #[arg(long, value_enum, default_value = "lanczos3")]
    pub filter: FilterArg,
    /// Output encoding.
    #[arg(long, value_enum, default_value = "jpg")]
    pub format: OutFormat,
    /// JPEG quality (1-100).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Output layout: folder (same tree as SRC), tar (WebDataset shards), npy or hdf5 shards.
    #[arg(long, value_enum, default_value = "folder")]
    pub to: To,
    /// Samples per tar / npy / hdf5 shard.
    #[arg(long, default_value_t = 1000)]
    pub shard_size: usize,
    /// Process only part i of n (0-based) of the files, e.g. `--shard 3/8`; `auto` in a Slurm
    /// job array (`SLURM_ARRAY_TASK_ID`), `auto/N` in a Kubernetes indexed Job of N
    /// completions (`JOB_COMPLETION_INDEX`). The split is by a hash of each file's relative
    /// path, so it does not depend on the machine or on the order files are listed. With
    /// --to tar/npy/hdf5 each part writes its own shards and index: DST opens as one data set
    /// once every part has finished.
    #[arg(long, value_parser = crate::part::parse_shard)]
    pub shard: Option<ShardArg>,
    /// Write the bad inputs (path, tab, reason) to this file.
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Refuse, from its header, an input whose stored size is above N pixels (a
    /// decompression bomb); the default is Pillow's limit.
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
    /// Decode the inputs only, no output: a baseline for the images/s figure. `full` (the
    /// default) decodes at the stored size; `scaled` at the DCT scale the resize would use,
    /// the decoder's share of the resize and so its floor.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "full")]
    pub decode_only: Option<DecodeOnly>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object on stdout instead of the summary line (bad inputs included).
    #[arg(long)]
    pub json: bool,
    /// Testing aid: sleep this long per image.
    #[arg(long, hide = true, default_value_t = 0)]
    pub delay_ms: u64,
}

/// FNV-1a: a stable hash of a relative path for `--shard`.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How the output size is chosen.
#[derive(Clone, Copy, Debug)]
enum Target {
    Size(usize, usize, Fit),
    Scale(f64),
    ShortSide(usize),
}

/// What to resize to, given the stored size: `(resized w, h)`, `(output w, h)`.
fn plan(t: Target, (sw, sh): (usize, usize)) -> ((usize, usize), (usize, usize)) {
    let r = |v: f64| (v.round() as usize).max(1);
    match t {
        Target::Size(tw, th, Fit::Stretch) => ((tw, th), (tw, th)),
        Target::Size(tw, th, fit) => {
            let (fx, fy) = (tw as f64 / sw as f64, th as f64 / sh as f64);
            if fit == Fit::Crop {
                let s = fx.max(fy);
                (
                    (r(sw as f64 * s).max(tw), r(sh as f64 * s).max(th)),
                    (tw, th),
                )
            } else {
                let s = fx.min(fy);
                (
                    (r(sw as f64 * s).min(tw), r(sh as f64 * s).min(th)),
                    (tw, th),
                )
            }
        }
        Target::Scale(f) => {
            let z = (r(sw as f64 * f), r(sh as f64 * f));
            (z, z)
        }
        Target::ShortSide(n) => {
            let s = n as f64 / sw.min(sh) as f64;
            let z = (r(sw as f64 * s), r(sh as f64 * s));
            (z, z)
        }
    }
}

/// The stored size of a JPEG or PNG, from its header (read as `decoder` reads it).
fn stored_size(decoder: &mut Decoder, bytes: &[u8]) -> std::result::Result<(usize, usize), String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    if ImageFormat::sniff(bytes).is_none() {
        return Err("not a jpeg or png".into());
    }
    decoder
        .stored_size(bytes)
        .map_err(|e| e.message().to_string())
}

/// One worker's codecs and buffers.
struct Worker {
    /// The encoded input being converted.
    input: Vec<u8>,
    decoder: Decoder,
    jpeg: turbojpeg::Compressor,
    canvas: Vec<u8>,
    bytes: Vec<u8>,
}

impl Worker {
    fn new(filter: FilterArg, quality: u8, max_image_pixels: u64) -> Result<Worker> {
        let mut decoder = Decoder::new()?;
        decoder.set_max_image_pixels(max_image_pixels);
        decoder.set_filter(match filter {
            FilterArg::Lanczos3 => Filter::Lanczos3,
            FilterArg::Bilinear => Filter::Bilinear,
        });
        let jerr = |e: turbojpeg::Error| Error::usage(format!("jpeg encoder: {e}"));
        let mut jpeg = turbojpeg::Compressor::new().map_err(jerr)?;
        jpeg.set_quality(i32::from(quality)).map_err(jerr)?;
        jpeg.set_subsamp(turbojpeg::Subsamp::Sub2x2).map_err(jerr)?;
        Ok(Worker {
            input: Vec::new(),
            decoder,
            jpeg,
            canvas: Vec::new(),
            bytes: Vec::new(),
        })
    }

    /// Reads input `rel` of `inputs`, decodes, resizes and encodes it (raw RGB pixels when
    /// `format` is `None`); the output is in `self.bytes`.
    fn convert(
        &mut self,
        inputs: &Inputs,
        rel: &Path,
        target: Target,
        format: Option<OutFormat>,
    ) -> std::result::Result<(), String> {
        inputs.read(rel, &mut self.input)?;
        let input = std::mem::take(&mut self.input);
        let r = self.convert_bytes(&input, target, format);
        self.input = input;
        r
    }

    fn convert_bytes(
        &mut self,
        input: &[u8],
        target: Target,
        format: Option<OutFormat>,
    ) -> std::result::Result<(), String> {
        let stored = stored_size(&mut self.decoder, input)?;
        let ((rw, rh), (tw, th)) = plan(target, stored);
        let img = self
            .decoder
            .decode(input, 3, Some((rw, rh)))
            .map_err(|e| e.message().to_string())?;
        let stoker::Pixels::U8(px) = img.pixels else {
            return Err("decoder gave f32 pixels".into());
        };
        let out: &[u8] = if (rw, rh) == (tw, th) {
            px
        } else {
            // Crop (resized ≥ target) or pad (resized ≤ target), centred.
            self.canvas.clear();
            self.canvas.resize(tw * th * 3, 0);
            let (cw, ch) = (rw.min(tw), rh.min(th));
            let (sx, sy) = ((rw - cw) / 2, (rh - ch) / 2);
            let (dx, dy) = ((tw - cw) / 2, (th - ch) / 2);
            for y in 0..ch {
                let s = ((sy + y) * rw + sx) * 3;
                let d = ((dy + y) * tw + dx) * 3;
                self.canvas[d..d + cw * 3].copy_from_slice(&px[s..s + cw * 3]);
            }
            &self.canvas
        };
        self.bytes.clear();
        match format {
            None => self.bytes.extend_from_slice(out),
            Some(OutFormat::Jpg) => {
                let image = turbojpeg::Image {
                    pixels: out,
                    width: tw,
                    pitch: tw * 3,
                    height: th,
                    format: turbojpeg::PixelFormat::RGB,
                };
                self.bytes = self
                    .jpeg
                    .compress_to_vec(image)
                    .map_err(|e| format!("jpeg encode: {e}"))?;
            }
            Some(OutFormat::Png) => {
                use image::ImageEncoder;
                image::codecs::png::PngEncoder::new(&mut self.bytes)
                    .write_image(out, tw as u32, th as u32, image::ExtendedColorType::Rgb8)
                    .map_err(|e| format!("png encode: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Runs `f(worker, k)` for every `k` in `0..n` on `workers` threads; results in order.
fn par_map<T: Send>(
    n: usize,
    workers: usize,
    args: &ResizeArgs,
    progress: &Progress,
    f: impl Fn(&mut Worker, usize) -> T + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(n));
    let init_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            s.spawn(|| {
                let mut w = match Worker::new(args.filter, args.quality, args.max_image_pixels) {
                    Ok(w) => w,
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        *init_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                };
                let mut mine = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    mine.push((k, f(&mut w, k)));
                    if args.delay_ms > 0 {
                        std::thread::sleep(Duration::from_millis(args.delay_ms));
                    }
                    progress.add(1);
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            });
        }
    });
    if let Some(e) = init_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut r = results.into_inner().unwrap_or_else(|p| p.into_inner());
    r.sort_by_key(|(k, _)| *k);
    Ok(r.into_iter().map(|(_, t)| t).collect())
}

/// Image files below `root`, relative to it, in ImageFolder order (the library's walk).
fn list_images(root: &Path) -> Result<Vec<PathBuf>> {
    Ok(stoker::source::image_files(root)?
        .into_iter()
        .map(|p| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p))
        .collect())
}

/// Where `stoker resize` reads its inputs: a local folder, or a prefix in object storage
/// holding one object per image (`s3://bucket/prefix/`, the `s3` feature), listed once and
/// fetched by the workers in parallel, one request each, nothing written to local disk.
struct Inputs {
    root: PathBuf,
    /// The prefix's images and the index of each relative path among them.
    remote: Option<(
        stoker::source::AnySource,
        std::collections::HashMap<PathBuf, usize>,
    )>,
}

impl Inputs {
    /// The inputs below `root` and their paths relative to it, in ImageFolder order.
    fn list(root: &Path) -> Result<(Inputs, Vec<PathBuf>)> {
        if !stoker::remote::is_remote(&root.to_string_lossy()) {
            let rel = list_images(root)?;
            return Ok((
                Inputs {
                    root: root.to_path_buf(),
                    remote: None,
                },
                rel,
            ));
        }
        let mut text = root.to_string_lossy().into_owned();
        if !text.ends_with('/') {
            text.push('/');
        }
        let src = crate::open::open(Path::new(&text), None, "images")?;
        if src.format() != "image folder" {
            return Err(Error::usage(format!(
                "{text} holds {} data, not one object per image: resize reads images",
                src.format()
            )));
        }
        let mut rel: Vec<PathBuf> = (0..src.len())
            .map(|i| {
                let url = src.path(i).map(|p| p.to_string_lossy().into_owned());
                PathBuf::from(url.unwrap_or_default().strip_prefix(&text).unwrap_or(""))
            })
            .collect();
        let index = rel.iter().cloned().zip(0..).collect();
        // image_files' order: by directory, then file name.
        rel.sort_by_cached_key(|p| {
            let parent = p.parent().unwrap_or(Path::new("")).as_os_str();
            (
                parent.as_encoded_bytes().to_vec(),
                p.file_name().map(|n| n.to_os_string()),
            )
        });
        Ok((
            Inputs {
                root: PathBuf::from(text),
                remote: Some((src, index)),
            },
            rel,
        ))
    }

    /// Input `rel`'s path or URL (as bad inputs are reported).
    fn name(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// Input `rel`'s encoded bytes into `buf`.
    fn read(&self, rel: &Path, buf: &mut Vec<u8>) -> std::result::Result<(), String> {
        let Some((src, index)) = &self.remote else {
            buf.clear();
            return fs::File::open(self.root.join(rel))
                .and_then(|mut f| std::io::Read::read_to_end(&mut f, buf))
                .map(|_| ())
                .map_err(|e| e.to_string().to_lowercase());
        };
        let i = *index.get(rel).ok_or("not in the listing")?;
        let mut tmp = std::mem::take(buf);
        let r = match src.get(i, &mut tmp) {
            Ok(item) => match item.raw {
                stoker::source::Raw::Encoded(b) => Ok(b.to_vec()),
                stoker::source::Raw::Pixels(_) => Err("not an encoded image".to_string()),
            },
            Err(e) => Err(e.message().to_string()),
        };
        *buf = r?;
        Ok(())
    }

    /// The files `out` must not be older than to be done (none for object storage: an output
    /// there is done when it exists).
    fn sources(&self, rels: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
        if self.remote.is_some() {
            return Vec::new();
        }
        rels.map(|r| self.root.join(r)).collect()
    }
}

/// Whether `out` is a finished output for `sources`: non-empty and not older than any of them.
fn is_done(out: &Path, sources: &[PathBuf]) -> bool {
    let Ok(m) = fs::metadata(out) else {
        return false;
    };
    let mtime = |m: &fs::Metadata| m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    m.len() > 0
        && sources.iter().all(|s| {
            fs::metadata(s)
                .map(|sm| mtime(&m) >= mtime(&sm))
                .unwrap_or(true)
        })
}

/// The label of each file from its first path component (ImageFolder's class order), when
/// every file sits in a class folder.
fn class_labels(rel: &[PathBuf]) -> Option<Vec<i64>> {
    let class = |p: &Path| {
        let mut c = p.components();
        let first = c.next()?;
        c.next()?;
        Some(first.as_os_str().to_os_string())
    };
    let classes: BTreeSet<_> = rel.iter().map(|p| class(p)).collect::<Option<_>>()?;
    let classes: Vec<_> = classes.into_iter().collect();
    rel.iter()
        .map(|p| {
            let c = class(p)?;
            classes.binary_search(&c).ok().map(|i| i as i64)
        })
        .collect()
}

/// A bad input of `stoker resize --json`.
#[derive(Debug, Serialize)]
struct BadInput {
    path: String,
    reason: String,
}

/// `stoker resize --json`.
#[derive(Debug, Serialize)]
struct ResizeReport {
    /// `resized`, or `decoded` with --decode-only.
    mode: &'static str,
    /// Images written (decoded with --decode-only).
    written: usize,
    /// With --decode-only: the pixels decoded, in all (`None` otherwise).
    decoded_pixels: Option<u64>,
    seconds: f64,
    images_per_s: f64,
    workers: usize,
    /// Inputs skipped because their output is already done (resumed run).
    already_done: usize,
    /// With --to tar/npy/hdf5: shards skipped because they were written already (a file not
    /// older than its inputs; in object storage, an object that exists).
    shards_already_done: usize,
    failed: usize,
    /// Every bad input with the reason.
    bad: Vec<BadInput>,
    /// The --errors file, when bad inputs were listed in it.
    errors_file: Option<String>,
    /// The part resized, with `--shard` (`{"index": i, "count": n}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<Part>,
}

/// Runs `stoker resize`.
pub fn run(a: ResizeArgs) -> Result<()> {
    if a.to == To::Hdf5 {
        crate::hdf5_out::check()?;
    }
    let target = match (a.size, a.scale, a.short_side) {
        (Some((w, h)), None, None) => Target::Size(w, h, a.fit),
        (None, Some(f), None) if f > 0.0 && f.is_finite() => Target::Scale(f),
        (None, Some(f), None) => {
            return Err(Error::usage(format!(
                "--scale {f} must be a positive number"
            )));
        }
        (None, None, Some(n)) if n > 0 => Target::ShortSide(n),
        (None, None, None) => {
            return Err(Error::usage(
                "give one of --size WxH, --scale F or --short-side N",
            ));
        }
        _ => {
            return Err(Error::usage(
                "give only one of --size, --scale and --short-side",
            ));
        }
    };
    if a.shard_size == 0 {
        return Err(Error::usage("--shard-size must be > 0"));
    }
    if a.src.is_file() && !stoker::remote::is_remote(&a.src.to_string_lossy()) {
        return Err(Error::usage(format!(
            "{} is a file: resize takes a folder of images",
            a.src.display()
        )));
    }
    if stoker::remote::is_remote(&a.dst.to_string_lossy())
        && !(matches!(a.to, To::Tar | To::Npy) && a.decode_only.is_none())
    {
        return Err(
            Error::usage("resize writes to object storage with --to tar or --to npy").file(&a.dst),
        );
    }
    let part = a.shard.map(ShardArg::part).transpose()?;
    let (inputs, all) = Inputs::list(&a.src)?;
    let labels_all = class_labels(&all);
    let (mut rel, mut labels) = (Vec::new(), Vec::new());
    for (k, file) in all.iter().enumerate() {
        let hash = fnv(file.as_os_str().as_encoded_bytes());
        if part.is_none_or(|p| hash % p.count as u64 == p.index as u64) {
            rel.push(file.clone());
            labels.push(labels_all.as_ref().map(|l| l[k]));
        }
    }
    let workers = a
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let ext = match a.format {
        OutFormat::Jpg => "jpg",
        OutFormat::Png => "png",
    };
    let src_of = |p: &PathBuf| inputs.name(p);
    let mut bad: Vec<(PathBuf, String)> = Vec::new();
    let (mut written, mut skipped, mut skipped_shards) = (0usize, 0usize, 0usize);
    let progress;
    let mut decoded_pixels = 0u64;
    if let Some(how) = a.decode_only {
        progress = Progress::new(rel.len(), "decoded", a.quiet);
        let results = par_map(rel.len(), workers, &a, &progress, |w, k| {
            inputs.read(&rel[k], &mut w.input)?;
            let bytes = &w.input;
            let img = match how {
                DecodeOnly::Full => w.decoder.decode(bytes, 3, None),
                DecodeOnly::Scaled => {
                    let (decoded, _) = plan(target, stored_size(&mut w.decoder, bytes)?);
                    w.decoder.decode_reduced(bytes, 3, decoded)
                }
            };
            img.map(|i| (i.width * i.height) as u64)
                .map_err(|e| e.message().to_string())
        })?;
        for (k, r) in results.into_iter().enumerate() {
            match r {
                Ok(px) => {
                    written += 1;
                    decoded_pixels += px;
                }
                Err(m) => bad.push((src_of(&rel[k]), m)),
            }
        }
    } else {
        match a.to {
            To::Folder => {
                // Output paths; two inputs that map to one output are an error for the second.
                let mut seen = HashSet::new();
                let mut outs: Vec<std::result::Result<PathBuf, String>> = Vec::new();
                for p in &rel {
                    let o = a.dst.join(p.with_extension(ext));
                    outs.push(if seen.insert(o.clone()) {
                        Ok(o)
                    } else {
                        Err(format!(
                            "its output {} is also another input's",
                            o.display()
                        ))
                    });
                }
                let todo: Vec<usize> = (0..rel.len())
                    .filter(|&k| match &outs[k] {
                        Ok(o) => !is_done(o, &inputs.sources([rel[k].clone()].into_iter())),
                        Err(_) => true,
                    })
                    .collect();
                skipped = rel.len() - todo.len();
                progress = Progress::new(todo.len(), "images", a.quiet);
                // A bad input is listed and the run goes on; a failed write (a full disk, a
                // file size limit, no permission) stops it: every later write would fail too.
                let write_error: Mutex<Option<Error>> = Mutex::new(None);
                let results = par_map(todo.len(), workers, &a, &progress, |w, j| {
                    let k = todo[j];
                    let out = outs[k].as_ref().map_err(Clone::clone)?;
                    if write_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some()
                    {
                        return Err("not attempted: an earlier write failed".to_string());
                    }
                    w.convert(&inputs, &rel[k], target, Some(a.format))?;
                    let bytes = &w.bytes;
                    write_atomic(out, |f| f.write_all(bytes)).map_err(|e| {
                        let m = e.to_string();
                        write_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        m
                    })
                })?;
                if let Some(e) = write_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    progress.finish();
                    return Err(e);
                }
                for (j, r) in results.into_iter().enumerate() {
                    match r {
                        Ok(()) => written += 1,
                        Err(m) => bad.push((src_of(&rel[todo[j]]), m)),
                    }
                }
            }
            To::Tar | To::Npy | To::Hdf5 => {
                let (stem, extn, format) = match a.to {
                    To::Tar => ("shard", "tar", Some(a.format)),
                    To::Npy => ("images", "npy", None),
                    _ => ("data", "h5", None),
                };
                let (tw, th) = match target {
                    Target::Size(w, h, _) => (w, h),
                    _ if format.is_none() => {
                        return Err(Error::usage(
                            "--to npy and --to hdf5 need --size WxH (one shape for all samples)",
                        ));
                    }
                    _ => (0, 0),
                };
                let output = crate::output::Output::new(&a.dst)?;
                if output.is_remote() && a.to == To::Hdf5 {
                    return Err(Error::usage(
                        "resize writes tar and npy shards to object storage, not hdf5",
                    ));
                }
                let dst = output.dir();
                // The index is written last: none from an earlier run while this one writes.
                clear_indexes(dst, part)?;
                let mut own_index = Index::new("tar", 0);
                own_index.part = part;
                output.remove(&[Index::FILE.to_string(), own_index.file_name()])?;
                let chunks: Vec<std::ops::Range<usize>> = (0..rel.len())
                    .step_by(a.shard_size)
                    .map(|s| s..(s + a.shard_size).min(rel.len()))
                    .collect();
                let shard_path = |c: usize| dst.join(shard_name(stem, part, c, extn));
                let labels_path = |c: usize| dst.join(shard_name("labels", part, c, "npy"));
                let name = |p: &Path| {
                    p.file_name()
                        .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
                };
                // Samples in each shard: the images that resized (bad inputs are left out).
                let mut counts: Vec<Option<usize>> = vec![None; chunks.len()];
                // In object storage a shard is done when its object exists (uploaded whole).
                let mut todo = Vec::new();
                for (c, chunk) in chunks.iter().enumerate() {
                    let done = if output.is_remote() {
                        output.exists(&name(&shard_path(c)))?
                    } else {
                        let srcs = inputs.sources(chunk.clone().map(|k| rel[k].clone()));
                        is_done(&shard_path(c), &srcs)
                    };
                    if !done {
                        todo.push(c);
                    }
                }
                skipped_shards = chunks.len() - todo.len();
                skipped = rel.len() - todo.iter().map(|&c| chunks[c].len()).sum::<usize>();
                progress = Progress::new(rel.len() - skipped, "images", a.quiet);
                for &c in &todo {
                    let range = chunks[c].clone();
                    let results = par_map(range.len(), workers, &a, &progress, |w, j| {
                        let k = range.start + j;
                        w.convert(&inputs, &rel[k], target, format)
                            .map(|()| std::mem::take(&mut w.bytes))
                    })?;
                    let out = shard_path(c);
                    let mut n_ok = 0;
                    if format.is_none() {
                        let (mut px, mut lab) = (Vec::new(), Vec::new());
                        for (j, r) in results.iter().enumerate() {
                            if let Ok(p) = r {
                                px.extend_from_slice(p);
                                lab.extend(labels[range.start + j]);
                                n_ok += 1;
                            }
                        }
                        let shape = [n_ok, th, tw, 3];
                        let labelled = labels_all.is_some();
                        if a.to == To::Npy {
                            if labelled {
                                let lp = labels_path(c);
                                let b: Vec<u8> = lab.iter().flat_map(|v| v.to_le_bytes()).collect();
                                write_atomic(&lp, |f| write_npy(f, "<i8", &[n_ok], &b))?;
                                output.publish(&lp)?;
                            }
                            write_atomic(&out, |f| write_npy(f, "|u1", &shape, &px))?;
                        } else {
                            let l = labelled.then_some(&lab[..]);
                            write_with(&out, |tmp| {
                                crate::hdf5_out::save(tmp, Pixels::U8(&px), shape, l)
                            })?;
                        }
                    } else {
                        write_atomic(&out, |f| {
                            let mut t = TarWriter::new(std::io::BufWriter::new(f));
                            for (j, r) in results.iter().enumerate() {
                                if let Ok(bytes) = r {
                                    let k = range.start + j;
                                    // WebDataset keys end at the first '.' of the file name.
                                    let key = rel[k].with_extension("");
                                    let key = key.to_string_lossy().replace('\\', "/");
                                    let (dir, file) = key.rsplit_once('/').unwrap_or(("", &key));
                                    let file = file.replace('.', "_");
                                    let key = if dir.is_empty() {
                                        file
                                    } else {
                                        format!("{dir}/{file}")
                                    };
                                    t.append_sample(&key, ext, bytes, labels[k])?;
                                    n_ok += 1;
                                }
                            }
                            t.finish().map(|_| ())
                        })?;
                    }
                    // The images last: a shard whose images object exists is whole.
                    output.publish(&out)?;
                    written += n_ok;
                    counts[c] = Some(n_ok);
                    for (j, r) in results.into_iter().enumerate() {
                        if let Err(m) = r {
                            bad.push((src_of(&rel[range.start + j]), m));
                        }
                    }
                }
                // The shards an earlier run finished: their samples, read back.
                let mut index = Index::new(
                    match a.to {
                        To::Tar => "tar",
                        To::Npy => "npy",
                        _ => "hdf5",
                    },
                    0,
                );
                index.part = part;
                let labelled = labels_all.is_some();
                if format.is_none() {
                    index.shape = Some([th, tw, 3]);
                    index.dtype = Some("u8".into());
                }
                if a.to == To::Hdf5 {
                    index.images_key = Some("images".into());
                    index.labels_key = labelled.then(|| "labels".into());
                }
                let file = |p: PathBuf| name(&p);
                for (c, count) in counts.into_iter().enumerate() {
                    let n = match count {
                        Some(n) => n,
                        None => {
                            let at = output.location(&name(&shard_path(c)));
                            crate::open::open(&at, None, "images")?.len()
                        }
                    };
                    if n == 0 {
                        // Every input of the shard was bad: nothing to list.
                        continue;
                    }
                    index.samples += n;
                    index.shard_samples.push(n);
                    index.shards.push(file(shard_path(c)));
                    if a.to == To::Npy && labelled {
                        index.labels.push(file(labels_path(c)));
                    }
                }
                if index.samples > 0 || part.is_some() {
                    // `stoker::source::open(DST)` opens the shards through it. A part writes
                    // its index even when it has no samples: the data set waits for every
                    // part's.
                    index.write(dst)?;
                    output.publish(&dst.join(index.file_name()))?;
                }
            }
        }
    }
    progress.finish();
    let secs = progress.elapsed();
    if let Some(path) = &a.errors {
        let mut text = String::new();
        for (p, m) in &bad {
            text.push_str(&format!("{}\t{m}\n", p.display()));
        }
        fs::write(path, text).map_err(|e| Error::io(path, e))?;
    }
    if a.json {
        return crate::bench::print_json(&ResizeReport {
            mode: if a.decode_only.is_some() {
                "decoded"
            } else {
                "resized"
            },
            written,
            decoded_pixels: a.decode_only.map(|_| decoded_pixels),
            seconds: secs,
            images_per_s: written as f64 / secs.max(1e-9),
            workers,
            already_done: skipped,
            shards_already_done: skipped_shards,
            failed: bad.len(),
            bad: bad
                .iter()
                .map(|(p, m)| BadInput {
                    path: p.display().to_string(),
                    reason: m.clone(),
                })
                .collect(),
            errors_file: a
                .errors
                .as_ref()
                .filter(|_| !bad.is_empty())
                .map(|p| p.display().to_string()),
            part,
        });
    }
    if !bad.is_empty() {
        eprintln!("{} bad inputs:", bad.len());
        for (p, m) in bad.iter().take(20) {
            eprintln!("  {}: {m}", p.display());
        }
        if bad.len() > 20 {
            eprintln!("  … and {} more", bad.len() - 20);
        }
    }
    let verb = if a.decode_only.is_some() {
        "decoded"
    } else {
        "resized"
    };
    println!(
        "{verb} {written} images in {secs:.2} s ({:.1} images/s, {workers} workers); {skipped} already done, {} failed{}",
        written as f64 / secs.max(1e-9),
        bad.len(),
        a.errors
            .as_ref()
            .filter(|_| !bad.is_empty())
            .map(|p| format!(" (listed in {})", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let t = |w, h, f| Target::Size(w, h, f);
        assert_eq!(
            plan(t(256, 144, Fit::Stretch), (100, 100)),
            ((256, 144), (256, 144))
        );
        // Crop: cover then cut; pad: fit inside.
        assert_eq!(
            plan(t(100, 100, Fit::Crop), (1920, 1080)),
            ((178, 100), (100, 100))
        );
        assert_eq!(
            plan(t(100, 100, Fit::Pad), (1920, 1080)),
            ((100, 56), (100, 100))
        );
        assert_eq!(
            plan(Target::Scale(0.1), (1920, 1080)),
            ((192, 108), (192, 108))
        );
        assert_eq!(
            plan(Target::ShortSide(256), (1080, 1920)),
            ((256, 455), (256, 455))
        );
        assert_eq!(plan(Target::Scale(0.0001), (10, 10)), ((1, 1), (1, 1)));
    }

    #[test]
    fn shard_hash() {
        assert_ne!(fnv(b"a/b.jpg"), fnv(b"a/c.jpg"));
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn stored_size_errors() {
        let d = &mut Decoder::new().unwrap();
        assert_eq!(stored_size(d, b"").unwrap_err(), "empty file (0 bytes)");
        assert_eq!(stored_size(d, b"GIF89a").unwrap_err(), "not a jpeg or png");
        assert!(
            stored_size(d, &[0xff, 0xd8, 0xff])
                .unwrap_err()
                .starts_with("jpeg")
        );
        assert!(stored_size(d, b"\x89PNG\r\n\x1a\n").is_err());
    }

    #[test]
    fn labels_from_class_folders() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            class_labels(&[p("b/1.jpg"), p("a/x/2.jpg"), p("b/3.jpg")]),
            Some(vec![1, 0, 1])
        );
        assert_eq!(class_labels(&[p("b/1.jpg"), p("loose.jpg")]), None);
    }
}
