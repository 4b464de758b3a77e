//! Layer graphs: the ops, a builder for graphs with residual connections, the text format for
//! chains, and the per-layer arithmetic (output shape, parameters, saved activations, FLOPs).
//!
//! # What each layer keeps for the backward pass
//!
//! The rules follow what PyTorch's autograd saves (`derivatives.yaml`), per sample:
//!
//! | layer | saved |
//! |---|---|
//! | `conv`, `depthwise`, `dense` | its input (under AMP: the 16-bit copy of its input) |
//! | `relu` | its output (`threshold_backward` uses the result; in place or not, the bytes are the same) |
//! | `relu6` | its input (`hardtanh_backward` uses `self`; torchvision's in-place `ReLU6` makes autograd keep a copy of it), so its output is a separate tensor |
//! | `maxpool` | its input, plus the argmax indices (int64, one per output element) |
//! | `batchnorm` | its input, plus the per-channel mean and inverse std (fp32, 2 per channel) |
//! | `dropout` | the mask (bool, one byte per element) |
//! | `globalavgpool` | nothing (`adaptive_avg_pool2d` to 1×1 is `mean` over H and W, whose backward needs only the shape) |
//! | `flatten` | nothing (a view of its input) |
//! | `add` | nothing |
//!
//! A tensor kept by several layers is counted once (conv after relu keeps the relu's output).
//! `tools/validate_plan.py` checks these rules against PyTorch's autograd
//! (`saved_tensors_hooks`): every preset's fp32 bytes are equal (see `docs/plan.md`).
//! FLOPs count the multiply-adds of `conv`, `depthwise` and `dense` as 2 each; other layers
//! count 0.
//!
//! ```
//! use stoker::plan::{Model, Shape};
//! let a = Model::parse("conv3x3:4,relu,maxpool2").unwrap().analyze(Shape::parse("4x4x1").unwrap()).unwrap();
//! // The relu output (4×4×4 fp32) is kept once; the pooling adds 4×2×2 int64 indices.
//! assert_eq!(a.saved_bytes(4), 64 * 4 + 16 * 8);
//! ```

use crate::{Error, Result};

/// Index of a node in a [`Model`]; node 0 is the input.
///
/// ```
/// let id: stoker::plan::NodeId = stoker::plan::Builder::new().cursor();
/// assert_eq!(id, 0);
/// ```
pub type NodeId = usize;

/// Spatial padding of a convolution or pooling layer.
///
/// ```
/// use stoker::plan::{Model, Shape};
/// let s = Shape::parse("7x7x1").unwrap();
/// let out = |t| Model::parse(t).unwrap().analyze(s).unwrap().layers()[1].output.width;
/// assert_eq!(out("conv3x3:1/s2"), 4); // Same: ceil(7 / 2)
/// assert_eq!(out("conv3x3:1/s2/valid"), 3); // Explicit(0): floor((7 - 3) / 2) + 1
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output size `ceil(in / stride)` (TensorFlow's `same`; PyTorch's `padding=k/2` for odd `k`
    /// and stride 1).
    Same,
    /// `p` pixels on every side (PyTorch's `padding=p`): output `floor((in + 2p - k) / s) + 1`;
    /// `Explicit(0)` is `valid`.
    Explicit(usize),
}

/// One layer.
///
/// ```
/// use stoker::plan::{Model, Op, Padding};
/// let m = Model::parse("conv3x3:32/s2/nobias").unwrap();
/// assert_eq!(
///     m.nodes()[1].op,
///     Op::Conv { out: 32, kernel: 3, stride: 2, padding: Padding::Same, bias: false }
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The input image batch.
    Input,
    /// 2-D convolution (`Conv2d`), square kernel.
    Conv {
        /// Output channels.
        out: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: Padding,
        /// Whether it has a bias (torchvision turns it off before a batch norm).
        bias: bool,
    },
    /// Depthwise convolution (`Conv2d` with `groups = in_channels`, one filter per channel).
    Depthwise {
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: Padding,
        /// Whether it has a bias.
        bias: bool,
    },
    /// Fully connected layer (`Linear`) on a flat input.
    Dense {
        /// Output features.
        out: usize,
        /// Whether it has a bias.
        bias: bool,
    },
    /// `ReLU`.
    Relu,
    /// `ReLU6` (MobileNetV2).
    Relu6,
    /// Max pooling (floor mode).
    MaxPool {
        /// Window size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: Padding,
    },
    /// `BatchNorm2d` (or `BatchNorm1d` on a flat input): 2 parameters and 2 buffers per channel.
    BatchNorm,
    /// Dropout (the rate does not change memory).
    Dropout,
    /// Global average pooling to `C×1×1`.
    GlobalAvgPool,
    /// Flatten `C×H×W` to `(C·H·W)×1×1` (a view).
    Flatten,
    /// Element-wise sum of two inputs of the same shape (residual connection).
    Add,
}

