//! `stoker convert SRC DST --to npy|hdf5|tar|folder`: between all storage formats.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::{Args, ValueEnum};
use serde::Serialize;
use stoker::decode::{DEFAULT_MAX_IMAGE_PIXELS, Decoder, ImageFormat};
use stoker::source::{AnySource, Index, Item, OpenOptions, Part, Raw, Source, TarWriter, save_npy};
use stoker::{Error, Pixels, Result};

use crate::part::{ShardArg, clear_indexes, shard_name};
use crate::progress::Progress;
use stoker::source::write_with as atomic;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConvertTo {
    /// NPY shards `images-000000.npy` + `labels-000000.npy` (decoded pixels, u8 or f32).
    Npy,
    /// HDF5 shards `data-000000.h5` (datasets `images`, `labels`), contiguous: memory-mapped.
    Hdf5,
    /// WebDataset tar shards `shard-000000.tar`: encoded images copied as they are, pixels as PNG.
    Tar,
    /// One file per sample in `DST/<label>/<index>.<ext>` (encoded images copied, pixels as PNG).
    Folder,
}

/// Arguments of `stoker convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Source: an image folder, a manifest CSV, `.npy` file(s), `.tar` shard(s) or `.h5`
    /// file(s); globs such as `shard-*.tar` allowed.
    pub src: PathBuf,
    /// Destination folder (created if needed).
    pub dst: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub to: ConvertTo,
    /// Samples per output shard.
    #[arg(long, default_value_t = 1000)]
    pub shard_size: usize,
    /// Convert only part i of n (0-based) of the samples, a contiguous range, e.g. `--shard
    /// 3/8`; `auto` in a Slurm job array (`SLURM_ARRAY_TASK_ID`), `auto/N` in a Kubernetes
    /// indexed Job of N completions (`JOB_COMPLETION_INDEX`). Each part writes its own shards
    /// and index: DST opens as one data set once every part has finished.
    #[arg(long, value_parser = crate::part::parse_shard)]
    pub shard: Option<ShardArg>,
    /// Labels of an NPY source (file or glob), or the labels dataset of an HDF5 source.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Images dataset of an HDF5 source.
    #[arg(long, default_value = "images")]
    pub images_key: String,
    /// Re-read every written sample and compare pixels and label with the source.
    #[arg(long)]
    pub verify: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object on stdout instead of the summary line.
    #[arg(long)]
    pub json: bool,
    /// Threads that read, decode and encode samples (default: one per core). Shards are
    /// written in order and their bytes do not depend on it.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Refuse, from its header, a JPEG or PNG whose stored size is above N pixels (a
    /// decompression bomb); the default is Pillow's limit.
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
    /// Testing aid: sleep this long per sample.
    #[arg(long, hide = true, default_value_t = 0)]
    pub delay_ms: u64,
}

impl ConvertTo {
    /// The lowercase name, as `--to` spells it.
    fn name(self) -> &'static str {
        match self {
            ConvertTo::Npy => "npy",
            ConvertTo::Hdf5 => "hdf5",
            ConvertTo::Tar => "tar",
            ConvertTo::Folder => "folder",
        }
    }
}

/// Decoded pixels of one sample, owned: (width, height, channels, u8 or f32 values).
#[derive(Debug, PartialEq)]
enum Owned {
    U8(usize, usize, usize, Vec<u8>),
    F32(usize, usize, usize, Vec<f32>),
}

fn pixels(raw: Raw<'_>, dec: &mut Decoder) -> Result<Owned> {
    let v = match raw {
        Raw::Pixels(v) => v,
        Raw::Encoded(b) => {
            // Keep gray images gray: sniff the channel count from a 3-channel decode is not
            // possible, so JPEG/PNG become RGB.
            dec.decode(b, 3, None)?
        }
    };
    Ok(match v.pixels {
        Pixels::U8(p) => Owned::U8(v.width, v.height, v.channels, p.to_vec()),
        Pixels::F32(p) => Owned::F32(v.width, v.height, v.channels, p.to_vec()),
    })
}

/// The file extension of encoded bytes (JPEG when unrecognised: the decoder will say why).
fn sniff_ext(b: &[u8]) -> &'static str {
    ImageFormat::sniff(b).map_or("jpg", ImageFormat::extension)
}

