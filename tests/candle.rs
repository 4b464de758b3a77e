//! `stoker::candle`: batches as candle tensors, bit for bit, with errors passed through.
#![cfg(feature = "candle")]

use std::fs;
use std::sync::Arc;

use candle_core::{DType as CandleDType, Device};
use stoker::candle::{CandleBatch, CandleBatches};
use stoker::source::{Concat, ImageFolder, NpySource};
use stoker::{Augment, DType, ErrorKind, Layout, Loader, LoaderBuilder, Normalize};

fn npy() -> Concat<NpySource> {
    NpySource::glob(
        "fixtures/npy/images-*.npy",
        Some("fixtures/npy/labels-*.npy"),
    )
    .unwrap()
}

fn builder() -> LoaderBuilder<Concat<NpySource>> {
    Loader::builder(npy())
        .batch_size(5)
        .shuffle(true)
        .seed(11)
        .num_workers(2)
        .size(64, 36)
}

fn bytes_of<T: bytemuck::Pod>(v: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

/// The candle tensors of one epoch and the plain loader's batches hold the same bytes.
fn same_bits(b: impl Fn() -> LoaderBuilder<Concat<NpySource>>, want: CandleDType) {
    let mut ours = b().build().unwrap();
    let mut plain = b().build().unwrap();
    let mut n = 0;
    for (c, p) in ours.epoch(0).candle(&Device::Cpu).zip(plain.epoch(0)) {
        let (c, p) = (c.unwrap(), p.unwrap());
        assert_eq!(c.images.dims(), p.shape());
        assert_eq!(c.images.dtype(), want);
        let flat = c.images.flatten_all().unwrap();
        let bytes: Vec<u8> = match want {
            CandleDType::U8 => flat.to_vec1::<u8>().unwrap(),
            CandleDType::F16 => bytes_of(&flat.to_vec1::<half::f16>().unwrap()),
            CandleDType::BF16 => bytes_of(&flat.to_vec1::<half::bf16>().unwrap()),
            _ => bytes_of(&flat.to_vec1::<f32>().unwrap()),
        };
        assert!(bytes == p.as_bytes(), "batch {n} differs");
        let targets = c.targets.unwrap().to_vec1::<i64>().unwrap();
        assert_eq!(targets, p.labels().unwrap());
        assert_eq!(c.indices, p.indices());
        assert_eq!((c.epoch, c.next_position), (0, p.next_position()));
        n += 1;
    }
    assert_eq!(n, 7);
}

#[test]
fn f32_images_are_the_loaders_bits_and_targets_its_labels() {
    same_bits(
        || {
            builder()
                .normalize(Normalize::imagenet())
                .transform(Arc::new(Augment::keras_default()))
        },
        CandleDType::F32,
    );
}

#[test]
fn u8_f16_and_bf16_keep_their_dtype() {
    same_bits(|| builder().dtype(DType::U8), CandleDType::U8);
    same_bits(|| builder().dtype(DType::F16), CandleDType::F16);
    same_bits(|| builder().dtype(DType::BF16), CandleDType::BF16);
}

#[test]
fn nhwc_batches_are_n_h_w_c() {
    let mut loader = builder().layout(Layout::Nhwc).build().unwrap();
    let b = loader
        .epoch(0)
        .candle(&Device::Cpu)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(b.images.dims(), [5, 36, 64, 3]);
}

#[test]
fn an_unlabelled_source_has_no_targets() {
    let source = NpySource::glob("fixtures/npy/images-*.npy", None).unwrap();
    let mut loader = Loader::builder(source).batch_size(4).build().unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let (images, labels) = batch.to_candle(&Device::Cpu).unwrap();
    assert_eq!(images.dims()[0], 4);
    assert!(labels.is_none());
}

#[test]
fn the_last_batch_of_an_epoch_keeps_its_size() {
    // 32 samples in batches of 5: the last holds 2, and its tensors say so.
    let mut loader = builder().build().unwrap();
    let last = loader
        .epoch(0)
        .candle(&Device::Cpu)
        .last()
        .unwrap()
        .unwrap();
    assert_eq!(last.images.dims()[0], 2);
    assert_eq!(last.targets.unwrap().dims(), [2]);
    assert_eq!(last.next_position, 32);
}

#[test]
fn resuming_at_next_position_gives_the_rest_of_the_epoch() {
    let mut loader = builder().build().unwrap();
    let all: Vec<CandleBatch> = loader
        .epoch(3)
        .candle(&Device::Cpu)
        .map(Result::unwrap)
        .collect();
    let stop = all[2].next_position;
    let rest: Vec<CandleBatch> = loader
        .epoch_from(3, stop)
        .candle(&Device::Cpu)
        .map(Result::unwrap)
        .collect();
    assert_eq!(rest.len(), all.len() - 3);
    for (a, b) in all[3..].iter().zip(&rest) {
        assert_eq!(a.indices, b.indices);
        let (a, b) = (
            a.images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn a_bad_file_is_a_stoker_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["a", "b"] {
        fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..3 {
            fs::copy(
                "fixtures/photos-256x144/class-a/photo-00.jpg",
                dir.path().join(class).join(format!("{i}.jpg")),
            )
            .unwrap();
        }
    }
    let bad = dir.path().join("b").join("1.jpg");
    fs::write(&bad, b"not a jpeg").unwrap();
    let source = ImageFolder::open(dir.path()).unwrap();
    let mut loader = Loader::builder(source).batch_size(2).build().unwrap();
    let results: Vec<_> = loader.epoch(0).candle(&Device::Cpu).collect();
    let e = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.index(), Some(4));
    assert_eq!(e.path(), Some(bad.as_path()));
    assert!(
        results.last().unwrap().is_err(),
        "the epoch ends at the error"
    );
    assert!(loader.epoch(1).candle(&Device::Cpu).next().unwrap().is_ok());
}

#[test]
fn batches_go_back_to_the_pool_once_their_tensors_exist() {
    // A pool of prefetch + 2 = 3 buffers; the tensors own copies, so holding every tensor of
    // an epoch holds no loader buffer.
    let mut loader = builder().prefetch(1).build().unwrap();
    let held: Vec<CandleBatch> = loader
        .epoch(0)
        .candle(&Device::Cpu)
        .map(Result::unwrap)
        .collect();
    assert_eq!(held.len(), 7);
}
