//! The one place the tools open a data set: the format is chosen from the path (every
//! subcommand calls [`open`]).

use std::path::Path;

use stoker::source::{Hdf5Source, ImageFolder, NpySource, Source, TarSource};
use stoker::{Error, Result};

/// A data set's storage format, as told by its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.npy` file(s).
    Npy,
    /// WebDataset `.tar` shard(s).
    Tar,
    /// `.h5` / `.hdf5` file(s).
    Hdf5,
    /// A manifest `.csv` (path,label).
    Manifest,
    /// A folder with one subfolder per class.
    Folder,
}

impl Format {
    /// The format of `path` by its extension (any case); anything else is a folder.
    pub fn of(path: &Path) -> Format {
        let lower = path.to_string_lossy().to_ascii_lowercase();
        if lower.ends_with(".npy") {
            Format::Npy
        } else if lower.ends_with(".tar") {
            Format::Tar
        } else if lower.ends_with(".h5") || lower.ends_with(".hdf5") {
            Format::Hdf5
        } else if lower.ends_with(".csv") {
            Format::Manifest
        } else {
            Format::Folder
        }
    }
}

/// `path` as text, for the sources that take a glob pattern.
fn text(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::config(format!("{}: not a UTF-8 path", path.display())))
}

/// Opens the data set at `path` (a folder, a manifest CSV, or `.npy`, `.tar` or `.h5`
/// file(s), globs allowed): `labels` are an NPY source's labels (file or glob) or an HDF5
/// source's labels dataset (default: `labels` when the file has one); `images_key` is an HDF5
/// source's images dataset.
pub fn open(path: &Path, labels: Option<&Path>, images_key: &str) -> Result<Box<dyn Source>> {
    let labels = labels.map(text).transpose()?;
    match Format::of(path) {
        Format::Npy => Ok(Box::new(NpySource::glob(text(path)?, labels)?)),
        Format::Tar => {
            if labels.is_some() {
                return Err(Error::config(
                    "--labels is not for tar shards (labels are .cls members)",
                ));
            }
            Ok(Box::new(TarSource::glob(text(path)?)?))
        }
        Format::Hdf5 => {
            let p = text(path)?;
            let src = match labels {
                Some(l) => Hdf5Source::glob(p, images_key, Some(l))?,
                // The default labels dataset, when the file has one.
                None => Hdf5Source::glob(p, images_key, Some("labels"))
                    .or_else(|_| Hdf5Source::glob(p, images_key, None))?,
            };
            Ok(Box::new(src))
        }
        _ if labels.is_some() => Err(Error::config("--labels is only for .npy sources")),
        Format::Manifest => Ok(Box::new(ImageFolder::from_manifest(path)?)),
        Format::Folder => Ok(Box::new(ImageFolder::open(path)?)),
    }
}

/// For an HDF5 path: (files that are chunked or compressed, all files).
pub fn hdf5_unmapped(path: &Path) -> Result<(usize, usize)> {
    let shards = Hdf5Source::glob(text(path)?, "images", None)?;
    let slow = shards.shards().iter().filter(|s| !s.is_mapped()).count();
    Ok((slow, shards.shards().len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of(Path::new("a/images-*.NPY")), Format::Npy);
        assert_eq!(Format::of(Path::new("shard-*.tar")), Format::Tar);
        assert_eq!(Format::of(Path::new("d.hdf5")), Format::Hdf5);
        assert_eq!(Format::of(Path::new("d.h5")), Format::Hdf5);
        assert_eq!(Format::of(Path::new("m.csv")), Format::Manifest);
        assert_eq!(Format::of(Path::new("photos")), Format::Folder);
    }

    #[test]
    fn labels_only_where_they_mean_something() {
        let e = open(Path::new("x.tar"), Some(Path::new("l.npy")), "images")
            .err()
            .unwrap();
        assert!(e.to_string().contains("not for tar shards"), "{e}");
        let e = open(Path::new("photos"), Some(Path::new("l.npy")), "images")
            .err()
            .unwrap();
        assert!(e.to_string().contains("only for .npy"), "{e}");
    }
}
