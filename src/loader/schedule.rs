//! The loader's schedule: which stream position goes into which batch slot, in what order
//! results are taken, how a skipped sample is made up for, and when a batch is complete.
//!
//! A state machine without threads, channels or buffers: the [`Loader`](super::Loader) asks
//! it what to dispatch ([`Schedule::peek`]), tells it what came back ([`Schedule::record`]),
//! and lets it place the results in stream order ([`Schedule::advance`]), doing the copies it
//! is told to. So every rule (skip and resync, `drop_last`, resume, the prefetch window) is
//! tested here directly.

use std::collections::VecDeque;

use super::{OnError, SkipBound};
use crate::{Error, ErrorKind};

/// Where a dispatched sample stands.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Sent to a worker; no result yet.
    Pending,
    /// Written into its slot, with this label.
    Ready(Option<i64>),
    /// Failed.
    Failed(Error),
}

/// A dispatched stream position: the slot it was told to write, and its outcome.
#[derive(Debug)]
struct Entry {
    dest: usize,
    outcome: Outcome,
}

/// The next sample to dispatch: stream position `pos` into slot `slot` of batch buffer
/// `buffer` (counted from the front batch of the pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dispatch {
    pub pos: usize,
    pub buffer: usize,
    pub slot: usize,
}

/// A finished sample taken in stream order, to put in its final place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// The stream position.
    pub pos: usize,
    /// Where the worker wrote it: (buffer, slot), counted from the front batch.
    pub from: (usize, usize),
    /// Where it belongs; differs from `from` after a skip earlier in the stream.
    pub to: (usize, usize),
    /// Its label.
    pub label: Option<i64>,
}

/// One pass over an epoch's positions `start..len` in batches of `batch`.
#[derive(Debug)]
pub(crate) struct Schedule {
    batch: usize,
    prefetch: usize,
    drop_last: bool,
    len: usize,
    /// Entries for positions `done_pos ..`, in order.
    ring: VecDeque<Entry>,
    /// Batches handed out (or being handed out) in this pass: the front batch's number.
    front_batch: usize,
    /// Next stream position to dispatch, and the first one not yet taken in order.
    next_pos: usize,
    done_pos: usize,
    /// Destination (slot number counted from the start of this pass) of the next dispatch.
    next_dest: usize,
    /// Samples placed in their final slot.
    placed: usize,
    /// A skipped sample shifted later ones: dispatch waits until the ring is empty.
    resync: bool,
    finished: bool,
    /// Slot numbers from this one on belong to a batch that `drop_last` drops.
    full_limit: usize,
    bound: SkipBound,
    /// Skips the pass may make ([`SkipBound::allowed`] of its length), made, and the first.
    allowed: usize,
    skipped: usize,
    first_skip: Option<Error>,
    /// The source, as a [`SkipLimit`](ErrorKind::SkipLimit) error names it.
    source: String,
}

impl Schedule {
    /// A schedule for batches of `batch` samples, `prefetch` batches ahead, with room for
    /// `prefetch * batch` entries allocated now, skipping at most `bound` of a pass. It starts
    /// finished: call [`begin`](Self::begin).
    pub fn new(batch: usize, prefetch: usize, drop_last: bool, bound: SkipBound) -> Schedule {
        Schedule {
            batch,
            prefetch,
            drop_last,
            len: 0,
            ring: VecDeque::with_capacity(prefetch * batch),
            front_batch: 0,
            next_pos: 0,
            done_pos: 0,
            next_dest: 0,
            placed: 0,
            resync: false,
            finished: true,
            full_limit: usize::MAX,
            bound,
            allowed: 0,
            skipped: 0,
            first_skip: None,
            source: String::new(),
        }
    }

    /// Names the source in the errors this schedule makes.
    pub fn describing(mut self, source: String) -> Schedule {
        self.source = source;
        self
    }

    /// Starts a pass over positions `position..len` (a `position` past `len` starts at `len`).
    pub fn begin(&mut self, len: usize, position: usize) {
        let b = self.batch;
        self.len = len;
        self.ring.clear();
        self.next_pos = position.min(len);
        self.done_pos = self.next_pos;
        self.next_dest = 0;
        self.placed = 0;
        self.front_batch = 0;
        self.resync = false;
        self.finished = false;
        self.allowed = self.bound.allowed(len - self.next_pos);
        self.skipped = 0;
        self.first_skip = None;
        self.full_limit = if self.drop_last {
            (len - self.next_pos) / b * b
        } else {
            usize::MAX
        };
    }

