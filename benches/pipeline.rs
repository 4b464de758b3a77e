//! End-to-end loader throughput next to a decode-only baseline, measured in the same run.
//!
//! Data: 1024 JPEGs of 256×144 (q90) cut from the real 1080p photographs in
//! `../shared/fixtures/photos-1080p` (or this repository's fixtures when that is absent), and the
//! same pixels as one NPY file. Made once under `target/bench-data/`.
//!
//! Benchmarks (batch 256, shuffled, f32 NCHW, ImageNet normalisation, no augmentation):
//! - `decode_only`: read each file and decode it with libjpeg-turbo alone, split over the same
//!   number of threads: the ceiling for the loader's JPEG path;
//! - `decode_in_memory`: the decoder alone on bytes already in memory;
//! - `jpeg_folder`: the loader over the folder (read + decode + normalise + write into slots);
//! - `jpeg_folder_u8`: the same, writing u8 NHWC (no conversion, a quarter of the bytes);
//! - `npy`: the loader over the memory-mapped NPY file.
//!
//! Compare `jpeg_folder` with `decode_only` at the same thread count (the ratio is the loader's
//! overhead), and 2 threads with 1 (scaling). Run: `cargo bench --bench pipeline`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use divan::Bencher;
use divan::counter::ItemsCount;
use stoker::source::{ImageFolder, NpySource};
use stoker::{Loader, Normalize};
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

const N: usize = 1024;
const W: usize = 256;
const H: usize = 144;
const BATCH: usize = 256;

fn main() {
    divan::main();
}

struct Data {
    folder: PathBuf,
    npy: PathBuf,
    jpegs: Vec<Vec<u8>>,
}

fn photos() -> Vec<PathBuf> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/photos-1080p");
    let dir = if shared.is_dir() {
        shared
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/photos-256x144")
    };
    let mut v: Vec<PathBuf> = walk(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no photographs under {}", dir.display());
    v
}

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

/// Makes (once) N crops of W×H from the photographs, as JPEG files in 4 class folders and as
/// one NPY file of the decoded pixels.
fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
        let folder = root.join("jpeg-256x144");
        let npy = root.join("images-256x144.npy");
        let listed = |f: &Path| {
            f.is_dir()
                && walk(f)
                    .iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
                    .count()
                    == N
        };
        if !(listed(&folder) && npy.is_file()) {
            let _ = std::fs::remove_dir_all(&root);
            make(&folder, &npy);
        }
        let mut files: Vec<PathBuf> = walk(&folder);
        files.sort();
        let jpegs = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
        Data { folder, npy, jpegs }
    })
}

fn make(folder: &Path, npy: &Path) {
    let mut dec = Decompressor::new().unwrap();
    let mut enc = turbojpeg::Compressor::new().unwrap();
    enc.set_quality(90).unwrap();
    let photos = photos();
    let per = N.div_ceil(photos.len());
    let mut all_pixels = Vec::with_capacity(N * W * H * 3);
    let mut k = 0;
    'outer: for p in &photos {
        let bytes = std::fs::read(p).unwrap();
        let header = dec.read_header(&bytes).unwrap();
        // Decode at the DCT scale closest to 2×–4× the crop, so crops are real photo content.
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
            let (gx, gy) = (v % 8, (v / 8) % 8);
            let x0 = (sw - W) * gx / 7;
            let y0 = (sh - H) * gy / 7;
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
            if k == N {
                break 'outer;
            }
        }
    }
    // The NPY holds the decoded JPEGs, in the folder's sample order.
    let source = ImageFolder::open(folder).unwrap();
    let mut dec = stoker::decode::Decoder::new().unwrap();
    for path in source.files() {
        let img = dec.decode(&std::fs::read(path).unwrap(), 3, None).unwrap();
        match img.pixels {
            stoker::Pixels::U8(p) => all_pixels.extend_from_slice(p),
            stoker::Pixels::F32(_) => unreachable!("jpeg decodes to u8"),
        }
    }
    stoker::source::save_npy(npy, "|u1", &[N, H, W, 3], &all_pixels).unwrap();
}

/// libjpeg-turbo alone over `threads` threads, each decoding every `threads`-th file; with
/// `from_files` each file is first read (into a reused buffer) as the loader does.
fn decode(bencher: Bencher, threads: usize, from_files: bool) {
    let d = data();
    let mut files: Vec<PathBuf> = walk(&d.folder);
    files.sort();
    let files = &files;
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    let mut dec = Decompressor::new().unwrap();
                    let mut out = vec![0u8; W * H * 3];
                    let mut buf = Vec::new();
                    for j in (t..N).step_by(threads) {
                        let bytes = if from_files {
                            buf.clear();
                            std::fs::File::open(&files[j])
                                .unwrap()
                                .read_to_end(&mut buf)
                                .unwrap();
                            &buf[..]
                        } else {
                            &d.jpegs[j][..]
                        };
                        dec.decompress(
                            bytes,
                            Image {
                                pixels: &mut out[..],
                                width: W,
                                pitch: W * 3,
                                height: H,
                                format: PixelFormat::RGB,
                            },
                        )
                        .unwrap();
                    }
                    divan::black_box(&out);
                });
            }
        });
    });
}

/// Read each file and decode it: the ceiling for the loader's JPEG path.
#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn decode_only(bencher: Bencher, threads: usize) {
    decode(bencher, threads, true);
}

/// Decode bytes already in memory (no file reads): the decoder alone.
#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn decode_in_memory(bencher: Bencher, threads: usize) {
    decode(bencher, threads, false);
}

fn run_loader<S: stoker::source::Source + 'static>(bencher: Bencher, source: S, workers: usize) {
    let loader = Loader::builder(source)
        .batch_size(BATCH)
        .shuffle(true)
        .num_workers(workers)
        .prefetch(2)
        .normalize(Normalize::imagenet());
    run_built(bencher, loader);
}

fn run_built<S: stoker::source::Source + 'static>(
    bencher: Bencher,
    builder: stoker::LoaderBuilder<S>,
) {
    let mut loader = builder.build().unwrap();
    let mut epoch = 0;
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        for b in loader.epoch(epoch) {
            divan::black_box(b.unwrap());
        }
        epoch += 1;
    });
}

#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn jpeg_folder(bencher: Bencher, workers: usize) {
    run_loader(bencher, ImageFolder::open(&data().folder).unwrap(), workers);
}

/// The same with u8 NHWC output (4× fewer bytes written than f32): what the write costs.
#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn jpeg_folder_u8(bencher: Bencher, workers: usize) {
    let b = Loader::builder(ImageFolder::open(&data().folder).unwrap())
        .batch_size(BATCH)
        .shuffle(true)
        .num_workers(workers)
        .dtype(stoker::DType::U8)
        .layout(stoker::Layout::Nhwc);
    run_built(bencher, b);
}

#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn npy(bencher: Bencher, workers: usize) {
    run_loader(
        bencher,
        NpySource::open(&data().npy, None).unwrap(),
        workers,
    );
}
