//! The CPU trainer: the model's forward and backward passes and the training loop, on the host
//! batches with plain Rust loops (works without the `cuda` feature).

use std::time::{Duration, Instant};

use crate::args::Args;
use crate::model::{
    Dims, MOMENTUM, Params, batch_stats, bias_grad, bias_relu, gemm, pool, relu_backward,
    sgd_momentum, softmax_xent,
};
use crate::report::{EpochLog, epoch_line};
use crate::train::{
    Accumulation, at_path, checked_labels, dims_of, loader_builder, no_images, timed_next,
};

/// The MLP on the host, with its gradients, momentum and scratch buffers.
pub struct CpuModel {
    dims: Dims,
    pub params: Params,
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
    /// The model with weights `params`, zero gradients and momentum, and buffers for batches
    /// of up to `batch_size`.
    pub fn new(dims: Dims, params: Params, batch_size: usize) -> CpuModel {
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
    pub fn forward(&mut self, x: &[f32], labels: &[i64], n: usize) -> f32 {
        let d = self.dims;
        let g = d.gemms(n);
        pool(x, &mut self.feat, n, d.channels, d.height, d.width, d.pool);
        gemm(g.hidden, &self.feat, &self.params.w1, &mut self.a1);
        bias_relu(&mut self.a1, &self.params.b1, n, d.hidden);
        gemm(g.logits, &self.a1, &self.params.w2, &mut self.logits);
        softmax_xent(
            &self.logits,
            &self.params.b2,
            labels,
            n,
            d.classes,
            &mut self.dlogits,
            &mut self.loss,
            &mut self.correct,
        );
        self.loss[..n].iter().sum::<f32>() / n as f32
    }

    /// Backward pass after [`CpuModel::forward`]: adds the batch's gradients to `grads`.
    pub fn backward(&mut self, n: usize) {
        let d = self.dims;
        let g = d.gemms(n);
        gemm(g.dw2, &self.a1, &self.dlogits, &mut self.grads.w2);
        bias_grad(&self.dlogits, &mut self.grads.b2, n, d.classes);
        gemm(g.da1, &self.dlogits, &self.params.w2, &mut self.da1);
        // dZ1 = dA1 where A1 > 0
        relu_backward(&mut self.da1, &self.a1, n * d.hidden);
        gemm(g.dw1, &self.feat, &self.da1, &mut self.grads.w1);
        bias_grad(&self.da1, &mut self.grads.b1, n, d.hidden);
    }

    /// Forward and backward of one batch; adds its loss sum, correct count and size to `stats`.
    pub fn train_batch(&mut self, x: &[f32], labels: &[i64], n: usize, stats: &mut [f64; 3]) {
        self.forward(x, labels, n);
        batch_stats(&self.loss, &self.correct, n, stats);
        self.backward(n);
    }

    /// One SGD step with the accumulated gradients scaled by `scale`; zeroes the gradients.
    pub fn step(&mut self, lr: f32, scale: f32) {
        let fields = self.params.fields_mut().into_iter();
        let fields = fields
            .zip(self.grads.fields_mut())
            .zip(self.velocity.fields_mut());
        for ((w, g), v) in fields {
            sgd_momentum(w, g, v, lr, MOMENTUM, scale);
        }
    }
}

/// Trains on the host; prints one line per epoch when `verbose`.
pub fn run(args: &Args, verbose: bool) -> Result<Vec<EpochLog>, String> {
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
            let Some(batch) = timed_next(&mut it, &mut wait) else {
                break;
            };
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
        let log = EpochLog::from_stats(epoch, stats, batches, start.elapsed(), step, wait)
            .ok_or_else(|| no_images(path))?;
        if verbose {
            println!("{}", epoch_line(&log, args.epochs));
        }
        logs.push(log);
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::model::tests::tiny;
    use crate::train::Accumulation;

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
            let analytic = &model.grads;
            let (_, mask) = loss_of(dims, &params, &x, &labels, n);
            let eps = 1e-2f32;
            let (mut diff2, mut sum2, mut worst) = (0.0f64, 0.0f64, 0.0f64);
            let (mut checked, mut kinks) = (0usize, 0usize);
            for t in 0..4 {
                for i in 0..params.fields()[t].len() {
                    let mut plus = params.clone();
                    plus.fields_mut()[t][i] += eps;
                    let mut minus = params.clone();
                    minus.fields_mut()[t][i] -= eps;
                    let (lp, mp) = loss_of(dims, &plus, &x, &labels, n);
                    let (lm, mm) = loss_of(dims, &minus, &x, &labels, n);
                    if mp != mask || mm != mask {
                        // The step crosses a ReLU kink: the difference quotient is not the
                        // derivative there.
                        kinks += 1;
                        continue;
                    }
                    let numeric = (lp - lm) / (2.0 * f64::from(eps));
                    let a = f64::from(analytic.fields()[t][i]);
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
        for (u, v) in a.fields().into_iter().zip(b.fields()) {
            for (p, q) in u.iter().zip(v) {
                assert!((p - q).abs() <= 1e-5, "{p} vs {q}");
            }
        }
        assert_ne!(a, &params, "the steps changed the weights");
        assert_eq!(acc.flush(), None);
        assert_eq!(acc.after_batch(), None);
        assert_eq!(acc.flush(), Some(1.0));
    }

    #[test]
    fn missing_folder_is_an_error_naming_it() {
        let args = Args {
            path: PathBuf::from("/no/such/folder"),
            cpu: true,
            ..Args::default()
        };
        let e = run(&args, false).unwrap_err();
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
        let logs = run(&args, false).unwrap();
        let (first, last) = (logs[0].loss, logs[logs.len() - 1].loss);
        let curve: Vec<String> = logs.iter().map(|l| format!("{:.3}", l.loss)).collect();
        assert!(
            last < first / 2.0,
            "loss {first} -> {last}: {}",
            curve.join(" ")
        );
        assert!(logs.iter().all(|l| l.images == 32));
    }
}
