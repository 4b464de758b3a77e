//! `stoker bench` loader against a GPU, simulated or real (`device.rs`): the step simulation, the verdict, the
//! `--sweep-workers` table and its `--plot` SVG.
//!
//! The verdict is a pure function of measured figures ([`verdict`]), unit-tested on synthetic
//! inputs below; the bench command only measures and prints.

use std::fmt::Write as _;
#[cfg(feature = "cuda")]
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "cuda")]
use stoker::batch::Allocator;
use stoker::decode::Decoder;
use stoker::source::{Raw, Source};

/// Above this fraction of time waiting for input, the (simulated) GPU is input-bound.
pub const IDLE_THRESHOLD: f64 = 0.05;

/// Longest simulated step accepted (ms).
const MAX_STEP_MS: f64 = 60_000.0;

/// Parses `--gpu-step-ms`: a finite number of milliseconds, 0 to 60000.
pub fn parse_step_ms(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of milliseconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "{s:?}: a step time must be a non-negative number of milliseconds (0 = an \
             infinitely fast step)"
        ));
    }
    if v > MAX_STEP_MS {
        return Err(format!(
            "{s:?}: a step time above {MAX_STEP_MS} ms is not plausible"
        ));
    }
    Ok(v)
}

/// The work of one training step on the GPU, for `stoker bench --gpu`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GpuStep {
    /// A kernel that runs for this many milliseconds (it reads the GPU's nanosecond timer).
    Spin(f64),
    /// `repeats` single-precision GEMMs of `n x n` by `n x n` (cuBLAS).
    Gemm { n: usize, repeats: usize },
}

impl GpuStep {
    /// How the step is named in reports: `spin 40 ms`, `gemm 4096 x2`.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn describe(&self) -> String {
        match *self {
            GpuStep::Spin(ms) => format!("spin {ms} ms"),
            GpuStep::Gemm { n, repeats: 1 } => format!("gemm {n}"),
            GpuStep::Gemm { n, repeats } => format!("gemm {n} x{repeats}"),
        }
    }
}

/// Parses `--gpu-step`: `spin:MS` or `gemm:N` or `gemm:NxR` (R GEMMs of N x N per batch).
pub fn parse_gpu_step(s: &str) -> Result<GpuStep, String> {
    let (kind, arg) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: a GPU step is spin:MS, gemm:N or gemm:NxR"))?;
    match kind.trim() {
        "spin" => Ok(GpuStep::Spin(
            parse_step_ms(arg).map_err(|e| format!("{s:?}: {e}"))?,
        )),
        "gemm" => {
            let (n, r) = arg.split_once(['x', 'X']).unwrap_or((arg, "1"));
            let p = |v: &str, what: &str, max: usize| {
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&x| x > 0 && x <= max)
                    .ok_or_else(|| format!("{s:?}: {what} must be an integer from 1 to {max}"))
            };
            Ok(GpuStep::Gemm {
                n: p(n, "the GEMM size", 32768)?,
                repeats: p(r, "the repeat count", 1000)?,
            })
        }
        other => Err(format!(
            "{s:?}: unknown GPU step {other:?} (spin:MS, gemm:N, gemm:NxR)"
        )),
    }
}

/// Spin for at most this long at the end of a simulated step (sleep before that).
const SPIN: Duration = Duration::from_micros(200);

/// Simulates a GPU step of `d`: sleeps until 0.2 ms before the deadline, then spins (yielding)
/// to it. The thread is mostly asleep, as a host thread is while the GPU works, so the
/// simulated step leaves the cores to the loader's workers; the spin makes it precise to a few
/// microseconds, where a plain sleep overshoots by 50-100 µs.
pub fn simulate_step(d: Duration) {
    if d.is_zero() {
        return;
    }
    let deadline = Instant::now() + d;
    if d > SPIN {
        std::thread::sleep(d - SPIN);
    }
    while Instant::now() < deadline {
        std::thread::yield_now();
    }
}

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
        if t > 0.0 {
            part / t
        } else {
            0.0
        }
    }
}

