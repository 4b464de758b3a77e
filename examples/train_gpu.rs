//! A GPU-side training loop fed by stoker: a small MLP trained on the GPU from device batches.
//!
//! The loader decodes and normalises images into page-locked host batches, a
//! [`DeviceFeeder`](stoker::cuda::DeviceFeeder) copies each one into a ring of device slots on
//! its own stream, and the training step runs on the feeder's consumer stream: a few NVRTC
//! kernels (pooling, bias + ReLU, softmax cross-entropy, ReLU backward, bias gradients,
//! SGD with momentum) and cuBLAS GEMMs, all through `cudarc`. No step waits on the host except
//! once per epoch, to read the loss and accuracy back.
//!
//! # The model
//! Input: a batch of normalised f32 images, NCHW `[N, 3, H, W]` (the loader's default output
//! with `Normalize::imagenet()`).
//! 1. Average-pool each channel to `P × P` cells: `F = 3·P·P` features per image; cell
//!    `(i, j)` averages rows `[i·H/P, (i+1)·H/P)` and columns `[j·W/P, (j+1)·W/P)` (integer
//!    division), feature index `c·P·P + i·P + j`.
//! 2. Dense `F → hidden` and ReLU.
//! 3. Dense `hidden → classes`.
//! 4. Softmax cross-entropy, the mean over the batch.
//!
//! Weights are He-uniform from `--seed` (splitmix64), biases zero. The optimiser is SGD with
//! momentum 0.9: `v = 0.9·v + g/A; w -= lr·v`.
//!
//! # Gradient accumulation (`--accumulate A`)
//! The gradients of `A` consecutive batches are summed (each batch's gradient is that of its
//! own mean loss) and one SGD step is taken every `A` batches with the sum scaled by `1/A`: with
//! equal batch sizes this is the step of one batch `A` times as large. A partial group left at
//! the end of an epoch is not carried over: it takes a step of its own, scaled by `1/k` for the
//! `k` batches it holds (the mean of their gradients). A last batch smaller than the others
//! counts as one batch (its gradient is that of its own mean loss).
//!
//! # Running it
//! ```text
//! cargo run --release --features cuda --example train_gpu -- [PATH] [--epochs 10]
//!     [--batch-size 8] [--accumulate 1] [--lr 0.05] [--workers 2] [--seed 0] [--pool 8]
//!     [--hidden 64] [--cpu]
//! ```
//! `PATH` is an ImageFolder (one sub-folder per class); it defaults to
//! `fixtures/photos-256x144`. `--cpu` runs the same model and math with plain Rust loops on the
//! host batches (it also works without the `cuda` feature); the CPU functions mirror the GPU
//! kernels one to one (`pool` ↔ `pool`, `gemm` ↔ cuBLAS, `bias_relu` ↔ `bias_relu`, ...).
//! The GPU path needs the NVIDIA driver, NVRTC (`libnvrtc.so`) and cuBLAS (`libcublas.so`) at
//! run time; each missing one is a clear error (exit code 1). A bad flag exits with code 2.
//!
//! # The log
//! One line per epoch:
//! - `loss`: the mean training cross-entropy over the epoch's images (measured in the forward
//!   pass, before each batch's update);
//! - `acc`: the share of the epoch's images whose largest logit was the right class;
//! - `img/s`: images over the epoch's wall time (the GPU path waits for the GPU at epoch end);
//! - `step`: mean time per batch (forward, backward, and the SGD update when one is due): on
//!   the GPU the time between CUDA events recorded around each batch's work, on the CPU the
//!   host time of that work;
//! - `input wait`: host time spent inside the batch iterator's `next()` (decoding not yet done,
//!   plus queueing the upload on the GPU path), in total and as a share of the epoch;
//! - `gpu mem` (GPU path only): device memory in use (`total - free` from cuMemGetInfo, so
//!   it includes other processes on the GPU) after the epoch, and the peak of all samples
//!   taken so far. One more sample is logged after the first batch.
//!
//! A last line gives the first and the last epoch's loss and accuracy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use stoker::source::ImageFolder;
use stoker::{DType, Layout, Loader, LoaderBuilder, Normalize};

/// Momentum of the SGD optimiser.
const MOMENTUM: f32 = 0.9;

const USAGE: &str = "usage: train_gpu [PATH] [--epochs 10] [--batch-size 8] [--accumulate 1] \
                     [--lr 0.05] [--workers 2] [--seed 0] [--pool 8] [--hidden 64] [--cpu]";

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

/// Command-line settings.
#[derive(Clone, Debug, PartialEq)]
struct Args {
    path: PathBuf,
    epochs: usize,
    batch_size: usize,
    accumulate: usize,
    lr: f32,
    workers: usize,
    seed: u64,
    pool: usize,
    hidden: usize,
    cpu: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            path: PathBuf::from("fixtures/photos-256x144"),
            epochs: 10,
            batch_size: 8,
            accumulate: 1,
            lr: 0.05,
            workers: 2,
            seed: 0,
            pool: 8,
            hidden: 64,
            cpu: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Train(Args),
    Help,
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a valid number"))
}

/// Parses the arguments after the program name (std only: `--flag value` or `--flag=value`).
fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut out = Args::default();
    let mut path = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        if arg == "--cpu" {
            out.cpu = true;
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            if path.is_some() {
                return Err(format!("unexpected argument {arg:?} (one PATH at most)"));
            }
            path = Some(PathBuf::from(arg));
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let known = [
            "--epochs",
            "--batch-size",
            "--accumulate",
            "--lr",
            "--workers",
            "--seed",
            "--pool",
            "--hidden",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown flag {flag:?}"));
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--epochs" => out.epochs = parse_num(&flag, &value)?,
            "--batch-size" => out.batch_size = parse_num(&flag, &value)?,
            "--accumulate" => out.accumulate = parse_num(&flag, &value)?,
            "--lr" => out.lr = parse_num(&flag, &value)?,
            "--workers" => out.workers = parse_num(&flag, &value)?,
            "--seed" => out.seed = parse_num(&flag, &value)?,
            "--pool" => out.pool = parse_num(&flag, &value)?,
            "--hidden" => out.hidden = parse_num(&flag, &value)?,
            _ => unreachable!("checked against the known flags"),
        }
    }
    if let Some(p) = path {
        out.path = p;
    }
    for (name, v) in [
        ("--epochs", out.epochs),
        ("--batch-size", out.batch_size),
        ("--accumulate", out.accumulate),
        ("--pool", out.pool),
        ("--hidden", out.hidden),
    ] {
        if v == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    if !(out.lr.is_finite() && out.lr > 0.0) {
        return Err(format!("--lr must be a finite number > 0 (got {})", out.lr));
    }
    Ok(Command::Train(out))
}

// ---------------------------------------------------------------------------------------------
// The model's shapes and parameters
// ---------------------------------------------------------------------------------------------

/// Shapes of the model.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dims {
    channels: usize,
    height: usize,
    width: usize,
    /// Pooled cells per side (P).
    pool: usize,
    hidden: usize,
    classes: usize,
}

impl Dims {
    /// Features per image after pooling: `C·P·P`.
    fn features(&self) -> usize {
        self.channels * self.pool * self.pool
    }

    /// f32 values per image.
    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    fn check(&self) -> Result<(), String> {
        if self.pool > self.height || self.pool > self.width {
            return Err(format!(
                "--pool {} is larger than the {}x{} images: every cell needs at least one pixel",
                self.pool, self.width, self.height
            ));
        }
        if self.classes < 2 {
            return Err(format!(
                "{} class(es): training needs at least 2 class folders",
                self.classes
            ));
        }
        Ok(())
    }
}

/// splitmix64: a tiny deterministic generator for the initial weights.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        stoker::rng::mix64(self.0)
    }

    /// Uniform in `[-1, 1)`.
    fn symmetric(&mut self) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * unit - 1.0
    }
}

/// The parameters (also used for their gradients and momentum buffers), row-major:
/// `w1` is `F × hidden`, `w2` is `hidden × classes`.
#[derive(Clone, Debug, PartialEq)]
struct Params {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl Params {
    fn zeros(d: &Dims) -> Params {
        Params {
            w1: vec![0.0; d.features() * d.hidden],
            b1: vec![0.0; d.hidden],
            w2: vec![0.0; d.hidden * d.classes],
            b2: vec![0.0; d.classes],
        }
    }

