//! Brightness, contrast, gaussian and salt-and-pepper noise and the normalisation on one
//! warped row, in place.
//!
//! Every value becomes `v * g[c] + (t * s[c] + b[c])` with two fused multiply-adds, where the
//! per-sample, per-channel `g`, `s`, `b` fold contrast, brightness, the noise's sigma and the
//! store's normalisation into one affine map (`t` the gaussian draw, 0 without noise); salt and
//! pepper then replace the value with the normalised full range or zero.
//!
//! Noise is counter-based: pixel `j` of the sample (row-major) gets `h = hash(noise_seed, j)`,
//! so it does not depend on how rows are visited or on the layout. Channel `c`'s gaussian
//! value is `A[i & 31] + B[i >> 5]` with `i = (h >> 10c) & 1023`: the sum of two independent
//! draws from two fixed 32-value tables, symmetric about 0 and scaled so that the sum has std
//! 1 (mean exactly 0). The tables were fitted so that the 1024 sums follow the normal: their
//! CDF is within 0.003 of the normal's everywhere, and they end at ±3.2σ. Two 32-entry
//! tables fit in four AVX-512 registers, so the wide kernel draws with register permutes
//! instead of memory gathers (a third of the pass's time before); the other loops read the
//! 1024 sums from memory, the same bits. Salt and pepper use a second hash per value,
//! independent of the gaussian draw.

use super::AugmentParams;

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

/// `Φ⁻¹(p)` for `0 < p < 1`: Acklam's rational approximation (relative error below 1.2e-9),
/// odd-symmetric so the table's mean is exactly 0.
#[cfg(test)]
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

/// The second hash's key for channel `c` (salt and pepper).
#[inline(always)]
fn sp_key(c: usize) -> u32 {
    0x9e37_79b9u32.wrapping_mul(c as u32 + 1)
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

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Only `v * gain + offset`.
    Affine,
    Gauss,
    SaltPepper,
    Both,
}

/// One sample's photometric pass and normalisation, prepared: the variant is chosen once per
/// sample.
pub(super) struct Photo<'a> {
    /// Per channel: `v * g + (t * s + b)`.
    pub(super) g: [f32; 3],
    pub(super) s: [f32; 3],
    pub(super) b: [f32; 3],
    /// Replace when the low 19 bits of the value's second hash are below this.
    pub(super) sp_threshold: u32,
    /// What salt and pepper write, normalised, per channel.
    pub(super) salt: [f32; 3],
    pub(super) pepper: [f32; 3],
    pub(super) seed: u32,
    pub(super) kind: Kind,
    pub(super) gauss: &'a Gauss,
    /// The AVX2 noise loop may be used.
    simd: bool,
}

/// `a * b + c`, rounded once.
#[inline(always)]
pub(super) fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

impl<'a> Photo<'a> {
    /// `full` is the full range in source units (255 or 1); `unit` scales source units to
    /// what the store expects (1/255 for 8-bit sources written as floats, else 1); `scale`
    /// and `bias` are the store's normalisation.
    pub(super) fn new(
        p: &AugmentParams,
        (full, unit): (f32, f32),
        (scale, bias): ([f32; 3], [f32; 3]),
        gauss: &'a Gauss,
        simd: bool,
    ) -> Self {
        let mid = full * 0.5;
        let (br, c) = (p.brightness, p.contrast);
        let gain = br * c * unit;
        let offset = br * mid * (1.0 - c) * unit;
        let sigma = p.noise_std * full * unit;
        let sp_threshold = (p.salt_pepper as f64 * (1u32 << 19) as f64).round() as u32;
        let kind = match (p.noise_std > 0.0, sp_threshold > 0) {
            (false, false) => Kind::Affine,
            (true, false) => Kind::Gauss,
            (false, true) => Kind::SaltPepper,
            (true, true) => Kind::Both,
        };
        let per = |f: &dyn Fn(f32, f32) -> f32| [0, 1, 2].map(|ch| f(scale[ch], bias[ch]));
        Photo {
            g: per(&|sc, _| gain * sc),
            s: per(&|sc, _| sigma * sc),
            b: per(&|sc, bi| offset * sc + bi),
            sp_threshold,
            salt: per(&|sc, bi| full * unit * sc + bi),
            pepper: per(&|sc, bi| 0.0 * sc + bi),
            seed: p.noise_seed,
            kind,
            gauss,
            simd: simd && avx2::available(),
        }
    }

