//! Trains a small CNN with burn, fed by stoker.
//!
//! The model (conv3×3 + ReLU + max-pool, three times; global average pool; linear) learns the
//! classes of an image folder from batches that stoker decodes, augments with
//! `Augment::keras_default()` and normalises; burn takes them through [`BurnLoader`], its own
//! `DataLoader` trait, with no copy of the images. One line per epoch: loss, accuracy,
//! images/s, and the share of the time the step waited for input.
//!
//! ```sh
//! cargo run --release --features burn --example train_burn -- --epochs 3
//! # on a GPU (burn's CUDA backend; stoker's cuda feature pins the batch memory):
//! cargo run --release --features burn,burn/cuda,cuda --example train_burn -- --epochs 3
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use clap::Parser;
use stoker::burn::BurnLoader;
use stoker::source::ImageFolder;
use stoker::{Augment, Loader, Normalize};

/// Train a small CNN with burn on an image folder, fed by stoker.
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
    /// Adam's learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Training size (width height).
    #[arg(long, num_args = 2, value_names = ["W", "H"], default_values_t = [128, 72])]
    size: Vec<usize>,
}

/// conv3×3 + ReLU + max-pool ×3 → global average pool → linear.
#[derive(Module, Debug)]
struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    pool: MaxPool2d,
    gap: AdaptiveAvgPool2d,
    head: Linear,
    relu: Relu,
}

impl Cnn {
    fn new(classes: usize, device: &Device) -> Cnn {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        Cnn {
            conv1: conv(3, 16),
            conv2: conv(16, 32),
            conv3: conv(32, 64),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: LinearConfig::new(64, classes).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(self.relu.forward(self.conv1.forward(x)));
        let x = self.pool.forward(self.relu.forward(self.conv2.forward(x)));
        let x = self.pool.forward(self.relu.forward(self.conv3.forward(x)));
        let [n, c, _, _] = x.dims();
        self.head.forward(self.gap.forward(x).reshape([n, c]))
    }
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

fn train(
    args: &Args,
    mut each: impl FnMut(&EpochReport),
) -> Result<Vec<EpochReport>, Box<dyn Error>> {
    let device = Device::default().autodiff();
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
    let builder = match stoker::cuda::PinnedAlloc::new(0) {
        Ok(pinned) => builder.allocator(Arc::new(pinned)),
        Err(_) => builder, // no driver: plain memory
    };
    let loader: Arc<dyn DataLoader<_>> = Arc::new(BurnLoader::new(builder, &device)?);

    device.seed(args.seed);
    let mut model = Cnn::new(classes, &device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let mut reports = Vec::new();
    for epoch in 0..args.epochs {
        let start = Instant::now();
        let mut waited = Duration::ZERO;
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        let mut batches = loader.iter();
        loop {
            let t = Instant::now();
            let Some(batch) = batches.next() else { break };
            waited += t.elapsed();
            let batch = batch?;
            let n = batch.targets.dims()[0];
            let logits = model.forward(batch.images);
            let loss = loss_fn.forward(logits.clone(), batch.targets.clone());
            let predicted = logits.argmax(1).reshape([n]);
            correct += predicted
                .equal(batch.targets)
                .int()
                .sum()
                .into_scalar::<i64>() as usize;
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * n as f64;
            seen += n;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(args.lr, model, grads);
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
        "burn on {:?}, data {}",
        Device::default(),
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
        let args = Args::parse_from(["train_burn", "--epochs", "3"]);
        let reports = train(&args, |_| {}).unwrap();
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|r| r.loss.is_finite()));
        assert!(
            reports[2].loss < reports[0].loss,
            "loss did not fall: {reports:?}"
        );
    }
}
