//! Sampler: the order of an epoch, a pure function of (seed, epoch, rank, world size, position).
//!
//! Every position of an epoch maps to a data set index in O(1), so an epoch can be resumed
//! from any position and yields exactly what an uninterrupted run would. The global order of
//! an epoch is a [`Permutation`] keyed by `seed_of(&[seed, epoch])` (or `0..len` when not
//! shuffled); it is padded or truncated to a multiple of the world size and dealt out to the
//! ranks interleaved, as PyTorch's `DistributedSampler` does (`indices[rank:total:world]`).
//!
//! ```
//! use stoker::Sampler;
//! let s = Sampler::new(10).shuffle(true).seed(7).distributed(1, 4).unwrap();
//! let order = s.epoch(3);
//! assert_eq!(order.len(), 3); // ceil(10 / 4), padded
//! let all: Vec<usize> = order.iter_from(0).collect();
//! let tail: Vec<usize> = order.iter_from(1).collect();
//! assert_eq!(&all[1..], &tail[..]);
//! ```

use std::iter::FusedIterator;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::launch::{Placement, RankSource};
use crate::rng::seed_of;
use crate::{Error, Result};

mod checkpoint;
mod permutation;
mod rest;
mod shards;

pub use checkpoint::{Checkpoint, DataFingerprint, OrderSettings, RankProgress};
pub use permutation::Permutation;
use rest::Rest;
pub use shards::Order;
use shards::{ShardLayout, ShardOrder};

/// Positions of each rank's order when the epoch of merged `checkpoint` resumes at `world`
/// ranks.
#[cfg_attr(not(feature = "burn"), allow(dead_code))]
pub(crate) fn per_rank_after(checkpoint: &Checkpoint, world: usize) -> usize {
    checkpoint::per_rank(
        checkpoint.remaining() as usize,
        world,
        checkpoint.order.partition,
    )
}

/// How ranks are evened out when the data set does not divide by the world size.
///
/// ```
/// use stoker::{Partition, Sampler};
/// let s = Sampler::new(10).distributed(0, 4).unwrap();
/// assert_eq!(s.clone().partition(Partition::Pad).samples_per_rank(), 3);
/// assert_eq!(s.partition(Partition::Drop).samples_per_rank(), 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partition {
    /// Repeat samples from the start of the epoch's order (PyTorch's DistributedSampler).
    Pad,
    /// Drop the tail so every rank gets `len / world_size` samples.
    Drop,
}

/// Decides which samples a rank sees in an epoch, and in what order.
///
/// ```
/// use stoker::Sampler;
/// let s = Sampler::new(5);
/// assert_eq!(s.epoch(0).iter_from(0).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampler {
    len: usize,
    shuffle: bool,
    seed: u64,
    rank: usize,
    world_size: usize,
    partition: Partition,
    rank_source: RankSource,
    local_rank: Option<usize>,
    local_world_size: Option<usize>,
    order: Order,
    /// Samples per shard, when known (else the data set is one shard).
    shards: Option<Arc<ShardLayout>>,
    /// The epoch resumed from a checkpoint, and what is left of it.
    resumed: Option<(u64, Arc<Rest>)>,
}

impl Sampler {
    /// Sequential order over `len` samples, seed 0, rank 0 of 1, [`Partition::Pad`].
    ///
    /// ```
    /// let s = stoker::Sampler::new(3);
    /// assert_eq!((s.len(), s.rank(), s.world_size(), s.is_shuffled()), (3, 0, 1, false));
    /// ```
    pub fn new(len: usize) -> Self {
        Sampler {
            len,
            shuffle: false,
            seed: 0,
            rank: 0,
            world_size: 1,
            partition: Partition::Pad,
            rank_source: RankSource::None,
            local_rank: None,
            local_world_size: None,
            order: Order::Global,
            shards: None,
            resumed: None,
        }
    }

    /// How a shuffled epoch's global order is made (default [`Order::Global`]).
    ///
    /// ```
    /// use stoker::{Sampler, sampler::Order};
    /// let s = Sampler::new(8).shuffle(true).order(Order::Shards { window: 2 });
    /// assert_eq!(s.order_mode(), Order::Shards { window: 2 });
    /// ```
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// The order mode.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(3).order_mode(), stoker::sampler::Order::Global);
    /// ```
    pub fn order_mode(&self) -> Order {
        self.order
    }

