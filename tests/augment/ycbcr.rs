//! The YCbCr path (`Augment::builder().ycbcr(true)`): JPEGs decoded to their planes and
//! sampled plane by plane. Every kernel set gives the portable loop's bits; the output stays
//! within a bound of the RGB path's; the loader uses it for YCbCr JPEGs only, deterministically,
//! with the decode policies of the RGB path.

use std::sync::Arc;

use super::{kernel_sets, shared};

use stoker::augment::{Augment, AugmentParams, AugmentScratch, FillMode};
use stoker::decode::{DecodePolicy, Decoder, PLANE_PAD};
use stoker::image::{Plane, YCbCrView};
use stoker::output::{SimdLevel, SrcType, Store};
use stoker::rng::SampleRng;
use stoker::simd::Vbmi;
use stoker::source::{ImageFolder, Source};
use stoker::{DType, ErrorKind, ImageView, Layout, Loader, Normalize, OutputSpec, Pixels};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/photos-256x144");

fn photos() -> Vec<Vec<u8>> {
    let mut files: Vec<_> = walk(std::path::Path::new(FIXTURES));
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|e| e == "jpg") {
            out.push(p);
        }
    }
    out
}

/// Random planes: luma `w`x`h` with `subsampling`, strides a little wider than the planes,
/// and (when `pad`) the decoder's padding after the data, else none at all.
struct Planes {
    data: [Vec<u8>; 3],
    sizes: [(usize, usize, usize); 3],
    subsampling: (usize, usize),
}

impl Planes {
    fn random(
        rng: &mut SampleRng,
        (w, h): (usize, usize),
        subsampling: (usize, usize),
        pad: bool,
    ) -> Self {
        let (hs, vs) = subsampling;
        let sizes = [
            (w, h),
            (w.div_ceil(hs), h.div_ceil(vs)),
            (w.div_ceil(hs), h.div_ceil(vs)),
        ]
        .map(|(pw, ph)| (pw, ph, pw + rng.below(3) as usize));
        // Smooth content with texture, so that interpolation errors would show.
        let data = sizes.map(|(pw, ph, stride)| {
            let n = (ph - 1) * stride + pw + if pad { PLANE_PAD } else { 0 };
            let (a, b) = (rng.below(7) as usize, rng.below(5) as usize);
            (0..n)
                .map(|i| {
                    let (x, y) = (i % stride, i / stride);
                    ((x * a + y * b) % 200) as u8 + rng.below(56) as u8
                })
                .collect()
        });
        Planes {
            data,
            sizes,
            subsampling,
        }
    }

    fn view(&self) -> YCbCrView<'_> {
        let p: [Plane<'_>; 3] = std::array::from_fn(|i| {
            let (w, h, s) = self.sizes[i];
            Plane::new(&self.data[i], w, h, s).unwrap()
        });
        YCbCrView::new(p[0], p[1], p[2], self.subsampling).unwrap()
    }
}

fn ycbcr_run(
    aug: &Augment,
    p: &AugmentParams,
    v: &YCbCrView<'_>,
    spec: &OutputSpec,
    level: SimdLevel,
) -> Vec<u8> {
    let mut store = Store::with_level(spec, SrcType::F32, level).unwrap();
    let mut slot = vec![0x5au8; spec.sample_bytes()];
    aug.apply_ycbcr_params(p, v, &mut store, &mut AugmentScratch::new(), &mut slot)
        .unwrap();
    slot
}

const SUBSAMPLINGS: [(usize, usize); 6] = [(1, 1), (2, 1), (2, 2), (1, 2), (4, 1), (1, 4)];

