//! [`Checkpoint`]: what an epoch consumed, in global terms, so that it resumes at any world
//! size (elastic resume).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::Partition;
use super::rest::{Rest, normalize};
use super::shards::Order;
use crate::source::ShardInfo;
use crate::{Error, Result};

/// The data set a checkpoint belongs to: its sample count and, for a sharded source, each
/// shard's name and sample count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// Samples in the data set.
    pub samples: u64,
    /// The shards, in data set order (empty for a source that is not sharded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardInfo>,
}

/// The settings that shape an epoch's order and what a rank consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSettings {
    /// Shuffled epochs.
    pub shuffle: bool,
    /// The order mode.
    pub order: Order,
    /// How ranks are evened out.
    pub partition: Partition,
    /// Whether each rank drops its last partial batch.
    pub drop_last: bool,
}

/// One rank's progress in the layout a checkpoint part describes: positions
/// `positions.start..position` of its order were consumed. `positions` is the whole of the
/// rank's order for a [`Loader`](crate::Loader), a slice of it for a sliced
/// `BurnLoader` (feature `burn`; the slices of a rank together cover its order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankProgress {
    /// The rank.
    pub rank: usize,
    /// The world size the rank was part of.
    pub world_size: usize,
    /// The positions of the rank's order this part covers.
    pub positions: Range<u64>,
    /// The next position to consume (`positions.start..position` were consumed).
    pub position: u64,
}

/// What an epoch consumed, in global terms, so that it resumes at any world size (elastic
/// resume).
///
/// An epoch's *global order* is its permutation of the data set (`0..len`, or the
/// shard-aware order): it does not depend on the world size. The world size only decides how
/// it is dealt out: rank `r` of `N` takes global positions `r, r + N, r + 2N, ...`. So a
/// checkpoint states which **global positions** were consumed, and a resume at `M` ranks deals
/// out exactly the positions no rank consumed, `M` ways.
///
/// - Each rank saves its part ([`Loader::checkpoint`](crate::Loader::checkpoint)): its rank,
///   the world size and its position (positions count what a rank *consumed*, skipped
///   samples included, not what it delivered).
/// - The trainer gathers the parts (an all-gather of one small JSON object per rank) and
///   [`Checkpoint::merge`] turns them into one checkpoint of consumed global ranges. When every
///   rank is known to be at the same position (no skip policy), one rank's part is enough:
///   [`Checkpoint::every_rank_alike`]; the consumed set is then one range `0..position * N`.
/// - [`Loader::resume`](crate::Loader::resume) takes a merged checkpoint at any world size.
///
/// # The rest of an epoch
/// The positions of the global order `0..len` that are in no consumed range, in their order.
/// A resumed epoch deals them out as a fresh epoch deals out `0..len`: the `i`-th position
/// left goes to rank `i % M`, at its position `i / M`. Then, with `k` positions left:
/// - **[`Partition::Pad`](crate::Partition::Pad)**: every rank gets `ceil(k / M)` positions;
///   the `ceil(k / M) * M - k` positions past the rest repeat the epoch's global order from
///   its start (position 0, 1, ...), as an uninterrupted padded epoch does. A padded position
///   consumes that global position again (it was consumed before).
/// - **[`Partition::Drop`](crate::Partition::Drop)**: every rank gets `floor(k / M)`
///   positions; the last `k % M` positions of the rest are not seen in this epoch.
///
/// Under [`OnError::Skip`](crate::OnError::Skip), positions, not delivered samples, are
/// what is consumed: a skipped sample is not dealt out again.
///
/// With nothing consumed this is exactly an uninterrupted epoch, and a checkpoint taken at
/// `N` ranks that all stood at position `c` resumes at `N` ranks bit-identically to
/// `epoch_from(e, c)`. Positions a rank left unconsumed because `drop_last` dropped its last
/// partial batch are not consumed: a later resume deals them out again. A checkpoint taken
/// during a resumed epoch carries the consumed ranges it resumed from, so resumes chain.
///
/// # Parts and merged checkpoints
/// A checkpoint is a *part* while it holds ranks' positions ([`ranks`](Self::ranks), what
/// [`Loader::checkpoint`](crate::Loader::checkpoint) gives), and *merged* when they have
/// been turned into consumed global ranges ([`merge`](Self::merge)): only a merged one can be
/// resumed. It is plain serde data (save it as JSON next to the model).
///
/// ```
/// use stoker::sampler::Checkpoint;
/// use stoker::{Loader, source::NpySource};
/// let open = || NpySource::glob("fixtures/npy/images-*.npy", None);
/// // Two ranks consumed 2 and 3 batches of 4 (say one skipped samples): gather, merge.
/// let mut parts = Vec::new();
/// for (rank, position) in [(0, 8), (1, 12)] {
///     let l = Loader::builder(open()?).batch_size(4).shuffle(true).distributed(rank, 2).build()?;
///     parts.push(l.checkpoint(0, position));
/// }
/// let cp = Checkpoint::merge(&parts)?;
/// assert_eq!(cp.remaining(), 32 - 8 - 12);
/// let json = serde_json::to_string(&cp).unwrap();
/// // Resume at three ranks: together they see the 12 samples no rank consumed, once each.
/// let mut seen = Vec::new();
/// for rank in 0..3 {
///     let mut l = Loader::builder(open()?).batch_size(4).shuffle(true).distributed(rank, 3).build()?;
///     l.resume(&serde_json::from_str(&json).unwrap())?;
///     for b in l.epoch(0) { seen.extend_from_slice(b?.indices()); }
/// }
/// assert_eq!(seen.len(), 12);
/// seen.sort();
/// seen.dedup();
/// assert_eq!(seen.len(), 12);
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version ([`Checkpoint::VERSION`]).
    pub version: u32,
    /// The epoch.
    pub epoch: u64,
    /// The shuffle seed.
    pub seed: u64,
    /// The data set.
    pub data: DataFingerprint,
    /// The settings that shape the order.
    pub order: OrderSettings,
    /// Global positions consumed before the layout of [`ranks`](Self::ranks) began (for a
    /// merged checkpoint: all consumed ones), as sorted, disjoint, non-adjacent ranges.
    pub consumed: Vec<Range<u64>>,
    /// The ranks' positions not yet merged (empty in a merged checkpoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranks: Vec<RankProgress>,
}