    /// The number of samples in each shard of the data set, in data set order (shard `s`
    /// holds the indices after those of shards `0..s`): what [`Order::Shards`] shuffles and
    /// what [`EpochOrder::shard_of`] answers. Without it, the data set is one shard. A usage
    /// error when the sizes do not add up to [`len`](Self::len).
    ///
    /// ```
    /// let s = stoker::Sampler::new(10).shard_sizes(&[4, 6]).unwrap();
    /// assert_eq!(s.epoch(0).shard_of(5), Some(1));
    /// assert!(stoker::Sampler::new(10).shard_sizes(&[4, 5]).is_err());
    /// ```
    pub fn shard_sizes(mut self, sizes: &[usize]) -> Result<Self> {
        let layout = ShardLayout::new(sizes);
        if layout.samples() != self.len {
            return Err(Error::usage(format!(
                "{} shards hold {} samples, but the data set has {}",
                sizes.len(),
                layout.samples(),
                self.len
            )));
        }
        self.shards = Some(Arc::new(layout));
        Ok(self)
    }

    /// Makes `epoch` the rest of that epoch after the global positions `consumed` (sorted,
    /// disjoint, non-adjacent ranges of the epoch's global order, as a merged
    /// [`Checkpoint`] holds them): the positions left are dealt out across this sampler's
    /// ranks as a fresh epoch's are (see [`Checkpoint`] for what the rest is under each
    /// [`Partition`]). Other epochs are unchanged. A usage error when the ranges
    /// are not sorted and disjoint or reach past the data set.
    ///
    /// ```
    /// let s = stoker::Sampler::new(10).distributed(1, 2).unwrap().resume_epoch(3, &[0..6]).unwrap();
    /// assert_eq!(s.epoch(3).iter_from(0).collect::<Vec<_>>(), vec![7, 9]);
    /// assert_eq!(s.epoch(4).len(), 5);
    /// ```
    pub fn resume_epoch(mut self, epoch: u64, consumed: &[Range<u64>]) -> Result<Self> {
        self.resumed = Some((epoch, Arc::new(Rest::new(self.len, consumed)?)));
        Ok(self)
    }

    /// The global positions of `epoch` consumed before this sampler's ranks began it
    /// ([`resume_epoch`](Self::resume_epoch)); empty for an epoch begun afresh.
    ///
    /// ```
    /// let s = stoker::Sampler::new(10).resume_epoch(3, &[0..6]).unwrap();
    /// assert_eq!((s.consumed_before(3), s.consumed_before(2)), (&[0..6][..], &[][..]));
    /// ```
    pub fn consumed_before(&self, epoch: u64) -> &[Range<u64>] {
        match &self.resumed {
            Some((e, rest)) if *e == epoch => rest.consumed(),
            _ => &[],
        }
    }

