//! The augmentation engine's cost, next to the plain store of the same output in the same run.
//!
//! - `store_plain`: `Store::store_image` of a 256×144 RGB u8 image to f32 NCHW, ImageNet
//!   normalised (what the loader does without augmentation);
//! - `fused_warp`: the fused pass with `Augment::keras_default()` parameters (rotation, shift,
//!   zoom, flip, noise, normalisation, f32 NCHW) into the same slot; `fused_warp_no_noise`
//!   the same without the noise; `fused_warp_avx2` with the AVX2 kernel (the others take
//!   AVX-512 where the CPU has it).
//! - `fused_warp_ycbcr`: the same pass (with the noise) from a real photo's YCbCr planes (the
//!   `ycbcr` path), next to `fused_warp_photo`, the RGB pass on the same photo.
//!   Counted in pixels: divan's items/s is pixels/s on one core.
//! - The VBMI argument (`auto`, `on`, `off`) of `fused_warp`, `fused_warp_photo` and
//!   `fused_warp_ycbcr`: the AVX-512 kernel's taps by VBMI byte permutes (`on`), by gathers
//!   (`off`), or whichever the first samples timed faster (`auto`, the default). The same
//!   bits; on a CPU without VBMI all three run the gathers.
//! - `loader_identity` / `loader_keras_default`: the loader over the JPEG folder that
//!   `cargo bench --bench pipeline` makes (`target/bench-data/jpeg-256x144`, 1024 images), or
//!   the 32 fixture JPEGs when it is absent; batch 64, 1 and 2 workers, f32 NCHW normalised.
//!
//! Run: `cargo bench --bench augment`. Compare `loader_keras_default` with `loader_identity`
//! at the same worker count: the target is ≥ 0.85.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use stoker::augment::{Augment, AugmentBuilder, AugmentParams, AugmentScratch};
use stoker::decode::Decoder;
use stoker::output::{SimdLevel, SrcType, Store};
use stoker::rng::SampleRng;
use stoker::simd::Vbmi;
use stoker::source::ImageFolder;
use stoker::transform::{Identity, Transform};
use stoker::{ImageView, Loader, Normalize, OutputSpec, Pixels};

const W: usize = 256;
const H: usize = 144;

fn main() {
    divan::main();
}

fn spec() -> OutputSpec {
    OutputSpec::new(W, H, 3).with_normalize(Normalize::imagenet())
}

fn image() -> Vec<u8> {
    // Smooth content with some texture, like a photograph.
    let mut rng = SampleRng::new(1);
    (0..W * H * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = (p % W, p / W);
            ((x + 2 * y + 40 * c) % 200) as u8 + rng.below(40) as u8
        })
        .collect()
}

#[divan::bench(sample_count = 30)]
fn store_plain(bencher: Bencher) {
    let px = image();
    let src = ImageView::new(W, H, 3, Pixels::U8(&px)).unwrap();
    let mut store = Store::new(&spec(), SrcType::U8).unwrap();
    let mut slot = vec![0u8; spec().sample_bytes()];
    bencher
        .counter(ItemsCount::new(W * H))
        .bench_local(|| store.store_image(&src, &mut slot).unwrap());
}

/// The fused pass of `aug` run by `apply` with 64 parameter sets drawn for W×H, in turn,
/// into one f32 NCHW ImageNet-normalised slot.
fn run_params(
    bencher: Bencher,
    aug: &Augment,
    mut apply: impl FnMut(&AugmentParams, &mut Store, &mut AugmentScratch, &mut [u8]),
) {
    let mut store = Store::new(&spec(), SrcType::F32).unwrap();
    let mut slot = vec![0u8; spec().sample_bytes()];
    let mut scratch = AugmentScratch::new();
    let params: Vec<AugmentParams> = (0..64)
        .map(|i| aug.params_for(0, 0, i, (W, H), (W, H)))
        .collect();
    // Past `auto`'s timed trials first (half of their rows run the slower variant): the
    // samples then measure the variant it kept.
    for p in params.iter().take(stoker::simd::TRIALS) {
        apply(p, &mut store, &mut scratch, &mut slot);
    }
    let mut k = 0;
    bencher.counter(ItemsCount::new(W * H)).bench_local(|| {
        k = (k + 1) % params.len();
        apply(&params[k], &mut store, &mut scratch, &mut slot);
    });
}