fn png(o: &Owned) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let Owned::U8(w, h, c, px) = o else {
        return Err(Error::usage(
            "f32 pixels cannot be written as images: convert to npy or hdf5",
        ));
    };
    let color = if *c == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(px, *w as u32, *h as u32, color)
        .map_err(|e| Error::usage(format!("png encode: {e}")))?;
    Ok(out)
}

/// A decoder that refuses images stored larger than `max_image_pixels`.
fn decoder(max_image_pixels: u64) -> Result<Decoder> {
    let mut d = Decoder::new()?;
    d.set_max_image_pixels(max_image_pixels);
    Ok(d)
}

/// `f(i, sample i, decoder)` for every `i` of `range`, on `workers` threads each with its own
/// decoder and read buffer; the results in index order. On errors, the one of the lowest
/// index is returned (the same whatever the number of threads), and the workers stop taking
/// new samples.
fn par_samples<T: Send>(
    src: &AnySource,
    range: std::ops::Range<usize>,
    workers: usize,
    delay: std::time::Duration,
    max_image_pixels: u64,
    progress: &Progress,
    f: impl Fn(usize, Item<'_>, &mut Decoder) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(range.start);
    let failed = AtomicBool::new(false);
    let done: Mutex<Vec<(usize, Result<T>)>> = Mutex::new(Vec::with_capacity(range.len()));
    let work = || -> Result<()> {
        let (mut dec, mut buf) = (decoder(max_image_pixels)?, Vec::new());
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= range.end || failed.load(Ordering::Relaxed) {
                break;
            }
            // Every error names the sample and, where the source has one, its file.
            let r = src
                .get(i, &mut buf)
                .and_then(|item| f(i, item, &mut dec))
                .map_err(|e| match src.path(i) {
                    Some(p) => e.at(i).file(p),
                    None => e.at(i),
                });
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            mine.push((i, r));
            progress.add(1);
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
        }
        done.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
        Ok(())
    };
    let threads = workers.clamp(1, range.len().max(1));
    if threads == 1 {
        work()?;
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<()>>>()
        })?;
    }
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// `stoker convert --json`.
#[derive(Debug, Serialize)]
struct ConvertReport {
    /// Samples converted.
    samples: usize,
    /// `npy`, `hdf5`, `tar` or `folder`.
    to: &'static str,
    /// Shards written (for a folder: the shard-size groups the samples were written in).
    shards: usize,
    /// Seconds it took (without --verify).
    seconds: f64,
    samples_per_s: f64,
    /// Samples read back and compared (null without --verify).
    verified: Option<usize>,
    /// The output directory: `stoker bench` and `source::open` re-open it as it is (once
    /// every part has finished, with `--shard`).
    output: String,
    /// The part converted, with `--shard` (`{"index": i, "count": n}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<Part>,
    /// Shards skipped because their object exists in object storage (a rerun).
    shards_already_done: usize,
}

/// Before a run: removes the index files the run replaces (`DST/stoker.json`, and part
/// indexes, see [`clear_indexes`]; the index is written last, so a run that is killed never
/// leaves an index naming the shards of an earlier run) and the hidden temporaries
/// (`.NAME.stoker-tmp`) that a killed run left in `DST` and its class folders. A part removes
/// only its own temporaries (its shard names carry its tag, its folder files an index in
/// `range`): the other parts may be writing theirs.
fn clear_leftovers(dst: &Path, part: Option<Part>, range: &std::ops::Range<usize>) -> Result<()> {
    clear_indexes(dst, part)?;
    let Ok(entries) = fs::read_dir(dst) else {
        return Ok(());
    };
    let mine = |name: &str| {
        let Some(p) = part else {
            return true;
        };
        let inner = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".stoker-tmp"))
            .unwrap_or_default();
        inner.contains(&p.tag())
            || inner
                .split('.')
                .next()
                .and_then(|stem| stem.parse::<usize>().ok())
                .is_some_and(|i| range.contains(&i))
    };
    let mut dirs = vec![dst.to_path_buf()];
    dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    for d in dirs {
        for e in fs::read_dir(&d).map_err(|e| Error::io(&d, e))?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".stoker-tmp") && mine(&name) {
                fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
            }
        }
    }
    Ok(())
}