    /// Shuffles each epoch (a different order per epoch) when `true`.
    ///
    /// ```
    /// assert!(stoker::Sampler::new(3).shuffle(true).is_shuffled());
    /// ```
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// Seed of the shuffle (all ranks must use the same one).
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(3).seed(9).seed_value(), 9);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How an uneven split across ranks is evened out.
    ///
    /// ```
    /// use stoker::{Partition, Sampler};
    /// assert_eq!(Sampler::new(3).partition(Partition::Drop).partition_mode(), Partition::Drop);
    /// ```
    pub fn partition(mut self, partition: Partition) -> Self {
        self.partition = partition;
        self
    }

    /// This sampler as rank `rank` of `world_size` data-parallel processes
    /// ([`RankSource::Args`]).
    ///
    /// ```
    /// let s = stoker::Sampler::new(8).distributed(1, 2).unwrap();
    /// assert_eq!(s.epoch(0).iter_from(0).collect::<Vec<_>>(), vec![1, 3, 5, 7]);
    /// assert_eq!(s.rank_source().as_str(), "args");
    /// assert!(stoker::Sampler::new(8).distributed(2, 2).is_err());
    /// assert!(stoker::Sampler::new(8).distributed(0, 0).is_err());
    /// ```
    pub fn distributed(self, rank: usize, world_size: usize) -> Result<Self> {
        self.placed(Placement {
            rank,
            world_size,
            local_rank: None,
            local_world_size: None,
            source: RankSource::Args,
        })
    }

    /// This sampler at `placement` (rank, world size, local ones, where they came from).
    ///
    /// ```
    /// use stoker::launch::{Placement, RankSource};
    /// let p = Placement { rank: 1, world_size: 2, local_rank: Some(1), local_world_size: Some(2),
    ///     source: RankSource::Slurm };
    /// let s = stoker::Sampler::new(8).placed(p).unwrap();
    /// assert_eq!((s.rank(), s.local_rank(), s.rank_source()), (1, Some(1), RankSource::Slurm));
    /// assert_eq!(s.placement(), p);
    /// ```
    pub fn placed(mut self, placement: Placement) -> Result<Self> {
        let Placement {
            rank,
            world_size,
            local_rank,
            local_world_size,
            source,
        } = placement;
        if world_size == 0 {
            return Err(Error::usage("world_size must be > 0"));
        }
        if rank >= world_size {
            return Err(Error::usage(format!(
                "rank {rank} must be < world_size {world_size}"
            )));
        }
        self.rank = rank;
        self.world_size = world_size;
        self.rank_source = source;
        self.local_rank = local_rank;
        self.local_world_size = local_world_size;
        Ok(self)
    }

    /// Rank and world size from the environment of the launcher that started the process
    /// (torchrun, MPICH/PMI, Open MPI, a Slurm `srun` step; see [`crate::launch`]); unchanged
    /// when no launcher's variables are set. [`Placement::from_env`] is what reads them.
    ///
    /// ```
    /// // Outside any launcher none of the variables is usually set.
    /// if stoker::launch::Placement::from_env().is_ok_and(|p| p.world_size == 1) {
    ///     let s = stoker::Sampler::new(4).distributed_from_env().unwrap();
    ///     assert_eq!((s.rank(), s.world_size()), (0, 1));
    /// }
    /// ```
    pub fn distributed_from_env(self) -> Result<Self> {
        self.distributed_from(Placement::from_env()?)
    }

    /// Like [`distributed_from_env`](Self::distributed_from_env), from the variables
    /// `var(name)` gives ([`Placement::from_vars`]).
    ///
    /// ```
    /// let vars = |name: &str| match name {
    ///     "OMPI_COMM_WORLD_RANK" => Some("1".into()),
    ///     "OMPI_COMM_WORLD_SIZE" => Some("2".into()),
    ///     _ => None,
    /// };
    /// let s = stoker::Sampler::new(8).distributed_from_vars(vars).unwrap();
    /// assert_eq!((s.rank(), s.world_size(), s.rank_source().as_str()), (1, 2, "openmpi"));
    /// ```
    pub fn distributed_from_vars(
        self,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self> {
        self.distributed_from(Placement::from_vars(var)?)
    }

    /// Like [`distributed_from_env`](Self::distributed_from_env), from the values of `RANK`
    /// and `WORLD_SIZE` only. Both absent: unchanged; only one set, or a value that is not a
    /// non-negative integer: a usage error naming the variable.
    ///
    /// ```
    /// use stoker::Sampler;
    /// let s = Sampler::new(8).distributed_from_values(Some("2"), Some("4")).unwrap();
    /// assert_eq!((s.rank(), s.world_size()), (2, 4));
    /// let e = Sampler::new(8).distributed_from_values(Some("x"), Some("4")).unwrap_err();
    /// assert_eq!(e.to_string(), "usage: invalid RANK \"x\": expected a non-negative integer");
    /// ```
    pub fn distributed_from_values(self, rank: Option<&str>, world: Option<&str>) -> Result<Self> {
        self.distributed_from_vars(|name| match name {
            "RANK" => rank.map(Into::into),
            "WORLD_SIZE" => world.map(Into::into),
            _ => None,
        })
    }

    /// `placement` unless it is from no launcher ([`RankSource::None`]): then unchanged.
    fn distributed_from(self, placement: Placement) -> Result<Self> {
        match placement.source {
            RankSource::None => Ok(self),
            _ => self.placed(placement),
        }
    }

    /// Number of samples in the data set.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).len(), 7);
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the data set is empty.
    ///
    /// ```
    /// assert!(stoker::Sampler::new(0).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This process's rank.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).distributed(2, 3).unwrap().rank(), 2);
    /// ```
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of data-parallel processes.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).distributed(2, 3).unwrap().world_size(), 3);
    /// ```
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Where the rank and world size came from: a launcher's variables, the program's
    /// arguments ([`RankSource::Args`]) or nowhere ([`RankSource::None`], rank 0 of 1).
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).rank_source(), stoker::launch::RankSource::None);
    /// ```
    pub fn rank_source(&self) -> RankSource {
        self.rank_source
    }

    /// This process's rank on its node, when its launcher gave it (`LOCAL_RANK`,
    /// `MPI_LOCALRANKID`, `OMPI_COMM_WORLD_LOCAL_RANK`, `SLURM_LOCALID`).
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).distributed(2, 3).unwrap().local_rank(), None);
    /// ```
    pub fn local_rank(&self) -> Option<usize> {
        self.local_rank
    }

    /// Ranks on this node, when the launcher gave it (`LOCAL_WORLD_SIZE`, `MPI_LOCALNRANKS`,
    /// `OMPI_COMM_WORLD_LOCAL_SIZE`).
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).local_world_size(), None);
    /// ```
    pub fn local_world_size(&self) -> Option<usize> {
        self.local_world_size
    }

    /// Rank, world size, local ones and their source together.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).placement(), stoker::launch::Placement::single());
    /// ```
    pub fn placement(&self) -> Placement {
        Placement {
            rank: self.rank,
            world_size: self.world_size,
            local_rank: self.local_rank,
            local_world_size: self.local_world_size,
            source: self.rank_source,
        }
    }

    /// `true` when epochs are shuffled.
    ///
    /// ```
    /// assert!(!stoker::Sampler::new(7).is_shuffled());
    /// ```
    pub fn is_shuffled(&self) -> bool {
        self.shuffle
    }

    /// The shuffle seed.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).seed_value(), 0);
    /// ```
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// How an uneven split across ranks is evened out.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(7).partition_mode(), stoker::Partition::Pad);
    /// ```
    pub fn partition_mode(&self) -> Partition {
        self.partition
    }

    /// Samples each rank sees per epoch: `ceil(len / world_size)` with [`Partition::Pad`],
    /// `floor(len / world_size)` with [`Partition::Drop`].
    ///
    /// ```
    /// let s = stoker::Sampler::new(2).distributed(0, 4).unwrap();
    /// assert_eq!(s.samples_per_rank(), 1);
    /// ```
    pub fn samples_per_rank(&self) -> usize {
        match self.partition {
            Partition::Pad => self.len.div_ceil(self.world_size),
            Partition::Drop => self.len / self.world_size,
        }
    }

    /// The order of `epoch` for this rank (cheap: nothing is materialised).
    ///
    /// ```
    /// let s = stoker::Sampler::new(100).shuffle(true).seed(1);
    /// assert_eq!(s.epoch(4).epoch(), 4);
    /// assert_ne!(
    ///     s.epoch(0).iter_from(0).collect::<Vec<_>>(),
    ///     s.epoch(1).iter_from(0).collect::<Vec<_>>()
    /// );
    /// ```
    pub fn epoch(&self, epoch: u64) -> EpochOrder {
        let rest = match &self.resumed {
            Some((e, rest)) if *e == epoch => Some(Arc::clone(rest)),
            _ => None,
        };
        let per_rank = match &rest {
            Some(rest) => checkpoint::per_rank(rest.len(), self.world_size, self.partition),
            None => self.samples_per_rank(),
        };
        let global = match (self.shuffle, self.order) {
            (false, _) => Global::Identity,
            (true, Order::Global) => {
                Global::Permuted(Permutation::new(self.len, seed_of(&[self.seed, epoch])))
            }
            (true, Order::Shards { window }) => {
                let layout = self
                    .shards
                    .clone()
                    .unwrap_or_else(|| Arc::new(ShardLayout::new(&[self.len])));
                Global::Shards(Arc::new(ShardOrder::new(layout, window, self.seed, epoch)))
            }
        };
        EpochOrder {
            epoch,
            n: self.len,
            per_rank,
            rank: self.rank,
            world_size: self.world_size,
            global,
            rest,
            shards: self.shards.clone(),
        }
    }
}