impl Op {
    /// Short lowercase name of the layer type, as in the text format.
    ///
    /// ```
    /// assert_eq!(stoker::plan::Op::GlobalAvgPool.kind(), "globalavgpool");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv { .. } => "conv",
            Op::Depthwise { .. } => "depthwise",
            Op::Dense { .. } => "dense",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::MaxPool { .. } => "maxpool",
            Op::BatchNorm => "batchnorm",
            Op::Dropout => "dropout",
            Op::GlobalAvgPool => "globalavgpool",
            Op::Flatten => "flatten",
            Op::Add => "add",
        }
    }
}

/// A layer of a [`Model`] and the nodes it reads.
///
/// ```
/// let m = stoker::plan::Model::parse("relu,add:1").unwrap();
/// let add = &m.nodes()[2];
/// assert_eq!((add.name.as_str(), add.inputs.clone()), ("add:1", vec![1, 0]));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The layer.
    pub op: Op,
    /// The nodes whose outputs it reads (two for `add`, none for the input, else one).
    pub inputs: Vec<NodeId>,
    /// A readable name (the token of the text format, or the builder's name).
    pub name: String,
}

/// Image size of one sample, `C×H×W`.
///
/// ```
/// let s = stoker::plan::Shape { channels: 3, height: 1080, width: 1920 };
/// assert_eq!(s, stoker::plan::Shape::parse("1920x1080x3").unwrap());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Channels (features once flat).
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

impl Shape {
    /// Elements per sample.
    ///
    /// ```
    /// use stoker::plan::Shape;
    /// assert_eq!(Shape { channels: 3, height: 144, width: 256 }.elements(), 110_592);
    /// ```
    pub fn elements(&self) -> u64 {
        self.channels as u64 * self.height as u64 * self.width as u64
    }

    /// Parses `WxHxC` (or `WxH`, 3 channels), e.g. `1920x1080x3`.
    ///
    /// ```
    /// use stoker::plan::Shape;
    /// let s = Shape::parse("1920x1080x3").unwrap();
    /// assert_eq!((s.width, s.height, s.channels), (1920, 1080, 3));
    /// assert!(Shape::parse("1920x0").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Shape> {
        let parts: Vec<&str> = s.split(['x', 'X']).collect();
        if parts.len() != 2 && parts.len() != 3 {
            return Err(Error::usage(format!("input {s:?} is not WxHxC")));
        }
        let mut v = [0usize; 3];
        v[2] = 3;
        for (i, p) in parts.iter().enumerate() {
            v[i] = p
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    Error::usage(format!("input {s:?}: {p:?} is not a positive integer"))
                })?;
        }
        Ok(Shape {
            width: v[0],
            height: v[1],
            channels: v[2],
        })
    }
}

/// A layer graph: node 0 is the input; every other node reads earlier nodes.
///
/// ```
/// use stoker::plan::{Model, Shape};
/// let m = Model::parse("conv3x3:8,relu,globalavgpool,dense:2").unwrap();
/// let a = m.analyze(Shape::parse("32x32x3").unwrap()).unwrap();
/// assert_eq!(a.params(), (27 * 8 + 8) + (8 * 2 + 2));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    nodes: Vec<Node>,
}

impl Default for Model {
    /// The same as [`Model::new`].
    ///
    /// ```
    /// assert_eq!(stoker::plan::Model::default(), stoker::plan::Model::new());
    /// ```
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// A model holding only the input node.
    ///
    /// ```
    /// assert_eq!(stoker::plan::Model::new().nodes().len(), 1);
    /// ```
    pub fn new() -> Model {
        Model {
            nodes: vec![Node {
                op: Op::Input,
                inputs: vec![],
                name: "input".into(),
            }],
        }
    }

