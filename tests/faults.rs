//! Faults injected into a running loader: a transform that panics, an epoch abandoned mid-way,
//! a loader dropped while its workers block on slow reads, a data file replaced while mapped.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use stoker::augment::Augment;
use stoker::source::{ImageFolder, Item, NpySource, Raw, Source, TarSource, TarWriter, save_npy};
use stoker::transform::{SampleInfo, SlotWriter, Transform};
use stoker::{DType, ErrorKind, ImageView, Layout, Loader, Normalize, Pixels, Result};

const FOLDER: &str = "fixtures/photos-256x144";

/// Runs `f` on a thread and fails the test if it does not finish in time (never hang CI).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("did not finish in time: a hang")
}

/// Keras-style augmentation that panics once, on sample `at` of epoch 0, while `armed`.
struct PanicOnce {
    at: usize,
    armed: AtomicBool,
    inner: Augment,
}

impl Transform for PanicOnce {
    fn apply(
        &self,
        info: SampleInfo,
        img: &ImageView<'_>,
        rng: &mut stoker::rng::SampleRng,
        out: &mut SlotWriter<'_>,
    ) -> Result<()> {
        if info.epoch == 0 && info.index == self.at && self.armed.swap(false, Ordering::SeqCst) {
            panic!("transform bug at sample {}", info.index);
        }
        self.inner.apply(info, img, rng, out)
    }

    fn name(&self) -> &str {
        "panic-once"
    }
}

fn augmented(t: Arc<dyn Transform>, workers: usize) -> Loader<ImageFolder> {
    Loader::builder(ImageFolder::open(FOLDER).unwrap())
        .batch_size(4)
        .shuffle(true)
        .seed(11)
        .num_workers(workers)
        .dtype(DType::F16)
        .normalize(Normalize::imagenet())
        .transform(t)
        .build()
        .unwrap()
}

type Batches = Vec<(Vec<usize>, Vec<u8>, usize)>;

fn collect(it: impl Iterator<Item = Result<stoker::Batch>>) -> Batches {
    it.map(|b| {
        let b = b.unwrap();
        (
            b.indices().to_vec(),
            b.as_bytes().to_vec(),
            b.next_position(),
        )
    })
    .collect()
}

#[test]
fn a_panicking_transform_names_its_sample_and_the_next_epoch_runs_unchanged() {
    for workers in [0, 1, 2] {
        within(120, move || {
            let clean = collect(
                augmented(Arc::new(Augment::keras_default()), workers)
                    .epoch(1)
                    .by_ref(),
            );
            let t = Arc::new(PanicOnce {
                at: 7,
                armed: AtomicBool::new(true),
                inner: Augment::keras_default(),
            });
            let mut l = augmented(t.clone(), workers);
            let results: Vec<Result<usize>> = l.epoch(0).map(|b| b.map(|b| b.len())).collect();
            let err = results.last().unwrap().as_ref().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Panic, "{workers} workers: {err}");
            assert_eq!(err.index(), Some(7));
            assert!(
                err.to_string().contains("transform bug at sample 7"),
                "{err}"
            );
            assert!(!t.armed.load(Ordering::SeqCst), "the panic happened");
            assert!(results[..results.len() - 1].iter().all(|r| r.is_ok()));
            // The worker that panicked lives on: the next epoch is the one a clean loader gives,
            // bit for bit (no sample lost, no random stream shifted).
            let next = collect(l.epoch(1).by_ref());
            assert_eq!(next, clean, "{workers} workers");
        });
    }
}

#[test]
fn an_epoch_dropped_mid_way_then_resumed_gives_the_uninterrupted_batches() {
    for workers in [0, 2] {
        within(180, move || {
            let mut l = augmented(Arc::new(Augment::keras_default()), workers);
            let full = collect(l.epoch(2).by_ref());
            assert!(full.len() >= 4, "{}", full.len());
            for k in [1, full.len() / 2, full.len() - 1] {
                // Take k batches, drop the epoch while the workers still run ahead of it, then
                // resume from the checkpoint the last batch gave.
                let mut it = l.epoch(2);
                let head: Batches = collect(it.by_ref().take(k));
                drop(it);
                let resume_at = head.last().unwrap().2;
                let mut tail = collect(l.epoch_from(2, resume_at).by_ref());
                let mut joined = head;
                joined.append(&mut tail);
                assert_eq!(joined, full, "{workers} workers, dropped after batch {k}");
            }
        });
    }
}

/// A source whose reads block for `delay` each, counting the reads in progress.
struct Slow {
    n: usize,
    delay: Duration,
    reading: AtomicUsize,
    started: AtomicUsize,
    px: [u8; 24],
}

impl Source for Slow {
    fn len(&self) -> usize {
        self.n
    }
    fn get<'a>(&'a self, _i: usize, _buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.reading.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.reading.fetch_sub(1, Ordering::SeqCst);
        Ok(Item {
            raw: Raw::Pixels(ImageView::new(4, 2, 3, Pixels::U8(&self.px)).unwrap()),
            label: None,
        })
    }
    fn path(&self, _i: usize) -> Option<&Path> {
        None
    }
    fn has_labels(&self) -> bool {
        false
    }
    fn channels(&self) -> Option<usize> {
        Some(3)
    }
    fn size(&self) -> Option<(usize, usize)> {
        Some((4, 2))
    }
}

