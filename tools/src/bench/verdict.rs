//! The verdict of `stoker bench --gpu-step-ms` / `--gpu`: who waits on whom and the changes
//! to make. A pure function of measured figures ([`verdict`]), unit-tested on synthetic
//! inputs below; the bench only measures and prints.

use std::fmt::Write as _;

use serde::Serialize;
use stoker::decode::Decoder;
use stoker::source::{Raw, Source};

/// Above this fraction of time waiting for input, the (simulated) GPU is input-bound.
pub const IDLE_THRESHOLD: f64 = 0.05;

/// CPU milliseconds per image in each loader stage (summed over workers).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageMs {
    /// Reading files / touching mapped pages.
    pub read: f64,
    /// Decoding and resizing.
    pub decode: f64,
    /// Augmentation.
    pub transform: f64,
    /// Converting and writing into the batch slot.
    pub write: f64,
}

impl StageMs {
    fn total(&self) -> f64 {
        self.read + self.decode + self.transform + self.write
    }
    /// Share of the stage total, 0 when nothing was measured.
    fn share(&self, part: f64) -> f64 {
        let t = self.total();
        if t > 0.0 { part / t } else { 0.0 }
    }
}

/// What was measured, and what the verdict needs to know about the set-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Fraction of the combined run's wall time the consumer (the GPU) waited for a batch.
    pub idle_fraction: f64,
    /// Share of that waiting spent on the first batch of an epoch (the next epoch is made
    /// ahead only by workers left idle at the end of this one: a short epoch leaves little).
    pub epoch_start_share: f64,
    /// Batches in an epoch.
    pub batches_per_epoch: usize,
    /// Loader alone (the consumer does nothing), images/s.
    pub loader_ips: f64,
    /// Step alone: batch size / step time, images/s (infinite for a 0 ms step).
    pub step_ips: f64,
    /// Loader and step together, images/s.
    pub combined_ips: f64,
    /// Worker threads (0: inline in the consumer thread).
    pub workers: usize,
    /// Cores of this machine.
    pub cores: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// Batches prepared ahead.
    pub prefetch: usize,
    /// Stored size of the source images (width, height), where known.
    pub source_size: Option<(usize, usize)>,
    /// Output size (width, height).
    pub output_size: (usize, usize),
    /// The source holds encoded files (JPEG/PNG) that every epoch decodes again.
    pub encoded: bool,
    /// Bytes per output element (1 for u8, 4 for f32).
    pub dtype_bytes: usize,
    /// CPU time per image in each stage.
    pub stages: StageMs,
}

/// Who waits on whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The GPU waits for batches: the loader is the bottleneck.
    Input,
    /// The loader keeps ahead of the step: fine.
    Gpu,
}

/// The verdict: who is the bottleneck, why, and the changes to make, most useful first.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Input- or GPU-bound.
    pub bound: Bound,
    /// One sentence with the figures behind the verdict.
    pub reason: String,
    /// Concrete changes, most useful first (empty when GPU-bound).
    pub changes: Vec<String>,
}

impl Verdict {
    /// `"input-bound"` or `"gpu-bound"`.
    pub fn label(&self) -> &'static str {
        match self.bound {
            Bound::Input => "input-bound",
            Bound::Gpu => "gpu-bound",
        }
    }
}

/// Formats images/s, with "unlimited" for an infinite rate (a 0 ms step).
pub fn rate(ips: f64) -> String {
    if ips.is_finite() {
        format!("{ips:.0}")
    } else {
        "unlimited".to_string()
    }
}

