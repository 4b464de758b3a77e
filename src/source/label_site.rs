//! [`LabelSite`]: where a source keeps a sample's label, so that an error about a bad label
//! names the labels file and the place in it rather than the image.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where sample `i`'s label is stored: the file (or class folder) and the place in it, as
/// [`Source::label_site`](super::Source::label_site) gives it.
///
/// [`path`](Self::path) is the file; `Display` writes the place within it (`row 5`,
/// `row 5 of dataset 'labels'`, `line 7`, `member '000005.cls'`, `class folder 'dog'`).
/// Rows count from 0, as numpy and h5py index them; lines count from 1, every line of the
/// file (a header and blank lines too), as an editor numbers them.
///
/// ```
/// use std::path::Path;
/// use stoker::source::{save_npy, LabelSite, NpySource, Source};
/// let dir = tempfile::tempdir().unwrap();
/// let (img, lab) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
/// save_npy(&img, "|u1", &[2, 1, 1], &[0, 0]).unwrap();
/// save_npy(&lab, "|u1", &[2], &[4, 7]).unwrap();
/// let site = NpySource::open(&img, Some(&lab)).unwrap().label_site(1).unwrap();
/// assert_eq!(site, LabelSite::Row { file: lab.clone(), row: 1 });
/// assert_eq!((site.path(), site.to_string()), (lab.as_path(), "row 1".to_string()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabelSite {
    /// Row `row` (from 0) of the 1-D labels array in `file` (an NPY labels file).
    Row {
        /// The labels file.
        file: PathBuf,
        /// The row within it.
        row: usize,
    },
    /// Row `row` (from 0) of the labels dataset `dataset` in the HDF5 file `file`.
    Dataset {
        /// The HDF5 file.
        file: PathBuf,
        /// The labels dataset's path in the file, as given (e.g. `labels`, `train/y`).
        dataset: String,
        /// The row within the dataset.
        row: usize,
    },
    /// Line `line` (from 1, every line of the file counted) of the manifest CSV `file`.
    Line {
        /// The manifest.
        file: PathBuf,
        /// The line within it.
        line: usize,
    },
    /// The member `member` (its full name in the archive) of the tar shard `file`.
    Member {
        /// The tar shard.
        file: PathBuf,
        /// The `.cls` member that holds the label.
        member: String,
    },
    /// The class folder `folder` of an image folder: the label is its position among the
    /// class folders, in byte order of their names.
    ClassFolder {
        /// The class folder (`root/<class>`).
        folder: PathBuf,
    },
}

impl LabelSite {
    /// The labels file (the class folder for [`ClassFolder`](Self::ClassFolder)).
    pub fn path(&self) -> &Path {
        match self {
            LabelSite::Row { file, .. }
            | LabelSite::Dataset { file, .. }
            | LabelSite::Line { file, .. }
            | LabelSite::Member { file, .. } => file,
            LabelSite::ClassFolder { folder } => folder,
        }
    }
}

/// The place within [`path`](LabelSite::path), e.g. `row 5 of dataset 'labels'`.
impl fmt::Display for LabelSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelSite::Row { row, .. } => write!(f, "row {row}"),
            LabelSite::Dataset { dataset, row, .. } => {
                write!(f, "row {row} of dataset '{dataset}'")
            }
            LabelSite::Line { line, .. } => write!(f, "line {line}"),
            LabelSite::Member { member, .. } => write!(f, "member '{member}'"),
            LabelSite::ClassFolder { folder } => {
                let name = folder.file_name().unwrap_or(folder.as_os_str());
                write!(f, "class folder '{}'", name.to_string_lossy())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_place_and_path_the_file() {
        let cases = [
            (
                LabelSite::Dataset {
                    file: "d.h5".into(),
                    dataset: "train/y".into(),
                    row: 3,
                },
                "d.h5",
                "row 3 of dataset 'train/y'",
            ),
            (
                LabelSite::Line {
                    file: "m.csv".into(),
                    line: 9,
                },
                "m.csv",
                "line 9",
            ),
            (
                LabelSite::Member {
                    file: "s.tar".into(),
                    member: "a/b.CLS".into(),
                },
                "s.tar",
                "member 'a/b.CLS'",
            ),
            (
                LabelSite::ClassFolder {
                    folder: "root/dog".into(),
                },
                "root/dog",
                "class folder 'dog'",
            ),
        ];
        for (site, path, shown) in cases {
            assert_eq!(site.path(), Path::new(path));
            assert_eq!(site.to_string(), shown);
        }
    }
}
