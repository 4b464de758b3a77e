//! What the loader does with bad samples: raise or skip them, and how many it may skip.

use crate::{Error, Result};

/// What to do with a sample that cannot be read or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop the epoch: `next()` returns the error (naming the file and sample), then `None`.
    #[default]
    Raise,
    /// Skip a sample that fails with a data error ([`ErrorKind::is_data`](crate::ErrorKind::is_data): `Io`, `Format`,
    /// `Decode`), count it in [`Stats`](crate::Stats), log it as a `tracing` warning, and complete the batch
    /// from the following samples so batch shapes stay fixed. Any other error (a panic, a
    /// usage error from a transform, ...) is raised as under [`OnError::Raise`]. How many may
    /// be skipped in one pass is bounded ([`SkipBound`], default 5%).
    Skip,
}

impl std::str::FromStr for OnError {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "raise" | "error" | "fail" => Ok(OnError::Raise),
            "skip" => Ok(OnError::Skip),
            _ => Err(Error::usage(format!(
                "unknown error policy {s:?} (raise, skip)"
            ))),
        }
    }
}

/// How many samples one pass (an epoch, or the part of it asked for) may skip under
/// [`OnError::Skip`] before it ends with an [`ErrorKind::SkipLimit`](crate::ErrorKind::SkipLimit)
/// error that names the source, the count and the first failure. A pass whose every sample
/// was skipped ends with that error too, whatever the bound: a training loop never "trains"
/// on nothing with exit status 0. (A pass that is empty by design, such as `drop_last` with
/// fewer samples than a batch, is not an error.)
///
/// The default is [`SkipBound::Fraction`]`(0.05)`: 5% of the pass, rounded up, so one bad file
/// in a small set is still just skipped. Parsed from `"12"` (a count) or `"2%"` (a fraction).
///
/// ```
/// use stoker::SkipBound;
/// assert_eq!(SkipBound::default(), SkipBound::Fraction(0.05));
/// assert_eq!(SkipBound::default().allowed(1000), 50);
/// assert_eq!(SkipBound::default().allowed(10), 1); // rounded up
/// assert_eq!(SkipBound::Count(3).allowed(10), 3);
/// assert_eq!("2%".parse::<SkipBound>()?, SkipBound::Fraction(0.02));
/// assert_eq!("12".parse::<SkipBound>()?, SkipBound::Count(12));
/// assert!("-1".parse::<SkipBound>().is_err() && "120%".parse::<SkipBound>().is_err());
/// assert_eq!(SkipBound::Fraction(0.02).to_string(), "2%");
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SkipBound {
    /// At most this many skipped samples per pass.
    Count(usize),
    /// At most this fraction (0 to 1) of the pass's samples, rounded up.
    Fraction(f64),
}

impl Default for SkipBound {
    fn default() -> Self {
        SkipBound::Fraction(0.05)
    }
}

impl SkipBound {
    /// How many of `samples` may be skipped.
    pub fn allowed(self, samples: usize) -> usize {
        match self {
            SkipBound::Count(n) => n,
            SkipBound::Fraction(f) => (f.clamp(0.0, 1.0) * samples as f64).ceil() as usize,
        }
    }

    /// A usage error when a fraction is not within 0 to 1.
    pub(crate) fn validate(self) -> Result<()> {
        match self {
            SkipBound::Fraction(f) if !(0.0..=1.0).contains(&f) => Err(Error::usage(format!(
                "max_skipped fraction {f} is not within 0 and 1"
            ))),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for SkipBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipBound::Count(n) => write!(f, "{n}"),
            SkipBound::Fraction(x) => write!(f, "{}%", (x * 100.0 * 1e6).round() / 1e6),
        }
    }
}

impl std::str::FromStr for SkipBound {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::usage(format!(
                "bad skip bound {s:?} (a count such as 10, or a percentage such as 2%)"
            ))
        };
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            let bound = SkipBound::Fraction(p / 100.0);
            bound.validate().map_err(|_| bad())?;
            return Ok(bound);
        }
        t.parse().map(SkipBound::Count).map_err(|_| bad())
    }
}