#[test]
fn vector_loops_give_the_bits_of_the_portable_loop() {
    let _serial = shared();
    let mut rng = SampleRng::new(21);
    let sets = kernel_sets();
    let fills = [
        FillMode::Constant,
        FillMode::Nearest,
        FillMode::Reflect,
        FillMode::Wrap,
    ];
    let mut compared = 0;
    for case in 0..72 {
        // Tiny planes (a 1-sample chroma plane), odd sizes, and the fixtures' size.
        let (sw, sh) = match case % 6 {
            0 => (1 + rng.below(4) as usize, 1 + rng.below(4) as usize),
            5 => (256, 144),
            _ => (5 + rng.below(90) as usize, 3 + rng.below(50) as usize),
        };
        let (w, h) = (1 + rng.below(70) as usize, 1 + rng.below(24) as usize);
        let planes = Planes::random(&mut rng, (sw, sh), SUBSAMPLINGS[case % 6], case % 5 != 0);
        let view = planes.view();
        let fill = fills[case % 4];
        // One case in three is mild (most blocks wholly inside the planes), one wild (wide
        // zooms, quarter turns and beyond).
        let (rot, zoom, shift) = match case % 3 {
            0 => (5.0, (0.95, 1.05), 0.02),
            1 => (40.0, (0.5, 1.6), 0.2),
            _ => (180.0, (0.2, 4.0), 0.45),
        };
        let make = |(level, vbmi): (SimdLevel, Vbmi)| {
            Augment::builder()
                .rotation_range(rot)
                .width_shift_range(shift)
                .height_shift_range(shift)
                .zoom_range(zoom.0, zoom.1)
                .horizontal_flip(true)
                .vertical_flip(case % 7 == 0)
                .fill_mode(fill)
                .cval(if case % 2 == 0 { 200.4 } else { 0.0 })
                .noise_std(if case % 3 == 0 { 0.0 } else { 0.05 })
                .salt_pepper(if case % 4 == 1 { 0.02 } else { 0.0 })
                .brightness_range(0.8, 1.2)
                .contrast_range(0.7, 1.3)
                .ycbcr(true)
                .simd_level(level)
                .vbmi(vbmi)
                .build()
                .unwrap()
        };
        let portable = make((SimdLevel::Scalar, Vbmi::Off));
        let p = portable.params_for(4, 0, case, (sw, sh), (w, h));
        for (dtype, layout) in [
            (DType::F32, Layout::Nchw),
            (DType::F16, Layout::Nchw),
            (DType::BF16, Layout::Nchw),
            (DType::U8, Layout::Nchw),
            (DType::F32, Layout::Nhwc),
            (DType::U8, Layout::Nhwc),
            (DType::BF16, Layout::Nhwc),
        ] {
            let mut spec = OutputSpec::new(w, h, 3)
                .with_dtype(dtype)
                .with_layout(layout);
            if case % 3 == 0 && dtype != DType::U8 {
                spec = spec.with_normalize(Normalize::imagenet());
            }
            let want = ycbcr_run(&portable, &p, &view, &spec, SimdLevel::Scalar);
            for &(level, vbmi) in &sets {
                let got = ycbcr_run(&make((level, vbmi)), &p, &view, &spec, level);
                let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
                assert!(
                    bad.is_empty(),
                    "case {case}, {level:?} {vbmi:?} {dtype:?} {layout:?} {fill:?} {:?}, {} of {} bytes differ, first at {}: {p}",
                    planes.subsampling,
                    bad.len(),
                    got.len(),
                    bad[0]
                );
                compared += got.len();
            }
        }
    }
    assert!(sets.is_empty() || compared > 100_000, "{compared}");
}

/// Mean and largest absolute difference of two u8 images, and the fraction of values more
/// than `far` apart.
fn diff(a: &[u8], b: &[u8], far: u8) -> (f64, u8, f64) {
    assert_eq!(a.len(), b.len());
    let d: Vec<u8> = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y)).collect();
    let mean = d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64;
    let over = d.iter().filter(|&&v| v > far).count() as f64 / d.len() as f64;
    (mean, *d.iter().max().unwrap(), over)
}

fn u8_spec(w: usize, h: usize) -> OutputSpec {
    OutputSpec::new(w, h, 3)
        .with_dtype(DType::U8)
        .with_layout(Layout::Nhwc)
}

#[test]
fn identity_is_libjpeg_rgb_decode_within_rounding() {
    let _serial = shared();
    let spec = u8_spec(256, 144);
    let a = Augment::builder().ycbcr(true).build().unwrap();
    let mut worst = (0.0f64, 0u8);
    for bytes in photos() {
        let mut d = Decoder::new().unwrap();
        let rgb = match d.decode(&bytes, 3, None).unwrap().pixels {
            Pixels::U8(p) => p.to_vec(),
            Pixels::F32(_) => unreachable!(),
        };
        let view = d.decode_ycbcr(&bytes, (256, 144)).unwrap().unwrap();
        let p = AugmentParams::identity((256, 144), (256, 144));
        let got = ycbcr_run(&a, &p, &view, &spec, SimdLevel::detect());
        let (mean, max, _) = diff(&got, &rgb, 2);
        worst = (worst.0.max(mean), worst.1.max(max));
    }
    // At the identity the chroma samples are the planes' own, upsampled with the triangle
    // filter of libjpeg-turbo's fancy upsampling; what is left is its rounding (to 8 bits
    // after upsampling, and its integer colour conversion) against this path's exact values.
    println!("identity: worst mean {:.3}, largest {}", worst.0, worst.1);
    assert!(worst.0 < 0.5 && worst.1 <= 2, "{worst:?}");
}

