//! How failures are classified: data, usage and device errors, and the errors they chain.

use std::error::Error as _;
use std::path::PathBuf;

use stoker::decode::Decoder;
use stoker::source::{ImageFolder, NpySource, Source};
use stoker::{DType, Error, ErrorKind, Loader};

const PHOTO: &str = "fixtures/photos-256x144/class-a/photo-00.jpg";

/// `Error` crosses threads (worker results, `Stats`): it must stay `Send + Sync`.
const _: () = {
    const fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Error>();
};

/// A JPEG whose first marker after the start-of-image is garbage.
fn corrupt_jpeg() -> Vec<u8> {
    let mut bytes = std::fs::read(PHOTO).unwrap();
    bytes[3..64].fill(0x00);
    bytes
}

#[test]
fn bad_options_are_usage_errors() {
    let npy = || NpySource::glob("fixtures/npy/images-*.npy", None).unwrap();
    let e = Loader::builder(npy()).batch_size(0).build().err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.kind().is_usage() && !e.kind().is_data());
    let e = "f64".parse::<DType>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert_eq!(
        e.to_string(),
        "usage: unknown dtype \"f64\" (u8, f16, bf16, f32)"
    );
    let e = NpySource::glob("fixtures/[npy", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
    assert!(e.source().unwrap().is::<glob::PatternError>(), "{e:?}");
}

#[test]
fn a_view_of_another_dtype_is_a_dtype_mismatch() {
    let src = NpySource::glob("fixtures/npy/images-*.npy", None).unwrap();
    let mut l = Loader::builder(src)
        .batch_size(4)
        .dtype(DType::F32)
        .build()
        .unwrap();
    let b = l.epoch(0).next().unwrap().unwrap();
    let e = b.images::<half::f16>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DTypeMismatch);
    assert!(e.kind().is_usage());
    assert_eq!(
        e.to_string(),
        "dtype mismatch: batch holds f32 images, asked for f16"
    );
    assert!(b.images::<f32>().is_ok());
}

#[test]
fn a_corrupt_jpeg_is_a_decode_error_carrying_the_turbojpeg_error() {
    let mut d = Decoder::new().unwrap();
    let e = d.decode(&corrupt_jpeg(), 3, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert!(e.kind().is_data());
    let src = e.source().expect("a source");
    assert!(
        src.downcast_ref::<stoker::decode::JpegError>().is_some(),
        "{src:?}"
    );

    // Through the loader: the error names the file and the sample, and keeps its source.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, corrupt_jpeg()).unwrap();
    let files = vec![(PathBuf::from(PHOTO), None), (bad.clone(), None)];
    let mut l = Loader::builder(ImageFolder::from_files(files).unwrap())
        .batch_size(2)
        .size(64, 36)
        .build()
        .unwrap();
    let e = l.epoch(0).next().unwrap().unwrap_err();
    assert_eq!((e.kind(), e.index()), (ErrorKind::Decode, Some(1)));
    assert_eq!(e.path(), Some(bad.as_path()));
    assert!(e.to_string().starts_with("sample 1 ("), "{e}");
    assert!(e.source().unwrap().is::<stoker::decode::JpegError>());
}

#[test]
fn a_bad_npy_header_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.npy");
    let mut bytes = b"\x93NUMPY\x01\x00\x10\x00".to_vec();
    bytes.extend_from_slice(b"{'descr': 42}  \n");
    std::fs::write(&p, bytes).unwrap();
    let e = NpySource::open(&p, None).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(e.kind().is_data());
    assert_eq!(e.path(), Some(p.as_path()));
}

#[test]
fn a_missing_file_is_an_io_error_carrying_the_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone.jpg");
    let src = ImageFolder::from_files(vec![(missing.clone(), None)]).unwrap();
    let mut buf = Vec::new();
    let e = src.get(0, &mut buf).err().unwrap();
    assert_eq!((e.kind(), e.index()), (ErrorKind::Io, Some(0)));
    assert_eq!(e.path(), Some(missing.as_path()));
    let io = e
        .source()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    // Building a loader on it fails the same way (it probes the first sample).
    let e = Loader::builder(src).batch_size(1).build().err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Io);
}
