//! `stoker bench --tune`: short trials over workers × prefetch × batch size, then the fastest
//! setting with its measured images/s and the builder call that gives it. It suggests and
//! changes nothing; what the user set on the command line (`--workers`) is kept fixed.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::pass::run_pass;
use super::verdict::cores;
use super::{BenchArgs, build_loader};

/// Seconds each trial runs (at least 3 epochs).
const TRIAL_SECS: f64 = 0.4;
/// Trials of the fastest settings are run this many times in all; their median counts.
const REPEATS: usize = 3;
/// How many of the fastest settings are run again.
const FINALISTS: usize = 3;

/// One setting and what it gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trial {
    pub workers: usize,
    pub prefetch: usize,
    pub batch_size: usize,
    /// Images/s: with the simulated step when one was given, else the loader alone (the
    /// median of `REPEATS` runs for the finalists).
    pub images_per_s: f64,
    /// Fraction of wall time the consumer waited.
    pub idle_fraction: f64,
}

/// The settings to try: workers 1..=cores (only `--workers` when given; 0 on one core),
/// prefetch 1, 2, 4 and the current one, batch sizes half, equal to and twice the current one
/// (only the current one with a step: the step time is per batch of that size).
pub fn candidates(a: &BenchArgs, cores: usize, with_step: bool) -> Vec<(usize, usize, usize)> {
    let workers: Vec<usize> = match a.workers {
        Some(w) => vec![w],
        None if cores <= 1 => vec![0, 1],
        None => (1..=cores).collect(),
    };
    let mut prefetch = vec![1, 2, 4, a.prefetch];
    prefetch.sort_unstable();
    prefetch.dedup();
    let mut batches = if with_step {
        vec![a.batch_size]
    } else {
        vec![(a.batch_size / 2).max(1), a.batch_size, a.batch_size * 2]
    };
    batches.dedup();
    let mut out = Vec::new();
    for &b in &batches {
        for &w in &workers {
            for &p in &prefetch {
                out.push((w, p, b));
            }
        }
    }
    out
}

