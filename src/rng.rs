//! Seeded randomness: every random draw is a pure function of (seed, epoch, sample index).
//!
//! Nothing here reads a global or the clock. [`SampleRng`] is the generator handed to a
//! transform for one sample; [`mix64`] is the bijective finaliser the sampler builds on.

/// SplitMix64's finaliser: a bijective 64-bit mix with full avalanche.
///
/// ```
/// use stoker::rng::mix64;
/// assert_ne!(mix64(1), mix64(2));
/// assert_eq!(mix64(42), mix64(42));
/// ```
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes a sequence of words into one seed (order matters).
///
/// ```
/// use stoker::rng::seed_of;
/// assert_ne!(seed_of(&[1, 2]), seed_of(&[2, 1]));
/// ```
#[inline]
pub fn seed_of(words: &[u64]) -> u64 {
    let mut h = 0x6a09_e667_f3bc_c909u64;
    for &w in words {
        h = mix64(h ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    h
}

/// A small, fast generator (xoshiro256++) for one sample's random choices.
///
/// ```
/// use stoker::rng::SampleRng;
/// let mut a = SampleRng::for_sample(7, 0, 123);
/// let mut b = SampleRng::for_sample(7, 0, 123);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.next_f32();
/// assert!((0.0..1.0).contains(&x));
/// assert_ne!(SampleRng::for_sample(7, 1, 123).next_u64(), SampleRng::for_sample(7, 0, 123).next_u64());
/// ```
#[derive(Clone, Debug)]
pub struct SampleRng {
    s: [u64; 4],
}

impl SampleRng {
    /// A generator seeded from one 64-bit seed (expanded with SplitMix64).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix64(x)
        };
        SampleRng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The generator of sample `index` in `epoch` under `seed`.
    pub fn for_sample(seed: u64, epoch: u64, index: usize) -> Self {
        SampleRng::new(seed_of(&[seed, epoch, index as u64]))
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 24 bits of precision.
    #[inline]
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (`n > 0`), without modulo bias worth noting (Lemire's method).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}
