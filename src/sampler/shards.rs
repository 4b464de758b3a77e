//! The order modes of an epoch ([`Order`]) and the shard-aware one: shards shuffled, samples
//! shuffled within a window of `k` consecutive shards of that shuffled order.
//!
//! Both modes map a position of the epoch's global order (`0..len`) to a data set index, a
//! pure function of (seed, epoch, position): ranks deal the global order out, a resume starts
//! anywhere in it and an elastic resume deals out what is left of it, whatever the mode.
//!
//! Under [`Order::Shards`] the global order is cut into windows: window `w` holds the
//! samples of shuffled shards `w * k .. (w + 1) * k`, permuted among themselves. Positions run
//! through the windows one after the other, so every rank (which takes every `world_size`-th
//! position) reads from the same window at the same time and needs at most `k` shards at
//! once (see [`EpochOrder::shards_from`](super::EpochOrder::shards_from)).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Permutation;
use crate::rng::seed_of;
use crate::{Error, Result};

/// Words mixed into the keys of the shard-aware order, so that its permutations differ from
/// the global one's (`seed_of(&[seed, epoch])`).
const SHARDS_KEY: u64 = 0x5348_4152_4453; // "SHARDS"
const WINDOW_KEY: u64 = 0x5749_4e44_4f57; // "WINDOW"

/// How a shuffled epoch's global order is made (a sequential epoch is `0..len` in either mode).
///
/// ```
/// use stoker::sampler::Order;
/// assert_eq!("global".parse::<Order>().unwrap(), Order::Global);
/// assert_eq!("shards:4".parse::<Order>().unwrap(), Order::Shards { window: 4 });
/// assert_eq!(Order::Shards { window: 4 }.to_string(), "shards:4");
/// assert!("shards:0".parse::<Order>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// One permutation of every sample of the data set (the default): any sample may follow
    /// any other, and a rank reads from every shard all the time.
    #[default]
    Global,
    /// Shards shuffled, then samples shuffled within each window of `window` consecutive
    /// shards of that order: a rank reads from at most `window` shards at a time.
    Shards {
        /// Shards per window (`k`, at least 1).
        window: usize,
    },
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Order::Global => f.write_str("global"),
            Order::Shards { window } => write!(f, "shards:{window}"),
        }
    }
}

