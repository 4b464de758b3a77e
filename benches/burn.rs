//! stoker feeding burn next to burn's own loader: the same JPEGs, the same augmentation, the
//! same batch size and worker count, the batches as burn tensors, measured in one run.
//!
//! Data: 2,000 JPEGs of 256×144 (q90) in 4 class folders, cut from the 1080p photographs in
//! `../shared/fixtures/photos-1080p` (or this repository's fixtures when that is absent); made
//! once under `target/bench-data/`.
//!
//! The two loaders, both `Arc<dyn burn::data::dataloader::DataLoader<_>>`:
//! - **burn**: `DataLoaderBuilder::new(batcher).batch_size(256).shuffle(seed).num_workers(2)`
//!   over a `Dataset` that is burn's `ImageFolderDataset` written out here (the class is the
//!   parent folder, files sorted by path, each `get` an `image::open(..).into_rgb8()`, as
//!   burn-dataset does: its `vision` feature would bring reqwest and tokio into the build for
//!   the download helpers). The `Batcher` does what a burn user writes by hand today: per image
//!   a random affine (rotation ±15°, shift ±10 %, zoom 0.9–1.1 per axis, horizontal flip, edge
//!   pixels repeated) warped bilinearly by `imageproc::geometric_transformations::warp`, then
//!   into f32 NCHW in `[0, 1]` plus `rand_distr::Normal(0, 0.03)` noise, then one
//!   `Tensor::<4>::from_data` for the batch. imageproc is built without its `rayon` feature so
//!   that its warp runs on burn's two workers, not on a pool of its own.
//! - **stoker**: `BurnLoader` over `ImageFolder::open(dir)` with `Augment::keras_default()`
//!   (the same parameters, fused into one warp), batch 256, f32 NCHW, 2 workers, shuffled.
//!
//! Measured (medians over the repeats, the two loaders' epochs interleaved):
//! 1. loader alone: images/s over an epoch, each batch dropped on arrival;
//! 2. with a model step of fixed length per batch, `2 ×` stoker's loader-alone time per batch
//!    (a step at half stoker's rate): training images/s, and the share of the wall time spent
//!    waiting in `next()`, over the whole epoch and after each epoch's first batch (stoker
//!    makes the next epoch's first batches ahead, burn's loader does not). The step sleeps: it
//!    stands for a step on an accelerator, which leaves the host's cores to the loader;
//! 3. optional (`BURN_BENCH_CNN=1`): a real step, the `train_burn` example's CNN (forward,
//!    backward, Adam) on flex, sharing the two cores with the loader;
//! 4. the hand-off of one `[256, 3, 144, 256]` f32 batch: a copy into a tensor
//!    (`Tensor::from_data(TensorData::new(vec, shape))` of the batch's pixels) against
//!    `BurnBatch::from_batch`, which wraps the batch's buffer.
//!
//! Settings by environment variable: `BURN_BENCH_IMAGES` (2000), `BURN_BENCH_BATCH` (256),
//! `BURN_BENCH_WORKERS` (2), `BURN_BENCH_REPEATS` (5), `BURN_BENCH_CNN` (0). The table is
//! printed and written as JSON to `target/burn-bench.json`; the first augmented image of each
//! loader goes to `target/bench-data/burn-bench-{burn,stoker}.png`.
//!
//! Run: `cargo bench --features burn --bench burn`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::{Dataset, DatasetError};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use imageproc::geometric_transformations::{Border, Interpolation, Projection, warp};
use rand::RngExt;
use rand_distr::{Distribution, Normal};
use stoker::burn::{BurnBatch, BurnLoader};
use stoker::source::ImageFolder;
use stoker::{Augment, Loader};
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

const W: usize = 256;
const H: usize = 144;
const SEED: u64 = 7;

fn env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

struct Settings {
    images: usize,
    batch: usize,
    workers: usize,
    repeats: usize,
    cnn: bool,
}

// ---------------------------------------------------------------------------------------------
// Data

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn jpegs_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    v
}