/// The order of one epoch for one rank: `len()` positions, each mapped to a data set index in O(1).
///
/// ```
/// let order = stoker::Sampler::new(6).distributed(0, 4).unwrap().epoch(0);
/// // Global order 0..6 padded to 8 with 0, 1; rank 0 takes global positions 0 and 4.
/// assert_eq!((order.len(), order.index(0), order.index(1)), (2, 0, 4));
/// assert_eq!(order.get(2), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochOrder {
    epoch: u64,
    n: usize,
    per_rank: usize,
    rank: usize,
    world_size: usize,
    global: Global,
    /// What is left of a resumed epoch (`None`: the whole epoch).
    rest: Option<Arc<Rest>>,
    shards: Option<Arc<ShardLayout>>,
}

/// The epoch's global order: global position to data set index.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Global {
    Identity,
    Permuted(Permutation),
    Shards(Arc<ShardOrder>),
}

impl EpochOrder {
    /// The epoch this order belongs to.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(3).epoch(2).epoch(), 2);
    /// ```
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Samples this rank sees in the epoch.
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(3).epoch(0).len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.per_rank
    }

    /// `true` when the rank sees no samples.
    ///
    /// ```
    /// assert!(stoker::Sampler::new(0).epoch(0).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.per_rank == 0
    }

    /// Data set index at `position`, or `None` when `position >= len()`.
    ///
    /// ```
    /// let order = stoker::Sampler::new(3).epoch(0);
    /// assert_eq!((order.get(2), order.get(3)), (Some(2), None));
    /// ```
    pub fn get(&self, position: usize) -> Option<usize> {
        (position < self.per_rank).then(|| self.index_unchecked(position))
    }

    /// Data set index at `position`. Precondition: `position < len()` (panics otherwise;
    /// use [`get`](Self::get) to check).
    ///
    /// ```
    /// assert_eq!(stoker::Sampler::new(3).epoch(0).index(1), 1);
    /// ```
    pub fn index(&self, position: usize) -> usize {
        assert!(
            position < self.per_rank,
            "epoch position {position} out of range 0..{}",
            self.per_rank
        );
        self.index_unchecked(position)
    }

    /// The indices from `position` to the end of the epoch (empty when `position >= len()`),
    /// exactly the tail of `iter_from(0)`: resuming mid-epoch.
    ///
    /// ```
    /// let order = stoker::Sampler::new(5).shuffle(true).epoch(0);
    /// let all: Vec<usize> = order.iter_from(0).collect();
    /// assert_eq!(order.iter_from(2).collect::<Vec<_>>(), all[2..].to_vec());
    /// assert_eq!(order.iter_from(9).len(), 0);
    /// ```
    pub fn iter_from(&self, position: usize) -> EpochIter {
        EpochIter {
            order: self.clone(),
            front: position.min(self.per_rank),
            back: self.per_rank,
        }
    }

    /// The shard that holds the sample at `position` of this rank's order (`None` past
    /// the end): shards as [`Sampler::shard_sizes`] gave them, else 0 (one shard). What a
    /// fetcher asks to know which shard a rank needs next.
    ///
    /// ```
    /// let s = stoker::Sampler::new(6).shard_sizes(&[2, 2, 2]).unwrap();
    /// let order = s.epoch(0);
    /// let shards: Vec<_> = (0..7).map(|p| order.shard_of(p)).collect();
    /// assert_eq!(shards, [Some(0), Some(0), Some(1), Some(1), Some(2), Some(2), None]);
    /// ```
    pub fn shard_of(&self, position: usize) -> Option<usize> {
        let index = self.get(position)?;
        Some(self.shards.as_ref().map_or(0, |l| l.shard_of(index)))
    }

    /// The shards this rank needs from `position` on, in the order it needs them: each item
    /// is `(position, shard)` where the shard differs from the one before (consecutive
    /// positions of one shard give one item). Under [`Order::Shards`] a rank needs the
    /// shards of one window at a time, and leaves each for good when the window ends.
    ///
    /// ```
    /// use stoker::{Sampler, sampler::Order};
    /// let s = Sampler::new(6).shard_sizes(&[2, 2, 2]).unwrap();
    /// let needs: Vec<_> = s.epoch(0).shards_from(1).collect();
    /// assert_eq!(needs, [(1, 0), (2, 1), (4, 2)]);
    /// ```
    pub fn shards_from(&self, position: usize) -> ShardsFrom {
        ShardsFrom {
            order: self.clone(),
            position,
            last: None,
        }
    }

    /// The layout index `q * world_size + rank` of position `q`, wide enough not to overflow.
    #[inline]
    fn layout_index(&self, q: usize) -> u128 {
        q as u128 * self.world_size as u128 + self.rank as u128
    }

    /// Global position `q * world_size + rank` (of the rest, for a resumed epoch), wrapped
    /// into the epoch's order; `q < len()`.
    #[inline]
    fn index_unchecked(&self, q: usize) -> usize {
        let p = match &self.rest {
            None => match q
                .checked_mul(self.world_size)
                .and_then(|x| x.checked_add(self.rank))
            {
                Some(p) if p < self.n => p,
                Some(p) => p % self.n,
                None => (self.layout_index(q) % self.n as u128) as usize,
            },
            Some(rest) => {
                let i = self.layout_index(q);
                let k = rest.len() as u128;
                if i < k {
                    rest.position(i as usize)
                } else {
                    // Padding repeats the epoch's global order from its start.
                    ((i - k) % self.n as u128) as usize
                }
            }
        };
        match &self.global {
            Global::Identity => p,
            Global::Permuted(perm) => perm.apply(p),
            Global::Shards(order) => order.apply(p),
        }
    }
}

