//! A plan: the memory of a step, whether it fits, and advice (largest batch, gradient
//! accumulation, the dominant layer and what would shrink it, epoch time and loader rate).
//!
//! ```
//! use stoker::plan::{plan, preset, Request, Shape};
//! let p = plan(&preset("resnet50", 1000)?, &Request::new(Shape::parse("224x224x3")?, 80 << 30))?;
//! assert!(p.fits && p.advice[1].starts_with("largest batch that fits"));
//! # Ok::<(), stoker::Error>(())
//! ```

use super::memory::{Memory, Optimizer, Precision, Settings, format_bytes, largest_batch};
use super::model::{Analysis, Model, Op, Shape};
use crate::{Error, Result};

/// What to plan for.
///
/// ```
/// use stoker::plan::{Optimizer, Request, Shape};
/// let mut r = Request::new(Shape::parse("1920x1080x3").unwrap(), 12 << 30);
/// r.batch_size = Some(1);
/// r.optimizer = Optimizer::Sgd;
/// assert_eq!(r.effective_batch, None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    /// Input size of one sample.
    pub input: Shape,
    /// Batch size; `None`: the largest that fits.
    pub batch_size: Option<u64>,
    /// Precision.
    pub precision: Precision,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// CUDA context and library overhead, bytes.
    pub overhead: u64,
    /// GPU memory, bytes.
    pub gpu_memory: u64,
    /// Target effective batch (reached by gradient accumulation).
    pub effective_batch: Option<u64>,
    /// Samples per epoch.
    pub samples: Option<u64>,
    /// Time of one training step (one micro-batch), milliseconds.
    pub step_ms: Option<f64>,
}

impl Request {
    /// A request for `input` on a GPU of `gpu_memory` bytes: largest batch, fp32, Adam,
    /// default overhead, no accumulation or epoch.
    ///
    /// ```
    /// use stoker::plan::{Request, Shape};
    /// let r = Request::new(Shape::parse("256x144x3").unwrap(), 12 << 30);
    /// assert_eq!(r.batch_size, None);
    /// ```
    pub fn new(input: Shape, gpu_memory: u64) -> Request {
        let s = Settings::default();
        Request {
            input,
            batch_size: None,
            precision: s.precision,
            optimizer: s.optimizer,
            overhead: s.overhead,
            gpu_memory,
            effective_batch: None,
            samples: None,
            step_ms: None,
        }
    }
}

/// The layer holding the largest share of something.
///
/// ```
/// use stoker::plan::{plan, Model, Request, Shape};
/// let m = Model::parse("conv3x3:4,relu,flatten,dense:10").unwrap();
/// let p = plan(&m, &Request::new(Shape::parse("8x8x1").unwrap(), 1 << 30)).unwrap();
/// let d = p.top_params.unwrap();
/// assert_eq!((d.layer, d.name.as_str(), d.amount), (4, "dense:10", 256 * 10 + 10));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dominant {
    /// Layer index in the model (0 is the input).
    pub layer: usize,
    /// Layer name.
    pub name: String,
    /// Its amount (parameters, or saved bytes per sample).
    pub amount: u64,
    /// Its share of the model's total, 0 to 1.
    pub share: f64,
}

/// Gradient accumulation that reaches an effective batch.
///
/// ```
/// use stoker::plan::{plan, preset, Accumulation, Request, Shape};
/// let mut r = Request::new(Shape::parse("256x144x3").unwrap(), 12 << 30);
/// r.batch_size = Some(64);
/// r.effective_batch = Some(256);
/// let p = plan(&preset("cnn4-gap", 10).unwrap(), &r).unwrap();
/// assert_eq!(p.accumulation, Some(Accumulation { micro_batch: 64, steps: 4, effective: 256 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accumulation {
    /// Samples per forward/backward pass.
    pub micro_batch: u64,
    /// Passes per optimizer step.
    pub steps: u64,
    /// `micro_batch × steps`.
    pub effective: u64,
}

