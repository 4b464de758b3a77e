//! `stoker plan`: GPU memory of a training step, the largest batch, gradient accumulation and
//! epoch time for a model.

use clap::Args;
use serde::Serialize;
use serde::ser::SerializeMap;
use stoker::plan::{
    DEFAULT_OVERHEAD, Dominant, Model, Optimizer, PRESETS, Plan, Precision, Request, Shape,
    format_bytes, parse_bytes, plan, preset,
};

/// Arguments of `stoker plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// A preset model: cnn4-dense512, cnn4-gap, mobilenetv2, resnet18, resnet50.
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    preset: Option<String>,
    /// A model in the text format, e.g. conv3x3:32,relu,maxpool2,flatten,dense:10.
    #[arg(long)]
    model: Option<String>,
    /// Classes (outputs of the last layer) of a preset.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Input size WxHxC, e.g. 256x144x3.
    #[arg(long)]
    input: String,
    /// Samples per step (default: the largest that fits).
    #[arg(long)]
    batch_size: Option<u64>,
    /// fp32, amp-fp16 or amp-bf16 (fp32 master weights).
    #[arg(long, default_value = "fp32")]
    precision: String,
    /// sgd, momentum, adam or adamw.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// GPU memory, e.g. 12GiB, 80GB.
    #[arg(long)]
    gpu_memory: String,
    /// CUDA context and library overhead outside PyTorch's allocator (default 500MiB).
    #[arg(long)]
    overhead: Option<String>,
    /// Target effective batch, reached by gradient accumulation.
    #[arg(long)]
    effective_batch: Option<u64>,
    /// Samples per epoch.
    #[arg(long)]
    samples: Option<u64>,
    /// Time of one training step (one batch) on the GPU, in milliseconds.
    #[arg(long)]
    step_ms: Option<f64>,
    /// Print the per-layer table too.
    #[arg(long)]
    layers: bool,
    /// Print one JSON object on stdout instead of the report.
    #[arg(long)]
    json: bool,
}

/// Runs `stoker plan`.
pub fn run(a: PlanArgs) -> stoker::Result<()> {
    let (name, p) = compute(&a)?;
    if a.json {
        crate::bench::print_json(&json(&name, &p))?;
    } else {
        print!("{}", report(&name, &p, a.layers));
    }
    Ok(())
}

/// What `stoker plan --json` prints, as a string.
pub fn json_report(a: &PlanArgs) -> stoker::Result<String> {
    let (name, p) = compute(a)?;
    serde_json::to_string(&json(&name, &p))
        .map_err(|e| stoker::Error::usage(format!("json report: {e}")))
}

/// The model's name and its plan under the arguments.
fn compute(a: &PlanArgs) -> stoker::Result<(String, Plan)> {
    let (name, model) = match (&a.preset, &a.model) {
        (Some(p), _) => (p.clone(), preset(p, a.classes)?),
        (None, Some(m)) => ("custom".to_string(), Model::parse(m)?),
        (None, None) => {
            return Err(stoker::Error::usage(format!(
                "give --preset ({}) or --model",
                PRESETS.join(", ")
            )));
        }
    };
    let mut req = Request::new(Shape::parse(&a.input)?, parse_bytes(&a.gpu_memory)?);
    req.batch_size = a.batch_size;
    req.precision = a.precision.parse::<Precision>()?;
    req.optimizer = a.optimizer.parse::<Optimizer>()?;
    req.overhead = match &a.overhead {
        Some(o) => parse_bytes(o)?,
        None => DEFAULT_OVERHEAD,
    };
    req.effective_batch = a.effective_batch;
    req.samples = a.samples;
    req.step_ms = a.step_ms;
    Ok((name, plan(&model, &req)?))
}

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

fn report(name: &str, p: &Plan, layers: bool) -> String {
    let a = &p.analysis;
    let s = &p.settings;
    let m = &p.memory;
    let mut o = String::new();
    o.push_str(&format!(
        "model: {name}, input {}x{}x{}: {} parameters, {} buffer elements, {:.2} GFLOPs per sample (forward)\n",
        a.input.width,
        a.input.height,
        a.input.channels,
        thousands(a.params()),
        thousands(a.buffers()),
        a.flops() as f64 / 1e9
    ));
    o.push_str(&format!(
        "training: batch {}{}, {}, {}, GPU {}\n",
        s.batch_size,
        if p.batch_given {
            ""
        } else {
            " (largest that fits)"
        },
        s.precision.as_str(),
        s.optimizer.as_str(),
        format_bytes(p.gpu_memory)
    ));
    if layers {
        o.push_str(&format!(
            "\n{:>4}  {:<24} {:>18} {:>14} {:>12} {:>14}\n",
            "#", "layer", "output WxHxC", "params", "GFLOPs", "saved/sample"
        ));
        let act = s.precision.activation_bytes();
        for (i, l) in a.layers().iter().enumerate() {
            o.push_str(&format!(
                "{:>4}  {:<24} {:>18} {:>14} {:>12.4} {:>14}\n",
                i,
                l.name,
                format!(
                    "{}x{}x{}",
                    l.output.width, l.output.height, l.output.channels
                ),
                thousands(l.params),
                l.flops as f64 / 1e9,
                format_bytes(l.saved_bytes(act))
            ));
        }
    }
    o.push_str(&format!("\n{:<28} {:>12}\n", "memory", "bytes"));
    for (k, v) in m.rows() {
        o.push_str(&format!("{k:<28} {:>12}\n", format_bytes(v)));
    }
    let phase = if m.backward() >= m.step_temporaries {
        "backward pass"
    } else {
        "optimizer step"
    };
    o.push_str(&format!(
        "{:<28} {:>12}  (peak at the {phase}: weights + buffers + gradients + optimizer state + max(activations + input + workspace + 16-bit copies, step temporaries) + overhead)\n",
        "total",
        format_bytes(m.total())
    ));
    o.push_str(&format!(
        "{:<28} {:>12}  {}\n",
        "GPU memory",
        format_bytes(p.gpu_memory),
        if p.fits { "fits" } else { "DOES NOT FIT" }
    ));
    o.push('\n');
    for line in &p.advice {
        o.push_str(&format!("- {line}\n"));
    }
    o
}

