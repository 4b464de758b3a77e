//! End-to-end behaviour of the loader: order, determinism, resume, ranks, bad input, shutdown.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use stoker::digest::Digest;
use stoker::source::{Concat, ImageFolder, Item, NpySource, Raw, Source};
use stoker::{
    DType, ErrorKind, ImageView, Layout, Loader, Normalize, OnError, Partition, Pixels, Result,
};

const NPY_IMAGES: &str = "fixtures/npy/images-*.npy";
const NPY_LABELS: &str = "fixtures/npy/labels-*.npy";
const FOLDER: &str = "fixtures/photos-256x144";

fn npy() -> Concat<NpySource> {
    NpySource::glob(NPY_IMAGES, Some(NPY_LABELS)).unwrap()
}

/// `n` tiny 4×2 RGB images whose pixels all equal a byte derived from the index, labelled
/// `index % 10`; `panic_at` panics, `fail_at` returns an error.
struct Synthetic {
    n: usize,
    pixels: Vec<u8>,
    panic_at: Option<usize>,
    fail_at: BTreeSet<usize>,
}

impl Synthetic {
    fn new(n: usize) -> Self {
        let mut pixels = Vec::with_capacity(n * 24);
        for i in 0..n {
            pixels.extend(std::iter::repeat_n((i * 7 % 251) as u8, 24));
        }
        Synthetic {
            n,
            pixels,
            panic_at: None,
            fail_at: BTreeSet::new(),
        }
    }
}

impl Source for Synthetic {
    fn len(&self) -> usize {
        self.n
    }
    fn get<'a>(&'a self, i: usize, _buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        if self.panic_at == Some(i) {
            panic!("synthetic panic at {i}");
        }
        if self.fail_at.contains(&i) {
            return Err(stoker::Error::new(ErrorKind::Decode, "synthetic failure").at(i));
        }
        let px = &self.pixels[i * 24..(i + 1) * 24];
        Ok(Item {
            raw: Raw::Pixels(ImageView::new(4, 2, 3, Pixels::U8(px)).unwrap()),
            label: Some((i % 10) as i64),
        })
    }
    fn path(&self, _i: usize) -> Option<&Path> {
        None
    }
    fn has_labels(&self) -> bool {
        true
    }
    fn channels(&self) -> Option<usize> {
        Some(3)
    }
    fn size(&self) -> Option<(usize, usize)> {
        Some((4, 2))
    }
}

/// Indices of every batch of one epoch.
fn epoch_indices<S: Source>(l: &mut Loader<S>, e: u64) -> Vec<Vec<usize>> {
    l.epoch(e).map(|b| b.unwrap().indices().to_vec()).collect()
}

fn digest<S: Source>(l: &mut Loader<S>, epochs: u64) -> String {
    let mut d = Digest::new();
    for e in 0..epochs {
        for b in l.epoch(e) {
            d.update(&b.unwrap());
        }
    }
    d.hex()
}

#[test]
fn sequential_epoch_yields_every_sample_in_order_with_labels() {
    let mut l = Loader::builder(Synthetic::new(23))
        .batch_size(5)
        .num_workers(2)
        .build()
        .unwrap();
    assert_eq!(l.batches_per_epoch(), 5);
    let mut lens = Vec::new();
    let mut all = Vec::new();
    for b in l.epoch(0) {
        let b = b.unwrap();
        lens.push(b.len());
        all.extend_from_slice(b.indices());
        let x = b.images::<f32>().unwrap();
        assert_eq!(x.shape(), &[b.len(), 3, 2, 4]);
        for (j, &i) in b.indices().iter().enumerate() {
            assert_eq!(b.labels().unwrap()[j], (i % 10) as i64);
            let expect = (i * 7 % 251) as f32 / 255.0;
            assert!(
                x.slice(ndarray::s![j, .., .., ..])
                    .iter()
                    .all(|&v| (v - expect).abs() <= 1e-6)
            );
        }
    }
    assert_eq!(lens, [5, 5, 5, 5, 3]);
    assert_eq!(all, (0..23).collect::<Vec<_>>());
    let s = l.stats();
    assert_eq!((s.samples, s.batches, s.skipped), (23, 5, 0));
}

