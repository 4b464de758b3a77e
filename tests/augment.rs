//! The augmentation engine against exact permutations, a plain reference implementation,
//! noise statistics, and the loader (determinism across workers, recordable parameters,
//! no allocation per batch); the YCbCr plane path in `ycbcr`.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use stoker::augment::{Augment, AugmentParams, AugmentScratch, FillMode, Interpolation};
use stoker::decode::Decoder;
use stoker::output::{SimdLevel, SrcType, Store};
use stoker::rng::SampleRng;
use stoker::simd::Vbmi;
use stoker::source::{ImageFolder, Raw, Source};
use stoker::transform::Identity;
use stoker::{DType, ErrorKind, ImageView, Layout, Loader, Normalize, OutputSpec, Pixels};

#[path = "augment/ycbcr.rs"]
mod ycbcr;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        // SAFETY: `p` came from this allocator, that is from `System`, with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: AllocLayout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `p` came from `System` with layout `l`; the caller's contract holds.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocation test holds this exclusively; every other test shares it, so no test
/// allocates while allocations are counted.
static SERIAL: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

const FILLS: [FillMode; 4] = [
    FillMode::Constant,
    FillMode::Nearest,
    FillMode::Reflect,
    FillMode::Wrap,
];

fn random_u8(rng: &mut SampleRng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.below(256) as u8).collect()
}

fn u8_spec(w: usize, h: usize, c: usize) -> OutputSpec {
    OutputSpec::new(w, h, c)
        .with_dtype(DType::U8)
        .with_layout(Layout::Nhwc)
}

/// Runs the fused pass with `p` into a fresh slot of `spec`.
/// Every vector kernel set this CPU has: each level with the gathers, and the AVX-512 level
/// with the VBMI byte permutes too where the CPU has them.
fn kernel_sets() -> Vec<(SimdLevel, Vbmi)> {
    let mut sets: Vec<(SimdLevel, Vbmi)> = SimdLevel::available()
        .into_iter()
        .filter(|&l| l != SimdLevel::Scalar)
        .map(|l| (l, Vbmi::Off))
        .collect();
    if Vbmi::available() {
        sets.push((SimdLevel::Avx512, Vbmi::On));
    }
    sets
}

fn run(aug: &Augment, p: &AugmentParams, src: &ImageView<'_>, spec: &OutputSpec) -> Vec<u8> {
    let mut store = Store::new(spec, SrcType::F32).unwrap();
    let mut slot = vec![0xa5u8; spec.sample_bytes()];
    aug.apply_params(p, src, &mut store, &mut AugmentScratch::new(), &mut slot)
        .unwrap();
    slot
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

fn fill_aug(fill: FillMode, cval: f32) -> Augment {
    Augment::builder()
        .fill_mode(fill)
        .cval(cval)
        .build()
        .unwrap()
}

/// Where index `i` of an axis of `n` reads under `fill` (None: the constant).
fn ref_index(fill: FillMode, i: i64, n: i64) -> Option<usize> {
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match fill {
        FillMode::Constant => None,
        FillMode::Nearest => Some(if i < 0 { 0 } else { n as usize - 1 }),
        FillMode::Reflect => {
            // ... c b a | a b c d | d c b ...
            let mut j = i;
            while !(0..n).contains(&j) {
                j = if j < 0 { -1 - j } else { 2 * n - 1 - j };
            }
            Some(j as usize)
        }
        FillMode::Wrap => {
            let mut j = i;
            while j < 0 {
                j += n;
            }
            Some((j % n) as usize)
        }
    }
}

#[test]
fn identity_reproduces_the_decoded_image() {
    let _serial = shared();
    // Through the loader, on the fixture JPEGs: u8 exact, f32 within 1e-6.
    let open = || ImageFolder::open("fixtures/photos-256x144").unwrap();
    for (dtype, layout, norm) in [
        (DType::U8, Layout::Nhwc, false),
        (DType::F32, Layout::Nchw, true),
        (DType::F32, Layout::Nhwc, false),
    ] {
        let build = |t: Arc<dyn stoker::transform::Transform>| {
            let mut b = Loader::builder(open())
                .batch_size(16)
                .num_workers(0)
                .dtype(dtype)
                .layout(layout)
                .transform(t);
            if norm {
                b = b.normalize(Normalize::imagenet());
            }
            b.build().unwrap()
        };
        let mut plain = build(Arc::new(Identity));
        let mut aug = build(Arc::new(Augment::default()));
        let a: Vec<_> = plain.epoch(0).map(|b| b.unwrap()).collect();
        let b: Vec<_> = aug.epoch(0).map(|b| b.unwrap()).collect();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            if dtype == DType::U8 {
                assert_eq!(x.as_bytes(), y.as_bytes());
            } else {
                let (x, y) = (f32s(x.as_bytes()), f32s(y.as_bytes()));
                let worst = x
                    .iter()
                    .zip(&y)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                assert!(worst <= 1e-6, "{dtype:?} {layout:?}: {worst}");
            }
        }
    }
}

