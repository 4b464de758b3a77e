//! The model: its shapes, its parameters and their initialisation, the row-major GEMM and the
//! column-major cuBLAS call that computes it, and the host reference maths: one function per
//! GPU kernel of kernels.cu (same names, same arithmetic order).

/// Momentum of the SGD optimiser.
pub const MOMENTUM: f32 = 0.9;

// ---------------------------------------------------------------------------------------------
// The model's shapes and parameters
// ---------------------------------------------------------------------------------------------

/// Shapes of the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dims {
    /// Image channels (C).
    pub channels: usize,
    /// Image height (H).
    pub height: usize,
    /// Image width (W).
    pub width: usize,
    /// Pooled cells per side (P).
    pub pool: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Classes (k).
    pub classes: usize,
}

impl Dims {
    /// Features per image after pooling: `C·P·P`.
    pub fn features(&self) -> usize {
        self.channels * self.pool * self.pool
    }

    /// f32 values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Fails unless every pooled cell has a pixel and there are at least 2 classes.
    pub fn check(&self) -> Result<(), String> {
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
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        stoker::rng::mix64(self.0)
    }

    /// Uniform in `[-1, 1)`.
    pub fn symmetric(&mut self) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * unit - 1.0
    }
}

/// The parameters (also used for their gradients and momentum buffers), row-major:
/// `w1` is `F × hidden`, `w2` is `hidden × classes`. `T` is a host `Vec<f32>` or, on the GPU
/// path, a device buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T = Vec<f32>> {
    /// First layer's weights, `F × hidden`.
    pub w1: T,
    /// First layer's bias, `hidden`.
    pub b1: T,
    /// Second layer's weights, `hidden × classes`.
    pub w2: T,
    /// Second layer's bias, `classes`.
    pub b2: T,
}

impl<T> Params<T> {
    /// The four tensors, in the order `w1, b1, w2, b2`.
    #[cfg(test)]
    pub fn fields(&self) -> [&T; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// The four tensors, mutably, in the order `w1, b1, w2, b2`.
    pub fn fields_mut(&mut self) -> [&mut T; 4] {
        [&mut self.w1, &mut self.b1, &mut self.w2, &mut self.b2]
    }

    /// Each tensor through `f` (an upload or download on the GPU path).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<Params<U>, E> {
        Ok(Params {
            w1: f(&self.w1)?,
            b1: f(&self.b1)?,
            w2: f(&self.w2)?,
            b2: f(&self.b2)?,
        })
    }
}

impl Params {
    /// All zeros, shaped for `d`.
    pub fn zeros(d: &Dims) -> Params {
        Params {
            w1: vec![0.0; d.features() * d.hidden],
            b1: vec![0.0; d.hidden],
            w2: vec![0.0; d.hidden * d.classes],
            b2: vec![0.0; d.classes],
        }
    }