#[test]
fn drop_last_drops_the_partial_batch() {
    let mut l = Loader::builder(Synthetic::new(23))
        .batch_size(5)
        .drop_last(true)
        .num_workers(1)
        .build()
        .unwrap();
    assert_eq!(l.batches_per_epoch(), 4);
    let b = epoch_indices(&mut l, 0);
    assert_eq!(b.len(), 4);
    assert!(b.iter().all(|x| x.len() == 5));
}

#[test]
fn same_seed_same_batches_for_any_workers_and_prefetch() {
    for (name, make) in [
        (
            "npy",
            Box::new(|| Box::new(npy()) as Box<dyn Source>) as Box<dyn Fn() -> Box<dyn Source>>,
        ),
        (
            "folder",
            Box::new(|| Box::new(ImageFolder::open(FOLDER).unwrap()) as Box<dyn Source>),
        ),
    ] {
        let mut digests = Vec::new();
        for (workers, prefetch) in [(0, 1), (1, 1), (2, 1), (2, 8), (1, 8), (3, 2)] {
            let mut l = Loader::builder(make())
                .batch_size(6)
                .shuffle(true)
                .seed(11)
                .num_workers(workers)
                .prefetch(prefetch)
                .normalize(Normalize::imagenet())
                .build()
                .unwrap();
            digests.push(digest(&mut l, 2));
        }
        assert!(
            digests.windows(2).all(|w| w[0] == w[1]),
            "{name}: {digests:?}"
        );
    }
}

#[test]
fn different_seeds_and_epochs_give_different_orders() {
    let mut a = Loader::builder(npy())
        .batch_size(8)
        .shuffle(true)
        .seed(1)
        .build()
        .unwrap();
    let mut b = Loader::builder(npy())
        .batch_size(8)
        .shuffle(true)
        .seed(2)
        .build()
        .unwrap();
    let a0 = epoch_indices(&mut a, 0);
    assert_ne!(a0, epoch_indices(&mut a, 1));
    assert_ne!(a0, epoch_indices(&mut b, 0));
    let mut all: Vec<usize> = a0.concat();
    all.sort();
    assert_eq!(all, (0..32).collect::<Vec<_>>());
}

#[test]
fn folder_npy_and_manifest_give_equal_pixels() {
    let run = |s: Box<dyn Source>| {
        let mut l = Loader::builder(s)
            .batch_size(7)
            .dtype(DType::U8)
            .layout(Layout::Nhwc)
            .shuffle(true)
            .seed(5)
            .build()
            .unwrap();
        digest(&mut l, 1)
    };
    let folder = run(Box::new(ImageFolder::open(FOLDER).unwrap()));
    let manifest = run(Box::new(
        ImageFolder::from_manifest("fixtures/manifest.csv").unwrap(),
    ));
    let npy = run(Box::new(npy()));
    assert_eq!(folder, manifest);
    assert_eq!(folder, npy);
}

#[test]
fn resume_from_any_batch_equals_the_tail_of_an_uninterrupted_epoch() {
    let mut l = Loader::builder(npy())
        .batch_size(5)
        .shuffle(true)
        .seed(9)
        .num_workers(2)
        .dtype(DType::F16)
        .build()
        .unwrap();
    let full: Vec<(Vec<usize>, Vec<u8>, usize)> = l
        .epoch(3)
        .map(|b| {
            let b = b.unwrap();
            (
                b.indices().to_vec(),
                b.as_bytes().to_vec(),
                b.next_position(),
            )
        })
        .collect();
    for k in 0..full.len() {
        let resume_at = if k == 0 { 0 } else { full[k - 1].2 };
        let tail: Vec<_> = l
            .epoch_from(3, resume_at)
            .map(|b| {
                let b = b.unwrap();
                (
                    b.indices().to_vec(),
                    b.as_bytes().to_vec(),
                    b.next_position(),
                )
            })
            .collect();
        assert_eq!(tail, full[k..], "resume at batch {k}");
    }
    assert!(l.epoch_from(3, 33).next().unwrap().is_err());
}

