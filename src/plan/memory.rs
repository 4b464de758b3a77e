//! GPU memory of one training step: precision, optimizer, the breakdown and the largest batch.
//!
//! # The model of a step
//!
//! Rows (bytes):
//! - **weights**: 4 per parameter (fp32; under AMP these are the fp32 master weights).
//! - **buffers**: batch norm running mean and variance, 4 per element.
//! - **gradients**: 4 per parameter (gradients of fp32 parameters are fp32, AMP included).
//! - **optimizer state**: `sgd` 0, `momentum` 4 (one buffer), `adam`/`adamw` 8 (two moments)
//!   per parameter.
//! - **16-bit weight copies** (AMP only): autocast casts every conv and dense weight and bias to
//!   16 bits for the forward pass and the backward pass keeps those copies: 2 per parameter.
//! - **saved activations**: what each layer keeps for the backward pass (see
//!   [`super::model`]), per sample × batch size. Under AMP conv and dense run in 16 bits and
//!   every layer after them keeps its input's dtype, so all saved outputs are 2 bytes per
//!   element (plus a 16-bit copy of the input batch kept by the first conv); max-pool indices
//!   stay int64, batch-norm statistics fp32, dropout masks bool.
//! - **input batch**: the fp32 batch from the loader plus int64 labels.
//! - **workspace**: the tensors alive besides the saved activations at the worst moment of the
//!   step: per layer, the activations saved up to it plus its input and output (forward) or
//!   their gradients (backward), [`Analysis::peak_bytes`]; this row is its excess over all the
//!   saved activations, plus a cuDNN workspace constant, [`CUDNN_WORKSPACE`].
//! - **optimizer step temporaries**: PyTorch's default (foreach) Adam computes `sqrt(v)` for all
//!   parameters at once: 4 per parameter, while the activations are already freed.
//! - **overhead**: CUDA context, cuBLAS/cuDNN handles and loaded kernels, outside PyTorch's
//!   allocator (`torch.cuda.max_memory_allocated` does not see it); [`DEFAULT_OVERHEAD`] is
//!   500 MiB, typical of `nvidia-smi` after `torch.cuda.init()` on recent cards; override it.
//!
//! The peak is `weights + buffers + gradients + optimizer state + max(backward, step) +
//! overhead`, where `backward` is the activations, input, workspace and 16-bit copies and
//! `step` the optimizer temporaries. Counting every parameter gradient as alive while the
//! activations are makes it an upper bound on the backward pass (parameter gradients appear as
//! activations are freed).
//!
//! ```
//! use stoker::plan::{Memory, Model, Optimizer, Settings, Shape};
//! let a = Model::parse("flatten,dense:10").unwrap().analyze(Shape::parse("10x10x1").unwrap()).unwrap();
//! let m = Memory::new(&a, &Settings { optimizer: Optimizer::Adam, overhead: 0, ..Settings::default() });
//! assert_eq!(m.persistent(), 16 * 1010); // weights, gradients, two Adam moments
//! ```

use super::model::Analysis;
use crate::{Error, Result};

/// One MiB.
const MIB: u64 = 1 << 20;

/// Default CUDA context and library overhead: 500 MiB; override it with
/// [`Settings::overhead`] (`--overhead` on the command line).
///
/// ```
/// assert_eq!(stoker::plan::DEFAULT_OVERHEAD, 500 << 20);
/// ```
pub const DEFAULT_OVERHEAD: u64 = 500 * MIB;

/// cuDNN convolution workspace assumed per step: 128 MiB (part of [`Memory::workspace`]).
///
/// ```
/// assert_eq!(stoker::plan::CUDNN_WORKSPACE, 128 << 20);
/// ```
pub const CUDNN_WORKSPACE: u64 = 128 * MIB;

/// Numeric precision of training.
///
/// ```
/// use stoker::plan::Precision;
/// let p: Precision = "amp-fp16".parse().unwrap();
/// assert_eq!((p, p.activation_bytes()), (Precision::AmpFp16, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Everything in fp32.
    Fp32,
    /// Automatic mixed precision with fp16 activations and fp32 master weights.
    AmpFp16,
    /// Automatic mixed precision with bf16 activations and fp32 master weights.
    AmpBf16,
}

