//! Trains a small CNN with candle, fed by stoker.
//!
//! The same model as `train_burn` (conv3×3 + ReLU + max-pool, three times; global average
//! pool; linear), built with candle-nn, learns the classes of an image folder from batches
//! that stoker decodes, augments with `Augment::keras_default()` and normalises; each batch
//! becomes candle tensors through `.candle(&device)` on the epoch. One line per epoch: loss,
//! accuracy, images/s, and the share of the time the step waited for input.
//!
//! ```sh
//! cargo run --release --features candle --example train_candle -- --epochs 3
//! ```
//!
//! On a GPU: `cargo run --release --features candle-cuda --example train_candle` (candle's
//! CUDA backend compiles its kernels with nvcc at build time: a CUDA toolkit, or
//! `tools/fetch-cuda-toolkit.sh`, must be there). The example then picks
//! `Device::cuda_if_available(0)`; stoker uploads page-locked batches on its own stream with a
//! `DeviceFeeder` ordered on candle's stream, and each batch becomes candle tensors with one
//! device-to-device copy (`DeviceBatch::to_candle`).

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Optimizer, VarBuilder, VarMap};
use clap::Parser;
use stoker::candle::CandleBatches;
use stoker::rng::SampleRng;
use stoker::source::ImageFolder;
use stoker::{Augment, Loader, Normalize};

/// Train a small CNN with candle on an image folder, fed by stoker.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// Epochs to train.
    #[arg(long, default_value_t = 3)]
    epochs: u64,
    /// Image folder (`<class>/<image>.jpg`).
    #[arg(long, default_value = "fixtures/photos-256x144")]
    data: PathBuf,
    /// Samples per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Loader worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seed of the shuffle, the augmentation and the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Training size (width height).
    #[arg(long, num_args = 2, value_names = ["W", "H"], default_values_t = [128, 72])]
    size: Vec<usize>,
    /// Train on the CPU even when a CUDA device is there.
    #[arg(long)]
    cpu: bool,
}

/// conv3×3 + ReLU + max-pool ×3 → global average pool → linear.
struct Cnn {
    convs: [Conv2d; 3],
    head: Linear,
}

