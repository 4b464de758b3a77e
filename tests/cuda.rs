//! The cuda feature without a GPU: every entry point is a clear error, never a panic.
#![cfg(feature = "cuda")]

use std::sync::Arc;

use stoker::cuda::{Device, NO_DRIVER, PinnedAlloc, driver_present};
use stoker::source::NpySource;
use stoker::{ErrorKind, Loader};

#[test]
fn open_without_driver_is_a_clear_error() {
    if driver_present() {
        eprintln!("skipped: an NVIDIA driver is present");
        return;
    }
    let e = Device::open(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoDevice);
    assert!(e.message().starts_with(NO_DRIVER), "{e}");
    assert!(
        e.to_string()
            .starts_with("no device: no NVIDIA driver found:"),
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
    assert_eq!(e.kind(), ErrorKind::NoDevice);
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
    assert_eq!(images(&mut pinned), images(&mut plain));
}

/// Every image of epoch 0, batch by batch.
fn images<S: stoker::source::Source>(l: &mut Loader<S>) -> Vec<Vec<f32>> {
    l.epoch(0)
        .map(|b| {
            b.unwrap()
                .images::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        })
        .collect()
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

/// NVRTC compiles the conversion kernel (no GPU needed) with multiplies and adds kept apart
/// (`--fmad=false`), which is what makes it bit-identical to the CPU. Without the library:
/// a clear error. CI sets `STOKER_REQUIRE_NVRTC=1` (and fetches libnvrtc) so this cannot skip.
#[test]
fn nvrtc_compiles_the_convert_kernel_without_fused_multiply_add() {
    use stoker::cuda::{NO_NVRTC, compile_ptx, nvrtc_present};
    use stoker::gpu_convert::{KERNEL_NAME, KERNEL_SOURCE};
    if !nvrtc_present() {
        assert!(
            std::env::var_os("STOKER_REQUIRE_NVRTC").is_none(),
            "STOKER_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)"
        );
        let e = compile_ptx(KERNEL_SOURCE, "convert.cu").unwrap_err();
        assert!(e.message().starts_with(NO_NVRTC), "{e}");
        return;
    }
    let ptx = compile_ptx(KERNEL_SOURCE, "convert.cu").unwrap();
    assert!(ptx.contains(&format!(".entry {KERNEL_NAME}")), "{ptx}");
    assert!(
        ptx.contains("mul.rn.f32") && ptx.contains("add.rn.f32"),
        "{ptx}"
    );
    assert!(
        !ptx.contains("fma."),
        "a fused multiply-add in the kernel:\n{ptx}"
    );
    // A syntax error is an error carrying the file name, not a panic.
    let e = compile_ptx("extern \"C\" __global__ void k( { }", "broken.cu").unwrap_err();
    assert!(e.message().contains("broken.cu"), "{e}");
}

/// With a GPU: device batches are the host batches (f32 upload) and, with the u8 upload and
/// the conversion kernel, exactly `GpuConvert::convert_batch` of the host batch.
#[test]
fn device_batches_equal_the_cpu_when_a_gpu_is_present() {
    use stoker::cuda::DeviceFeeder;
    use stoker::{DType, GpuConvert, Layout, Normalize};
    let Ok(device) = Device::open(0) else {
        eprintln!("skipped: no usable GPU 0");
        return;
    };
    let folder = || stoker::ImageFolder::open("fixtures/photos-256x144").unwrap();
    let pinned = || Arc::new(PinnedAlloc::for_device(&device));
    let read = |b: &stoker::cuda::DeviceBatch, stream: &Arc<cudarc_stream::Stream>| {
        stream.synchronize().unwrap();
        let mut host = vec![0u8; b.num_bytes()];
        // SAFETY: the slot holds num_bytes() bytes; the copy after the stream finished.
        unsafe { cudarc_stream::dtoh(&mut host, b.data_ptr()) };
        host
    };
    // f32 upload.
    let mut l = Loader::builder(folder())
        .batch_size(8)
        .allocator(pinned())
        .build()
        .unwrap();
    let mut plain = Loader::builder(folder()).batch_size(8).build().unwrap();
    let mut feeder = DeviceFeeder::new(&device, l.spec(), 8, 2).unwrap();
    let expected: Vec<Vec<u8>> = plain
        .epoch(0)
        .map(|b| b.unwrap().as_bytes().to_vec())
        .collect();
    let consumer = Arc::clone(feeder.consumer_stream());
    let got: Vec<Vec<u8>> = feeder
        .feed(l.epoch(0))
        .map(|b| read(&b.unwrap(), &consumer))
        .collect();
    assert!(
        got == expected,
        "f32 device batches differ from the host batches"
    );
    // u8 upload, converted on the GPU (f16 NCHW, ImageNet normalisation, noise).
    let mut l = Loader::builder(folder())
        .batch_size(8)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .allocator(pinned())
        .build()
        .unwrap();
    let out = l
        .spec()
        .clone()
        .with_dtype(DType::F16)
        .with_layout(Layout::Nchw)
        .with_normalize(Normalize::imagenet());
    let conv = GpuConvert::new(&out).unwrap().with_noise(0.03, 4).unwrap();
    let stream = device.context().new_stream().unwrap();
    let mut feeder = DeviceFeeder::with_convert(&device, &conv, 8, 3, Arc::clone(&stream)).unwrap();
    let mut reference = Loader::builder(folder())
        .batch_size(8)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .build()
        .unwrap();
    let expected: Vec<Vec<u8>> = reference
        .epoch(1)
        .map(|b| {
            let b = b.unwrap();
            let mut o = vec![0u8; b.len() * out.sample_bytes()];
            conv.convert_batch(&b, &mut o).unwrap();
            o
        })
        .collect();
    let got: Vec<Vec<u8>> = feeder
        .feed(l.epoch(1))
        .map(|b| read(&b.unwrap(), &stream))
        .collect();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "converted device batches differ from GpuConvert::convert_batch"
    );
}

/// The few cudarc calls the test above needs, named for what they do.
mod cudarc_stream {
    pub type Stream = cudarc::driver::CudaStream;
    /// # Safety
    /// `src` must hold `dst.len()` bytes.
    pub unsafe fn dtoh(dst: &mut [u8], src: cudarc::driver::sys::CUdeviceptr) {
        // SAFETY: the caller guarantees `src` holds `dst.len()` bytes.
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(dst, src).unwrap() };
    }
}