/// What was measured, and what the verdict needs to know about the set-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Fraction of the combined run's wall time the consumer (the GPU) waited for a batch.
    pub idle_fraction: f64,
    /// Share of that waiting spent on the first batch of an epoch (the loader starts each
    /// epoch cold).
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
            "longer epochs: {:.0}% of the waiting is for the first batch of an epoch (the loader \
             starts each epoch cold) and an epoch is only {} batches; repeat or concatenate the \
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

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A small SVG line chart of loader images/s against workers (one `<circle class="point">`
/// per row), with a dashed horizontal line at the step's rate when it is finite, and a second
/// line for the combined images/s when every row has one.
pub fn plot_svg(rows: &[SweepRow], step_ips: Option<f64>, title: &str) -> String {
    let (w, h) = (560.0, 340.0);
    let (left, right, top, bottom) = (64.0, 24.0, 40.0, 48.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let max_workers = rows.iter().map(|r| r.workers).max().unwrap_or(0).max(1) as f64;
    let step_line = step_ips.filter(|s| s.is_finite() && *s > 0.0);
    let mut ymax = rows
        .iter()
        .map(|r| r.loader_ips.max(r.combined_ips.unwrap_or(0.0)))
        .fold(0.0f64, f64::max);
    if let Some(s) = step_line {
        ymax = ymax.max(s);
    }
    let ymax = nice_ceiling(ymax * 1.1);
    let x = |workers: usize| left + pw * workers as f64 / max_workers;
    let y = |v: f64| top + ph * (1.0 - (v / ymax).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    // Axes, ticks, grid.
    let _ = writeln!(
        s,
        r#"<path d="M{left} {top} V{} H{}" fill="none" stroke="black"/>"#,
        top + ph,
        left + pw
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0
        );
    }
    for r in rows {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(r.workers),
            top + ph + 18.0,
            r.workers
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">workers</text>"#,
        left + pw / 2.0,
        h - 8.0
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">images/s</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    if let Some(step) = step_line {
        let yy = y(step);
        let _ = writeln!(
            s,
            r##"<line class="step" x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#c0392b" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c0392b">GPU step: {step:.0} images/s</text>"##,
            left + pw,
            left + pw,
            yy - 6.0
        );
    }
    let points: Vec<String> = rows
        .iter()
        .map(|r| format!("{:.1},{:.1}", x(r.workers), y(r.loader_ips)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#2060c0" stroke-width="2"/>"##,
        points.join(" ")
    );
    // Loader and step together, where measured: a second line, without points.
    let combined: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.combined_ips
                .map(|c| format!("{:.1},{:.1}", x(r.workers), y(c)))
        })
        .collect();
    let mut legend = vec![("#2060c0", "loader alone")];
    if combined.len() == rows.len() && !rows.is_empty() {
        let _ = writeln!(
            s,
            r##"<polyline class="combined" points="{}" fill="none" stroke="#27ae60" stroke-width="2"/>"##,
            combined.join(" ")
        );
        legend.push(("#27ae60", "with the step"));
    }
    for (i, (colour, label)) in legend.iter().enumerate() {
        let yy = top + 12.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            left + 10.0,
            left + 30.0,
            left + 36.0,
            yy + 4.0
        );
    }
    for r in rows {
        let _ = writeln!(
            s,
            r##"<circle class="point" cx="{:.1}" cy="{:.1}" r="4" fill="#2060c0"><title>{} workers: {:.0} images/s</title></circle>"##,
            x(r.workers),
            y(r.loader_ips),
            r.workers,
            r.loader_ips
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 1.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
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

/// JSON for a number that may be infinite (a 0 ms step): `null` then.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "null".to_string()
    }
}

/// JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The `--gpu-step-ms` fields of `stoker bench --json`, each starting with a comma.
pub fn figures_json(step_ms: f64, f: &Figures, v: &Verdict, wall: f64, wait: f64) -> String {
    let changes: Vec<String> = v.changes.iter().map(|c| json_str(c)).collect();
    format!(
        ",\"gpu_step_ms\":{step_ms},\"loader_images_per_s\":{},\"step_images_per_s\":{},\
         \"combined_images_per_s\":{},\"combined_seconds\":{wall:.6},\"gpu_wait_s\":{wait:.6},\
         \"gpu_idle_fraction\":{:.6},\"epoch_start_wait_share\":{:.6},\
         \"idle_threshold\":{IDLE_THRESHOLD},\"cores\":{},\
         \"verdict\":\"{}\",\"reason\":{},\"changes\":[{}]",
        num(f.loader_ips),
        num(f.step_ips),
        num(f.combined_ips),
        f.idle_fraction,
        f.epoch_start_share,
        f.cores,
        v.label(),
        json_str(&v.reason),
        changes.join(",")
    )
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

/// `stoker bench --sweep-workers --json`.
pub fn sweep_json(
    cores: usize,
    step_ms: Option<f64>,
    step_ips: Option<f64>,
    rows: &[SweepRow],
) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"workers\":{},\"images_per_s\":{},\"combined_images_per_s\":{},\"idle_fraction\":{:.6}}}",
                r.workers,
                num(r.loader_ips),
                r.combined_ips.map_or("null".to_string(), num),
                r.idle_fraction
            )
        })
        .collect();
    format!(
        "{{\"cores\":{cores},\"gpu_step_ms\":{},\"step_images_per_s\":{},\"sweep\":[{}]}}",
        step_ms.map_or("null".to_string(), |v| v.to_string()),
        step_ips.map_or("null".to_string(), num),
        rows.join(",")
    )
}

/// GPU 0 for `stoker bench --gpu`.
#[cfg(feature = "cuda")]
pub struct Gpu {
    device: stoker::cuda::Device,
}

