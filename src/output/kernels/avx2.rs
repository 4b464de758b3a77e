//! x86-64 row kernels (AVX2 + F16C), explicit intrinsics. Tails fall back to the same scalar
//! formula.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use std::arch::x86_64::*;

use super::{Plan, Px, Scratch};
use crate::simd::avx2::store8;
use crate::simd::{out_size, store1};

/// Blend mask picking, in the blend of three 8-lane vectors, the lanes of vector `v` that
/// hold channel `ch` of an interleaved 3-channel run (lane `l` of `v` is element `8v + l`).
const fn blend8(ch: usize, v: usize) -> i32 {
    let mut m = 0;
    let mut l = 0;
    while l < 8 {
        if (8 * v + l) % 3 == ch {
            m |= 1 << l;
        }
        l += 1;
    }
    m
}

/// `pshufb` mask taking, from 16-byte vector `v` of a 48-byte interleaved run, the bytes of
/// channel `ch` to their pixel position (others zeroed).
const fn shuf16(ch: usize, v: usize) -> [u8; 16] {
    let mut m = [0x80u8; 16];
    let mut j = 0;
    while j < 16 {
        let g = 3 * j + ch;
        if g / 16 == v {
            m[j] = (g % 16) as u8;
        }
        j += 1;
    }
    m
}

const SHUF: [[[u8; 16]; 3]; 3] = [
    [shuf16(0, 0), shuf16(0, 1), shuf16(0, 2)],
    [shuf16(1, 0), shuf16(1, 1), shuf16(1, 2)],
    [shuf16(2, 0), shuf16(2, 1), shuf16(2, 2)],
];

/// Eight source values at `p` as `f32`.
///
/// # Safety
///
/// `p` is valid for reading eight `T`, and the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load8<T: Px>(p: *const T) -> __m256 {
    if T::IS_F32 {
        // SAFETY: the caller gives eight readable `f32` at `p`; the load is unaligned.
        unsafe { _mm256_loadu_ps(p as *const f32) }
    } else {
        // SAFETY: the caller gives eight readable bytes at `p`; the load is unaligned.
        let b = unsafe { _mm_loadl_epi64(p as *const __m128i) };
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b))
    }
}

/// Splits three vectors holding 8 interleaved 3-channel pixels into one vector per channel.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn deinterleave3(a: __m256, b: __m256, c: __m256) -> [__m256; 3] {
    // After the blends, lane l holds the element of channel ch that sits at lane l of a, b
    // or c; the permutation puts pixel j at lane j (it sat at lane (3j + ch) % 8).
    let r = _mm256_blend_ps::<{ blend8(0, 2) }>(_mm256_blend_ps::<{ blend8(0, 1) }>(a, b), c);
    let g = _mm256_blend_ps::<{ blend8(1, 2) }>(_mm256_blend_ps::<{ blend8(1, 1) }>(a, b), c);
    let bl = _mm256_blend_ps::<{ blend8(2, 2) }>(_mm256_blend_ps::<{ blend8(2, 1) }>(a, b), c);
    [
        _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5)),
        _mm256_permutevar8x32_ps(g, _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6)),
        _mm256_permutevar8x32_ps(bl, _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7)),
    ]
}