fn trial(
    a: &BenchArgs,
    (w, p, b): (usize, usize, usize),
    step: Option<Duration>,
) -> stoker::Result<Trial> {
    let mut args = a.clone();
    args.prefetch = p;
    args.batch_size = b;
    let (mut loader, _, _, _) = build_loader(&args, Some(w), None)?;
    let pass = run_pass(&mut loader, None, TRIAL_SECS, step, None, None)?;
    Ok(Trial {
        workers: w,
        prefetch: p,
        batch_size: b,
        images_per_s: pass.samples as f64 / pass.wall.max(1e-9),
        idle_fraction: pass.wait / pass.wall.max(1e-9),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `stoker bench --tune --json`.
#[derive(Debug, Serialize)]
struct TuneReport {
    cores: usize,
    gpu_step_ms: Option<f64>,
    /// Every trial, fastest first.
    trials: Vec<Trial>,
    best: Trial,
    /// The setting the command line gives (`--workers` or one per core, `--prefetch`,
    /// `--batch-size`).
    current: Trial,
    /// `best.images_per_s / current.images_per_s`.
    speedup: f64,
    /// The `LoaderBuilder` calls of the best setting.
    builder: String,
}

/// The builder calls of a setting.
pub fn builder_call(t: &Trial) -> String {
    format!(
        ".batch_size({}).num_workers({}).prefetch({})",
        t.batch_size, t.workers, t.prefetch
    )
}

/// The trials as a table, fastest first.
pub fn table(trials: &[Trial], with_step: bool) -> String {
    let mut s = String::new();
    let what = if with_step { "with step" } else { "loader" };
    let _ = writeln!(s, "workers  prefetch  batch  {what} images/s  wait %");
    for t in trials {
        let _ = writeln!(
            s,
            "{:>7}  {:>8}  {:>5}  {:>17.0}  {:>6.1}",
            t.workers,
            t.prefetch,
            t.batch_size,
            t.images_per_s,
            100.0 * t.idle_fraction
        );
    }
    s
}

/// Runs the trials and prints the table (or JSON) and the suggestion.
pub fn run(a: &BenchArgs, step: Option<Duration>) -> stoker::Result<()> {
    let cores = cores();
    let current_key = (a.workers.unwrap_or(cores), a.prefetch, a.batch_size);
    let mut trials = candidates(a, cores, step.is_some())
        .into_iter()
        .map(|c| trial(a, c, step))
        .collect::<stoker::Result<Vec<_>>>()?;
    // Run the fastest few (and the current setting) again: one short run is noisy.
    trials.sort_by(|x, y| y.images_per_s.total_cmp(&x.images_per_s));
    let key = |t: &Trial| (t.workers, t.prefetch, t.batch_size);
    for (k, t) in trials.iter_mut().enumerate() {
        if k < FINALISTS || key(t) == current_key {
            let mut ips = vec![t.images_per_s];
            for _ in 1..REPEATS {
                ips.push(trial(a, key(t), step)?.images_per_s);
            }
            t.images_per_s = median(ips);
        }
    }
    trials.sort_by(|x, y| y.images_per_s.total_cmp(&x.images_per_s));
    let best = trials[0].clone();
    let current = trials
        .iter()
        .find(|t| key(t) == current_key)
        .cloned()
        .unwrap_or_else(|| best.clone());
    let speedup = best.images_per_s / current.images_per_s.max(1e-9);
    if a.json {
        return super::print_json(&TuneReport {
            cores,
            gpu_step_ms: a.gpu_step_ms,
            builder: builder_call(&best),
            trials,
            best,
            current,
            speedup,
        });
    }
    print!("{}", table(&trials, step.is_some()));
    println!(
        "fastest: {} workers, prefetch {}, batch {}: {:.0} images/s, {speedup:.2}x the current setting ({} workers, prefetch {}, batch {}: {:.0} images/s)",
        best.workers,
        best.prefetch,
        best.batch_size,
        best.images_per_s,
        current.workers,
        current.prefetch,
        current.batch_size,
        current.images_per_s
    );
    println!("builder: Loader::builder(source){}", builder_call(&best));
    println!(
        "command: stoker bench --workers {} --prefetch {} --batch-size {}",
        best.workers, best.prefetch, best.batch_size
    );
    if best.batch_size != a.batch_size {
        println!(
            "note: a batch size changes training too (learning rate, memory); the fastest at batch {}: {}",
            a.batch_size,
            trials
                .iter()
                .find(|t| t.batch_size == a.batch_size)
                .map_or_else(String::new, |t| format!(
                    "{} workers, prefetch {} ({:.0} images/s)",
                    t.workers, t.prefetch, t.images_per_s
                ))
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut v = vec!["bench"];
        v.extend_from_slice(extra);
        Cli::parse_from(v).bench
    }

    #[test]
    fn candidates_cover_the_grid_and_keep_what_the_user_set() {
        let c = candidates(&args(&[]), 2, false);
        // workers 1, 2 × prefetch 1, 2, 4 × batch 32, 64, 128.
        assert_eq!(c.len(), 2 * 3 * 3);
        assert!(c.contains(&(2, 2, 64)) && c.contains(&(1, 4, 128)) && c.contains(&(2, 1, 32)));
        let c = candidates(&args(&["--workers", "3", "--prefetch", "3"]), 2, false);
        assert!(c.iter().all(|&(w, ..)| w == 3), "{c:?}");
        assert_eq!(c.len(), 4 * 3, "prefetch 1, 2, 3, 4");
        // With a step, the batch size is the user's.
        let c = candidates(&args(&["--batch-size", "10"]), 4, true);
        assert!(c.iter().all(|&(_, _, b)| b == 10), "{c:?}");
        assert_eq!(candidates(&args(&[]), 1, false)[0].0, 0);
    }

    #[test]
    fn the_table_and_builder_call() {
        let t = Trial {
            workers: 2,
            prefetch: 4,
            batch_size: 128,
            images_per_s: 9000.0,
            idle_fraction: 0.5,
        };
        assert_eq!(
            builder_call(&t),
            ".batch_size(128).num_workers(2).prefetch(4)"
        );
        let s = table(&[t.clone(), t], false);
        assert_eq!(s.lines().count(), 3, "{s}");
        assert!(s.lines().nth(1).unwrap().contains("9000"), "{s}");
    }
}