fn photos() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/fixtures/photos-1080p");
    let dir = if shared.is_dir() {
        shared
    } else {
        root.join("fixtures/photos-256x144")
    };
    let v = jpegs_in(&dir);
    assert!(!v.is_empty(), "no photographs under {}", dir.display());
    v
}

/// The folder of `n` crops of W×H in 4 class folders, made on the first run.
fn data(n: usize) -> PathBuf {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(format!("burn-jpeg-256x144-{n}"));
    if !(folder.is_dir() && jpegs_in(&folder).len() == n) {
        let _ = std::fs::remove_dir_all(&folder);
        make(&folder, n);
    }
    folder
}

/// Crops of W×H from the photographs decoded at a quarter of their size (or full size when
/// small), on a 12×11 grid of offsets, every other one mirrored; JPEG q90.
fn make(folder: &Path, n: usize) {
    let mut dec = Decompressor::new().unwrap();
    let mut enc = turbojpeg::Compressor::new().unwrap();
    enc.set_quality(90).unwrap();
    let photos = photos();
    let per = n.div_ceil(photos.len());
    let mut k = 0;
    'outer: for p in &photos {
        let bytes = std::fs::read(p).unwrap();
        let header = dec.read_header(&bytes).unwrap();
        let scale = if header.width >= 4 * W { 4 } else { 1 };
        dec.set_scaling_factor(ScalingFactor::new(1, scale))
            .unwrap();
        let (sw, sh) = (header.width.div_ceil(scale), header.height.div_ceil(scale));
        let mut px = vec![0u8; sw * sh * 3];
        dec.decompress(
            &bytes,
            Image {
                pixels: &mut px[..],
                width: sw,
                pitch: sw * 3,
                height: sh,
                format: PixelFormat::RGB,
            },
        )
        .unwrap();
        for v in 0..per {
            let (gx, gy) = (v % 12, (v / 12) % 11);
            let x0 = (sw - W) * gx / 11;
            let y0 = (sh - H) * gy / 10;
            let flip = v % 2 == 1;
            let mut crop = vec![0u8; W * H * 3];
            for y in 0..H {
                for x in 0..W {
                    let sx = if flip { x0 + W - 1 - x } else { x0 + x };
                    let s = ((y0 + y) * sw + sx) * 3;
                    crop[(y * W + x) * 3..][..3].copy_from_slice(&px[s..s + 3]);
                }
            }
            let jpeg = enc
                .compress_to_vec(Image {
                    pixels: &crop[..],
                    width: W,
                    pitch: W * 3,
                    height: H,
                    format: PixelFormat::RGB,
                })
                .unwrap();
            let class = folder.join(format!("class-{}", k % 4));
            std::fs::create_dir_all(&class).unwrap();
            std::fs::write(class.join(format!("{k:05}.jpg")), &jpeg).unwrap();
            k += 1;
            if k == n {
                break 'outer;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// burn's loader, as a burn user writes it today

/// An item of [`FolderDataset`]: what burn's `ImageDatasetItem` holds for an RGB JPEG.
#[derive(Clone, Debug)]
struct ImageItem {
    image: Vec<u8>,
    width: u32,
    height: u32,
    label: usize,
}

/// burn-dataset's `ImageFolderDataset::new_classification`, written out: files sorted by
/// path, the class of each its parent folder's name (classes sorted), each `get` decodes the
/// file with the `image` crate.
struct FolderDataset {
    items: Vec<(PathBuf, usize)>,
}

impl FolderDataset {
    fn new(root: &Path) -> FolderDataset {
        let mut files: Vec<PathBuf> = walk(root)
            .into_iter()
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["bmp", "jpg", "jpeg", "png"].contains(&e.to_lowercase().as_str())
                })
            })
            .collect();
        files.sort();
        let class_of = |p: &Path| {
            p.parent()
                .and_then(|d| d.file_name())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        let mut classes: Vec<String> = files.iter().map(|p| class_of(p)).collect();
        classes.sort();
        classes.dedup();
        let items = files
            .into_iter()
            .map(|p| {
                let label = classes.binary_search(&class_of(&p)).unwrap();
                (p, label)
            })
            .collect();
        FolderDataset { items }
    }
}

