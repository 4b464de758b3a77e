//! The fused pass of the common case, 8-bit RGB source, bilinear, float NCHW output: sixteen
//! (AVX-512) or eight (AVX2) output pixels at a time go from the source through the inverse
//! map, brightness, contrast, noise and normalisation into the slot's three planes, with no
//! intermediate row.
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
    _: super::photometric::Kind,
    _: crate::simd::SimdLevel,
) -> Option<RowFn> {
    None
}

/// Writes output row `y` into the three planes of the slot.
///
/// # Safety
///
/// The CPU has the features the function was picked for, `planes` point at `width` writable
/// elements of its dtype, and `y` is below the output height.
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
    use crate::simd::avx2::store8;
    use crate::simd::avx512::store16;
    use crate::simd::{OUT_BF16, OUT_F16, OUT_F32, SimdLevel, out_size, store1};

    /// The kernel for `fill`, dtype code `d` and photometric `kind`, at most at `level`
    /// (AVX-512 or AVX2; `None` below AVX2 or on a CPU without it).
    pub(in super::super) fn pick(
        fill: FillMode,
        d: u8,
        kind: Kind,
        level: SimdLevel,
    ) -> Option<RowFn> {
        let wide = match level {
            SimdLevel::Avx512 if SimdLevel::Avx512.is_available() => true,
            SimdLevel::Avx512 | SimdLevel::Avx2 if SimdLevel::Avx2.is_available() => false,
            _ => return None,
        };
        Some(match fill {
            FillMode::Constant => by_dtype::<warp::Constant>(d, kind, wide),
            FillMode::Nearest => by_dtype::<warp::Nearest>(d, kind, wide),
            FillMode::Reflect => by_dtype::<warp::Reflect>(d, kind, wide),
            FillMode::Wrap => by_dtype::<warp::Wrap>(d, kind, wide),
        })
    }

    fn by_dtype<F: Fill>(d: u8, kind: Kind, wide: bool) -> RowFn {
        match d {
            OUT_F32 => by_kind::<F, OUT_F32>(kind, wide),
            OUT_F16 => by_kind::<F, OUT_F16>(kind, wide),
            _ => by_kind::<F, OUT_BF16>(kind, wide),
        }
    }

    fn by_kind<F: Fill, const D: u8>(kind: Kind, wide: bool) -> RowFn {
        match (kind, wide) {
            (Kind::Affine, false) => row::<F, D, false, false>,
            (Kind::Gauss, false) => row::<F, D, true, false>,
            (Kind::SaltPepper, false) => row::<F, D, false, true>,
            (Kind::Both, false) => row::<F, D, true, true>,
            (Kind::Affine, true) => row512::<F, D, false, false>,
            (Kind::Gauss, true) => row512::<F, D, true, false>,
            (Kind::SaltPepper, true) => row512::<F, D, false, true>,
            (Kind::Both, true) => row512::<F, D, true, true>,
        }
    }

    /// [`finish`], sixteen pixels at a time.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writing 16 elements of dtype `D`, and the CPU has the features.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    unsafe fn finish16<const C: i32, const D: u8, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        t: Tables,
        v: __m512,
        h: __m512i,
        dst: *mut u8,
    ) {
        let v = value16::<C, GAUSS, SP>(&k.photo, t, v, h);
        // SAFETY: the caller gives 16 writable elements at `dst`.
        unsafe { store16::<D>(dst, v) };
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
    unsafe fn row512<F: Fill, const D: u8, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        y: usize,
        planes: [*mut u8; 3],
    ) {
        let w = &k.warp;
        let m = row_map(w, y);
        let m16 = row16(w, y);
        let width = k.width;
        let in_range = row_in_range(w, y, width);
        let sz = out_size(D);
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
            let [r, g, b] = match block {
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
            // SAFETY: each plane row has `width` elements and `x + 16 <= width`.
            unsafe {
                finish16::<0, D, GAUSS, SP>(k, t, r, h, planes[0].add(x * sz));
                finish16::<10, D, GAUSS, SP>(k, t, g, h, planes[1].add(x * sz));
                finish16::<20, D, GAUSS, SP>(k, t, b, h, planes[2].add(x * sz));
            }
            x += 16;
        }
        // SAFETY: the caller's preconditions; `x <= width`.
        unsafe { row_from::<F, D, GAUSS, SP>(k, y, planes, x) };
    }

    /// Photometric pass, normalisation and store of channel `C / 10` of eight pixels whose
    /// noise hashes are `h`.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writing 8 elements of dtype `D`, and the CPU has the features.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish<const C: i32, const D: u8, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        v: __m256,
        h: __m256i,
        dst: *mut u8,
    ) {
        let v = value8::<C, GAUSS, SP>(&k.photo, v, h);
        // SAFETY: the caller gives 8 writable elements at `dst`.
        unsafe { store8::<D>(dst, v) };
    }

    /// The AVX2 row.
    ///
    /// # Safety
    ///
    /// The [`RowFn`] preconditions, for AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row<F: Fill, const D: u8, const GAUSS: bool, const SP: bool>(
        k: &Fused<'_>,
        y: usize,
        planes: [*mut u8; 3],
    ) {
        // SAFETY: the caller's preconditions.
        unsafe { row_from::<F, D, GAUSS, SP>(k, y, planes, 0) }
    }

    /// Output row `y` from pixel `x` on: eight pixels at a time, then one at a time.
    ///
    /// # Safety
    ///
    /// The [`RowFn`] preconditions, for AVX2, FMA and F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_from<F: Fill, const D: u8, const GAUSS: bool, const SP: bool>(
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
            let [r, g, b] = unsafe { block_rgb8::<F>(w, m, x) };
            let h = if GAUSS || SP {
                pixel_hash8(&k.photo, first.wrapping_add(x as u32))
            } else {
                _mm256_setzero_si256()
            };
            // SAFETY: each plane row has `width` elements and `x + 8 <= width`.
            unsafe {
                finish::<0, D, GAUSS, SP>(k, r, h, planes[0].add(x * sz));
                finish::<10, D, GAUSS, SP>(k, g, h, planes[1].add(x * sz));
                finish::<20, D, GAUSS, SP>(k, b, h, planes[2].add(x * sz));
            }
            x += 8;
        }
        while x < width {
            let mut o = [0f32; 3];
            pixel::<u8, F, 3, true>(w, m, x, &mut o);
            let h = k.photo.pixel_hash(first.wrapping_add(x as u32));
            for (c, v) in o.into_iter().enumerate() {
                let v = k.photo.value::<GAUSS, SP>(v, h, c);
                // SAFETY: each plane row has `width` elements and `x < width`.
                unsafe { store1::<D>(planes[c].add(x * sz), v) };
            }
            x += 1;
        }
    }
}
