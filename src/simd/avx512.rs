//! AVX-512 (F and BW) helpers shared by the output store and the augmentation kernels.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::arch::x86_64::*;

use super::{OUT_F16, OUT_F32};

/// Sixteen `f32` as `bf16` in the low half of each 32-bit lane: the bits of the AVX2 version,
/// sixteen at a time.
#[inline]
#[target_feature(enable = "avx512f")]
fn bf16_bits16(v: __m512) -> __m512i {
    let x = _mm512_castps_si512(v);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(1));
    let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
        _mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)),
        lsb,
    ));
    let abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7fff_ffff));
    let nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
    let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(0x40));
    _mm512_mask_blend_epi32(nan, rounded, quiet)
}

/// Sixteen `f32` stored as dtype `D` at `p` (unaligned): [`super::avx2::store8`]'s bits,
/// sixteen at a time.
///
/// # Safety
///
/// `p` is valid for writing `16 * out_size(D)` bytes, and the CPU has AVX-512 F and BW, AVX2
/// and F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
pub(crate) unsafe fn store16<const D: u8>(p: *mut u8, v: __m512) {
    if D == OUT_F32 {
        // SAFETY: the caller gives 64 writable bytes at `p`; the store is unaligned.
        unsafe { _mm512_storeu_ps(p as *mut f32, v) };
    } else if D == OUT_F16 {
        let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        // SAFETY: the caller gives 32 writable bytes at `p`; the store is unaligned.
        unsafe { _mm256_storeu_si256(p as *mut __m256i, h) };
    } else {
        let packed = _mm512_cvtepi32_epi16(bf16_bits16(v));
        // SAFETY: the caller gives 32 writable bytes at `p`; the store is unaligned.
        unsafe { _mm256_storeu_si256(p as *mut __m256i, packed) };
    }
}
