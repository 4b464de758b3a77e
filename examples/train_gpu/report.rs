//! The log: one line per epoch, and a summary line.

use std::time::Duration;

/// What one epoch did.
#[derive(Clone, Debug)]
pub struct EpochLog {
    /// Epoch index, from 0.
    pub epoch: usize,
    /// Mean training cross-entropy over the epoch's images.
    pub loss: f64,
    /// Share of the images whose largest logit was the right class.
    pub accuracy: f64,
    /// Images trained on.
    pub images: usize,
    /// Batches trained on.
    pub batches: usize,
    /// Wall time of the epoch.
    pub wall: Duration,
    /// Summed time of the batches' work.
    pub step: Duration,
    /// Host time inside the iterator's `next()`.
    pub wait: Duration,
    /// GPU memory in use after the epoch, and the peak so far (bytes).
    pub memory: Option<(usize, usize)>,
}

/// Bytes in MiB.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Prints the line of one epoch of `epochs`.
pub fn print_epoch(e: &EpochLog, epochs: usize) {
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

/// Prints the first and the last epoch's loss and accuracy.
pub fn print_summary(logs: &[EpochLog]) {
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
