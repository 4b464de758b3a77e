//! The on-GPU conversion's specification, checked without a GPU: its CPU reference against the
//! CPU loader, its noise, and the kernel's own text compiled as C on the host.

use std::process::Command;

use stoker::gpu_convert::{KERNEL_SOURCE, PARAMS_LEN};
use stoker::rng::SampleRng;
use stoker::{DType, GpuConvert, ImageFolder, Layout, Loader, Normalize, OutputSpec};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/photos-256x144");

fn loader(
    dtype: DType,
    layout: Layout,
    norm: Option<Normalize>,
    batch: usize,
) -> Loader<ImageFolder> {
    let mut b = Loader::builder(ImageFolder::open(FIXTURES).unwrap())
        .batch_size(batch)
        .num_workers(1)
        .seed(3)
        .dtype(dtype)
        .layout(layout);
    if let Some(n) = norm {
        b = b.normalize(n);
    }
    b.build().unwrap()
}

/// Without noise, converting the u8 NHWC batch gives the bytes the CPU loader writes itself.
#[test]
fn without_noise_equals_the_cpu_loader_bit_for_bit() {
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for layout in [Layout::Nchw, Layout::Nhwc] {
            for norm in [None, Some(Normalize::imagenet())] {
                let mut raw = loader(DType::U8, Layout::Nhwc, None, 8);
                let mut cpu = loader(dtype, layout, norm.clone(), 8);
                let conv = GpuConvert::new(cpu.spec()).unwrap();
                assert_eq!(raw.spec(), &conv.input_spec());
                let (a, b) = (
                    raw.epoch(0).next().unwrap().unwrap(),
                    cpu.epoch(0).next().unwrap().unwrap(),
                );
                let mut out = vec![0u8; b.as_bytes().len()];
                conv.convert_batch(&a, &mut out).unwrap();
                assert!(
                    out == b.as_bytes(),
                    "{dtype:?} {layout:?} {:?}: gpu convert differs from the cpu store",
                    norm.is_some()
                );
            }
        }
    }
}

/// The noise added is gaussian with the requested std in 8-bit levels, mean 0, per channel.
#[test]
fn noise_has_the_requested_mean_and_std() {
    let out = OutputSpec::new(128, 128, 3).with_normalize(Normalize::imagenet());
    let sigma = 0.05f32;
    let clean = GpuConvert::new(&out).unwrap();
    let noisy = clean.clone().with_noise(sigma, 11).unwrap();
    let mut rng = SampleRng::new(5);
    let src: Vec<u8> = (0..out.width * out.height * 3)
        .map(|_| (rng.below(200) + 28) as u8)
        .collect();
    let (mut a, mut b) = (vec![0u8; out.sample_bytes()], vec![0u8; out.sample_bytes()]);
    let hw = out.width * out.height;
    for c in 0..3 {
        let (mut s1, mut s2, mut n) = (0f64, 0f64, 0f64);
        for index in 0..8 {
            clean.convert_sample(&src, 0, &mut a).unwrap();
            noisy
                .convert_sample(&src, noisy.sample_key(0, index), &mut b)
                .unwrap();
            let (fa, fb): (&[f32], &[f32]) = (bytemuck::cast_slice(&a), bytemuck::cast_slice(&b));
            let scale = noisy.params()[PARAMS_LEN - 9 + c] as f64 * 255.0;
            for j in c * hw..(c + 1) * hw {
                let d = (fb[j] - fa[j]) as f64 / scale; // in units of the full range
                s1 += d;
                s2 += d * d;
                n += 1.0;
            }
        }
        let mean = s1 / n;
        let std = (s2 / n - mean * mean).sqrt();
        // n = 131072: the mean's standard error is 1.4e-4, the std's 1e-4.
        assert!(mean.abs() < 1e-3, "channel {c}: mean {mean}");
        assert!((std - sigma as f64).abs() < 1e-3, "channel {c}: std {std}");
    }
}

