//! `stoker inspect PATH`: what a data set is and whether its layout is the fast one.

use std::collections::BTreeMap;

use clap::Args;
use stoker::decode::Decoder;
use stoker::source::{Hdf5Source, Raw, Source};
use stoker::{Pixels, Result};

use crate::resize::Progress;

/// Arguments of `stoker inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// An image folder, a manifest CSV, `.npy` file(s), `.tar` shard(s) or `.h5` file(s);
    /// globs such as `shard-*.tar` allowed.
    pub path: String,
    /// Labels of an NPY source (file or glob), or the labels dataset of an HDF5 source.
    #[arg(long)]
    pub labels: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `stoker inspect`.
pub fn run(a: InspectArgs) -> Result<()> {
    let lower = a.path.to_ascii_lowercase();
    let src = crate::open_source(&a.path, a.labels.as_deref())?;
    let (format, fast) = if lower.ends_with(".npy") {
        ("npy", "yes (memory-mapped, zero copy)".to_string())
    } else if lower.ends_with(".tar") {
        (
            "tar shards (webdataset)",
            "yes (memory-mapped; decoded per sample)".to_string(),
        )
    } else if lower.ends_with(".h5") || lower.ends_with(".hdf5") {
        let shards = Hdf5Source::glob(&a.path, "images", None)?;
        let slow = shards.shards().iter().filter(|s| !s.is_mapped()).count();
        let fast = if slow == 0 {
            "yes (contiguous, memory-mapped, lock-free)".to_string()
        } else {
            format!(
                "no: {slow} of {} files are chunked or compressed (read through the hdf5 global lock); \
                 `stoker convert --to hdf5` writes contiguous files",
                shards.shards().len()
            )
        };
        ("hdf5", fast)
    } else if lower.ends_with(".csv") {
        (
            "manifest csv",
            "no: one file per sample; `stoker convert --to tar` or `--to npy` is faster"
                .to_string(),
        )
    } else {
        (
            "image folder",
            "no: one file per sample; `stoker convert --to tar` or `--to npy` is faster"
                .to_string(),
        )
    };
    let n = src.len();
    println!("path: {}", a.path);
    println!("format: {format}");
    println!("source: {}", src.describe());
    println!("samples: {n}");
    let mut buf = Vec::new();
    // Shape and dtype: known to pixel sources; encoded ones are described by their first sample.
    let shape = match (src.size(), src.channels()) {
        (Some((w, h)), Some(c)) => {
            let dtype = match src.get(0, &mut buf).map(|i| i.raw) {
                Ok(Raw::Pixels(v)) if matches!(v.pixels, Pixels::F32(_)) => "f32",
                _ => "u8",
            };
            format!("{h}x{w}x{c} (HxWxC), {dtype}")
        }
        _ if n > 0 => match src.get(0, &mut buf)?.raw {
            Raw::Encoded(b) => {
                let kind = if b.starts_with(b"\x89PNG") {
                    "png"
                } else {
                    "jpeg"
                };
                let mut d = Decoder::new()?;
                match d.decode(b, 3, None) {
                    Ok(img) => format!(
                        "encoded {kind}; first sample {}x{} (HxW), decodes to u8",
                        img.height, img.width
                    ),
                    Err(e) => format!("encoded {kind}; first sample does not decode: {e}"),
                }
            }
            Raw::Pixels(v) => format!("{}x{}x{} (HxWxC)", v.height, v.width, v.channels),
        },
        _ => "none (empty)".to_string(),
    };
    println!("shape: {shape}");
    println!("fast layout: {fast}");
    if !src.has_labels() {
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
