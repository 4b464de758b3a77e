//! Choosing at run time between two kernel variants that write the same bits: the AVX-512
//! loops that fetch their taps with VBMI byte permutes, and the ones that gather them.
//!
//! Which is faster depends on the CPU, not on the instruction set it reports: on one 2-core
//! AMD EPYC (Zen 4) the permutes were about as fast as the gathers in the kernel and 1.1× the
//! loader's images/s, on an Intel Xeon they took 1.45× the gathers' time. So the default,
//! [`Vbmi::Auto`], measures: in each of the first [`TRIALS`] samples that reach a kernel, one
//! half of the rows runs each variant (with no extra work, into the real batch slot), and the
//! variant that was faster across these trials is kept for every later sample. The choice
//! changes no output bit, only the time.
//!
//! [`Vbmi::On`] and [`Vbmi::Off`] force a variant, for tests and A/B runs; the environment
//! variable `STOKER_VBMI` (`auto`, `on`, `off`) sets it for every augmentation that does not
//! set its own, and the older `STOKER_NO_VBMI=1` still means `off`.
//!
//! ```
//! use stoker::simd::Vbmi;
//! assert_eq!("off".parse::<Vbmi>()?, Vbmi::Off);
//! assert!("maybe".parse::<Vbmi>().is_err());
//! assert_eq!(Vbmi::default(), Vbmi::Auto);
//! # Ok::<(), stoker::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Instant;

use crate::{Error, Result};

/// Whether the AVX-512 kernels take their taps with VBMI byte permutes instead of gathers
/// (the same bits either way): `Auto` races both on a worker's first [`TRIALS`] samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Vbmi {
    /// Time both variants on the first samples and keep the faster.
    #[default]
    Auto,
    /// The byte permutes, wherever the CPU has AVX-512 VBMI.
    On,
    /// The gathers.
    Off,
}

/// The variable that sets [`Vbmi`] for every augmentation that does not set its own.
pub const VBMI_ENV: &str = "STOKER_VBMI";

impl Vbmi {
    /// `auto`, `on` or `off`.
    ///
    /// ```
    /// assert_eq!(stoker::simd::Vbmi::On.as_str(), "on");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Vbmi::Auto => "auto",
            Vbmi::On => "on",
            Vbmi::Off => "off",
        }
    }

    /// The setting in the environment: `STOKER_VBMI` if set, else `off` if `STOKER_NO_VBMI`
    /// is set, else `auto`. A value other than `auto`, `on` or `off` is a usage error.
    ///
    /// ```
    /// // Read afresh on each call; the augmentation reads it once per process.
    /// let v = stoker::simd::Vbmi::from_env();
    /// assert!(v.is_ok() || std::env::var_os("STOKER_VBMI").is_some());
    /// ```
    pub fn from_env() -> Result<Vbmi> {
        match std::env::var(VBMI_ENV) {
            Ok(v) => v
                .parse()
                .map_err(|e: Error| Error::usage(format!("{VBMI_ENV}={v:?}: {}", e.message()))),
            Err(std::env::VarError::NotUnicode(v)) => Err(Error::usage(format!(
                "{VBMI_ENV}={v:?}: expected auto, on or off"
            ))),
            Err(std::env::VarError::NotPresent) => Ok(match std::env::var_os("STOKER_NO_VBMI") {
                Some(_) => Vbmi::Off,
                None => Vbmi::Auto,
            }),
        }
    }

    /// [`Vbmi::from_env`], read once per process.
    pub(crate) fn env() -> Result<Vbmi> {
        static ENV: OnceLock<std::result::Result<Vbmi, String>> = OnceLock::new();
        ENV.get_or_init(|| Vbmi::from_env().map_err(|e| e.message().to_owned()))
            .clone()
            .map_err(Error::usage)
    }

    /// Whether this CPU has what the permute loops need (AVX-512 F, BW, VL and VBMI): where it
    /// does not, every setting runs the gathers.
    ///
    /// ```
    /// let _ = stoker::simd::Vbmi::available();
    /// ```
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        return super::SimdLevel::Avx512.is_available()
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vbmi");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

