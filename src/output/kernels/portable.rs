//! Portable row kernels, every target. They index with checked slices: the [`RowFn`]
//! preconditions make every index valid, and a violated one panics instead of writing out of
//! bounds.
//!
//! [`RowFn`]: super::RowFn

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use super::{Plan, Px, Scratch};
use crate::simd::{OUT_F16, OUT_F32, out_size};

/// The slot bytes of output row `y`, of channel plane `ch` when planar.
#[inline(always)]
fn row_range(p: &Plan, y: usize, ch: usize, elem: usize) -> std::ops::Range<usize> {
    if p.planar {
        let start = (ch * p.h + y) * p.w * elem;
        start..start + p.w * elem
    } else {
        let n = p.w * p.c;
        y * n * elem..(y + 1) * n * elem
    }
}

/// `f32` to `u8`: round to nearest, ties to even, then clamp to `0..=255`; NaN to 0.
#[inline(always)]
fn round_u8(x: f32) -> u8 {
    // `as` saturates (and maps NaN to 0).
    x.round_ties_even() as u8
}

/// u8 → u8: a copy, or a de-interleave into planes.
pub(super) fn row_u8u8(p: &Plan, _: &mut Scratch, y: usize, src: &[u8], slot: &mut [u8]) {
    if !p.planar {
        slot[row_range(p, y, 0, 1)].copy_from_slice(src);
        return;
    }
    let (r0, r1, r2) = (
        row_range(p, y, 0, 1),
        row_range(p, y, 1, 1),
        row_range(p, y, 2, 1),
    );
    let (head, c2) = slot.split_at_mut(r2.start);
    let (c0, c1) = head.split_at_mut(r1.start);
    let (c0, c1, c2) = (&mut c0[r0], &mut c1[..p.w], &mut c2[..p.w]);
    for (((px, a), b), c) in src.chunks_exact(3).zip(c0).zip(c1).zip(c2) {
        *a = px[0];
        *b = px[1];
        *c = px[2];
    }
}

/// f32 → u8 (no normalisation): rounded and clamped.
pub(super) fn row_f32u8(p: &Plan, _: &mut Scratch, y: usize, src: &[f32], slot: &mut [u8]) {
    if !p.planar {
        for (d, &x) in slot[row_range(p, y, 0, 1)].iter_mut().zip(src) {
            *d = round_u8(x);
        }
        return;
    }
    for ch in 0..3 {
        let dst = &mut slot[row_range(p, y, ch, 1)];
        for (d, px) in dst.iter_mut().zip(src.chunks_exact(3)) {
            *d = round_u8(px[ch]);
        }
    }
}

/// Any source → float output: the affine map into scratch (output order), then the dtype.
pub(super) fn row_float<T: Px, const D: u8>(
    p: &Plan,
    s: &mut Scratch,
    y: usize,
    src: &[T],
    slot: &mut [u8],
) {
    let n = p.w * p.c;
    let f = &mut s.f[..n];
    if p.planar {
        let (f0, rest) = f.split_at_mut(p.w);
        let (f1, f2) = rest.split_at_mut(p.w);
        let ([s0, s1, s2], [b0, b1, b2]) = (p.scale, p.bias);
        for (((px, a), b), c) in src.chunks_exact(3).zip(f0).zip(f1).zip(f2) {
            *a = px[0].f() * s0 + b0;
            *b = px[1].f() * s1 + b1;
            *c = px[2].f() * s2 + b2;
        }
        for ch in 0..3 {
            let seg = &s.f[ch * p.w..(ch + 1) * p.w];
            emit::<D>(seg, &mut slot[row_range(p, y, ch, out_size(D))], &mut s.h);
        }
    } else {
        for (((d, &x), &sc), &b) in f.iter_mut().zip(src).zip(&p.scale_row).zip(&p.bias_row) {
            *d = x.f() * sc + b;
        }
        emit::<D>(f, &mut slot[row_range(p, y, 0, out_size(D))], &mut s.h);
    }
}

/// Writes `v` as dtype `D` into `dst` (`v.len() * size` bytes, any alignment).
#[inline(always)]
fn emit<const D: u8>(v: &[f32], dst: &mut [u8], h: &mut [u16]) {
    match D {
        OUT_F32 => {
            for (d, x) in dst.chunks_exact_mut(4).zip(v) {
                d.copy_from_slice(&x.to_ne_bytes());
            }
        }
        OUT_F16 => {
            let h = &mut h[..v.len()];
            h.reinterpret_cast_mut::<half::f16>()
                .convert_from_f32_slice(v);
            for (d, x) in dst.chunks_exact_mut(2).zip(h.iter()) {
                d.copy_from_slice(&x.to_ne_bytes());
            }
        }
        _ => {
            for (d, x) in dst.chunks_exact_mut(2).zip(v) {
                d.copy_from_slice(&half::bf16::from_f32(*x).to_bits().to_ne_bytes());
            }
        }
    }
}
