//! Which shard each upcoming position reads: the fetcher's view of the sampler's order.
//!
//! The one place that turns an epoch's order into shards, so that an order which knows its
//! shards itself (a shard-aware order) can answer here directly.

use std::ops::Range;

use crate::sampler::EpochOrder;

/// The shard read at each position of `positions` of `order`, in position order:
/// position → data set index (`order.index`) → shard (`shard_of`, the source's map from a
/// global index to its shard).
///
/// ```ignore
/// // four samples in two shards of two, read in the order 3, 0, 2, 1
/// assert_eq!(shard_sequence(&order, 0..4, |i| i / 2), [1, 0, 1, 0]);
/// ```
pub(crate) fn shard_sequence(
    order: &EpochOrder,
    positions: Range<usize>,
    shard_of: impl Fn(usize) -> usize,
) -> Vec<u32> {
    let end = positions.end.min(order.len());
    (positions.start.min(end)..end)
        .map(|p| shard_of(order.index(p)) as u32)
        .collect()
}

/// For each of `shards` shards, the positions (indices into `sequence`) that read it, in
/// order: where its next use after any position is found by a binary search.
pub(crate) fn uses(sequence: &[u32], shards: usize) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); shards];
    for (p, &k) in sequence.iter().enumerate() {
        out[k as usize].push(p as u32);
    }
    out
}

/// The first use at or after `pos` in `uses` (sorted), if any.
pub(crate) fn next_use(uses: &[u32], pos: usize) -> Option<usize> {
    let i = uses.partition_point(|&u| (u as usize) < pos);
    uses.get(i).map(|&u| u as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Sampler;

    #[test]
    fn positions_map_to_shards_through_the_order() {
        let order = Sampler::new(8).shuffle(true).seed(3).epoch(0);
        let seq = shard_sequence(&order, 2..8, |i| i / 4);
        let want: Vec<u32> = (2..8).map(|p| (order.index(p) / 4) as u32).collect();
        assert_eq!(seq, want);
        let u = uses(&seq, 2);
        assert_eq!(u[0].len() + u[1].len(), 6);
        assert_eq!(next_use(&[1, 5, 9], 2), Some(5));
        assert_eq!(next_use(&[1, 5, 9], 5), Some(5));
        assert_eq!(next_use(&[1, 5, 9], 10), None);
    }
}