impl FromStr for Vbmi {
    type Err = Error;
    fn from_str(s: &str) -> Result<Vbmi> {
        match s.trim() {
            "auto" => Ok(Vbmi::Auto),
            "on" => Ok(Vbmi::On),
            "off" => Ok(Vbmi::Off),
            _ => Err(Error::usage("expected auto, on or off")),
        }
    }
}

impl fmt::Display for Vbmi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Samples timed before `Vbmi::Auto` decides which variant a worker keeps.
pub const TRIALS: usize = 16;

/// Nanoseconds from some fixed start: the clock a [`Race`] times its runs with.
pub(crate) trait Clock {
    fn now_ns(&self) -> u64;
}

/// The monotonic clock.
pub(crate) struct Monotonic;

impl Clock for Monotonic {
    fn now_ns(&self) -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Which of two variants of a kernel (`false` and `true`, the same bits) is faster here,
/// decided from the first [`TRIALS`] samples that reach it, from any thread. Lock-free: once
/// decided, a sample costs one atomic load.
///
/// A trial times the sample where it really runs (into its batch slot, cold or not, as every
/// other sample), with no extra work: the rows above the middle run one variant and the rows
/// below it the other, and the next trial swaps them. The ratio of the two halves' times then
/// carries the variants' ratio one way in even trials and the other way in odd ones, while what
/// the sample costs as a whole (its zoom, the caches, a page fault, the clock speed) cancels.
pub(crate) struct Race {
    /// Trials handed out (stops counting at [`TRIALS`]).
    tickets: AtomicU32,
    /// Trials finished.
    done: AtomicU32,
    /// Each trial's time of the top half ÷ time of the bottom half, as `f32` bits (NaN: no
    /// vote). Even trials run `true` on top.
    ratios: [AtomicU32; TRIALS],
    /// 0 undecided, 1 `false`, 2 `true`.
    winner: AtomicU8,
}

impl Race {
    pub(crate) fn new() -> Race {
        Race {
            tickets: AtomicU32::new(0),
            done: AtomicU32::new(0),
            ratios: std::array::from_fn(|_| AtomicU32::new(f32::NAN.to_bits())),
            winner: AtomicU8::new(0),
        }
    }

    /// The variant kept, once decided.
    pub(crate) fn decided(&self) -> Option<bool> {
        match self.winner.load(Ordering::Acquire) {
            0 => None,
            w => Some(w == 2),
        }
    }

    /// How a sample of `rows` rows runs: with the variant kept; while undecided, as one of
    /// the first [`TRIALS`] trials, or else with `default`.
    pub(crate) fn split(&self, default: bool, rows: usize) -> Split<'_> {
        self.split_on(Monotonic, default, rows)
    }

    pub(crate) fn split_on<C: Clock>(&self, clock: C, default: bool, rows: usize) -> Split<'_, C> {
        if let Some(w) = self.decided() {
            return Split::fixed(clock, w);
        }
        if rows < 2 || self.tickets.load(Ordering::Relaxed) >= TRIALS as u32 {
            return Split::fixed(clock, default);
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed) as usize;
        if ticket >= TRIALS {
            return Split::fixed(clock, default);
        }
        let top = ticket.is_multiple_of(2);
        Split {
            clock,
            top,
            bottom: !top,
            at: rows / 2,
            trial: Some((self, ticket)),
            marks: [0; 2],
        }
    }

    /// Trial `ticket`'s halves took `top` and `bottom` ns (`None`: the sample failed).
    fn record(&self, ticket: usize, halves: Option<(u64, u64)>) {
        let ratio = match halves {
            Some((t, b)) if t > 0 && b > 0 => t as f32 / b as f32,
            _ => f32::NAN,
        };
        self.ratios[ticket].store(ratio.to_bits(), Ordering::Relaxed);
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == TRIALS as u32 {
            let ratios: Vec<f32> = self
                .ratios
                .iter()
                .map(|r| f32::from_bits(r.load(Ordering::Relaxed)))
                .collect();
            // Ties and too few votes: the gathers, which every AVX-512 CPU has run.
            let w = pick(&ratios).unwrap_or(false);
            self.winner.store(1 + w as u8, Ordering::Release);
        }
    }
}

