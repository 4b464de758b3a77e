//! Instruction counts of the kernels, under valgrind's callgrind (through gungraun): a guard
//! against silent slowdowns of the AVX2 and portable kernels. Counts do not drift from run to
//! run as times do; they change with the code and the toolchain.
//!
//! - `fused_rgb`: `Augment::apply_params` with `Augment::keras_default()` parameters
//!   (rotation, shift, zoom, flip, noise) from a 256×144 RGB u8 image into an f32 NCHW
//!   ImageNet-normalised slot, as `benches/augment.rs` does; four parameter sets in turn.
//! - `fused_ycbcr`: the same with `apply_ycbcr_params`, from the YCbCr planes of the fixture
//!   photo `fixtures/photos-256x144/class-a/photo-00.jpg`.
//! - `store`: `Store::store_image` of the 256×144 RGB u8 image into the same slot.
//! - `decode`: `Decoder::decode` of that photo to RGB: libjpeg-turbo's SIMD (`simd`, AVX2
//!   under valgrind) and its C code (`portable`, `JSIMD_FORCENONE=1`).
//!
//! Each of the others at `SimdLevel::Avx2` and `SimdLevel::Scalar` (`AugmentBuilder::simd_level`,
//! `Store::with_level`). The setup (not counted) builds everything and runs the call once, so
//! that the count is of a call with its buffers in place, as in the loader's steady state.
//!
//! **No AVX-512 here.** Valgrind does not emulate AVX-512 and hides it from CPUID: under it
//! `SimdLevel::detect()` is at most `Avx2`, and the AVX-512 kernels (with their VBMI variants)
//! cannot run. They rely on A/B runs with `tools/ab.sh` instead (docs/performance.md).
//!
//! Run `tools/iai-baseline.sh`: it runs this bench (valgrind and `gungraun-runner` 0.20.0
//! needed: `cargo install gungraun-runner --version 0.20.0 --locked`) and fails when a count
//! grows by more than 10% over `benches/instructions.json`; `tools/iai-baseline.sh --update`
//! rewrites that baseline on purpose. `cargo bench --bench instructions` alone prints the
//! counts and callgrind's files go to `target/gungraun/`.

use std::hint::black_box;
use std::path::Path;

use gungraun::prelude::*;
use gungraun::{Callgrind, EventKind};
use stoker::augment::{Augment, AugmentBuilder, AugmentParams, AugmentScratch};
use stoker::decode::Decoder;
use stoker::output::{SimdLevel, SrcType, Store};
use stoker::rng::SampleRng;
use stoker::simd::Vbmi;
use stoker::{ImageView, Normalize, OutputSpec, Pixels, YCbCrView};

const W: usize = 256;
const H: usize = 144;

fn spec() -> OutputSpec {
    OutputSpec::new(W, H, 3).with_normalize(Normalize::imagenet())
}

/// The synthetic image of `benches/augment.rs`: smooth content with some texture.
fn image() -> Vec<u8> {
    let mut rng = SampleRng::new(1);
    (0..W * H * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = (p % W, p / W);
            ((x + 2 * y + 40 * c) % 200) as u8 + rng.below(40) as u8
        })
        .collect()
}