    /// Appends a node reading `inputs` (earlier nodes) and returns its id.
    ///
    /// ```
    /// use stoker::plan::{Model, Op};
    /// let mut m = Model::new();
    /// let r = m.push(Op::Relu, &[0], "relu");
    /// assert_eq!(r, 1);
    /// ```
    pub fn push(&mut self, op: Op, inputs: &[NodeId], name: impl Into<String>) -> NodeId {
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            name: name.into(),
        });
        self.nodes.len() - 1
    }

    /// The nodes, input first.
    ///
    /// ```
    /// let m = stoker::plan::Model::parse("relu").unwrap();
    /// assert_eq!(m.nodes()[1].name, "relu");
    /// ```
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Parses the text format: one layer per comma-separated token, applied in a chain.
    ///
    /// Tokens (options follow `/`): `convKxK:OUT` (options `sN` stride, `pN` padding, `same`
    /// (default), `valid`, `nobias`), `depthwiseKxK` (same options), `dense:OUT` (`nobias`),
    /// `relu`, `relu6`, `maxpoolK` (`sN`, default K; `pN`, default 0), `batchnorm` (or `bn`),
    /// `dropout[:P]`, `globalavgpool` (or `gap`), `flatten`, and `add:K`, which adds the
    /// current output to the input of the layer K tokens back (a residual around the last K
    /// layers).
    ///
    /// ```
    /// use stoker::plan::Model;
    /// let m = Model::parse("conv3x3:32,relu,maxpool2,flatten,dense:10").unwrap();
    /// assert_eq!(m.nodes().len(), 6);
    /// let e = Model::parse("conv3x3:32,relu,conv3x3:x").unwrap_err();
    /// assert_eq!(e.message(), "token 3 \"conv3x3:x\": \"x\" is not a positive integer");
    /// ```
    pub fn parse(text: &str) -> Result<Model> {
        let mut m = Model::new();
        // `outs[i]` = the current output after i tokens.
        let mut outs: Vec<NodeId> = vec![0];
        for (i, raw) in text.split(',').enumerate() {
            let tok = raw.trim();
            let err = |msg: String| Error::usage(format!("token {} {tok:?}: {msg}", i + 1));
            if tok.is_empty() {
                return Err(err("empty layer".into()));
            }
            let cur = *outs.last().unwrap();
            let (op, inputs) = parse_token(tok, &outs).map_err(err)?;
            let inputs = if inputs.is_empty() { vec![cur] } else { inputs };
            let id = m.push(op, &inputs, tok);
            outs.push(id);
        }
        Ok(m)
    }

    /// Computes every layer's shape, parameters, saved activations and FLOPs for one sample of
    /// `input`.
    ///
    /// ```
    /// use stoker::plan::{Model, Shape};
    /// let m = Model::parse("conv3x3:8,relu,flatten,dense:10").unwrap();
    /// let a = m.analyze(Shape::parse("4x4x1").unwrap()).unwrap();
    /// assert_eq!(a.params(), (9 * 8 + 8) + (8 * 16 * 10 + 10));
    /// ```
    pub fn analyze(&self, input: Shape) -> Result<Analysis> {
        let mut layers: Vec<LayerInfo> = Vec::with_capacity(self.nodes.len());
        for (id, node) in self.nodes.iter().enumerate() {
            let err =
                |msg: String| Error::usage(format!("layer {id} {:?}: {msg}", node.name.as_str()));
            if node.inputs.iter().any(|&j| j >= id) {
                return Err(err("reads a later layer".into()));
            }
            let want = match node.op {
                Op::Input => 0,
                Op::Add => 2,
                _ => 1,
            };
            if node.inputs.len() != want {
                return Err(err(format!("needs {want} inputs")));
            }
            let x = node.inputs.first().map(|&j| layers[j].output);
            let mut info = LayerInfo {
                name: node.name.clone(),
                kind: node.op.kind(),
                output: input,
                params: 0,
                buffers: 0,
                flops: 0,
                cast_params: 0,
                stats_f32: 0,
                indices_i64: 0,
                mask_bool: 0,
                cast_input: 0,
                output_saved: false,
                transient: 0,
            };
            match (&node.op, x) {
                (Op::Input, _) => {}
                (Op::Conv { .. } | Op::Depthwise { .. }, Some(x)) => {
                    let (out, k, s, p, bias, groups) = match node.op {
                        Op::Conv {
                            out,
                            kernel,
                            stride,
                            padding,
                            bias,
                        } => (out, kernel, stride, padding, bias, 1),
                        Op::Depthwise {
                            kernel,
                            stride,
                            padding,
                            bias,
                        } => (x.channels, kernel, stride, padding, bias, x.channels),
                        _ => unreachable!(),
                    };
                    let h = out_size(x.height, k, s, p).map_err(err)?;
                    let w = out_size(x.width, k, s, p).map_err(err)?;
                    info.output = Shape {
                        channels: out,
                        height: h,
                        width: w,
                    };
                    let per = (k * k * (x.channels / groups)) as u64;
                    info.params = per * out as u64 + if bias { out as u64 } else { 0 };
                    info.cast_params = info.params;
                    info.flops = 2 * per * info.output.elements();
                }
                (Op::Dense { out, bias }, Some(x)) => {
                    if x.height != 1 || x.width != 1 {
                        return Err(err(format!(
                            "dense needs a flat input, got {}x{}x{}: add flatten or globalavgpool",
                            x.width, x.height, x.channels
                        )));
                    }
                    info.output = Shape {
                        channels: *out,
                        height: 1,
                        width: 1,
                    };
                    let n = x.channels as u64;
                    info.params = n * *out as u64 + if *bias { *out as u64 } else { 0 };
                    info.cast_params = info.params;
                    info.flops = 2 * n * *out as u64;
                }
                (
                    Op::MaxPool {
                        kernel,
                        stride,
                        padding,
                    },
                    Some(x),
                ) => {
                    info.output = Shape {
                        channels: x.channels,
                        height: out_size(x.height, *kernel, *stride, *padding).map_err(err)?,
                        width: out_size(x.width, *kernel, *stride, *padding).map_err(err)?,
                    };
                    info.indices_i64 = info.output.elements();
                }
                (Op::BatchNorm, Some(x)) => {
                    info.output = x;
                    info.params = 2 * x.channels as u64;
                    info.buffers = 2 * x.channels as u64;
                    info.stats_f32 = 2 * x.channels as u64;
                }
                (Op::Relu, Some(x)) => {
                    info.output = x;
                    info.output_saved = true;
                }
                (Op::Relu6, Some(x)) => {
                    info.output = x;
                }
                (Op::Dropout, Some(x)) => {
                    info.output = x;
                    info.mask_bool = x.elements();
                }
                (Op::GlobalAvgPool, Some(x)) => {
                    info.output = Shape {
                        channels: x.channels,
                        height: 1,
                        width: 1,
                    };
                }
                (Op::Flatten, Some(x)) => {
                    info.output = Shape {
                        channels: x.channels * x.height * x.width,
                        height: 1,
                        width: 1,
                    };
                }
                (Op::Add, Some(x)) => {
                    let y = layers[node.inputs[1]].output;
                    if x != y {
                        return Err(err(format!(
                            "adds {}x{}x{} to {}x{}x{}",
                            x.width, x.height, x.channels, y.width, y.height, y.channels
                        )));
                    }
                    info.output = x;
                }
                (_, None) => return Err(err("has no input".into())),
            }
            // Alive while the layer runs: its output and its input (or their gradients); the
            // input batch is counted apart and gets no gradient; a view adds nothing.
            if !matches!(node.op, Op::Input | Op::Flatten) {
                let reads = node.inputs[0];
                let input_elems = if reads == 0 {
                    0
                } else {
                    layers[reads].output.elements()
                };
                info.transient = info.output.elements() + input_elems;
            }
            // Layers that keep their input: mark the tensor (through views) as saved.
            if matches!(
                node.op,
                Op::Conv { .. }
                    | Op::Depthwise { .. }
                    | Op::Dense { .. }
                    | Op::MaxPool { .. }
                    | Op::BatchNorm
                    | Op::Relu6
            ) {
                let mut j = node.inputs[0];
                while self.nodes[j].op == Op::Flatten {
                    j = self.nodes[j].inputs[0];
                }
                if j == 0 {
                    if matches!(
                        node.op,
                        Op::Conv { .. } | Op::Depthwise { .. } | Op::Dense { .. }
                    ) {
                        info.cast_input = input.elements();
                    }
                } else {
                    layers[j].output_saved = true;
                }
            }
            layers.push(info);
        }
        Ok(Analysis { input, layers })
    }
}

