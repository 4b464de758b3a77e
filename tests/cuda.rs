//! The cuda feature without a GPU: every entry point is a clear error, never a panic.
#![cfg(feature = "cuda")]

use std::sync::Arc;

use stoker::cuda::{driver_present, Device, PinnedAlloc, NO_DRIVER};
use stoker::source::NpySource;
use stoker::{ErrorKind, Loader};

#[test]
fn open_without_driver_is_a_clear_error() {
    if driver_present() {
        eprintln!("skipped: an NVIDIA driver is present");
        return;
    }
    let e = Device::open(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().starts_with(NO_DRIVER), "{e}");
    assert!(
        e.to_string().starts_with("config: no NVIDIA driver found:"),
        "{e}"
    );
    let e = Device::count().unwrap_err();
    assert!(e.message().starts_with(NO_DRIVER), "{e}");
}

#[test]
fn pinned_alloc_without_driver_is_a_clear_error() {
    if driver_present() {
        eprintln!("skipped: an NVIDIA driver is present");
        return;
    }
    let e = PinnedAlloc::new(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().starts_with(NO_DRIVER), "{e}");
}

/// With a driver and a GPU: the ring is pinned and batches are unchanged.
#[test]
fn pinned_ring_when_a_gpu_is_present() {
    let Ok(alloc) = PinnedAlloc::new(0) else {
        eprintln!("skipped: no usable GPU 0");
        return;
    };
    let open = || NpySource::glob("fixtures/npy/images-*.npy", None).unwrap();
    let mut pinned = Loader::builder(open())
        .batch_size(8)
        .allocator(Arc::new(alloc))
        .build()
        .unwrap();
    assert_eq!(pinned.allocator_name(), "pinned");
    let mut plain = Loader::builder(open()).batch_size(8).build().unwrap();
    let a: Vec<Vec<f32>> = pinned
        .epoch(0)
        .map(|b| {
            b.unwrap()
                .images::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect();
    let b: Vec<Vec<f32>> = plain
        .epoch(0)
        .map(|b| {
            b.unwrap()
                .images::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect();
    assert_eq!(a, b);
}

/// With a driver and a GPU: pinned copies are measured, and not slower than pageable ones.
#[test]
fn h2d_bandwidth_when_a_gpu_is_present() {
    let Ok(gpu) = Device::open(0) else {
        eprintln!("skipped: no usable GPU 0");
        return;
    };
    assert!(gpu.h2d_bandwidth(0, 1).is_err());
    let bw = gpu.h2d_bandwidth(32 << 20, 5).unwrap();
    eprintln!("{bw:?}");
    assert!(bw.pinned_gbps > 0.5 && bw.pageable_gbps > 0.1, "{bw:?}");
    assert!(bw.pinned_gbps >= 0.9 * bw.pageable_gbps, "{bw:?}");
}
