//! What handing a batch to candle costs: `Batch::to_candle` on the CPU device next to a
//! plain copy of the same bytes into a buffer allocated beforehand, in the same run.
//!
//! Data: the 32 fixture images (NPY, 256×144) as one f32 NCHW batch `[32, 3, 144, 256]`
//! (14 MiB), normalised. candle's tensors own their storage, so `to_candle` allocates and
//! copies; compare its time with `copy` (the floor for any copy) and `allocate_and_copy`
//! (a fresh `Vec` each time, as candle does). Run: `cargo bench --features candle --bench candle`.

use candle_core::Device;
use divan::Bencher;
use divan::counter::BytesCount;
use stoker::source::NpySource;
use stoker::{Batch, Loader, Normalize};

fn main() {
    divan::main();
}

fn batch() -> Batch {
    let source = NpySource::glob(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/npy/images-*.npy"),
        Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/npy/labels-*.npy"
        )),
    )
    .unwrap();
    let mut loader = Loader::builder(source)
        .batch_size(32)
        .normalize(Normalize::imagenet())
        .build()
        .unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.shape(), [32, 3, 144, 256]);
    batch
}

#[divan::bench]
fn to_candle(bencher: Bencher) {
    let batch = batch();
    bencher
        .counter(BytesCount::new(batch.as_bytes().len()))
        .bench_local(|| batch.to_candle(&Device::Cpu).unwrap());
}

#[divan::bench]
fn copy(bencher: Bencher) {
    let batch = batch();
    let mut out = vec![0u8; batch.as_bytes().len()];
    bencher
        .counter(BytesCount::new(batch.as_bytes().len()))
        .bench_local(|| out.copy_from_slice(divan::black_box(batch.as_bytes())));
}

#[divan::bench]
fn allocate_and_copy(bencher: Bencher) {
    let batch = batch();
    bencher
        .counter(BytesCount::new(batch.as_bytes().len()))
        .bench_local(|| divan::black_box(batch.as_bytes()).to_vec());
}