    /// Ends the pass: nothing more is dispatched or handed out.
    pub fn finish(&mut self) {
        self.ring.clear();
        self.finished = true;
    }

    /// Whether the pass has ended.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next sample to dispatch, if the window, a resync in progress and `drop_last`
    /// allow one now. The caller provides buffer `buffer` (taking one from the pool when
    /// `buffer` is past those it holds), then calls [`push`](Self::push).
    pub fn peek(&self) -> Option<Dispatch> {
        let b = self.batch;
        if self.finished
            || self.resync
            || self.next_pos >= self.len
            || self.ring.len() >= self.prefetch * b
            || self.next_dest >= self.full_limit
        {
            return None;
        }
        let d = self.next_dest;
        let buffer = d / b - self.front_batch;
        (buffer < self.prefetch).then_some(Dispatch {
            pos: self.next_pos,
            buffer,
            slot: d % b,
        })
    }

    /// Records the dispatch [`peek`](Self::peek) returned, with its outcome (`Pending` when
    /// it went to a worker; the result when it ran inline).
    pub fn push(&mut self, outcome: Outcome) {
        self.ring.push_back(Entry {
            dest: self.next_dest,
            outcome,
        });
        self.next_pos += 1;
        self.next_dest += 1;
    }

    /// Records a worker's result for stream position `pos` (dispatched and pending).
    pub fn record(&mut self, pos: usize, outcome: Outcome) {
        let i = pos - self.done_pos;
        self.ring[i].outcome = outcome;
    }

    /// Whether nothing is in flight or waiting to be taken.
    pub fn ring_is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Whether the next position to take is still pending.
    pub fn front_pending(&self) -> bool {
        matches!(self.ring.front(), Some(e) if matches!(e.outcome, Outcome::Pending))
    }

    /// Results still needed (at least 1) before the front batch can be completed from what
    /// is in flight: the consumer sleeps until that many have arrived.
    pub fn pending_for_front(&self) -> usize {
        let b = self.batch;
        let room = ((self.front_batch + 1) * b - self.placed).clamp(1, self.ring.len().max(1));
        self.ring
            .iter()
            .take(room)
            .filter(|e| matches!(e.outcome, Outcome::Pending))
            .count()
            .max(1)
    }

    /// Whether every position of the pass has been dispatched (or may not be: `drop_last`).
    pub fn exhausted(&self) -> bool {
        self.next_pos >= self.len || (!self.resync && self.next_dest >= self.full_limit)
    }

    /// Takes finished results in stream order: `place` puts each sample in its final slot
    /// (moving it when an earlier skip shifted it), `skip` counts a failure that `policy`
    /// skips. Stops when the front batch is full, so that it is handed out before a later
    /// error is raised; returns the first failure under [`OnError::Raise`], and a
    /// [`SkipLimit`](ErrorKind::SkipLimit) error for the skip past the bound.
    pub fn advance(
        &mut self,
        policy: OnError,
        mut place: impl FnMut(Placement),
        mut skip: impl FnMut(&Error),
    ) -> Result<(), Error> {
        let b = self.batch;
        while self.placed < (self.front_batch + 1) * b
            && matches!(self.ring.front(), Some(e) if !matches!(e.outcome, Outcome::Pending))
        {
            let entry = self.ring.pop_front().expect("front exists");
            let pos = self.done_pos;
            self.done_pos += 1;
            match entry.outcome {
                Outcome::Ready(label) => {
                    let t = self.placed;
                    place(Placement {
                        pos,
                        from: (entry.dest / b - self.front_batch, entry.dest % b),
                        to: (t / b - self.front_batch, t % b),
                        label,
                    });
                    self.placed += 1;
                }
                // Only data errors (one bad sample) are skipped: a usage, device or panic
                // error is raised whatever the policy.
                Outcome::Failed(e) => match policy {
                    OnError::Skip if e.kind().is_data() => {
                        skip(&e);
                        self.skipped += 1;
                        if self.first_skip.is_none() {
                            self.first_skip = Some(e);
                        }
                        if self.skipped > self.allowed {
                            let first = self.first_skip.take().expect("kept above");
                            return Err(self.limit_error(first, false));
                        }
                        self.resync = true;
                    }
                    OnError::Raise | OnError::Skip => return Err(e),
                },
                Outcome::Pending => unreachable!("loop condition"),
            }
        }
        if self.resync && self.ring.is_empty() {
            self.resync = false;
            self.next_dest = self.placed;
            let remaining = self.len - self.next_pos;
            if self.full_limit != usize::MAX {
                // The batches that can still be filled completely, given what is left.
                self.full_limit = (self.placed + remaining) / b * b;
            }
        }
        Ok(())
    }