impl Cnn {
    fn new(classes: usize, vb: VarBuilder) -> candle_core::Result<Cnn> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Cnn {
            convs: [
                candle_nn::conv2d(3, 16, 3, cfg, vb.pp("conv1"))?,
                candle_nn::conv2d(16, 32, 3, cfg, vb.pp("conv2"))?,
                candle_nn::conv2d(32, 64, 3, cfg, vb.pp("conv3"))?,
            ],
            head: candle_nn::linear(64, classes, vb.pp("head"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for conv in &self.convs {
            x = conv.forward(&x)?.relu()?.max_pool2d(2)?;
        }
        // Global average pool over H and W: [n, 64, h, w] → [n, 64].
        self.head.forward(&x.mean(D::Minus1)?.mean(D::Minus1)?)
    }
}

/// Gives every weight a seeded start (candle's CPU random numbers cannot be seeded): He-normal
/// for weights (fan-in from the shape), zero for biases. The same seed, the same model.
fn seed_weights(varmap: &VarMap, seed: u64) -> candle_core::Result<()> {
    let vars = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort(); // HashMap order is not stable: draw in name order
    let mut rng = SampleRng::new(seed);
    for name in names {
        let var = &vars[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if name.ends_with("bias") {
            vec![0.0; n]
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let std = (2.0 / fan_in as f64).sqrt();
            (0..n)
                .map(|_| {
                    // Box–Muller from two uniforms in (0, 1].
                    let (u, v) = (1.0 - rng.next_f64(), rng.next_f64());
                    (std * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
                })
                .collect()
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

/// What one epoch did.
#[derive(Debug, Clone)]
struct EpochReport {
    epoch: u64,
    loss: f64,
    accuracy: f64,
    images_per_s: f64,
    /// Time blocked waiting for the next batch ÷ epoch time.
    wait_share: f64,
}

fn device(args: &Args) -> Result<Device, Box<dyn Error>> {
    Ok(if args.cpu {
        Device::Cpu
    } else {
        Device::cuda_if_available(0)?
    })
}

fn train(
    args: &Args,
    mut each: impl FnMut(&EpochReport),
) -> Result<Vec<EpochReport>, Box<dyn Error>> {
    let device = device(args)?;
    let source = ImageFolder::open(&args.data)?;
    let classes = source.classes().len();
    let builder = Loader::builder(source)
        .batch_size(args.batch_size)
        .shuffle(true)
        .seed(args.seed)
        .num_workers(args.workers)
        .size(args.size[0], args.size[1])
        .normalize(Normalize::imagenet())
        .transform(Arc::new(Augment::keras_default()));
    #[cfg(feature = "cuda")]
    let builder = match (device.is_cuda(), stoker::cuda::PinnedAlloc::new(0)) {
        (true, Ok(pinned)) => builder.allocator(Arc::new(pinned)),
        _ => builder, // on the CPU, or no driver: plain memory
    };
    let mut loader = builder.build()?;
    #[cfg(feature = "candle-cuda")]
    let mut feeder = match device.is_cuda() {
        true => Some(stoker::cuda::DeviceFeeder::for_candle(
            &device,
            loader.spec(),
            args.batch_size,
            2,
        )?),
        false => None,
    };

    let varmap = VarMap::new();
    let model = Cnn::new(
        classes,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    seed_weights(&varmap, args.seed)?;
    let mut optim = candle_nn::AdamW::new_lr(varmap.all_vars(), args.lr)?;

    let mut reports = Vec::new();
    for epoch in 0..args.epochs {
        let start = Instant::now();
        let mut waited = Duration::ZERO;
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        let mut step = |images: Tensor, targets: Tensor| -> candle_core::Result<()> {
            let n = targets.dims()[0];
            let logits = model.forward(&images)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
            optim.backward_step(&loss)?;
            let predicted = logits.argmax(1)?.to_dtype(DType::I64)?;
            correct += predicted
                .eq(&targets)?
                .to_dtype(DType::U32)?
                .sum_all()?
                .to_scalar::<u32>()? as usize;
            loss_sum += loss.to_scalar::<f32>()? as f64 * n as f64;
            seen += n;
            Ok(())
        };
        #[cfg(feature = "candle-cuda")]
        if let Some(feeder) = feeder.as_mut() {
            // Uploaded by stoker on its own stream, copied on the device into candle tensors.
            let mut batches = feeder.feed(loader.epoch(epoch));
            loop {
                let t = Instant::now();
                let Some(batch) = batches.next() else { break };
                waited += t.elapsed();
                let (images, targets) = batch?.to_candle(&device)?;
                step(images, targets.expect("an image folder has labels"))?;
            }
        }
        #[cfg(feature = "candle-cuda")]
        let host = feeder.is_none();
        #[cfg(not(feature = "candle-cuda"))]
        let host = true;
        if host {
            let mut batches = loader.epoch(epoch).candle(&device);
            loop {
                let t = Instant::now();
                let Some(batch) = batches.next() else { break };
                waited += t.elapsed();
                let batch = batch?;
                step(
                    batch.images,
                    batch.targets.expect("an image folder has labels"),
                )?;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let report = EpochReport {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            images_per_s: seen as f64 / elapsed,
            wait_share: waited.as_secs_f64() / elapsed,
        };
        each(&report);
        reports.push(report);
    }
    Ok(reports)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    println!(
        "candle on {:?}, data {}",
        device(&args)?,
        args.data.display()
    );
    train(&args, |r| {
        println!(
            "epoch {}  loss {:.4}  accuracy {:.3}  {:.0} images/s  waited {:.1}% of the time",
            r.epoch,
            r.loss,
            r.accuracy,
            r.images_per_s,
            100.0 * r.wait_share
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_falls_within_three_epochs() {
        let args = Args::parse_from(["train_candle", "--epochs", "3", "--cpu"]);
        let reports = train(&args, |_| {}).unwrap();
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|r| r.loss.is_finite()));
        assert!(
            reports[2].loss < reports[0].loss,
            "loss did not fall: {reports:?}"
        );
    }

    #[test]
    fn the_same_seed_trains_the_same_model() {
        let args = Args::parse_from(["train_candle", "--epochs", "1", "--cpu"]);
        let a = train(&args, |_| {}).unwrap();
        let b = train(&args, |_| {}).unwrap();
        assert_eq!(a[0].loss, b[0].loss);
    }
}