#[test]
fn resume_with_skipped_samples_equals_the_tail() {
    let mut src = Synthetic::new(40);
    src.fail_at = [3, 4, 17, 39].into_iter().collect();
    let mut l = Loader::builder(src)
        .batch_size(6)
        .shuffle(true)
        .seed(4)
        .num_workers(2)
        .on_error(OnError::Skip)
        .max_skipped(stoker::SkipBound::Fraction(1.0)) // these tests skip many on purpose
        .build()
        .unwrap();
    let full: Vec<(Vec<usize>, usize)> = l
        .epoch(1)
        .map(|b| {
            let b = b.unwrap();
            (b.indices().to_vec(), b.next_position())
        })
        .collect();
    for k in 1..full.len() {
        let tail: Vec<_> = l
            .epoch_from(1, full[k - 1].1)
            .map(|b| {
                let b = b.unwrap();
                (b.indices().to_vec(), b.next_position())
            })
            .collect();
        assert_eq!(tail, full[k..]);
    }
}

#[test]
fn ranks_are_disjoint_cover_the_epoch_and_have_equal_batch_counts() {
    for n in [23usize, 32, 7] {
        for world in 1..=4 {
            for partition in [Partition::Drop, Partition::Pad] {
                let mut per_rank = Vec::new();
                for rank in 0..world {
                    let mut l = Loader::builder(Synthetic::new(n))
                        .batch_size(3)
                        .shuffle(true)
                        .seed(8)
                        .distributed(rank, world)
                        .partition(partition)
                        .num_workers(1)
                        .build()
                        .unwrap();
                    per_rank.push(epoch_indices(&mut l, 2));
                }
                let counts: BTreeSet<usize> = per_rank.iter().map(|r| r.len()).collect();
                assert_eq!(
                    counts.len(),
                    1,
                    "n {n} world {world} {partition:?}: {counts:?}"
                );
                let all: Vec<usize> = per_rank.iter().flatten().flatten().copied().collect();
                let distinct: BTreeSet<usize> = all.iter().copied().collect();
                match partition {
                    Partition::Drop => {
                        assert_eq!(all.len(), distinct.len(), "disjoint");
                        assert_eq!(all.len(), n / world * world);
                    }
                    Partition::Pad => {
                        assert_eq!(distinct.len(), n, "covers the epoch");
                        assert_eq!(all.len(), n.div_ceil(world) * world);
                    }
                }
            }
        }
    }
}

/// A folder of the fixture photos with bad files mixed in; returns the paths of the bad ones.
fn folder_with_bad_files(dir: &Path) -> Vec<PathBuf> {
    let good: Vec<PathBuf> = ImageFolder::open(FOLDER)
        .unwrap()
        .files()
        .iter()
        .take(10)
        .cloned()
        .collect();
    let class = dir.join("class-a");
    std::fs::create_dir_all(&class).unwrap();
    for (i, p) in good.iter().enumerate() {
        std::fs::copy(p, class.join(format!("img-{i:02}.jpg"))).unwrap();
    }
    let jpeg = std::fs::read(&good[0]).unwrap();
    let bad = [
        ("img-02b-truncated.jpg", jpeg[..jpeg.len() / 2].to_vec()),
        ("img-04b-empty.jpg", Vec::new()),
        ("img-06b-text.jpg", b"this is not an image\n".to_vec()),
        ("img-08b-corrupt.png", {
            let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
            v.extend_from_slice(&[0xAB; 100]);
            v
        }),
    ];
    bad.iter()
        .map(|(name, bytes)| {
            let p = class.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect()
}

#[test]
fn each_bad_file_is_an_error_naming_the_file_and_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let bad = folder_with_bad_files(dir.path());
    let folder = ImageFolder::open(dir.path()).unwrap();
    let index_of: HashMap<PathBuf, usize> = folder
        .files()
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i))
        .collect();
    for b in &bad {
        let i = index_of[b];
        // A manifest with just that file: the first sample is the bad one.
        let csv = dir.path().join("one.csv");
        std::fs::write(&csv, format!("path,label\n{},0\n", b.display())).unwrap();
        for workers in [0, 2] {
            let mut l = Loader::builder(ImageFolder::from_manifest(&csv).unwrap())
                .batch_size(1)
                .size(64, 36)
                .num_workers(workers)
                .build()
                .unwrap();
            let mut it = l.epoch(0);
            let err = it.next().unwrap().unwrap_err();
            assert!(it.next().is_none(), "the epoch ends after an error");
            assert_eq!(err.index(), Some(0));
            assert_eq!(err.path(), Some(b.as_path()));
            assert!(err.to_string().contains(&b.display().to_string()), "{err}");
            assert!(matches!(err.kind(), ErrorKind::Decode), "{err}");
        }
        // And in the whole folder, under the default policy, the epoch stops at that sample.
        let mut l = Loader::builder(ImageFolder::open(dir.path()).unwrap())
            .batch_size(1)
            .size(64, 36)
            .num_workers(2)
            .build()
            .unwrap();
        let err = l
            .epoch(0)
            .find_map(|b| b.err())
            .expect("an error somewhere");
        assert_eq!(
            err.index(),
            Some(index_of[&bad[0]]),
            "first bad one in order: {err}"
        );
        let _ = i;
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::canonicalize(&ImageFolder::open(FOLDER).unwrap().files()[0]).unwrap();
    let missing = dir.path().join("gone.jpg");
    let csv = dir.path().join("m.csv");
    std::fs::write(
        &csv,
        format!("{},1\n{},2\n", good.display(), missing.display()),
    )
    .unwrap();
    let mut l = Loader::builder(ImageFolder::from_manifest(&csv).unwrap())
        .batch_size(2)
        .num_workers(1)
        .build()
        .unwrap();
    let err = l.epoch(0).next().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(err.index(), Some(1));
    assert_eq!(err.path(), Some(missing.as_path()));
}