    /// Whether the front batch is ready to hand out: full, or the last partial batch of a
    /// finished pass.
    pub fn front_ready(&self) -> bool {
        let b = self.batch;
        self.placed >= (self.front_batch + 1) * b
            || (self.finished && self.placed > self.front_batch * b)
    }

    /// The front batch was handed out: the next one becomes the front.
    pub fn pop_front(&mut self) {
        self.front_batch += 1;
    }

    /// Samples placed so far in this pass.
    #[cfg(test)]
    pub fn placed(&self) -> usize {
        self.placed
    }

    /// At the end of a pass (every position taken): a [`SkipLimit`](ErrorKind::SkipLimit)
    /// error when samples were skipped and none was placed (the pass should have yielded
    /// samples and yields none).
    pub fn check_end(&mut self) -> Result<(), Error> {
        match self.first_skip.take() {
            Some(first) if self.placed == 0 => Err(self.limit_error(first, true)),
            other => {
                self.first_skip = other;
                Ok(())
            }
        }
    }

    /// The error for a pass past its bound, or (`none`) with no sample placed.
    fn limit_error(&self, first: Error, none: bool) -> Error {
        let of = self.len - self.done_pos + self.skipped + self.placed;
        let what = if none {
            format!(
                "no sample of the pass could be used ({} of {of} skipped)",
                self.skipped
            )
        } else {
            format!(
                "{} of {of} samples skipped, past the bound of {} ({})",
                self.skipped, self.allowed, self.bound
            )
        };
        let at = if self.source.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.source)
        };
        Error::new(ErrorKind::SkipLimit, format!("{what}{at}; first: {first}")).with_source(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// Drives a schedule like the loader with inline workers: every dispatch completes at
    /// once with `fails(pos)` deciding failure. Returns the batches as stream positions.
    fn run(
        len: usize,
        start: usize,
        batch: usize,
        prefetch: usize,
        drop_last: bool,
        policy: OnError,
        fails: impl Fn(usize) -> bool,
    ) -> (Vec<Vec<usize>>, usize, Option<Error>) {
        let unbounded = SkipBound::Count(usize::MAX);
        run_bounded(
            len, start, batch, prefetch, drop_last, policy, unbounded, fails,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn run_bounded(
        len: usize,
        start: usize,
        batch: usize,
        prefetch: usize,
        drop_last: bool,
        policy: OnError,
        bound: SkipBound,
        fails: impl Fn(usize) -> bool,
    ) -> (Vec<Vec<usize>>, usize, Option<Error>) {
        let mut s = Schedule::new(batch, prefetch, drop_last, bound).describing("test".into());
        s.begin(len, start);
        // Slot contents: the position written there, per buffer counted from the pass start.
        let mut slots: Vec<Vec<Option<usize>>> = Vec::new();
        let mut out = Vec::new();
        let mut skipped = 0;
        let mut handed = 0;
        loop {
            if s.front_ready() {
                let n = if s.placed() >= (handed + 1) * batch {
                    batch
                } else {
                    s.placed() - handed * batch
                };
                out.push(slots[handed][..n].iter().map(|p| p.unwrap()).collect());
                handed += 1;
                s.pop_front();
                continue;
            }
            if s.is_finished() {
                break;
            }
            if s.ring_is_empty() && s.exhausted() {
                if let Err(e) = s.check_end() {
                    return (out, skipped, Some(e));
                }
                s.finish();
                if drop_last || !s.front_ready() {
                    break;
                }
                continue;
            }
            while let Some(d) = s.peek() {
                let abs = handed + d.buffer;
                if slots.len() <= abs {
                    slots.push(vec![None; batch]);
                }
                let outcome = if fails(d.pos) {
                    Outcome::Failed(Error::new(ErrorKind::Decode, "bad").at(d.pos))
                } else {
                    slots[abs][d.slot] = Some(d.pos);
                    Outcome::Ready(Some(d.pos as i64))
                };
                s.push(outcome);
            }
            let r = s.advance(
                policy,
                |p| {
                    let v = slots[handed + p.from.0][p.from.1];
                    assert_eq!(v, Some(p.pos), "the worker wrote it where it was told");
                    assert_eq!(p.label, Some(p.pos as i64));
                    slots[handed + p.to.0][p.to.1] = v;
                },
                |_| skipped += 1,
            );
            if let Err(e) = r {
                return (out, skipped, Some(e));
            }
        }
        (out, skipped, None)
    }

    #[test]
    fn batches_cover_the_pass_in_order() {
        let (b, skipped, err) = run(10, 0, 4, 2, false, OnError::Raise, |_| false);
        assert_eq!(b, [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert_eq!((skipped, err.is_none()), (0, true));
    }

    #[test]
    fn drop_last_drops_the_partial_batch_and_never_dispatches_it() {
        let mut s = Schedule::new(4, 8, true, SkipBound::Count(usize::MAX));
        s.begin(10, 0);
        let mut dispatched = 0;
        while s.peek().is_some() {
            s.push(Outcome::Ready(None));
            dispatched += 1;
        }
        assert_eq!(
            dispatched, 8,
            "positions 8 and 9 would only fill a dropped batch"
        );
        let (b, _, _) = run(10, 0, 4, 2, true, OnError::Raise, |_| false);
        assert_eq!(b, [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    }

    #[test]
    fn a_skip_is_made_up_from_the_following_samples() {
        let (b, skipped, err) = run(10, 0, 4, 2, false, OnError::Skip, |p| p == 1 || p == 6);
        assert_eq!(b, [vec![0, 2, 3, 4], vec![5, 7, 8, 9]]);
        assert_eq!((skipped, err.is_none()), (2, true));
    }

    #[test]
    fn skips_shrink_what_drop_last_keeps() {
        // 9 good samples in batches of 4 with drop_last: two full batches, the ninth dropped.
        let (b, skipped, _) = run(10, 0, 4, 3, true, OnError::Skip, |p| p == 0);
        assert_eq!(b, [vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
        assert_eq!(skipped, 1);
        // 7 good samples: one batch.
        let (b, _, _) = run(10, 0, 4, 3, true, OnError::Skip, |p| p < 3);
        assert_eq!(b, [vec![3, 4, 5, 6]]);
    }

    #[test]
    fn the_skip_past_the_bound_ends_the_pass() {
        let fails = |p| p % 3 == 1; // 1, 4, 7
        let (b, skipped, err) = run_bounded(
            10,
            0,
            2,
            2,
            false,
            OnError::Skip,
            SkipBound::Count(2),
            fails,
        );
        assert_eq!(skipped, 3);
        let err = err.expect("a third skip is past the bound");
        assert_eq!(err.kind(), ErrorKind::SkipLimit);
        assert_eq!(
            err.message(),
            "3 of 10 samples skipped, past the bound of 2 (2) in test; first: sample 1: decode: bad"
        );
        let first = std::error::Error::source(&err).unwrap();
        assert_eq!(first.downcast_ref::<Error>().unwrap().index(), Some(1));
        // The full batches before the third failure were handed out.
        assert_eq!(b, [vec![0, 2], vec![3, 5]]);
        // Within the bound: no error.
        let (b, skipped, err) = run_bounded(
            10,
            0,
            2,
            2,
            false,
            OnError::Skip,
            SkipBound::Count(3),
            fails,
        );
        assert_eq!(
            (skipped, err.is_none(), b.concat()),
            (3, true, vec![0, 2, 3, 5, 6, 8, 9])
        );
        // 5% of 40 allows 2; of a resumed pass of 20, 1.
        let fails = |p| p == 30 || p == 35;
        let five = SkipBound::Fraction(0.05);
        assert!(
            run_bounded(40, 0, 4, 2, false, OnError::Skip, five, fails)
                .2
                .is_none()
        );
        let err = run_bounded(40, 20, 4, 2, false, OnError::Skip, five, fails)
            .2
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::SkipLimit);
    }

    #[test]
    fn a_pass_whose_every_sample_fails_is_an_error_whatever_the_bound() {
        let all = SkipBound::Fraction(1.0);
        let (b, skipped, err) = run_bounded(5, 0, 2, 2, false, OnError::Skip, all, |_| true);
        assert_eq!((b.len(), skipped), (0, 5));
        let err = err.expect("nothing was yielded");
        assert_eq!(err.kind(), ErrorKind::SkipLimit);
        assert!(
            err.message().starts_with(
                "no sample of the pass could be used (5 of 5 skipped) in test; first: sample 0"
            ),
            "{err}"
        );
        // One good sample is enough, even when drop_last then drops it: the pass is empty by
        // design, not by failure.
        let (b, _, err) = run_bounded(5, 0, 2, 2, true, OnError::Skip, all, |p| p != 3);
        assert!(b.is_empty() && err.is_none());
        // An empty pass (resumed at its end) skips nothing and is no error.
        assert!(
            run_bounded(5, 5, 2, 2, false, OnError::Skip, all, |_| true)
                .2
                .is_none()
        );
    }

    #[test]
    fn raise_hands_out_the_full_batch_before_the_error() {
        let (b, _, err) = run(10, 0, 4, 2, false, OnError::Raise, |p| p == 5);
        assert_eq!(b, [vec![0, 1, 2, 3]]);
        assert_eq!(err.unwrap().index(), Some(5));
    }

    #[test]
    fn skip_skips_data_errors_only() {
        for (kind, skipped) in [
            (ErrorKind::Decode, true),
            (ErrorKind::Io, true),
            (ErrorKind::Format, true),
            (ErrorKind::Panic, false),
            (ErrorKind::Usage, false),
        ] {
            let mut s = Schedule::new(2, 1, false, SkipBound::Count(usize::MAX));
            s.begin(4, 0);
            s.peek().unwrap();
            s.push(Outcome::Failed(Error::new(kind, "x").at(0)));
            let mut n = 0;
            let r = s.advance(OnError::Skip, |_| {}, |_| n += 1);
            assert_eq!((r.is_ok(), n == 1), (skipped, skipped), "{kind:?}");
        }
    }

    #[test]
    fn resume_yields_the_tail_of_the_pass() {
        let whole = run(13, 0, 4, 2, false, OnError::Raise, |_| false).0;
        let tail = run(13, 8, 4, 2, false, OnError::Raise, |_| false).0;
        assert_eq!(tail, whole[2..]);
        // Past the end: an empty pass.
        assert!(
            run(13, 20, 4, 2, false, OnError::Raise, |_| false)
                .0
                .is_empty()
        );
    }

    #[test]
    fn the_window_bounds_what_is_in_flight() {
        let mut s = Schedule::new(4, 2, false, SkipBound::Count(usize::MAX));
        s.begin(100, 0);
        let mut n = 0;
        while let Some(d) = s.peek() {
            assert!(d.buffer < 2);
            s.push(Outcome::Pending);
            n += 1;
        }
        assert_eq!(n, 8);
        assert!(s.front_pending());
        assert_eq!(s.pending_for_front(), 4);
        // Results arrive out of order; nothing is taken until the front one is in.
        for pos in (1..4).rev() {
            s.record(pos, Outcome::Ready(None));
        }
        let mut placed = Vec::new();
        s.advance(OnError::Raise, |p| placed.push(p.pos), |_| {})
            .unwrap();
        assert!(placed.is_empty());
        assert_eq!(s.pending_for_front(), 1);
        s.record(0, Outcome::Ready(None));
        s.advance(OnError::Raise, |p| placed.push(p.pos), |_| {})
            .unwrap();
        assert_eq!(placed, [0, 1, 2, 3]);
        assert!(s.front_ready());
    }

    #[test]
    fn dispatch_pauses_after_a_skip_until_the_ring_is_empty() {
        let mut s = Schedule::new(2, 2, false, SkipBound::Count(usize::MAX));
        s.begin(10, 0);
        while s.peek().is_some() {
            s.push(Outcome::Pending);
        }
        s.record(0, Outcome::Failed(Error::new(ErrorKind::Io, "gone")));
        let mut skipped = 0;
        s.advance(OnError::Skip, |_| {}, |_| skipped += 1).unwrap();
        assert_eq!(skipped, 1);
        assert!(
            s.peek().is_none(),
            "positions after the skip go one slot lower"
        );
        for pos in 1..4 {
            s.record(pos, Outcome::Ready(None));
        }
        let mut moves = Vec::new();
        s.advance(OnError::Skip, |p| moves.push((p.from, p.to)), |_| {})
            .unwrap();
        // Positions 1 and 2 move down one slot; the front batch is then full.
        assert_eq!(moves, [((0, 1), (0, 0)), ((1, 0), (0, 1))]);
        s.pop_front();
        s.advance(OnError::Skip, |p| moves.push((p.from, p.to)), |_| {})
            .unwrap();
        assert_eq!(moves[2], ((0, 1), (0, 0)));
        // The ring is empty: dispatch resumes at the corrected slot.
        assert_eq!(
            s.peek(),
            Some(Dispatch {
                pos: 4,
                buffer: 0,
                slot: 1
            })
        );
    }
}
