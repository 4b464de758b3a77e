//! HDF5 output (`--to hdf5` of `resize` and `convert`): contiguous shards, or, in a build
//! without the `hdf5` feature, a usage error that says how to get one, before any work.

use std::path::Path;

use stoker::Pixels;

/// Whether this build writes HDF5: a usage error naming the fix when it does not.
pub fn check() -> stoker::Result<()> {
    if cfg!(feature = "hdf5") {
        Ok(())
    } else {
        Err(stoker::Error::usage(format!(
            "--to hdf5: {}",
            stoker::source::WITHOUT_HDF5
        )))
    }
}

/// Writes `images` (`shape`: N, H, W, C) and `labels` as a contiguous HDF5 file at `path`.
#[cfg(feature = "hdf5")]
pub fn save(
    path: &Path,
    images: Pixels<'_>,
    shape: [usize; 4],
    labels: Option<&[i64]>,
) -> stoker::Result<()> {
    stoker::source::save_hdf5(
        path,
        images,
        shape,
        labels,
        stoker::source::Hdf5Layout::Contiguous,
    )
}

/// Without the `hdf5` feature: the error of [`check`].
#[cfg(not(feature = "hdf5"))]
pub fn save(
    path: &Path,
    images: Pixels<'_>,
    shape: [usize; 4],
    labels: Option<&[i64]>,
) -> stoker::Result<()> {
    let _ = (images, shape, labels);
    check().map_err(|e| e.file(path))
}