/// Epoch time from a step time.
///
/// ```
/// use stoker::plan::{plan, preset, Request, Shape};
/// let mut r = Request::new(Shape::parse("256x144x3").unwrap(), 12 << 30);
/// r.batch_size = Some(100);
/// r.samples = Some(1000);
/// r.step_ms = Some(50.0);
/// let e = plan(&preset("cnn4-gap", 10).unwrap(), &r).unwrap().epoch.unwrap();
/// assert_eq!((e.steps, e.seconds, e.loader_images_per_s), (10, 0.5, 2000.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochTime {
    /// Samples per step.
    pub batch_size: u64,
    /// Training steps (micro-batches) per epoch, at the accumulation's micro-batch if any.
    pub steps: u64,
    /// Seconds per epoch.
    pub seconds: f64,
    /// Images per second the loader must deliver to keep the GPU busy.
    pub loader_images_per_s: f64,
}

/// The result of [`plan`].
///
/// ```
/// use stoker::plan::{plan, preset, Request, Shape};
/// let mut r = Request::new(Shape::parse("1920x1080x3").unwrap(), 8 << 30);
/// r.batch_size = Some(1);
/// let p = plan(&preset("cnn4-dense512", 10).unwrap(), &r).unwrap();
/// assert!(!p.fits && p.largest_batch == 0);
/// assert!(p.advice[0].starts_with("does not fit"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Per-layer arithmetic.
    pub analysis: Analysis,
    /// The settings the memory is computed for (the batch is the request's, else the largest
    /// that fits, at least 1).
    pub settings: Settings,
    /// Whether the batch size came from the request.
    pub batch_given: bool,
    /// GPU memory, bytes.
    pub gpu_memory: u64,
    /// The breakdown.
    pub memory: Memory,
    /// Whether [`Memory::total`] fits in the GPU memory.
    pub fits: bool,
    /// The largest batch that fits (0: none).
    pub largest_batch: u64,
    /// Gradient accumulation to reach the requested effective batch.
    pub accumulation: Option<Accumulation>,
    /// The layer with the most parameters.
    pub top_params: Option<Dominant>,
    /// The layer adding the most saved activation bytes.
    pub top_activations: Option<Dominant>,
    /// Epoch time, when the samples and step time are known.
    pub epoch: Option<EpochTime>,
    /// Advice, one sentence each.
    pub advice: Vec<String>,
}

