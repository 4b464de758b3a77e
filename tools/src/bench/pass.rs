//! One timed pass of the loader over some epochs, with an optional simulated GPU step.

use std::time::{Duration, Instant};

use stoker::digest::Digest;

use super::BenchLoader;

/// Spin for at most this long at the end of a simulated step (sleep before that).
const SPIN: Duration = Duration::from_micros(200);

/// Simulates a GPU step of `d`: sleeps until 0.2 ms before the deadline, then spins (yielding)
/// to it. The thread is mostly asleep, as a host thread is while the GPU works, so the
/// simulated step leaves the cores to the loader's workers; the spin makes it precise to a few
/// microseconds, where a plain sleep overshoots by 50-100 µs.
pub fn simulate_step(d: Duration) {
    if d.is_zero() {
        return;
    }
    let deadline = Instant::now() + d;
    if d > SPIN {
        std::thread::sleep(d - SPIN);
    }
    while Instant::now() < deadline {
        std::thread::yield_now();
    }
}

/// One timed pass over some epochs.
pub struct Pass {
    /// Epochs run.
    pub epochs: u64,
    /// Samples delivered.
    pub samples: u64,
    /// Wall time, s.
    pub wall: f64,
    /// Wall time the consumer waited for batches (including starting each epoch).
    pub wait: f64,
    /// The part of `wait` spent on the first batch of each epoch.
    pub start_wait: f64,
}

/// Runs epochs `0..` (a fixed count, or at least 3 and at least `min_secs`), calling the
/// simulated step `step` after each batch (the batch is dropped first, as the device feeder
/// frees a host buffer once its upload completed); `verbose` prints a line per epoch with
/// that prefix.
pub fn run_pass(
    loader: &mut BenchLoader,
    epochs: Option<u64>,
    min_secs: f64,
    step: Option<Duration>,
    mut digest: Option<&mut Digest>,
    verbose: Option<&str>,
) -> stoker::Result<Pass> {
    let start = Instant::now();
    let (mut e, mut samples, mut wait) = (0u64, 0u64, Duration::ZERO);
    let mut start_wait = Duration::ZERO;
    let more = |e: u64| match epochs {
        Some(n) => e < n,
        None => e < 3 || start.elapsed().as_secs_f64() < min_secs,
    };
    while more(e) {
        let t = Instant::now();
        let mut n = 0usize;
        let mut w = Instant::now();
        let mut first = true;
        for batch in loader.epoch(e) {
            wait += w.elapsed();
            if first {
                start_wait += w.elapsed();
                first = false;
            }
            let batch = batch?;
            n += batch.len();
            if let Some(d) = digest.as_deref_mut() {
                d.update(&batch);
            }
            drop(batch);
            if let Some(s) = step {
                simulate_step(s);
            }
            w = Instant::now();
        }
        wait += w.elapsed();
        if first {
            start_wait += w.elapsed();
        }
        samples += n as u64;
        if let Some(what) = verbose {
            let s = t.elapsed().as_secs_f64();
            println!(
                "{what}epoch {e}: {n} images in {s:.3} s, {:.0} images/s",
                n as f64 / s
            );
        }
        e += 1;
    }
    Ok(Pass {
        epochs: e,
        samples,
        wall: start.elapsed().as_secs_f64(),
        wait: wait.as_secs_f64(),
        start_wait: start_wait.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_simulation_is_precise() {
        let t = Instant::now();
        simulate_step(Duration::from_millis(5));
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(5), "{e:?}");
        assert!(e < Duration::from_millis(50), "{e:?}");
        let t = Instant::now();
        simulate_step(Duration::ZERO);
        assert!(t.elapsed() < Duration::from_millis(5));
    }
}
