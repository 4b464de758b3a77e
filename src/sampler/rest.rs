//! The rest of an epoch: the positions of its global order that no rank consumed, in order.
//!
//! A consumed set is kept as sorted, disjoint, non-adjacent ranges of global positions
//! ([`normalize`]); [`Rest`] is its complement in `0..len` with an `O(log gaps)` map from the
//! `i`-th remaining position to the global position, which a resumed epoch deals out across
//! its ranks as a fresh epoch deals out `0..len`.

use std::ops::Range;

use crate::{Error, Result};

/// Sorts `ranges`, drops empty ones, and joins overlapping or adjacent ones.
pub(crate) fn normalize(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The positions of an epoch of `len` samples left after `consumed`, in the order of the
/// epoch's global order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rest {
    /// The consumed ranges, normalized.
    consumed: Vec<Range<u64>>,
    /// The runs of positions left (`start`, `end`).
    gaps: Vec<(usize, usize)>,
    /// `before[g]`: positions left before run `g`; `before[gaps.len()]` the total.
    before: Vec<usize>,
}

impl Rest {
    /// What is left of `0..len` after `consumed` (which must be normalized and inside
    /// `0..len`: a usage error otherwise).
    pub fn new(len: usize, consumed: &[Range<u64>]) -> Result<Rest> {
        let mut gaps = Vec::with_capacity(consumed.len() + 1);
        let mut at = 0u64;
        for r in consumed {
            if r.start >= r.end || r.start < at || (at > 0 && r.start == at) {
                return Err(Error::usage(format!(
                    "checkpoint's consumed positions are not sorted, disjoint ranges \
                     (at {}..{})",
                    r.start, r.end
                )));
            }
            if r.end > len as u64 {
                return Err(Error::usage(format!(
                    "checkpoint's consumed positions {}..{} reach past the epoch's {len} samples",
                    r.start, r.end
                )));
            }
            if r.start > at {
                gaps.push((at as usize, r.start as usize));
            }
            at = r.end;
        }
        if (at as usize) < len {
            gaps.push((at as usize, len));
        }
        let mut before = Vec::with_capacity(gaps.len() + 1);
        let mut total = 0;
        for &(a, b) in &gaps {
            before.push(total);
            total += b - a;
        }
        before.push(total);
        Ok(Rest {
            consumed: consumed.to_vec(),
            gaps,
            before,
        })
    }

    /// The consumed ranges this rest leaves out.
    pub fn consumed(&self) -> &[Range<u64>] {
        &self.consumed
    }

    /// Positions left.
    pub fn len(&self) -> usize {
        *self.before.last().expect("before holds the total")
    }

    /// The global position of the `i`-th position left (`i < len()`).
    #[inline]
    pub fn position(&self, i: usize) -> usize {
        let g = self.before.partition_point(|&b| b <= i) - 1;
        self.gaps[g].0 + (i - self.before[g])
    }

    /// The global ranges that positions `a..b` of the rest (`b <= len()`) cover, appended to
    /// `out`.
    pub fn ranges(&self, a: usize, b: usize, out: &mut Vec<Range<u64>>) {
        if a >= b {
            return;
        }
        let mut g = self.before.partition_point(|&x| x <= a) - 1;
        let mut i = a;
        while i < b {
            let (start, end) = self.gaps[g];
            let from = start + (i - self.before[g]);
            let to = (from + (b - i)).min(end);
            out.push(from as u64..to as u64);
            i += to - from;
            g += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // ranges are the values here
mod tests {
    use super::*;

    #[test]
    fn normalize_joins_and_sorts() {
        let r = normalize(vec![5..7, 0..2, 2..3, 6..9, 4..4, 11..12]);
        assert_eq!(r, [0..3, 5..9, 11..12]);
    }

    #[test]
    fn rest_is_the_complement_in_order() {
        let consumed = [1..3, 5..6, 8..10];
        let rest = Rest::new(12, &consumed).unwrap();
        let left: Vec<usize> = (0..rest.len()).map(|i| rest.position(i)).collect();
        assert_eq!(left, [0, 3, 4, 6, 7, 10, 11]);
        let mut out = Vec::new();
        rest.ranges(1, 6, &mut out);
        assert_eq!(out, [3..5, 6..8, 10..11]);
        assert_eq!(Rest::new(4, &[]).unwrap().len(), 4);
        assert_eq!(Rest::new(4, &[0..4]).unwrap().len(), 0);
    }

    #[test]
    fn rest_rejects_bad_ranges() {
        #[allow(clippy::reversed_empty_ranges)] // a reversed range is one of the bad inputs
        let bads = [vec![3..2], vec![0..2, 1..4], vec![0..2, 2..4], vec![0..13]];
        for bad in bads {
            let e = Rest::new(12, &bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage, "{bad:?}");
        }
    }
}