fn out_size(n: usize, k: usize, s: usize, p: Padding) -> std::result::Result<usize, String> {
    if k == 0 || s == 0 {
        return Err("kernel and stride must be > 0".into());
    }
    match p {
        Padding::Same => Ok(n.div_ceil(s)),
        Padding::Explicit(p) => {
            if n + 2 * p < k {
                Err(format!("input size {n} is smaller than the kernel {k}"))
            } else {
                Ok((n + 2 * p - k) / s + 1)
            }
        }
    }
}

fn num(s: &str) -> std::result::Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a positive integer"))
}

/// `KxK` (or `K`) → K.
fn kernel(s: &str) -> std::result::Result<usize, String> {
    match s.split_once('x') {
        Some((a, b)) if a == b => num(a),
        Some(_) => Err(format!("kernel {s:?} is not square")),
        None => num(s),
    }
}

fn parse_token(tok: &str, outs: &[NodeId]) -> std::result::Result<(Op, Vec<NodeId>), String> {
    let lower = tok.to_ascii_lowercase();
    let mut parts = lower.split('/');
    let head = parts.next().unwrap_or("");
    let opts: Vec<&str> = parts.collect();
    let (name, arg) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (head, None),
    };
    let no_arg = |op: Op| {
        if arg.is_some() {
            Err(format!("{name} takes no argument"))
        } else {
            Ok(op)
        }
    };
    let no_opts = |op: Op| {
        if let Some(o) = opts.first() {
            Err(format!("unknown option {o:?}"))
        } else {
            Ok(op)
        }
    };
    // Stride, padding, bias options of conv-like layers.
    let spatial = |default_stride: usize,
                   default_pad: Padding,
                   allow_bias: bool|
     -> std::result::Result<(usize, Padding, bool), String> {
        let (mut s, mut p, mut bias) = (default_stride, default_pad, true);
        for o in &opts {
            match *o {
                "same" => p = Padding::Same,
                "valid" => p = Padding::Explicit(0),
                "nobias" if allow_bias => bias = false,
                o if o.starts_with('s') => s = num(&o[1..])?,
                o if o.starts_with('p') => {
                    p = Padding::Explicit(o[1..].parse().map_err(|_| format!("bad padding {o:?}"))?)
                }
                o => return Err(format!("unknown option {o:?}")),
            }
        }
        Ok((s, p, bias))
    };
    let op = if let Some(k) = name.strip_prefix("conv") {
        let kernel = kernel(k)?;
        let out = num(arg.ok_or("conv needs output channels, e.g. conv3x3:32")?)?;
        let (stride, padding, bias) = spatial(1, Padding::Same, true)?;
        Op::Conv {
            out,
            kernel,
            stride,
            padding,
            bias,
        }
    } else if let Some(k) = name.strip_prefix("depthwise") {
        let kernel = kernel(k)?;
        let (stride, padding, bias) = spatial(1, Padding::Same, true)?;
        no_arg(Op::Depthwise {
            kernel,
            stride,
            padding,
            bias,
        })?
    } else if let Some(k) = name.strip_prefix("maxpool") {
        let kernel = kernel(k)?;
        let (stride, padding, _) = spatial(kernel, Padding::Explicit(0), false)?;
        no_arg(Op::MaxPool {
            kernel,
            stride,
            padding,
        })?
    } else {
        match name {
            "dense" | "linear" => {
                let out = num(arg.ok_or("dense needs output features, e.g. dense:10")?)?;
                let mut bias = true;
                for o in &opts {
                    match *o {
                        "nobias" => bias = false,
                        o => return Err(format!("unknown option {o:?}")),
                    }
                }
                Op::Dense { out, bias }
            }
            "relu" => no_opts(no_arg(Op::Relu)?)?,
            "relu6" => no_opts(no_arg(Op::Relu6)?)?,
            "batchnorm" | "bn" => no_opts(no_arg(Op::BatchNorm)?)?,
            "globalavgpool" | "gap" => no_opts(no_arg(Op::GlobalAvgPool)?)?,
            "flatten" => no_opts(no_arg(Op::Flatten)?)?,
            "dropout" => {
                if let Some(a) = arg {
                    match a.parse::<f64>() {
                        Ok(p) if (0.0..1.0).contains(&p) => {}
                        _ => return Err(format!("dropout rate {a:?} is not in [0, 1)")),
                    }
                }
                no_opts(Op::Dropout)?
            }
            "add" => {
                let k = num(arg.ok_or("add needs how many layers back, e.g. add:2")?)?;
                let n = outs.len() - 1; // layers so far
                if k > n {
                    return Err(format!(
                        "add:{k} reaches before the input ({n} layers so far)"
                    ));
                }
                let skip = outs[n - k];
                no_opts(Op::Add)?;
                return Ok((Op::Add, vec![outs[n], skip]));
            }
            _ => return Err(format!("unknown layer {name:?}")),
        }
    };
    Ok((op, vec![]))
}

