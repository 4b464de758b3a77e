//! `stoker inspect PATH`: what a data set is and whether its layout is the fast one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use stoker::decode::{Decoder, ImageFormat};
use stoker::source::{Raw, Source};
use stoker::{Pixels, Result};

use crate::progress::Progress;

/// Arguments of `stoker inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// An image folder, a manifest CSV, `.npy` file(s), `.tar` shard(s) or `.h5` file(s);
    /// globs such as `shard-*.tar` allowed.
    pub path: PathBuf,
    /// Labels of an NPY source (file or glob), or the labels dataset of an HDF5 source.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object on stdout instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// One class of the label histogram.
#[derive(Debug, Serialize)]
struct LabelCount {
    label: i64,
    count: usize,
}

/// What `stoker inspect` found (`--json` prints it as it is).
#[derive(Debug, Serialize)]
struct InspectReport {
    path: String,
    format: &'static str,
    source: String,
    samples: usize,
    /// The shape line of the report, e.g. `144x256x3 (HxWxC), u8`.
    shape: String,
    /// Height, width and channels of the samples (of the first, for encoded files).
    height: Option<usize>,
    width: Option<usize>,
    channels: Option<usize>,
    /// `u8` or `f32` (what encoded files decode to: u8).
    dtype: Option<&'static str>,
    /// `jpeg` or `png` for encoded files, null for decoded pixels.
    encoding: Option<&'static str>,
    /// Whether the layout is the fast one.
    fast: bool,
    /// The fast-layout line: why, and what to do when not.
    fast_layout: String,
    /// Classes with their sample counts, in label order (null: no labels).
    labels: Option<Vec<LabelCount>>,
    /// Samples that could not be read while counting labels.
    unreadable_samples: usize,
}

/// Runs `stoker inspect`.
pub fn run(a: InspectArgs) -> Result<()> {
    let src = crate::open::open(&a.path, a.labels.as_deref(), "images")?;
    let access = src.access();
    let fast_layout = if access.fast {
        format!("yes ({})", access.note)
    } else {
        format!("no: {}", access.note)
    };
    let (name, fast) = (src.format(), access.fast);
    let n = src.len();
    let mut report = InspectReport {
        path: a.path.display().to_string(),
        format: name,
        source: src.describe(),
        samples: n,
        shape: String::new(),
        height: None,
        width: None,
        channels: None,
        dtype: None,
        encoding: None,
        fast,
        fast_layout,
        labels: None,
        unreadable_samples: 0,
    };
    let mut buf = Vec::new();
    // Shape and dtype: known to pixel sources; encoded ones are described by their first sample.
    report.shape = match (src.size(), src.channels()) {
        (Some((w, h)), Some(c)) => {
            let dtype = match src.get(0, &mut buf).map(|i| i.raw) {
                Ok(Raw::Pixels(v)) if matches!(v.pixels, Pixels::F32(_)) => "f32",
                _ => "u8",
            };
            (report.width, report.height, report.channels) = (Some(w), Some(h), Some(c));
            report.dtype = Some(dtype);
            format!("{h}x{w}x{c} (HxWxC), {dtype}")
        }
        _ if n > 0 => match src.get(0, &mut buf)?.raw {
            Raw::Encoded(b) => {
                let kind = match ImageFormat::sniff(b) {
                    Some(ImageFormat::Png) => "png",
                    _ => "jpeg",
                };
                report.encoding = Some(kind);
                let mut d = Decoder::new()?;
                match d.decode(b, 3, None) {
                    Ok(img) => {
                        (report.width, report.height) = (Some(img.width), Some(img.height));
                        report.channels = Some(img.channels);
                        report.dtype = Some("u8");
                        format!(
                            "encoded {kind}; first sample {}x{} (HxW), decodes to u8",
                            img.height, img.width
                        )
                    }
                    Err(e) => format!("encoded {kind}; first sample does not decode: {e}"),
                }
            }
            Raw::Pixels(v) => {
                (report.width, report.height) = (Some(v.width), Some(v.height));
                report.channels = Some(v.channels);
                format!("{}x{}x{} (HxWxC)", v.height, v.width, v.channels)
            }
        },
        _ => "none (empty)".to_string(),
    };
    if !a.json {
        println!("path: {}", report.path);
        println!("format: {}", report.format);
        println!("source: {}", report.source);
        println!("samples: {n}");
        println!("shape: {}", report.shape);
        println!("fast layout: {}", report.fast_layout);
    }
    if !src.has_labels() {
        if a.json {
            return crate::bench::print_json(&report);
        }
        println!("labels: none");
        return Ok(());
    }
    let progress = Progress::new(n, "samples", a.quiet);
    let mut hist: BTreeMap<i64, usize> = BTreeMap::new();
    let mut bad = 0usize;
    for i in 0..n {
        match src.get(i, &mut buf) {
            Ok(item) => *hist.entry(item.label.unwrap_or(-1)).or_default() += 1,
            Err(_) => bad += 1,
        }
        progress.add(1);
    }
    progress.finish();
    if a.json {
        report.labels = Some(
            hist.iter()
                .map(|(&label, &count)| LabelCount { label, count })
                .collect(),
        );
        report.unreadable_samples = bad;
        return crate::bench::print_json(&report);
    }
    println!("labels: {} classes", hist.len());
    let most = hist.values().copied().max().unwrap_or(1).max(1);
    for (label, count) in &hist {
        let bar = "#".repeat((count * 40).div_ceil(most));
        println!("  {label:>6} {count:>8} {bar}");
    }
    if bad > 0 {
        println!("unreadable samples: {bad}");
    }
    Ok(())
}