/// `aug`'s fused pass from the RGB pixels `px`.
fn fused_on(bencher: Bencher, aug: Augment, px: &[u8]) {
    let src = ImageView::new(W, H, 3, Pixels::U8(px)).unwrap();
    run_params(bencher, &aug, |p, store, scratch, slot| {
        aug.apply_params(p, &src, store, scratch, slot).unwrap()
    });
}

fn fused(bencher: Bencher, aug: Augment) {
    fused_on(bencher, aug, &image());
}

/// The VBMI settings the benches take.
const VBMI: [&str; 3] = ["auto", "on", "off"];

fn keras(vbmi: &str) -> AugmentBuilder {
    AugmentBuilder::keras_default().vbmi(vbmi.parse::<Vbmi>().unwrap())
}

#[divan::bench(args = VBMI, sample_count = 30)]
fn fused_warp(bencher: Bencher, vbmi: &str) {
    fused(bencher, keras(vbmi).build().unwrap());
}

/// `fused_warp` with the AVX2 kernel (the default takes AVX-512 where the CPU has it).
#[divan::bench(sample_count = 30)]
fn fused_warp_avx2(bencher: Bencher) {
    let aug = AugmentBuilder::keras_default()
        .simd_level(SimdLevel::Avx2)
        .build()
        .unwrap();
    fused(bencher, aug);
}

#[divan::bench(sample_count = 30)]
fn fused_warp_no_noise(bencher: Bencher) {
    fused(
        bencher,
        Augment::from_spec("rotation=15,shift=0.1,zoom=0.9:1.1,hflip").unwrap(),
    );
}

/// A fixture photo: its bytes.
fn photo() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/photos-256x144/class-a/photo-00.jpg"),
    )
    .unwrap()
}

/// The RGB pass on the decoded photo (compare with `fused_warp_ycbcr`).
#[divan::bench(args = VBMI, sample_count = 30)]
fn fused_warp_photo(bencher: Bencher, vbmi: &str) {
    let mut decoder = Decoder::new().unwrap();
    let Pixels::U8(px) = decoder.decode(&photo(), 3, None).unwrap().pixels else {
        unreachable!("the decoder gives u8 pixels")
    };
    fused_on(bencher, keras(vbmi).build().unwrap(), px);
}

/// The same pass from the photo's YCbCr planes.
#[divan::bench(args = VBMI, sample_count = 30)]
fn fused_warp_ycbcr(bencher: Bencher, vbmi: &str) {
    let mut decoder = Decoder::new().unwrap();
    let bytes = photo();
    let planes = decoder.decode_ycbcr(&bytes, (W, H)).unwrap().unwrap();
    let aug = keras(vbmi).ycbcr(true).build().unwrap();
    run_params(bencher, &aug, |p, store, scratch, slot| {
        aug.apply_ycbcr_params(p, &planes, store, scratch, slot)
            .unwrap()
    });
}

fn folder() -> PathBuf {
    let made = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/jpeg-256x144");
    if made.is_dir() {
        made
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/photos-256x144")
    }
}

fn run_loader(bencher: Bencher, workers: usize, t: Arc<dyn Transform>) {
    let source = ImageFolder::open(folder()).unwrap();
    let n = source.files().len();
    let mut loader = Loader::builder(source)
        .batch_size(64)
        .shuffle(true)
        .num_workers(workers)
        .prefetch(2)
        .normalize(Normalize::imagenet())
        .transform(t)
        .build()
        .unwrap();
    let mut epoch = 0;
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        for b in loader.epoch(epoch) {
            divan::black_box(b.unwrap());
        }
        epoch += 1;
    });
}

#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn loader_identity(bencher: Bencher, workers: usize) {
    run_loader(bencher, workers, Arc::new(Identity));
}

#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn loader_keras_default(bencher: Bencher, workers: usize) {
    run_loader(bencher, workers, Arc::new(Augment::keras_default()));
}