#[test]
fn skip_policy_counts_bad_files_and_keeps_batches_full() {
    let dir = tempfile::tempdir().unwrap();
    let bad = folder_with_bad_files(dir.path());
    let folder = ImageFolder::open(dir.path()).unwrap();
    let good_order: Vec<usize> = (0..folder.len())
        .filter(|&i| !bad.contains(&folder.files()[i]))
        .collect();
    for workers in [0, 1, 2] {
        let mut l = Loader::builder(ImageFolder::open(dir.path()).unwrap())
            .batch_size(4)
            .size(64, 36)
            .num_workers(workers)
            .on_error(OnError::Skip)
            .max_skipped(stoker::SkipBound::Fraction(1.0)) // these tests skip many on purpose
            .build()
            .unwrap();
        let batches: Vec<_> = l.epoch(0).map(|b| b.unwrap()).collect();
        // 14 files, 4 bad: 10 good samples in batches of 4, 4, 2, in order.
        assert_eq!(
            batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let got: Vec<usize> = batches.iter().flat_map(|b| b.indices().to_vec()).collect();
        assert_eq!(got, good_order);
        let s = l.stats();
        assert_eq!(s.skipped, 4);
        assert_eq!(s.skipped_by_kind, vec![(ErrorKind::Decode, 4)]);
        assert_eq!(s.skipped_samples.len(), 4);
        for p in &bad {
            assert!(
                s.skipped_samples
                    .iter()
                    .any(|k| k.message.contains(&p.display().to_string())),
                "{p:?} not in {:?}",
                s.skipped_samples
            );
        }
        // The moved samples hold the right pixels: equal to a clean folder of the good files.
        let clean = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(clean.path().join("class-a")).unwrap();
        for &i in &good_order {
            let p = &folder.files()[i];
            std::fs::copy(p, clean.path().join("class-a").join(p.file_name().unwrap())).unwrap();
        }
        let mut c = Loader::builder(ImageFolder::open(clean.path()).unwrap())
            .batch_size(4)
            .size(64, 36)
            .num_workers(workers)
            .build()
            .unwrap();
        let clean_bytes: Vec<Vec<u8>> =
            c.epoch(0).map(|b| b.unwrap().as_bytes().to_vec()).collect();
        let got_bytes: Vec<Vec<u8>> = batches.iter().map(|b| b.as_bytes().to_vec()).collect();
        assert_eq!(got_bytes, clean_bytes);
    }
}

#[test]
fn skip_policy_with_drop_last_still_fills_full_batches() {
    let mut src = Synthetic::new(20);
    src.fail_at = [0, 5, 6, 19].into_iter().collect();
    let mut l = Loader::builder(src)
        .batch_size(4)
        .drop_last(true)
        .num_workers(2)
        .on_error(OnError::Skip)
        .max_skipped(stoker::SkipBound::Fraction(1.0)) // these tests skip many on purpose
        .build()
        .unwrap();
    let b = epoch_indices(&mut l, 0);
    let expect: Vec<usize> = (0..20).filter(|i| ![0, 5, 6, 19].contains(i)).collect();
    assert_eq!(b, expect.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>());
}

#[test]
fn a_worker_panic_reaches_the_consumer_as_an_error() {
    for workers in [0, 1, 2] {
        let mut src = Synthetic::new(30);
        src.panic_at = Some(13);
        let mut l = Loader::builder(src)
            .batch_size(4)
            .num_workers(workers)
            .build()
            .unwrap();
        // Keep only the outcome of each batch (holding every batch would exhaust the pool).
        let results: Vec<Result<usize>> = l.epoch(0).map(|b| b.map(|b| b.len())).collect();
        let err = results.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panic);
        assert_eq!(err.index(), Some(13));
        assert!(err.to_string().contains("synthetic panic at 13"), "{err}");
        assert_eq!(results.len(), 4, "three good batches then the error");
        // The loader still works afterwards (the worker survived).
        let mut l2 = l;
        let n: usize = l2.epoch_from(0, 16).map(|b| b.unwrap().len()).sum();
        assert_eq!(n, 14);
    }
}

