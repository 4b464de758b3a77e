//! The NPY [`Format`](crate::source::Format) for [`open`](crate::source::open): recognising
//! `.npy` files, finding `images*.npy` in a directory, pairing each with its labels by name.

use std::path::{Path, PathBuf};

use super::NpySource;
use super::header::MAGIC;
use crate::source::{Source, expand};
use crate::{Error, Result};

/// The NPY format for [`open`](crate::source::open): `.npy` files (by extension or the `\x93NUMPY`
/// magic); in a directory, the files named `images*.npy`. Labels pair by name.
pub(crate) struct NpyFormat;

/// The one [`NpyFormat`] value, listed in [`FORMATS`](crate::source::FORMATS).
pub(crate) static NPY: NpyFormat = NpyFormat;

/// The labels file that goes with images file `path` by name, if it exists:
/// `images-000.npy` → `labels-000.npy`, `x_train.npy` → `y_train.npy` (`X` → `y`).
fn paired_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("images") {
        return Some(format!("labels{rest}"));
    }
    let mut chars = name.chars();
    let first = chars.next()?;
    let rest = chars.as_str();
    ((first == 'x' || first == 'X') && rest.starts_with(['_', '-', '.']))
        .then(|| format!("y{rest}"))
}

fn paired_labels(images: &[PathBuf]) -> Result<Option<Vec<PathBuf>>> {
    let pairs: Vec<Option<PathBuf>> = images
        .iter()
        .map(|p| {
            let name = p.file_name()?.to_str()?;
            let l = p.with_file_name(paired_name(name)?);
            l.is_file().then_some(l)
        })
        .collect();
    match pairs.iter().position(|p| p.is_none()) {
        None => Ok(Some(pairs.into_iter().flatten().collect())),
        Some(_) if pairs.iter().all(|p| p.is_none()) => Ok(None),
        Some(k) => Err(Error::format(
            &images[k],
            format!(
                "no labels file beside it, unlike {} of {} image files (give the labels explicitly)",
                pairs.iter().filter(|p| p.is_some()).count(),
                images.len()
            ),
        )),
    }
}

impl crate::source::Format for NpyFormat {
    fn name(&self) -> &'static str {
        "npy"
    }

    fn recognises(&self, path: &Path, head: &[u8]) -> bool {
        head.starts_with(MAGIC) || crate::source::open::has_ext(path, &["npy"])
    }

    fn find(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        crate::source::open::files_in(dir, |n| {
            n.starts_with("images") && n.to_ascii_lowercase().ends_with(".npy")
        })
    }

    fn open(
        &self,
        files: &[PathBuf],
        opts: &crate::source::OpenOptions,
    ) -> Result<Box<dyn Source>> {
        let labels = match opts.labels_override() {
            Some(pattern) => {
                let l = expand(pattern)?;
                if l.len() != files.len() {
                    return Err(Error::usage(format!(
                        "{} image files but the labels {pattern} are {} files",
                        files.len(),
                        l.len()
                    )));
                }
                Some(l)
            }
            None => paired_labels(files)?,
        };
        Ok(Box::new(NpySource::shards(files, labels.as_deref())?))
    }

    fn open_index(
        &self,
        index: &crate::source::Index,
        shards: &[PathBuf],
        dir: &Path,
        opts: &crate::source::OpenOptions,
    ) -> Result<Box<dyn Source>> {
        if opts.labels_override().is_some() || index.labels.is_empty() {
            return self.open(shards, opts);
        }
        let labels: Vec<PathBuf> = index.labels.iter().map(|l| dir.join(l)).collect();
        Ok(Box::new(NpySource::shards(shards, Some(&labels))?))
    }
}
