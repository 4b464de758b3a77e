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

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use super::AugmentParams;
pub(crate) use crate::noise::Gauss;
use crate::noise::{hash32, noise_key};

/// The second hash's key for channel `c` (salt and pepper).
#[inline(always)]
fn sp_key(c: usize) -> u32 {
    0x9e37_79b9u32.wrapping_mul(c as u32 + 1)
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
#[derive(Clone, Copy)]
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
            simd: simd && crate::simd::has_avx2_fma(),
        }
    }

    /// Applies the pass to `row` (`channels` values per pixel, interleaved), whose first pixel
    /// is pixel `first` of the sample.
    pub(super) fn apply(&self, row: &mut [f32], channels: usize, first: usize) {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::has_fma() {
            // SAFETY: the CPU has FMA.
            return unsafe { self.apply_fma(row, channels, first) };
        }
        self.apply_any(row, channels, first)
    }

    /// [`Photo::apply`] with hardware fused multiply-adds (without them, `mul_add` is a call).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    fn apply_fma(&self, row: &mut [f32], channels: usize, first: usize) {
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
    fn hash16(mut h: __m512i) -> __m512i {
        h = _mm512_xor_si512(h, _mm512_srli_epi32::<16>(h));
        h = _mm512_mullo_epi32(h, _mm512_set1_epi32(0x7feb_352d_u32 as i32));
        h = _mm512_xor_si512(h, _mm512_srli_epi32::<15>(h));
        h = _mm512_mullo_epi32(h, _mm512_set1_epi32(0x846c_a68b_u32 as i32));
        _mm512_xor_si512(h, _mm512_srli_epi32::<16>(h))
    }

    /// The hashes of pixels `j..j + 16`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) fn pixel_hash16(p: &Photo<'_>, j: u32) -> __m512i {
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
    pub(in super::super) fn tables(p: &Photo<'_>) -> Tables {
        let [a, b] = &p.gauss.parts;
        // SAFETY: each part has 32 values: two unaligned loads of 16 from 0 and from 16.
        unsafe {
            Tables([
                _mm512_loadu_ps(a.as_ptr()),
                _mm512_loadu_ps(a.as_ptr().add(16)),
                _mm512_loadu_ps(b.as_ptr()),
                _mm512_loadu_ps(b.as_ptr().add(16)),
            ])
        }
    }

    /// Channel `C / 10` of sixteen pixels whose warped values are `v` and hashes `h`, through
    /// the pass.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) fn value16<const C: i32, const GAUSS: bool, const SP: bool>(
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
    use crate::simd::avx2::interleave3;
    use std::arch::x86_64::*;

    /// [`super::hash32`] of eight lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in super::super) fn hash8(mut h: __m256i) -> __m256i {
        h = _mm256_xor_si256(h, _mm256_srli_epi32::<16>(h));
        h = _mm256_mullo_epi32(h, _mm256_set1_epi32(0x7feb_352d_u32 as i32));
        h = _mm256_xor_si256(h, _mm256_srli_epi32::<15>(h));
        h = _mm256_mullo_epi32(h, _mm256_set1_epi32(0x846c_a68b_u32 as i32));
        _mm256_xor_si256(h, _mm256_srli_epi32::<16>(h))
    }

    /// The hashes of pixels `j..j + 8`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in super::super) fn pixel_hash8(p: &Photo<'_>, j: u32) -> __m256i {
        let idx = _mm256_add_epi32(
            _mm256_set1_epi32(j as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        hash8(_mm256_xor_si256(idx, _mm256_set1_epi32(p.key() as i32)))
    }

    /// The gaussian draws of channel `C / 10` of eight pixels whose hashes are `h`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn gauss8<const C: i32>(p: &Photo<'_>, h: __m256i) -> __m256 {
        let i = _mm256_and_si256(_mm256_srli_epi32::<C>(h), _mm256_set1_epi32(1023));
        // SAFETY: every index is masked to 0..1024, the table's length.
        unsafe { _mm256_i32gather_ps::<4>(p.gauss.sum.as_ptr(), i) }
    }

    /// Channel `C / 10` of eight pixels whose warped values are `v` and hashes `h`, through
    /// the pass.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(in super::super) fn value8<const C: i32, const GAUSS: bool, const SP: bool>(
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

    /// [`gauss_rgb`] compiled for AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    fn gauss_rgb_avx2(p: &Photo<'_>, row: &mut [f32], first: usize) -> usize {
        let n = row.len() / 24 * 8;
        let (g, s, b) = (splat3(p.g), splat3(p.s), splat3(p.b));
        let mut j = 0;
        while j < n {
            let h = pixel_hash8(p, (first + j) as u32);
            // Planar draws of the three channels, then interleaved as the row is.
            let inter = interleave3(gauss8::<0>(p, h), gauss8::<10>(p, h), gauss8::<20>(p, h));
            for (k, t) in inter.into_iter().enumerate() {
                let add = _mm256_fmadd_ps(t, s[k], b[k]);
                // SAFETY: `j + 8 <= n` and `3 * n <= row.len()`: the 8 values from
                // `3 * j + 8 * k` (`k < 3`) are in the row; the accesses are unaligned.
                unsafe {
                    let q = row.as_mut_ptr().add(3 * j + 8 * k);
                    _mm256_storeu_ps(q, _mm256_fmadd_ps(_mm256_loadu_ps(q), g[k], add));
                }
            }
            j += 8;
        }
        n
    }

    /// Per-channel constants in the order of 24 interleaved values.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat3(v: [f32; 3]) -> [__m256; 3] {
        interleave3(
            _mm256_set1_ps(v[0]),
            _mm256_set1_ps(v[1]),
            _mm256_set1_ps(v[2]),
        )
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use super::Photo;

    pub(super) fn gauss_rgb(_: &Photo<'_>, _: &mut [f32], _: usize) -> usize {
        0
    }
}