/// `input` of `stoker plan --json`.
#[derive(Serialize)]
struct InputReport {
    width: usize,
    height: usize,
    channels: usize,
}

/// The memory components (`optimizer state` as `optimizer_state`), then the allocated and
/// total bytes, in the report's order.
struct MemoryReport<'a>(&'a Plan);

impl Serialize for MemoryReport<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = &self.0.memory;
        let rows = m.rows();
        let mut map = s.serialize_map(Some(rows.len() + 2))?;
        for (k, v) in rows {
            map.serialize_entry(&k.replace([' ', '-'], "_"), &v)?;
        }
        map.serialize_entry("allocated", &m.allocated())?;
        map.serialize_entry("total", &m.total())?;
        map.end()
    }
}

/// `top_params` / `top_activations` of `stoker plan --json`.
#[derive(Serialize)]
struct DominantReport<'a> {
    layer: usize,
    name: &'a str,
    amount: u64,
    share: f64,
}

impl<'a> DominantReport<'a> {
    fn of(d: &'a Option<Dominant>) -> Option<DominantReport<'a>> {
        d.as_ref().map(|d| DominantReport {
            layer: d.layer,
            name: &d.name,
            amount: d.amount,
            share: d.share,
        })
    }
}

/// `accumulation` of `stoker plan --json`.
#[derive(Serialize)]
struct AccumulationReport {
    micro_batch: u64,
    steps: u64,
    effective: u64,
}

/// `epoch` of `stoker plan --json`.
#[derive(Serialize)]
struct EpochReport {
    steps: u64,
    seconds: f64,
    loader_images_per_s: f64,
}

/// One of `layers` of `stoker plan --json`: `output` is `[channels, height, width]`.
#[derive(Serialize)]
struct LayerReport<'a> {
    name: &'a str,
    kind: &'static str,
    output: [usize; 3],
    params: u64,
    flops: u64,
    saved_bytes: u64,
}

/// `stoker plan --json`.
#[derive(Serialize)]
struct PlanReport<'a> {
    model: &'a str,
    input: InputReport,
    batch_size: u64,
    batch_given: bool,
    precision: &'static str,
    optimizer: &'static str,
    gpu_memory: u64,
    params: u64,
    buffers: u64,
    flops_per_sample: u64,
    saved_bytes_per_sample: u64,
    memory: MemoryReport<'a>,
    fits: bool,
    largest_batch: u64,
    accumulation: Option<AccumulationReport>,
    epoch: Option<EpochReport>,
    top_params: Option<DominantReport<'a>>,
    top_activations: Option<DominantReport<'a>>,
    advice: &'a [String],
    layers: Vec<LayerReport<'a>>,
}

fn json<'a>(name: &'a str, p: &'a Plan) -> PlanReport<'a> {
    let a = &p.analysis;
    let s = &p.settings;
    let act = s.precision.activation_bytes();
    PlanReport {
        model: name,
        input: InputReport {
            width: a.input.width,
            height: a.input.height,
            channels: a.input.channels,
        },
        batch_size: s.batch_size,
        batch_given: p.batch_given,
        precision: s.precision.as_str(),
        optimizer: s.optimizer.as_str(),
        gpu_memory: p.gpu_memory,
        params: a.params(),
        buffers: a.buffers(),
        flops_per_sample: a.flops(),
        saved_bytes_per_sample: a.saved_bytes(act),
        memory: MemoryReport(p),
        fits: p.fits,
        largest_batch: p.largest_batch,
        accumulation: p.accumulation.map(|x| AccumulationReport {
            micro_batch: x.micro_batch,
            steps: x.steps,
            effective: x.effective,
        }),
        epoch: p.epoch.map(|e| EpochReport {
            steps: e.steps,
            seconds: e.seconds,
            loader_images_per_s: e.loader_images_per_s,
        }),
        top_params: DominantReport::of(&p.top_params),
        top_activations: DominantReport::of(&p.top_activations),
        advice: &p.advice,
        layers: a
            .layers()
            .iter()
            .map(|l| LayerReport {
                name: &l.name,
                kind: l.kind,
                output: [l.output.channels, l.output.height, l.output.width],
                params: l.params,
                flops: l.flops,
                saved_bytes: l.saved_bytes(act),
            })
            .collect(),
    }
}