fn pct(x: f64) -> String {
    if x > 0.99 && x < 1.0 {
        format!("{:.2}%", 100.0 * x)
    } else {
        format!("{:.0}%", 100.0 * x)
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape_str(s: Shape) -> String {
    format!("{}x{}x{}", s.width, s.height, s.channels)
}

/// Plans `model` for `req`.
///
/// ```
/// use stoker::plan::{plan, preset, Request, Shape};
/// let m = preset("cnn4-gap", 10).unwrap();
/// let p = plan(&m, &Request::new(Shape::parse("256x144x3").unwrap(), 12 << 30)).unwrap();
/// assert!(p.fits && p.largest_batch > 100);
/// assert_eq!(p.settings.batch_size, p.largest_batch);
/// ```
pub fn plan(model: &Model, req: &Request) -> Result<Plan> {
    if req.batch_size == Some(0) {
        return Err(Error::usage("batch size must be > 0"));
    }
    if req.gpu_memory == 0 {
        return Err(Error::usage("gpu memory must be > 0"));
    }
    if req.effective_batch == Some(0) {
        return Err(Error::usage("effective batch must be > 0"));
    }
    if req.samples == Some(0) {
        return Err(Error::usage("samples must be > 0"));
    }
    if let Some(ms) = req.step_ms
        && !(ms.is_finite() && ms > 0.0)
    {
        return Err(Error::usage("step time must be a positive number of ms"));
    }
    let analysis = model.analyze(req.input)?;
    let base = Settings {
        batch_size: 1,
        precision: req.precision,
        optimizer: req.optimizer,
        overhead: req.overhead,
    };
    let largest = largest_batch(&analysis, &base, req.gpu_memory);
    let batch = req.batch_size.unwrap_or(largest.max(1));
    let settings = Settings {
        batch_size: batch,
        ..base
    };
    let memory = Memory::new(&analysis, &settings);
    let fits = memory.total() <= req.gpu_memory;
    let layers = analysis.layers();
    let params = analysis.params();
    let act = req.precision.activation_bytes();
    let saved = analysis.saved_bytes(act);
    let top = |f: &dyn Fn(usize) -> u64, total: u64| {
        (1..layers.len())
            .max_by_key(|&i| (f(i), std::cmp::Reverse(i)))
            .filter(|_| total > 0)
            .map(|i| Dominant {
                layer: i,
                name: layers[i].name.clone(),
                amount: f(i),
                share: f(i) as f64 / total as f64,
            })
    };
    let top_params = top(&|i| layers[i].params, params);
    let top_activations = top(&|i| layers[i].saved_bytes(act), saved);

    let mut advice = Vec::new();
    let gpu = format_bytes(req.gpu_memory);
    let total = memory.total();
    // Verdict and its cause.
    let (part, part_bytes) = memory
        .rows()
        .into_iter()
        .max_by_key(|&(_, b)| b)
        .unwrap_or(("weights", 0));
    let per_param = matches!(
        part,
        "weights" | "gradients" | "optimizer state" | "optimizer step temporaries"
    );
    let cause = match (&top_params, &top_activations) {
        (Some(d), _) if per_param => format!(
            "; {} of the parameters are in layer {} {} ({} of {})",
            pct(d.share),
            d.layer,
            d.name,
            thousands(d.amount),
            thousands(params)
        ),
        (_, Some(d)) if matches!(part, "saved activations" | "workspace") => format!(
            "; layer {} {} ({}) keeps {} of them, {} per sample",
            d.layer,
            d.name,
            shape_str(layers[d.layer].output),
            pct(d.share),
            format_bytes(d.amount)
        ),
        _ => String::new(),
    };
    let opt = if matches!(part, "optimizer state" | "optimizer step temporaries") {
        format!(" ({})", req.optimizer.as_str())
    } else {
        String::new()
    };
    let why = format!(
        "the largest part is {part}{opt}, {} ({} of the total){cause}",
        format_bytes(part_bytes),
        pct(part_bytes as f64 / total as f64),
    );
    if fits {
        advice.push(format!(
            "fits: batch {batch} needs {} of {gpu} ({} free); {why}",
            format_bytes(total),
            format_bytes(req.gpu_memory - total)
        ));
    } else {
        advice.push(format!(
            "does not fit: batch {batch} needs {} of {gpu} ({} over); {why}",
            format_bytes(total),
            format_bytes(total - req.gpu_memory),
        ));
    }
    if largest == 0 {
        advice.push(format!("no batch fits in {gpu}, not even 1"));
    } else if req.batch_size.is_some() {
        advice.push(format!(
            "largest batch that fits in {gpu}: {largest} (a suggestion; the table is for batch {batch})"
        ));
    } else {
        advice.push(format!("largest batch that fits in {gpu}: {largest}"));
    }
    // What would shrink the dominant layer.
    if let Some(d) = top_params.as_ref().filter(|d| d.share > 0.5) {
        let node = &model.nodes()[d.layer];
        if let (Op::Dense { out, bias }, Some(&src)) = (&node.op, node.inputs.first()) {
            let src_node = &model.nodes()[src];
            if src_node.op == Op::Flatten {
                let x = layers[src_node.inputs[0]].output;
                if x.height * x.width > 1 {
                    let per = 8 + req.optimizer.state_bytes();
                    let biases = if *bias { *out as u64 } else { 0 };
                    let after = x.channels as u64 * *out as u64 + biases;
                    advice.push(format!(
                        "flatten -> {} (layer {}) holds {} of the {} parameters ({}): {} inputs (a {} map) x {} outputs + {} biases; globalavgpool in place of flatten gives it {} inputs and {} parameters, and brings its weights, gradients and {} state from {} to {}",
                        d.name,
                        d.layer,
                        thousands(d.amount),
                        thousands(params),
                        pct(d.share),
                        thousands(x.elements()),
                        shape_str(x),
                        out,
                        biases,
                        x.channels,
                        thousands(after),
                        req.optimizer.as_str(),
                        format_bytes(d.amount * per),
                        format_bytes(after * per)
                    ));
                }
            }
        }
    }
    if let Some(d) = top_activations.as_ref().filter(|d| d.share > 0.3)
        && memory.activations > memory.persistent()
    {
        let mut s = format!(
            "layer {} {} ({}) keeps {} of the saved activations: half the input width and height (stoker resize) divides them by about 4",
            d.layer,
            d.name,
            shape_str(layers[d.layer].output),
            pct(d.share)
        );
        if req.precision == Precision::Fp32 {
            s.push_str("; amp-bf16 about halves them");
        }
        advice.push(s);
    }
    // Gradient accumulation.
    let accumulation = req.effective_batch.and_then(|e| {
        let micro_max = if req.batch_size.is_some() && fits {
            batch
        } else {
            largest
        };
        if micro_max == 0 {
            return None;
        }
        let a = if micro_max >= e {
            Accumulation {
                micro_batch: e,
                steps: 1,
                effective: e,
            }
        } else if req.batch_size.is_some() {
            let steps = e.div_ceil(micro_max);
            Accumulation {
                micro_batch: micro_max,
                steps,
                effective: steps * micro_max,
            }
        } else {
            let d = (1..=micro_max).rev().find(|d| e % d == 0).unwrap_or(1);
            let m = if 2 * d >= micro_max { d } else { micro_max };
            let steps = e.div_ceil(m);
            Accumulation {
                micro_batch: m,
                steps,
                effective: steps * m,
            }
        };
        Some(a)
    });
    match (req.effective_batch, accumulation) {
        (Some(e), Some(a)) => advice.push(format!(
            "effective batch {e}: {} micro-batches of {} per optimizer step{}",
            a.steps,
            a.micro_batch,
            if a.effective != e {
                format!(" (effective {})", a.effective)
            } else {
                String::new()
            }
        )),
        (Some(e), None) => advice.push(format!(
            "effective batch {e}: no micro-batch fits, accumulation cannot help"
        )),
        _ => {}
    }
    // Epoch time.
    let epoch = match (req.samples, req.step_ms) {
        (Some(n), Some(ms)) => {
            let batch = accumulation.map_or(batch, |a| a.micro_batch);
            let steps = n.div_ceil(batch);
            Some(EpochTime {
                batch_size: batch,
                steps,
                seconds: steps as f64 * ms / 1e3,
                loader_images_per_s: batch as f64 * 1e3 / ms,
            })
        }
        _ => None,
    };
    match (epoch, req.samples) {
        (Some(t), _) => advice.push(format!(
            "epoch: {} steps of batch {}, {:.1} s ({:.1} min); the loader must deliver {:.0} images/s to keep the GPU busy",
            t.steps,
            t.batch_size,
            t.seconds,
            t.seconds / 60.0,
            t.loader_images_per_s
        )),
        (None, Some(_)) => advice.push(
            "epoch time: pass --step-ms (the time of one training step); `stoker bench` measures how many images/s the loader delivers"
                .into(),
        ),
        _ => {}
    }
    Ok(Plan {
        analysis,
        settings,
        batch_given: req.batch_size.is_some(),
        gpu_memory: req.gpu_memory,
        memory,
        fits,
        largest_batch: largest,
        accumulation,
        top_params,
        top_activations,
        epoch,
        advice,
    })
}
