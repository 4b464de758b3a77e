//! `stoker bench --sweep-workers`: the loader (and the simulated step, when given) at
//! 0..=cores workers, as a table, JSON and an SVG chart.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::pass::run_pass;
use super::verdict::{IDLE_THRESHOLD, cores, rate, step_ips};
use super::{BenchArgs, build_loader, svg};

/// One row of `--sweep-workers`.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    /// Worker threads.
    pub workers: usize,
    /// Loader alone, images/s.
    pub loader_ips: f64,
    /// With the simulated step (when one was given), images/s.
    pub combined_ips: Option<f64>,
    /// Fraction of wall time the consumer waited: with the step when given, else alone.
    pub idle_fraction: f64,
}

/// The `--sweep-workers` table.
pub fn sweep_table(rows: &[SweepRow], step_ips: Option<f64>) -> String {
    let mut s = String::new();
    match step_ips {
        Some(step) => {
            let _ = writeln!(
                s,
                "workers  loader images/s  combined images/s  GPU idle %   (step alone: {} images/s)",
                rate(step)
            );
            for r in rows {
                let _ = writeln!(
                    s,
                    "{:>7}  {:>15.0}  {:>17.0}  {:>10.1}",
                    r.workers,
                    r.loader_ips,
                    r.combined_ips.unwrap_or(f64::NAN),
                    100.0 * r.idle_fraction
                );
            }
        }
        None => {
            let _ = writeln!(s, "workers  images/s  consumer wait %");
            for r in rows {
                let _ = writeln!(
                    s,
                    "{:>7}  {:>8.0}  {:>15.1}",
                    r.workers,
                    r.loader_ips,
                    100.0 * r.idle_fraction
                );
            }
        }
    }
    s
}

/// One row of `stoker bench --sweep-workers --json`.
#[derive(Debug, Serialize)]
struct RowReport {
    workers: usize,
    images_per_s: f64,
    combined_images_per_s: Option<f64>,
    idle_fraction: f64,
}

/// `stoker bench --sweep-workers --json`.
#[derive(Debug, Serialize)]
struct SweepReport {
    cores: usize,
    gpu_step_ms: Option<f64>,
    /// Null without a step, and for a 0 ms step (unlimited).
    step_images_per_s: Option<f64>,
    sweep: Vec<RowReport>,
}

/// Runs the sweep and prints its table (or JSON) and writes its `--plot`.
pub fn run(a: &BenchArgs, step: Option<Duration>) -> stoker::Result<()> {
    if a.workers.is_some() {
        return Err(stoker::Error::usage(
            "--sweep-workers runs every worker count: leave out --workers",
        ));
    }
    let cores = cores();
    let mut rows = Vec::new();
    let mut step_rate = None;
    let mut description = String::new();
    for w in 0..=cores {
        let (mut loader, d, _, _) = build_loader(a, Some(w), None)?;
        description = d;
        let alone = run_pass(&mut loader, a.epochs, 1.0, None, None, None)?;
        let loader_ips = alone.samples as f64 / alone.wall.max(1e-9);
        let (combined_ips, idle_fraction) = match step {
            Some(s) => {
                step_rate = Some(step_ips(loader.batch_size(), a.gpu_step_ms.unwrap_or(0.0)));
                let c = run_pass(&mut loader, Some(alone.epochs), 0.0, Some(s), None, None)?;
                (
                    Some(c.samples as f64 / c.wall.max(1e-9)),
                    c.wait / c.wall.max(1e-9),
                )
            }
            None => (None, alone.wait / alone.wall.max(1e-9)),
        };
        rows.push(SweepRow {
            workers: w,
            loader_ips,
            combined_ips,
            idle_fraction,
        });
    }
    if let Some(file) = &a.plot {
        let title = match a.gpu_step_ms {
            Some(ms) => format!("stoker bench: images/s against workers ({ms} ms step)"),
            None => "stoker bench: images/s against workers".to_string(),
        };
        std::fs::write(file, svg::plot_svg(&rows, step_rate, &title))
            .map_err(|e| stoker::Error::io(file, e))?;
    }
    if a.json {
        let finite = |v: f64| v.is_finite().then_some(v);
        let report = SweepReport {
            cores,
            gpu_step_ms: a.gpu_step_ms,
            step_images_per_s: step_rate.and_then(finite),
            sweep: rows
                .iter()
                .map(|r| RowReport {
                    workers: r.workers,
                    images_per_s: r.loader_ips,
                    combined_images_per_s: r.combined_ips,
                    idle_fraction: r.idle_fraction,
                })
                .collect(),
        };
        super::print_json(&report)?;
    } else {
        println!("source: {description}");
        println!(
            "cores: {cores}, batch {}, prefetch {}",
            a.batch_size, a.prefetch
        );
        print!("{}", sweep_table(&rows, step_rate));
        if step.is_some() {
            match rows.iter().find(|r| r.idle_fraction <= IDLE_THRESHOLD) {
                Some(r) => println!(
                    "fewest workers that keep the GPU busy (idle <= {:.0}%): {}",
                    100.0 * IDLE_THRESHOLD,
                    r.workers
                ),
                None => println!(
                    "input-bound at every worker count (GPU idle > {:.0}%)",
                    100.0 * IDLE_THRESHOLD
                ),
            }
        }
        if let Some(file) = &a.plot {
            println!("plot: {}", file.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_worker_count() {
        let rows: Vec<SweepRow> = (0..3)
            .map(|w| SweepRow {
                workers: w,
                loader_ips: 100.0,
                combined_ips: Some(50.0),
                idle_fraction: 0.5,
            })
            .collect();
        let t = sweep_table(&rows, Some(f64::INFINITY));
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("unlimited"), "{t}");
        let t = sweep_table(&rows, None);
        assert!(t.starts_with("workers  images/s  consumer wait %"), "{t}");
    }
}