#[test]
fn dropping_the_loader_while_reads_block_joins_every_thread_within_a_bound() {
    for (workers, hold_batch) in [(2, false), (2, true), (4, false), (0, false)] {
        // 400 reads of 150 ms: the epoch would take 15 s or more on 4 workers, 60 s on none.
        let src = Arc::new(Slow {
            n: 400,
            delay: Duration::from_millis(150),
            reading: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            px: [9; 24],
        });
        let held = Arc::clone(&src);
        within(10, move || {
            let mut l = Loader::builder(Arc::clone(&src))
                .batch_size(4)
                .num_workers(workers)
                .prefetch(2)
                .build()
                .unwrap();
            let mut it = l.epoch(0);
            let first = it.next().unwrap().unwrap();
            assert_eq!(first.len(), 4);
            drop(it);
            // A batch may outlive its loader; the workers stop either way.
            let held = hold_batch.then_some(first);
            drop(l);
            drop(held);
        });
        // Every thread is joined: none holds the source, and no read is left in progress.
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "{workers} workers: a thread still holds the source"
        );
        assert_eq!(held.reading.load(Ordering::SeqCst), 0);
        let started = held.started.load(Ordering::SeqCst);
        assert!(
            started < 40,
            "{workers} workers read on after the drop: {started}"
        );
    }
}

fn epoch_bytes<S: Source>(l: &mut Loader<S>, e: u64) -> Vec<Vec<u8>> {
    l.epoch(e).map(|b| b.unwrap().as_bytes().to_vec()).collect()
}

#[test]
fn a_data_file_renamed_over_while_mapped_keeps_its_old_contents_for_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    // NPY: the shard and the labels.
    let path = dir.path().join("images.npy");
    let (old, new) = (vec![1u8; 6 * 4 * 2 * 3], vec![2u8; 6 * 4 * 2 * 3]);
    save_npy(&path, "|u1", &[6, 2, 4, 3], &old).unwrap();
    let mut l = Loader::builder(NpySource::open(&path, None).unwrap())
        .batch_size(3)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap();
    let before = epoch_bytes(&mut l, 0);
    assert_eq!(before.concat(), old);
    // Replace it the way `stoker convert` writes: a new file renamed over the old name.
    stoker::source::write_with(&path, |tmp| save_npy(tmp, "|u1", &[6, 2, 4, 3], &new)).unwrap();
    assert_eq!(
        epoch_bytes(&mut l, 1),
        before,
        "the mapped file changed under the loader"
    );
    // A source opened now sees the new contents.
    let mut l2 = Loader::builder(NpySource::open(&path, None).unwrap())
        .batch_size(3)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap();
    assert_eq!(epoch_bytes(&mut l2, 0).concat(), new);

    // Tar shards are mapped too.
    let png = |v: u8| {
        let mut out = Vec::new();
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&[v; 8 * 4 * 3], 8, 4, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    };
    let shard = dir.path().join("shard.tar");
    let write_tar = |tmp: &Path, v: u8| {
        let f = std::fs::File::create(tmp).unwrap();
        let mut w = TarWriter::new(f);
        for i in 0..4 {
            w.append_sample(&format!("{i:04}"), "png", &png(v), Some(i))
                .unwrap();
        }
        w.finish().unwrap();
        Ok(())
    };
    write_tar(&shard, 10).unwrap();
    let mut l = Loader::builder(TarSource::open(&shard).unwrap())
        .batch_size(2)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap();
    let before = epoch_bytes(&mut l, 0);
    assert!(before.concat().iter().all(|&v| v == 10));
    stoker::source::write_with(&shard, |tmp| write_tar(tmp, 20)).unwrap();
    assert_eq!(epoch_bytes(&mut l, 1), before);
}

/// `poll_batch` returns `Pending` while reads are slow, never loses a sample across the
/// returns, and gives the batches of an `Epoch` iterator; `begin_epoch` past the end is a
/// usage error, and `end_epoch` mid-way lets a new pass start cleanly.
#[test]
fn polling_with_a_deadline_waits_in_steps_and_yields_the_epoch_s_batches() {
    let slow = || Slow {
        n: 10,
        delay: Duration::from_millis(15),
        reading: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        px: [7; 24],
    };
    for workers in [0, 2] {
        let mut l = Loader::builder(slow())
            .batch_size(3)
            .num_workers(workers)
            .build()
            .unwrap();
        let want: Vec<Vec<usize>> = l.epoch(1).map(|b| b.unwrap().indices().to_vec()).collect();
        l.begin_epoch(1, 0).unwrap();
        let (mut got, mut pending) = (Vec::new(), 0);
        loop {
            match l.poll_batch(Duration::from_millis(1)) {
                std::task::Poll::Pending => pending += 1,
                std::task::Poll::Ready(Some(b)) => got.push(b.unwrap().indices().to_vec()),
                std::task::Poll::Ready(None) => break,
            }
        }
        assert_eq!(got, want, "{workers} workers");
        if workers > 0 {
            // 15 ms reads against 1 ms waits: the caller got control back many times.
            assert!(pending > 5, "{pending}");
        }
        let e = l.begin_epoch(1, 11).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        l.begin_epoch(2, 3).unwrap();
        let first = l.next_batch().unwrap().unwrap();
        assert_eq!(first.first_position(), 3);
        drop(first);
        l.end_epoch();
        l.begin_epoch(2, 0).unwrap();
        assert_eq!(l.next_batch().unwrap().unwrap().first_position(), 0);
    }
}
