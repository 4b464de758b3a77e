//! The counter-based noise shared by the augmentation and the GPU conversion: a 32-bit hash of
//! a pixel's index and a sample's key, and a 1024-entry table of standard normal values that
//! 10 bits of the hash index.
//!
//! Channel `c` of a pixel whose hash is `h` draws entry `(h >> 10c) & 1023`. The table is the
//! sums `A[i & 31] + B[i >> 5]` of two fixed 32-value tables, symmetric about 0 and scaled so
//! that the sums have std 1 (mean exactly 0). The tables were fitted so that the 1024 sums
//! follow the normal: their CDF is within 0.003 of the normal's everywhere, and they end at
//! ±3.2σ. The AVX-512 augmentation kernel keeps the two small tables in registers; every other
//! loop, and the GPU kernel, reads the 1024 sums: the same bits.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

/// Entries of the gaussian table: 10 bits of the pixel's hash per channel.
pub(crate) const TABLE: usize = 1024;

/// Entries of each of the two tables whose sums make the gaussian table.
pub(crate) const PART: usize = 32;

/// The positive halves of the two tables (each is symmetric about 0), before scaling: atoms
/// chosen so that the distribution of their sums is as close as can be found to the normal
/// in the largest difference of the CDFs (0.0029, from 0.0064 for plain quantiles), by
/// `tools/noise_tables.py`.
const HALVES: [[f64; PART / 2]; 2] = [
    [
        0.06953367837998344,
        0.11111036863202362,
        0.16411969343423666,
        0.22937563588840582,
        0.31506361276010963,
        0.37498298910412553,
        0.4403774471204824,
        0.5179666576827439,
        0.6090372077128582,
        0.6344990327553314,
        0.7026189240039337,
        0.8891392136536244,
        0.9529101688945655,
        1.1485404294703236,
        1.3747481462489133,
        1.8111544855452357,
    ],
    [
        0.027955817785735422,
        0.07559537471662077,
        0.13310684512005555,
        0.16070279046955663,
        0.21174962255555457,
        0.2644235061508135,
        0.33991409369783654,
        0.37606159018188423,
        0.43700456224869816,
        0.49204911117722533,
        0.5358666364951068,
        0.650410371202796,
        0.764204872596517,
        0.8597984413464204,
        1.0171051639624773,
        1.4346741186133127,
    ],
];

/// The gaussian draw, as two tables and as their 1024 sums.
#[derive(Clone, Debug)]
pub(crate) struct Gauss {
    /// `sum[i] = parts[0][i % 32] + parts[1][i / 32]`, in `f32`.
    pub(crate) sum: [f32; TABLE],
    pub(crate) parts: [[f32; PART]; 2],
}

impl Gauss {
    pub(crate) fn new() -> Box<Gauss> {
        let full = |h: &[f64; PART / 2]| {
            let mut t = [0f64; PART];
            for (k, &x) in h.iter().enumerate() {
                t[PART / 2 + k] = x;
                t[PART / 2 - 1 - k] = -x;
            }
            t
        };
        let (a, b) = (full(&HALVES[0]), full(&HALVES[1]));
        // One factor for both, so that the sums have variance 1 (and mean exactly 0: the
        // tables are symmetric, and negation is exact).
        let var = (0..TABLE)
            .map(|i| (a[i % PART] + b[i / PART]).powi(2))
            .sum::<f64>()
            / TABLE as f64;
        let f = var.sqrt().recip();
        let parts = [a.map(|x| (x * f) as f32), b.map(|x| (x * f) as f32)];
        let mut sum = [0f32; TABLE];
        for (i, o) in sum.iter_mut().enumerate() {
            *o = parts[0][i % PART] + parts[1][i / PART];
        }
        Box::new(Gauss { sum, parts })
    }
}

/// The 1024 gaussian values, indexed by 10 bits of a pixel's hash: see the [module docs](self).
pub(crate) fn gaussian_table() -> Box<[f32; TABLE]> {
    Box::new(Gauss::new().sum)
}

/// The key that pixel indices are XORed with before [`hash32`], from a sample's noise seed.
#[inline(always)]
pub(crate) fn noise_key(seed: u32) -> u32 {
    seed.wrapping_mul(0x9e37_79b9) ^ 0x85eb_ca6b
}

/// lowbias32 (Chris Wellons): a bijective 32-bit hash with good avalanche.
#[inline(always)]
pub(crate) fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Φ⁻¹(p)` for `0 < p < 1`: Acklam's rational approximation (relative error below 1.2e-9),
    /// odd-symmetric so the table's mean is exactly 0.
    fn normal_quantile(p: f64) -> f64 {
        if p > 0.5 {
            return -normal_quantile(1.0 - p);
        }
        const A: [f64; 6] = [
            -3.969_683_028_665_376e1,
            2.209_460_984_245_205e2,
            -2.759_285_104_469_687e2,
            1.383_577_518_672_69e2,
            -3.066_479_806_614_716e1,
            2.506_628_277_459_239,
        ];
        const B: [f64; 5] = [
            -5.447_609_879_822_406e1,
            1.615_858_368_580_409e2,
            -1.556_989_798_598_866e2,
            6.680_131_188_771_972e1,
            -1.328_068_155_288_572e1,
        ];
        const C: [f64; 6] = [
            -7.784_894_002_430_293e-3,
            -3.223_964_580_411_365e-1,
            -2.400_758_277_161_838,
            -2.549_732_539_343_734,
            4.374_664_141_464_968,
            2.938_163_982_698_783,
        ];
        const D: [f64; 4] = [
            7.784_695_709_041_462e-3,
            3.224_671_290_700_398e-1,
            2.445_134_137_142_996,
            3.754_408_661_907_416,
        ];
        if p < 0.02425 {
            let q = (-2.0 * p.ln()).sqrt();
            (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
                / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
        } else {
            let q = p - 0.5;
            let r = q * q;
            (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
                / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
        }
    }

    #[test]
    fn the_sums_follow_the_normal() {
        let g = Gauss::new();
        let mut v: Vec<f64> = g.sum.iter().map(|&x| x as f64).collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| x * x).sum::<f64>() / n;
        assert_eq!(mean, 0.0);
        assert!((var - 1.0).abs() < 1e-6, "{var}");
        // The i-th smallest sum lies between the normal's quantiles at (i + 1/2) / n ± 0.003:
        // the CDFs differ by less than 0.003 + 1/(2n) anywhere.
        v.sort_by(f64::total_cmp);
        for (i, x) in v.iter().enumerate() {
            let p = (i as f64 + 0.5) / n;
            let (lo, hi) = ((p - 0.003).max(1e-9), (p + 0.003).min(1.0 - 1e-9));
            assert!(
                (normal_quantile(lo)..=normal_quantile(hi)).contains(x),
                "sum {i} of {n} is {x}"
            );
        }
        // The AVX-512 kernel adds the two parts in registers: the same f32 sums.
        for (i, s) in g.sum.iter().enumerate() {
            assert_eq!(*s, g.parts[0][i % PART] + g.parts[1][i / PART]);
        }
    }
}