/// Runs `stoker convert`: every shard written atomically, then `DST/stoker.json` (a part's
/// `DST/stoker.part-IIII-of-NNNN.json` with `--shard`). A run that is killed leaves complete
/// shards only; running it again writes the same bytes.
pub fn run(a: ConvertArgs) -> Result<()> {
    if a.shard_size == 0 {
        return Err(Error::usage("--shard-size must be > 0"));
    }
    if matches!(a.to, ConvertTo::Hdf5) {
        crate::hdf5_out::check()?;
    }
    let part = a.shard.map(ShardArg::part).transpose()?;
    let src = crate::open::open(&a.src, a.labels.as_deref(), &a.images_key)?;
    // This run's samples: all of them, or the part's contiguous share (in the source's order,
    // so that the parts together list the samples as a whole run would).
    let mine = part.map_or(0..src.len(), |p| p.range(src.len()));
    let output = crate::output::Output::new(&a.dst)?;
    if output.is_remote() && (!matches!(a.to, ConvertTo::Tar | ConvertTo::Npy) || a.verify) {
        return Err(Error::usage(
            "convert writes to object storage with --to tar or --to npy, without --verify",
        )
        .file(&a.dst));
    }
    let dst = output.dir();
    clear_leftovers(dst, part, &mine)?;
    let delay = std::time::Duration::from_millis(a.delay_ms);
    let n = mine.len();
    let labelled = src.has_labels();
    let progress = Progress::new(n, "samples", a.quiet);
    let workers = match a.workers {
        Some(0) => return Err(Error::usage("--workers must be > 0")),
        Some(w) => w,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut shards = 0;
    // What `stoker.json` lists: the shards and label files written, in order.
    let mut index = Index::new(a.to.name(), n);
    index.part = part;
    output.remove(&[Index::FILE.to_string(), index.file_name()])?;
    // In object storage, a shard whose object exists is skipped (written whole by an
    // earlier run: an object appears only when its upload completes).
    let mut already = 0usize;
    if a.to == ConvertTo::Hdf5 {
        index.images_key = Some("images".into());
        index.labels_key = labelled.then(|| "labels".into());
    }
    let name = |p: &Path| {
        p.file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
    };
    let label_dir =
        |l: Option<i64>| l.map_or_else(|| "unlabelled".to_string(), |l| format!("{l:05}"));
    // Encoded images are copied as they are; decoded pixels become PNG.
    let encoded = |i: usize, raw: Raw<'_>, dec: &mut Decoder| -> Result<(Vec<u8>, &'static str)> {
        Ok(match raw {
            Raw::Encoded(b) => (b.to_vec(), sniff_ext(b)),
            raw => (png(&pixels(raw, dec)?).map_err(|e| e.at(i))?, "png"),
        })
    };
    for (k, start) in mine.clone().step_by(a.shard_size).enumerate() {
        let range = start..(start + a.shard_size).min(mine.end);
        let stem = if a.to == ConvertTo::Npy {
            "images"
        } else {
            "shard"
        };
        let first = shard_name(stem, part, k, a.to.name());
        if output.is_remote() && output.exists(&first)? {
            index.shards.push(first.clone());
            if a.to == ConvertTo::Npy {
                if labelled {
                    index.labels.push(shard_name("labels", part, k, "npy"));
                }
                if index.shape.is_none() {
                    // The shape and dtype of the shard written before: from its header.
                    let s = crate::open::open(&output.location(&first), None, "images")?;
                    let (w, h) = s.size().unwrap_or((1, 1));
                    index.shape = Some([h, w, s.channels().unwrap_or(1)]);
                    let mut buf = Vec::new();
                    let f32 = matches!(
                        s.get(0, &mut buf)?.raw,
                        Raw::Pixels(v) if matches!(v.pixels, Pixels::F32(_))
                    );
                    index.dtype = Some(if f32 { "f32" } else { "u8" }.to_string());
                }
            }
            index.shard_samples.push(range.len());
            shards += 1;
            already += 1;
            progress.add(range.len());
            continue;
        }
        // Samples are read, decoded and encoded on the workers; each shard is written here,
        // in order, so its bytes are the same for any number of workers.
        match a.to {
            ConvertTo::Tar => {
                let samples = par_samples(
                    &src,
                    range.clone(),
                    workers,
                    delay,
                    a.max_image_pixels,
                    &progress,
                    |i, item, dec| Ok((encoded(i, item.raw, dec)?, item.label)),
                )?;
                let out = dst.join(shard_name("shard", part, k, "tar"));
                atomic(&out, |tmp| {
                    let f = fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
                    let mut w = TarWriter::new(std::io::BufWriter::new(f));
                    for (i, ((bytes, ext), label)) in range.clone().zip(&samples) {
                        w.append_sample(&format!("{i:08}"), ext, bytes, *label)
                            .map_err(|e| Error::io(tmp, e))?;
                    }
                    w.finish().map(|_| ()).map_err(|e| Error::io(tmp, e))
                })?;
                output.publish(&out)?;
                index.shards.push(name(&out));
            }
            ConvertTo::Folder => {
                // One file per sample: the workers write them too.
                par_samples(
                    &src,
                    range.clone(),
                    workers,
                    delay,
                    a.max_image_pixels,
                    &progress,
                    |i, item, dec| {
                        let (bytes, ext) = encoded(i, item.raw, dec)?;
                        let out = a
                            .dst
                            .join(label_dir(item.label))
                            .join(format!("{i:08}.{ext}"));
                        atomic(&out, |tmp| {
                            fs::write(tmp, &bytes).map_err(|e| Error::io(tmp, e))
                        })
                    },
                )?;
            }
            ConvertTo::Npy | ConvertTo::Hdf5 => {
                let samples = par_samples(
                    &src,
                    range.clone(),
                    workers,
                    delay,
                    a.max_image_pixels,
                    &progress,
                    |i, item, dec| {
                        let label = item.label;
                        Ok((pixels(item.raw, dec).map_err(|e| e.at(i))?, label))
                    },
                )?;
                let mut first: Option<(usize, usize, usize, bool)> = None;
                let (mut u8s, mut f32s, mut labels) = (Vec::new(), Vec::new(), Vec::new());
                for (i, (o, label)) in range.clone().zip(samples) {
                    let kind = match &o {
                        Owned::U8(w, h, c, _) => (*w, *h, *c, false),
                        Owned::F32(w, h, c, _) => (*w, *h, *c, true),
                    };
                    let first = *first.get_or_insert(kind);
                    if kind != first {
                        return Err(Error::format(
                            src.path(i).unwrap_or(&a.src),
                            format!(
                                "sample is {}x{}x{}, unlike {}x{}x{} before it: resize first (stoker resize)",
                                kind.1, kind.0, kind.2, first.1, first.0, first.2
                            ),
                        )
                        .at(i));
                    }
                    match o {
                        Owned::U8(.., p) => u8s.extend_from_slice(&p),
                        Owned::F32(.., p) => f32s.extend_from_slice(&p),
                    }
                    labels.extend(label);
                }
                let (w, h, c, is_f32) = first.unwrap_or((1, 1, 1, false));
                let shape = [range.len(), h, w, c];
                let lab = labelled.then_some(&labels[..]);
                index.shape = Some([h, w, c]);
                index.dtype = Some(if is_f32 { "f32" } else { "u8" }.to_string());
                if a.to == ConvertTo::Npy {
                    let out = dst.join(shard_name("images", part, k, "npy"));
                    atomic(&out, |tmp| {
                        if is_f32 {
                            let bytes: Vec<u8> =
                                f32s.iter().flat_map(|v| v.to_le_bytes()).collect();
                            save_npy(tmp, "<f4", &shape, &bytes)
                        } else {
                            save_npy(tmp, "|u1", &shape, &u8s)
                        }
                    })?;
                    index.shards.push(name(&out));
                    if let Some(l) = lab {
                        let lout = dst.join(shard_name("labels", part, k, "npy"));
                        let bytes: Vec<u8> = l.iter().flat_map(|v| v.to_le_bytes()).collect();
                        atomic(&lout, |tmp| save_npy(tmp, "<i8", &[l.len()], &bytes))?;
                        output.publish(&lout)?;
                        index.labels.push(name(&lout));
                    }
                    // The images last: a shard whose images object exists is whole.
                    output.publish(&out)?;
                } else {
                    let out = a.dst.join(shard_name("data", part, k, "h5"));
                    let px = if is_f32 {
                        Pixels::F32(&f32s)
                    } else {
                        Pixels::U8(&u8s)
                    };
                    atomic(&out, |tmp| crate::hdf5_out::save(tmp, px, shape, lab))?;
                    index.shards.push(name(&out));
                }
            }
        }
        index.shard_samples.push(range.len());
        shards += 1;
    }
    progress.finish();
    if a.to != ConvertTo::Folder && (n > 0 || part.is_some()) {
        // `stoker::source::open(DST)` finds the shards and labels through it. A part writes
        // its index even when it has no samples: the data set waits for every part's.
        index.write(dst)?;
        output.publish(&dst.join(index.file_name()))?;
    }
    let secs = progress.elapsed();
    let mut verified = None;
    if a.verify && n > 0 {
        // A part reads back its own shards (the other parts may not have finished); a folder
        // holds every part's files, of which only this part's are compared.
        let out = match part {
            Some(_) if a.to != ConvertTo::Folder => {
                stoker::source::open_index(&a.dst, &index, &OpenOptions::new())?
            }
            _ => crate::open::open(&a.dst, None, "images")?,
        };
        // (written sample j, source sample i) pairs: a folder re-reads in class-folder order,
        // so each written sample maps back by its name.
        let pairs: Vec<(usize, usize)> = if a.to == ConvertTo::Folder {
            let mut pairs = Vec::with_capacity(n);
            for j in 0..out.len() {
                let p = out.path(j).unwrap_or(Path::new(""));
                let i = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .filter(|&i: &usize| i < src.len())
                    .ok_or_else(|| Error::format(p, "verify: unexpected file"))?;
                if mine.contains(&i) {
                    pairs.push((j, i));
                }
            }
            pairs
        } else {
            (0..out.len()).map(|j| (j, mine.start + j)).collect()
        };
        if pairs.len() != n {
            return Err(Error::format(
                &a.dst,
                format!("verify: {n} samples written, {} read back", pairs.len()),
            ));
        }
        let (mut dec, mut buf) = (decoder(a.max_image_pixels)?, Vec::new());
        let (mut dec2, mut buf2) = (decoder(a.max_image_pixels)?, Vec::new());
        for &(j, i) in &pairs {
            let a_item = src.get(i, &mut buf)?;
            let b_item = out.get(j, &mut buf2)?;
            let la = a_item.label;
            // A folder's labels are class indices: its class folder names are checked below.
            let lb = if a.to == ConvertTo::Folder {
                la
            } else {
                b_item.label
            };
            let pa = pixels(a_item.raw, &mut dec).map_err(|e| e.at(i))?;
            let pb = pixels(b_item.raw, &mut dec2).map_err(|e| e.at(j))?;
            if pa != pb || la != lb {
                return Err(Error::format(
                    out.path(j).unwrap_or(&a.dst),
                    format!("verify: sample {i} differs from the source"),
                )
                .at(j));
            }
            if a.to == ConvertTo::Folder {
                let dir = out
                    .path(j)
                    .and_then(|p| p.parent())
                    .and_then(|p| p.file_name());
                if dir.and_then(|d| d.to_str()) != Some(label_dir(la).as_str()) {
                    return Err(Error::format(
                        &a.dst,
                        format!("verify: sample {i} is in the wrong class folder"),
                    ));
                }
            }
        }
        verified = Some(n);
    } else if a.verify {
        verified = Some(0);
    }
    let pattern = a.dst.display().to_string();
    if a.json {
        return crate::bench::print_json(&ConvertReport {
            samples: n,
            to: a.to.name(),
            shards,
            seconds: secs,
            samples_per_s: n as f64 / secs.max(1e-9),
            verified,
            output: pattern,
            part,
            shards_already_done: already,
        });
    }
    let verified = verified.map_or(String::new(), |n| format!(", verified {n}"));
    let into = if a.to == ConvertTo::Folder {
        "files".to_string()
    } else {
        format!("{shards} shards")
    };
    let of = part.map_or(String::new(), |p| format!(" (part {p})"));
    println!(
        "converted {n} samples{of} into {into} in {secs:.2} s ({:.0} samples/s){verified}: {pattern}",
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}