/// Iterator over the data set indices of an [`EpochOrder`] from some position on.
///
/// ```
/// let mut it = stoker::Sampler::new(4).epoch(0).iter_from(1);
/// assert_eq!(it.len(), 3);
/// assert_eq!(it.next(), Some(1));
/// assert_eq!(it.next_back(), Some(3));
/// assert_eq!(it.position(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct EpochIter {
    order: EpochOrder,
    front: usize,
    back: usize,
}

impl EpochIter {
    /// The epoch position of the next item from the front (what to save to resume later).
    ///
    /// ```
    /// let mut it = stoker::Sampler::new(4).epoch(0).iter_from(0);
    /// it.next();
    /// assert_eq!(it.position(), 1);
    /// ```
    pub fn position(&self) -> usize {
        self.front
    }
}

impl Iterator for EpochIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.front >= self.back {
            return None;
        }
        let i = self.order.index_unchecked(self.front);
        self.front += 1;
        Some(i)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }

    fn nth(&mut self, n: usize) -> Option<usize> {
        self.front = self.front.saturating_add(n).min(self.back);
        self.next()
    }
}

impl DoubleEndedIterator for EpochIter {
    fn next_back(&mut self) -> Option<usize> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        Some(self.order.index_unchecked(self.back))
    }
}

impl ExactSizeIterator for EpochIter {}