#[test]
fn quarter_turns_and_flips_are_exact_permutations() {
    let _serial = shared();
    let mut rng = SampleRng::new(1);
    let n = 9; // odd and even sizes both map pixel centres onto pixel centres
    for n in [n, 8] {
        let c = 3;
        let px = random_u8(&mut rng, n * n * c);
        let src = ImageView::new(n, n, c, Pixels::U8(&px)).unwrap();
        let spec = u8_spec(n, n, c);
        let at = |x: usize, y: usize| &px[(y * n + x) * c..(y * n + x + 1) * c];
        // (rotation, hflip, vflip) -> which source pixel output (x, y) shows.
        type Map = fn(usize, usize, usize) -> (usize, usize);
        let cases: [(f64, bool, bool, Map); 6] = [
            // Counter-clockwise: the right edge goes to the top.
            (90.0, false, false, |x, y, n| (n - 1 - y, x)),
            (180.0, false, false, |x, y, n| (n - 1 - x, n - 1 - y)),
            (270.0, false, false, |x, y, n| (y, n - 1 - x)),
            (-90.0, false, false, |x, y, n| (y, n - 1 - x)),
            (0.0, true, false, |x, y, n| (n - 1 - x, y)),
            (0.0, false, true, |x, y, n| (x, n - 1 - y)),
        ];
        for fill in FILLS {
            for interp in [Interpolation::Bilinear, Interpolation::Nearest] {
                let aug = Augment::builder()
                    .fill_mode(fill)
                    .interpolation(interp)
                    .build()
                    .unwrap();
                for (rot, hf, vf, map) in cases {
                    let mut p = AugmentParams::identity((n, n), (n, n));
                    p.rotation = rot;
                    p.hflip = hf;
                    p.vflip = vf;
                    let out = run(&aug, &p, &src, &spec);
                    for y in 0..n {
                        for x in 0..n {
                            let (sx, sy) = map(x, y, n);
                            assert_eq!(
                                &out[(y * n + x) * c..][..c],
                                at(sx, sy),
                                "rot {rot} h {hf} v {vf} at ({x},{y}) {fill:?} {interp:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn integer_shift_fills_the_uncovered_band_for_every_fill_mode() {
    let _serial = shared();
    let mut rng = SampleRng::new(2);
    let (w, h, c) = (13, 7, 3);
    let px = random_u8(&mut rng, w * h * c);
    let src = ImageView::new(w, h, c, Pixels::U8(&px)).unwrap();
    let spec = u8_spec(w, h, c);
    for fill in FILLS {
        let aug = fill_aug(fill, 77.0);
        for (tx, ty) in [(3.0, 0.0), (-4.0, 2.0), (0.0, -3.0), (15.0, 1.0)] {
            let mut p = AugmentParams::identity((w, h), (w, h));
            p.shift = (tx, ty);
            let out = run(&aug, &p, &src, &spec);
            let mut band = 0;
            for y in 0..h {
                for x in 0..w {
                    let sx = ref_index(fill, x as i64 - tx as i64, w as i64);
                    let sy = ref_index(fill, y as i64 - ty as i64, h as i64);
                    let want: Vec<u8> = match (sx, sy) {
                        (Some(sx), Some(sy)) => px[(sy * w + sx) * c..][..c].to_vec(),
                        _ => {
                            band += 1;
                            vec![77; c]
                        }
                    };
                    assert_eq!(
                        &out[(y * w + x) * c..][..c],
                        &want[..],
                        "{fill:?} shift ({tx},{ty}) at ({x},{y})"
                    );
                }
            }
            if fill == FillMode::Constant {
                assert!(band > 0, "the constant band is checked");
            }
        }
    }
}

/// A plain reference: the conventions of the module docs written out step by step, in f64.
fn reference(
    px: &[u8],
    (sw, sh): (usize, usize),
    c: usize,
    p: &AugmentParams,
    fill: FillMode,
    cval: f64,
) -> Vec<f64> {
    let (w, h) = p.out_size;
    let mut out = vec![0.0; w * h * c];
    let th = p.rotation.to_radians();
    let [cx0, cy0, cw, ch] = p.crop;
    for y in 0..h {
        for x in 0..w {
            // Output pixel centre, relative to the output centre.
            let mut u = x as f64 + 0.5 - w as f64 / 2.0;
            let mut v = y as f64 + 0.5 - h as f64 / 2.0;
            // Undo the shift.
            u -= p.shift.0;
            v -= p.shift.1;
            // Undo a counter-clockwise rotation (y points down).
            let (ru, rv) = (u * th.cos() - v * th.sin(), u * th.sin() + v * th.cos());
            // Undo the zoom, then the flips.
            let (mut zu, mut zv) = (ru * p.zoom.0, rv * p.zoom.1);
            if p.hflip {
                zu = -zu;
            }
            if p.vflip {
                zv = -zv;
            }
            // Into the crop, in source pixel indices.
            let sx = cx0 + cw / 2.0 + zu * cw / w as f64 - 0.5;
            let sy = cy0 + ch / 2.0 + zv * ch / h as f64 - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            for k in 0..c {
                let get = |i: f64, j: f64| match (
                    ref_index(fill, i as i64, sw as i64),
                    ref_index(fill, j as i64, sh as i64),
                ) {
                    (Some(i), Some(j)) => px[(j * sw + i) * c + k] as f64,
                    _ => cval,
                };
                let top = get(x0, y0) * (1.0 - fx) + get(x0 + 1.0, y0) * fx;
                let bot = get(x0, y0 + 1.0) * (1.0 - fx) + get(x0 + 1.0, y0 + 1.0) * fx;
                out[(y * w + x) * c + k] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    out
}

#[test]
fn bilinear_matches_the_reference_on_random_parameters() {
    let _serial = shared();
    let mut rng = SampleRng::new(3);
    let mut checked = 0;
    for case in 0..48 {
        let c = if case % 3 == 0 { 1 } else { 3 };
        let (sw, sh) = (20 + rng.below(40) as usize, 10 + rng.below(30) as usize);
        let (w, h) = (8 + rng.below(30) as usize, 6 + rng.below(20) as usize);
        let px = random_u8(&mut rng, sw * sh * c);
        let src = ImageView::new(sw, sh, c, Pixels::U8(&px)).unwrap();
        let fill = FILLS[case % 4];
        let mut b = Augment::builder()
            .rotation_range(180.0)
            .width_shift_range(0.3)
            .height_shift_range(0.3)
            .zoom_range(0.6, 1.5)
            .horizontal_flip(true)
            .vertical_flip(true)
            .fill_mode(fill)
            .cval(31.0);
        if case % 2 == 1 {
            b = b.random_resized_crop((0.2, 1.0), (0.5, 2.0));
        }
        let aug = b.build().unwrap();
        let p = aug.params_for(9, 0, case, (sw, sh), (w, h));
        let out = run(&aug, &p, &src, &u8_spec(w, h, c));
        let want = reference(&px, (sw, sh), c, &p, fill, 31.0);
        for (i, (&o, &r)) in out.iter().zip(&want).enumerate() {
            assert!(
                (o as f64 - r).abs() <= 1.0,
                "case {case} value {i}: {o} vs {r:.3} ({p})"
            );
            checked += 1;
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn f32_sources_and_float_outputs_match_the_reference() {
    let _serial = shared();
    let mut rng = SampleRng::new(4);
    let (sw, sh, c) = (31, 17, 3);
    let px = random_u8(&mut rng, sw * sh * c);
    let fx: Vec<f32> = px.iter().map(|&v| v as f32).collect();
    let aug = Augment::builder()
        .rotation_range(30.0)
        .zoom_range(0.8, 1.2)
        .fill_mode(FillMode::Reflect)
        .build()
        .unwrap();
    let (w, h) = (24, 12);
    let p = aug.params_for(1, 1, 1, (sw, sh), (w, h));
    let want = reference(&px, (sw, sh), c, &p, FillMode::Reflect, 0.0);
    // f32 source, f32 NHWC output without normalisation: the values themselves.
    let spec = OutputSpec::new(w, h, c).with_layout(Layout::Nhwc);
    let out = f32s(&run(
        &aug,
        &p,
        &ImageView::new(sw, sh, c, Pixels::F32(&fx)).unwrap(),
        &spec,
    ));
    for (o, r) in out.iter().zip(&want) {
        assert!((*o as f64 - r).abs() < 1e-3, "{o} vs {r}");
    }
    // u8 source, f32 output: [0, 1].
    let out = f32s(&run(
        &aug,
        &p,
        &ImageView::new(sw, sh, c, Pixels::U8(&px)).unwrap(),
        &spec,
    ));
    for (o, r) in out.iter().zip(&want) {
        assert!((*o as f64 - r / 255.0).abs() < 1e-5, "{o} vs {r}");
    }
}

#[test]
fn gaussian_noise_has_the_requested_mean_and_std() {
    let _serial = shared();
    let (w, h, c) = (256, 256, 3);
    let px = vec![128u8; w * h * c];
    let src = ImageView::new(w, h, c, Pixels::U8(&px)).unwrap();
    let spec = OutputSpec::new(w, h, c);
    for (sigma, seed) in [(0.03f32, 5u64), (0.1, 6)] {
        let aug = Augment::builder().noise_std(sigma).build().unwrap();
        let p = aug.params_for(seed, 0, 0, (w, h), (w, h));
        let out = f32s(&run(&aug, &p, &src, &spec));
        let n = out.len() as f64;
        let base = 128.0 / 255.0;
        let mean = out.iter().map(|&v| v as f64 - base).sum::<f64>() / n;
        let var = out
            .iter()
            .map(|&v| (v as f64 - base - mean).powi(2))
            .sum::<f64>()
            / n;
        // 196608 values: the standard error of the mean is sigma / 443, of the std 0.16%.
        assert!(
            mean.abs() < sigma as f64 * 0.01,
            "mean {mean} for sigma {sigma}"
        );
        let sd = var.sqrt();
        assert!(
            (sd / sigma as f64 - 1.0).abs() < 0.01,
            "std {sd} for sigma {sigma}"
        );
        // Gaussian shape: about 68.3% within one sigma, 95.4% within two.
        let within = |k: f64| {
            out.iter()
                .filter(|&&v| (v as f64 - base).abs() < k * sigma as f64)
                .count() as f64
                / n
        };
        assert!((within(1.0) - 0.6827).abs() < 0.01, "{}", within(1.0));
        assert!((within(2.0) - 0.9545).abs() < 0.01, "{}", within(2.0));
        // Different samples get different noise.
        let q = aug.params_for(seed, 0, 1, (w, h), (w, h));
        assert_ne!(out, f32s(&run(&aug, &q, &src, &spec)));
    }
}

#[test]
fn salt_pepper_brightness_and_contrast() {
    let _serial = shared();
    let (w, h, c) = (128, 128, 3);
    let px = vec![100u8; w * h * c];
    let src = ImageView::new(w, h, c, Pixels::U8(&px)).unwrap();
    let spec = u8_spec(w, h, c);
    let aug = Augment::builder().salt_pepper(0.1).build().unwrap();
    let out = run(&aug, &aug.params_for(0, 0, 0, (w, h), (w, h)), &src, &spec);
    let n = out.len() as f64;
    let salt = out.iter().filter(|&&v| v == 255).count() as f64 / n;
    let pepper = out.iter().filter(|&&v| v == 0).count() as f64 / n;
    assert!((salt - 0.05).abs() < 0.005, "salt {salt}");
    assert!((pepper - 0.05).abs() < 0.005, "pepper {pepper}");
    assert!(out.iter().all(|&v| v == 0 || v == 100 || v == 255));

    // Contrast 0.5 about 127.5, then brightness 1.2: (100 - 127.5) * 0.5 + 127.5 = 113.75,
    // * 1.2 = 136.5 -> 136 (ties to even).
    let aug = Augment::default();
    let mut p = AugmentParams::identity((w, h), (w, h));
    p.contrast = 0.5;
    p.brightness = 1.2;
    let out = run(&aug, &p, &src, &spec);
    assert!(out.iter().all(|&v| v == 136 || v == 137), "{}", out[0]);
    let drawn = Augment::builder()
        .brightness_range(0.5, 0.6)
        .contrast_range(1.5, 2.0)
        .build()
        .unwrap()
        .params_for(0, 0, 0, (w, h), (w, h));
    assert!((0.5..=0.6).contains(&drawn.brightness) && (1.5..=2.0).contains(&drawn.contrast));
}

fn collect(workers: usize, aug: Arc<Augment>, epoch: u64) -> Vec<(Vec<u8>, Vec<usize>)> {
    let mut l = Loader::builder(ImageFolder::open("fixtures/photos-256x144").unwrap())
        .batch_size(5)
        .shuffle(true)
        .seed(11)
        .num_workers(workers)
        .dtype(DType::F16)
        .normalize(Normalize::imagenet())
        .size(160, 120)
        .transform(aug)
        .build()
        .unwrap();
    l.epoch(epoch)
        .map(|b| {
            let b = b.unwrap();
            (b.as_bytes().to_vec(), b.indices().to_vec())
        })
        .collect()
}

#[test]
fn same_seed_same_batches_for_any_worker_count_and_epochs_differ() {
    let _serial = shared();
    let aug = Arc::new(
        Augment::from_spec("rotation=20,shift=0.1,zoom=0.8:1.2,hflip,noise=0.03,crop=0.3:1")
            .unwrap(),
    );
    let a = collect(0, Arc::clone(&aug), 0);
    assert_eq!(a, collect(1, Arc::clone(&aug), 0));
    assert_eq!(a, collect(2, Arc::clone(&aug), 0));
    let b = collect(2, Arc::clone(&aug), 1);
    assert_ne!(a, b);
    for i in 0..8 {
        assert_ne!(
            aug.params_for(11, 0, i, (256, 144), (160, 120)),
            aug.params_for(11, 1, i, (256, 144), (160, 120))
        );
    }
}

/// The VBMI setting changes the time, never a bit: `auto` (which times both variants on its
/// first samples, in whichever worker reaches them), `on` and `off` give the same batches, RGB
/// and YCbCr, with 0 and 2 workers; `auto` has decided once an epoch has run.
#[test]
fn vbmi_auto_on_and_off_give_the_same_batches() {
    let _serial = shared();
    for spec in ["default", "default,ycbcr"] {
        let make = |v: Vbmi| {
            let b = stoker::augment::AugmentBuilder::keras_default().vbmi(v);
            let b = if spec.ends_with("ycbcr") {
                b.ycbcr(true)
            } else {
                b
            };
            Arc::new(b.build().unwrap())
        };
        let off = collect(2, make(Vbmi::Off), 0);
        assert_eq!(off, collect(0, make(Vbmi::On), 0), "{spec}");
        for workers in [0, 2] {
            let auto = make(Vbmi::Auto);
            assert_eq!(auto.vbmi_choice().0.is_none(), Vbmi::available());
            assert_eq!(
                off,
                collect(workers, Arc::clone(&auto), 0),
                "{spec}, {workers}"
            );
            let (rgb, ycc) = auto.vbmi_choice();
            let ran = if spec.ends_with("ycbcr") { ycc } else { rgb };
            assert!(ran.is_some(), "{spec}: undecided after an epoch");
            if !Vbmi::available() {
                assert_eq!(ran, Some(false));
            }
        }
    }
}

#[test]
fn params_for_replays_what_the_loader_did() {
    let _serial = shared();
    let aug = Arc::new(Augment::keras_default());
    let folder = ImageFolder::open("fixtures/photos-256x144").unwrap();
    let mut l = Loader::builder(ImageFolder::open("fixtures/photos-256x144").unwrap())
        .batch_size(4)
        .shuffle(true)
        .seed(21)
        .num_workers(2)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .size(100, 60)
        .transform(aug.clone())
        .build()
        .unwrap();
    let batch = l.epoch(3).next().unwrap().unwrap();
    let spec = l.spec().clone();
    let mut dec = Decoder::new().unwrap();
    let mut buf = Vec::new();
    for (k, &index) in batch.indices().iter().enumerate() {
        let item = folder.get(index, &mut buf).unwrap();
        let Raw::Encoded(bytes) = item.raw else {
            panic!("jpeg folder gives bytes")
        };
        let img = dec.decode_reduced(bytes, 3, (100, 60)).unwrap();
        // 256x144 at 1/2 is 128x72, still >= 100x60: decoded reduced, not resized.
        assert_eq!((img.width, img.height), (128, 72));
        let p = aug.params_for(21, 3, index, (128, 72), (100, 60));
        assert!(!p.is_identity());
        let want = run(&aug, &p, &img, &spec);
        let n = spec.sample_bytes();
        assert_eq!(
            &batch.as_bytes()[k * n..(k + 1) * n],
            &want[..],
            "sample {index}"
        );
    }
}

#[test]
fn bad_settings_and_mismatches_are_errors() {
    let _serial = shared();
    let bad = [
        Augment::builder().rotation_range(-1.0),
        Augment::builder().rotation_range(f64::NAN),
        Augment::builder().width_shift_range(1.5),
        Augment::builder().height_shift_range(-0.1),
        Augment::builder().zoom_range(0.0, 1.0),
        Augment::builder().zoom_range(1.1, 0.9),
        Augment::builder().noise_std(-0.1),
        Augment::builder().noise_std(f32::INFINITY),
        Augment::builder().salt_pepper(1.5),
        Augment::builder().brightness_range(0.0, 1.0),
        Augment::builder().contrast_range(2.0, 1.0),
        Augment::builder().cval(f32::NAN),
        Augment::builder().random_resized_crop((0.0, 1.0), (0.75, 1.33)),
        Augment::builder().random_resized_crop((0.5, 1.5), (0.75, 1.33)),
        Augment::builder().random_resized_crop((0.5, 1.0), (1.33, 0.75)),
    ];
    for b in bad {
        let e = b.clone().build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{b:?}");
        assert_eq!(e.message(), e.message().to_lowercase());
    }
    for spec in [
        "rotation",
        "zoom=1:x",
        "fill=mirror",
        "brightness=2",
        "what",
    ] {
        assert!(Augment::from_spec(spec).is_err(), "{spec}");
    }
    // Wrong sizes, channels or store type: errors, and nothing written.
    let aug = Augment::keras_default();
    let px = vec![9u8; 8 * 4 * 3];
    let src = ImageView::new(8, 4, 3, Pixels::U8(&px)).unwrap();
    let spec = u8_spec(8, 4, 3);
    let mut scratch = AugmentScratch::new();
    let mut slot = vec![0u8; spec.sample_bytes()];
    let good = aug.params_for(0, 0, 0, (8, 4), (8, 4));
    let mut st_u8 = Store::new(&spec, SrcType::U8).unwrap();
    assert!(
        aug.apply_params(&good, &src, &mut st_u8, &mut scratch, &mut slot)
            .is_err()
    );
    let mut st = Store::new(&spec, SrcType::F32).unwrap();
    let wrong = aug.params_for(0, 0, 0, (9, 4), (8, 4));
    assert!(
        aug.apply_params(&wrong, &src, &mut st, &mut scratch, &mut slot)
            .is_err()
    );
    let gray = ImageView::new(8, 12, 1, Pixels::U8(&px)).unwrap();
    let p = aug.params_for(0, 0, 0, (8, 12), (8, 4));
    assert!(
        aug.apply_params(&p, &gray, &mut st, &mut scratch, &mut slot)
            .is_err()
    );
    assert!(slot.iter().all(|&v| v == 0));
    assert!(
        aug.apply_params(&good, &src, &mut st, &mut scratch, &mut slot)
            .is_ok()
    );
}

#[test]
fn random_resized_crop_stays_inside_the_image_and_covers_its_scale() {
    let _serial = shared();
    let aug = Augment::builder()
        .random_resized_crop((0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0))
        .build()
        .unwrap();
    let mut small = 0;
    for i in 0..500 {
        let p = aug.params_for(0, 0, i, (320, 200), (64, 64));
        let [x, y, w, h] = p.crop;
        assert!(
            x >= 0.0 && y >= 0.0 && x + w <= 320.0 && y + h <= 200.0,
            "{p}"
        );
        let area = w * h / (320.0 * 200.0);
        assert!((0.07..=1.0).contains(&area), "{area}");
        small += (area < 0.5) as usize;
    }
    assert!(small > 100, "{small}");
}

#[test]
fn steady_state_augmentation_allocates_nothing_per_batch() {
    let _serial = SERIAL.write().unwrap_or_else(|e| e.into_inner());
    // The pixel path and the YCbCr plane path.
    for spec in ["default", "default,ycbcr"] {
        let mut l = Loader::builder(ImageFolder::open("fixtures/photos-256x144").unwrap())
            .batch_size(4)
            .shuffle(true)
            .num_workers(1)
            .dtype(DType::F32)
            .normalize(Normalize::imagenet())
            .transform(Arc::new(Augment::from_spec(spec).unwrap()))
            .build()
            .unwrap();
        let mut per = Vec::new();
        for e in 0..5 {
            let mut it = l.epoch(e);
            drop(it.next().unwrap().unwrap());
            let before = ALLOCS.load(Ordering::Relaxed);
            for b in it.by_ref() {
                drop(b.unwrap());
            }
            per.push(ALLOCS.load(Ordering::Relaxed) - before);
        }
        assert_eq!(per[2..], [0, 0, 0], "{spec}: {per:?}");
    }
}

#[test]
fn simd_loop_gives_the_bits_of_the_portable_loop() {
    let _serial = shared();
    let mut rng = SampleRng::new(8);
    let mut compared = 0;
    // Every kernel set this CPU has (AVX2, AVX-512 with gathers and with VBMI permutes here),
    // each against the portable loops.
    let sets = kernel_sets();
    for case in 0..60 {
        let (sw, sh) = (9 + rng.below(80) as usize, 5 + rng.below(40) as usize);
        let (w, h) = (1 + rng.below(70) as usize, 1 + rng.below(20) as usize);
        let px = random_u8(&mut rng, sw * sh * 3);
        let src = ImageView::new(sw, sh, 3, Pixels::U8(&px)).unwrap();
        let fill = FILLS[case % 4];
        // One case in three is mild (most 16-pixel blocks wholly inside the image).
        let mild = case % 3 == 1;
        let make = |(level, vbmi): (SimdLevel, Vbmi)| {
            Augment::builder()
                .rotation_range(if mild { 5.0 } else { 40.0 })
                .width_shift_range(if mild { 0.02 } else { 0.2 })
                .zoom_range(if mild { 0.95 } else { 0.5 }, if mild { 1.05 } else { 1.6 })
                .horizontal_flip(true)
                .fill_mode(fill)
                .cval(200.0)
                .noise_std(0.05)
                .salt_pepper(if case % 2 == 0 { 0.02 } else { 0.0 })
                .brightness_range(0.8, 1.2)
                .contrast_range(0.7, 1.3)
                .simd_level(level)
                .vbmi(vbmi)
                .build()
                .unwrap()
        };
        let portable = make((SimdLevel::Scalar, Vbmi::Off));
        let p = portable.params_for(4, 0, case, (sw, sh), (w, h));
        // Every dtype and layout: NCHW in every dtype and NHWC in f32 and u8 take the fused
        // kernel, f16 and bf16 NHWC the row loops.
        for (dtype, layout) in [
            (DType::F32, Layout::Nchw),
            (DType::F16, Layout::Nchw),
            (DType::BF16, Layout::Nchw),
            (DType::U8, Layout::Nchw),
            (DType::F32, Layout::Nhwc),
            (DType::U8, Layout::Nhwc),
            (DType::F16, Layout::Nhwc),
            (DType::BF16, Layout::Nhwc),
        ] {
            let mut spec = OutputSpec::new(w, h, 3)
                .with_dtype(dtype)
                .with_layout(layout);
            if case % 3 == 0 && dtype != DType::U8 {
                spec = spec.with_normalize(Normalize::imagenet());
            }
            // The portable warp and noise loops, and the scalar store.
            let mut store = Store::with_level(&spec, SrcType::F32, SimdLevel::Scalar).unwrap();
            let mut b = vec![0x5au8; spec.sample_bytes()];
            portable
                .apply_params(&p, &src, &mut store, &mut AugmentScratch::new(), &mut b)
                .unwrap();
            for &set in &sets {
                let a = run(&make(set), &p, &src, &spec);
                assert_eq!(a, b, "case {case}, {set:?} {dtype:?} {layout:?}: {p}");
                compared += a.len();
            }
        }
    }
    assert!(compared > 50_000);
}