/// Builds a [`Model`] layer by layer, keeping a cursor on the current output; residual blocks
/// use [`Builder::cursor`], [`Builder::at`] and [`Builder::add`].
///
/// ```
/// use stoker::plan::{Builder, Shape};
/// // A residual block around two 3×3 convolutions on an 8-channel input.
/// let mut b = Builder::new();
/// let x = b.cursor(); // the input
/// b.conv(8, 3, 1, 1, false).bn().relu().conv(8, 3, 1, 1, false).bn().add(x).relu();
/// let a = b.build().analyze(Shape::parse("8x8x8").unwrap()).unwrap();
/// // Two convolutions (3·3·8·8 weights each, no bias) and two batch norms (2 per channel).
/// assert_eq!(a.params(), 2 * (9 * 8 * 8) + 2 * 2 * 8);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    model: Model,
    cur: NodeId,
}

impl Builder {
    /// A builder at the input node.
    ///
    /// ```
    /// assert_eq!(stoker::plan::Builder::new().cursor(), 0);
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    fn then(&mut self, op: Op) -> &mut Self {
        let name = op.kind();
        self.cur = self.model.push(op, &[self.cur], name);
        self
    }

    /// The current output.
    ///
    /// ```
    /// let mut b = stoker::plan::Builder::new();
    /// assert_eq!(b.relu().cursor(), 1);
    /// ```
    pub fn cursor(&self) -> NodeId {
        self.cur
    }

    /// Moves the cursor to node `id` (to start a branch).
    ///
    /// ```
    /// let mut b = stoker::plan::Builder::new();
    /// b.relu().at(0).relu6(); // two branches from the input
    /// assert_eq!(b.build().nodes()[2].inputs, vec![0]);
    /// ```
    pub fn at(&mut self, id: NodeId) -> &mut Self {
        self.cur = id;
        self
    }