    /// He-uniform weights (`U(-√(6/fan_in), √(6/fan_in))`) from `seed`, zero biases.
    pub fn init(d: &Dims, seed: u64) -> Params {
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
pub struct RowMajorGemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub beta: f32,
}

/// A column-major BLAS `sgemm` call: `C'[m×n] = op(A')[m×k] · op(B')[k×n] + beta·C'`, where
/// `A'` is the row-major call's **B** buffer and `B'` its **A** buffer.
// Used by the GPU path (and the tests) only.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlasCall {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
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
    pub fn blas_call(&self) -> BlasCall {
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

/// The five products of one training step on a batch of `n`, the same on both paths.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemms {
    /// `Z1[n×hd] = feat[n×F] · W1[F×hd]`.
    pub hidden: RowMajorGemm,
    /// `logits[n×k] = A1[n×hd] · W2[hd×k]` (b2 is added inside `softmax_xent`).
    pub logits: RowMajorGemm,
    /// `dW2[hd×k] += A1ᵀ[hd×n] · dlogits[n×k]`.
    pub dw2: RowMajorGemm,
    /// `dA1[n×hd] = dlogits[n×k] · W2ᵀ[k×hd]`.
    pub da1: RowMajorGemm,
    /// `dW1[F×hd] += featᵀ[F×n] · dZ1[n×hd]`.
    pub dw1: RowMajorGemm,
}

impl Dims {
    /// The GEMMs of a training step on `n` images.
    pub fn gemms(&self, n: usize) -> Gemms {
        let (f, hd, k) = (self.features(), self.hidden, self.classes);
        let g = |trans_a, trans_b, m, n, k, beta| RowMajorGemm {
            trans_a,
            trans_b,
            m,
            n,
            k,
            beta,
        };
        Gemms {
            hidden: g(false, false, n, hd, f, 0.0),
            logits: g(false, false, n, k, hd, 0.0),
            dw2: g(true, false, hd, k, n, 1.0),
            da1: g(false, true, n, hd, k, 0.0),
            dw1: g(true, false, f, hd, n, 1.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The host reference maths: one function per GPU kernel (same names, same arithmetic order)
// ---------------------------------------------------------------------------------------------

/// Kernel `pool`: `feat[s, c·P·P + i·P + j]` = mean of cell `(i, j)` of channel `c` of image
/// `s` (x is NCHW).
pub fn pool(x: &[f32], feat: &mut [f32], n: usize, c: usize, h: usize, w: usize, p: usize) {
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
pub fn gemm(g: RowMajorGemm, a: &[f32], b: &[f32], c: &mut [f32]) {
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
pub fn bias_relu(z: &mut [f32], b: &[f32], n: usize, cols: usize) {
    for (idx, v) in z[..n * cols].iter_mut().enumerate() {
        let t = *v + b[idx % cols];
        *v = if t > 0.0 { t } else { 0.0 };
    }
}

/// Kernel `softmax_xent`, per sample `s`: `l = logits[s] + b2`; `loss[s] = logsumexp(l) - l[y]`;
/// `correct[s] = 1` when the first largest logit is `y`; `dlogits[s] = (softmax(l) - onehot(y)) / n`
/// (the gradient of the batch's mean loss).
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent(
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
pub fn batch_stats(loss: &[f32], correct: &[f32], n: usize, stats: &mut [f64; 3]) {
    for s in 0..n {
        stats[0] += f64::from(loss[s]);
        stats[1] += f64::from(correct[s]);
        stats[2] += 1.0;
    }
}

/// Kernel `relu_backward`: `da[i] = 0` where the ReLU's output `a[i]` is 0.
pub fn relu_backward(da: &mut [f32], a: &[f32], len: usize) {
    for (d, &v) in da[..len].iter_mut().zip(&a[..len]) {
        if v <= 0.0 {
            *d = 0.0;
        }
    }
}

/// Kernel `bias_grad`: `db[j] += Σ_r dz[r, j]` over `n` rows (accumulates).
pub fn bias_grad(dz: &[f32], db: &mut [f32], n: usize, cols: usize) {
    for (j, out) in db[..cols].iter_mut().enumerate() {
        let mut sum = 0.0f32;
        for r in 0..n {
            sum += dz[r * cols + j];
        }
        *out += sum;
    }
}

/// Kernel `sgd_momentum`: `v = momentum·v + scale·g; w -= lr·v; g = 0`.
pub fn sgd_momentum(
    w: &mut [f32],
    g: &mut [f32],
    v: &mut [f32],
    lr: f32,
    momentum: f32,
    scale: f32,
) {
    for ((w, g), v) in w.iter_mut().zip(g.iter_mut()).zip(v.iter_mut()) {
        *v = momentum * *v + scale * *g;
        *w -= lr * *v;
        *g = 0.0;
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A small random model and batch.
    pub fn tiny(seed: u64) -> (Dims, Params, Vec<f32>, Vec<i64>, usize) {
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

    /// Every product of a step has the operand shapes of the buffers it is run on.
    #[test]
    fn gemms_fit_the_buffers() {
        let (dims, params, _, _, n) = tiny(1);
        let (f, hd, k) = (dims.features(), dims.hidden, dims.classes);
        let g = dims.gemms(n);
        // (product, elements of A, of B, of C)
        for (g, a, b, c) in [
            (g.hidden, n * f, params.w1.len(), n * hd),
            (g.logits, n * hd, params.w2.len(), n * k),
            (g.dw2, n * hd, n * k, params.w2.len()),
            (g.da1, n * k, params.w2.len(), n * hd),
            (g.dw1, n * f, n * hd, params.w1.len()),
        ] {
            assert_eq!((g.m * g.k, g.k * g.n, g.m * g.n), (a, b, c), "{g:?}");
        }
        // Forward products overwrite, weight gradients accumulate.
        assert_eq!(g.hidden.beta, 0.0);
        assert_eq!(g.dw1.beta, 1.0);
        assert_eq!(g.dw2.beta, 1.0);
    }

    #[test]
    fn pool_averages_cells() {
        // One 1-channel 3x5 image, P = 2: rows [0,1) [1,3), cols [0,2) [2,5).
        let x: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let mut feat = vec![0.0; 4];
        pool(&x, &mut feat, 1, 1, 3, 5, 2);
        assert_eq!(feat, [0.5, 3.0, 8.0, 10.5]);
    }
}
