//! Brightness, contrast, gaussian and salt-and-pepper noise on one warped row, in place.
//!
//! Noise is counter-based: pixel `j` of the sample (row-major) gets `h = hash(noise_seed, j)`,
//! so it does not depend on how rows are visited or on the layout. Channel `c`'s gaussian
//! value is entry `(h >> 10c) & 1023` of a table of the normal's quantiles at
//! `(k + 1/2) / 1024`, scaled to std exactly 1 (mean exactly 0 by symmetry; the extremes are
//! ±3.3σ). Salt and pepper use a second hash per value, independent of the gaussian draw.

use super::AugmentParams;

/// Entries of the gaussian table: 10 bits of the pixel's hash per channel.
pub(crate) const TABLE: usize = 1024;

/// The table: `Φ⁻¹((k + 1/2) / TABLE)`, scaled to unit variance.
pub(crate) fn gaussian_table() -> Box<[f32; TABLE]> {
    let q: Vec<f64> = (0..TABLE)
        .map(|k| normal_quantile((k as f64 + 0.5) / TABLE as f64))
        .collect();
    let sd = (q.iter().map(|z| z * z).sum::<f64>() / TABLE as f64).sqrt();
    let mut t = Box::new([0f32; TABLE]);
    for (o, z) in t.iter_mut().zip(&q) {
        *o = (z / sd) as f32;
    }
    t
}

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

/// One sample's photometric pass, prepared: the variant is chosen once per sample.
pub(super) struct Photo<'a> {
    pub(super) gain: f32,
    pub(super) offset: f32,
    pub(super) sigma: f32,
    /// Replace when the low 19 bits of the value's second hash are below this.
    pub(super) sp_threshold: u32,
    pub(super) salt: f32,
    pub(super) seed: u32,
    pub(super) kind: Kind,
    pub(super) table: &'a [f32; TABLE],
    /// The AVX2 noise loop may be used.
    simd: bool,
}

impl<'a> Photo<'a> {
    /// `full` is the full range in source units (255 or 1); `unit` scales source units to
    /// what the store expects (1/255 for 8-bit sources written as floats, else 1).
    pub(super) fn new(
        p: &AugmentParams,
        full: f32,
        unit: f32,
        table: &'a [f32; TABLE],
        simd: bool,
    ) -> Self {
        let mid = full * 0.5;
        let (b, c) = (p.brightness, p.contrast);
        let gain = b * c * unit;
        let offset = b * mid * (1.0 - c) * unit;
        let sp_threshold = (p.salt_pepper as f64 * (1u32 << 19) as f64).round() as u32;
        let kind = match (p.noise_std > 0.0, sp_threshold > 0) {
            (false, false) => Kind::Affine,
            (true, false) => Kind::Gauss,
            (false, true) => Kind::SaltPepper,
            (true, true) => Kind::Both,
        };
        Photo {
            gain,
            offset,
            sigma: p.noise_std * full * unit,
            sp_threshold,
            salt: full * unit,
            seed: p.noise_seed,
            kind,
            table,
            simd: simd && avx2::available(),
        }
    }

    /// Applies the pass to `row` (`channels` values per pixel, interleaved), whose first pixel
    /// is pixel `first` of the sample.
    pub(super) fn apply(&self, row: &mut [f32], channels: usize, first: usize) {
        match self.kind {
            Kind::Affine => {
                if (self.gain, self.offset) != (1.0, 0.0) {
                    self.affine(row)
                }
            }
            Kind::Gauss => self.noise::<true, false>(row, channels, first),
            Kind::SaltPepper => self.noise::<false, true>(row, channels, first),
            Kind::Both => self.noise::<true, true>(row, channels, first),
        }
    }

    /// The noise loop: AVX2 where it applies (same bits), else portable.
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

    fn affine(&self, row: &mut [f32]) {
        let (g, o) = (self.gain, self.offset);
        for v in row {
            *v = *v * g + o;
        }
    }

