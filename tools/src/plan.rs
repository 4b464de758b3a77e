//! `stoker plan`: GPU memory of a training step, the largest batch, gradient accumulation and
//! epoch time for a model.

use clap::Args;
use stoker::plan::{
    format_bytes, parse_bytes, plan, preset, Dominant, Model, Optimizer, Plan, Precision, Request,
    Shape, DEFAULT_OVERHEAD, PRESETS,
};

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

pub fn run(a: PlanArgs) -> stoker::Result<()> {
    let (name, model) = match (&a.preset, &a.model) {
        (Some(p), _) => (p.clone(), preset(p, a.classes)?),
        (None, Some(m)) => ("custom".to_string(), Model::parse(m)?),
        (None, None) => {
            return Err(stoker::Error::usage(format!(
                "give --preset ({}) or --model",
                PRESETS.join(", ")
            )))
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
    let p = plan(&model, &req)?;
    if a.json {
        println!("{}", json(&name, &p));
    } else {
        print!("{}", report(&name, &p, a.layers));
    }
    Ok(())
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

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn dominant(d: &Option<Dominant>) -> String {
    match d {
        Some(d) => format!(
            "{{\"layer\":{},\"name\":{},\"amount\":{},\"share\":{:.6}}}",
            d.layer,
            esc(&d.name),
            d.amount,
            d.share
        ),
        None => "null".into(),
    }
}

fn json(name: &str, p: &Plan) -> String {
    let a = &p.analysis;
    let s = &p.settings;
    let m = &p.memory;
    let act = s.precision.activation_bytes();
    let mut j = format!(
        "{{\"model\":{},\"input\":{{\"width\":{},\"height\":{},\"channels\":{}}},\
         \"batch_size\":{},\"batch_given\":{},\"precision\":\"{}\",\"optimizer\":\"{}\",\
         \"gpu_memory\":{},\"params\":{},\"buffers\":{},\"flops_per_sample\":{},\
         \"saved_bytes_per_sample\":{},\"memory\":{{",
        esc(name),
        a.input.width,
        a.input.height,
        a.input.channels,
        s.batch_size,
        p.batch_given,
        s.precision.as_str(),
        s.optimizer.as_str(),
        p.gpu_memory,
        a.params(),
        a.buffers(),
        a.flops(),
        a.saved_bytes(act),
    );
    for (k, v) in m.rows() {
        j.push_str(&format!("\"{}\":{v},", k.replace([' ', '-'], "_")));
    }
    j.push_str(&format!(
        "\"allocated\":{},\"total\":{}}},\"fits\":{},\"largest_batch\":{},",
        m.allocated(),
        m.total(),
        p.fits,
        p.largest_batch
    ));
    j.push_str(&match p.accumulation {
        Some(x) => format!(
            "\"accumulation\":{{\"micro_batch\":{},\"steps\":{},\"effective\":{}}},",
            x.micro_batch, x.steps, x.effective
        ),
        None => "\"accumulation\":null,".into(),
    });
    j.push_str(&match p.epoch {
        Some(e) => format!(
            "\"epoch\":{{\"steps\":{},\"seconds\":{:.3},\"loader_images_per_s\":{:.1}}},",
            e.steps, e.seconds, e.loader_images_per_s
        ),
        None => "\"epoch\":null,".into(),
    });
    j.push_str(&format!(
        "\"top_params\":{},\"top_activations\":{},\"advice\":[{}],\"layers\":[",
        dominant(&p.top_params),
        dominant(&p.top_activations),
        p.advice
            .iter()
            .map(|x| esc(x))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let rows: Vec<String> = a
        .layers()
        .iter()
        .map(|l| {
            format!(
                "{{\"name\":{},\"kind\":\"{}\",\"output\":[{},{},{}],\"params\":{},\"flops\":{},\"saved_bytes\":{}}}",
                esc(&l.name),
                l.kind,
                l.output.channels,
                l.output.height,
                l.output.width,
                l.params,
                l.flops,
                l.saved_bytes(act)
            )
        })
        .collect();
    j.push_str(&rows.join(","));
    j.push_str("]}");
    j
}