    /// Convolution with `out` channels, a `k×k` kernel, `stride` and explicit padding `pad`.
    ///
    /// ```
    /// use stoker::plan::{Builder, Shape};
    /// let mut b = Builder::new();
    /// b.conv(16, 3, 2, 1, true); // floor((8 + 2 - 3) / 2) + 1 = 4
    /// let a = b.build().analyze(Shape::parse("8x8x3").unwrap()).unwrap();
    /// assert_eq!(a.layers()[1].output, Shape { channels: 16, height: 4, width: 4 });
    /// assert_eq!(a.params(), 3 * 3 * 3 * 16 + 16);
    /// ```
    pub fn conv(
        &mut self,
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> &mut Self {
        self.then(Op::Conv {
            out,
            kernel: k,
            stride,
            padding: Padding::Explicit(pad),
            bias,
        })
    }

    /// Depthwise convolution, `k×k`, no bias.
    ///
    /// ```
    /// use stoker::plan::{Builder, Shape};
    /// let mut b = Builder::new();
    /// b.depthwise(3, 1, 1);
    /// let a = b.build().analyze(Shape::parse("8x8x32").unwrap()).unwrap();
    /// assert_eq!(a.params(), 3 * 3 * 32);
    /// ```
    pub fn depthwise(&mut self, k: usize, stride: usize, pad: usize) -> &mut Self {
        self.then(Op::Depthwise {
            kernel: k,
            stride,
            padding: Padding::Explicit(pad),
            bias: false,
        })
    }

    /// Fully connected layer with bias.
    ///
    /// ```
    /// use stoker::plan::{Builder, Shape};
    /// let mut b = Builder::new();
    /// b.flatten().dense(10);
    /// let a = b.build().analyze(Shape::parse("2x2x4").unwrap()).unwrap();
    /// assert_eq!(a.params(), 16 * 10 + 10);
    /// ```
    pub fn dense(&mut self, out: usize) -> &mut Self {
        self.then(Op::Dense { out, bias: true })
    }

    /// Batch norm: 2 parameters and 2 running statistics per channel.
    ///
    /// ```
    /// use stoker::plan::{Builder, Shape};
    /// let mut b = Builder::new();
    /// b.bn();
    /// let a = b.build().analyze(Shape::parse("4x4x8").unwrap()).unwrap();
    /// assert_eq!((a.params(), a.buffers()), (16, 16));
    /// ```
    pub fn bn(&mut self) -> &mut Self {
        self.then(Op::BatchNorm)
    }

    /// ReLU.
    ///
    /// ```
    /// let mut b = stoker::plan::Builder::new();
    /// b.relu();
    /// assert_eq!(b.build().nodes()[1].op, stoker::plan::Op::Relu);
    /// ```
    pub fn relu(&mut self) -> &mut Self {
        self.then(Op::Relu)
    }

    /// ReLU6.
    ///
    /// ```
    /// let mut b = stoker::plan::Builder::new();
    /// b.relu6();
    /// assert_eq!(b.build().nodes()[1].op, stoker::plan::Op::Relu6);
    /// ```
    pub fn relu6(&mut self) -> &mut Self {
        self.then(Op::Relu6)
    }

    /// Max pooling with a `k×k` window, `stride` and explicit padding `pad`.
    ///
    /// ```
    /// use stoker::plan::{Builder, Shape};
    /// let mut b = Builder::new();
    /// b.maxpool(3, 2, 1); // ResNet's stem pooling: floor((112 + 2 - 3) / 2) + 1 = 56
    /// let a = b.build().analyze(Shape::parse("112x112x64").unwrap()).unwrap();
    /// assert_eq!(a.layers()[1].output.width, 56);
    /// ```
    pub fn maxpool(&mut self, k: usize, stride: usize, pad: usize) -> &mut Self {
        self.then(Op::MaxPool {
            kernel: k,
            stride,
            padding: Padding::Explicit(pad),
        })
    }

    /// Dropout.
    ///
    /// ```
    /// let mut b = stoker::plan::Builder::new();
    /// b.dropout();
    /// assert_eq!(b.build().nodes()[1].op, stoker::plan::Op::Dropout);
    /// ```
    pub fn dropout(&mut self) -> &mut Self {
        self.then(Op::Dropout)
    }

    /// Global average pooling.
    ///
    /// ```
    /// use stoker::plan::{Builder, Shape};
    /// let mut b = Builder::new();
    /// b.gap();
    /// let a = b.build().analyze(Shape::parse("7x7x512").unwrap()).unwrap();
    /// assert_eq!(a.layers()[1].output, Shape { channels: 512, height: 1, width: 1 });
    /// ```
    pub fn gap(&mut self) -> &mut Self {
        self.then(Op::GlobalAvgPool)
    }

    /// Flatten.
    ///
    /// ```
    /// use stoker::plan::{Builder, Shape};
    /// let mut b = Builder::new();
    /// b.flatten();
    /// let a = b.build().analyze(Shape::parse("7x7x512").unwrap()).unwrap();
    /// assert_eq!(a.layers()[1].output.channels, 7 * 7 * 512);
    /// ```
    pub fn flatten(&mut self) -> &mut Self {
        self.then(Op::Flatten)
    }

    /// The current output plus node `other`'s; the sum becomes current.
    ///
    /// ```
    /// let mut b = stoker::plan::Builder::new();
    /// b.relu().add(0); // relu(x) + x
    /// assert_eq!(b.build().nodes()[2].inputs, vec![1, 0]);
    /// ```
    pub fn add(&mut self, other: NodeId) -> &mut Self {
        self.cur = self.model.push(Op::Add, &[self.cur, other], "add");
        self
    }

    /// The model.
    ///
    /// ```
    /// let mut b = stoker::plan::Builder::new();
    /// b.relu();
    /// assert_eq!(b.build(), stoker::plan::Model::parse("relu").unwrap());
    /// ```
    pub fn build(self) -> Model {
        self.model
    }
}

/// Arithmetic of one layer, per sample.
///
/// ```
/// use stoker::plan::{Model, Shape};
/// let a = Model::parse("conv3x3:4,maxpool2").unwrap().analyze(Shape::parse("4x4x1").unwrap()).unwrap();
/// let conv = &a.layers()[1];
/// assert_eq!((conv.kind, conv.params, conv.flops), ("conv", 9 * 4 + 4, 2 * 9 * 4 * 16));
/// assert!(conv.output_saved); // the max pooling keeps its input
/// assert_eq!(a.layers()[2].indices_i64, 4 * 2 * 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    /// Name (the token, or the builder's layer type).
    pub name: String,
    /// Layer type ([`Op::kind`]).
    pub kind: &'static str,
    /// Output shape.
    pub output: Shape,
    /// Trainable parameters.
    pub params: u64,
    /// Buffers (batch norm running mean and variance; `num_batches_tracked` is not counted).
    pub buffers: u64,
    /// FLOPs per sample (2 per multiply-add).
    pub flops: u64,
    /// Parameters that autocast copies to 16 bits under AMP (conv and dense weights and biases).
    pub cast_params: u64,
    /// Whether a later layer (or this one) keeps this layer's output for the backward pass.
    pub output_saved: bool,
    /// fp32 per-channel statistics kept (batch norm: mean and inverse std).
    pub stats_f32: u64,
    /// int64 indices kept (max pooling).
    pub indices_i64: u64,
    /// bool mask elements kept (dropout).
    pub mask_bool: u64,
    /// Elements of the 16-bit copy of the fp32 input batch kept under AMP (first conv/dense).
    pub cast_input: u64,
    /// Elements alive while the layer runs besides the saved activations: its output and its
    /// input in the forward pass, their gradients in the backward pass (the input batch, which
    /// needs no gradient, and views such as `flatten` count 0).
    pub transient: u64,
}

