//! AVX2 + F16C helpers shared by the output store and the augmentation kernels.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::arch::x86_64::*;

use super::{OUT_F16, OUT_F32};

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
    } else {
        let r = bf16_bits8(v);
        let packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
        // SAFETY: the caller gives 16 writable bytes at `p`; the store is unaligned.
        unsafe { _mm_storeu_si128(p as *mut __m128i, packed) };
    }
}