/// A sample's noise depends on (seed, epoch, index) only: not on batch size or workers.
#[test]
fn noise_depends_on_the_sample_not_the_batch() {
    let mut per_sample = Vec::new();
    for (batch, workers) in [(4, 0), (7, 2)] {
        let mut l = Loader::builder(ImageFolder::open(FIXTURES).unwrap())
            .batch_size(batch)
            .num_workers(workers)
            .seed(9)
            .dtype(DType::U8)
            .layout(Layout::Nhwc)
            .build()
            .unwrap();
        let conv = GpuConvert::new(
            &l.spec()
                .clone()
                .with_dtype(DType::F16)
                .with_layout(Layout::Nchw),
        )
        .unwrap()
        .with_noise(0.03, 1)
        .unwrap();
        let size = conv.output_spec().sample_bytes();
        let mut by_index = std::collections::BTreeMap::new();
        for b in l.epoch(2) {
            let b = b.unwrap();
            let mut out = vec![0u8; b.len() * size];
            conv.convert_batch(&b, &mut out).unwrap();
            for (i, chunk) in b.indices().iter().zip(out.chunks(size)) {
                by_index.insert(*i, chunk.to_vec());
            }
        }
        per_sample.push(by_index);
    }
    assert_eq!(per_sample[0].len(), 32);
    assert!(
        per_sample[0] == per_sample[1],
        "noise changed with the batch size or workers"
    );
    let conv = GpuConvert::new(&OutputSpec::new(4, 4, 3))
        .unwrap()
        .with_noise(0.1, 1)
        .unwrap();
    assert_ne!(conv.sample_key(0, 1), conv.sample_key(0, 2));
    assert_ne!(conv.sample_key(0, 1), conv.sample_key(1, 1));
}

#[test]
fn bad_specs_and_sizes_are_errors() {
    let e = GpuConvert::new(&OutputSpec::new(4, 4, 3).with_dtype(DType::U8)).unwrap_err();
    assert!(e.to_string().contains("output dtype"), "{e}");
    let c = GpuConvert::new(&OutputSpec::new(4, 4, 3)).unwrap();
    assert!(c.clone().with_noise(f32::NAN, 0).is_err());
    let e = c.convert_sample(&[0; 47], 0, &mut [0; 192]).unwrap_err();
    assert!(e.to_string().contains("48 bytes in"), "{e}");
    // A batch of the wrong spec (f32 instead of u8 NHWC) is refused, naming both.
    let mut l = loader(DType::F32, Layout::Nchw, None, 2);
    let b = l.epoch(0).next().unwrap().unwrap();
    let c = GpuConvert::new(l.spec()).unwrap();
    let e = c
        .convert_batch(&b, &mut vec![0; 2 * l.spec().sample_bytes()])
        .unwrap_err();
    assert!(e.to_string().contains("expected u8 NHWC"), "{e}");
}

/// Definitions that let the kernel's text compile as C: one thread at a time.
const HOST_PRELUDE: &str = r#"
#define STOKER_HOST 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef unsigned int stoker_u32;
typedef unsigned short stoker_u16;
typedef unsigned long long stoker_u64;
static stoker_u64 stoker_tid;
#define STOKER_FN static inline
#define STOKER_KERNEL static void
#define STOKER_THREAD stoker_tid
static inline stoker_u32 stoker_bits(float x) { stoker_u32 b; memcpy(&b, &x, 4); return b; }
#define STOKER_BITS(x) stoker_bits(x)
static inline stoker_u16 stoker_f16(float x) {
    _Float16 h = (_Float16)x; stoker_u16 r; memcpy(&r, &h, 2); return r;
}
"#;

