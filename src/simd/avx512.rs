//! AVX-512 (F and BW) helpers shared by the output store and the augmentation kernels.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::arch::x86_64::*;

use super::{OUT_BF16, OUT_F16, OUT_F32};

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
    } else if D == OUT_BF16 {
        let packed = _mm512_cvtepi32_epi16(bf16_bits16(v));
        // SAFETY: the caller gives 32 writable bytes at `p`; the store is unaligned.
        unsafe { _mm256_storeu_si256(p as *mut __m256i, packed) };
    } else {
        // Clamped to [0, 255] (NaN as 0: `max` returns its second operand when the first is
        // NaN), converted with the default rounding (to nearest, ties to even).
        let c = _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(255.0));
        let bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(c));
        // SAFETY: the caller gives 16 writable bytes at `p`; the store is unaligned.
        unsafe { _mm_storeu_si128(p as *mut __m128i, bytes) };
    }
}

/// The two permutes of [`interleave3`]'s output vector `k`: the first takes channels 0 and 1
/// (`r` lanes, then `g` lanes from 16), the second keeps those and takes channel 2 from `b`.
const fn interleave_index(k: usize) -> [[i32; 16]; 2] {
    let mut out = [[0; 16]; 2];
    let mut l = 0;
    while l < 16 {
        let n = 16 * k + l;
        let (px, ch) = ((n / 3) as i32, n % 3);
        out[0][l] = match ch {
            0 => px,
            1 => 16 + px,
            _ => 0,
        };
        out[1][l] = if ch == 2 { 16 + px } else { l as i32 };
        l += 1;
    }
    out
}

/// The indices of [`interleave3`], one pair per output vector.
static INTERLEAVE: [[[i32; 16]; 2]; 3] = [
    interleave_index(0),
    interleave_index(1),
    interleave_index(2),
];

/// Three planar vectors (channel 0, 1, 2 of sixteen pixels) as 48 interleaved values: output
/// vector `k`, lane `l` holds pixel `(16k + l) / 3`, channel `(16k + l) % 3`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn interleave3(r: __m512, g: __m512, b: __m512) -> [__m512; 3] {
    let one = |k: usize| {
        // SAFETY: each index array holds 16 `i32`; the loads are unaligned.
        let (i, j) = unsafe {
            (
                _mm512_loadu_si512(INTERLEAVE[k][0].as_ptr() as *const _),
                _mm512_loadu_si512(INTERLEAVE[k][1].as_ptr() as *const _),
            )
        };
        _mm512_permutex2var_ps(_mm512_permutex2var_ps(r, i, g), j, b)
    };
    [one(0), one(1), one(2)]
}
