//! Brightness, contrast, gaussian and salt-and-pepper noise on one warped row, in place.
//!
//! Noise is counter-based: value `i` of the sample (row-major, channels interleaved) gets
//! `hash(noise_seed, i)`, so it does not depend on how rows are visited. The gaussian value is
//! looked up in a table of [`TABLE`] draws from N(0, 1), standardised to mean exactly 0 and
//! std exactly 1 (symmetric pairs); salt and pepper use other bits of the same hash.

use super::AugmentParams;
use crate::rng::SampleRng;

/// Entries of the gaussian table (indexed by the top 12 bits of the hash).
pub(super) const TABLE: usize = 4096;

/// `TABLE` values distributed as N(0, 1): mean 0, std 1 exactly (up to rounding).
pub(super) fn gaussian_table() -> Box<[f32; TABLE]> {
    let mut rng = SampleRng::new(0x005e_ed0f_9a55);
    let mut v = vec![0f64; TABLE];
    for k in 0..TABLE / 2 {
        // Box-Muller; the table holds each value and its negation, so the mean is 0.
        let u1 = 1.0 - rng.next_f64();
        let u2 = rng.next_f64();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        v[2 * k] = z;
        v[2 * k + 1] = -z;
    }
    let sd = (v.iter().map(|z| z * z).sum::<f64>() / TABLE as f64).sqrt();
    let mut t = Box::new([0f32; TABLE]);
    for (o, z) in t.iter_mut().zip(&v) {
        *o = (z / sd) as f32;
    }
    t
}

/// lowbias32 (Chris Wellons): a bijective 32-bit hash with good avalanche.
#[inline(always)]
fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Only `v * gain + offset`.
    Affine,
    Gauss,
    SaltPepper,
    Both,
}

/// One sample's photometric pass, prepared: the variant is chosen once per sample.
pub(super) struct Photo<'a> {
    gain: f32,
    offset: f32,
    sigma: f32,
    /// Replace when the low 19 hash bits are below this.
    sp_threshold: u32,
    salt: f32,
    seed: u32,
    kind: Kind,
    table: &'a [f32; TABLE],
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

    /// Applies the pass to `row`, whose first value is value `first` of the sample.
    pub(super) fn apply(&self, row: &mut [f32], first: usize) {
        match self.kind {
            Kind::Affine => {
                if (self.gain, self.offset) != (1.0, 0.0) {
                    self.affine(row)
                }
            }
            Kind::Gauss => self.noise::<true, false>(row, first),
            Kind::SaltPepper => self.noise::<false, true>(row, first),
            Kind::Both => self.noise::<true, true>(row, first),
        }
    }

    /// The noise loop: AVX2 when allowed (same bits), else portable.
    fn noise<const GAUSS: bool, const SP: bool>(&self, row: &mut [f32], first: usize) {
        let done = if self.simd {
            avx2::noise::<GAUSS, SP>(self, row, first)
        } else {
            0
        };
        self.noise_scalar::<GAUSS, SP>(&mut row[done..], first + done);
    }

    #[inline(always)]
    fn key(&self) -> u32 {
        self.seed.wrapping_mul(0x9e37_79b9) ^ 0x85eb_ca6b
    }

    fn affine(&self, row: &mut [f32]) {
        let (g, o) = (self.gain, self.offset);
        for v in row {
            *v = *v * g + o;
        }
    }

    fn noise_scalar<const GAUSS: bool, const SP: bool>(&self, row: &mut [f32], first: usize) {
        let (g, o, s) = (self.gain, self.offset, self.sigma);
        let (thr, salt) = (self.sp_threshold, self.salt);
        let key = self.key();
        let first = first as u32;
        for (i, v) in row.iter_mut().enumerate() {
            let h = hash32((first.wrapping_add(i as u32)) ^ key);
            let mut x = *v * g + o;
            if GAUSS {
                x += s * self.table[(h >> 20) as usize];
            }
            if SP {
                let pick = if (h >> 19) & 1 == 1 { salt } else { 0.0 };
                x = if (h & 0x7_ffff) < thr { pick } else { x };
            }
            *v = x;
        }
    }
}

/// AVX2 noise: eight values at a time, the same operations as the portable loop.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Photo;
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// Processes the longest multiple of 8 values of `row`; returns how many.
    pub(super) fn noise<const GAUSS: bool, const SP: bool>(
        p: &Photo<'_>,
        row: &mut [f32],
        first: usize,
    ) -> usize {
        // SAFETY: `Photo::new` allows this path only when the CPU has AVX2.
        unsafe { noise_avx2::<GAUSS, SP>(p, row, first) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn noise_avx2<const GAUSS: bool, const SP: bool>(
        p: &Photo<'_>,
        row: &mut [f32],
        first: usize,
    ) -> usize {
        let n = row.len() / 8 * 8;
        let (g, o, s) = (
            _mm256_set1_ps(p.gain),
            _mm256_set1_ps(p.offset),
            _mm256_set1_ps(p.sigma),
        );
        let key = _mm256_set1_epi32(p.key() as i32);
        let (m1, m2) = (
            _mm256_set1_epi32(0x7feb_352d_u32 as i32),
            _mm256_set1_epi32(0x846c_a68b_u32 as i32),
        );
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let thr = _mm256_set1_epi32(p.sp_threshold as i32);
        let low = _mm256_set1_epi32(0x7_ffff);
        let one = _mm256_set1_epi32(1);
        let salt = _mm256_set1_ps(p.salt);
        let table = p.table.as_ptr();
        let mut i = 0;
        while i < n {
            let idx = _mm256_add_epi32(_mm256_set1_epi32((first + i) as u32 as i32), lane);
            let mut h = _mm256_xor_si256(idx, key);
            h = _mm256_xor_si256(h, _mm256_srli_epi32::<16>(h));
            h = _mm256_mullo_epi32(h, m1);
            h = _mm256_xor_si256(h, _mm256_srli_epi32::<15>(h));
            h = _mm256_mullo_epi32(h, m2);
            h = _mm256_xor_si256(h, _mm256_srli_epi32::<16>(h));
            let ptr = row.as_mut_ptr().add(i);
            let mut x = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(ptr), g), o);
            if GAUSS {
                let t = _mm256_i32gather_ps::<4>(table, _mm256_srli_epi32::<20>(h));
                x = _mm256_add_ps(x, _mm256_mul_ps(s, t));
            }
            if SP {
                // Values below 2^19 and the threshold at most 2^19: signed compares are exact.
                let hit = _mm256_cmpgt_epi32(thr, _mm256_and_si256(h, low));
                let is_salt =
                    _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_srli_epi32::<19>(h), one), one);
                let pick = _mm256_and_ps(_mm256_castsi256_ps(is_salt), salt);
                x = _mm256_blendv_ps(x, pick, _mm256_castsi256_ps(hit));
            }
            _mm256_storeu_ps(ptr, x);
            i += 8;
        }
        n
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use super::Photo;

    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn noise<const GAUSS: bool, const SP: bool>(
        _: &Photo<'_>,
        _: &mut [f32],
        _: usize,
    ) -> usize {
        0
    }
}