    /// He-uniform weights (`U(-√(6/fan_in), √(6/fan_in))`) from `seed`, zero biases.
    fn init(d: &Dims, seed: u64) -> Params {
        let mut rng = SplitMix64(seed ^ 0x005E_ED0F_7EA1);
        let mut p = Params::zeros(d);
        let a1 = (6.0 / d.features() as f32).sqrt();
        p.w1.iter_mut().for_each(|w| *w = a1 * rng.symmetric());
        let a2 = (6.0 / d.hidden as f32).sqrt();
        p.w2.iter_mut().for_each(|w| *w = a2 * rng.symmetric());
        p
    }
}

// ---------------------------------------------------------------------------------------------
// Row-major GEMM, and the column-major cuBLAS call that computes it
// ---------------------------------------------------------------------------------------------

/// Row-major `C[m×n] = op(A)[m×k] · op(B)[k×n] + beta·C`. `A` is stored `m×k` (or `k×m` when
/// `trans_a`, and then `op(A) = Aᵀ`), `B` is stored `k×n` (or `n×k` when `trans_b`); every
/// matrix is dense row-major, so its leading dimension is its column count.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RowMajorGemm {
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
}

/// A column-major BLAS `sgemm` call: `C'[m×n] = op(A')[m×k] · op(B')[k×n] + beta·C'`, where
/// `A'` is the row-major call's **B** buffer and `B'` its **A** buffer.
// Used by the GPU path (and the tests) only.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq)]
struct BlasCall {
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ldc: usize,
}

impl RowMajorGemm {
    /// The column-major call computing this product.
    ///
    /// Proof: a row-major `r×c` buffer read column-major with leading dimension `c` is the
    /// `c×r` matrix `Xᵀ`. So the row-major `C[m×n]` is, to cuBLAS, `Cᵀ[n×m]` with `ldc = n`,
    /// and `C = op(A)·op(B)` ⇔ `Cᵀ = op(B)ᵀ · op(A)ᵀ`: cuBLAS's `m, n, k` are our `n, m, k`,
    /// its first operand must be `op(B)ᵀ[n×k]` and its second `op(A)ᵀ[k×m]`.
    /// - B not transposed: stored `k×n`, seen by cuBLAS as `Bᵀ[n×k]` (ld `n`) = `op(B)ᵀ`:
    ///   no transpose, `lda = n`.
    /// - B transposed: stored `n×k`, seen as `[k×n]` (ld `k`) whose transpose is the stored
    ///   `n×k` = `op(B)ᵀ` (since `op(B)` is the stored matrix transposed): transpose,
    ///   `lda = k`.
    /// - A not transposed: stored `m×k`, seen as `Aᵀ[k×m]` (ld `k`) = `op(A)ᵀ`: no transpose,
    ///   `ldb = k`.
    /// - A transposed: stored `k×m`, seen as `[m×k]` (ld `m`) whose transpose is the stored
    ///   `k×m` = `op(A)ᵀ`: transpose, `ldb = m`.
    ///
    /// The test `blas_call_matches_row_major_gemm` runs this mapping through a reference
    /// column-major sgemm for every combination.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn blas_call(&self) -> BlasCall {
        BlasCall {
            trans_a: self.trans_b,
            trans_b: self.trans_a,
            m: self.n,
            n: self.m,
            k: self.k,
            lda: if self.trans_b { self.k } else { self.n },
            ldb: if self.trans_a { self.m } else { self.k },
            ldc: self.n,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The CPU model: one function per GPU kernel (same names, same arithmetic order)
// ---------------------------------------------------------------------------------------------

/// Kernel `pool`: `feat[s, c·P·P + i·P + j]` = mean of cell `(i, j)` of channel `c` of image
/// `s` (x is NCHW).
fn pool(x: &[f32], feat: &mut [f32], n: usize, c: usize, h: usize, w: usize, p: usize) {
    for (idx, out) in feat[..n * c * p * p].iter_mut().enumerate() {
        let j = idx % p;
        let i = (idx / p) % p;
        let ch = (idx / (p * p)) % c;
        let s = idx / (p * p * c);
        let (r0, r1) = (i * h / p, (i + 1) * h / p);
        let (c0, c1) = (j * w / p, (j + 1) * w / p);
        let plane = &x[(s * c + ch) * h * w..][..h * w];
        let mut sum = 0.0f32;
        for r in r0..r1 {
            for q in c0..c1 {
                sum += plane[r * w + q];
            }
        }
        *out = sum / ((r1 - r0) * (c1 - c0)) as f32;
    }
}

/// cuBLAS `sgemm` through [`RowMajorGemm`] (alpha 1): the row-major product, naively.
fn gemm(g: RowMajorGemm, a: &[f32], b: &[f32], c: &mut [f32]) {
    let (m, n, k) = (g.m, g.n, g.k);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for l in 0..k {
                let av = if g.trans_a {
                    a[l * m + i]
                } else {
                    a[i * k + l]
                };
                let bv = if g.trans_b {
                    b[j * k + l]
                } else {
                    b[l * n + j]
                };
                acc += av * bv;
            }
            let out = &mut c[i * n + j];
            *out = if g.beta == 0.0 {
                acc
            } else {
                g.beta * *out + acc
            };
        }
    }
}

/// Kernel `bias_relu`: `z[r, j] = max(z[r, j] + b[j], 0)` over `n` rows of `cols`.
fn bias_relu(z: &mut [f32], b: &[f32], n: usize, cols: usize) {
    for (idx, v) in z[..n * cols].iter_mut().enumerate() {
        let t = *v + b[idx % cols];
        *v = if t > 0.0 { t } else { 0.0 };
    }
}

/// Kernel `softmax_xent`, per sample `s`: `l = logits[s] + b2`; `loss[s] = logsumexp(l) - l[y]`;
/// `correct[s] = 1` when the first largest logit is `y`; `dlogits[s] = (softmax(l) - onehot(y)) / n`
/// (the gradient of the batch's mean loss).
#[allow(clippy::too_many_arguments)]
fn softmax_xent(
    logits: &[f32],
    b2: &[f32],
    labels: &[i64],
    n: usize,
    k: usize,
    dlogits: &mut [f32],
    loss: &mut [f32],
    correct: &mut [f32],
) {
    for s in 0..n {
        let row = &logits[s * k..][..k];
        let y = labels[s] as usize;
        let mut m = row[0] + b2[0];
        let mut arg = 0;
        for j in 1..k {
            let l = row[j] + b2[j];
            if l > m {
                m = l;
                arg = j;
            }
        }
        let mut sum = 0.0f32;
        for j in 0..k {
            sum += (row[j] + b2[j] - m).exp();
        }
        let lse = m + sum.ln();
        loss[s] = lse - (row[y] + b2[y]);
        correct[s] = if arg == y { 1.0 } else { 0.0 };
        let inv_n = 1.0 / n as f32;
        for j in 0..k {
            let prob = (row[j] + b2[j] - m).exp() / sum;
            let target = if j == y { 1.0 } else { 0.0 };
            dlogits[s * k + j] = (prob - target) * inv_n;
        }
    }
}

/// Kernel `batch_stats` (one thread): adds the batch's loss sum, correct count and size.
fn batch_stats(loss: &[f32], correct: &[f32], n: usize, stats: &mut [f64; 3]) {
    for s in 0..n {
        stats[0] += f64::from(loss[s]);
        stats[1] += f64::from(correct[s]);
        stats[2] += 1.0;
    }
}

/// Kernel `relu_backward`: `da[i] = 0` where the ReLU's output `a[i]` is 0.
fn relu_backward(da: &mut [f32], a: &[f32], len: usize) {
    for (d, &v) in da[..len].iter_mut().zip(&a[..len]) {
        if v <= 0.0 {
            *d = 0.0;
        }
    }
}

/// Kernel `bias_grad`: `db[j] += Σ_r dz[r, j]` over `n` rows (accumulates).
fn bias_grad(dz: &[f32], db: &mut [f32], n: usize, cols: usize) {
    for (j, out) in db[..cols].iter_mut().enumerate() {
        let mut sum = 0.0f32;
        for r in 0..n {
            sum += dz[r * cols + j];
        }
        *out += sum;
    }
}

/// Kernel `sgd_momentum`: `v = momentum·v + scale·g; w -= lr·v; g = 0`.
fn sgd_momentum(w: &mut [f32], g: &mut [f32], v: &mut [f32], lr: f32, momentum: f32, scale: f32) {
    for ((w, g), v) in w.iter_mut().zip(g.iter_mut()).zip(v.iter_mut()) {
        *v = momentum * *v + scale * *g;
        *w -= lr * *v;
        *g = 0.0;
    }
}