/// The shards a rank needs, in order: see [`EpochOrder::shards_from`].
#[derive(Clone, Debug)]
pub struct ShardsFrom {
    order: EpochOrder,
    position: usize,
    last: Option<usize>,
}

impl Iterator for ShardsFrom {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        loop {
            let p = self.position;
            let shard = self.order.shard_of(p)?;
            self.position += 1;
            if self.last != Some(shard) {
                self.last = Some(shard);
                return Some((p, shard));
            }
        }
    }
}

impl FusedIterator for ShardsFrom {}

impl FusedIterator for EpochIter {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::collections::HashSet;

    fn collect(order: &EpochOrder) -> Vec<usize> {
        order.iter_from(0).collect()
    }

    fn assert_bijection(n: usize, key: u64) {
        let p = Permutation::new(n, key);
        let mut seen = vec![false; n];
        for i in 0..n {
            let j = p.apply(i);
            assert!(j < n, "n={n} key={key}: {i} -> {j}");
            assert!(!seen[j], "n={n} key={key}: {j} hit twice");
            seen[j] = true;
            assert_eq!(p.invert(j), i, "n={n} key={key}");
        }
    }

    #[test]
    fn permutation_is_a_bijection() {
        let sizes = [
            0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 64, 65, 101, 997, 1000, 4096, 4097, 7919,
        ];
        for &n in &sizes {
            for key in [0, 1, 2, 0xdead_beef, u64::MAX] {
                assert_bijection(n, key);
            }
        }
    }

    #[test]
    fn permutation_small_sizes() {
        assert!(Permutation::new(0, 5).is_empty());
        assert_eq!(Permutation::new(1, 5).apply(0), 0);
        // Over a few keys n = 2 must show both orders.
        let swaps: HashSet<usize> = (0..32).map(|k| Permutation::new(2, k).apply(0)).collect();
        assert_eq!(swaps.len(), 2);
    }

    #[test]
    fn permutation_huge_domains_do_not_overflow() {
        for n in [1usize << 40, (1 << 40) + 1, (1 << 62) + 3, usize::MAX] {
            let p = Permutation::new(n, 11);
            let points = [0, 1, n / 2, n - 2, n - 1];
            let images: HashSet<usize> = points.iter().map(|&i| p.apply(i)).collect();
            assert_eq!(images.len(), points.len(), "n={n}");
            for &i in &points {
                let j = p.apply(i);
                assert!(j < n);
                assert_eq!(p.invert(j), i, "n={n} i={i}");
            }
        }
    }

    #[test]
    fn different_keys_give_different_orders() {
        for n in [8, 10, 33, 1000] {
            let orders: Vec<Vec<usize>> = (0..16u64)
                .map(|k| {
                    let p = Permutation::new(n, k);
                    (0..n).map(|i| p.apply(i)).collect()
                })
                .collect();
            for w in orders.windows(2) {
                assert_ne!(w[0], w[1], "n={n}");
            }
            assert_ne!(orders[0], (0..n).collect::<Vec<_>>(), "n={n} is identity");
        }
    }

    #[test]
    fn mean_walk_length_is_small() {
        for n in [2, 3, 5, 17, 100, 1000, 4097, 65537] {
            for key in [3, 99] {
                let p = Permutation::new(n, key);
                let total: u64 = (0..n).map(|i| p.apply_counted(i).1 as u64).sum();
                let mean = total as f64 / n as f64;
                assert!(mean < 4.0, "n={n} key={key}: mean walk {mean}");
            }
        }
    }

    /// Chi-square statistic of `counts` against a uniform expectation.
    fn chi_square(counts: &[u64]) -> f64 {
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum()
    }

    // df = 9: P(chi2 > 40) ~ 7e-6. A constant or rotating placement gives ~ 9 * trials.
    const CHI2_LIMIT_DF9: f64 = 40.0;

    #[test]
    fn shuffle_places_an_element_uniformly() {
        let n = 10;
        let trials = 4000u64;
        // Image of element 0 under the permutation, over keys.
        let mut image = vec![0u64; n];
        // Position of element 0 in the epoch's order, over seeds.
        let mut position = vec![0u64; n];
        for key in 0..trials {
            image[Permutation::new(n, key).apply(0)] += 1;
            let order = collect(&Sampler::new(n).shuffle(true).seed(key).epoch(5));
            position[order.iter().position(|&i| i == 0).unwrap()] += 1;
        }
        let (a, b) = (chi_square(&image), chi_square(&position));
        assert!(a < CHI2_LIMIT_DF9, "image chi2 {a}: {image:?}");
        assert!(b < CHI2_LIMIT_DF9, "position chi2 {b}: {position:?}");
        // The same statistic rejects a broken shuffle.
        let mut rotated = vec![0u64; n];
        for key in 0..trials {
            rotated[(key as usize % 2 + 3) % n] += 1;
        }
        assert!(chi_square(&rotated) > CHI2_LIMIT_DF9);
    }