impl Checkpoint {
    /// The format version this build writes and reads.
    pub const VERSION: u32 = 1;

    /// Whether this checkpoint is merged (holds no ranks' positions): only a merged one can
    /// be resumed.
    pub fn is_merged(&self) -> bool {
        self.ranks.is_empty()
    }

    /// Global positions of the epoch that no rank consumed (of a merged checkpoint; for a
    /// part, those left before its ranks' layout).
    pub fn remaining(&self) -> u64 {
        self.data.samples - self.consumed.iter().map(|r| r.end - r.start).sum::<u64>()
    }

    /// The first field in which `self` and `other` differ as checkpoints of one epoch of
    /// one loader (`"version"`, `"epoch"`, `"seed"`, `"samples"`, `"shards"`, `"shuffle"`,
    /// `"order"`, `"partition"`, `"drop_last"`), with both values as text; `None` when they
    /// agree. The consumed positions and ranks are not compared.
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let open = || NpySource::glob("fixtures/npy/images-*.npy", None);
    /// let a = Loader::builder(open()?).seed(1).build()?.checkpoint(0, 0);
    /// let b = Loader::builder(open()?).seed(2).build()?.checkpoint(0, 0);
    /// assert_eq!(a.differs_from(&b).unwrap().0, "seed");
    /// assert!(a.differs_from(&a).is_none());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn differs_from(&self, other: &Checkpoint) -> Option<(&'static str, String, String)> {
        let d = |field, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            Some((field, format!("{a:?}"), format!("{b:?}")))
        };
        let (o, p) = (&self.order, &other.order);
        if self.version != other.version {
            return d("version", &self.version, &other.version);
        }
        if self.epoch != other.epoch {
            return d("epoch", &self.epoch, &other.epoch);
        }
        if self.seed != other.seed {
            return d("seed", &self.seed, &other.seed);
        }
        if self.data.samples != other.data.samples {
            return d("samples", &self.data.samples, &other.data.samples);
        }
        if self.data.shards.len() != other.data.shards.len() {
            return d("shards", &self.data.shards.len(), &other.data.shards.len());
        }
        if let Some((a, b)) = self
            .data
            .shards
            .iter()
            .zip(&other.data.shards)
            .find(|(a, b)| a != b)
        {
            return d("shards", a, b);
        }
        if o.shuffle != p.shuffle {
            return d("shuffle", &o.shuffle, &p.shuffle);
        }
        if o.order != p.order {
            return Some(("order", o.order.to_string(), p.order.to_string()));
        }
        if o.partition != p.partition {
            return d("partition", &o.partition, &p.partition);
        }
        if o.drop_last != p.drop_last {
            return d("drop_last", &o.drop_last, &p.drop_last);
        }
        None
    }

    /// A usage error when this checkpoint cannot resume a loader whose own checkpoint of the
    /// same epoch is `mine`: not merged, or of another data set, seed or order (the error
    /// names the field), or with consumed positions outside the epoch.
    pub(crate) fn check_resumable(&self, mine: &Checkpoint) -> Result<Rest> {
        if !self.is_merged() {
            return Err(Error::usage(format!(
                "this checkpoint holds the positions of {} rank(s) not merged: gather every \
                 rank's checkpoint and merge them (Checkpoint::merge) first",
                self.ranks.len()
            )));
        }
        if let Some((field, theirs, ours)) = self.differs_from(mine) {
            return Err(Error::usage(format!(
                "this checkpoint is of another data set, seed or order: {field} {theirs} \
                 (this loader: {ours})"
            )));
        }
        Rest::new(self.data.samples as usize, &self.consumed)
    }

    /// Merges the checkpoint parts of every rank of one world size (gathered from the ranks,
    /// in any order; a sliced loader's rank may give several parts that together cover its
    /// order) into one merged checkpoint: the consumed ranges it started from, and every
    /// global position a rank consumed since.
    ///
    /// A usage error when the parts are of different epochs, data sets, seeds, orders or
    /// world sizes (naming the field), when a rank is missing or a rank's parts do not cover
    /// its order exactly once, or when there are none.
    pub fn merge(parts: &[Checkpoint]) -> Result<Checkpoint> {
        let first = parts
            .first()
            .ok_or_else(|| Error::usage("no checkpoint parts to merge"))?;
        let progress: Vec<&RankProgress> = parts.iter().flat_map(|p| &p.ranks).collect();
        for (k, p) in parts.iter().enumerate() {
            if let Some((field, a, b)) = p.differs_from(first) {
                return Err(Error::usage(format!(
                    "checkpoint part {k} is of another loader than part 0: {field} {a} \
                     (part 0: {b})"
                )));
            }
            if p.consumed != first.consumed {
                return Err(Error::usage(format!(
                    "checkpoint part {k} resumed from other consumed positions than part 0"
                )));
            }
            if p.ranks.is_empty() {
                return Err(Error::usage(format!(
                    "checkpoint part {k} is merged already: merge only parts"
                )));
            }
        }
        let world = progress[0].world_size;
        if let Some(p) = progress.iter().find(|p| p.world_size != world) {
            return Err(Error::usage(format!(
                "checkpoint parts of world sizes {world} and {}: merge one world's parts",
                p.world_size
            )));
        }
        let n = first.data.samples as usize;
        let rest = Rest::new(n, &first.consumed)?;
        let per_rank = per_rank(rest.len(), world, first.order.partition) as u64;
        // Each rank's consumed positions, checked to be covered once.
        let mut taken: Vec<Vec<Range<u64>>> = vec![Vec::new(); world];
        let mut cover: Vec<Vec<&RankProgress>> = vec![Vec::new(); world];
        for p in &progress {
            if p.rank >= world {
                return Err(Error::usage(format!(
                    "checkpoint part of rank {} in a world of {world}",
                    p.rank
                )));
            }
            if p.position < p.positions.start || p.position > p.positions.end {
                return Err(Error::usage(format!(
                    "rank {}'s position {} is outside its positions {}..{}",
                    p.rank, p.position, p.positions.start, p.positions.end
                )));
            }
            cover[p.rank].push(p);
            taken[p.rank].push(p.positions.start..p.position);
        }
        for (rank, parts) in cover.iter_mut().enumerate() {
            parts.sort_by_key(|p| p.positions.start);
            let mut at = 0;
            for p in parts.iter() {
                if p.positions.start != at {
                    return Err(Error::usage(if p.positions.start > at {
                        format!(
                            "rank {rank}'s positions {at}..{} are in no checkpoint part",
                            p.positions.start
                        )
                    } else {
                        format!(
                            "rank {rank}'s positions from {} are in two parts",
                            p.positions.start
                        )
                    }));
                }
                at = p.positions.end;
            }
            if at != per_rank {
                return Err(Error::usage(if parts.is_empty() {
                    format!("no checkpoint part of rank {rank} (of {world} ranks)")
                } else {
                    format!("rank {rank}'s positions {at}..{per_rank} are in no checkpoint part")
                }));
            }
        }
        let mut consumed = first.consumed.clone();
        consumed.extend(layout_consumed(&rest, n, world, taken));
        Ok(Checkpoint {
            consumed: normalize(consumed),
            ranks: Vec::new(),
            ..first.clone()
        })
    }

    /// The merged checkpoint when every rank of this part's world consumed what its one rank
    /// did (the same positions): no all-gather needed. Right when ranks move in lockstep and
    /// nothing is skipped; under [`OnError::Skip`](crate::OnError::Skip) ranks drift apart,
    /// so gather and [`merge`](Self::merge) instead. A usage error for a merged checkpoint or
    /// one of several ranks' positions.
    ///
    /// ```
    /// # use stoker::{Loader, source::NpySource};
    /// let l = Loader::builder(NpySource::glob("fixtures/npy/images-*.npy", None)?)
    ///     .batch_size(4).distributed(1, 4).build()?;
    /// let cp = l.checkpoint(0, 4).every_rank_alike()?;
    /// assert_eq!(cp.consumed, [0..16]); // 4 positions on each of 4 ranks
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn every_rank_alike(&self) -> Result<Checkpoint> {
        let [p] = self.ranks.as_slice() else {
            return Err(Error::usage(format!(
                "every_rank_alike takes the checkpoint part of one rank (this one holds {})",
                self.ranks.len()
            )));
        };
        let ranks = (0..p.world_size)
            .map(|rank| RankProgress { rank, ..p.clone() })
            .collect();
        Checkpoint::merge(&[Checkpoint {
            ranks,
            ..self.clone()
        }])
    }
}

