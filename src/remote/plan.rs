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
/// order: after `r` reads of a shard, its next use is its `r`-th.
pub(crate) fn uses(sequence: &[u32], shards: usize) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); shards];
    for (p, &k) in sequence.iter().enumerate() {
        out[k as usize].push(p as u32);
    }
    out
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
        assert_eq!(u[0].iter().chain(&u[1]).filter(|&&p| p < 3).count(), 3);
    }

    /// Under the shard-aware order over the source's own shards, the plan is the order's
    /// shard of each position: a window's shards, then the next window's.
    #[test]
    fn the_plan_follows_the_shard_aware_order() {
        use crate::sampler::Order;
        let sizes = [5, 3, 4, 4, 6, 2, 4, 4];
        let starts: Vec<usize> = sizes
            .iter()
            .scan(0, |a, &s| {
                *a += s;
                Some(*a - s)
            })
            .collect();
        let locate = |i: usize| starts.partition_point(|&s| s <= i) - 1;
        let sampler = Sampler::new(32)
            .shuffle(true)
            .seed(5)
            .order(Order::Shards { window: 2 })
            .shard_sizes(&sizes)
            .unwrap();
        for (rank, world) in [(0, 1), (1, 2)] {
            let order = sampler.clone().distributed(rank, world).unwrap().epoch(1);
            let seq = shard_sequence(&order, 0..order.len(), locate);
            let want: Vec<u32> = (0..order.len())
                .map(|p| order.shard_of(p).unwrap() as u32)
                .collect();
            assert_eq!(seq, want);
            // Each shard's uses form one stretch, and at most 2 stretches are open at once.
            let u = uses(&seq, sizes.len());
            for p in 0..seq.len() {
                let open = u
                    .iter()
                    .filter(|v| {
                        !v.is_empty() && v[0] as usize <= p && p <= *v.last().unwrap() as usize
                    })
                    .count();
                assert!(open <= 2, "{open} shards open at position {p}: {seq:?}");
            }
        }
    }
}