/// The MLP on the host, with its gradients, momentum and scratch buffers.
struct CpuModel {
    dims: Dims,
    params: Params,
    grads: Params,
    velocity: Params,
    feat: Vec<f32>,
    a1: Vec<f32>,
    logits: Vec<f32>,
    dlogits: Vec<f32>,
    da1: Vec<f32>,
    loss: Vec<f32>,
    correct: Vec<f32>,
}

impl CpuModel {
    fn new(dims: Dims, params: Params, batch_size: usize) -> CpuModel {
        let b = batch_size;
        CpuModel {
            dims,
            grads: Params::zeros(&dims),
            velocity: Params::zeros(&dims),
            params,
            feat: vec![0.0; b * dims.features()],
            a1: vec![0.0; b * dims.hidden],
            logits: vec![0.0; b * dims.classes],
            dlogits: vec![0.0; b * dims.classes],
            da1: vec![0.0; b * dims.hidden],
            loss: vec![0.0; b],
            correct: vec![0.0; b],
        }
    }

    /// Forward pass of `n` images: fills the activations, per-sample losses and `dlogits`;
    /// returns the batch's mean loss.
    fn forward(&mut self, x: &[f32], labels: &[i64], n: usize) -> f32 {
        let d = self.dims;
        let (f, hd, k) = (d.features(), d.hidden, d.classes);
        pool(x, &mut self.feat, n, d.channels, d.height, d.width, d.pool);
        // Z1[n×hd] = feat[n×f] · W1[f×hd]
        let g1 = RowMajorGemm {
            trans_a: false,
            trans_b: false,
            m: n,
            n: hd,
            k: f,
            beta: 0.0,
        };
        gemm(g1, &self.feat, &self.params.w1, &mut self.a1);
        bias_relu(&mut self.a1, &self.params.b1, n, hd);
        // logits[n×k] = A1[n×hd] · W2[hd×k]
        let g2 = RowMajorGemm {
            trans_a: false,
            trans_b: false,
            m: n,
            n: k,
            k: hd,
            beta: 0.0,
        };
        gemm(g2, &self.a1, &self.params.w2, &mut self.logits);
        softmax_xent(
            &self.logits,
            &self.params.b2,
            labels,
            n,
            k,
            &mut self.dlogits,
            &mut self.loss,
            &mut self.correct,
        );
        self.loss[..n].iter().sum::<f32>() / n as f32
    }

    /// Backward pass after [`CpuModel::forward`]: adds the batch's gradients to `grads`.
    fn backward(&mut self, n: usize) {
        let d = self.dims;
        let (f, hd, k) = (d.features(), d.hidden, d.classes);
        // dW2[hd×k] += A1ᵀ[hd×n] · dlogits[n×k]
        let g = RowMajorGemm {
            trans_a: true,
            trans_b: false,
            m: hd,
            n: k,
            k: n,
            beta: 1.0,
        };
        gemm(g, &self.a1, &self.dlogits, &mut self.grads.w2);
        bias_grad(&self.dlogits, &mut self.grads.b2, n, k);
        // dA1[n×hd] = dlogits[n×k] · W2ᵀ[k×hd]
        let g = RowMajorGemm {
            trans_a: false,
            trans_b: true,
            m: n,
            n: hd,
            k,
            beta: 0.0,
        };
        gemm(g, &self.dlogits, &self.params.w2, &mut self.da1);
        relu_backward(&mut self.da1, &self.a1, n * hd);
        // dW1[f×hd] += featᵀ[f×n] · dZ1[n×hd]
        let g = RowMajorGemm {
            trans_a: true,
            trans_b: false,
            m: f,
            n: hd,
            k: n,
            beta: 1.0,
        };
        gemm(g, &self.feat, &self.da1, &mut self.grads.w1);
        bias_grad(&self.da1, &mut self.grads.b1, n, hd);
    }

    /// Forward and backward of one batch; adds its loss sum, correct count and size to `stats`.
    fn train_batch(&mut self, x: &[f32], labels: &[i64], n: usize, stats: &mut [f64; 3]) {
        self.forward(x, labels, n);
        batch_stats(&self.loss, &self.correct, n, stats);
        self.backward(n);
    }

    /// One SGD step with the accumulated gradients scaled by `scale`; zeroes the gradients.
    fn step(&mut self, lr: f32, scale: f32) {
        let (p, g, v) = (&mut self.params, &mut self.grads, &mut self.velocity);
        sgd_momentum(&mut p.w1, &mut g.w1, &mut v.w1, lr, MOMENTUM, scale);
        sgd_momentum(&mut p.b1, &mut g.b1, &mut v.b1, lr, MOMENTUM, scale);
        sgd_momentum(&mut p.w2, &mut g.w2, &mut v.w2, lr, MOMENTUM, scale);
        sgd_momentum(&mut p.b2, &mut g.b2, &mut v.b2, lr, MOMENTUM, scale);
    }
}

// ---------------------------------------------------------------------------------------------
// The training loop's bookkeeping (shared by both paths)
// ---------------------------------------------------------------------------------------------

/// When to take an SGD step, and how to scale the summed gradients.
struct Accumulation {
    every: usize,
    pending: usize,
}

impl Accumulation {
    fn new(every: usize) -> Accumulation {
        Accumulation { every, pending: 0 }
    }

    /// After a batch's backward pass: `Some(1/A)` when a group of `A` batches is complete.
    fn after_batch(&mut self) -> Option<f32> {
        self.pending += 1;
        (self.pending == self.every).then(|| {
            self.pending = 0;
            1.0 / self.every as f32
        })
    }

    /// At the end of an epoch: `Some(1/k)` for a partial group of `k` batches.
    fn flush(&mut self) -> Option<f32> {
        let k = std::mem::take(&mut self.pending);
        (k > 0).then(|| 1.0 / k as f32)
    }
}

/// What one epoch did.
#[derive(Clone, Debug)]
struct EpochLog {
    epoch: usize,
    loss: f64,
    accuracy: f64,
    images: usize,
    batches: usize,
    wall: Duration,
    /// Summed time of the batches' work.
    step: Duration,
    /// Host time inside the iterator's `next()`.
    wait: Duration,
    /// GPU memory in use after the epoch, and the peak so far (bytes).
    memory: Option<(usize, usize)>,
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn print_epoch(e: &EpochLog, epochs: usize) {
    let secs = e.wall.as_secs_f64().max(1e-9);
    let mut line = format!(
        "epoch {:>3}/{epochs}  loss {:.4}  acc {:5.1}%  {:8.1} img/s  step {:7.3} ms  \
         input wait {:8.1} ms ({:4.1}%)",
        e.epoch + 1,
        e.loss,
        100.0 * e.accuracy,
        e.images as f64 / secs,
        e.step.as_secs_f64() * 1e3 / e.batches.max(1) as f64,
        e.wait.as_secs_f64() * 1e3,
        100.0 * e.wait.as_secs_f64() / secs,
    );
    if let Some((used, peak)) = e.memory {
        line += &format!("  gpu mem {:.1} MiB (peak {:.1} MiB)", mib(used), mib(peak));
    }
    println!("{line}");
}

fn print_summary(logs: &[EpochLog]) {
    if let (Some(first), Some(last)) = (logs.first(), logs.last()) {
        println!(
            "loss {:.4} (epoch 1) -> {:.4} (epoch {}); accuracy {:.1}% -> {:.1}%",
            first.loss,
            last.loss,
            last.epoch + 1,
            100.0 * first.accuracy,
            100.0 * last.accuracy
        );
    }
}

/// The loader settings both paths share (f32 NCHW, ImageNet normalisation, shuffled).
fn loader_builder(args: &Args) -> Result<LoaderBuilder<ImageFolder>, String> {
    let folder = ImageFolder::open(&args.path)
        .map_err(|e| format!("cannot open image folder: {}", at_path(&args.path, e)))?;
    Ok(Loader::builder(folder)
        .batch_size(args.batch_size)
        .shuffle(true)
        .seed(args.seed)
        .num_workers(args.workers)
        .dtype(DType::F32)
        .layout(Layout::Nchw)
        .normalize(Normalize::imagenet()))
}

/// The model's shapes for a built loader.
fn dims_of(args: &Args, loader: &Loader<ImageFolder>) -> Result<Dims, String> {
    let spec = loader.spec();
    let dims = Dims {
        channels: spec.channels,
        height: spec.height,
        width: spec.width,
        pool: args.pool,
        hidden: args.hidden,
        classes: loader.source().classes().len(),
    };
    dims.check().map_err(|e| at_path(&args.path, e))?;
    Ok(dims)
}

/// A loader error as a message that names `path` (once).
fn at_path(path: &Path, e: impl std::fmt::Display) -> String {
    let (p, e) = (path.display().to_string(), e.to_string());
    if e.contains(&p) {
        e
    } else {
        format!("{p}: {e}")
    }
}

/// The labels of a batch, checked against the number of classes.
fn checked_labels<'a>(
    labels: Option<&'a [i64]>,
    n: usize,
    classes: usize,
    path: &Path,
) -> Result<&'a [i64], String> {
    let labels = labels
        .filter(|l| l.len() == n)
        .ok_or_else(|| format!("{}: the batch has no labels", path.display()))?;
    if let Some(bad) = labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(format!(
            "{}: label {bad} is outside 0..{classes}",
            path.display()
        ));
    }
    Ok(labels)
}