#[test]
fn warped_output_stays_near_the_rgb_path() {
    let _serial = shared();
    let spec = u8_spec(256, 144);
    let spec_str = "rotation=15,shift=0.1,zoom=0.9:1.1,hflip";
    let rgb_aug = Augment::from_spec(spec_str).unwrap();
    let ycc_aug = Augment::from_spec(&format!("{spec_str},ycbcr")).unwrap();
    let (mut means, mut far) = (Vec::new(), Vec::new());
    for (i, bytes) in photos().iter().enumerate() {
        let mut d = Decoder::new().unwrap();
        let rgb = match d.decode(bytes, 3, None).unwrap().pixels {
            Pixels::U8(p) => p.to_vec(),
            Pixels::F32(_) => unreachable!(),
        };
        let src = ImageView::new(256, 144, 3, Pixels::U8(&rgb)).unwrap();
        let p = rgb_aug.params_for(3, 0, i, (256, 144), (256, 144));
        let mut store = Store::new(&spec, SrcType::F32).unwrap();
        let mut want = vec![0u8; spec.sample_bytes()];
        rgb_aug
            .apply_params(&p, &src, &mut store, &mut AugmentScratch::new(), &mut want)
            .unwrap();
        let view = d.decode_ycbcr(bytes, (256, 144)).unwrap().unwrap();
        let got = ycbcr_run(&ycc_aug, &p, &view, &spec, SimdLevel::detect());
        let (mean, _, over) = diff(&got, &want, 8);
        means.push(mean);
        far.push(over);
    }
    let mean = means.iter().sum::<f64>() / means.len() as f64;
    let worst_far = far.iter().cloned().fold(0.0, f64::max);
    println!("warped: mean {mean:.3}, worst fraction over 8 levels {worst_far:.5}");
    // About one level on average (chroma interpolated once instead of twice, 1/64-sample
    // weights, no rounding to 8 bits in between); more than 8 levels apart only at sharp
    // colour edges.
    assert!(mean < 1.0, "{means:?}");
    assert!(worst_far < 0.01, "{far:?}");
}

/// A folder of the fixtures plus a PNG (class-a), a gray JPEG (class-b), a CMYK and a YCCK
/// JPEG (class-d) and, when `cut`, a truncated JPEG (class-c).
fn mixed_folder(cut: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for class in ["class-a", "class-b", "class-c", "class-d"] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for e in std::fs::read_dir(format!("{FIXTURES}/{class}")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.path().join(class).join(p.file_name().unwrap())).unwrap();
        }
    }
    let bytes = std::fs::read(format!("{FIXTURES}/class-a/photo-00.jpg")).unwrap();
    let mut d = Decoder::new().unwrap();
    let Pixels::U8(rgb) = d.decode(&bytes, 3, None).unwrap().pixels else {
        unreachable!()
    };
    let rgb = rgb.to_vec();
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        256,
        144,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    std::fs::write(dir.path().join("class-a/zz-png.png"), png).unwrap();
    let gray: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
    let image = turbojpeg::Image {
        pixels: &gray[..],
        width: 256,
        pitch: 256,
        height: 144,
        format: turbojpeg::PixelFormat::GRAY,
    };
    let jpeg = turbojpeg::compress(image, 90, turbojpeg::Subsamp::Gray).unwrap();
    std::fs::write(dir.path().join("class-b/zz-gray.jpg"), &jpeg[..]).unwrap();
    for name in ["cmyk.jpg", "ycck.jpg"] {
        let to = dir.path().join(format!("class-d/zz-{name}"));
        std::fs::copy(format!("fixtures/decode/{name}"), to).unwrap();
    }
    if cut {
        std::fs::write(
            dir.path().join("class-c/zz-cut.jpg"),
            &bytes[..bytes.len() * 2 / 3],
        )
        .unwrap();
    }
    dir
}

fn open(dir: &tempfile::TempDir) -> ImageFolder {
    ImageFolder::open(dir.path()).unwrap()
}

/// Every sample of epoch 0, by index: its bytes in a u8 NHWC batch.
fn by_index(loader: &mut Loader<ImageFolder>) -> Vec<Vec<u8>> {
    let n = loader.source().len();
    let mut out = vec![Vec::new(); n];
    for b in loader.epoch(0) {
        let b = b.unwrap();
        let per = b.as_bytes().len() / b.len();
        for (k, &i) in b.indices().iter().enumerate() {
            out[i] = b.as_bytes()[k * per..(k + 1) * per].to_vec();
        }
    }
    out
}

