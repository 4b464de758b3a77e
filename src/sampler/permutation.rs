//! [`Permutation`]: a seeded bijection on `0..n`, evaluated at any point without
//! materialising it; what a shuffled epoch's order is made of.

use crate::rng::{mix64, seed_of};

/// Feistel rounds of [`Permutation`] (at least 4; more mix small domains better).
const ROUNDS: usize = 6;

/// A seeded bijection on `0..n`, evaluated at any point in O(1) expected time.
///
/// A balanced Feistel network (round function built on [`mix64`]) over the smallest
/// power-of-two domain with an even number of bits that holds `n`, with cycle walking to
/// stay inside `0..n`. The domain is less than `4n`, so fewer than 4 rounds of the network
/// are needed on average.
///
/// ```
/// use stoker::sampler::Permutation;
/// let p = Permutation::new(10, 42);
/// let mut seen: Vec<usize> = (0..10).map(|i| p.apply(i)).collect();
/// seen.sort();
/// assert_eq!(seen, (0..10).collect::<Vec<_>>());
/// assert_eq!(p.invert(p.apply(3)), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    mask: u64,
    keys: [u64; ROUNDS],
}

impl Permutation {
    /// The permutation of `0..n` selected by `key`.
    ///
    /// ```
    /// use stoker::sampler::Permutation;
    /// assert_eq!(Permutation::new(5, 1), Permutation::new(5, 1));
    /// assert!(Permutation::new(0, 1).is_empty());
    /// ```
    pub fn new(n: usize, key: u64) -> Self {
        let n = n as u64;
        // Smallest even bit count b with 2^b >= n (b = 0 for n <= 1).
        let bits = if n <= 1 {
            0
        } else {
            64 - (n - 1).leading_zeros()
        };
        let bits = bits + (bits & 1);
        let half_bits = bits / 2;
        let mut keys = [0u64; ROUNDS];
        for (round, k) in keys.iter_mut().enumerate() {
            *k = seed_of(&[key, round as u64]);
        }
        Permutation {
            n,
            half_bits,
            mask: (1u64 << half_bits) - 1,
            keys,
        }
    }

    /// Size of the permuted range.
    ///
    /// ```
    /// assert_eq!(stoker::sampler::Permutation::new(17, 0).len(), 17);
    /// ```
    pub fn len(&self) -> usize {
        self.n as usize
    }

    /// `true` when the range is empty.
    ///
    /// ```
    /// assert!(!stoker::sampler::Permutation::new(1, 0).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The image of `i`. Precondition: `i < len()` (panics otherwise).
    ///
    /// ```
    /// let p = stoker::sampler::Permutation::new(1 << 40, 9);
    /// assert!(p.apply((1 << 40) - 1) < 1 << 40);
    /// ```
    pub fn apply(&self, i: usize) -> usize {
        self.apply_counted(i).0
    }

    /// The preimage of `j`: `invert(apply(i)) == i`. Precondition: `j < len()` (panics otherwise).
    ///
    /// ```
    /// let p = stoker::sampler::Permutation::new(1000, 3);
    /// assert!((0..1000).all(|i| p.invert(p.apply(i)) == i));
    /// ```
    pub fn invert(&self, j: usize) -> usize {
        let j = j as u64;
        assert!(
            j < self.n,
            "permutation index {j} out of range 0..{}",
            self.n
        );
        let mut x = self.backward(j);
        while x >= self.n {
            x = self.backward(x);
        }
        x as usize
    }

    /// `apply(i)` and how many passes of the network it took (cycle-walking length).
    pub(super) fn apply_counted(&self, i: usize) -> (usize, u32) {
        let i = i as u64;
        assert!(
            i < self.n,
            "permutation index {i} out of range 0..{}",
            self.n
        );
        let mut x = self.forward(i);
        let mut walks = 1;
        while x >= self.n {
            x = self.forward(x);
            walks += 1;
        }
        (x as usize, walks)
    }

    #[inline]
    fn round(&self, k: u64, r: u64) -> u64 {
        mix64(r ^ k) & self.mask
    }

    /// One pass of the Feistel network over the whole domain `0..2^(2*half_bits)`.
    #[inline]
    fn forward(&self, x: u64) -> u64 {
        if self.half_bits == 0 {
            return x;
        }
        let (mut l, mut r) = (x >> self.half_bits, x & self.mask);
        for &k in &self.keys {
            (l, r) = (r, l ^ self.round(k, r));
        }
        (l << self.half_bits) | r
    }

    /// The inverse of [`forward`](Self::forward).
    #[inline]
    fn backward(&self, x: u64) -> u64 {
        if self.half_bits == 0 {
            return x;
        }
        let (mut l, mut r) = (x >> self.half_bits, x & self.mask);
        for &k in self.keys.iter().rev() {
            (l, r) = (r ^ self.round(k, l), l);
        }
        (l << self.half_bits) | r
    }
}
