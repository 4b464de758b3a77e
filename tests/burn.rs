//! `stoker::burn`: the `DataLoader` contract burn's training loop relies on.
#![cfg(feature = "burn")]

use std::collections::BTreeSet;
use std::error::Error as _;
use std::fs;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::Device;
use stoker::burn::{BurnBatch, BurnLoader};
use stoker::source::{Concat, ImageFolder, NpySource};
use stoker::{Augment, DType, ErrorKind, Loader, LoaderBuilder, Normalize};

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
}

fn indices(loader: &dyn DataLoader<BurnBatch>) -> Vec<usize> {
    let mut all = Vec::new();
    for b in loader.iter() {
        all.extend(b.unwrap().indices);
    }
    all
}

#[test]
fn images_are_the_loaders_bits_and_targets_its_labels() {
    let device = Device::default();
    let b = || {
        builder()
            .normalize(Normalize::imagenet())
            .transform(Arc::new(Augment::keras_default()))
    };
    let burn = BurnLoader::new(b(), &device).unwrap();
    let mut plain = b().build().unwrap();
    let mut n = 0;
    for (ours, theirs) in burn.iter().zip(plain.epoch(0)) {
        let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
        assert_eq!(ours.images.dims(), theirs.shape());
        let got = ours.images.into_data().try_to_vec::<f32>().unwrap();
        let want: Vec<f32> = theirs.images::<f32>().unwrap().iter().copied().collect();
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let targets = ours
            .targets
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(targets, theirs.labels().unwrap());
        assert_eq!(ours.indices, theirs.indices());
        assert_eq!(ours.next_position, theirs.next_position());
        n += 1;
    }
    assert_eq!(n, 7); // 32 samples in batches of 5
}

#[test]
fn half_precision_stays_half() {
    let burn = BurnLoader::new(builder().dtype(DType::F16), &Device::default()).unwrap();
    let batch = burn.iter().next().unwrap().unwrap();
    assert_eq!(batch.images.dtype(), burn::tensor::DType::F16);
}

#[test]
fn slices_of_a_split_cover_each_epoch_once_with_one_global_shuffle() {
    let device = Device::default();
    let whole = BurnLoader::new(builder(), &device).unwrap();
    assert_eq!(whole.num_items(), 32);
    let order = indices(&whole);
    assert_eq!(order.iter().collect::<BTreeSet<_>>().len(), 32);
    // burn's split: `slice(..)` per device, then `to_device(..)`.
    let slices: Vec<_> = [(0, 11), (11, 22), (22, 32)]
        .iter()
        .map(|&(s, e)| whole.slice(s, e).to_device(&device))
        .collect();
    assert_eq!(slices.iter().map(|s| s.num_items()).sum::<usize>(), 32);
    for epoch in 1..3 {
        let whole_order = indices(&whole);
        let parts: Vec<usize> = slices.iter().flat_map(|s| indices(s.as_ref())).collect();
        assert_eq!(parts, whole_order, "epoch {epoch}");
    }
    // The shuffle is global: a slice's samples differ from epoch to epoch.
    let first = BurnLoader::new(builder(), &device).unwrap().slice(0, 11);
    let (a, b) = (indices(first.as_ref()), indices(first.as_ref()));
    assert_ne!(
        a.iter().collect::<BTreeSet<_>>(),
        b.iter().collect::<BTreeSet<_>>()
    );
}

#[test]
fn a_slice_of_a_slice_takes_positions_of_its_parent() {
    let whole = BurnLoader::new(builder(), &Device::default()).unwrap();
    let order = indices(&whole);
    let tail = whole.slice(10, 32);
    let inner = tail.slice(5, 9); // positions 15..19
    // Both slices start at the parent's next epoch (1).
    let epoch1 = indices(&whole);
    assert_ne!(epoch1, order);
    assert_eq!(indices(inner.as_ref()), epoch1[15..19]);
    // Out-of-range bounds are clamped.
    assert_eq!(whole.slice(30, 99).num_items(), 2);
}