impl std::str::FromStr for Order {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::usage(format!(
                "unknown order {s:?} (global, or shards:K with K >= 1 shards per window)"
            ))
        };
        match s.split_once(':') {
            None if s == "global" => Ok(Order::Global),
            Some(("shards", k)) => match k.trim().parse::<usize>() {
                Ok(window) if window >= 1 => Ok(Order::Shards { window }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// How many samples each shard of the data set holds, in data set order: shard `s` holds
/// indices `starts[s]..starts[s + 1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardLayout {
    starts: Vec<usize>,
}

impl ShardLayout {
    /// The layout of shards of `sizes` samples.
    pub fn new(sizes: &[usize]) -> ShardLayout {
        let mut starts = Vec::with_capacity(sizes.len() + 1);
        let mut total = 0usize;
        for &n in sizes {
            starts.push(total);
            total += n;
        }
        starts.push(total);
        ShardLayout { starts }
    }

    /// Samples in all shards.
    pub fn samples(&self) -> usize {
        *self.starts.last().expect("starts holds the total")
    }

    /// Number of shards.
    pub fn count(&self) -> usize {
        self.starts.len() - 1
    }

    /// Samples of shard `s`.
    pub fn size(&self, s: usize) -> usize {
        self.starts[s + 1] - self.starts[s]
    }

    /// Data set index of shard `s`'s first sample.
    pub fn start(&self, s: usize) -> usize {
        self.starts[s]
    }

    /// The shard that holds data set index `index` (`< samples()`; empty shards are never
    /// the answer).
    pub fn shard_of(&self, index: usize) -> usize {
        self.starts.partition_point(|&s| s <= index) - 1
    }
}

/// The shard-aware global order of one epoch: computed once per epoch (`O(shards)`), then
/// each position maps to a data set index in `O(log shards)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardOrder {
    layout: Arc<ShardLayout>,
    /// `slot_start[j]`: the first position of the `j`-th shard of the shuffled order;
    /// `slot_start[shards]` the total.
    slot_start: Vec<usize>,
    /// The shard at each slot of the shuffled order.
    slot_shard: Vec<usize>,
    /// `window_start[w]`: the first position of window `w` (slot `w * k`); then the total.
    window_start: Vec<usize>,
    /// The permutation of each window's positions.
    window_perm: Vec<Permutation>,
}

impl ShardOrder {
    /// The order of `epoch` for `seed`, with windows of `window` shards.
    pub fn new(layout: Arc<ShardLayout>, window: usize, seed: u64, epoch: u64) -> ShardOrder {
        let shards = layout.count();
        let window = window.max(1);
        let perm = Permutation::new(shards, seed_of(&[seed, epoch, SHARDS_KEY]));
        let mut slot_start = Vec::with_capacity(shards + 1);
        let mut slot_shard = Vec::with_capacity(shards);
        let mut at = 0usize;
        for j in 0..shards {
            let s = perm.apply(j);
            slot_start.push(at);
            slot_shard.push(s);
            at += layout.size(s);
        }
        slot_start.push(at);
        let windows = shards.div_ceil(window);
        let mut window_start = Vec::with_capacity(windows + 1);
        let mut window_perm = Vec::with_capacity(windows);
        for w in 0..windows {
            let (a, b) = (
                slot_start[w * window],
                slot_start[((w + 1) * window).min(shards)],
            );
            window_start.push(a);
            window_perm.push(Permutation::new(
                b - a,
                seed_of(&[seed, epoch, WINDOW_KEY, w as u64]),
            ));
        }
        window_start.push(at);
        ShardOrder {
            layout,
            slot_start,
            slot_shard,
            window_start,
            window_perm,
        }
    }

    /// The data set index at global position `p` (`< samples`).
    #[inline]
    pub fn apply(&self, p: usize) -> usize {
        // The last window starting at or before `p` (empty windows are skipped).
        let w = self.window_start.partition_point(|&s| s <= p) - 1;
        let start = self.window_start[w];
        let q = start + self.window_perm[w].apply(p - start);
        let j = self.slot_start.partition_point(|&s| s <= q) - 1;
        self.layout.start(self.slot_shard[j]) + (q - self.slot_start[j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_parses_and_prints() {
        for s in ["global", "shards:1", "shards:16"] {
            assert_eq!(s.parse::<Order>().unwrap().to_string(), s);
        }
        for s in [
            "",
            "shards",
            "shards:",
            "shards:0",
            "shards:-1",
            "window:4",
            "Global",
        ] {
            let e = s.parse::<Order>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage, "{s}");
            assert!(e.message().contains("shards:K"), "{e}");
        }
        assert_eq!(Order::default(), Order::Global);
        let json = serde_json::to_string(&Order::Shards { window: 3 }).unwrap();
        assert_eq!(json, r#"{"shards":{"window":3}}"#);
        assert_eq!(
            serde_json::from_str::<Order>(&json).unwrap(),
            Order::Shards { window: 3 }
        );
    }

    #[test]
    fn layout_locates_indices() {
        let l = ShardLayout::new(&[3, 0, 2, 5]);
        assert_eq!((l.samples(), l.count()), (10, 4));
        let shards: Vec<usize> = (0..10).map(|i| l.shard_of(i)).collect();
        assert_eq!(shards, [0, 0, 0, 2, 2, 3, 3, 3, 3, 3]);
    }

    #[test]
    fn shard_order_is_a_permutation_grouped_by_window() {
        let sizes = [7, 3, 0, 12, 5, 5, 1, 9, 4];
        let layout = Arc::new(ShardLayout::new(&sizes));
        let n = layout.samples();
        for window in [1, 2, 3, 4, 9, 20] {
            for epoch in 0..4 {
                let o = ShardOrder::new(Arc::clone(&layout), window, 11, epoch);
                let order: Vec<usize> = (0..n).map(|p| o.apply(p)).collect();
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "k={window} e={epoch}");
                // Cut into runs of windows: each window's positions come from at most
                // `window` shards, and no shard appears in two windows.
                let mut owner = vec![usize::MAX; sizes.len()];
                for w in 0..o.window_perm.len() {
                    let (a, b) = (o.window_start[w], o.window_start[w + 1]);
                    let mut seen: Vec<usize> =
                        order[a..b].iter().map(|&i| layout.shard_of(i)).collect();
                    seen.sort_unstable();
                    seen.dedup();
                    assert!(seen.len() <= window, "k={window}: {seen:?}");
                    for s in seen {
                        assert!(owner[s] == usize::MAX || owner[s] == w, "shard {s} twice");
                        owner[s] = w;
                    }
                }
                // A pure function: rebuilt, the same.
                let again = ShardOrder::new(Arc::clone(&layout), window, 11, epoch);
                assert_eq!(o, again);
            }
        }
    }
}