/// One sample's variants, row by row (see [`Race`]): ask [`Split::at_row`] before each row,
/// and call [`Split::finish`] after the last.
pub(crate) struct Split<'r, C: Clock = Monotonic> {
    clock: C,
    /// The variant of the rows above `at`, and of the others.
    top: bool,
    bottom: bool,
    at: usize,
    trial: Option<(&'r Race, usize)>,
    /// When row 0 and row `at` started.
    marks: [u64; 2],
}

impl Split<'static> {
    /// Every row with `v`: no trial.
    pub(crate) fn always(v: bool) -> Self {
        Split::fixed(Monotonic, v)
    }
}

impl<C: Clock> Split<'_, C> {
    fn fixed(clock: C, v: bool) -> Self {
        Split {
            clock,
            top: v,
            bottom: v,
            at: usize::MAX,
            trial: None,
            marks: [0; 2],
        }
    }

    /// The variant to switch to before row `y`, where it changes (row 0 and, in a trial, the
    /// middle row); `None` elsewhere.
    #[inline]
    pub(crate) fn at_row(&mut self, y: usize) -> Option<bool> {
        if y == 0 {
            if self.trial.is_some() {
                self.marks[0] = self.clock.now_ns();
            }
            Some(self.top)
        } else if y == self.at {
            self.marks[1] = self.clock.now_ns();
            Some(self.bottom)
        } else {
            None
        }
    }

    /// The sample is done (`ok`: it ran every row): a trial reports its halves' times.
    pub(crate) fn finish(self, ok: bool) {
        if let Some((race, ticket)) = self.trial {
            let end = self.clock.now_ns();
            let [a, b] = self.marks;
            let halves = (ok && b >= a).then(|| (b - a, end.saturating_sub(b)));
            race.record(ticket, halves);
        }
    }
}

/// From the trials' top ÷ bottom ratios (even trials: `true` on top), whether `true` is
/// faster: the median of the even trials below the median of the odd ones. `None` when
/// either has no finite ratio, or the two medians are equal.
fn pick(ratios: &[f32]) -> Option<bool> {
    let median = |parity: usize| {
        let mut r: Vec<f32> = ratios
            .iter()
            .enumerate()
            .filter(|&(i, r)| i % 2 == parity && r.is_finite())
            .map(|(_, &r)| r)
            .collect();
        r.sort_by(f32::total_cmp);
        let n = r.len();
        match n {
            0 => None,
            _ if !n.is_multiple_of(2) => Some(r[n / 2]),
            _ => Some((r[n / 2 - 1] + r[n / 2]) / 2.0),
        }
    };
    let (on_top, off_top) = (median(0)?, median(1)?);
    (on_top != off_top).then_some(on_top < off_top)
}

impl fmt::Debug for Race {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Race")
            .field("decided", &self.decided())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A clock that only moves when a row says how long it took.
    #[derive(Clone)]
    struct Fake(Rc<Cell<u64>>);

    impl Clock for Fake {
        fn now_ns(&self) -> u64 {
            self.0.get()
        }
    }

    /// Runs samples of `rows` rows through `race` until it decides, each row taking
    /// `cost(sample, row, variant)` ns; returns the choice and the samples run.
    fn decide(race: &Race, rows: usize, cost: impl Fn(usize, usize, bool) -> u64) -> (bool, usize) {
        let clock = Fake(Rc::new(Cell::new(0)));
        let mut sample = 0;
        while race.decided().is_none() {
            let mut split = race.split_on(clock.clone(), false, rows);
            let mut v = None;
            for y in 0..rows {
                if let Some(n) = split.at_row(y) {
                    v = Some(n);
                }
                clock.0.set(clock.0.get() + cost(sample, y, v.unwrap()));
            }
            split.finish(true);
            sample += 1;
            assert!(sample <= TRIALS, "undecided after {sample} samples");
        }
        (race.decided().unwrap(), sample)
    }

    #[test]
    fn keeps_the_faster_variant_whichever_it_is() {
        for fast in [false, true] {
            let race = Race::new();
            let (w, n) = decide(&race, 10, |_, _, v| if v == fast { 70 } else { 100 });
            assert_eq!((w, n), (fast, TRIALS), "fast {fast}");
        }
    }