impl LayerInfo {
    /// Bytes this layer adds to the saved activations for one sample, with activations of
    /// `act_bytes` bytes (4 in fp32, 2 under AMP). The input node counts 0 (it is the input
    /// batch).
    ///
    /// ```
    /// use stoker::plan::{Model, Shape};
    /// let a = Model::parse("conv3x3:2,relu,maxpool2").unwrap()
    ///     .analyze(Shape::parse("4x4x1").unwrap()).unwrap();
    /// // relu output 2x4x4 fp32 (kept by relu and maxpool); maxpool indices 2x2x2 int64.
    /// assert_eq!(a.layers()[2].saved_bytes(4), 32 * 4);
    /// assert_eq!(a.layers()[3].saved_bytes(4), 8 * 8);
    /// ```
    pub fn saved_bytes(&self, act_bytes: u64) -> u64 {
        if self.kind == "input" {
            return 0;
        }
        let out = if self.output_saved {
            self.output.elements() * act_bytes
        } else {
            0
        };
        let cast = if act_bytes < 4 {
            self.cast_input * act_bytes
        } else {
            0
        };
        out + cast + self.stats_f32 * 4 + self.indices_i64 * 8 + self.mask_bool
    }
}

/// Per-layer arithmetic of a [`Model`] for one input size.
///
/// ```
/// use stoker::plan::{Model, Shape};
/// let a = Model::parse("flatten,dense:3").unwrap().analyze(Shape::parse("2x2x1").unwrap()).unwrap();
/// assert_eq!((a.input.elements(), a.layers().len(), a.params()), (4, 3, 4 * 3 + 3));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// Input shape of one sample.
    pub input: Shape,
    layers: Vec<LayerInfo>,
}

