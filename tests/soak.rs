//! Soak: the resident memory of a loader that runs epoch after epoch (augmentation on, a skip
//! policy skipping a bad file every epoch) stays within 5% of its value after the first 5
//! epochs. CI runs 30 epochs; the full 200:
//! `cargo test --test soak -- --ignored --nocapture`.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::sync::{Arc, Mutex};

use stoker::augment::Augment;
use stoker::source::ImageFolder;
use stoker::{DType, Loader, Normalize, OnError};

/// One soak at a time: both measure this process's memory.
static SERIAL: Mutex<()> = Mutex::new(());

/// This process's resident set, in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The fixtures plus one truncated JPEG (skipped every epoch), in `dir`.
fn data_set(dir: &Path) -> ImageFolder {
    let src = Path::new("fixtures/photos-256x144");
    for class in std::fs::read_dir(src).unwrap() {
        let class = class.unwrap().path();
        let to = dir.join(class.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let good = std::fs::read("fixtures/photos-256x144/class-a/photo-00.jpg").unwrap();
    std::fs::write(dir.join("class-a/cut.jpg"), &good[..good.len() / 2]).unwrap();
    ImageFolder::open(dir).unwrap()
}

/// Runs `epochs` epochs; returns the resident set after epoch 5 and the largest after it.
fn soak(epochs: u64) -> (u64, u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut l = Loader::builder(data_set(dir.path()))
        .batch_size(8)
        .shuffle(true)
        .num_workers(2)
        .dtype(DType::F16)
        .normalize(Normalize::imagenet())
        .transform(Arc::new(Augment::keras_default()))
        .on_error(OnError::Skip)
        .build()
        .unwrap();
    let (mut base, mut peak) = (0, 0);
    for e in 0..epochs {
        let mut samples = 0;
        for b in l.epoch(e) {
            samples += b.unwrap().len();
        }
        assert_eq!(
            samples, 32,
            "epoch {e}: every readable sample, the bad one skipped"
        );
        if e == 4 {
            base = rss_kib();
        } else if e > 4 {
            peak = peak.max(rss_kib());
        }
    }
    let stats = l.stats();
    // One skip per epoch (and perhaps one in the epoch the workers started ahead).
    let skipped = stats.skipped as u64;
    assert!((epochs..=epochs + 1).contains(&skipped), "{skipped} skips");
    println!(
        "soak: {epochs} epochs, rss after 5 epochs {base} KiB, largest after {peak} KiB ({:+.2}%)",
        (peak as f64 / base as f64 - 1.0) * 100.0
    );
    (base, peak)
}

fn assert_flat((base, peak): (u64, u64)) {
    assert!(
        peak as f64 <= base as f64 * 1.05,
        "resident memory grew from {base} KiB to {peak} KiB"
    );
}

#[test]
fn resident_memory_stays_flat_over_30_epochs() {
    assert_flat(soak(30));
}

#[test]
#[ignore = "the full soak (seconds; run by hand): cargo test --test soak -- --ignored --nocapture"]
fn resident_memory_stays_flat_over_200_epochs() {
    assert_flat(soak(200));
}