    /// Channel `c` of the pixel whose hash is `h` (`v`, warped) through the pass: what every
    /// loop computes.
    #[inline(always)]
    pub(super) fn value<const GAUSS: bool, const SP: bool>(&self, v: f32, h: u32, c: usize) -> f32 {
        let mut x = v * self.gain + self.offset;
        if GAUSS {
            x += self.sigma * self.table[((h >> (10 * c)) & 1023) as usize];
        }
        if SP {
            let h = hash32(h ^ sp_key(c));
            let pick = if (h >> 19) & 1 == 1 { self.salt } else { 0.0 };
            x = if (h & 0x7_ffff) < self.sp_threshold {
                pick
            } else {
                x
            };
        }
        x
    }
}

/// AVX-512 noise for the fused kernel: the AVX2 operations, sixteen pixels at a time.
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

    /// The pass on channel `C / 10` of sixteen pixels: `x` is already `v * gain + offset`,
    /// `h` the pixels' hashes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn noise16<const C: i32, const GAUSS: bool, const SP: bool>(
        p: &Photo<'_>,
        mut x: __m512,
        h: __m512i,
    ) -> __m512 {
        if GAUSS {
            let i = _mm512_and_si512(
                _mm512_srlv_epi32(h, _mm512_set1_epi32(C)),
                _mm512_set1_epi32(1023),
            );
            let t = _mm512_i32gather_ps::<4>(i, p.table.as_ptr() as *const _);
            x = _mm512_add_ps(x, _mm512_mul_ps(_mm512_set1_ps(p.sigma), t));
        }
        if SP {
            let c = (C / 10) as usize;
            let h = hash16(_mm512_xor_si512(
                h,
                _mm512_set1_epi32(super::sp_key(c) as i32),
            ));
            let low = _mm512_and_si512(h, _mm512_set1_epi32(0x7_ffff));
            let hit = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(p.sp_threshold as i32), low);
            let is_salt = _mm512_test_epi32_mask(h, _mm512_set1_epi32(1 << 19));
            let pick = _mm512_maskz_mov_ps(is_salt, _mm512_set1_ps(p.salt));
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
        is_x86_feature_detected!("avx2")
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

    /// `sigma * t` of channel `C / 10` of eight pixels whose hashes are `h`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn gauss8<const C: i32>(p: &Photo<'_>, h: __m256i) -> __m256 {
        let i = _mm256_and_si256(_mm256_srli_epi32::<C>(h), _mm256_set1_epi32(1023));
        let t = _mm256_i32gather_ps::<4>(p.table.as_ptr(), i);
        _mm256_mul_ps(_mm256_set1_ps(p.sigma), t)
    }

    /// The pass on channel `C / 10` of eight pixels: `x` is already `v * gain + offset`, `h` the
    /// pixels' hashes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in super::super) unsafe fn noise8<const C: i32, const GAUSS: bool, const SP: bool>(
        p: &Photo<'_>,
        mut x: __m256,
        h: __m256i,
    ) -> __m256 {
        if GAUSS {
            x = _mm256_add_ps(x, gauss8::<C>(p, h));
        }
        if SP {
            let c = (C / 10) as usize;
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
            let pick = _mm256_and_ps(_mm256_castsi256_ps(is_salt), _mm256_set1_ps(p.salt));
            x = _mm256_blendv_ps(x, pick, _mm256_castsi256_ps(hit));
        }
        x
    }

    /// Gaussian noise on the longest multiple of 8 pixels of an interleaved RGB row; returns
    /// how many pixels.
    pub(super) fn gauss_rgb(p: &Photo<'_>, row: &mut [f32], first: usize) -> usize {
        // SAFETY: `Photo::new` allows this path only when the CPU has AVX2.
        unsafe { gauss_rgb_avx2(p, row, first) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn gauss_rgb_avx2(p: &Photo<'_>, row: &mut [f32], first: usize) -> usize {
        let n = row.len() / 24 * 8;
        let (g, o) = (_mm256_set1_ps(p.gain), _mm256_set1_ps(p.offset));
        let mut j = 0;
        while j < n {
            let h = pixel_hash8(p, (first + j) as u32);
            // Planar noise of the three channels, then interleaved as the row is.
            let inter = interleave3(gauss8::<0>(p, h), gauss8::<10>(p, h), gauss8::<20>(p, h));
            let ptr = row.as_mut_ptr().add(3 * j);
            for (k, nk) in inter.into_iter().enumerate() {
                let q = ptr.add(8 * k);
                let x = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(q), g), o);
                _mm256_storeu_ps(q, _mm256_add_ps(x, nk));
            }
            j += 8;
        }
        n
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