// ---------------------------------------------------------------------------------------------
// The CPU path
// ---------------------------------------------------------------------------------------------

/// Trains on the host; prints one line per epoch when `verbose`.
fn run_cpu(args: &Args, verbose: bool) -> Result<Vec<EpochLog>, String> {
    let path = args.path.as_path();
    let mut loader = loader_builder(args)?
        .build()
        .map_err(|e| at_path(path, e))?;
    let dims = dims_of(args, &loader)?;
    let mut model = CpuModel::new(dims, Params::init(&dims, args.seed), args.batch_size);
    let mut acc = Accumulation::new(args.accumulate);
    let mut logs = Vec::with_capacity(args.epochs);
    for epoch in 0..args.epochs {
        let start = Instant::now();
        let (mut wait, mut step) = (Duration::ZERO, Duration::ZERO);
        let mut stats = [0.0f64; 3];
        let mut batches = 0;
        let mut it = loader.epoch(epoch as u64);
        loop {
            let t = Instant::now();
            let next = it.next();
            wait += t.elapsed();
            let Some(batch) = next else { break };
            let batch = batch.map_err(|e| at_path(path, e))?;
            let t = Instant::now();
            let n = batch.len();
            let labels = checked_labels(batch.labels(), n, dims.classes, path)?;
            let x = batch.images::<f32>().map_err(|e| at_path(path, e))?;
            let x = x
                .as_slice()
                .ok_or_else(|| "batch tensor is not contiguous".to_string())?;
            if x.len() != n * dims.image_len() {
                return Err(format!(
                    "{}: batch of {} values, expected {}",
                    path.display(),
                    x.len(),
                    n * dims.image_len()
                ));
            }
            model.train_batch(x, labels, n, &mut stats);
            if let Some(scale) = acc.after_batch() {
                model.step(args.lr, scale);
            }
            batches += 1;
            step += t.elapsed();
        }
        drop(it);
        if let Some(scale) = acc.flush() {
            let t = Instant::now();
            model.step(args.lr, scale);
            step += t.elapsed();
        }
        let images = stats[2] as usize;
        if images == 0 {
            return Err(format!("{}: the epoch had no images", path.display()));
        }
        let log = EpochLog {
            epoch,
            loss: stats[0] / stats[2],
            accuracy: stats[1] / stats[2],
            images,
            batches,
            wall: start.elapsed(),
            step,
            wait,
            memory: None,
        };
        if verbose {
            print_epoch(&log, args.epochs);
        }
        logs.push(log);
    }
    Ok(logs)
}

// ---------------------------------------------------------------------------------------------
// The GPU path
// ---------------------------------------------------------------------------------------------

/// The CUDA source of the kernels; each mirrors the CPU function of the same name.
#[cfg(feature = "cuda")]
const KERNELS: &str = r#"
extern "C" __global__ void pool(const float* x, float* feat, int n, int c, int h, int w, int p) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * c * p * p) return;
    int j = idx % p;
    int i = (idx / p) % p;
    int ch = (idx / (p * p)) % c;
    int s = idx / (p * p * c);
    int r0 = i * h / p, r1 = (i + 1) * h / p;
    int c0 = j * w / p, c1 = (j + 1) * w / p;
    const float* plane = x + ((size_t)s * c + ch) * (size_t)h * w;
    float sum = 0.0f;
    for (int r = r0; r < r1; ++r) {
        for (int q = c0; q < c1; ++q) {
            sum += plane[(size_t)r * w + q];
        }
    }
    feat[idx] = sum / (float)((r1 - r0) * (c1 - c0));
}

extern "C" __global__ void bias_relu(float* z, const float* b, int n, int cols) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * cols) return;
    float t = z[idx] + b[idx % cols];
    z[idx] = t > 0.0f ? t : 0.0f;
}

extern "C" __global__ void softmax_xent(const float* logits, const float* b2,
                                        const long long* labels, int n, int k,
                                        float* dlogits, float* loss, float* correct) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n) return;
    const float* row = logits + (size_t)s * k;
    int y = (int)labels[s];
    float m = row[0] + b2[0];
    int arg = 0;
    for (int j = 1; j < k; ++j) {
        float l = row[j] + b2[j];
        if (l > m) { m = l; arg = j; }
    }
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) sum += expf(row[j] + b2[j] - m);
    float lse = m + logf(sum);
    loss[s] = lse - (row[y] + b2[y]);
    correct[s] = arg == y ? 1.0f : 0.0f;
    float inv_n = 1.0f / (float)n;
    for (int j = 0; j < k; ++j) {
        float prob = expf(row[j] + b2[j] - m) / sum;
        float target = j == y ? 1.0f : 0.0f;
        dlogits[(size_t)s * k + j] = (prob - target) * inv_n;
    }
}

extern "C" __global__ void batch_stats(const float* loss, const float* correct, int n,
                                       double* stats) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    for (int s = 0; s < n; ++s) {
        stats[0] += (double)loss[s];
        stats[1] += (double)correct[s];
        stats[2] += 1.0;
    }
}

extern "C" __global__ void relu_backward(float* da, const float* a, int len) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    if (a[i] <= 0.0f) da[i] = 0.0f;
}

extern "C" __global__ void bias_grad(const float* dz, float* db, int n, int cols) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float sum = 0.0f;
    for (int r = 0; r < n; ++r) sum += dz[(size_t)r * cols + j];
    db[j] += sum;
}

extern "C" __global__ void sgd_momentum(float* w, float* g, float* v, int len, float lr,
                                        float momentum, float scale) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float vi = momentum * v[i] + scale * g[i];
    v[i] = vi;
    w[i] -= lr * vi;
    g[i] = 0.0f;
}
"#;

/// Names of the kernels in [`KERNELS`].
#[cfg(feature = "cuda")]
const KERNEL_NAMES: [&str; 7] = [
    "pool",
    "bias_relu",
    "softmax_xent",
    "batch_stats",
    "relu_backward",
    "bias_grad",
    "sgd_momentum",
];

#[cfg(feature = "cuda")]
mod gpu {
    //! The training step on the GPU: NVRTC kernels and cuBLAS on the feeder's consumer stream.

    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use stoker::cuda::cudarc::cublas::sys::cublasOperation_t;
    use stoker::cuda::cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
    use stoker::cuda::cudarc::driver::sys::{CUdeviceptr, CUevent_flags};
    use stoker::cuda::cudarc::driver::{
        CudaEvent, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
    };
    use stoker::cuda::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
    use stoker::cuda::{Device, DeviceFeeder, PinnedAlloc};

    use super::{
        at_path, checked_labels, dims_of, loader_builder, print_epoch, Accumulation, Args, Dims,
        EpochLog, Params, RowMajorGemm, KERNELS, KERNEL_NAMES, MOMENTUM,
    };

    /// Fails with a clear message unless NVRTC can be loaded (cudarc panics otherwise).
    pub fn require_nvrtc() -> Result<(), String> {
        // SAFETY: only tries to dlopen the library by its usual names.
        if unsafe { stoker::cuda::cudarc::nvrtc::sys::is_culib_present() } {
            Ok(())
        } else {
            Err(
                "NVRTC not found: could not load libnvrtc.so (install the CUDA toolkit's \
                 NVRTC, e.g. the nvidia-cuda-nvrtc-cu12 wheel, and put its lib directory on \
                 LD_LIBRARY_PATH)"
                    .to_string(),
            )
        }
    }

