//! The one place the tools open a data set: the library's format layer
//! ([`stoker::source::open`]), with the CLI's `--labels` and `--images-key`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use stoker::source::{AnySource, OpenOptions};
use stoker::{Error, Result};

/// `--cache-dir` of the command running: where an `s3://` data set's shards go.
static CACHE_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets the cache directory that [`open`] gives object storage data sets (`None`: the default).
pub fn set_cache_dir(dir: Option<PathBuf>) {
    *CACHE_DIR.lock().unwrap_or_else(|p| p.into_inner()) = dir;
}

/// Opens the data set at `path`, whatever its format (an image folder, a manifest CSV, `.npy`,
/// `.tar` or `.h5` files or globs, a directory written by `stoker convert` or `resize`).
/// `labels` override the automatic pairing: an NPY source's labels (file or glob) or an HDF5
/// source's labels dataset; `images_key` is an HDF5 source's images dataset.
pub fn open(path: &Path, labels: Option<&Path>, images_key: &str) -> Result<AnySource> {
    let mut opts = OpenOptions::new().images_key(images_key);
    if let Some(dir) = CACHE_DIR.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        opts = opts.cache_dir(dir);
    }
    if let Some(l) = labels {
        let text = l
            .to_str()
            .ok_or_else(|| Error::usage(format!("{}: not a UTF-8 path", l.display())))?;
        opts = opts.labels(text);
    }
    stoker::source::open(path, &opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_only_where_they_mean_something() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("x.tar");
        stoker::source::TarWriter::new(std::fs::File::create(&shard).unwrap())
            .finish()
            .unwrap();
        let e = open(&shard, Some(Path::new("l.npy")), "images").unwrap_err();
        assert!(e.to_string().contains("tar shards"), "{e}");
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/photos-256x144");
        let e = open(&folder, Some(Path::new("l.npy")), "images").unwrap_err();
        assert!(e.to_string().contains("class folders"), "{e}");
    }
}
