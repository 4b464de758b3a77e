//! `--augment` for `stoker bench`, and `stoker augment-preview`: a PNG grid of augmented
//! samples made by the same loader code path as training (u8 NHWC output).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use stoker::augment::{Augment, png_grid};
use stoker::decode::Decoder;
use stoker::source::{Raw, Source};
use stoker::transform::{Identity, Transform};
use stoker::{DType, Layout, Loader};

/// The augmentation of `--augment`: `None` for `none`, else `default`
/// (`Augment::keras_default()`) or a spec such as `rotation=15,shift=0.1,zoom=0.9:1.1,hflip`.
pub fn augment(spec: &str) -> stoker::Result<Option<Augment>> {
    match spec.trim() {
        "none" => Ok(None),
        s => Ok(Some(Augment::from_spec(s)?)),
    }
}

/// `augment` as the loader's transform (the identity stage for `None`). A clone of an
/// [`Augment`] shares its kernel timings, so the caller's copy reports what the loader chose.
pub fn transform_of(augment: Option<Augment>) -> Arc<dyn Transform> {
    match augment {
        None => Arc::new(Identity),
        Some(a) => Arc::new(a),
    }
}

/// Arguments of `stoker augment-preview`.
#[derive(Args)]
pub struct PreviewArgs {
    /// An image folder, a manifest CSV, or a .npy file or glob (default: the fixtures).
    path: Option<PathBuf>,
    /// Labels for an NPY source.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Output PNG.
    #[arg(long, default_value = "augment-preview.png")]
    out: PathBuf,
    /// Augmentation: default, or a spec like `rotation=15,shift=0.1,zoom=0.9:1.1,hflip,noise=0.03`.
    #[arg(long, default_value = "default")]
    augment: String,
    /// Samples shown (the first N of the epoch's order).
    #[arg(short = 'n', long, default_value_t = 16)]
    count: usize,
    /// Samples per grid row.
    #[arg(long, default_value_t = 4)]
    cols: usize,
    /// Seed of the order and of the augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epoch.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// Shuffle the order, as training would.
    #[arg(long)]
    shuffle: bool,
    /// How a shuffled epoch is ordered: `global` or `shards:K` (windows of K shards).
    #[arg(long, default_value = "global", value_parser = crate::args::parse_order)]
    order: stoker::sampler::Order,
    /// Output size WxH (default: the source's size).
    #[arg(long, value_parser = crate::args::parse_size)]
    size: Option<(usize, usize)>,
    /// Do not put the unaugmented image left of each sample.
    #[arg(long)]
    no_originals: bool,
    /// Print each sample's drawn parameters.
    #[arg(long)]
    dump_params: bool,
}

/// A batch's bytes, its sample indices, and (width, height, channels).
type Shown = (Vec<u8>, Vec<usize>, (usize, usize, usize));

/// One batch of `n` samples, u8 NHWC, through `t`.
fn batch(a: &PreviewArgs, path: &Path, t: Arc<dyn Transform>) -> stoker::Result<Shown> {
    let source = crate::open::open(path, a.labels.as_deref(), "images")?;
    let mut b = Loader::builder(source)
        .batch_size(a.count)
        .shuffle(a.shuffle)
        .order(a.order)
        .seed(a.seed)
        .num_workers(0)
        .dtype(DType::U8)
        .layout(Layout::Nhwc)
        .transform(t);
    if let Some((w, h)) = a.size {
        b = b.size(w, h);
    }
    let mut loader = b.build()?;
    let s = loader.spec().clone();
    let batch = loader
        .epoch(a.epoch)
        .next()
        .ok_or_else(|| stoker::Error::usage("the epoch is empty"))??;
    Ok((
        batch.as_bytes().to_vec(),
        batch.indices().to_vec(),
        (s.width, s.height, s.channels),
    ))
}

/// Runs `stoker augment-preview`.
pub fn preview(a: PreviewArgs) -> stoker::Result<()> {
    if a.count == 0 || a.cols == 0 {
        return Err(stoker::Error::usage(
            "--count and --cols must be at least 1",
        ));
    }
    let path = a.path.clone().unwrap_or_else(crate::args::default_data);
    let aug = if a.augment.trim() == "none" {
        Augment::default()
    } else {
        Augment::from_spec(&a.augment)?
    };
    let aug = Arc::new(aug);
    let (augmented, indices, (w, h, c)) = batch(&a, &path, aug.clone())?;
    let n = indices.len();
    let each = w * h * c;
    let (images, cells, cols) = if a.no_originals {
        (augmented, n, a.cols)
    } else {
        let (plain, _, _) = batch(&a, &path, Arc::new(Identity))?;
        let mut both = Vec::with_capacity(2 * n * each);
        for k in 0..n {
            both.extend_from_slice(&plain[k * each..(k + 1) * each]);
            both.extend_from_slice(&augmented[k * each..(k + 1) * each]);
        }
        (both, 2 * n, 2 * a.cols)
    };
    let png = png_grid(&images, cells, w, h, c, cols)?;
    std::fs::write(&a.out, png).map_err(|e| {
        stoker::Error::new(stoker::ErrorKind::Io, format!("cannot write png: {e}"))
            .file(a.out.clone())
    })?;
    println!(
        "{}: {n} samples ({aug}), {w}x{h}x{c}{}",
        a.out.display(),
        if a.no_originals {
            ""
        } else {
            ", each right of its original"
        }
    );
    if a.dump_params {
        // The decoded size the loader warped from: the JPEG at its reduced DCT scale.
        let source = crate::open::open(&path, a.labels.as_deref(), "images")?;
        let mut dec = Decoder::new()?;
        let mut buf = Vec::new();
        for &i in &indices {
            let src_size = match source.get(i, &mut buf)?.raw {
                Raw::Encoded(bytes) => {
                    let img = dec.decode_reduced(bytes, c, (w, h))?;
                    (img.width, img.height)
                }
                Raw::Pixels(v) => (v.width, v.height),
            };
            let p = aug.params_for(a.seed, a.epoch, i, src_size, (w, h));
            println!("sample {i}: {p}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augment_flag_picks_the_transform() {
        let transform = |s: &str| augment(s).map(transform_of);
        assert_eq!(transform("none").unwrap().name(), "identity");
        let t = transform("default").unwrap();
        assert_eq!(t.name(), "augment");
        assert!(t.samples_source());
        assert!(transform("rotation=15,hflip,noise=0.03").is_ok());
        assert!(transform("rotation=x").is_err());
        assert!(transform("warp=3").is_err());
    }
}