#[test]
fn the_skip_policy_skips_data_errors_only() {
    for workers in [0, 2] {
        // A panic is never skipped: the epoch stops at it.
        let mut src = Synthetic::new(12);
        src.panic_at = Some(5);
        src.fail_at = [2].into_iter().collect();
        let mut l = Loader::builder(src)
            .batch_size(4)
            .num_workers(workers)
            .on_error(OnError::Skip)
            .max_skipped(stoker::SkipBound::Fraction(1.0)) // these tests skip many on purpose
            .build()
            .unwrap();
        let results: Vec<Result<Vec<usize>>> = l
            .epoch(0)
            .map(|b| b.map(|b| b.indices().to_vec()))
            .collect();
        assert_eq!(results[0].as_ref().unwrap(), &[0, 1, 3, 4]);
        let err = results[1].as_ref().unwrap_err();
        assert_eq!((err.kind(), err.index()), (ErrorKind::Panic, Some(5)));
        assert_eq!(results.len(), 2, "nothing after the panic");
        // The data error before it was skipped and counted; the panic was not.
        assert_eq!(l.stats().skipped_by_kind, vec![(ErrorKind::Decode, 1)]);

        // A usage error from a transform is not skipped either.
        let mut l = Loader::builder(Synthetic::new(8))
            .batch_size(4)
            .num_workers(workers)
            .on_error(OnError::Skip)
            .max_skipped(stoker::SkipBound::Fraction(1.0)) // these tests skip many on purpose
            .transform(Arc::new(FailAt(6)))
            .build()
            .unwrap();
        let results: Vec<Result<usize>> = l.epoch(0).map(|b| b.map(|b| b.len())).collect();
        assert_eq!(*results[0].as_ref().unwrap(), 4);
        let err = results[1].as_ref().unwrap_err();
        assert_eq!((err.kind(), err.index()), (ErrorKind::Usage, Some(6)));
        assert_eq!(l.stats().skipped, 0);
    }
}

/// A transform that rejects sample `self.0` with a usage error (as a buggy transform would).
struct FailAt(usize);

impl stoker::transform::Transform for FailAt {
    fn apply(
        &self,
        info: stoker::transform::SampleInfo,
        img: &ImageView<'_>,
        _rng: &mut stoker::rng::SampleRng,
        out: &mut stoker::transform::SlotWriter<'_>,
    ) -> Result<()> {
        if info.index == self.0 {
            return Err(stoker::Error::usage("synthetic transform bug"));
        }
        out.store(img)
    }

    fn name(&self) -> &str {
        "fail-at"
    }
}

/// Runs `f` on a thread and fails the test if it does not finish in time (never hang CI).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("did not finish in time: a hang")
}

#[test]
fn dropping_mid_epoch_stops_and_joins_every_thread() {
    within(60, || {
        let mut l = Loader::builder(ImageFolder::open(FOLDER).unwrap())
            .batch_size(4)
            .num_workers(3)
            .prefetch(4)
            .build()
            .unwrap();
        let first = l.epoch(0).next().unwrap().unwrap();
        // A new epoch after abandoning one mid-way starts clean.
        let again = l.epoch(0).next().unwrap().unwrap();
        assert_eq!(first.indices(), again.indices());
        assert_eq!(first.as_bytes(), again.as_bytes());
        let mut it = l.epoch(1);
        it.next().unwrap().unwrap();
        drop(it);
        drop(l); // joins the workers
        // The batches outlive the loader.
        assert_eq!(first.len(), 4);
    });
}