#[test]
fn slices_divide_the_workers() {
    let whole = BurnLoader::new(builder().num_workers(4), &Device::default()).unwrap();
    assert_eq!(whole.num_workers(), 4);
    let half = whole.sliced(0, 16);
    assert_eq!((half.num_workers(), half.positions()), (2, 0..16));
    let small = whole.sliced(16, 18);
    assert_eq!((small.num_workers(), small.positions()), (1, 16..18));
    assert_eq!(indices(&small).len(), 2);
    let inline = BurnLoader::new(builder().num_workers(0), &Device::default()).unwrap();
    assert_eq!(inline.sliced(0, 16).num_workers(), 0);
}

#[test]
fn iter_yields_the_next_epoch_and_resume_yields_the_rest_of_one() {
    let loader = BurnLoader::new(builder(), &Device::default()).unwrap();
    let e0: Vec<Vec<usize>> = loader.iter().map(|b| b.unwrap().indices).collect();
    let e1: Vec<Vec<usize>> = loader.iter().map(|b| b.unwrap().indices).collect();
    assert_ne!(e0, e1);
    assert_eq!(loader.next_epoch(), 2);
    // A checkpoint after the third batch of epoch 1.
    let at = {
        let mut it = loader.iter();
        let _ = it.next();
        let _ = it.next();
        it.next().unwrap().unwrap().next_position
    };
    assert_eq!(at, 15);
    loader.resume(1, at).unwrap();
    let rest: Vec<Vec<usize>> = loader.iter().map(|b| b.unwrap().indices).collect();
    assert_eq!(rest, e1[3..]);
    loader.set_epoch(0);
    let again: Vec<Vec<usize>> = loader.iter().map(|b| b.unwrap().indices).collect();
    assert_eq!(again, e0);
    let e = loader.resume(0, 33).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[test]
fn progress_counts_samples() {
    let loader = BurnLoader::new(builder(), &Device::default()).unwrap();
    loader.resume(0, 10).unwrap();
    let mut it = loader.iter();
    assert_eq!(it.progress().items_processed, 10);
    assert_eq!(it.progress().items_total, 32);
    it.next().unwrap().unwrap();
    assert_eq!(it.progress().items_processed, 15);
    while it.next().is_some() {}
    assert!(it.progress().is_completed());
}

#[test]
fn a_second_iterator_at_once_is_an_error_not_a_hang() {
    let loader = BurnLoader::new(builder(), &Device::default()).unwrap();
    let mut first = loader.iter();
    first.next().unwrap().unwrap();
    let err = loader.iter().next().unwrap().unwrap_err();
    let e = err
        .source()
        .unwrap()
        .downcast_ref::<stoker::Error>()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
    drop(first);
    assert!(loader.iter().next().unwrap().is_ok());
}

#[test]
fn u8_output_and_unlabelled_sources_are_refused() {
    let e = BurnLoader::new(builder().dtype(DType::U8), &Device::default())
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
    let unlabelled = NpySource::glob("fixtures/npy/images-*.npy", None).unwrap();
    let e = BurnLoader::new(Loader::builder(unlabelled), &Device::default())
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[test]
fn a_bad_file_is_a_dataset_error_naming_it() {
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
    let loader =
        BurnLoader::new(Loader::builder(source).batch_size(2), &Device::default()).unwrap();
    let results: Vec<_> = loader.iter().collect();
    let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    let e = err
        .source()
        .unwrap()
        .downcast_ref::<stoker::Error>()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.index(), Some(4));
    assert_eq!(e.path(), Some(bad.as_path()));
    assert!(err.to_string().contains("1.jpg"), "{err}");
    assert!(
        results.last().unwrap().is_err(),
        "the epoch ends at the error"
    );
    // The next epoch starts over.
    assert!(loader.iter().next().unwrap().is_ok());
}

#[test]
fn buffers_go_back_to_the_pool_when_burn_drops_the_tensors() {
    // A pool of prefetch + 2 = 3 buffers: holding every batch of an epoch would exhaust it.
    let loader = BurnLoader::new(builder().prefetch(1), &Device::default()).unwrap();
    for _ in 0..3 {
        let mut n = 0;
        for b in loader.iter() {
            let b = b.unwrap();
            let _ = b.images.clone().sum(); // a use of the tensor, then drop
            n += 1;
        }
        assert_eq!(n, 7);
    }
    let held: Vec<_> = loader.iter().collect();
    assert!(held.iter().any(|r| {
        r.as_ref()
            .err()
            .and_then(|e| e.source())
            .and_then(|e| e.downcast_ref::<stoker::Error>())
            .is_some_and(|e| e.kind() == ErrorKind::PoolExhausted)
    }));
}

/// Elastic resume through burn: N ranks of D device slices each consume a few batches,
/// their checkpoint parts merge, and M ranks of other slices yield the rest, once.
#[test]
fn a_checkpoint_of_n_ranks_of_slices_resumes_at_m_ranks() {
    use stoker::{Checkpoint, Partition};
    let device = Device::default();
    let make = |rank: usize, world: usize, partition: Partition| {
        let b = Loader::builder(npy())
            .batch_size(3)
            .shuffle(true)
            .seed(11)
            .num_workers(0)
            .size(8, 4)
            .partition(partition)
            .distributed(rank, world);
        BurnLoader::new(b, &device).unwrap()
    };
    let slices = |l: &BurnLoader, d: usize| -> Vec<BurnLoader> {
        let n = l.num_items();
        (0..d)
            .map(|i| l.sliced(i * n / d, (i + 1) * n / d))
            .collect()
    };
    for partition in [Partition::Pad, Partition::Drop] {
        for n_ranks in 1..=8 {
            for m_ranks in 1..=8 {
                let ctx = format!("{partition:?} {n_ranks} -> {m_ranks}");
                let mut before = Vec::new();
                let mut parts = Vec::new();
                for rank in 0..n_ranks {
                    let whole = make(rank, n_ranks, partition);
                    for (d, s) in slices(&whole, 2).iter().enumerate() {
                        let mut position = s.positions().start;
                        for b in s.iter().take((rank + d) % 3) {
                            let b = b.unwrap();
                            before.extend(b.indices);
                            position = b.next_position;
                        }
                        parts.push(s.checkpoint(0, position));
                    }
                }
                let cp = Checkpoint::merge(&parts).unwrap();
                let k = cp.remaining() as usize;
                let mut after = Vec::new();
                for rank in 0..m_ranks {
                    let whole = make(rank, m_ranks, partition);
                    whole.resume_from(&cp).unwrap();
                    for s in slices(&whole, 1 + rank % 3) {
                        for b in s.iter() {
                            let b = b.unwrap();
                            assert_eq!(b.epoch, 0, "{ctx}");
                            after.extend(b.indices);
                        }
                        assert_eq!(s.next_epoch(), 1, "{ctx}");
                    }
                }
                let distinct_before: BTreeSet<usize> = before.iter().copied().collect();
                assert_eq!(32 - distinct_before.len(), k, "{ctx}");
                let all: Vec<usize> = [before, after.clone()].concat();
                let distinct: BTreeSet<usize> = all.iter().copied().collect();
                match partition {
                    Partition::Drop => {
                        assert_eq!(distinct.len(), all.len(), "{ctx}: a sample twice");
                        assert_eq!(32 - all.len(), k % m_ranks, "{ctx}");
                    }
                    Partition::Pad => {
                        assert_eq!(distinct.len(), 32, "{ctx}: a sample never seen");
                        assert_eq!(after.len(), k.div_ceil(m_ranks) * m_ranks, "{ctx}");
                    }
                }
            }
        }
    }
}