/// The verdict on measured figures: input-bound when the GPU sat idle more than
/// [`IDLE_THRESHOLD`] of the time, with the changes that address the measured cause.
pub fn verdict(f: &Figures) -> Verdict {
    let idle_pct = 100.0 * f.idle_fraction;
    if f.idle_fraction <= IDLE_THRESHOLD {
        let headroom = if f.step_ips.is_finite() && f.step_ips > 0.0 {
            format!(", {:.1}x what the step takes", f.loader_ips / f.step_ips)
        } else {
            String::new()
        };
        return Verdict {
            bound: Bound::Gpu,
            reason: format!(
                "the GPU waited {idle_pct:.1}% of the time (<= {:.0}%): the loader gives {} \
                 images/s{headroom}; the step sets the pace: fine",
                100.0 * IDLE_THRESHOLD,
                rate(f.loader_ips)
            ),
            changes: Vec::new(),
        };
    }
    let reason = format!(
        "the GPU waited {idle_pct:.1}% of the time (> {:.0}%): the loader gives {} images/s, \
         the step alone could consume {} images/s",
        100.0 * IDLE_THRESHOLD,
        rate(f.loader_ips),
        rate(f.step_ips)
    );
    let mut changes = Vec::new();
    // Waiting spread evenly over the batches would put 1/batches_per_epoch of it at epoch
    // starts: flag the cold start when it holds at least twice that, and at least half.
    let at_epoch_starts =
        f.epoch_start_share >= 0.5f64.max(2.0 / f.batches_per_epoch.max(1) as f64);
    if at_epoch_starts {
        changes.push(format!(
            "longer epochs: {:.0}% of the waiting is for the first batch of an epoch (the next \
             epoch is started ahead only as this one ends) and an epoch is only {} batches; repeat or concatenate the \
             data set per epoch, or a larger data set",
            100.0 * f.epoch_start_share,
            f.batches_per_epoch
        ));
    }
    if f.workers < f.cores {
        changes.push(format!(
            "more workers: --workers {} (now {}; this machine has {} cores)",
            f.cores, f.workers, f.cores
        ));
    }
    let (ow, oh) = f.output_size;
    if let Some((sw, sh)) = f.source_size {
        // Any side more than 10% larger than the output: every epoch decodes and resizes
        // pixels it throws away.
        if sw * 10 > ow * 11 || sh * 10 > oh * 11 {
            let factor = (sw * sh) as f64 / (ow * oh).max(1) as f64;
            changes.push(format!(
                "pre-resize once: stoker resize SRC DST --size {ow}x{oh} (sources are \
                 {sw}x{sh}, {factor:.1}x the output's pixels, resized again every epoch)"
            ));
        }
    }
    let decode = f.stages.share(f.stages.decode);
    let read = f.stages.share(f.stages.read);
    let write = f.stages.share(f.stages.write);
    if f.encoded && decode >= 0.5 {
        changes.push(format!(
            "cache decoded pixels: stoker convert SRC DST --to npy (decoding is {:.0}% of the \
             loader's CPU time; NPY is memory-mapped and not decoded)",
            100.0 * decode
        ));
    } else if read >= 0.4 {
        changes.push(format!(
            "pack the files into shards: stoker convert SRC DST --to tar (or --to npy) \
             (reading is {:.0}% of the loader's CPU time)",
            100.0 * read
        ));
    }
    if f.dtype_bytes > 1 && write >= 0.3 {
        changes.push(format!(
            "write u8 and convert on the GPU: --gpu --gpu-convert f16 (or --dtype u8; writing \
             the batch is {:.0}% of the loader's CPU time; u8 is {}x less to write and to \
             upload)",
            100.0 * write,
            f.dtype_bytes
        ));
    }
    if f.loader_ips >= f.step_ips * (1.0 - IDLE_THRESHOLD) && !at_epoch_starts {
        changes.push(format!(
            "more prefetch: --prefetch {} (the loader keeps up on average but not batch by \
             batch)",
            (f.prefetch * 2).max(2)
        ));
    }
    if f.batch_size < 4 * f.workers.max(1) {
        changes.push(format!(
            "a larger batch: --batch-size {} ({} samples per batch for {} workers: workers \
             idle at every batch boundary)",
            (4 * f.workers.max(1)).next_power_of_two(),
            f.batch_size,
            f.workers
        ));
    }
    if changes.is_empty() {
        changes.push(format!(
            "no cheap change left: the loader runs at its limit ({} images/s on {} cores); a \
             lighter augmentation, more cores or a cheaper source format",
            rate(f.loader_ips),
            f.cores
        ));
    }
    Verdict {
        bound: Bound::Input,
        reason,
        changes,
    }
}