#[test]
fn holding_every_buffer_is_an_error_not_a_hang() {
    within(60, || {
        let mut l = Loader::builder(Synthetic::new(40))
            .batch_size(2)
            .prefetch(1)
            .num_workers(1)
            .build()
            .unwrap();
        let mut it = l.epoch(0);
        let held: Vec<_> = (0..3).map(|_| it.next().unwrap().unwrap()).collect();
        let err = it.next().unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PoolExhausted);
        assert!(err.kind().is_usage());
        assert!(err.to_string().contains("held by the consumer"), "{err}");
        drop(held);
    });
}

#[test]
fn output_formats_have_the_right_shapes_and_values() {
    let mut u8_nhwc = Loader::builder(npy())
        .batch_size(4)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap();
    let raw = u8_nhwc.epoch(0).next().unwrap().unwrap();
    let raw = raw.images::<u8>().unwrap().to_owned();
    assert_eq!(raw.shape(), &[4, 144, 256, 3]);

    let mut f32_nchw = Loader::builder(npy())
        .batch_size(4)
        .normalize(Normalize::imagenet())
        .build()
        .unwrap();
    let b = f32_nchw.epoch(0).next().unwrap().unwrap();
    let x = b.images::<f32>().unwrap();
    assert_eq!(x.shape(), &[4, 3, 144, 256]);
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    for (n, c, y, w) in [(0, 0, 0, 0), (3, 2, 143, 255), (1, 1, 70, 9)] {
        let v = raw[[n, y, w, c]] as f32 / 255.0;
        let expect = (v - mean[c]) / std[c];
        assert!((x[[n, c, y, w]] - expect).abs() < 1e-5);
    }

    let mut bf = Loader::builder(npy())
        .batch_size(4)
        .dtype(DType::BF16)
        .size(128, 72)
        .build()
        .unwrap();
    let b = bf.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.images::<half::bf16>().unwrap().shape(), &[4, 3, 72, 128]);
}

#[test]
fn bad_settings_are_usage_errors() {
    let e = Loader::builder(npy()).batch_size(0).build().err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
    let e = Loader::builder(npy()).prefetch(0).build().err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
    let e = Loader::builder(npy()).channels(1).build().err().unwrap();
    assert!(e.to_string().contains("channel"), "{e}");
    let e = Loader::builder(npy())
        .distributed(4, 4)
        .build()
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
    let e = Loader::builder(npy())
        .dtype(DType::U8)
        .normalize(Normalize::imagenet())
        .build()
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
}

#[test]
fn stats_count_bytes_and_stage_times() {
    // Without the next epoch started ahead, which would read more than this epoch's files.
    let mut l = Loader::builder(ImageFolder::open(FOLDER).unwrap())
        .batch_size(8)
        .num_workers(2)
        .prefetch_next_epoch(false)
        .build()
        .unwrap();
    for b in l.epoch(0) {
        b.unwrap();
    }
    let s = l.stats();
    let on_disk: u64 = ImageFolder::open(FOLDER)
        .unwrap()
        .files()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(s.bytes_read, on_disk);
    assert_eq!((s.samples, s.batches), (32, 4));
    assert!(s.decode > Duration::ZERO && s.write > Duration::ZERO && s.read > Duration::ZERO);
    assert!(s.to_string().contains("32 samples in 4 batches"));
}

#[test]
fn the_shared_source_can_be_an_arc() {
    let src = Arc::new(npy());
    let mut l = Loader::builder(Arc::clone(&src))
        .batch_size(16)
        .build()
        .unwrap();
    assert_eq!(epoch_indices(&mut l, 0).len(), 2);
    assert_eq!(src.len(), 32);
}

/// Counts the samples the workers make (each `apply` call).
struct Counting(Arc<std::sync::atomic::AtomicUsize>);

impl stoker::transform::Transform for Counting {
    fn apply(
        &self,
        _info: stoker::transform::SampleInfo,
        img: &ImageView<'_>,
        _rng: &mut stoker::rng::SampleRng,
        out: &mut stoker::transform::SlotWriter<'_>,
    ) -> Result<()> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        out.store(img)
    }

    fn name(&self) -> &str {
        "counting"
    }
}