    #[test]
    fn what_a_whole_sample_costs_and_a_slower_half_cancel() {
        // `true` is 10% faster per row; samples cost from 1x to 16x (zoom, cold caches), and
        // the bottom half of every image is twice as slow as its top.
        let race = Race::new();
        let (w, _) = decide(&race, 20, |sample, row, v| {
            let scale = 1 + (sample * 7 % 16) as u64;
            let half = if row >= 10 { 2 } else { 1 };
            scale * half * if v { 90 } else { 100 }
        });
        assert!(w);
        // The same with `false` faster.
        let race = Race::new();
        let (w, _) = decide(&race, 20, |sample, row, v| {
            let scale = 1 + (sample * 7 % 16) as u64;
            let half = if row >= 10 { 2 } else { 1 };
            scale * half * if v { 110 } else { 100 }
        });
        assert!(!w);
    }

    #[test]
    fn a_few_stalled_samples_do_not_change_the_choice() {
        // `true` 20% faster, but in one sample of four one row stalls for a long time.
        let race = Race::new();
        let (w, _) = decide(&race, 8, |sample, row, v| {
            let stall = if sample % 4 == 3 && row == sample % 8 {
                100_000
            } else {
                0
            };
            stall + if v { 80 } else { 100 }
        });
        assert!(w);
    }

    #[test]
    fn trials_swap_the_halves_and_failed_ones_give_no_vote() {
        let race = Race::new();
        let clock = Fake(Rc::new(Cell::new(0)));
        let mut first = race.split_on(clock.clone(), false, 6);
        assert_eq!(
            (first.at_row(0), first.at_row(1), first.at_row(3)),
            (Some(true), None, Some(false))
        );
        let mut second = race.split_on(clock.clone(), false, 6);
        assert_eq!(
            (second.at_row(0), second.at_row(3)),
            (Some(false), Some(true))
        );
        first.finish(false);
        second.finish(false);
        for _ in 2..TRIALS {
            race.split_on(clock.clone(), false, 6).finish(false);
        }
        // No votes: the gathers.
        assert_eq!(race.decided(), Some(false));
        // A one-row sample is no trial.
        let race = Race::new();
        let mut s = race.split_on(clock.clone(), true, 1);
        assert_eq!(s.at_row(0), Some(true));
        s.finish(true);
        assert_eq!(race.tickets.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn once_decided_every_row_runs_the_choice() {
        let race = Race::new();
        decide(&race, 4, |_, _, v| if v { 10 } else { 50 });
        let mut s = race.split(false, 100);
        assert_eq!(s.at_row(0), Some(true));
        assert!((1..100).all(|y| s.at_row(y).is_none()));
        s.finish(true);
    }

    #[test]
    fn threads_share_one_decision_and_take_only_the_trials() {
        let race = Race::new();
        let trials = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let mut split = race.split(false, 8);
                        let variants: Vec<bool> = (0..8).filter_map(|y| split.at_row(y)).collect();
                        if variants.len() == 2 {
                            trials.fetch_add(1, Ordering::Relaxed);
                        }
                        split.finish(true);
                    }
                });
            }
        });
        assert!(race.decided().is_some());
        assert_eq!(trials.load(Ordering::Relaxed), TRIALS as u32);
    }

    #[test]
    fn the_medians_decide() {
        // Even trials (`true` on top) 0.8 and 0.9, odd ones 1.2: `true` is faster.
        assert_eq!(pick(&[0.8, 1.2, 0.9, 1.2]), Some(true));
        assert_eq!(pick(&[1.3, f32::NAN, 1.1, 0.9, 1.2, 1.0]), Some(false));
        assert_eq!(pick(&[1.0, 1.0]), None);
        assert_eq!(pick(&[f32::NAN, 1.0]), None);
    }

    #[test]
    fn settings_parse_and_print() {
        for v in [Vbmi::Auto, Vbmi::On, Vbmi::Off] {
            assert_eq!(v.as_str().parse::<Vbmi>().unwrap(), v);
            assert_eq!(v.to_string(), v.as_str());
        }
        assert!("yes".parse::<Vbmi>().is_err());
    }
}