fn photo() -> Vec<u8> {
    // The manifest is benches/iai/Cargo.toml (the stoker-iai package).
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/photos-256x144/class-a/photo-00.jpg");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A store of `src` pixels into the f32 NCHW ImageNet-normalised spec, at `level` (a panic
/// that names the level where the CPU, as valgrind shows it, lacks it).
fn store_at(level: SimdLevel, src: SrcType) -> Store {
    Store::with_level(&spec(), src, level).unwrap_or_else(|e| panic!("{}: {e}", level.as_str()))
}

/// The fused pass's state: the augmentation at one level, its parameters, the store and slot.
struct Fused {
    aug: Augment,
    params: Vec<AugmentParams>,
    store: Store,
    scratch: AugmentScratch,
    slot: Vec<u8>,
}

impl Fused {
    /// `keras_default()` at `level`, four parameter sets drawn for W×H. VBMI off: only the
    /// AVX-512 kernels have it, and it must never time anything here.
    fn new(level: SimdLevel, ycbcr: bool) -> Fused {
        let aug = AugmentBuilder::keras_default()
            .simd_level(level)
            .vbmi(Vbmi::Off)
            .ycbcr(ycbcr)
            .build()
            .unwrap();
        let params = (0..4)
            .map(|i| aug.params_for(0, 0, i, (W, H), (W, H)))
            .collect();
        Fused {
            aug,
            params,
            store: store_at(level, SrcType::F32),
            scratch: AugmentScratch::new(),
            slot: vec![0u8; spec().sample_bytes()],
        }
    }

    fn rgb(&mut self, px: &[u8]) {
        let src = ImageView::new(W, H, 3, Pixels::U8(px)).unwrap();
        let Fused {
            aug,
            params,
            store,
            scratch,
            slot,
        } = self;
        for p in params.iter() {
            let slot = black_box(&mut slot[..]);
            aug.apply_params(p, &src, store, scratch, slot).unwrap();
        }
    }

    fn ycbcr(&mut self, planes: &YCbCrView<'_>) {
        let Fused {
            aug,
            params,
            store,
            scratch,
            slot,
        } = self;
        for p in params.iter() {
            let slot = black_box(&mut slot[..]);
            aug.apply_ycbcr_params(p, planes, store, scratch, slot)
                .unwrap();
        }
    }
}

fn setup_fused_rgb(level: SimdLevel) -> (Fused, Vec<u8>) {
    let mut f = Fused::new(level, false);
    let px = image();
    f.rgb(&px);
    (f, px)
}

#[library_benchmark]
#[bench::avx2(args = (SimdLevel::Avx2), setup = setup_fused_rgb)]
#[bench::scalar(args = (SimdLevel::Scalar), setup = setup_fused_rgb)]
fn fused_rgb((mut f, px): (Fused, Vec<u8>)) -> (Fused, Vec<u8>) {
    f.rgb(black_box(&px));
    (f, px)
}

fn setup_fused_ycbcr(level: SimdLevel) -> (Fused, YCbCrView<'static>) {
    // The planes borrow the decoder: it lives as long as the process, which runs this one
    // benchmark.
    let decoder = Box::leak(Box::new(Decoder::new().unwrap()));
    let bytes = Box::leak(photo().into_boxed_slice());
    let planes = decoder.decode_ycbcr(bytes, (W, H)).unwrap().unwrap();
    let mut f = Fused::new(level, true);
    f.ycbcr(&planes);
    (f, planes)
}

#[library_benchmark]
#[bench::avx2(args = (SimdLevel::Avx2), setup = setup_fused_ycbcr)]
#[bench::scalar(args = (SimdLevel::Scalar), setup = setup_fused_ycbcr)]
fn fused_ycbcr((mut f, planes): (Fused, YCbCrView<'static>)) -> Fused {
    f.ycbcr(black_box(&planes));
    f
}

fn setup_store(level: SimdLevel) -> (Store, Vec<u8>, Vec<u8>) {
    let mut store = store_at(level, SrcType::U8);
    let px = image();
    let mut slot = vec![0u8; spec().sample_bytes()];
    let src = ImageView::new(W, H, 3, Pixels::U8(&px)).unwrap();
    store.store_image(&src, &mut slot).unwrap();
    (store, px, slot)
}

#[library_benchmark]
#[bench::avx2(args = (SimdLevel::Avx2), setup = setup_store)]
#[bench::scalar(args = (SimdLevel::Scalar), setup = setup_store)]
fn store((mut store, px, mut slot): (Store, Vec<u8>, Vec<u8>)) -> (Store, Vec<u8>, Vec<u8>) {
    let src = ImageView::new(W, H, 3, Pixels::U8(black_box(&px))).unwrap();
    store.store_image(&src, black_box(&mut slot)).unwrap();
    (store, px, slot)
}

fn setup_decode() -> (Decoder, Vec<u8>) {
    let mut decoder = Decoder::new().unwrap();
    let bytes = photo();
    decoder.decode(&bytes, 3, None).unwrap();
    (decoder, bytes)
}

#[library_benchmark]
#[bench::simd(setup = setup_decode)]
#[bench::portable(
    setup = setup_decode,
    config = LibraryBenchmarkConfig::default().env("JSIMD_FORCENONE", "1")
)]
fn decode((mut decoder, bytes): (Decoder, Vec<u8>)) -> (Decoder, Vec<u8>) {
    let img = decoder.decode(black_box(&bytes), 3, None).unwrap();
    assert_eq!((img.width, img.height), (W, H));
    black_box(img.pixels);
    (decoder, bytes)
}

library_benchmark_group!(
    name = kernels,
    benchmarks = [fused_rgb, fused_ycbcr, store, decode]
);

// Instructions only: no cache simulation (quicker, and its estimates are not checked).
main!(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::with_args(["cache-sim=no"]).format([EventKind::Ir])),
    library_benchmark_groups = kernels
);