    #[test]
    fn shuffle_pairwise_order_is_balanced() {
        let trials = 4000u64;
        for (n, a, b) in [(10, 0, 1), (10, 3, 9), (1000, 0, 999)] {
            let before = (0..trials)
                .filter(|&k| {
                    let p = Permutation::new(n, k);
                    p.apply(a) < p.apply(b)
                })
                .count() as f64;
            // sd = sqrt(trials) / 2 ~ 31.6; allow ~ 5 sd.
            assert!(
                (before - trials as f64 / 2.0).abs() < 160.0,
                "n={n} ({a},{b}) before in {before} of {trials}"
            );
        }
    }

    #[test]
    fn same_seed_and_epoch_give_same_order() {
        let s = Sampler::new(257).shuffle(true).seed(42);
        assert_eq!(collect(&s.epoch(3)), collect(&s.clone().epoch(3)));
        assert_eq!(s.epoch(3), s.epoch(3));
        let t = Sampler::new(257).shuffle(true).seed(43);
        assert_ne!(collect(&s.epoch(3)), collect(&t.epoch(3)));
        let mut order = collect(&s.epoch(3));
        assert_ne!(order, (0..257).collect::<Vec<_>>());
        order.sort_unstable();
        assert_eq!(order, (0..257).collect::<Vec<_>>());
    }

    #[test]
    fn different_epochs_give_different_orders() {
        for n in [8, 50, 1000] {
            let s = Sampler::new(n).shuffle(true).seed(7);
            let orders: Vec<Vec<usize>> = (0..6).map(|e| collect(&s.epoch(e))).collect();
            for i in 0..orders.len() {
                for j in i + 1..orders.len() {
                    assert_ne!(orders[i], orders[j], "n={n} epochs {i} and {j}");
                }
            }
        }
    }

