//! Steady state allocates nothing per batch, and memory stays flat over many epochs.
//!
//! A counting global allocator sees every Rust allocation in the process, workers included.
//! This file holds a single test so that no other test thread allocates at the same time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use stoker::source::{ImageFolder, NpySource, Source};
use stoker::{DType, Loader, Normalize};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::SeqCst)
}

/// Resident set size in bytes (Linux), or `None` elsewhere.
fn rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Allocations made while iterating batches 1.. of each epoch (the first batch of an epoch
/// pays for nothing either, but the epoch's start is where one-off work would live).
fn allocations_per_epoch<S: Source + 'static>(
    loader: &mut Loader<S>,
    epochs: std::ops::Range<u64>,
) -> Vec<u64> {
    let mut per = Vec::new();
    for e in epochs {
        let mut it = loader.epoch(e);
        let first = it.next().unwrap().unwrap();
        drop(first);
        let before = allocs();
        let mut n = 0;
        for b in it.by_ref() {
            let b = b.unwrap();
            n += b.len();
        }
        per.push(allocs() - before);
        assert!(n > 0);
    }
    per
}

#[test]
fn steady_state_allocates_nothing_per_batch_and_rss_stays_flat() {
    // JPEG folder: file read into a reused buffer, libjpeg-turbo decode into reused scratch,
    // fused store into the slot. (libjpeg-turbo's own C-side memory pools are not counted:
    // they are the C library's, per image, and freed at once.) A worker's read buffer grows
    // until that worker has met the largest file: with one worker, the warm-up epochs show it
    // every file.
    for workers in [0, 1] {
        let mut l = Loader::builder(ImageFolder::open("fixtures/photos-256x144").unwrap())
            .batch_size(4)
            .shuffle(true)
            .num_workers(workers)
            .prefetch(2)
            .dtype(DType::F16)
            .normalize(Normalize::imagenet())
            .build()
            .unwrap();
        allocations_per_epoch(&mut l, 0..2); // warm up: buffers grow to the largest file
        let per = allocations_per_epoch(&mut l, 2..5);
        assert_eq!(per, [0, 0, 0], "jpeg folder, {workers} workers");
    }

    // CMYK and YCCK JPEGs (at their stored size): decoded to CMYK into the decoder's raw
    // buffer, converted to RGB into its decode buffer, both reused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    for k in 0..8 {
        let name = ["cmyk.jpg", "ycck.jpg"][k % 2];
        std::fs::copy(
            format!("fixtures/decode/{name}"),
            dir.path().join(format!("a/{k}-{name}")),
        )
        .unwrap();
    }
    for workers in [0, 1] {
        let mut l = Loader::builder(ImageFolder::open(dir.path()).unwrap())
            .batch_size(2)
            .shuffle(true)
            .num_workers(workers)
            .dtype(DType::F32)
            .build()
            .unwrap();
        allocations_per_epoch(&mut l, 0..2);
        let per = allocations_per_epoch(&mut l, 2..5);
        assert_eq!(per, [0, 0, 0], "cmyk folder, {workers} workers");
    }

    // NPY with two workers: zero-copy from the memory map into the slots. (Resizing to
    // another size goes through fast_image_resize, which builds its filter tables on every
    // call: that path allocates, and is documented to.)
    let src = NpySource::glob(
        "fixtures/npy/images-*.npy",
        Some("fixtures/npy/labels-*.npy"),
    )
    .unwrap();
    let mut l = Loader::builder(src)
        .batch_size(3)
        .shuffle(true)
        .num_workers(2)
        .dtype(DType::BF16)
        .build()
        .unwrap();
    allocations_per_epoch(&mut l, 0..2);
    let per = allocations_per_epoch(&mut l, 2..8);
    assert_eq!(per, [0; 6], "npy, 2 workers");

    // RSS over 20 epochs of the default data: flat once warmed up.
    let mut l = Loader::builder(ImageFolder::open("fixtures/photos-256x144").unwrap())
        .batch_size(8)
        .shuffle(true)
        .num_workers(2)
        .build()
        .unwrap();
    allocations_per_epoch(&mut l, 0..2);
    if let Some(start) = rss() {
        allocations_per_epoch(&mut l, 2..22);
        let end = rss().unwrap();
        let grew = end.saturating_sub(start);
        assert!(
            grew < 2 << 20,
            "rss grew by {grew} bytes over 20 epochs ({start} -> {end})"
        );
    }
}