/// Cores of this machine (the sweep's upper bound and the "more workers" target).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The step alone: `batch_size / step`, images/s (infinite for a 0 ms step).
pub fn step_ips(batch_size: usize, step_ms: f64) -> f64 {
    if step_ms > 0.0 {
        batch_size as f64 / (step_ms / 1e3)
    } else {
        f64::INFINITY
    }
}

/// What the verdict needs to know about the source: stored image size and whether it is
/// encoded (decoded again every epoch).
#[derive(Clone, Copy, Debug, Default)]
pub struct SourceShape {
    /// Stored (width, height) of the first sample, where it could be learned.
    pub size: Option<(usize, usize)>,
    /// JPEG/PNG files rather than decoded pixels.
    pub encoded: bool,
}

impl SourceShape {
    /// Looks at the first sample (decoding it once when the source does not know its size).
    pub fn probe(source: &dyn Source) -> SourceShape {
        if source.is_empty() {
            return SourceShape::default();
        }
        let mut buf = Vec::new();
        match source.get(0, &mut buf) {
            Ok(item) => match item.raw {
                Raw::Pixels(v) => SourceShape {
                    size: Some((v.width, v.height)),
                    encoded: false,
                },
                Raw::Encoded(bytes) => SourceShape {
                    size: Decoder::new().ok().and_then(|mut d| {
                        d.decode(bytes, 3, None).ok().map(|i| (i.width, i.height))
                    }),
                    encoded: true,
                },
            },
            // The bench itself reports the error (or skips the sample).
            Err(_) => SourceShape::default(),
        }
    }
}

/// The step part of the text report: `step` names the step (its first line), `idle` says how
/// the idle time was measured.
pub fn report(step: &str, f: &Figures, v: &Verdict, idle: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{step}");
    let _ = writeln!(s, "  loader alone:   {} images/s", rate(f.loader_ips));
    let _ = writeln!(s, "  step alone:     {} images/s", rate(f.step_ips));
    let _ = writeln!(s, "  combined:       {} images/s", rate(f.combined_ips));
    let _ = writeln!(
        s,
        "  GPU idle:       {:.1}% ({idle}; {:.0}% of it at epoch starts)",
        100.0 * f.idle_fraction,
        100.0 * f.epoch_start_share
    );
    let _ = writeln!(s, "verdict: {}: {}", v.label(), v.reason);
    for c in &v.changes {
        let _ = writeln!(s, "  change: {c}");
    }
    s
}

/// A rate for JSON: `None` (null) when infinite (a 0 ms step).
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The step fields of `stoker bench --json` with a step (simulated or on the GPU).
#[derive(Debug, Serialize)]
pub struct StepReport {
    /// The step time, ms (the simulated one, or the GPU step alone).
    pub gpu_step_ms: f64,
    /// The loader alone, images/s.
    pub loader_images_per_s: Option<f64>,
    /// The step alone, images/s (null: unlimited).
    pub step_images_per_s: Option<f64>,
    /// Loader and step together, images/s.
    pub combined_images_per_s: Option<f64>,
    /// Wall time of the combined run, s.
    pub combined_seconds: f64,
    /// Time the consumer waited for batches in the combined run, s.
    pub gpu_wait_s: f64,
    /// Fraction of the combined run the GPU sat idle.
    pub gpu_idle_fraction: f64,
    /// Share of that idle time at epoch starts.
    pub epoch_start_wait_share: f64,
    /// The idle fraction above which the run is input-bound.
    pub idle_threshold: f64,
    /// Cores of this machine.
    pub cores: usize,
    /// `input-bound` or `gpu-bound`.
    pub verdict: &'static str,
    /// The figures behind the verdict.
    pub reason: String,
    /// The changes to make, most useful first.
    pub changes: Vec<String>,
}