impl Analysis {
    /// The layers, input first, in model order.
    ///
    /// ```
    /// use stoker::plan::{Model, Shape};
    /// let a = Model::parse("maxpool2").unwrap().analyze(Shape::parse("5x5x1").unwrap()).unwrap();
    /// assert_eq!(a.layers()[1].output, Shape { channels: 1, height: 2, width: 2 });
    /// ```
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Trainable parameters.
    ///
    /// ```
    /// let m = stoker::plan::preset("resnet18", 1000).unwrap();
    /// let a = m.analyze(stoker::plan::Shape::parse("224x224x3").unwrap()).unwrap();
    /// assert_eq!(a.params(), 11_689_512);
    /// ```
    pub fn params(&self) -> u64 {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Buffer elements (batch norm running statistics).
    ///
    /// ```
    /// let a = stoker::plan::Model::parse("bn").unwrap()
    ///     .analyze(stoker::plan::Shape::parse("2x2x16").unwrap()).unwrap();
    /// assert_eq!(a.buffers(), 32);
    /// ```
    pub fn buffers(&self) -> u64 {
        self.layers.iter().map(|l| l.buffers).sum()
    }

    /// Parameters autocast copies to 16 bits under AMP.
    ///
    /// ```
    /// let a = stoker::plan::Model::parse("dense:4,bn").unwrap()
    ///     .analyze(stoker::plan::Shape::parse("1x1x2").unwrap()).unwrap();
    /// assert_eq!(a.cast_params(), 12);
    /// ```
    pub fn cast_params(&self) -> u64 {
        self.layers.iter().map(|l| l.cast_params).sum()
    }

    /// FLOPs of the forward pass per sample.
    ///
    /// ```
    /// let a = stoker::plan::Model::parse("dense:4").unwrap()
    ///     .analyze(stoker::plan::Shape::parse("1x1x8").unwrap()).unwrap();
    /// assert_eq!(a.flops(), 64);
    /// ```
    pub fn flops(&self) -> u64 {
        self.layers.iter().map(|l| l.flops).sum()
    }

    /// Saved activation bytes per sample with `act_bytes`-byte activations.
    ///
    /// ```
    /// let a = stoker::plan::Model::parse("conv3x3:2,relu").unwrap()
    ///     .analyze(stoker::plan::Shape::parse("4x4x1").unwrap()).unwrap();
    /// assert_eq!(a.saved_bytes(4), 2 * 16 * 4); // fp32: conv keeps the input batch itself
    /// assert_eq!(a.saved_bytes(2), 2 * 16 * 2 + 16 * 2); // AMP: plus the 16-bit input copy
    /// ```
    pub fn saved_bytes(&self, act_bytes: u64) -> u64 {
        self.layers.iter().map(|l| l.saved_bytes(act_bytes)).sum()
    }

    /// Peak bytes per sample of activations and activation gradients during a step: the
    /// largest, over the layers, of what the layers up to it save plus its
    /// [`LayerInfo::transient`] tensors. Autograd frees a layer's saved tensors once its
    /// backward has run, so when the backward pass reaches layer `l` only the layers before it
    /// still hold theirs; the forward pass has the same profile.
    ///
    /// ```
    /// let a = stoker::plan::Model::parse("conv3x3:2,relu,maxpool2").unwrap()
    ///     .analyze(stoker::plan::Shape::parse("4x4x1").unwrap()).unwrap();
    /// // At the relu: its output (32 floats, saved) plus its input and output (64 floats).
    /// // At the pooling: the relu output, 8 int64 indices, 8 + 32 floats.
    /// assert_eq!(a.peak_bytes(4), (32 + 64) * 4);
    /// assert_eq!(a.saved_bytes(4), 32 * 4 + 8 * 8);
    /// ```
    pub fn peak_bytes(&self, act_bytes: u64) -> u64 {
        let mut prefix = 0u64;
        let mut peak = 0u64;
        for l in &self.layers {
            prefix += l.saved_bytes(act_bytes);
            peak = peak.max(prefix + l.transient * act_bytes);
        }
        peak
    }

    /// The largest layer output, in elements per sample (the input excluded).
    ///
    /// ```
    /// let a = stoker::plan::Model::parse("conv3x3:8,maxpool2").unwrap()
    ///     .analyze(stoker::plan::Shape::parse("4x4x1").unwrap()).unwrap();
    /// assert_eq!(a.largest_output(), 128);
    /// ```
    pub fn largest_output(&self) -> u64 {
        self.layers
            .iter()
            .skip(1)
            .map(|l| l.output.elements())
            .max()
            .unwrap_or(0)
    }
}