impl Dataset<ImageItem> for FolderDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        let (path, label) = &self.items[index];
        let image = image::open(path).map_err(DatasetError::new)?;
        let (width, height) = (image.width(), image.height());
        Ok(ImageItem {
            image: image.into_rgb8().into_raw(),
            width,
            height,
            label: *label,
        })
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// The batch [`AugmentBatcher`] makes.
#[derive(Clone, Debug)]
struct HandBatch {
    images: Tensor<4>,
    targets: Tensor<1, Int>,
}

/// Augments by hand (imageproc warp + rand_distr noise), normalises to `[0, 1]`, f32 NCHW.
struct AugmentBatcher;

impl AugmentBatcher {
    /// `Augment::keras_default()`'s parameters: rotation ±15°, shift ±10 % of each side,
    /// zoom 0.9–1.1 per axis (`< 1` magnifies), horizontal flip, about the centre.
    fn projection(w: f32, h: f32, rng: &mut impl RngExt) -> Projection {
        let angle = rng.random_range(-15.0f32..15.0).to_radians();
        let (tx, ty) = (
            rng.random_range(-0.1f32..0.1) * w,
            rng.random_range(-0.1f32..0.1) * h,
        );
        let (zx, zy) = (rng.random_range(0.9f32..1.1), rng.random_range(0.9f32..1.1));
        let flip = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let (cx, cy) = (w / 2.0, h / 2.0);
        Projection::translate(cx + tx, cy + ty)
            * Projection::rotate(angle)
            * Projection::scale(flip / zx, 1.0 / zy)
            * Projection::translate(-cx, -cy)
    }

    /// The random affine warp of one image.
    fn warp(item: ImageItem, rng: &mut impl RngExt) -> RgbImage {
        let (w, h) = (item.width as f32, item.height as f32);
        let image = RgbImage::from_raw(item.width, item.height, item.image).unwrap();
        warp(
            &image,
            Self::projection(w, h, rng),
            Interpolation::Bilinear,
            Border::Replicate,
        )
    }

    /// HWC u8 to CHW f32 in `[0, 1]`, plus Gaussian noise.
    fn to_chw(image: &RgbImage, noise: &Normal<f32>, rng: &mut impl RngExt, out: &mut [f32]) {
        let plane = (image.width() * image.height()) as usize;
        for (j, px) in image.as_raw().chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                let v = v as f32 / 255.0 + noise.sample(rng);
                out[c * plane + j] = v.clamp(0.0, 1.0);
            }
        }
    }
}

