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

impl EpochLog {
    /// The log of epoch `epoch` from its `[loss sum, correct, images]` sums, with no GPU memory
    /// sample; `None` when the epoch had no images.
    pub fn from_stats(
        epoch: usize,
        stats: [f64; 3],
        batches: usize,
        wall: Duration,
        step: Duration,
        wait: Duration,
    ) -> Option<EpochLog> {
        let images = stats[2] as usize;
        (images > 0).then(|| EpochLog {
            epoch,
            loss: stats[0] / stats[2],
            accuracy: stats[1] / stats[2],
            images,
            batches,
            wall,
            step,
            wait,
            memory: None,
        })
    }
}

/// Bytes in MiB.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The line of one epoch of `epochs`.
pub fn epoch_line(e: &EpochLog, epochs: usize) -> String {
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
    line
}

/// The last line: the first and the last epoch's loss and accuracy (`None` without epochs).
pub fn summary_line(logs: &[EpochLog]) -> Option<String> {
    let (first, last) = (logs.first()?, logs.last()?);
    Some(format!(
        "loss {:.4} (epoch 1) -> {:.4} (epoch {}); accuracy {:.1}% -> {:.1}%",
        first.loss,
        last.loss,
        last.epoch + 1,
        100.0 * first.accuracy,
        100.0 * last.accuracy
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(epoch: usize, loss: f64, accuracy: f64) -> EpochLog {
        EpochLog::from_stats(
            epoch,
            [loss * 32.0, accuracy * 32.0, 32.0],
            4,
            Duration::from_millis(50),
            Duration::from_millis(8),
            Duration::from_millis(10),
        )
        .expect("32 images")
    }

    #[test]
    fn epoch_and_summary_lines() {
        let mut e = log(0, 2.128_3, 0.218_75);
        assert_eq!(
            epoch_line(&e, 3),
            "epoch   1/3  loss 2.1283  acc  21.9%     640.0 img/s  step   2.000 ms  \
             input wait     10.0 ms (20.0%)"
        );
        e.memory = Some((3 << 20, 5 << 20));
        assert!(epoch_line(&e, 3).ends_with("  gpu mem 3.0 MiB (peak 5.0 MiB)"));
        let last = log(2, 0.427_1, 0.812_5);
        assert_eq!(
            summary_line(&[e, last]).as_deref(),
            Some("loss 2.1283 (epoch 1) -> 0.4271 (epoch 3); accuracy 21.9% -> 81.2%")
        );
        assert_eq!(summary_line(&[]), None);
    }

    #[test]
    fn an_epoch_without_images_has_no_log() {
        let z = Duration::ZERO;
        assert!(EpochLog::from_stats(0, [0.0; 3], 0, z, z, z).is_none());
    }
}
