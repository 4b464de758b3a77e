//! The fused pass of the common case, 8-bit RGB source, bilinear: sixteen (AVX-512) or eight
//! (AVX2) output pixels at a time go from the source through the inverse map, brightness,
//! contrast, noise and normalisation into the slot, with no intermediate row. Targets: the
//! three planes of NCHW in any dtype (f32, f16, bf16, u8), or interleaved NHWC rows in f32 or
//! u8 (the three channel vectors interleaved in registers before the store).
//!
//! The operations and their order are those of the portable path (warp row, then
//! [`Photo::apply`], then the store's dtype conversion), with the same fused multiply-adds, so
//! the bits are the same; the tests hold the two equal.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(target_arch = "x86_64")]
pub(super) use x86::pick;

/// Without x86-64 there is no fused kernel: the portable path runs.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn pick(
    _: super::FillMode,
    _: u8,
    _: bool,
    _: super::photometric::Kind,
    _: crate::simd::SimdLevel,
) -> Option<RowFn> {
    None
}

/// Writes output row `y` into the slot: planar, into the rows of the three planes at
/// `planes`; interleaved, into the row at `planes[0]` (the other two unused).
///
/// # Safety
///
/// The CPU has the features the function was picked for, `planes` point at `width` writable
/// elements of its dtype (interleaved: `planes[0]` at `3 * width`), and `y` is below the output
/// height.
pub(super) type RowFn = unsafe fn(&Fused<'_>, usize, [*mut u8; 3]);

/// One sample's fused pass, prepared.
pub(super) struct Fused<'a> {
    pub(super) warp: super::warp::Warp<'a, u8>,
    pub(super) photo: super::photometric::Photo<'a>,
    /// Output width.
    pub(super) width: usize,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::FillMode;
    use super::super::photometric::Kind;
    use super::super::photometric::avx2::{pixel_hash8, value8};
    use super::super::photometric::avx512::{Tables, pixel_hash16, tables, value16};
    use super::super::warp::avx2::block_rgb8;
    use super::super::warp::avx512::{block_rgb8 as block16, row_in_range, row16};
    use super::super::warp::{self, Fill, pixel, row_map};
    use super::{Fused, RowFn};
    use crate::simd::avx2::{interleave3 as interleave8, store8};
    use crate::simd::avx512::{interleave3 as interleave16, store16};
    use crate::simd::{OUT_BF16, OUT_F16, OUT_F32, OUT_U8, SimdLevel, out_size, store1};

    /// The kernel for `fill`, dtype code `d`, planar (NCHW) or interleaved output and
    /// photometric `kind`, at most at `level` (AVX-512 or AVX2; `None` below AVX2, on a CPU
    /// without it, or for interleaved f16 and bf16).
    pub(in super::super) fn pick(
        fill: FillMode,
        d: u8,
        planar: bool,
        kind: Kind,
        level: SimdLevel,
    ) -> Option<RowFn> {
        let wide = match level {
            SimdLevel::Avx512 if SimdLevel::Avx512.is_available() => true,
            SimdLevel::Avx512 | SimdLevel::Avx2 if SimdLevel::Avx2.is_available() => false,
            _ => return None,
        };
        match fill {
            FillMode::Constant => by_dtype::<warp::Constant>(d, planar, kind, wide),
            FillMode::Nearest => by_dtype::<warp::Nearest>(d, planar, kind, wide),
            FillMode::Reflect => by_dtype::<warp::Reflect>(d, planar, kind, wide),
            FillMode::Wrap => by_dtype::<warp::Wrap>(d, planar, kind, wide),
        }
    }

    fn by_dtype<F: Fill>(d: u8, planar: bool, kind: Kind, wide: bool) -> Option<RowFn> {
        Some(match (d, planar) {
            (OUT_F32, true) => by_kind::<F, OUT_F32, true>(kind, wide),
            (OUT_F16, true) => by_kind::<F, OUT_F16, true>(kind, wide),
            (OUT_BF16, true) => by_kind::<F, OUT_BF16, true>(kind, wide),
            (OUT_U8, true) => by_kind::<F, OUT_U8, true>(kind, wide),
            (OUT_F32, false) => by_kind::<F, OUT_F32, false>(kind, wide),
            (OUT_U8, false) => by_kind::<F, OUT_U8, false>(kind, wide),
            _ => return None,
        })
    }

    fn by_kind<F: Fill, const D: u8, const P: bool>(kind: Kind, wide: bool) -> RowFn {
        match (kind, wide) {
            (Kind::Affine, false) => row::<F, D, P, false, false>,
            (Kind::Gauss, false) => row::<F, D, P, true, false>,
            (Kind::SaltPepper, false) => row::<F, D, P, false, true>,
            (Kind::Both, false) => row::<F, D, P, true, true>,
            (Kind::Affine, true) => row512::<F, D, P, false, false>,
            (Kind::Gauss, true) => row512::<F, D, P, true, false>,
            (Kind::SaltPepper, true) => row512::<F, D, P, false, true>,
            (Kind::Both, true) => row512::<F, D, P, true, true>,
        }
    }

    /// [`finish`], sixteen pixels at a time.
    ///
    /// # Safety
    ///
    /// `planes` hold 16 writable elements of dtype `D` from pixel `x` (planar: in each plane;
    /// interleaved: 48 in `planes[0]`), and the CPU has the features.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    unsafe fn finish16<const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        t: Tables,
        [r, g, b]: [__m512; 3],
        h: __m512i,
        planes: [*mut u8; 3],
        x: usize,
    ) {
        let r = value16::<0, GAUSS, SP>(&k.photo, t, r, h);
        let g = value16::<10, GAUSS, SP>(&k.photo, t, g, h);
        let b = value16::<20, GAUSS, SP>(&k.photo, t, b, h);
        let sz = out_size(D);
        // SAFETY: the caller gives the elements written here.
        unsafe {
            if P {
                store16::<D>(planes[0].add(x * sz), r);
                store16::<D>(planes[1].add(x * sz), g);
                store16::<D>(planes[2].add(x * sz), b);
            } else {
                let at = planes[0].add(3 * x * sz);
                for (j, v) in interleave16(r, g, b).into_iter().enumerate() {
                    store16::<D>(at.add(16 * j * sz), v);
                }
            }
        }
    }

    /// Two AVX2 vectors as one AVX-512 vector (`lo` first).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn join(lo: __m256, hi: __m256) -> __m512 {
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castpd256_pd512(_mm256_castps_pd(lo)),
            _mm256_castps_pd(hi),
        ))
    }

    /// The AVX-512 row: sixteen pixels at a time (two AVX2 blocks where a tap falls outside
    /// the image and the fill mode is not `nearest`), then the AVX2 row for the rest.
    ///
    /// # Safety
    ///
    /// The [`RowFn`] preconditions, for AVX-512 F and BW, AVX2, FMA and F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    unsafe fn row512<F: Fill, const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        y: usize,
        planes: [*mut u8; 3],
    ) {
        let w = &k.warp;
        let m = row_map(w, y);
        let m16 = row16(w, y);
        let width = k.width;
        let in_range = row_in_range(w, y, width);
        let first = (y * width) as u32;
        let t = tables(&k.photo);
        let mut x = 0;
        while x + 16 <= width {
            // SAFETY: the warp's source holds its `sw * sh * 3` bytes (checked before the
            // warp is made).
            let block = unsafe {
                if in_range {
                    block16::<F, false>(w, m16, x)
                } else {
                    block16::<F, true>(w, m16, x)
                }
            };
            let rgb = match block {
                Some(v) => v,
                None => {
                    // SAFETY: as above.
                    let [r0, g0, b0] = unsafe { block_rgb8::<F>(w, m, x) };
                    // SAFETY: as above.
                    let [r1, g1, b1] = unsafe { block_rgb8::<F>(w, m, x + 8) };
                    [join(r0, r1), join(g0, g1), join(b0, b1)]
                }
            };
            let h = if GAUSS || SP {
                pixel_hash16(&k.photo, first.wrapping_add(x as u32))
            } else {
                _mm512_setzero_si512()
            };
            // SAFETY: each row has `width` pixels and `x + 16 <= width`.
            unsafe { finish16::<D, P, GAUSS, SP>(k, t, rgb, h, planes, x) };
            x += 16;
        }
        // SAFETY: the caller's preconditions; `x <= width`.
        unsafe { row_from::<F, D, P, GAUSS, SP>(k, y, planes, x) };
    }

    /// Photometric pass, normalisation and store of eight pixels from `x` whose warped
    /// channels are `rgb` and noise hashes `h`.
    ///
    /// # Safety
    ///
    /// `planes` hold 8 writable elements of dtype `D` from pixel `x` (planar: in each plane;
    /// interleaved: 24 in `planes[0]`), and the CPU has the features.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish<const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        [r, g, b]: [__m256; 3],
        h: __m256i,
        planes: [*mut u8; 3],
        x: usize,
    ) {
        let r = value8::<0, GAUSS, SP>(&k.photo, r, h);
        let g = value8::<10, GAUSS, SP>(&k.photo, g, h);
        let b = value8::<20, GAUSS, SP>(&k.photo, b, h);
        let sz = out_size(D);
        // SAFETY: the caller gives the elements written here.
        unsafe {
            if P {
                store8::<D>(planes[0].add(x * sz), r);
                store8::<D>(planes[1].add(x * sz), g);
                store8::<D>(planes[2].add(x * sz), b);
            } else {
                let at = planes[0].add(3 * x * sz);
                for (j, v) in interleave8(r, g, b).into_iter().enumerate() {
                    store8::<D>(at.add(8 * j * sz), v);
                }
            }
        }
    }

    /// The AVX2 row.
    ///
    /// # Safety
    ///
    /// The [`RowFn`] preconditions, for AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row<F: Fill, const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        y: usize,
        planes: [*mut u8; 3],
    ) {
        // SAFETY: the caller's preconditions.
        unsafe { row_from::<F, D, P, GAUSS, SP>(k, y, planes, 0) }
    }

    /// Output row `y` from pixel `x` on: eight pixels at a time, then one at a time.
    ///
    /// # Safety
    ///
    /// The [`RowFn`] preconditions, for AVX2, FMA and F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_from<F: Fill, const D: u8, const P: bool, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        y: usize,
        planes: [*mut u8; 3],
        mut x: usize,
    ) {
        let w = &k.warp;
        let m = row_map(w, y);
        let width = k.width;
        let sz = out_size(D);
        let first = (y * width) as u32;
        while x + 8 <= width {
            // SAFETY: the warp's source holds its `sw * sh * 3` bytes (checked before the
            // warp is made).
            let rgb = unsafe { block_rgb8::<F>(w, m, x) };
            let h = if GAUSS || SP {
                pixel_hash8(&k.photo, first.wrapping_add(x as u32))
            } else {
                _mm256_setzero_si256()
            };
            // SAFETY: each row has `width` pixels and `x + 8 <= width`.
            unsafe { finish::<D, P, GAUSS, SP>(k, rgb, h, planes, x) };
            x += 8;
        }
        while x < width {
            let mut o = [0f32; 3];
            pixel::<u8, F, 3, true>(w, m, x, &mut o);
            let h = k.photo.pixel_hash(first.wrapping_add(x as u32));
            for (c, v) in o.into_iter().enumerate() {
                let v = k.photo.value::<GAUSS, SP>(v, h, c);
                let at = if P { x * sz } else { (3 * x + c) * sz };
                let plane = if P { planes[c] } else { planes[0] };
                // SAFETY: each row has `width` pixels and `x < width`.
                unsafe { store1::<D>(plane.add(at), v) };
            }
            x += 1;
        }
    }
}
