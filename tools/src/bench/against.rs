//! `stoker bench A --against B`: the loader over A and over B (another data set, or
//! `decode`: the same samples read and decoded only, no loader) in alternating rounds, and
//! A ÷ B from each round, so that the ratio comes from runs side by side on a noisy machine.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use stoker::decode::Decoder;
use stoker::source::{Raw, Source};

use super::pass::run_pass;
use super::{BenchArgs, build_loader, decode_policy};

/// Rounds (one pass of A and one of B each).
const ROUNDS: usize = 5;
/// Seconds each pass runs at least (and at least 3 epochs, or `--epochs`).
const PASS_SECS: f64 = 1.0;

/// What A is measured against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Against {
    /// Another data set, through the loader with the same settings.
    Data(PathBuf),
    /// A's samples read and decoded by as many threads as the loader has workers: the
    /// ceiling a loader over A can reach.
    Decode,
}

impl Against {
    /// `decode`, or a path.
    pub fn parse(s: &Path) -> Against {
        if s.as_os_str() == "decode" && !s.exists() {
            Against::Decode
        } else {
            Against::Data(s.to_path_buf())
        }
    }
}

/// One round's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Round {
    pub a_images_per_s: f64,
    pub b_images_per_s: f64,
    /// `a_images_per_s / b_images_per_s`.
    pub ratio: f64,
}

/// `stoker bench --against --json`.
#[derive(Debug, Serialize)]
struct AgainstReport {
    a: String,
    b: String,
    workers: usize,
    rounds: Vec<Round>,
    /// Medians over the rounds.
    a_images_per_s: f64,
    b_images_per_s: f64,
    /// The median of the rounds' ratios.
    ratio: f64,
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The loader over `a`'s data: images/s of one pass; also its source's description and
/// worker count.
fn loader_pass(a: &BenchArgs, step: Option<Duration>) -> stoker::Result<(f64, String, usize)> {
    let (mut loader, description, _, _) = build_loader(a, a.workers, None)?;
    let p = run_pass(&mut loader, a.epochs, PASS_SECS, step, None, None)?;
    Ok((
        p.samples as f64 / p.wall.max(1e-9),
        description,
        loader.num_workers(),
    ))
}

/// `a`'s samples read and decoded (encoded ones) by `workers` threads, `--epochs` passes
/// over the data or at least 3 and [`PASS_SECS`]: images/s.
fn decode_pass(a: &BenchArgs, workers: usize) -> stoker::Result<f64> {
    let path = a.path.clone().unwrap_or_else(crate::args::default_data);
    let source = crate::open::open(&path, a.labels.as_deref(), "images")?;
    let n = source.len();
    if n == 0 {
        return Err(stoker::Error::usage(
            "--against decode: the data set is empty",
        ));
    }
    let channels = source.channels().unwrap_or(3);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // `--epochs` passes over the data, or at least 3 and `PASS_SECS`.
    let (min_samples, secs) = match a.epochs {
        Some(e) => (
            usize::try_from(e).unwrap_or(usize::MAX).saturating_mul(n),
            0.0,
        ),
        None => (3 * n, PASS_SECS),
    };
    let start = Instant::now();
    let done = std::thread::scope(|s| -> stoker::Result<usize> {
        let threads: Vec<_> = (0..workers.max(1))
            .map(|_| {
                s.spawn(|| -> stoker::Result<usize> {
                    let mut decoder = Decoder::new()?;
                    decoder.set_policy(decode_policy(a.strict_decode, a.lenient_decode));
                    decoder.set_max_image_pixels(a.max_image_pixels);
                    let mut buf = Vec::new();
                    let mut count = 0;
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let more =
                            k < min_samples || (secs > 0.0 && start.elapsed().as_secs_f64() < secs);
                        if !more || stop.load(Ordering::Relaxed) {
                            return Ok(count);
                        }
                        let r = source.get(k % n, &mut buf).and_then(|item| match item.raw {
                            Raw::Encoded(bytes) => decoder.decode(bytes, channels, None).map(drop),
                            Raw::Pixels(_) => Ok(()),
                        });
                        if let Err(e) = r {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        count += 1;
                    }
                })
            })
            .collect();
        let mut total = 0;
        for t in threads {
            total += t
                .join()
                .map_err(|_| stoker::Error::usage("--against decode: a thread panicked"))??;
        }
        Ok(total)
    })?;
    Ok(done as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Runs the rounds and prints them (or JSON) with the median ratio.
pub fn run(a: &BenchArgs, against: &Against, step: Option<Duration>) -> stoker::Result<()> {
    let mut rounds = Vec::with_capacity(ROUNDS);
    let (mut a_desc, mut b_desc, mut workers) = (String::new(), String::new(), 0);
    for r in 0..ROUNDS {
        let (ai, desc, w) = loader_pass(a, step)?;
        (a_desc, workers) = (desc, w);
        let bi = match against {
            Against::Data(p) => {
                let mut b = a.clone();
                b.path = Some(p.clone());
                b.labels = None;
                let (bi, desc, _) = loader_pass(&b, step)?;
                b_desc = desc;
                bi
            }
            Against::Decode => {
                b_desc = format!("read + decode only, {workers} threads, no loader");
                decode_pass(a, workers)?
            }
        };
        let round = Round {
            a_images_per_s: ai,
            b_images_per_s: bi,
            ratio: ai / bi.max(1e-9),
        };
        if !a.json {
            if r == 0 {
                println!("A: {a_desc}");
                println!("B: {b_desc}");
                println!("round  A images/s  B images/s  A / B");
            }
            println!(
                "{:>5}  {:>10.0}  {:>10.0}  {:>5.3}",
                r + 1,
                round.a_images_per_s,
                round.b_images_per_s,
                round.ratio
            );
        }
        rounds.push(round);
    }
    let report = AgainstReport {
        a: a_desc,
        b: b_desc,
        workers,
        a_images_per_s: median(rounds.iter().map(|r| r.a_images_per_s).collect()),
        b_images_per_s: median(rounds.iter().map(|r| r.b_images_per_s).collect()),
        ratio: median(rounds.iter().map(|r| r.ratio).collect()),
        rounds,
    };
    if a.json {
        return super::print_json(&report);
    }
    let lo = report
        .rounds
        .iter()
        .map(|r| r.ratio)
        .fold(f64::INFINITY, f64::min);
    let hi = report.rounds.iter().map(|r| r.ratio).fold(0.0, f64::max);
    println!(
        "A / B: {:.3} (median of {ROUNDS} rounds, {lo:.3} to {hi:.3}); {:.0} vs {:.0} images/s",
        report.ratio, report.a_images_per_s, report.b_images_per_s
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_a_word_unless_such_a_file_exists() {
        assert_eq!(Against::parse(Path::new("decode")), Against::Decode);
        assert_eq!(
            Against::parse(Path::new("data.npy")),
            Against::Data("data.npy".into())
        );
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![]), 0.0);
    }
}
