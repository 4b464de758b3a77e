//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and of the corpus replay
//! in `tests/fuzz.rs` (stable, in CI): each runs one of stoker's own parsers on arbitrary
//! bytes and panics only when an invariant breaks (a range outside the data, an overflow, a
//! header that does not read back), never because the input is bad. Not a stable API.
//!
//! ```
//! // Bad input is an error inside, never a panic out.
//! for f in [stoker::fuzz::npy, stoker::fuzz::tar, stoker::fuzz::manifest, stoker::fuzz::decode_augment] {
//!     f(b"\x93NUMPY\x01\x00\xff\xff{'descr'");
//!     f(&[0xff, 0xd8, 0xff, 0xdb, 0, 2]);
//! }
//! ```

use std::path::Path;
use std::sync::Arc;

use crate::augment::Augment;
use crate::decode::{DecodePolicy, Decoder};
use crate::source::{Item, Raw, Source};
use crate::{DType, ErrorKind, Loader, Normalize, Pixels, Result};

/// `data` as an images `.npy` file and as a labels `.npy` file; a header written for a shape
/// taken from `data` must parse back to it.
pub fn npy(data: &[u8]) {
    crate::source::fuzz_npy(data);
}

/// `data` as a tar shard, indexed into WebDataset samples as `TarSource::open` does.
pub fn tar(data: &[u8]) {
    crate::source::fuzz_tar(data);
}

/// `data` as a manifest CSV (`path,label` lines).
pub fn manifest(data: &[u8]) {
    crate::source::fuzz_manifest(data);
}

/// What stoker does with what the HDF5 library returns (dataset shape, element size, address,
/// file length), each read from `data`.
#[cfg(feature = "hdf5")]
pub fn hdf5(data: &[u8]) {
    crate::source::fuzz_hdf5(data);
}

/// One encoded image, as a loader worker sees it.
struct OneImage(Vec<u8>);

impl Source for OneImage {
    fn len(&self) -> usize {
        1
    }
    fn get<'a>(&'a self, _index: usize, _buf: &'a mut Vec<u8>) -> Result<Item<'a>> {
        Ok(Item {
            raw: Raw::Encoded(&self.0),
            label: None,
        })
    }
    fn path(&self, _index: usize) -> Option<&Path> {
        None
    }
    fn has_labels(&self) -> bool {
        false
    }
}

/// `data` decoded as an image under each [`DecodePolicy`] (as pixels, and as YCbCr planes),
/// then through loaders with Keras-style augmentation (from pixels, and from planes) into a
/// small f16 batch. A decoded image has the size it says, planes the sizes their subsampling
/// gives; an error is a decode or usage error, never a panic caught in a worker.
pub fn decode_augment(data: &[u8]) {
    let mut dec = Decoder::new().expect("a decoder");
    for policy in [
        DecodePolicy::Strict,
        DecodePolicy::Tolerant,
        DecodePolicy::Lenient,
    ] {
        dec.set_policy(policy);
        for channels in [1, 3] {
            // A size hint keeps a huge image cheap (DCT-domain downscaling).
            match dec.decode(data, channels, Some((64, 48))) {
                Ok(img) => {
                    assert_eq!(img.channels, channels);
                    let len = match img.pixels {
                        Pixels::U8(p) => p.len(),
                        Pixels::F32(p) => p.len(),
                    };
                    assert_eq!(len, img.width * img.height * channels);
                }
                Err(e) => assert!(
                    matches!(e.kind(), ErrorKind::Decode | ErrorKind::Usage),
                    "{e}"
                ),
            }
        }
        match dec.decode_ycbcr(data, (64, 48)) {
            Ok(Some(v)) => {
                let (hs, vs) = v.subsampling;
                let c = (v.width().div_ceil(hs), v.height().div_ceil(vs));
                assert_eq!((v.cb.width, v.cb.height), c);
                assert!(v.y.data.len() >= (v.y.height - 1) * v.y.stride + v.y.width);
            }
            Ok(None) => {}
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::Decode | ErrorKind::Usage),
                "{e}"
            ),
        }
    }
    for spec in ["default", "default,ycbcr"] {
        let mut loader = Loader::builder(OneImage(data.to_vec()))
            .batch_size(1)
            .size(40, 24)
            .channels(3)
            .num_workers(0)
            .dtype(DType::F16)
            .normalize(Normalize::imagenet())
            .transform(Arc::new(Augment::from_spec(spec).expect("a valid spec")))
            .build()
            .expect("a one-image loader with a given size builds");
        for b in loader.epoch(0) {
            match b {
                Ok(b) => assert_eq!(b.as_bytes().len(), 40 * 24 * 3 * 2),
                Err(e) => assert!(e.kind() != ErrorKind::Panic, "a worker panicked: {e}"),
            }
        }
    }
}