/// Float output row, AVX2.
///
/// # Safety
///
/// The [`RowFn`](super::RowFn) preconditions, and the CPU has AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn row_float_avx2<T: Px, const D: u8>(
    p: &Plan,
    _: &mut Scratch,
    y: usize,
    src: &[T],
    slot: &mut [u8],
) {
    let sz = out_size(D);
    let sp = src.as_ptr();
    let base = slot.as_mut_ptr();
    if p.planar {
        let w = p.w;
        // SAFETY: the slot holds 3 planes of `h * w` elements of `sz` bytes and `y < h`: each
        // row start is inside the slot.
        let d = unsafe {
            [
                base.add(y * w * sz),
                base.add((p.h + y) * w * sz),
                base.add((2 * p.h + y) * w * sz),
            ]
        };
        let s = [
            _mm256_set1_ps(p.scale[0]),
            _mm256_set1_ps(p.scale[1]),
            _mm256_set1_ps(p.scale[2]),
        ];
        let b = [
            _mm256_set1_ps(p.bias[0]),
            _mm256_set1_ps(p.bias[1]),
            _mm256_set1_ps(p.bias[2]),
        ];
        let mut x = 0;
        while x + 8 <= w {
            // SAFETY: `src` has `3 * w` values and `x + 8 <= w`: the 24 values from `3 * x`
            // are in it; each plane row has `w` elements from `d[ch]`, 8 of them from `x`.
            unsafe {
                let q = sp.add(3 * x);
                let v = deinterleave3(load8(q), load8(q.add(8)), load8(q.add(16)));
                for ch in 0..3 {
                    let o = _mm256_add_ps(_mm256_mul_ps(v[ch], s[ch]), b[ch]);
                    store8::<D>(d[ch].add(x * sz), o);
                }
            }
            x += 8;
        }
        while x < w {
            for (ch, dc) in d.iter().enumerate() {
                // SAFETY: `x < w`: value `3 * x + ch` is in `src`, element `x` in the plane row.
                unsafe {
                    let v = (*sp.add(3 * x + ch)).f() * p.scale[ch] + p.bias[ch];
                    store1::<D>(dc.add(x * sz), v);
                }
            }
            x += 1;
        }
    } else {
        let n = p.w * p.c;
        // SAFETY: the slot holds `h` rows of `n` elements of `sz` bytes and `y < h`.
        let d = unsafe { base.add(y * n * sz) };
        let (sr, br) = (p.scale_row.as_ptr(), p.bias_row.as_ptr());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `src`, `scale_row` and `bias_row` have `n` values and the output row `n`
            // elements; `i + 8 <= n`.
            unsafe {
                let v = load8(sp.add(i));
                let o = _mm256_add_ps(
                    _mm256_mul_ps(v, _mm256_loadu_ps(sr.add(i))),
                    _mm256_loadu_ps(br.add(i)),
                );
                store8::<D>(d.add(i * sz), o);
            }
            i += 8;
        }
        while i < n {
            // SAFETY: as above, with `i < n`.
            unsafe {
                let v = (*sp.add(i)).f() * *sr.add(i) + *br.add(i);
                store1::<D>(d.add(i * sz), v);
            }
            i += 1;
        }
    }
}

/// u8 → u8 NCHW de-interleave, 16 pixels per step with `pshufb`.
///
/// # Safety
///
/// The [`RowFn`](super::RowFn) preconditions with a planar plan, and the CPU has AVX2.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn row_u8u8_avx2(
    p: &Plan,
    _: &mut Scratch,
    y: usize,
    src: &[u8],
    slot: &mut [u8],
) {
    let w = p.w;
    let sp = src.as_ptr();
    let base = slot.as_mut_ptr();
    // SAFETY: the slot holds 3 planes of `h * w` bytes and `y < h`: each row start is inside.
    let d = unsafe {
        [
            base.add(y * w),
            base.add((p.h + y) * w),
            base.add((2 * p.h + y) * w),
        ]
    };
    let mut m = [[_mm_setzero_si128(); 3]; 3];
    for (mc, sc) in m.iter_mut().zip(&SHUF) {
        for (mv, sv) in mc.iter_mut().zip(sc) {
            // SAFETY: `sv` is 16 bytes; the load is unaligned.
            *mv = unsafe { _mm_loadu_si128(sv.as_ptr() as *const __m128i) };
        }
    }
    let mut x = 0;
    while x + 16 <= w {
        // SAFETY: `src` has `3 * w` bytes and `x + 16 <= w`: the 48 bytes from `3 * x` are in
        // it; each plane row has `w` bytes from `d[ch]`, 16 of them from `x`.
        unsafe {
            let q = sp.add(3 * x);
            let a = _mm_loadu_si128(q as *const __m128i);
            let b = _mm_loadu_si128(q.add(16) as *const __m128i);
            let c = _mm_loadu_si128(q.add(32) as *const __m128i);
            for ch in 0..3 {
                let v = _mm_or_si128(
                    _mm_or_si128(_mm_shuffle_epi8(a, m[ch][0]), _mm_shuffle_epi8(b, m[ch][1])),
                    _mm_shuffle_epi8(c, m[ch][2]),
                );
                _mm_storeu_si128(d[ch].add(x) as *mut __m128i, v);
            }
        }
        x += 16;
    }
    while x < w {
        for (ch, dc) in d.iter().enumerate() {
            // SAFETY: `x < w`: byte `3 * x + ch` is in `src`, byte `x` in the plane row.
            unsafe { *dc.add(x) = *sp.add(3 * x + ch) };
        }
        x += 1;
    }
}
