//! Sampler: the order of an epoch, a pure function of (seed, epoch, rank, world size, position).
// STUB: filled in by the sampler helper.

/// How ranks are evened out when the data set does not divide by the world size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    /// Repeat samples from the start of the epoch's order (PyTorch's DistributedSampler).
    Pad,
    /// Drop the tail so every rank gets `len / world_size` samples.
    Drop,
}

/// Decides which samples a rank sees in an epoch, and in what order.
#[derive(Clone, Debug)]
pub struct Sampler {
    len: usize,
    shuffle: bool,
    seed: u64,
    rank: usize,
    world_size: usize,
    partition: Partition,
}

/// The order of one epoch for one rank: `len()` positions, each mapped to a data set index in O(1).
#[derive(Clone, Debug)]
pub struct EpochOrder {}

impl Sampler {
    /// Sequential order over `len` samples, rank 0 of 1.
    pub fn new(len: usize) -> Self {
        Sampler { len, shuffle: false, seed: 0, rank: 0, world_size: 1, partition: Partition::Pad }
    }
    /// The order of `epoch`.
    pub fn epoch(&self, epoch: u64) -> EpochOrder {
        let _ = (epoch, self.len, self.shuffle, self.seed, self.rank, self.world_size, self.partition);
        todo!("sampler helper")
    }
}

impl EpochOrder {
    /// Samples this rank sees in the epoch.
    pub fn len(&self) -> usize {
        todo!("sampler helper")
    }
    /// `true` when the rank sees no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Data set index at `position` (`< len()`).
    pub fn index(&self, position: usize) -> usize {
        let _ = position;
        todo!("sampler helper")
    }
}
