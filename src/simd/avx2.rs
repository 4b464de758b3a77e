//! AVX2 + F16C helpers shared by the output store and the augmentation kernels.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::arch::x86_64::*;

use super::{OUT_BF16, OUT_F16, OUT_F32};

/// Eight `f32` as `bf16` in the low half of each 32-bit lane: round to nearest, ties to even;
/// a NaN keeps its top bits and becomes quiet (what `half::bf16::from_f32` does).
#[inline]
#[target_feature(enable = "avx2")]
fn bf16_bits8(v: __m256) -> __m256i {
    let x = _mm256_castps_si256(v);
    let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
    let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(
        _mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)),
        lsb,
    ));
    let abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7fff_ffff));
    let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f80_0000));
    let quiet = _mm256_or_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(0x40));
    _mm256_blendv_epi8(rounded, quiet, nan)
}

/// Eight `f32` stored as dtype `D` at `p` (unaligned).
///
/// # Safety
///
/// `p` is valid for writing `8 * out_size(D)` bytes, and the CPU has AVX2 and F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn store8<const D: u8>(p: *mut u8, v: __m256) {
    if D == OUT_F32 {
        // SAFETY: the caller gives 32 writable bytes at `p`; the store is unaligned.
        unsafe { _mm256_storeu_ps(p as *mut f32, v) };
    } else if D == OUT_F16 {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        // SAFETY: the caller gives 16 writable bytes at `p`; the store is unaligned.
        unsafe { _mm_storeu_si128(p as *mut __m128i, h) };
    } else if D == OUT_BF16 {
        let r = bf16_bits8(v);
        let packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
        // SAFETY: the caller gives 16 writable bytes at `p`; the store is unaligned.
        unsafe { _mm_storeu_si128(p as *mut __m128i, packed) };
    } else {
        let i = _mm256_cvtps_epi32(clamp_u8(v));
        let w = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256::<1>(i));
        // SAFETY: the caller gives 8 writable bytes at `p`; the store is unaligned.
        unsafe { _mm_storel_epi64(p as *mut __m128i, _mm_packus_epi16(w, w)) };
    }
}

/// Eight `f32` clamped to `[0, 255]`, NaN as 0 (`max` returns its second operand when the
/// first is NaN): converted with the default rounding (to nearest, ties to even), the bits of
/// the scalar `round_ties_even() as u8`.
#[inline]
#[target_feature(enable = "avx2")]
fn clamp_u8(v: __m256) -> __m256 {
    _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(255.0))
}

/// Three planar vectors (channel 0, 1, 2 of eight pixels) as 24 interleaved values.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn interleave3(r: __m256, g: __m256, b: __m256) -> [__m256; 3] {
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