    #[test]
    fn sequential_mode_is_identity() {
        for n in [0, 1, 9, 100] {
            let s = Sampler::new(n).seed(99);
            for e in [0, 1, 7] {
                assert_eq!(collect(&s.epoch(e)), (0..n).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn ranks_split_the_epoch() {
        for world in 1..=4usize {
            for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 12, 13, 16, 17, 101] {
                for shuffle in [false, true] {
                    let base = Sampler::new(n).shuffle(shuffle).seed(5);
                    let global = collect(&base.epoch(2));
                    for partition in [Partition::Pad, Partition::Drop] {
                        let per_rank: Vec<Vec<usize>> = (0..world)
                            .map(|r| {
                                let s = base
                                    .clone()
                                    .partition(partition)
                                    .distributed(r, world)
                                    .unwrap();
                                collect(&s.epoch(2))
                            })
                            .collect();
                        let ctx = format!("n={n} world={world} shuffle={shuffle} {partition:?}");
                        let len = per_rank[0].len();
                        assert!(per_rank.iter().all(|v| v.len() == len), "{ctx}");
                        // Rank r's position q is global position q * world + r (wrapped).
                        for (r, v) in per_rank.iter().enumerate() {
                            for (q, &i) in v.iter().enumerate() {
                                assert_eq!(i, global[(q * world + r) % n], "{ctx}");
                            }
                        }
                        let all: Vec<usize> = per_rank.concat();
                        let distinct: HashSet<usize> = all.iter().copied().collect();
                        match partition {
                            Partition::Drop => {
                                assert_eq!(len, n / world, "{ctx}");
                                assert_eq!(distinct.len(), all.len(), "{ctx}: overlap");
                                assert_eq!(distinct.len(), n / world * world, "{ctx}");
                            }
                            Partition::Pad => {
                                assert_eq!(len, n.div_ceil(world), "{ctx}");
                                assert_eq!(distinct.len(), n, "{ctx}: not covered");
                                // Duplicates only from padding: the padded tail repeats the
                                // start of the global order.
                                let mut counts = vec![0usize; n];
                                for &i in &all {
                                    counts[i] += 1;
                                }
                                let mut expected = vec![1usize; n];
                                for p in n..len * world {
                                    expected[global[p % n]] += 1;
                                }
                                assert_eq!(counts, expected, "{ctx}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn resume_matches_uninterrupted_run() {
        for (n, world, rank) in [(0, 1, 0), (1, 3, 2), (10, 1, 0), (37, 4, 3), (64, 2, 1)] {
            for partition in [Partition::Pad, Partition::Drop] {
                let s = Sampler::new(n)
                    .shuffle(true)
                    .seed(123)
                    .partition(partition)
                    .distributed(rank, world)
                    .unwrap();
                let order = s.epoch(9);
                let full = collect(&order);
                assert_eq!(full.len(), order.len());
                for p in 0..=full.len() + 2 {
                    let tail: Vec<usize> = order.iter_from(p).collect();
                    assert_eq!(tail, full[p.min(full.len())..].to_vec(), "n={n} p={p}");
                    assert_eq!(order.iter_from(p).len(), tail.len());
                    // A fresh EpochOrder (new process) resumes identically.
                    assert_eq!(s.epoch(9).get(p), full.get(p).copied());
                }
                let mut it = order.iter_from(0);
                if full.len() > 2 {
                    assert_eq!(it.nth(2), Some(full[2]));
                    assert_eq!(it.position(), 3);
                }
                let rev: Vec<usize> = order.iter_from(0).rev().collect();
                assert_eq!(rev, full.iter().rev().copied().collect::<Vec<_>>());
            }
        }
    }

    #[test]
    #[should_panic(expected = "epoch position 3 out of range 0..3")]
    fn index_out_of_range_says_so() {
        Sampler::new(3).epoch(0).index(3);
    }

    #[test]
    fn distributed_validates() {
        assert!(Sampler::new(4).distributed(3, 4).is_ok());
        let e = Sampler::new(4).distributed(4, 4).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert_eq!(e.message(), "rank 4 must be < world_size 4");
        let e = Sampler::new(4).distributed(0, 0).unwrap_err();
        assert_eq!(e.message(), "world_size must be > 0");
    }

    #[test]
    fn distributed_from_values_parses() {
        let s = Sampler::new(10)
            .distributed_from_values(Some("3"), Some(" 4\n"))
            .unwrap();
        assert_eq!((s.rank(), s.world_size()), (3, 4));
        // Absent: unchanged.
        let before = Sampler::new(10).seed(3).distributed(1, 2).unwrap();
        let after = before.clone().distributed_from_values(None, None).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn distributed_from_vars_keeps_the_source_and_the_local_rank() {
        let slurm = |step: Option<&'static str>| {
            move |n: &str| match n {
                "SLURM_PROCID" => Some("1".into()),
                "SLURM_NTASKS" => Some("2".into()),
                "SLURM_LOCALID" => Some("1".into()),
                "SLURM_STEP_ID" => step.map(Into::into),
                _ => None,
            }
        };
        let s = Sampler::new(10)
            .distributed_from_vars(slurm(Some("0")))
            .unwrap();
        assert_eq!(
            (s.rank(), s.world_size(), s.local_rank(), s.rank_source()),
            (1, 2, Some(1), RankSource::Slurm)
        );
        let args = Sampler::new(10).distributed(1, 2).unwrap();
        assert_eq!(args.rank_source(), RankSource::Args);
        assert_eq!(collect(&s.epoch(3)), collect(&args.epoch(3)));
        // In the batch script (no srun step): unchanged.
        let before = Sampler::new(10).seed(4);
        let after = before.clone().distributed_from_vars(slurm(None)).unwrap();
        assert_eq!(before, after);
        assert_eq!(after.rank_source(), RankSource::None);
        let s = Sampler::new(10)
            .distributed_from_values(Some("0"), Some("2"))
            .unwrap();
        assert_eq!(
            (s.rank_source(), s.local_rank()),
            (RankSource::Torchrun, None)
        );
    }

    #[test]
    fn distributed_from_values_rejects_bad_values() {
        let s = Sampler::new(10);
        let e = s
            .clone()
            .distributed_from_values(Some("abc"), Some("4"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.message().contains("RANK") && e.message().contains("abc"));
        let e = s
            .clone()
            .distributed_from_values(Some("0"), Some("-2"))
            .unwrap_err();
        assert!(e.message().contains("WORLD_SIZE") && e.message().contains("-2"));
        for (r, w) in [("4", "4"), ("0", "0"), ("", "1")] {
            let e = s
                .clone()
                .distributed_from_values(Some(r), Some(w))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{r}/{w}");
        }
        assert!(s.clone().distributed_from_values(Some("0"), None).is_err());
        assert!(s.distributed_from_values(None, Some("2")).is_err());
    }

    #[test]
    fn builder_and_getters() {
        let s = Sampler::new(11)
            .shuffle(true)
            .seed(8)
            .partition(Partition::Drop)
            .distributed(1, 3)
            .unwrap();
        assert_eq!(s.len(), 11);
        assert!(!s.is_empty());
        assert!(s.is_shuffled());
        assert_eq!(s.seed_value(), 8);
        assert_eq!(s.partition_mode(), Partition::Drop);
        assert_eq!((s.rank(), s.world_size()), (1, 3));
        assert_eq!(s.samples_per_rank(), 3);
        assert_eq!(s.epoch(4).epoch(), 4);
        assert_eq!(
            Sampler::new(0)
                .distributed(2, 3)
                .unwrap()
                .samples_per_rank(),
            0
        );
    }
}