    /// Fails with a clear message unless cuBLAS can be loaded (cudarc panics otherwise).
    pub fn require_cublas() -> Result<(), String> {
        // SAFETY: only tries to dlopen the library by its usual names.
        if unsafe { stoker::cuda::cudarc::cublas::sys::is_culib_present() } {
            Ok(())
        } else {
            Err(
                "cuBLAS not found: could not load libcublas.so (install the CUDA toolkit's \
                 cuBLAS, e.g. the nvidia-cublas-cu12 wheel, and put its lib directory on \
                 LD_LIBRARY_PATH)"
                    .to_string(),
            )
        }
    }

    /// Compiles [`KERNELS`] to PTX with NVRTC (no GPU needed). Without fused multiply-adds, so
    /// the element-wise kernels round as the CPU functions do.
    pub fn compile_kernels() -> Result<Ptx, String> {
        require_nvrtc()?;
        let opts = CompileOptions {
            fmad: Some(false),
            ..Default::default()
        };
        compile_ptx_with_opts(KERNELS, opts).map_err(|e| format!("NVRTC: {e}"))
    }

    fn driver<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
        move |e| format!("cuda: {what}: {e}")
    }

    /// The loaded kernels.
    struct Kernels {
        pool: CudaFunction,
        bias_relu: CudaFunction,
        softmax_xent: CudaFunction,
        batch_stats: CudaFunction,
        relu_backward: CudaFunction,
        bias_grad: CudaFunction,
        sgd_momentum: CudaFunction,
    }

    /// Parameters, gradients or momentum on the device.
    struct DevParams {
        w1: CudaSlice<f32>,
        b1: CudaSlice<f32>,
        w2: CudaSlice<f32>,
        b2: CudaSlice<f32>,
    }

    impl DevParams {
        fn upload(stream: &Arc<CudaStream>, p: &Params) -> Result<DevParams, String> {
            let up = |v: &Vec<f32>| stream.clone_htod(v).map_err(driver("uploading weights"));
            Ok(DevParams {
                w1: up(&p.w1)?,
                b1: up(&p.b1)?,
                w2: up(&p.w2)?,
                b2: up(&p.b2)?,
            })
        }

        #[cfg(test)]
        fn download(&self, stream: &Arc<CudaStream>) -> Result<Params, String> {
            let down = |v: &CudaSlice<f32>| stream.clone_dtoh(v).map_err(driver("reading weights"));
            let p = Params {
                w1: down(&self.w1)?,
                b1: down(&self.b1)?,
                w2: down(&self.w2)?,
                b2: down(&self.b2)?,
            };
            stream.synchronize().map_err(driver("reading weights"))?;
            Ok(p)
        }
    }

    /// A grid of `len` threads in blocks of 256.
    fn grid(len: usize) -> LaunchConfig {
        let threads = 256u32;
        LaunchConfig {
            grid_dim: ((len as u32).div_ceil(threads).max(1), 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn op(trans: bool) -> cublasOperation_t {
        if trans {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    }

    /// Row-major `c = op(a)·op(b) + beta·c` through cuBLAS's column-major sgemm: see
    /// [`RowMajorGemm::blas_call`] for the proof of the operand swap and leading dimensions.
    fn gemm(
        blas: &CudaBlas,
        g: RowMajorGemm,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), String> {
        let call = g.blas_call();
        let cfg = GemmConfig {
            transa: op(call.trans_a),
            transb: op(call.trans_b),
            m: call.m as i32,
            n: call.n as i32,
            k: call.k as i32,
            alpha: 1.0f32,
            lda: call.lda as i32,
            ldb: call.ldb as i32,
            beta: g.beta,
            ldc: call.ldc as i32,
        };
        debug_assert!(a.len() >= g.m * g.k && b.len() >= g.k * g.n && c.len() >= g.m * g.n);
        // SAFETY: the buffers hold at least the matrices' elements (asserted above; every
        // buffer is sized for a full batch), all on the blas handle's stream. cuBLAS's first
        // operand is our B and its second our A.
        unsafe { blas.gemm(cfg, b, a, c) }.map_err(|e| format!("cuBLAS sgemm: {e:?}"))
    }

    /// The MLP on the GPU, with its gradients, momentum and scratch buffers; all work goes on
    /// `stream`.
    pub struct GpuModel {
        dims: Dims,
        stream: Arc<CudaStream>,
        blas: CudaBlas,
        k: Kernels,
        params: DevParams,
        grads: DevParams,
        velocity: DevParams,
        feat: CudaSlice<f32>,
        a1: CudaSlice<f32>,
        logits: CudaSlice<f32>,
        dlogits: CudaSlice<f32>,
        da1: CudaSlice<f32>,
        loss: CudaSlice<f32>,
        correct: CudaSlice<f32>,
        /// Loss sum, correct count, images: of the epoch so far.
        stats: CudaSlice<f64>,
    }

    impl GpuModel {
        /// Compiles and loads the kernels, uploads `params`, allocates buffers for batches of
        /// up to `batch_size`.
        pub fn new(
            stream: Arc<CudaStream>,
            dims: Dims,
            params: &Params,
            batch_size: usize,
        ) -> Result<GpuModel, String> {
            require_cublas()?;
            let ptx = compile_kernels()?;
            let module = stream
                .context()
                .load_module(ptx)
                .map_err(driver("loading the kernels"))?;
            let f = |name: &str| {
                module
                    .load_function(name)
                    .map_err(|e| format!("cuda: kernel {name}: {e}"))
            };
            let k = Kernels {
                pool: f(KERNEL_NAMES[0])?,
                bias_relu: f(KERNEL_NAMES[1])?,
                softmax_xent: f(KERNEL_NAMES[2])?,
                batch_stats: f(KERNEL_NAMES[3])?,
                relu_backward: f(KERNEL_NAMES[4])?,
                bias_grad: f(KERNEL_NAMES[5])?,
                sgd_momentum: f(KERNEL_NAMES[6])?,
            };
            let blas = CudaBlas::new(Arc::clone(&stream)).map_err(driver("creating cuBLAS"))?;
            let zeros = |len: usize| {
                stream
                    .alloc_zeros::<f32>(len)
                    .map_err(driver("allocating buffers"))
            };
            let b = batch_size;
            let zero = Params::zeros(&dims);
            Ok(GpuModel {
                params: DevParams::upload(&stream, params)?,
                grads: DevParams::upload(&stream, &zero)?,
                velocity: DevParams::upload(&stream, &zero)?,
                feat: zeros(b * dims.features())?,
                a1: zeros(b * dims.hidden)?,
                logits: zeros(b * dims.classes)?,
                dlogits: zeros(b * dims.classes)?,
                da1: zeros(b * dims.hidden)?,
                loss: zeros(b)?,
                correct: zeros(b)?,
                stats: stream
                    .alloc_zeros::<f64>(3)
                    .map_err(driver("allocating buffers"))?,
                dims,
                stream,
                blas,
                k,
            })
        }

        /// Queues forward and backward for `n` images at device address `x` (f32 NCHW) with
        /// labels at `labels` (`n` i64 values, checked on the host to be in range): the
        /// gradients are added to the accumulated ones, the loss and accuracy to the epoch's.
        ///
        /// # Safety
        /// `x` and `labels` must hold `n` images and labels, be ready on the model's stream
        /// (ordered before it), and stay allocated until the work queued here has run.
        pub unsafe fn train_batch(
            &mut self,
            x: CUdeviceptr,
            labels: CUdeviceptr,
            n: usize,
        ) -> Result<(), String> {
            let d = self.dims;
            let (f, hd, k) = (d.features(), d.hidden, d.classes);
            let s = &self.stream;
            let err = driver("launching a kernel");
            let (ni, ci, hi, wi, pi) = (
                n as i32,
                d.channels as i32,
                d.height as i32,
                d.width as i32,
                d.pool as i32,
            );
            let (hdi, ki) = (hd as i32, k as i32);
            // feat[n×f] = pool(x)
            s.launch_builder(&self.k.pool)
                .arg(&x)
                .arg(&mut self.feat)
                .arg(&ni)
                .arg(&ci)
                .arg(&hi)
                .arg(&wi)
                .arg(&pi)
                .launch(grid(n * f))
                .map_err(&err)?;
            // Z1[n×hd] = feat[n×f] · W1[f×hd]
            let g = RowMajorGemm {
                trans_a: false,
                trans_b: false,
                m: n,
                n: hd,
                k: f,
                beta: 0.0,
            };
            gemm(&self.blas, g, &self.feat, &self.params.w1, &mut self.a1)?;
            // A1 = relu(Z1 + b1)
            s.launch_builder(&self.k.bias_relu)
                .arg(&mut self.a1)
                .arg(&self.params.b1)
                .arg(&ni)
                .arg(&hdi)
                .launch(grid(n * hd))
                .map_err(&err)?;
            // logits[n×k] = A1[n×hd] · W2[hd×k]  (b2 is added inside softmax_xent)
            let g = RowMajorGemm {
                trans_a: false,
                trans_b: false,
                m: n,
                n: k,
                k: hd,
                beta: 0.0,
            };
            gemm(&self.blas, g, &self.a1, &self.params.w2, &mut self.logits)?;
            s.launch_builder(&self.k.softmax_xent)
                .arg(&self.logits)
                .arg(&self.params.b2)
                .arg(&labels)
                .arg(&ni)
                .arg(&ki)
                .arg(&mut self.dlogits)
                .arg(&mut self.loss)
                .arg(&mut self.correct)
                .launch(grid(n))
                .map_err(&err)?;
            s.launch_builder(&self.k.batch_stats)
                .arg(&self.loss)
                .arg(&self.correct)
                .arg(&ni)
                .arg(&mut self.stats)
                .launch(grid(1))
                .map_err(&err)?;
            // dW2[hd×k] += A1ᵀ[hd×n] · dlogits[n×k]
            let g = RowMajorGemm {
                trans_a: true,
                trans_b: false,
                m: hd,
                n: k,
                k: n,
                beta: 1.0,
            };
            gemm(&self.blas, g, &self.a1, &self.dlogits, &mut self.grads.w2)?;
            // db2[k] += Σ_rows dlogits
            s.launch_builder(&self.k.bias_grad)
                .arg(&self.dlogits)
                .arg(&mut self.grads.b2)
                .arg(&ni)
                .arg(&ki)
                .launch(grid(k))
                .map_err(&err)?;
            // dA1[n×hd] = dlogits[n×k] · W2ᵀ[k×hd]
            let g = RowMajorGemm {
                trans_a: false,
                trans_b: true,
                m: n,
                n: hd,
                k,
                beta: 0.0,
            };
            gemm(&self.blas, g, &self.dlogits, &self.params.w2, &mut self.da1)?;
            // dZ1 = dA1 where A1 > 0
            let len = (n * hd) as i32;
            s.launch_builder(&self.k.relu_backward)
                .arg(&mut self.da1)
                .arg(&self.a1)
                .arg(&len)
                .launch(grid(n * hd))
                .map_err(&err)?;
            // dW1[f×hd] += featᵀ[f×n] · dZ1[n×hd]
            let g = RowMajorGemm {
                trans_a: true,
                trans_b: false,
                m: f,
                n: hd,
                k: n,
                beta: 1.0,
            };
            gemm(&self.blas, g, &self.feat, &self.da1, &mut self.grads.w1)?;
            // db1[hd] += Σ_rows dZ1
            s.launch_builder(&self.k.bias_grad)
                .arg(&self.da1)
                .arg(&mut self.grads.b1)
                .arg(&ni)
                .arg(&hdi)
                .launch(grid(hd))
                .map_err(&err)?;
            Ok(())
        }

        /// Queues one SGD step with the accumulated gradients scaled by `scale` (and zeroes
        /// them).
        pub fn step(&mut self, lr: f32, scale: f32) -> Result<(), String> {
            let s = &self.stream;
            let (p, g, v) = (&mut self.params, &mut self.grads, &mut self.velocity);
            for (w, g, v) in [
                (&mut p.w1, &mut g.w1, &mut v.w1),
                (&mut p.b1, &mut g.b1, &mut v.b1),
                (&mut p.w2, &mut g.w2, &mut v.w2),
                (&mut p.b2, &mut g.b2, &mut v.b2),
            ] {
                let len = w.len();
                let leni = len as i32;
                // SAFETY: the three buffers hold `len` f32 each, on this stream.
                unsafe {
                    s.launch_builder(&self.k.sgd_momentum)
                        .arg(w)
                        .arg(g)
                        .arg(v)
                        .arg(&leni)
                        .arg(&lr)
                        .arg(&MOMENTUM)
                        .arg(&scale)
                        .launch(grid(len))
                }
                .map_err(driver("launching sgd_momentum"))?;
            }
            Ok(())
        }

        /// Zeroes the epoch's loss and accuracy sums.
        pub fn reset_stats(&mut self) -> Result<(), String> {
            self.stream
                .memset_zeros(&mut self.stats)
                .map_err(driver("zeroing the stats"))
        }

        /// Waits for the queued work and reads the epoch's `[loss sum, correct, images]`.
        pub fn read_stats(&self) -> Result<[f64; 3], String> {
            let v = self
                .stream
                .clone_dtoh(&self.stats)
                .map_err(driver("reading the stats"))?;
            self.stream
                .synchronize()
                .map_err(driver("waiting for the GPU"))?;
            Ok([v[0], v[1], v[2]])
        }

        /// The parameters, read back (waits for the queued work).
        #[cfg(test)]
        pub fn params(&self) -> Result<Params, String> {
            self.params.download(&self.stream)
        }
    }

    /// Samples `total - free` device memory and updates the peak.
    fn sample_memory(device: &Device, peak: &mut usize) -> Result<(usize, usize), String> {
        let (free, total) = device.memory().map_err(|e| e.to_string())?;
        let used = total.saturating_sub(free);
        *peak = (*peak).max(used);
        Ok((used, *peak))
    }

    /// Trains on GPU 0 from device batches; prints one line per epoch.
    pub fn run(args: &Args) -> Result<Vec<EpochLog>, String> {
        let device = Device::open(0).map_err(|e| e.message().to_string())?;
        require_nvrtc()?;
        require_cublas()?;
        let path = args.path.as_path();
        let with_path = |e: stoker::Error| at_path(path, e);
        let mut loader = loader_builder(args)?
            .allocator(Arc::new(PinnedAlloc::for_device(&device)))
            .build()
            .map_err(with_path)?;
        let dims = dims_of(args, &loader)?;
        let mut feeder = DeviceFeeder::new(&device, loader.spec(), args.batch_size, 2)
            .map_err(|e| e.to_string())?;
        // `feed` borrows the feeder for the whole epoch: keep our own handle on its stream.
        let stream = Arc::clone(feeder.consumer_stream());
        let mut model = GpuModel::new(
            Arc::clone(&stream),
            dims,
            &Params::init(&dims, args.seed),
            args.batch_size,
        )?;
        println!(
            "{} ({}), {} classes, {}x{} images, {} features, hidden {}",
            device.name().unwrap_or_else(|_| "GPU 0".into()),
            loader.allocator_name(),
            dims.classes,
            dims.width,
            dims.height,
            dims.features(),
            dims.hidden
        );
        let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let mut acc = Accumulation::new(args.accumulate);
        let mut peak = 0usize;
        let mut logs = Vec::with_capacity(args.epochs);
        for epoch in 0..args.epochs {
            let start = Instant::now();
            let mut wait = Duration::ZERO;
            // CUDA events around each batch's work (and the epoch end's flushed step, whose
            // time counts with the epoch's batches).
            let mut events: Vec<(CudaEvent, CudaEvent)> = Vec::new();
            let mut batches = 0;
            model.reset_stats()?;
            let mut it = feeder.feed(loader.epoch(epoch as u64));
            loop {
                let t = Instant::now();
                let next = it.next();
                wait += t.elapsed();
                let Some(batch) = next else { break };
                let batch = batch.map_err(with_path)?;
                let n = batch.len();
                checked_labels(Some(batch.host_labels()), n, dims.classes, path)?;
                let labels = batch
                    .labels_ptr()
                    .ok_or_else(|| format!("{}: the batch has no labels", path.display()))?;
                if batch.num_bytes() != n * dims.image_len() * 4 {
                    return Err(format!(
                        "device batch of {} bytes, expected {}",
                        batch.num_bytes(),
                        n * dims.image_len() * 4
                    ));
                }
                let t0 = stream.record_event(timing).map_err(driver("event"))?;
                // SAFETY: the batch's data and labels are ordered before the consumer stream
                // (the feeder made it wait for the copy) and the slot is not refilled before
                // the work queued here has run (dropping the batch records that).
                unsafe { model.train_batch(batch.data_ptr(), labels, n)? };
                if let Some(scale) = acc.after_batch() {
                    model.step(args.lr, scale)?;
                }
                let t1 = stream.record_event(timing).map_err(driver("event"))?;
                events.push((t0, t1));
                drop(batch);
                batches += 1;
                if epoch == 0 && batches == 1 {
                    stream
                        .synchronize()
                        .map_err(driver("waiting for the GPU"))?;
                    let (used, peak) = sample_memory(&device, &mut peak)?;
                    println!(
                        "first batch: gpu mem {:.1} MiB in use (peak {:.1} MiB)",
                        super::mib(used),
                        super::mib(peak)
                    );
                }
            }
            drop(it);
            if let Some(scale) = acc.flush() {
                let t0 = stream.record_event(timing).map_err(driver("event"))?;
                model.step(args.lr, scale)?;
                let t1 = stream.record_event(timing).map_err(driver("event"))?;
                events.push((t0, t1));
            }
            let stats = model.read_stats()?;
            let wall = start.elapsed();
            let mut step_ms = 0.0f64;
            for (t0, t1) in &events {
                step_ms += f64::from(t0.elapsed_ms(t1).map_err(driver("event timing"))?);
            }
            let images = stats[2] as usize;
            if images == 0 {
                return Err(format!("{}: the epoch had no images", path.display()));
            }
            let log = EpochLog {
                epoch,
                loss: stats[0] / stats[2],
                accuracy: stats[1] / stats[2],
                images,
                batches,
                wall,
                step: Duration::from_secs_f64(step_ms / 1e3),
                wait,
                memory: Some(sample_memory(&device, &mut peak)?),
            };
            print_epoch(&log, args.epochs);
            logs.push(log);
        }
        Ok(logs)
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Train(a)) => a,
        Err(e) => {
            eprintln!("train_gpu: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = if args.cpu {
        run_cpu(&args, true)
    } else {
        run_gpu(&args)
    };
    match result {
        Ok(logs) => {
            print_summary(&logs);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("train_gpu: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "cuda")]
fn run_gpu(args: &Args) -> Result<Vec<EpochLog>, String> {
    gpu::run(args)
}

#[cfg(not(feature = "cuda"))]
fn run_gpu(_args: &Args) -> Result<Vec<EpochLog>, String> {
    Err("built without the cuda feature: rebuild with --features cuda, or pass --cpu".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small random model and batch.
    fn tiny(seed: u64) -> (Dims, Params, Vec<f32>, Vec<i64>, usize) {
        let dims = Dims {
            channels: 3,
            height: 5,
            width: 6,
            pool: 2,
            hidden: 7,
            classes: 4,
        };
        let n = 6;
        let mut rng = SplitMix64(seed);
        let mut params = Params::init(&dims, seed);
        // Non-zero biases, so their gradients are checked away from the initial point too.
        params
            .b1
            .iter_mut()
            .for_each(|b| *b = 0.1 * rng.symmetric());
        params
            .b2
            .iter_mut()
            .for_each(|b| *b = 0.1 * rng.symmetric());
        let x = (0..n * dims.image_len())
            .map(|_| 2.0 * rng.symmetric())
            .collect();
        let labels = (0..n as i64).map(|i| i % dims.classes as i64).collect();
        (dims, params, x, labels, n)
    }

    /// The mean loss, and which hidden units are active (the ReLU's mask).
    fn loss_of(
        dims: Dims,
        params: &Params,
        x: &[f32],
        labels: &[i64],
        n: usize,
    ) -> (f64, Vec<bool>) {
        let mut m = CpuModel::new(dims, params.clone(), n);
        let loss = f64::from(m.forward(x, labels, n));
        (loss, m.a1.iter().map(|&a| a > 0.0).collect())
    }

    /// The analytic gradient of the mean loss against central finite differences, for every
    /// parameter.
    #[test]
    fn gradient_matches_finite_differences() {
        for seed in 1..=6 {
            let (dims, params, x, labels, n) = tiny(seed);
            let mut model = CpuModel::new(dims, params.clone(), n);
            let mut stats = [0.0; 3];
            model.train_batch(&x, &labels, n, &mut stats);
            let mut analytic = model.grads.clone();
            let (_, mask) = loss_of(dims, &params, &x, &labels, n);
            let eps = 1e-2f32;
            let (mut diff2, mut sum2, mut worst) = (0.0f64, 0.0f64, 0.0f64);
            let (mut checked, mut kinks) = (0usize, 0usize);
            let fields: [fn(&mut Params) -> &mut Vec<f32>; 4] =
                [|p| &mut p.w1, |p| &mut p.b1, |p| &mut p.w2, |p| &mut p.b2];
            for field in fields {
                let len = field(&mut params.clone()).len();
                for i in 0..len {
                    let mut plus = params.clone();
                    field(&mut plus)[i] += eps;
                    let mut minus = params.clone();
                    field(&mut minus)[i] -= eps;
                    let (lp, mp) = loss_of(dims, &plus, &x, &labels, n);
                    let (lm, mm) = loss_of(dims, &minus, &x, &labels, n);
                    if mp != mask || mm != mask {
                        // The step crosses a ReLU kink: the difference quotient is not the
                        // derivative there.
                        kinks += 1;
                        continue;
                    }
                    let numeric = (lp - lm) / (2.0 * f64::from(eps));
                    let a = f64::from(field(&mut analytic)[i]);
                    diff2 += (numeric - a).powi(2);
                    sum2 += (numeric + a).powi(2);
                    worst = worst.max((numeric - a).abs() / (numeric.abs() + a.abs()).max(1e-2));
                    checked += 1;
                }
            }
            let rel = diff2.sqrt() / sum2.sqrt();
            eprintln!(
                "seed {seed}: relative error {rel:.2e}, worst element {worst:.2e} \
                 ({checked} checked, {kinks} across a ReLU kink)"
            );
            assert!(kinks * 10 < checked, "seed {seed}: {kinks} kinks");
            assert!(rel < 1e-3, "seed {seed}: relative gradient error {rel}");
            assert!(worst < 2e-2, "seed {seed}: worst element error {worst}");
        }
    }

    /// A wrong gradient (here: the output bias gradient doubled) fails the same bound.
    #[test]
    fn gradient_check_catches_a_wrong_gradient() {
        let (dims, params, x, labels, n) = tiny(4);
        let mut model = CpuModel::new(dims, params.clone(), n);
        let mut stats = [0.0; 3];
        model.train_batch(&x, &labels, n, &mut stats);
        let eps = 1e-2f32;
        let (mut diff2, mut sum2) = (0.0f64, 0.0f64);
        for i in 0..dims.classes {
            let mut plus = params.clone();
            plus.b2[i] += eps;
            let mut minus = params.clone();
            minus.b2[i] -= eps;
            let numeric = (loss_of(dims, &plus, &x, &labels, n).0
                - loss_of(dims, &minus, &x, &labels, n).0)
                / (2.0 * f64::from(eps));
            let wrong = 2.0 * f64::from(model.grads.b2[i]);
            diff2 += (numeric - wrong).powi(2);
            sum2 += (numeric + wrong).powi(2);
        }
        assert!(diff2.sqrt() / sum2.sqrt() > 1e-3);
    }

    /// `--accumulate 2` over batches a, b takes the step of one batch a∪b (equal sizes).
    #[test]
    fn accumulation_matches_one_large_batch() {
        let (dims, params, x, labels, n) = tiny(5);
        let half = n / 2;
        let img = dims.image_len();
        let mut acc = Accumulation::new(2);
        let mut split = CpuModel::new(dims, params.clone(), half);
        let mut whole = CpuModel::new(dims, params.clone(), n);
        let mut stats = [0.0; 3];
        for _round in 0..3 {
            split.train_batch(&x[..half * img], &labels[..half], half, &mut stats);
            assert_eq!(acc.after_batch(), None);
            split.train_batch(&x[half * img..], &labels[half..], half, &mut stats);
            let scale = acc.after_batch().expect("a step after 2 batches");
            assert_eq!(scale, 0.5);
            split.step(0.1, scale);
            whole.train_batch(&x, &labels, n, &mut stats);
            whole.step(0.1, 1.0);
        }
        let (a, b) = (&split.params, &whole.params);
        for (u, v) in [
            (&a.w1, &b.w1),
            (&a.b1, &b.b1),
            (&a.w2, &b.w2),
            (&a.b2, &b.b2),
        ] {
            for (p, q) in u.iter().zip(v) {
                assert!((p - q).abs() <= 1e-5, "{p} vs {q}");
            }
        }
        assert_ne!(a, &params, "the steps changed the weights");
        assert_eq!(acc.flush(), None);
        assert_eq!(acc.after_batch(), None);
        assert_eq!(acc.flush(), Some(1.0));
    }

    /// A reference column-major sgemm, as BLAS defines it.
    #[allow(clippy::too_many_arguments)]
    fn blas_sgemm(call: BlasCall, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
        for i in 0..call.m {
            for j in 0..call.n {
                let mut acc = 0.0f32;
                for l in 0..call.k {
                    // op(A)[i, l], op(B)[l, j], column-major with leading dimensions.
                    let av = if call.trans_a {
                        a[i * call.lda + l]
                    } else {
                        a[l * call.lda + i]
                    };
                    let bv = if call.trans_b {
                        b[l * call.ldb + j]
                    } else {
                        b[j * call.ldb + l]
                    };
                    acc += av * bv;
                }
                let out = &mut c[j * call.ldc + i];
                *out = beta * *out + acc;
            }
        }
    }

    /// The column-major call of every row-major product computes it (the transpose trick of
    /// the cuBLAS calls).
    #[test]
    fn blas_call_matches_row_major_gemm() {
        let mut rng = SplitMix64(9);
        let (m, n, k) = (3, 5, 4);
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for beta in [0.0, 1.0] {
                    let g = RowMajorGemm {
                        trans_a,
                        trans_b,
                        m,
                        n,
                        k,
                        beta,
                    };
                    let a: Vec<f32> = (0..m * k).map(|_| rng.symmetric()).collect();
                    let b: Vec<f32> = (0..k * n).map(|_| rng.symmetric()).collect();
                    let c0: Vec<f32> = (0..m * n).map(|_| rng.symmetric()).collect();
                    // The plain definition, with explicit indices of the stored layouts.
                    let mut want = c0.clone();
                    for i in 0..m {
                        for j in 0..n {
                            let mut s = 0.0f32;
                            for l in 0..k {
                                let av = if trans_a { a[l * m + i] } else { a[i * k + l] };
                                let bv = if trans_b { b[j * k + l] } else { b[l * n + j] };
                                s += av * bv;
                            }
                            want[i * n + j] = beta * c0[i * n + j] + s;
                        }
                    }
                    let mut cpu = c0.clone();
                    gemm(g, &a, &b, &mut cpu);
                    let mut blas = c0.clone();
                    // cuBLAS's first operand is our B, its second our A.
                    blas_sgemm(g.blas_call(), &b, &a, beta, &mut blas);
                    for ((w, c), bl) in want.iter().zip(&cpu).zip(&blas) {
                        assert!((w - c).abs() < 1e-5, "{g:?}: cpu {c} vs {w}");
                        assert!((w - bl).abs() < 1e-5, "{g:?}: blas {bl} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn pool_averages_cells() {
        // One 1-channel 3x5 image, P = 2: rows [0,1) [1,3), cols [0,2) [2,5).
        let x: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let mut feat = vec![0.0; 4];
        pool(&x, &mut feat, 1, 1, 3, 5, 2);
        assert_eq!(feat, [0.5, 3.0, 8.0, 10.5]);
    }

    #[test]
    fn arguments() {
        let parse = |s: &str| parse_args(s.split_whitespace().map(String::from));
        assert_eq!(parse(""), Ok(Command::Train(Args::default())));
        let Ok(Command::Train(a)) =
            parse("data --epochs 3 --batch-size=4 --accumulate 2 --lr 0.1 --cpu --hidden 16")
        else {
            panic!("parse failed")
        };
        assert_eq!(
            (
                a.path.to_str(),
                a.epochs,
                a.batch_size,
                a.accumulate,
                a.lr,
                a.cpu,
                a.hidden
            ),
            (Some("data"), 3, 4, 2, 0.1, true, 16)
        );
        assert_eq!(parse("--help"), Ok(Command::Help));
        assert!(parse("--bogus 1").unwrap_err().contains("--bogus"));
        assert!(parse("--epochs").unwrap_err().contains("needs a value"));
        assert!(parse("--epochs x")
            .unwrap_err()
            .contains("not a valid number"));
        assert!(parse("--accumulate 0").is_err());
        assert!(parse("--lr -1").is_err());
        assert!(parse("a b").is_err());
    }

    #[test]
    fn missing_folder_is_an_error_naming_it() {
        let args = Args {
            path: PathBuf::from("/no/such/folder"),
            cpu: true,
            ..Args::default()
        };
        let e = run_cpu(&args, false).unwrap_err();
        assert!(e.contains("/no/such/folder"), "{e}");
    }

    /// Training on the fixture photos halves the loss.
    #[test]
    fn loss_goes_down_on_the_fixture() {
        let args = Args {
            path: Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/photos-256x144"),
            epochs: 15,
            batch_size: 8,
            workers: 2,
            cpu: true,
            ..Args::default()
        };
        let logs = run_cpu(&args, false).unwrap();
        let (first, last) = (logs[0].loss, logs[logs.len() - 1].loss);
        let curve: Vec<String> = logs.iter().map(|l| format!("{:.3}", l.loss)).collect();
        assert!(
            last < first / 2.0,
            "loss {first} -> {last}: {}",
            curve.join(" ")
        );
        assert!(logs.iter().all(|l| l.images == 32));
    }

    /// The kernel source compiles with NVRTC (no GPU needed); skipped without libnvrtc.
    #[cfg(feature = "cuda")]
    #[test]
    fn kernels_compile_with_nvrtc() {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { stoker::cuda::cudarc::nvrtc::sys::is_culib_present() } {
            // CI fetches libnvrtc and sets this, so there the test cannot skip.
            assert!(
                std::env::var_os("STOKER_REQUIRE_NVRTC").is_none(),
                "STOKER_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
            );
            eprintln!("skipped: libnvrtc.so not found");
            return;
        }
        let ptx = gpu::compile_kernels().unwrap().to_src();
        for name in KERNEL_NAMES {
            assert!(
                ptx.contains(&format!(".entry {name}(")),
                "no kernel {name} in the PTX"
            );
        }
    }

    /// On a machine with a GPU: one step on the GPU gives the CPU's weights.
    #[cfg(feature = "cuda")]
    #[test]
    fn gpu_step_matches_cpu() {
        use std::sync::Arc;
        let device = match stoker::cuda::Device::open(0) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        if gpu::require_nvrtc().is_err() || gpu::require_cublas().is_err() {
            eprintln!("skipped: NVRTC or cuBLAS missing");
            return;
        }
        let (dims, params, x, labels, n) = tiny(6);
        let mut cpu = CpuModel::new(dims, params.clone(), n);
        let mut stats = [0.0; 3];
        let stream = device.context().new_stream().unwrap();
        let mut model = gpu::GpuModel::new(Arc::clone(&stream), dims, &params, n).unwrap();
        let dx = stream.clone_htod(&x).unwrap();
        let dy = stream.clone_htod(&labels).unwrap();
        use stoker::cuda::cudarc::driver::DevicePtr;
        let (xp, _rx) = dx.device_ptr(&stream);
        let (yp, _ry) = dy.device_ptr(&stream);
        for _ in 0..2 {
            cpu.train_batch(&x, &labels, n, &mut stats);
            cpu.step(0.1, 1.0);
            // SAFETY: `dx`, `dy` hold `n` images and labels on this stream and outlive it.
            unsafe { model.train_batch(xp, yp, n).unwrap() };
            model.step(0.1, 1.0).unwrap();
        }
        let got = model.params().unwrap();
        let gpu_stats = model.read_stats().unwrap();
        assert!((gpu_stats[0] - stats[0]).abs() < 1e-4 * stats[0].abs().max(1.0));
        assert_eq!(gpu_stats[1..], stats[1..]);
        let want = &cpu.params;
        for (u, v) in [
            (&got.w1, &want.w1),
            (&got.b1, &want.b1),
            (&got.w2, &want.w2),
            (&got.b2, &want.b2),
        ] {
            for (p, q) in u.iter().zip(v) {
                assert!((p - q).abs() <= 1e-4 * q.abs().max(1.0), "{p} vs {q}");
            }
        }
    }
}