impl Precision {
    /// Bytes per saved activation element.
    ///
    /// ```
    /// assert_eq!(stoker::plan::Precision::AmpBf16.activation_bytes(), 2);
    /// ```
    pub fn activation_bytes(self) -> u64 {
        match self {
            Precision::Fp32 => 4,
            Precision::AmpFp16 | Precision::AmpBf16 => 2,
        }
    }

    /// The name as the command line spells it.
    ///
    /// ```
    /// assert_eq!(stoker::plan::Precision::AmpFp16.as_str(), "amp-fp16");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::AmpFp16 => "amp-fp16",
            Precision::AmpBf16 => "amp-bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    /// Parses `fp32`, `amp-fp16`, `amp-bf16`.
    ///
    /// ```
    /// assert!("amp-bf16".parse::<stoker::plan::Precision>().is_ok());
    /// assert!("fp8".parse::<stoker::plan::Precision>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" => Ok(Precision::Fp32),
            "amp-fp16" => Ok(Precision::AmpFp16),
            "amp-bf16" => Ok(Precision::AmpBf16),
            _ => Err(Error::usage(format!(
                "unknown precision {s:?} (fp32, amp-fp16, amp-bf16)"
            ))),
        }
    }
}

/// Optimizer, for its state and step temporaries.
///
/// ```
/// use stoker::plan::Optimizer;
/// let o: Optimizer = "momentum".parse().unwrap();
/// assert_eq!((o, o.state_bytes()), (Optimizer::Momentum, 4));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    /// Plain SGD: no state.
    Sgd,
    /// SGD with momentum: one buffer.
    Momentum,
    /// Adam: two moments.
    Adam,
    /// AdamW: two moments.
    AdamW,
}

impl Optimizer {
    /// Persistent state bytes per parameter.
    ///
    /// ```
    /// assert_eq!(stoker::plan::Optimizer::Adam.state_bytes(), 8);
    /// ```
    pub fn state_bytes(self) -> u64 {
        match self {
            Optimizer::Sgd => 0,
            Optimizer::Momentum => 4,
            Optimizer::Adam | Optimizer::AdamW => 8,
        }
    }

    /// Temporary bytes per parameter during `optimizer.step()` (foreach implementation).
    ///
    /// ```
    /// assert_eq!(stoker::plan::Optimizer::Momentum.step_bytes(), 0);
    /// ```
    pub fn step_bytes(self) -> u64 {
        match self {
            Optimizer::Sgd | Optimizer::Momentum => 0,
            Optimizer::Adam | Optimizer::AdamW => 4,
        }
    }

    /// The name as the command line spells it.
    ///
    /// ```
    /// assert_eq!(stoker::plan::Optimizer::AdamW.as_str(), "adamw");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum => "momentum",
            Optimizer::Adam => "adam",
            Optimizer::AdamW => "adamw",
        }
    }
}

impl std::str::FromStr for Optimizer {
    type Err = Error;

    /// Parses `sgd`, `momentum`, `adam`, `adamw`.
    ///
    /// ```
    /// assert!("adamw".parse::<stoker::plan::Optimizer>().is_ok());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sgd" => Ok(Optimizer::Sgd),
            "momentum" => Ok(Optimizer::Momentum),
            "adam" => Ok(Optimizer::Adam),
            "adamw" => Ok(Optimizer::AdamW),
            _ => Err(Error::usage(format!(
                "unknown optimizer {s:?} (sgd, momentum, adam, adamw)"
            ))),
        }
    }
}

/// Parses a size in bytes: a number with an optional unit `B`, `KiB`, `MiB`, `GiB`, `TiB`
/// (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000).
///
/// ```
/// use stoker::plan::parse_bytes;
/// assert_eq!(parse_bytes("12GiB").unwrap(), 12 << 30);
/// assert_eq!(parse_bytes("1.5 GB").unwrap(), 1_500_000_000);
/// assert!(parse_bytes("12 apples").is_err());
/// ```
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        u => {
            return Err(Error::usage(format!(
                "size {s:?}: unknown unit {u:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            )));
        }
    };
    let v: f64 = n.parse().map_err(|e| {
        Error::usage(format!("size {s:?} is not a number with a unit")).with_source(e)
    })?;
    if !v.is_finite() || v < 0.0 || v * mult as f64 > u64::MAX as f64 / 2.0 {
        return Err(Error::usage(format!("size {s:?} is out of range")));
    }
    Ok((v * mult as f64).round() as u64)
}

/// Formats bytes with a binary unit and 3 significant figures, e.g. `7.85 GiB`.
///
/// ```
/// assert_eq!(stoker::plan::format_bytes(3 << 20), "3.00 MiB");
/// assert_eq!(stoker::plan::format_bytes(512), "512 B");
/// ```
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// What is being trained, apart from the model and input size.
///
/// ```
/// use stoker::plan::{Precision, Settings};
/// let s = Settings { batch_size: 64, precision: Precision::AmpBf16, ..Settings::default() };
/// assert_eq!(s.overhead, stoker::plan::DEFAULT_OVERHEAD);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Samples per step (per micro-batch with gradient accumulation).
    pub batch_size: u64,
    /// Precision.
    pub precision: Precision,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// CUDA context and library overhead in bytes ([`DEFAULT_OVERHEAD`]).
    pub overhead: u64,
}