/// Samples per rank when `k` positions are dealt out across `world` ranks.
pub(crate) fn per_rank(k: usize, world: usize, partition: Partition) -> usize {
    match partition {
        Partition::Pad => k.div_ceil(world),
        Partition::Drop => k / world,
    }
}

/// The global ranges consumed by ranks that took positions `taken[r]` (ranges of rank `r`'s
/// order) in the layout that deals `rest` out across `world` ranks (layout index
/// `q * world + r`; indices past the rest are padding, global position `(i - k) % n`).
fn layout_consumed(
    rest: &Rest,
    n: usize,
    world: usize,
    mut taken: Vec<Vec<Range<u64>>>,
) -> Vec<Range<u64>> {
    for t in &mut taken {
        *t = normalize(std::mem::take(t));
    }
    // Breakpoints in rank-position space: between two, the set of ranks that consumed the
    // position is the same for every position.
    let mut cuts: Vec<u64> = taken
        .iter()
        .flatten()
        .flat_map(|r| [r.start, r.end])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let covers = |r: usize, q: u64| taken[r].iter().any(|x| x.start <= q && q < x.end);
    let mut index_ranges: Vec<Range<u64>> = Vec::new();
    let w = world as u64;
    for pair in cuts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let ranks: Vec<usize> = (0..world).filter(|&r| covers(r, a)).collect();
        if ranks.len() == world {
            index_ranges.push(a * w..b * w);
        } else {
            for q in a..b {
                for &r in &ranks {
                    index_ranges.push(q * w + r as u64..q * w + r as u64 + 1);
                }
            }
        }
    }
    let k = rest.len() as u64;
    let mut out = Vec::new();
    for ir in normalize(index_ranges) {
        let (a, b) = (ir.start, ir.end);
        rest.ranges(a.min(k) as usize, b.min(k) as usize, &mut out);
        for i in a.max(k)..b {
            let p = (i - k) % n as u64;
            out.push(p..p + 1);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // ranges are the values here
mod tests {
    use super::*;

    fn part(world: usize, ranks: &[(usize, Range<u64>, u64)]) -> Checkpoint {
        Checkpoint {
            version: Checkpoint::VERSION,
            epoch: 3,
            seed: 1,
            data: DataFingerprint {
                samples: 10,
                shards: Vec::new(),
            },
            order: OrderSettings {
                shuffle: true,
                order: Order::Global,
                partition: Partition::Pad,
                drop_last: false,
            },
            consumed: Vec::new(),
            ranks: ranks
                .iter()
                .map(|(rank, positions, position)| RankProgress {
                    rank: *rank,
                    world_size: world,
                    positions: positions.clone(),
                    position: *position,
                })
                .collect(),
        }
    }

    #[test]
    fn equal_positions_merge_into_one_prefix() {
        // 10 samples over 4 ranks, padded to 3 each; all at 2: global 0..8.
        let parts: Vec<Checkpoint> = (0..4).map(|r| part(4, &[(r, 0..3, 2)])).collect();
        assert_eq!(Checkpoint::merge(&parts).unwrap().consumed, [0..8]);
        // At the end, padding positions 10 and 11 wrap to 0 and 1: everything consumed.
        let parts: Vec<Checkpoint> = (0..4).map(|r| part(4, &[(r, 0..3, 3)])).collect();
        let cp = Checkpoint::merge(&parts).unwrap();
        assert_eq!((cp.consumed.clone(), cp.remaining()), (vec![0..10], 0));
    }

    #[test]
    fn uneven_positions_merge_into_ranges() {
        // Rank 0 at 2 (global 0, 4), rank 1 at 1 (global 1), rank 2 at 3 (2, 6, 10 -> 0).
        let parts = [
            part(4, &[(0, 0..3, 2)]),
            part(4, &[(1, 0..3, 1)]),
            part(4, &[(2, 0..3, 3)]),
            part(4, &[(3, 0..3, 0)]),
        ];
        let cp = Checkpoint::merge(&parts).unwrap();
        assert_eq!(cp.consumed, [0..3, 4..5, 6..7]);
        assert!(cp.is_merged());
        // Slices of one rank merge like a whole rank.
        let parts = [
            part(2, &[(0, 0..2, 1), (0, 2..5, 4)]),
            part(2, &[(1, 0..5, 0)]),
        ];
        assert_eq!(
            Checkpoint::merge(&parts).unwrap().consumed,
            [0..1, 4..5, 6..7]
        );
    }

    #[test]
    fn merge_names_what_is_wrong() {
        let msg =
            |parts: &[Checkpoint]| Checkpoint::merge(parts).unwrap_err().message().to_string();
        assert_eq!(msg(&[]), "no checkpoint parts to merge");
        assert_eq!(
            msg(&[part(2, &[(0, 0..5, 1)])]),
            "no checkpoint part of rank 1 (of 2 ranks)"
        );
        assert_eq!(
            msg(&[part(2, &[(0, 0..5, 1), (1, 0..3, 1)])]),
            "rank 1's positions 3..5 are in no checkpoint part"
        );
        assert_eq!(
            msg(&[part(2, &[(0, 0..5, 1), (1, 0..5, 1), (1, 2..5, 2)])]),
            "rank 1's positions from 2 are in two parts"
        );
        let mut other = part(2, &[(1, 0..5, 1)]);
        other.seed = 9;
        assert_eq!(
            msg(&[part(2, &[(0, 0..5, 1)]), other]),
            "checkpoint part 1 is of another loader than part 0: seed 9 (part 0: 1)"
        );
        assert!(msg(&[part(2, &[(0, 0..5, 1)]), part(3, &[(1, 0..5, 1)])]).contains("world sizes"));
        assert!(msg(&[part(2, &[(0, 0..5, 6), (1, 0..5, 1)])]).contains("outside"));
        let merged = Checkpoint::merge(&[part(1, &[(0, 0..10, 4)])]).unwrap();
        assert!(msg(&[merged]).contains("merged already"));
    }

    #[test]
    fn every_rank_alike_replicates_one_part() {
        let cp = part(4, &[(2, 0..3, 2)]).every_rank_alike().unwrap();
        assert_eq!(cp.consumed, [0..8]);
        assert!(cp.every_rank_alike().is_err());
    }

    #[test]
    fn json_round_trip() {
        let cp = Checkpoint::merge(&[part(1, &[(0, 0..10, 4)])]).unwrap();
        let json = serde_json::to_string(&cp).unwrap();
        assert!(
            json.contains(r#""consumed":[{"start":0,"end":4}]"#),
            "{json}"
        );
        assert!(!json.contains("ranks"));
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), cp);
    }
}