/// Polls `f` until it holds (a state the workers reach on their own), failing after 20 s.
fn eventually(mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "never reached");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_next_epoch_starts_ahead_and_its_work_is_taken_over() {
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = || made.load(std::sync::atomic::Ordering::SeqCst);
    // 40 samples, batches of 4, 2 batches ahead: a window of 8 samples.
    let mut l = Loader::builder(Synthetic::new(40))
        .batch_size(4)
        .prefetch(2)
        .num_workers(2)
        .shuffle(true)
        .seed(5)
        .transform(Arc::new(Counting(Arc::clone(&made))))
        .build()
        .unwrap();
    let first = digest_epochs(&mut l, 0..1);
    // Between epochs, the workers make the first window of epoch 1, and no more.
    eventually(|| count() == 40 + 8);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(count(), 48);
    // Epoch 1 takes that work over: nothing is made twice.
    let second = digest_epochs(&mut l, 1..2);
    eventually(|| count() == 80 + 8);
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 88);
    let mut cold = Loader::builder(Synthetic::new(40))
        .batch_size(4)
        .prefetch(2)
        .num_workers(2)
        .shuffle(true)
        .seed(5)
        .prefetch_next_epoch(false)
        .build()
        .unwrap();
    assert_eq!(first, digest_epochs(&mut cold, 0..1));
    assert_eq!(second, digest_epochs(&mut cold, 1..2));
}

/// The digest of the batches of `epochs`, one epoch after the other.
fn digest_epochs<S: Source>(l: &mut Loader<S>, epochs: std::ops::Range<u64>) -> String {
    let mut d = Digest::new();
    for e in epochs {
        for b in l.epoch(e) {
            d.update(&b.unwrap());
        }
    }
    d.hex()
}

#[test]
fn any_other_call_discards_the_work_ahead() {
    let build = |ahead: bool| {
        Loader::builder(Synthetic::new(30))
            .batch_size(4)
            .num_workers(3)
            .shuffle(true)
            .seed(9)
            .prefetch_next_epoch(ahead)
            .build()
            .unwrap()
    };
    let (mut ahead, mut cold) = (build(true), build(false));
    fn take(it: stoker::Epoch<'_, Synthetic>, out: &mut Vec<(Vec<usize>, Vec<u8>)>) {
        for b in it {
            let b = b.unwrap();
            out.push((b.indices().to_vec(), b.as_bytes().to_vec()));
        }
    }
    let run = |l: &mut Loader<Synthetic>| {
        let mut out = Vec::new();
        take(l.epoch(0), &mut out);
        take(l.epoch_from(1, 6), &mut out); // a resume, not what was guessed
        take(l.epoch(3), &mut out); // a skipped epoch
        take(l.epoch_range(4, 8..20), &mut out);
        take(l.epoch_range(5, 8..20), &mut out); // the same range of the next epoch: taken over
        take(l.epoch(5), &mut out); // the whole epoch after a range
        let mut e = l.epoch(6);
        e.next().unwrap().unwrap(); // abandoned mid-way
        drop(e);
        take(l.epoch(7), &mut out);
        out
    };
    assert_eq!(run(&mut ahead), run(&mut cold));
}

#[test]
fn skipping_and_drop_last_give_the_same_batches_with_work_ahead() {
    for workers in [1, 2, 3] {
        let build = |ahead: bool| {
            let mut src = Synthetic::new(37);
            src.fail_at = [0, 5, 6, 36].into_iter().collect();
            Loader::builder(src)
                .batch_size(4)
                .num_workers(workers)
                .shuffle(true)
                .seed(2)
                .drop_last(true)
                .on_error(OnError::Skip)
                .max_skipped(stoker::SkipBound::Fraction(1.0)) // these tests skip many on purpose
                .prefetch_next_epoch(ahead)
                .build()
                .unwrap()
        };
        let (mut ahead, mut cold) = (build(true), build(false));
        assert_eq!(
            digest_epochs(&mut ahead, 0..4),
            digest_epochs(&mut cold, 0..4),
            "{workers} workers"
        );
        assert_eq!(ahead.stats().skipped, cold.stats().skipped);
        assert_eq!(ahead.stats().samples, cold.stats().samples);
    }
}