    /// Applies the pass to `row` (`channels` values per pixel, interleaved), whose first pixel
    /// is pixel `first` of the sample.
    pub(super) fn apply(&self, row: &mut [f32], channels: usize, first: usize) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has FMA.
            return unsafe { self.apply_fma(row, channels, first) };
        }
        self.apply_any(row, channels, first)
    }

    /// [`Photo::apply`] with hardware fused multiply-adds (without them, `mul_add` is a call).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn apply_fma(&self, row: &mut [f32], channels: usize, first: usize) {
        self.apply_any(row, channels, first)
    }

    #[inline(always)]
    fn apply_any(&self, row: &mut [f32], channels: usize, first: usize) {
        match self.kind {
            Kind::Affine => self.affine(row, channels),
            Kind::Gauss => self.noise::<true, false>(row, channels, first),
            Kind::SaltPepper => self.noise::<false, true>(row, channels, first),
            Kind::Both => self.noise::<true, true>(row, channels, first),
        }
    }

    /// The noise loop: AVX2 where it applies (same bits), else portable.
    #[inline(always)]
    fn noise<const GAUSS: bool, const SP: bool>(&self, row: &mut [f32], c: usize, first: usize) {
        let done = if self.simd && c == 3 && !SP {
            avx2::gauss_rgb(self, row, first)
        } else {
            0
        };
        for (j, px) in row[done * c..].chunks_exact_mut(c).enumerate() {
            let h = self.pixel_hash((first + done + j) as u32);
            for (ch, v) in px.iter_mut().enumerate() {
                *v = self.value::<GAUSS, SP>(*v, h, ch);
            }
        }
    }

    #[inline(always)]
    pub(super) fn key(&self) -> u32 {
        noise_key(self.seed)
    }

    /// The hash of pixel `j` of the sample.
    #[inline(always)]
    pub(super) fn pixel_hash(&self, j: u32) -> u32 {
        hash32(j ^ self.key())
    }

    #[inline(always)]
    fn affine(&self, row: &mut [f32], c: usize) {
        for px in row.chunks_exact_mut(c) {
            for (ch, v) in px.iter_mut().enumerate() {
                *v = fmadd(*v, self.g[ch], self.b[ch]);
            }
        }
    }

    /// Channel `c` of the pixel whose hash is `h` (`v`, warped) through the pass: what every
    /// loop computes.
    #[inline(always)]
    pub(super) fn value<const GAUSS: bool, const SP: bool>(&self, v: f32, h: u32, c: usize) -> f32 {
        let add = if GAUSS {
            let t = self.gauss.sum[((h >> (10 * c)) & 1023) as usize];
            fmadd(t, self.s[c], self.b[c])
        } else {
            self.b[c]
        };
        let x = fmadd(v, self.g[c], add);
        if SP {
            let h = hash32(h ^ sp_key(c));
            let pick = if (h >> 19) & 1 == 1 {
                self.salt[c]
            } else {
                self.pepper[c]
            };
            if (h & 0x7_ffff) < self.sp_threshold {
                return pick;
            }
        }
        x
    }
}

