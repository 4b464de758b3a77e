//! The progress bar of `resize`, `convert` and `inspect` on stderr: hidden when stderr is
//! not a terminal or with `--quiet`.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of done/total items with rate and ETA, and the time since it started.
pub struct Progress {
    bar: ProgressBar,
    start: Instant,
}

impl Progress {
    /// A bar for `total` items called `what`; drawn only when stderr is a terminal and not
    /// `quiet`.
    pub fn new(total: usize, what: &'static str, quiet: bool) -> Progress {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let style = ProgressStyle::with_template(&format!(
                "[{{bar:30}}] {{pos}}/{{len}} {what} {{per_sec}} ETA {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("## ");
            ProgressBar::new(total as u64).with_style(style)
        };
        bar.set_length(total as u64);
        Progress {
            bar,
            start: Instant::now(),
        }
    }

    /// Counts `n` more items done.
    pub fn add(&self, n: usize) {
        self.bar.inc(n as u64);
    }

    /// Leaves the finished bar on its line.
    pub fn finish(&self) {
        self.bar.finish();
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_when_hidden() {
        let p = Progress::new(10, "images", true);
        p.add(3);
        p.add(4);
        assert_eq!(p.bar.position(), 7);
        p.finish();
        assert!(p.elapsed() >= 0.0);
    }
}