impl StepReport {
    /// The report of `f` and `v`, for a step of `step_ms` and a combined run of `wall` s
    /// that waited `wait` s.
    pub fn new(step_ms: f64, f: &Figures, v: &Verdict, wall: f64, wait: f64) -> StepReport {
        StepReport {
            gpu_step_ms: step_ms,
            loader_images_per_s: finite(f.loader_ips),
            step_images_per_s: finite(f.step_ips),
            combined_images_per_s: finite(f.combined_ips),
            combined_seconds: wall,
            gpu_wait_s: wait,
            gpu_idle_fraction: f.idle_fraction,
            epoch_start_wait_share: f.epoch_start_share,
            idle_threshold: IDLE_THRESHOLD,
            cores: f.cores,
            verdict: v.label(),
            reason: v.reason.clone(),
            changes: v.changes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_loader_slow_step() -> Figures {
        Figures {
            idle_fraction: 0.01,
            epoch_start_share: 0.0,
            batches_per_epoch: 100,
            loader_ips: 2000.0,
            step_ips: 40.0,
            combined_ips: 40.0,
            workers: 2,
            cores: 2,
            batch_size: 8,
            prefetch: 2,
            source_size: Some((256, 144)),
            output_size: (256, 144),
            encoded: true,
            dtype_bytes: 4,
            stages: StageMs {
                read: 0.05,
                decode: 0.5,
                transform: 0.0,
                write: 0.1,
            },
        }
    }

    #[test]
    fn slow_step_is_gpu_bound() {
        let v = verdict(&fast_loader_slow_step());
        assert_eq!(v.bound, Bound::Gpu);
        assert_eq!(v.label(), "gpu-bound");
        assert!(v.changes.is_empty());
        assert!(v.reason.contains("50.0x"), "{}", v.reason);
    }

    #[test]
    fn threshold_is_five_percent() {
        let mut f = fast_loader_slow_step();
        f.idle_fraction = 0.05;
        assert_eq!(verdict(&f).bound, Bound::Gpu);
        f.idle_fraction = 0.051;
        assert_eq!(verdict(&f).bound, Bound::Input);
    }

    fn input_bound() -> Figures {
        Figures {
            idle_fraction: 0.9,
            loader_ips: 500.0,
            step_ips: f64::INFINITY,
            combined_ips: 500.0,
            ..fast_loader_slow_step()
        }
    }

    #[test]
    fn decode_bound_encoded_source_gets_a_cache_format() {
        let v = verdict(&input_bound());
        assert_eq!(v.bound, Bound::Input);
        assert!(v.reason.contains("unlimited"), "{}", v.reason);
        assert_eq!(v.changes.len(), 1, "{:?}", v.changes);
        assert!(v.changes[0].contains("--to npy"), "{:?}", v.changes);
    }

    #[test]
    fn fewer_workers_than_cores_comes_first() {
        let f = Figures {
            workers: 1,
            cores: 8,
            ..input_bound()
        };
        let v = verdict(&f);
        assert!(
            v.changes[0].starts_with("more workers: --workers 8 (now 1"),
            "{:?}",
            v.changes
        );
    }

    #[test]
    fn large_sources_get_pre_resize() {
        let f = Figures {
            source_size: Some((1920, 1080)),
            ..input_bound()
        };
        let v = verdict(&f);
        assert!(
            v.changes
                .iter()
                .any(|c| c.contains("stoker resize SRC DST --size 256x144") && c.contains("56.2x")),
            "{:?}",
            v.changes
        );
        // Same size or within 10%: no resize advice.
        let f = Figures {
            source_size: Some((270, 150)),
            ..input_bound()
        };
        assert!(!verdict(&f).changes.iter().any(|c| c.contains("resize")));
    }

    #[test]
    fn write_bound_float_output_gets_u8() {
        let f = Figures {
            encoded: false,
            stages: StageMs {
                read: 0.01,
                decode: 0.0,
                transform: 0.0,
                write: 0.2,
            },
            ..input_bound()
        };
        let v = verdict(&f);
        assert!(
            v.changes
                .iter()
                .any(|c| c.starts_with("write u8") && c.contains("4x"))
        );
        assert!(!v.changes.iter().any(|c| c.contains("--to npy")));
        // Already u8: nothing to gain there.
        let f = Figures {
            dtype_bytes: 1,
            ..f
        };
        let v = verdict(&f);
        assert!(!v.changes.iter().any(|c| c.starts_with("write u8")));
        assert!(
            v.changes[0].starts_with("no cheap change left"),
            "{:?}",
            v.changes
        );
    }

    #[test]
    fn read_bound_gets_shards() {
        let f = Figures {
            stages: StageMs {
                read: 0.5,
                decode: 0.3,
                transform: 0.0,
                write: 0.1,
            },
            ..input_bound()
        };
        let v = verdict(&f);
        assert!(
            v.changes.iter().any(|c| c.contains("--to tar")),
            "{:?}",
            v.changes
        );
    }

    #[test]
    fn small_batch_and_jitter() {
        let f = Figures {
            idle_fraction: 0.2,
            loader_ips: 1000.0,
            step_ips: 900.0,
            workers: 8,
            cores: 8,
            batch_size: 4,
            encoded: false,
            ..input_bound()
        };
        let v = verdict(&f);
        assert!(
            v.changes
                .iter()
                .any(|c| c.starts_with("more prefetch: --prefetch 4"))
        );
        assert!(
            v.changes
                .iter()
                .any(|c| c.starts_with("a larger batch: --batch-size 32"))
        );
    }

    #[test]
    fn idle_at_epoch_starts_gets_longer_epochs_not_prefetch() {
        let f = Figures {
            idle_fraction: 0.2,
            epoch_start_share: 0.8,
            batches_per_epoch: 4,
            loader_ips: 6000.0,
            step_ips: 4000.0,
            encoded: false,
            ..input_bound()
        };
        let v = verdict(&f);
        assert!(
            v.changes[0].starts_with("longer epochs: 80% of the waiting")
                && v.changes[0].contains("only 4 batches"),
            "{:?}",
            v.changes
        );
        assert!(!v.changes.iter().any(|c| c.starts_with("more prefetch")));
        // One batch per epoch: every wait is at an epoch start, which says nothing.
        let one = Figures {
            epoch_start_share: 1.0,
            batches_per_epoch: 1,
            ..f.clone()
        };
        assert!(
            !verdict(&one)
                .changes
                .iter()
                .any(|c| c.starts_with("longer epochs"))
        );
        // Spread through the epoch instead: prefetch.
        let f = Figures {
            epoch_start_share: 0.1,
            ..f
        };
        let v = verdict(&f);
        assert!(v.changes.iter().any(|c| c.starts_with("more prefetch")));
        assert!(!v.changes.iter().any(|c| c.starts_with("longer epochs")));
    }

    #[test]
    fn step_report_serialises_infinite_rates_as_null() {
        let f = input_bound();
        let v = verdict(&f);
        let j = serde_json::to_value(StepReport::new(0.0, &f, &v, 1.0, 0.9)).unwrap();
        assert_eq!(j["verdict"], "input-bound");
        assert!(j["step_images_per_s"].is_null());
        assert_eq!(j["loader_images_per_s"], 500.0);
        assert_eq!(j["changes"].as_array().unwrap().len(), v.changes.len());
    }
}