/// Reads the arguments and buffers from argv[1], runs every thread of a 256-wide grid, writes
/// the output to argv[2].
const HOST_MAIN: &str = r#"
int main(int argc, char **argv) {
    (void)argc;
    FILE *f = fopen(argv[1], "rb");
    stoker_u64 h[6];
    if (fread(h, 8, 6, f) != 6) return 2;
    stoker_u64 pps = h[0], n = h[1], c = h[2], total = pps * n;
    unsigned char *src = malloc(total * c);
    stoker_u32 *keys = malloc(n * 4);
    float *params = malloc(1033 * 4);
    stoker_u64 out_bytes = total * c * (h[4] == 0 ? 4 : 2);
    unsigned char *dst = calloc(out_bytes, 1);
    if (fread(src, 1, total * c, f) != total * c) return 2;
    if (fread(keys, 4, n, f) != n) return 2;
    if (fread(params, 4, 1033, f) != 1033) return 2;
    fclose(f);
    stoker_u64 grid = (total + 255) / 256 * 256;
    for (stoker_tid = 0; stoker_tid < grid; stoker_tid++) {
        stoker_convert_u8(src, dst, keys, params, pps, total, (int)c, (int)h[3], (int)h[4], (int)h[5]);
    }
    FILE *o = fopen(argv[2], "wb");
    fwrite(dst, 1, out_bytes, o);
    fclose(o);
    return 0;
}
"#;

/// The kernel's own source, compiled as C with `-ffp-contract=off` (no fused multiply-add, as
/// NVRTC's `--fmad=false`), gives exactly the CPU reference for every dtype, layout, channel
/// count and with or without noise.
#[test]
fn kernel_source_compiled_on_the_host_equals_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let c_file = dir.path().join("convert_host.c");
    let exe = dir.path().join("convert_host");
    std::fs::write(
        &c_file,
        format!("{HOST_PRELUDE}\n{KERNEL_SOURCE}\n{HOST_MAIN}"),
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args([
            "-std=gnu11",
            "-O2",
            "-ffp-contract=off",
            "-Wall",
            "-Werror",
            "-o",
        ])
        .arg(&exe)
        .arg(&c_file)
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler {cc:?} (needed to build stoker): {e}"));
    assert!(status.success(), "the kernel source does not compile as C");
    let mut rng = SampleRng::new(77);
    let mut cases = 0;
    for channels in [1usize, 3] {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for layout in [Layout::Nchw, Layout::Nhwc] {
                for noise in [0.0f32, 0.04] {
                    let (w, h, n) = (13usize, 7usize, 3usize); // 273 pixels: a partial last block
                    let out = OutputSpec::new(w, h, channels)
                        .with_dtype(dtype)
                        .with_layout(layout)
                        .with_normalize(
                            Normalize::new(
                                vec![0.4, 0.5, 0.6][..channels].to_vec(),
                                vec![0.2, 0.25, 0.3][..channels].to_vec(),
                            )
                            .unwrap(),
                        );
                    let conv = GpuConvert::new(&out).unwrap().with_noise(noise, 5).unwrap();
                    let src: Vec<u8> = (0..n * w * h * channels)
                        .map(|_| rng.below(256) as u8)
                        .collect();
                    let keys: Vec<u32> = (0..n).map(|i| conv.sample_key(1, i * 3)).collect();
                    let mut expected = vec![0u8; n * out.sample_bytes()];
                    for ((s, d), k) in src
                        .chunks(w * h * channels)
                        .zip(expected.chunks_mut(out.sample_bytes()))
                        .zip(&keys)
                    {
                        conv.convert_sample(s, *k, d).unwrap();
                    }
                    let mut input = Vec::new();
                    let header = [
                        (w * h) as u64,
                        n as u64,
                        channels as u64,
                        conv.planar() as u64,
                        conv.dtype_code() as u64,
                        conv.has_noise() as u64,
                    ];
                    for v in header {
                        input.extend_from_slice(&v.to_ne_bytes());
                    }
                    input.extend_from_slice(&src);
                    input.extend_from_slice(bytemuck::cast_slice(&keys));
                    input.extend_from_slice(bytemuck::cast_slice(conv.params()));
                    let (inp, outp) = (dir.path().join("in.bin"), dir.path().join("out.bin"));
                    std::fs::write(&inp, &input).unwrap();
                    let st = Command::new(&exe).arg(&inp).arg(&outp).status().unwrap();
                    assert!(st.success());
                    let got = std::fs::read(&outp).unwrap();
                    assert!(
                        got == expected,
                        "{channels} channels {dtype:?} {layout:?} noise {noise}: host-compiled kernel differs"
                    );
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 24);
}