/// AVX-512 noise for the fused kernel: the operations of [`Photo::value`], sixteen pixels at a
/// time, with the two gaussian tables in registers.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::Photo;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn hash16(mut h: __m512i) -> __m512i {
        h = _mm512_xor_si512(h, _mm512_srli_epi32::<16>(h));
        h = _mm512_mullo_epi32(h, _mm512_set1_epi32(0x7feb_352d_u32 as i32));
        h = _mm512_xor_si512(h, _mm512_srli_epi32::<15>(h));
        h = _mm512_mullo_epi32(h, _mm512_set1_epi32(0x846c_a68b_u32 as i32));
        _mm512_xor_si512(h, _mm512_srli_epi32::<16>(h))
    }

    /// The hashes of pixels `j..j + 16`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn pixel_hash16(p: &Photo<'_>, j: u32) -> __m512i {
        let idx = _mm512_add_epi32(
            _mm512_set1_epi32(j as i32),
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        );
        hash16(_mm512_xor_si512(idx, _mm512_set1_epi32(p.key() as i32)))
    }

    /// The two 32-entry gaussian tables, two registers each.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Tables([__m512; 4]);

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn tables(p: &Photo<'_>) -> Tables {
        let [a, b] = &p.gauss.parts;
        Tables([
            _mm512_loadu_ps(a.as_ptr()),
            _mm512_loadu_ps(a.as_ptr().add(16)),
            _mm512_loadu_ps(b.as_ptr()),
            _mm512_loadu_ps(b.as_ptr().add(16)),
        ])
    }

    /// Channel `C / 10` of sixteen pixels whose warped values are `v` and hashes `h`, through
    /// the pass.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn value16<const C: i32, const GAUSS: bool, const SP: bool>(
        p: &Photo<'_>,
        t: Tables,
        v: __m512,
        h: __m512i,
    ) -> __m512 {
        let c = (C / 10) as usize;
        let mut add = _mm512_set1_ps(p.b[c]);
        if GAUSS {
            // Permutes read the low 5 bits of each index.
            let i = _mm512_srlv_epi32(h, _mm512_set1_epi32(C));
            let k = _mm512_srlv_epi32(h, _mm512_set1_epi32(C + 5));
            let [a0, a1, b0, b1] = t.0;
            let g = _mm512_add_ps(
                _mm512_permutex2var_ps(a0, i, a1),
                _mm512_permutex2var_ps(b0, k, b1),
            );
            add = _mm512_fmadd_ps(g, _mm512_set1_ps(p.s[c]), add);
        }
        let mut x = _mm512_fmadd_ps(v, _mm512_set1_ps(p.g[c]), add);
        if SP {
            let h = hash16(_mm512_xor_si512(
                h,
                _mm512_set1_epi32(super::sp_key(c) as i32),
            ));
            let low = _mm512_and_si512(h, _mm512_set1_epi32(0x7_ffff));
            let hit = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(p.sp_threshold as i32), low);
            let is_salt = _mm512_test_epi32_mask(h, _mm512_set1_epi32(1 << 19));
            let pick = _mm512_mask_blend_ps(
                is_salt,
                _mm512_set1_ps(p.pepper[c]),
                _mm512_set1_ps(p.salt[c]),
            );
            x = _mm512_mask_blend_ps(hit, x, pick);
        }
        x
    }
}

