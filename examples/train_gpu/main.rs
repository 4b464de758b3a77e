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
//! `--flag value` and `--flag=value` both work; `--help` lists the flags with their defaults.
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
//!
//! # The code
//! - `args.rs`: the command line (clap);
//! - `model.rs`: the shapes, the parameters, the row-major GEMM ↔ cuBLAS mapping, and the host
//!   reference maths (one function per kernel);
//! - `cpu.rs`: the CPU trainer; `gpu.rs` (`cuda` feature): the GPU trainer, with the kernels
//!   of `kernels.cu`;
//! - `train.rs`: what both training loops share (the loader, batch checks, accumulation);
//! - `report.rs`: the log lines.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

mod args;
mod cpu;
#[cfg(feature = "cuda")]
mod gpu;
mod model;
mod report;
mod train;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Args;
use crate::report::{EpochLog, summary_line};

fn main() -> ExitCode {
    // A bad flag exits with code 2, `--help` with 0.
    let args = Args::parse();
    let result = if args.cpu {
        cpu::run(&args, true)
    } else {
        run_gpu(&args)
    };
    match result {
        Ok(logs) => {
            if let Some(line) = summary_line(&logs) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("train_gpu: {e}");
            ExitCode::from(1)
        }
    }
}

/// Trains on the GPU.
#[cfg(feature = "cuda")]
fn run_gpu(args: &Args) -> Result<Vec<EpochLog>, String> {
    gpu::run(args)
}

/// Without the cuda feature only `--cpu` trains.
#[cfg(not(feature = "cuda"))]
fn run_gpu(_args: &Args) -> Result<Vec<EpochLog>, String> {
    Err("built without the cuda feature: rebuild with --features cuda, or pass --cpu".into())
}