impl Default for Settings {
    /// Batch 1, fp32, Adam, 500 MiB overhead.
    ///
    /// ```
    /// let s = stoker::plan::Settings::default();
    /// assert_eq!((s.batch_size, s.optimizer), (1, stoker::plan::Optimizer::Adam));
    /// ```
    fn default() -> Self {
        Settings {
            batch_size: 1,
            precision: Precision::Fp32,
            optimizer: Optimizer::Adam,
            overhead: DEFAULT_OVERHEAD,
        }
    }
}

/// GPU memory of one training step, by component, in bytes (see the module documentation for
/// what each row counts).
///
/// ```
/// use stoker::plan::{Memory, Model, Settings, Shape};
/// let a = Model::parse("conv3x3:8,relu").unwrap().analyze(Shape::parse("8x8x3").unwrap()).unwrap();
/// let m = Memory::new(&a, &Settings { batch_size: 2, ..Settings::default() });
/// assert_eq!(m.activations, 2 * 8 * 8 * 8 * 4); // the relu output, fp32, 2 samples
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// fp32 parameters.
    pub weights: u64,
    /// Batch norm running statistics.
    pub buffers: u64,
    /// Parameter gradients.
    pub gradients: u64,
    /// Optimizer state.
    pub optimizer_state: u64,
    /// 16-bit copies of conv and dense parameters under AMP.
    pub weight_copies: u64,
    /// Activations saved for the backward pass.
    pub activations: u64,
    /// The input batch and labels.
    pub input: u64,
    /// Transient activations and activation gradients beyond the saved activations
    /// ([`Analysis::peak_bytes`] − [`Analysis::saved_bytes`], × batch) plus the cuDNN workspace.
    pub workspace: u64,
    /// Optimizer step temporaries (not alive at the same time as the activations).
    pub step_temporaries: u64,
    /// CUDA context and library overhead.
    pub overhead: u64,
}

impl Memory {
    /// The breakdown for `analysis` trained with `settings`.
    ///
    /// ```
    /// use stoker::plan::{Memory, Model, Settings, Shape, Optimizer};
    /// let a = Model::parse("flatten,dense:10").unwrap().analyze(Shape::parse("1x1x100").unwrap()).unwrap();
    /// let m = Memory::new(&a, &Settings { optimizer: Optimizer::Momentum, ..Settings::default() });
    /// assert_eq!((m.weights, m.gradients, m.optimizer_state), (4040, 4040, 4040));
    /// ```
    pub fn new(analysis: &Analysis, settings: &Settings) -> Memory {
        let p = analysis.params();
        let b = settings.batch_size;
        let act = settings.precision.activation_bytes();
        let amp = settings.precision != Precision::Fp32;
        Memory {
            weights: 4 * p,
            buffers: 4 * analysis.buffers(),
            gradients: 4 * p,
            optimizer_state: settings.optimizer.state_bytes() * p,
            weight_copies: if amp { 2 * analysis.cast_params() } else { 0 },
            activations: b.saturating_mul(analysis.saved_bytes(act)),
            input: b.saturating_mul(4 * analysis.input.elements() + 8),
            workspace: b
                .saturating_mul(analysis.peak_bytes(act) - analysis.saved_bytes(act))
                .saturating_add(CUDNN_WORKSPACE),
            step_temporaries: settings.optimizer.step_bytes() * p,
            overhead: settings.overhead,
        }
    }