/// AVX2 noise, the same operations as the portable loop.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::Photo;
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// [`super::hash32`] of eight lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in super::super) unsafe fn hash8(mut h: __m256i) -> __m256i {
        h = _mm256_xor_si256(h, _mm256_srli_epi32::<16>(h));
        h = _mm256_mullo_epi32(h, _mm256_set1_epi32(0x7feb_352d_u32 as i32));
        h = _mm256_xor_si256(h, _mm256_srli_epi32::<15>(h));
        h = _mm256_mullo_epi32(h, _mm256_set1_epi32(0x846c_a68b_u32 as i32));
        _mm256_xor_si256(h, _mm256_srli_epi32::<16>(h))
    }

    /// The hashes of pixels `j..j + 8`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in super::super) unsafe fn pixel_hash8(p: &Photo<'_>, j: u32) -> __m256i {
        let idx = _mm256_add_epi32(
            _mm256_set1_epi32(j as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        hash8(_mm256_xor_si256(idx, _mm256_set1_epi32(p.key() as i32)))
    }

    /// The gaussian draws of channel `C / 10` of eight pixels whose hashes are `h`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn gauss8<const C: i32>(p: &Photo<'_>, h: __m256i) -> __m256 {
        let i = _mm256_and_si256(_mm256_srli_epi32::<C>(h), _mm256_set1_epi32(1023));
        _mm256_i32gather_ps::<4>(p.gauss.sum.as_ptr(), i)
    }

    /// Channel `C / 10` of eight pixels whose warped values are `v` and hashes `h`, through
    /// the pass.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(in super::super) unsafe fn value8<const C: i32, const GAUSS: bool, const SP: bool>(
        p: &Photo<'_>,
        v: __m256,
        h: __m256i,
    ) -> __m256 {
        let c = (C / 10) as usize;
        let mut add = _mm256_set1_ps(p.b[c]);
        if GAUSS {
            add = _mm256_fmadd_ps(gauss8::<C>(p, h), _mm256_set1_ps(p.s[c]), add);
        }
        let mut x = _mm256_fmadd_ps(v, _mm256_set1_ps(p.g[c]), add);
        if SP {
            let h = hash8(_mm256_xor_si256(
                h,
                _mm256_set1_epi32(super::sp_key(c) as i32),
            ));
            let one = _mm256_set1_epi32(1);
            let low = _mm256_and_si256(h, _mm256_set1_epi32(0x7_ffff));
            // Values below 2^19 and the threshold at most 2^19: signed compares are exact.
            let hit = _mm256_cmpgt_epi32(_mm256_set1_epi32(p.sp_threshold as i32), low);
            let is_salt =
                _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_srli_epi32::<19>(h), one), one);
            let pick = _mm256_blendv_ps(
                _mm256_set1_ps(p.pepper[c]),
                _mm256_set1_ps(p.salt[c]),
                _mm256_castsi256_ps(is_salt),
            );
            x = _mm256_blendv_ps(x, pick, _mm256_castsi256_ps(hit));
        }
        x
    }

    /// Gaussian noise on the longest multiple of 8 pixels of an interleaved RGB row; returns
    /// how many pixels.
    pub(super) fn gauss_rgb(p: &Photo<'_>, row: &mut [f32], first: usize) -> usize {
        // SAFETY: `Photo::new` allows this path only when the CPU has AVX2 and FMA.
        unsafe { gauss_rgb_avx2(p, row, first) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn gauss_rgb_avx2(p: &Photo<'_>, row: &mut [f32], first: usize) -> usize {
        let n = row.len() / 24 * 8;
        let (g, s, b) = (splat3(p.g), splat3(p.s), splat3(p.b));
        let mut j = 0;
        while j < n {
            let h = pixel_hash8(p, (first + j) as u32);
            // Planar draws of the three channels, then interleaved as the row is.
            let inter = interleave3(gauss8::<0>(p, h), gauss8::<10>(p, h), gauss8::<20>(p, h));
            let ptr = row.as_mut_ptr().add(3 * j);
            for (k, t) in inter.into_iter().enumerate() {
                let q = ptr.add(8 * k);
                let add = _mm256_fmadd_ps(t, s[k], b[k]);
                _mm256_storeu_ps(q, _mm256_fmadd_ps(_mm256_loadu_ps(q), g[k], add));
            }
            j += 8;
        }
        n
    }

    /// Per-channel constants in the order of 24 interleaved values.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn splat3(v: [f32; 3]) -> [__m256; 3] {
        interleave3(
            _mm256_set1_ps(v[0]),
            _mm256_set1_ps(v[1]),
            _mm256_set1_ps(v[2]),
        )
    }

    /// Three planar vectors (channel 0, 1, 2 of eight pixels) as 24 interleaved values.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn interleave3(r: __m256, g: __m256, b: __m256) -> [__m256; 3] {
        // Output vector k, lane l holds value 8k + l: pixel (8k + l) / 3, channel (8k + l) % 3.
        let r0 = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 0, 0, 1, 0, 0, 2, 0));
        let g0 = _mm256_permutevar8x32_ps(g, _mm256_setr_epi32(0, 0, 0, 0, 1, 0, 0, 2));
        let b0 = _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(0, 0, 0, 0, 0, 1, 0, 0));
        let v0 = _mm256_blend_ps::<0b0010_0100>(_mm256_blend_ps::<0b1001_0010>(r0, g0), b0);
        let r1 = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 3, 0, 0, 4, 0, 0, 5));
        let g1 = _mm256_permutevar8x32_ps(g, _mm256_setr_epi32(0, 0, 3, 0, 0, 4, 0, 0));
        let b1 = _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(2, 0, 0, 3, 0, 0, 4, 0));
        let v1 = _mm256_blend_ps::<0b0100_1001>(_mm256_blend_ps::<0b0010_0100>(r1, g1), b1);
        let r2 = _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 0, 6, 0, 0, 7, 0, 0));
        let g2 = _mm256_permutevar8x32_ps(g, _mm256_setr_epi32(5, 0, 0, 6, 0, 0, 7, 0));
        let b2 = _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(0, 5, 0, 0, 6, 0, 0, 7));
        let v2 = _mm256_blend_ps::<0b1001_0010>(_mm256_blend_ps::<0b0100_1001>(r2, g2), b2);
        [v0, v1, v2]
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use super::Photo;

    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn gauss_rgb(_: &Photo<'_>, _: &mut [f32], _: usize) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