fn loader(folder: ImageFolder, spec: &str, workers: usize) -> Loader<ImageFolder> {
    Loader::builder(folder)
        .batch_size(8)
        .seed(5)
        .num_workers(workers)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .transform(Arc::new(Augment::from_spec(spec).unwrap()))
        .build()
        .unwrap()
}

#[test]
fn the_loader_takes_planes_for_ycbcr_jpegs_and_pixels_for_the_rest() {
    let _serial = shared();
    let spec = "rotation=15,shift=0.1,zoom=0.9:1.1,hflip,noise=0.03";
    let dir = mixed_folder(false);
    let folder = open(&dir);
    let names: Vec<String> = (0..folder.len())
        .map(|i| {
            folder
                .path(i)
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let planes = by_index(&mut loader(folder, &format!("{spec},ycbcr"), 0));
    // The same batches whatever the number of workers.
    for workers in [1, 2] {
        let again = by_index(&mut loader(open(&dir), &format!("{spec},ycbcr"), workers));
        assert!(again == planes, "{workers} workers");
    }
    let pixels = by_index(&mut loader(open(&dir), spec, 2));
    for (i, name) in names.iter().enumerate() {
        let (mean, _, _) = diff(&planes[i], &pixels[i], 255);
        if name.starts_with("zz-") {
            // The PNG, the gray, CMYK and YCCK JPEGs go through the pixel path: the same bits.
            assert_eq!(planes[i], pixels[i], "{name}");
        } else {
            // The same parameters, sampled from the planes: close, not equal.
            assert!(planes[i] != pixels[i] && mean < 1.5, "{name}: {mean}");
        }
    }
}

#[test]
fn a_damaged_jpeg_follows_the_decode_policy_on_the_plane_path() {
    let _serial = shared();
    let dir = mixed_folder(true);
    let folder = open(&dir);
    let cut = (0..folder.len())
        .find(|&i| folder.path(i).unwrap().ends_with("class-c/zz-cut.jpg"))
        .unwrap();
    let mut l = loader(folder, "hflip,ycbcr", 2);
    let e = l.epoch(0).find_map(|b| b.err()).unwrap();
    assert_eq!((e.kind(), e.index()), (ErrorKind::Decode, Some(cut)));
    assert!(e.path().unwrap().ends_with("zz-cut.jpg"), "{e}");
    let mut lenient = Loader::builder(open(&dir))
        .batch_size(8)
        .num_workers(2)
        .decode_policy(DecodePolicy::Lenient)
        .transform(Arc::new(Augment::from_spec("hflip,ycbcr").unwrap()))
        .build()
        .unwrap();
    for b in lenient.epoch(0) {
        b.unwrap();
    }
    let stats = lenient.stats();
    assert_eq!(stats.decoded_with_warnings, 1);
    assert_eq!(stats.first_warning.unwrap().index, cut);
}

#[test]
fn mismatched_calls_are_errors() {
    let _serial = shared();
    let mut rng = SampleRng::new(3);
    let planes = Planes::random(&mut rng, (32, 16), (2, 2), true);
    let view = planes.view();
    let a = Augment::from_spec("rotation=10,ycbcr").unwrap();
    let p = a.params_for(0, 0, 0, (32, 16), (16, 8));
    let spec = OutputSpec::new(16, 8, 3);
    let call = |a: &Augment, p: &AugmentParams, spec: &OutputSpec, src: SrcType| {
        let mut store = Store::new(spec, src).unwrap();
        let mut slot = vec![0u8; spec.sample_bytes()];
        a.apply_ycbcr_params(p, &view, &mut store, &mut AugmentScratch::new(), &mut slot)
            .map_err(|e| e.kind())
    };
    assert_eq!(call(&a, &p, &spec, SrcType::F32), Ok(()));
    assert_eq!(
        call(&a, &p, &spec, SrcType::U8),
        Err(ErrorKind::DTypeMismatch)
    );
    let gray = OutputSpec::new(16, 8, 1);
    assert_eq!(call(&a, &p, &gray, SrcType::F32), Err(ErrorKind::Usage));
    let other = a.params_for(0, 0, 0, (64, 32), (16, 8));
    assert_eq!(call(&a, &other, &spec, SrcType::F32), Err(ErrorKind::Usage));
    let nearest = Augment::from_spec("rotation=10,nearest").unwrap();
    assert_eq!(
        call(&nearest, &p, &spec, SrcType::F32),
        Err(ErrorKind::Usage)
    );
    assert!(Augment::from_spec("nearest,ycbcr").is_err());
}