#[cfg(feature = "cuda")]
impl Gpu {
    /// Opens GPU 0 (the no-driver error when there is none).
    pub fn open() -> stoker::Result<Gpu> {
        Ok(Gpu {
            device: stoker::cuda::Device::open(0)?,
        })
    }
    /// Page-locked batch memory on this GPU.
    pub fn allocator(&self) -> Arc<dyn Allocator> {
        Arc::new(stoker::cuda::PinnedAlloc::for_device(&self.device))
    }
    /// The device.
    pub fn device(&self) -> &stoker::cuda::Device {
        &self.device
    }
    /// The GPU's name.
    pub fn name(&self) -> String {
        self.device.name().unwrap_or_else(|_| "GPU 0".to_string())
    }
    /// H2D GB/s for copies of `bytes`: (pinned, pageable).
    pub fn h2d(&self, bytes: usize) -> stoker::Result<(f64, f64)> {
        // At least 8 MB a copy and 20 copies, so launch latency does not dominate.
        let bw = self.device.h2d_bandwidth(bytes.max(8 << 20), 20)?;
        Ok((bw.pinned_gbps, bw.pageable_gbps))
    }
}

/// GPU 0 for `stoker bench --gpu`: none in a build without the cuda feature.
#[cfg(not(feature = "cuda"))]
pub enum Gpu {}

#[cfg(not(feature = "cuda"))]
impl Gpu {
    /// Always the "rebuild with --features cuda" error.
    pub fn open() -> stoker::Result<Gpu> {
        Err(stoker::Error::new(
            stoker::ErrorKind::NoDevice,
            "--gpu: built without the cuda feature: rebuild with --features cuda \
             (cargo build --release -p stoker-tools --features cuda)",
        ))
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
        assert!(v
            .changes
            .iter()
            .any(|c| c.starts_with("write u8") && c.contains("4x")));
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
        assert!(v
            .changes
            .iter()
            .any(|c| c.starts_with("more prefetch: --prefetch 4")));
        assert!(v
            .changes
            .iter()
            .any(|c| c.starts_with("a larger batch: --batch-size 32")));
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
        assert!(!verdict(&one)
            .changes
            .iter()
            .any(|c| c.starts_with("longer epochs")));
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
    fn parse_gpu_steps() {
        assert_eq!(parse_gpu_step("spin:40"), Ok(GpuStep::Spin(40.0)));
        assert_eq!(
            parse_gpu_step("gemm:4096"),
            Ok(GpuStep::Gemm {
                n: 4096,
                repeats: 1
            })
        );
        assert_eq!(
            parse_gpu_step("gemm:2048x3"),
            Ok(GpuStep::Gemm {
                n: 2048,
                repeats: 3
            })
        );
        assert_eq!(
            parse_gpu_step("gemm:2048x3").unwrap().describe(),
            "gemm 2048 x3"
        );
        for bad in [
            "spin",
            "spin:-1",
            "gemm:0",
            "gemm:1x0",
            "gemm:99999",
            "conv:3",
            "gemm:ax2",
        ] {
            let e = parse_gpu_step(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn parse_step() {
        assert_eq!(parse_step_ms("0"), Ok(0.0));
        assert_eq!(parse_step_ms("12.5"), Ok(12.5));
        assert!(parse_step_ms("-1").unwrap_err().contains("non-negative"));
        assert!(parse_step_ms("nan").is_err());
        assert!(parse_step_ms("inf").is_err());
        assert!(parse_step_ms("fast").unwrap_err().contains("not a number"));
        assert!(parse_step_ms("1e9").is_err());
    }

    #[test]
    fn step_simulation_is_precise() {
        let t = Instant::now();
        simulate_step(Duration::from_millis(5));
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(5), "{e:?}");
        assert!(e < Duration::from_millis(50), "{e:?}");
        let t = Instant::now();
        simulate_step(Duration::ZERO);
        assert!(t.elapsed() < Duration::from_millis(5));
    }

    #[test]
    fn svg_has_one_point_per_row_and_the_step_line() {
        let rows: Vec<SweepRow> = (0..=3)
            .map(|w| SweepRow {
                workers: w,
                loader_ips: 100.0 * (w + 1) as f64,
                combined_ips: None,
                idle_fraction: 0.0,
            })
            .collect();
        let svg = plot_svg(&rows, Some(250.0), "a <title>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"<circle class="point""#).count(), 4);
        assert_eq!(svg.matches(r#"class="step""#).count(), 1);
        assert!(svg.contains("a &lt;title&gt;"));
        assert!(!svg.contains(r#"class="combined""#));
        let with: Vec<SweepRow> = rows
            .iter()
            .map(|r| SweepRow {
                combined_ips: Some(r.loader_ips / 2.0),
                ..r.clone()
            })
            .collect();
        let svg = plot_svg(&with, Some(250.0), "t");
        assert_eq!(svg.matches(r#"class="combined""#).count(), 1);
        assert_eq!(svg.matches(r#"<circle class="point""#).count(), 4);
        // Infinite step rate (0 ms): no line.
        let svg = plot_svg(&rows, Some(f64::INFINITY), "t");
        assert_eq!(svg.matches(r#"class="step""#).count(), 0);
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(880.0), 1000.0);
        assert_eq!(nice_ceiling(1100.0), 2000.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(3000.0), 5000.0);
    }
}
