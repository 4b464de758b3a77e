//! The training loop's bookkeeping, shared by the CPU and the GPU trainer: the loader and its
//! checks, and when to take an SGD step.

use std::path::Path;
use std::time::{Duration, Instant};

use stoker::source::ImageFolder;
use stoker::{DType, Layout, Loader, LoaderBuilder, Normalize};

use crate::args::Args;
use crate::model::Dims;

/// When to take an SGD step, and how to scale the summed gradients.
pub struct Accumulation {
    /// Batches per step (`--accumulate`).
    every: usize,
    /// Batches since the last step.
    pending: usize,
}

impl Accumulation {
    /// A step every `every` batches.
    pub fn new(every: usize) -> Accumulation {
        Accumulation { every, pending: 0 }
    }

    /// After a batch's backward pass: `Some(1/A)` when a group of `A` batches is complete.
    pub fn after_batch(&mut self) -> Option<f32> {
        self.pending += 1;
        (self.pending == self.every).then(|| {
            self.pending = 0;
            1.0 / self.every as f32
        })
    }

    /// At the end of an epoch: `Some(1/k)` for a partial group of `k` batches.
    pub fn flush(&mut self) -> Option<f32> {
        let k = std::mem::take(&mut self.pending);
        (k > 0).then(|| 1.0 / k as f32)
    }
}

/// The loader settings both paths share (f32 NCHW, ImageNet normalisation, shuffled).
pub fn loader_builder(args: &Args) -> Result<LoaderBuilder<ImageFolder>, String> {
    let folder = ImageFolder::open(&args.path)
        .map_err(|e| format!("cannot open image folder: {}", at_path(&args.path, e)))?;
    Ok(Loader::builder(folder)
        .batch_size(args.batch_size)
        .shuffle(true)
        .seed(args.seed)
        .num_workers(args.workers)
        .dtype(DType::F32)
        .layout(Layout::Nchw)
        .normalize(Normalize::imagenet()))
}

/// The model's shapes for a built loader.
pub fn dims_of(args: &Args, loader: &Loader<ImageFolder>) -> Result<Dims, String> {
    let spec = loader.spec();
    let dims = Dims {
        channels: spec.channels,
        height: spec.height,
        width: spec.width,
        pool: args.pool,
        hidden: args.hidden,
        classes: loader.source().classes().len(),
    };
    dims.check().map_err(|e| at_path(&args.path, e))?;
    Ok(dims)
}

/// A loader error as a message that names `path` (once).
pub fn at_path(path: &Path, e: impl std::fmt::Display) -> String {
    let (p, e) = (path.display().to_string(), e.to_string());
    if e.contains(&p) {
        e
    } else {
        format!("{p}: {e}")
    }
}

/// The labels of a batch, checked against the number of classes.
pub fn checked_labels<'a>(
    labels: Option<&'a [i64]>,
    n: usize,
    classes: usize,
    path: &Path,
) -> Result<&'a [i64], String> {
    let labels = labels
        .filter(|l| l.len() == n)
        .ok_or_else(|| format!("{}: the batch has no labels", path.display()))?;
    if let Some(bad) = labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(format!(
            "{}: label {bad} is outside 0..{classes}",
            path.display()
        ));
    }
    Ok(labels)
}

/// `it.next()`, with the time it took added to `wait`.
pub fn timed_next<I: Iterator>(it: &mut I, wait: &mut Duration) -> Option<I::Item> {
    let t = Instant::now();
    let next = it.next();
    *wait += t.elapsed();
    next
}

/// The error of an epoch that had no images.
pub fn no_images(path: &Path) -> String {
    format!("{}: the epoch had no images", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulation_steps_every_a_batches_and_flushes_the_rest() {
        let mut acc = Accumulation::new(3);
        let steps: Vec<Option<f32>> = (0..7).map(|_| acc.after_batch()).collect();
        let third = Some(1.0 / 3.0);
        assert_eq!(steps, [None, None, third, None, None, third, None]);
        assert_eq!(acc.flush(), Some(1.0));
        assert_eq!(acc.flush(), None);
    }

    #[test]
    fn errors_name_the_path_once() {
        let p = Path::new("/data/set");
        assert_eq!(at_path(p, "boom"), "/data/set: boom");
        assert_eq!(at_path(p, "/data/set/a.jpg: bad"), "/data/set/a.jpg: bad");
        assert_eq!(no_images(p), "/data/set: the epoch had no images");
    }

    #[test]
    fn labels_are_checked() {
        let p = Path::new("d");
        assert_eq!(checked_labels(Some(&[0, 1]), 2, 2, p), Ok(&[0i64, 1][..]));
        assert!(
            checked_labels(None, 2, 2, p)
                .unwrap_err()
                .contains("no labels")
        );
        assert!(
            checked_labels(Some(&[0]), 2, 2, p)
                .unwrap_err()
                .contains("no labels")
        );
        assert_eq!(
            checked_labels(Some(&[0, 2]), 2, 2, p).unwrap_err(),
            "d: label 2 is outside 0..2"
        );
        assert!(checked_labels(Some(&[-1, 0]), 2, 2, p).is_err());
    }
}