    /// Weights, buffers, gradients and optimizer state.
    ///
    /// ```
    /// let m = stoker::plan::Memory { weights: 1, buffers: 2, gradients: 3, optimizer_state: 4,
    ///     weight_copies: 0, activations: 0, input: 0, workspace: 0, step_temporaries: 0, overhead: 0 };
    /// assert_eq!(m.persistent(), 10);
    /// ```
    pub fn persistent(&self) -> u64 {
        self.weights + self.buffers + self.gradients + self.optimizer_state
    }

    /// What the backward pass adds: activations, input, workspace, 16-bit weight copies.
    ///
    /// ```
    /// let m = stoker::plan::Memory { weights: 1, buffers: 0, gradients: 1, optimizer_state: 0,
    ///     weight_copies: 1, activations: 2, input: 3, workspace: 4, step_temporaries: 0, overhead: 0 };
    /// assert_eq!(m.backward(), 10);
    /// ```
    pub fn backward(&self) -> u64 {
        self.activations
            .saturating_add(self.input)
            .saturating_add(self.workspace)
            .saturating_add(self.weight_copies)
    }

    /// Peak bytes in PyTorch's allocator (what `torch.cuda.max_memory_allocated` measures):
    /// `persistent + max(backward, step temporaries)`.
    ///
    /// ```
    /// let m = stoker::plan::Memory { weights: 10, buffers: 0, gradients: 10, optimizer_state: 0,
    ///     weight_copies: 0, activations: 5, input: 1, workspace: 1, step_temporaries: 20, overhead: 100 };
    /// assert_eq!(m.allocated(), 40);
    /// assert_eq!(m.total(), 140);
    /// ```
    pub fn allocated(&self) -> u64 {
        self.persistent()
            .saturating_add(self.backward().max(self.step_temporaries))
    }

    /// The peak on the GPU: [`Memory::allocated`] plus the overhead.
    ///
    /// ```
    /// let m = stoker::plan::Memory { weights: 4, buffers: 0, gradients: 4, optimizer_state: 8,
    ///     weight_copies: 0, activations: 10, input: 0, workspace: 0, step_temporaries: 4, overhead: 100 };
    /// assert_eq!(m.total(), 16 + 10 + 100);
    /// ```
    pub fn total(&self) -> u64 {
        self.allocated().saturating_add(self.overhead)
    }

    /// `(name, bytes)` of every component, in table order.
    ///
    /// ```
    /// let m = stoker::plan::Memory { weights: 1, buffers: 0, gradients: 0, optimizer_state: 0,
    ///     weight_copies: 0, activations: 0, input: 0, workspace: 0, step_temporaries: 0, overhead: 0 };
    /// assert_eq!(m.rows()[0], ("weights", 1));
    /// ```
    pub fn rows(&self) -> [(&'static str, u64); 10] {
        [
            ("weights", self.weights),
            ("buffers", self.buffers),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer_state),
            ("16-bit weight copies", self.weight_copies),
            ("saved activations", self.activations),
            ("input batch", self.input),
            ("workspace", self.workspace),
            ("optimizer step temporaries", self.step_temporaries),
            ("overhead", self.overhead),
        ]
    }
}

/// The largest batch size whose [`Memory::total`] fits in `gpu_memory` bytes (0 if not even 1
/// does); `settings.batch_size` is ignored.
///
/// ```
/// use stoker::plan::{largest_batch, Memory, Model, Settings, Shape};
/// let a = Model::parse("conv3x3:8,relu").unwrap().analyze(Shape::parse("64x64x3").unwrap()).unwrap();
/// let s = Settings::default();
/// let b = largest_batch(&a, &s, 4 << 30);
/// let at = |n| Memory::new(&a, &Settings { batch_size: n, ..s }).total();
/// assert!(at(b) <= 4 << 30 && at(b + 1) > 4 << 30);
/// ```
pub fn largest_batch(analysis: &Analysis, settings: &Settings, gpu_memory: u64) -> u64 {
    let fits = |n: u64| {
        Memory::new(
            analysis,
            &Settings {
                batch_size: n,
                ..*settings
            },
        )
        .total()
            <= gpu_memory
    };
    if !fits(1) {
        return 0;
    }
    let (mut lo, mut hi) = (1u64, 2u64);
    while fits(hi) {
        lo = hi;
        hi *= 2;
        if hi > 1 << 32 {
            return lo;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}