impl Batcher<ImageItem, HandBatch> for AugmentBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> HandBatch {
        let mut rng = rand::rng();
        let noise = Normal::new(0.0f32, 0.03).unwrap();
        let n = items.len();
        let (w, h) = (items[0].width as usize, items[0].height as usize);
        let plane = w * h;
        let mut pixels = vec![0.0f32; n * 3 * plane];
        let mut labels = Vec::with_capacity(n);
        for (i, item) in items.into_iter().enumerate() {
            assert_eq!((item.width as usize, item.height as usize), (w, h));
            labels.push(item.label as i64);
            let warped = Self::warp(item, &mut rng);
            let out = &mut pixels[i * 3 * plane..][..3 * plane];
            Self::to_chw(&warped, &noise, &mut rng, out);
        }
        HandBatch {
            images: Tensor::from_data(TensorData::new(pixels, [n, 3, h, w]), device),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

/// Milliseconds per image of each stage of burn's path, on this thread alone (no loader):
/// decode (`Dataset::get`), warp, to f32 CHW with noise.
fn burn_stages(dir: &Path, images: usize) -> [f64; 3] {
    let dataset = FolderDataset::new(dir);
    let n = images.min(dataset.len());
    let mut rng = rand::rng();
    let noise = Normal::new(0.0f32, 0.03).unwrap();
    let mut out = vec![0.0f32; W * H * 3];
    let mut t = [0.0; 3];
    for i in 0..n {
        let start = Instant::now();
        let item = dataset.get(i).unwrap();
        let decoded = Instant::now();
        let warped = AugmentBatcher::warp(item, &mut rng);
        let warped_at = Instant::now();
        AugmentBatcher::to_chw(&warped, &noise, &mut rng, &mut out);
        let done = Instant::now();
        t[0] += (decoded - start).as_secs_f64();
        t[1] += (warped_at - decoded).as_secs_f64();
        t[2] += (done - warped_at).as_secs_f64();
    }
    std::hint::black_box(&out);
    t.map(|x| x * 1e3 / n as f64)
}

fn burn_loader(dir: &Path, s: &Settings, device: &Device) -> Arc<dyn DataLoader<HandBatch>> {
    DataLoaderBuilder::new(AugmentBatcher)
        .batch_size(s.batch)
        .shuffle(SEED)
        .num_workers(s.workers)
        .set_device(device.clone())
        .build(FolderDataset::new(dir))
}

fn stoker_loader(dir: &Path, s: &Settings, device: &Device) -> Arc<dyn DataLoader<BurnBatch>> {
    let builder = Loader::builder(ImageFolder::open(dir).unwrap())
        .batch_size(s.batch)
        .shuffle(true)
        .seed(SEED)
        .num_workers(s.workers)
        .transform(Arc::new(Augment::keras_default()));
    Arc::new(BurnLoader::new(builder, device).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// One epoch, timed.
#[derive(Clone, Copy, Debug, Default)]
struct Epoch {
    images: usize,
    wall: f64,
    /// Time in `iter()` and `next()`.
    waited: f64,
    /// The same after the first batch has arrived.
    waited_after_first: f64,
    wall_after_first: f64,
}

impl Epoch {
    fn images_per_s(&self) -> f64 {
        self.images as f64 / self.wall
    }
    fn wait_share(&self) -> f64 {
        self.waited / self.wall
    }
    fn wait_share_after_first(&self) -> f64 {
        self.waited_after_first / self.wall_after_first.max(f64::MIN_POSITIVE)
    }
}

/// Runs one epoch of `loader`, calling `step` on each batch (holding it meanwhile).
fn epoch<O>(
    loader: &dyn DataLoader<O>,
    count: impl Fn(&O) -> usize,
    mut step: impl FnMut(O),
) -> Epoch {
    let start = Instant::now();
    let mut batches = loader.iter();
    let mut e = Epoch::default();
    let mut first_at = None;
    let mut waited = Duration::ZERO;
    let mut waited_after_first = Duration::ZERO;
    let mut t = start;
    loop {
        let next = batches.next();
        let w = t.elapsed();
        waited += w;
        match first_at {
            None => first_at = Some(Instant::now()),
            Some(_) => waited_after_first += w,
        }
        let Some(batch) = next else { break };
        let batch = batch.unwrap();
        e.images += count(&batch);
        step(batch);
        t = Instant::now();
    }
    drop(batches);
    e.wall = start.elapsed().as_secs_f64();
    e.waited = waited.as_secs_f64();
    e.waited_after_first = waited_after_first.as_secs_f64();
    e.wall_after_first = first_at.map_or(0.0, |f| f.elapsed().as_secs_f64());
    e
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

/// Medians of the epochs' figures.
#[derive(Clone, Copy, Debug)]
struct Summary {
    images_per_s: f64,
    wait_share: f64,
    wait_share_after_first: f64,
}

fn summary(epochs: &[Epoch]) -> Summary {
    Summary {
        images_per_s: median(epochs.iter().map(Epoch::images_per_s).collect()),
        wait_share: median(epochs.iter().map(Epoch::wait_share).collect()),
        wait_share_after_first: median(epochs.iter().map(Epoch::wait_share_after_first).collect()),
    }
}

/// A step that takes `d` of wall time and leaves the cores alone (a step on an accelerator).
fn sleep_step<O>(d: Duration) -> impl FnMut(O) {
    move |batch| {
        std::thread::sleep(d);
        drop(batch);
    }
}

// ---------------------------------------------------------------------------------------------
// A real step: the train_burn example's CNN

#[derive(Module, Debug)]
struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    pool: MaxPool2d,
    gap: AdaptiveAvgPool2d,
    head: Linear,
    relu: Relu,
}

impl Cnn {
    fn new(classes: usize, device: &Device) -> Cnn {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        Cnn {
            conv1: conv(3, 16),
            conv2: conv(16, 32),
            conv3: conv(32, 64),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: LinearConfig::new(64, classes).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(self.relu.forward(self.conv1.forward(x)));
        let x = self.pool.forward(self.relu.forward(self.conv2.forward(x)));
        let x = self.pool.forward(self.relu.forward(self.conv3.forward(x)));
        let [n, c, _, _] = x.dims();
        self.head.forward(self.gap.forward(x).reshape([n, c]))
    }
}

/// A model being trained: one forward, backward and Adam step per batch.
struct Trainer {
    model: Option<Cnn>,
    optim: ModuleOptimizer,
    device: Device,
}

impl Trainer {
    fn new(device: &Device) -> Trainer {
        device.seed(SEED);
        Trainer {
            model: Some(Cnn::new(4, device)),
            optim: AdamConfig::new().init(),
            device: device.clone(),
        }
    }

    fn step(&mut self, images: Tensor<4>, targets: Tensor<1, Int>) {
        let model = self.model.take().expect("put back after each step");
        let loss = CrossEntropyLossConfig::new()
            .init(&self.device)
            .forward(model.forward(images), targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optim.step(1e-3, model, grads));
    }
}

/// One epoch of each loader, each training its own fresh model (same seed).
fn cnn_epochs(dir: &Path, s: &Settings) -> (Epoch, Epoch) {
    let device = Device::default().autodiff();
    let stoker = {
        let loader = stoker_loader(dir, s, &device);
        let mut t = Trainer::new(&device);
        epoch(
            loader.as_ref(),
            |b| b.indices.len(),
            |b| t.step(b.images, b.targets),
        )
    };
    let burn = {
        let loader = burn_loader(dir, s, &device);
        let mut t = Trainer::new(&device);
        epoch(
            loader.as_ref(),
            |b| b.targets.dims()[0],
            |b| t.step(b.images, b.targets),
        )
    };
    (burn, stoker)
}

// ---------------------------------------------------------------------------------------------
// Hand-off

/// Median seconds of (a) copying a batch's pixels into a new tensor and (b) wrapping the
/// batch (`BurnBatch::from_batch`), for full batches of `s.batch` without augmentation,
/// loaded inline (no workers running while the hand-off is timed).
fn hand_off(dir: &Path, s: &Settings, device: &Device) -> (f64, f64, [usize; 4]) {
    let mut loader = Loader::builder(ImageFolder::open(dir).unwrap())
        .batch_size(s.batch)
        .num_workers(0)
        .drop_last(true)
        .build()
        .unwrap();
    let (mut copy, mut wrap) = (Vec::new(), Vec::new());
    let mut shape = [0; 4];
    let mut e = 0;
    while wrap.len() < 7 {
        for batch in loader.epoch(e) {
            let batch = batch.unwrap();
            shape = batch.shape();
            // (a) one copy: the pixels into a Vec, the Vec into a tensor.
            let host: &[f32] = bytemuck::cast_slice(batch.as_bytes());
            let t = Instant::now();
            let tensor = Tensor::<4>::from_data(TensorData::new(host.to_vec(), shape), device);
            copy.push(t.elapsed().as_secs_f64());
            drop(std::hint::black_box(tensor));
            // (b) the batch's buffer becomes the tensor's.
            let t = Instant::now();
            let wrapped = BurnBatch::from_batch(batch, device).unwrap();
            wrap.push(t.elapsed().as_secs_f64());
            drop(std::hint::black_box(wrapped));
        }
        e += 1;
    }
    (median(copy), median(wrap), shape)
}

/// Writes the first image of an NCHW f32 batch in `[0, 1]` as an RGB PNG.
fn save_first(images: &Tensor<4>, path: &Path) {
    let [_, c, h, w] = images.dims();
    let data = images.clone().slice([0..1, 0..c, 0..h, 0..w]).into_data();
    let v: Vec<f32> = data.try_to_vec().unwrap();
    let plane = h * w;
    let rgb: Vec<u8> = (0..plane)
        .flat_map(|j| (0..c.min(3)).map(move |k| (k, j)))
        .map(|(k, j)| (v[k * plane + j].clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    RgbImage::from_raw(w as u32, h as u32, rgb)
        .unwrap()
        .save(path)
        .unwrap();
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let s = Settings {
        images: env("BURN_BENCH_IMAGES", 2000),
        batch: env("BURN_BENCH_BATCH", 256),
        workers: env("BURN_BENCH_WORKERS", 2),
        repeats: env("BURN_BENCH_REPEATS", 5).max(1),
        cnn: env("BURN_BENCH_CNN", 0) != 0,
    };
    assert!(
        s.images >= s.batch && s.batch > 0,
        "BURN_BENCH_IMAGES must hold at least one batch"
    );
    let dir = data(s.images);
    let device = Device::default();
    let batches_per_epoch = s.images.div_ceil(s.batch);
    println!(
        "stoker vs burn's DataLoaderBuilder: {} JPEGs {W}x{H} q90 in {}, batch {}, {} workers, \
         shuffled, augmented, f32 NCHW tensors on {device:?}; {} cores; medians of {} epochs",
        s.images,
        dir.display(),
        s.batch,
        s.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.repeats
    );

    let burn = burn_loader(&dir, &s, &device);
    let stoker = stoker_loader(&dir, &s, &device);
    let burn_n = |b: &HandBatch| b.targets.dims()[0];
    let stoker_n = |b: &BurnBatch| b.indices.len();

    // Warm-up (page cache, worker threads, allocator), one epoch each; the first image of
    // each loader's first batch is written as a PNG next to the data, to look at.
    let first = |name: &str, images: &Tensor<4>| {
        save_first(
            images,
            &dir.with_file_name(format!("burn-bench-{name}.png")),
        );
    };
    let mut seen = false;
    epoch(burn.as_ref(), burn_n, |b| {
        if !std::mem::replace(&mut seen, true) {
            first("burn", &b.images);
        }
    });
    seen = false;
    epoch(stoker.as_ref(), stoker_n, |b| {
        if !std::mem::replace(&mut seen, true) {
            first("stoker", &b.images);
        }
    });

    // 1. Loader alone.
    let (mut alone_b, mut alone_s) = (Vec::new(), Vec::new());
    for _ in 0..s.repeats {
        alone_s.push(epoch(stoker.as_ref(), stoker_n, drop));
        alone_b.push(epoch(burn.as_ref(), burn_n, drop));
    }
    let (alone_b, alone_s) = (summary(&alone_b), summary(&alone_s));

    // 2. With a step at half stoker's loader-alone rate.
    let step = Duration::from_secs_f64(2.0 * s.batch as f64 / alone_s.images_per_s);
    let (mut step_b, mut step_s) = (Vec::new(), Vec::new());
    for _ in 0..s.repeats {
        step_s.push(epoch(stoker.as_ref(), stoker_n, sleep_step(step)));
        step_b.push(epoch(burn.as_ref(), burn_n, sleep_step(step)));
    }
    let (step_b, step_s) = (summary(&step_b), summary(&step_s));
    drop((burn, stoker));

    // 3. A real CNN step on flex (optional: slow on few cores).
    let cnn = s.cnn.then(|| cnn_epochs(&dir, &s));

    // 4. Hand-off.
    let (copy, wrap, shape) = hand_off(&dir, &s, &device);

    // 5. Where burn's loader spends its time, per image, on one thread.
    let stages = burn_stages(&dir, 200);

    let pct = |x: f64| format!("{:.1} %", 100.0 * x);
    let row = |name: &str, burn: String, stoker: String, ratio: String| {
        println!("{name:<48} {burn:>12} {stoker:>12} {ratio:>12}")
    };
    println!();
    row("", "burn".into(), "stoker".into(), "stoker/burn".into());
    row(
        "loader alone, images/s",
        format!("{:.0}", alone_b.images_per_s),
        format!("{:.0}", alone_s.images_per_s),
        format!("{:.1}x", alone_s.images_per_s / alone_b.images_per_s),
    );
    println!(
        "with a {:.1} ms step per batch (sleeping; half stoker's loader-alone rate):",
        step.as_secs_f64() * 1e3
    );
    row(
        "  training images/s",
        format!("{:.0}", step_b.images_per_s),
        format!("{:.0}", step_s.images_per_s),
        format!("{:.1}x", step_s.images_per_s / step_b.images_per_s),
    );
    row(
        "  step waiting on input, share of wall time",
        pct(step_b.wait_share),
        pct(step_s.wait_share),
        String::new(),
    );
    row(
        &format!("    after each epoch's first batch (of {batches_per_epoch})"),
        pct(step_b.wait_share_after_first),
        pct(step_s.wait_share_after_first),
        String::new(),
    );
    if let Some((b, st)) = &cnn {
        println!("with the train_burn CNN step (flex, forward + backward + Adam), one epoch:");
        row(
            "  training images/s",
            format!("{:.1}", b.images_per_s()),
            format!("{:.1}", st.images_per_s()),
            format!("{:.2}x", st.images_per_s() / b.images_per_s()),
        );
        row(
            "  step waiting on input, share of wall time",
            pct(b.wait_share()),
            pct(st.wait_share()),
            String::new(),
        );
    }
    println!(
        "hand-off of one {shape:?} f32 batch ({:.0} MB): copy into a tensor {:.2} ms, \
         BurnBatch::from_batch {:.1} µs ({:.0}x)",
        (shape.iter().product::<usize>() * 4) as f64 / 1e6,
        copy * 1e3,
        wrap * 1e6,
        copy / wrap
    );
    println!(
        "burn's path per image, one thread: decode (image::open) {:.2} ms, warp (imageproc) \
         {:.2} ms, to f32 CHW + noise (rand_distr) {:.2} ms; total {:.2} ms",
        stages[0],
        stages[1],
        stages[2],
        stages.iter().sum::<f64>()
    );

    let figures = |a: &Summary, w: &Summary| {
        serde_json::json!({
            "loader_images_per_s": a.images_per_s,
            "training_images_per_s": w.images_per_s,
            "wait_share": w.wait_share,
            "wait_share_after_first_batch": w.wait_share_after_first,
        })
    };
    let cnn_json = |e: &Epoch| {
        serde_json::json!({
            "training_images_per_s": e.images_per_s(),
            "wait_share": e.wait_share(),
        })
    };
    let json = serde_json::json!({
        "images": s.images,
        "size": [W, H],
        "batch": s.batch,
        "workers": s.workers,
        "repeats": s.repeats,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "step_ms": step.as_secs_f64() * 1e3,
        "burn": figures(&alone_b, &step_b),
        "stoker": figures(&alone_s, &step_s),
        "ratio_loader_alone": alone_s.images_per_s / alone_b.images_per_s,
        "ratio_with_step": step_s.images_per_s / step_b.images_per_s,
        "cnn": cnn.as_ref().map(|(b, st)| serde_json::json!({
            "burn": cnn_json(b),
            "stoker": cnn_json(st),
        })),
        "burn_stages_ms_per_image": {
            "decode": stages[0],
            "warp": stages[1],
            "to_chw_noise": stages[2],
        },
        "hand_off": {
            "shape": shape,
            "copy_ms": copy * 1e3,
            "from_batch_us": wrap * 1e6,
        },
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/burn-bench.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("written to {}", out.display());
}
